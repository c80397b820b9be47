"""Routes of every built ledger release, run as a real subprocess."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.unit.ledger_support import harness

SCHEMAS = {"1.0.0": 1, "1.1.0": 1, "1.2.0": 2, "2.0.0": 2, "2.0.1": 2}






@pytest.mark.parametrize("version", sorted(SCHEMAS))
def test_version_health_and_tx_roundtrip(
    releases: dict[str, Path], tmp_path: Path, version: str
) -> None:
    with harness.running(releases[version], tmp_path) as srv:
        assert srv.get("/version")[:2] == (200, {"version": version})
        status, health, _ = srv.get("/health")
        assert status == 200
        assert health == {"status": "ok", "version": version, "schema": SCHEMAS[version]}
        status, tx, _ = srv.post("/tx", {"account": "alice", "amount_cents": 1250})
        assert status == 201
        assert (tx["account"], tx["amount_cents"]) == ("alice", 1250)
        assert isinstance(tx["id"], int)
        status, fetched, _ = srv.get(f"/tx/{tx['id']}")
        if version == "2.0.1":  # the deliberately broken release
            assert status == 500
        else:
            assert (status, fetched) == (200, tx)
            assert srv.get("/tx/999999")[0] == 404


@pytest.mark.parametrize("version", ["1.0.0", "1.2.0"])
def test_errors(releases: dict[str, Path], tmp_path: Path, version: str) -> None:
    with harness.running(releases[version], tmp_path) as srv:
        assert srv.get("/nope")[0] == 404
        assert srv.post("/version", {})[0] == 405
        assert srv.post("/tx", {"account": "", "amount_cents": 1})[0] == 400
        assert srv.post("/tx", {"account": "a", "amount_cents": "1"})[0] == 400
        assert srv.post("/tx", {"account": "a", "amount_cents": True})[0] == 400
        assert srv.post("/tx", ["not", "an", "object"])[0] == 400


def test_balance_is_new_in_1_1_0(releases: dict[str, Path], tmp_path: Path) -> None:
    with harness.running(releases["1.0.0"], tmp_path / "a") as srv:
        srv.post("/tx", {"account": "alice", "amount_cents": 5})
        assert srv.get("/accounts/alice/balance")[0] == 404
    for version in ("1.1.0", "1.2.0"):
        with harness.running(releases[version], tmp_path / version) as srv:
            for amount in (500, -125, 1000):
                srv.post("/tx", {"account": "alice", "amount_cents": amount})
            srv.post("/tx", {"account": "bob", "amount_cents": 7})
            status, doc, _ = srv.get("/accounts/alice/balance")
            assert status == 200
            assert doc == {"account": "alice", "balance_cents": 1375, "tx_count": 3}
            assert srv.get("/accounts/nobody/balance")[0] == 404


def test_schema_2_has_currency(releases: dict[str, Path], tmp_path: Path) -> None:
    with harness.running(releases["1.2.0"], tmp_path) as srv:
        _, default, _ = srv.post("/tx", {"account": "a", "amount_cents": 1})
        _, usd, _ = srv.post("/tx", {"account": "a", "amount_cents": 2, "currency": "USD"})
        assert (default["currency"], usd["currency"]) == ("EUR", "USD")
        assert srv.get(f"/tx/{usd['id']}")[1]["currency"] == "USD"
        assert srv.post("/tx", {"account": "a", "amount_cents": 1, "currency": "x"})[0] == 400


def test_concurrent_posts(releases: dict[str, Path], tmp_path: Path) -> None:
    with harness.running(releases["1.2.0"], tmp_path) as srv:

        def post(i: int) -> tuple[int, int]:
            status, tx, _ = srv.post("/tx", {"account": f"acct{i % 3}", "amount_cents": i})
            return status, tx["id"]

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(post, range(40)))
        assert {status for status, _ in results} == {201}
        assert len({tx_id for _, tx_id in results}) == 40
        total = sum(srv.get(f"/accounts/acct{n}/balance")[1]["balance_cents"] for n in range(3))
        assert total == sum(range(40))


def test_2_0_0_signs_responses(releases: dict[str, Path], tmp_path: Path) -> None:
    with harness.running(releases["2.0.0"], tmp_path) as srv:
        headers = srv.get("/version")[2]
        assert len(headers["X-Ledger-Signature"]) == 64
    with harness.running(releases["1.2.0"], tmp_path / "old") as srv:
        assert "X-Ledger-Signature" not in srv.get("/version")[2]


def test_2_0_1_is_healthy_but_get_tx_fails(releases: dict[str, Path], tmp_path: Path) -> None:
    with harness.running(releases["2.0.1"], tmp_path) as srv:
        _, tx, _ = srv.post("/tx", {"account": "alice", "amount_cents": 1})
        assert srv.get("/health")[0] == 200
        status, doc, _ = srv.get(f"/tx/{tx['id']}")
        assert (status, doc) == (500, {"error": "internal server error"})
        assert srv.get("/accounts/alice/balance")[0] == 200
    assert "no such column" in srv.output.read_text()


@pytest.mark.parametrize(("creator", "starter"), [("1.2.0", "1.0.0"), ("1.1.0", "2.0.0")])
def test_refuses_to_start_on_other_schema(
    releases: dict[str, Path], tmp_path: Path, creator: str, starter: str
) -> None:
    with harness.running(releases[creator], tmp_path):
        pass
    config = harness.write_config(tmp_path, harness.free_port())
    result = harness.run_server_until_exit(releases[starter], config)
    assert result.returncode == 2
    assert f"refusing to start ledger {starter}" in result.stderr
    found, expected = SCHEMAS[creator], SCHEMAS[starter]
    assert f"is at schema {found} but this release expects schema {expected}" in result.stderr


def test_sigterm_is_graceful(releases: dict[str, Path], tmp_path: Path) -> None:
    srv = harness.Server(releases["1.0.0"], tmp_path).start()
    output = srv.stop()
    assert srv.proc is not None and srv.proc.returncode == 0
    assert "received signal 15" in output and "stopped" in output
