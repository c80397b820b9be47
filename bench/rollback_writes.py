"""Writes kept by a rollback: a client writing through the load balancer at about 20
writes/s for the whole of a failing release, on one primary host (one database).

(a) ledger 2.0.1 (broken: testinfra fails on the canary) on 1.2.0: no migration runs,
    so the rollback keeps the data live;
(b) 2.0.1 on 1.1.0: it converts the data to schema 2 first, so the rollback restores
    schema 1 and carries every transaction written since into it;
(c) the anchor: (b) with ``on_rollback: discard`` (the old behaviour: the snapshot
    restored over everything written since), measured in the same run.

Printed per case: writes acknowledged, acknowledged writes missing or changed after the
rollback, the seconds the services were stopped (writes refused) and the rollback
phase's seconds; then the carry-forward's cost against the anchor.

Run: .venv/bin/python bench/rollback_writes.py   (lab at 127.0.81.10, torn down after)
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from _lab import LEDGER, RELCTL, ROOT, deploy_ledger, fresh_state_dir, relctl

from controller.adapters import http

RELEASE = ROOT / "examples" / "releases" / "ledger-2.0.1.yml"


class Writer(threading.Thread):
    """POST /tx every 50 ms through the load balancer; keeps what was acknowledged."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop = url, threading.Event()
        self.acked: dict[int, tuple[str, int]] = {}

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            body = {"account": f"w{n % 5}", "amount_cents": n}
            answer = http.request("POST", f"{self.url}/tx", body, timeout=5)
            if answer.status == 201 and isinstance(answer.json(), dict):
                self.acked[int(answer.json()["id"])] = (body["account"], n)
            self.stop.wait(0.05)


def lost(url: str, acked: dict[int, tuple[str, int]]) -> int:
    """Acknowledged transactions that do not read back as written."""
    count = 0
    for tx_id, (account, amount) in acked.items():
        answer = http.request("GET", f"{url}/tx/{tx_id}", timeout=10)
        body = answer.json() if answer.status == 200 else None
        if not isinstance(body, dict) or (body.get("account"), body.get("amount_cents")) != (
                account, amount):
            count += 1
    return count


def case(state: Path, url: str, base: str, manifest: Path) -> dict[str, Any]:
    deploy_ledger(state, base)
    time.sleep(2)
    writer = Writer(url)
    writer.start()
    time.sleep(1)
    result = subprocess.run([*RELCTL, "--state-dir", str(state), "apply", str(manifest),
                             "--yes", "--json", "--force"], capture_output=True, text=True,
                            check=False, cwd=ROOT)
    time.sleep(1)
    writer.stop.set()
    writer.join()
    outcome = json.loads(result.stdout)
    catch_up = json.loads((state / "rollbacks" / outcome["release"] / "catch-up.json")
                          .read_text())
    rollback = next(p["seconds"] for p in outcome["phases"] if p["name"] == "rollback")
    report = next(iter(next(iter(outcome["data"].values())).values()))
    return {"acked": len(writer.acked), "lost": lost(url, writer.acked),
            "decision": report["decision"], "exit": result.returncode,
            "refused_s": max(v for v in catch_up["writes_refused_s"].values() if v is not None),
            "rollback_s": rollback}


def main() -> None:
    state = fresh_state_dir("rollback-writes")
    relctl(state, "lab", "up", "--primary", "1", "--backup", "0", "--base-address",
           "127.0.81.10", *LEDGER)
    try:
        url = relctl(state, "lab", "status")["url"]
        discard = state / "ledger-2.0.1-discard.yml"
        discard.write_text(RELEASE.read_text().replace(
            "    reversible: true\n", "    reversible: true\n    on_rollback: discard\n")
            .replace("../../", f"{ROOT}/"))
        # Schema 1 (1.1.0) first: a deploy never takes the data back from schema 2.
        cases = {"(b) after a migration": case(state, url, "1.1.0", RELEASE),
                 "(c) anchor: discard": case(state, url, "1.1.0", discard),
                 "(a) no migration": case(state, url, "1.2.0", RELEASE)}
    finally:
        subprocess.run([*RELCTL, "--state-dir", str(state), "lab", "down"], check=False,
                       capture_output=True)
    print(f"{'case':24} {'decision':10} {'acked':>6} {'lost':>5} {'refused s':>10} "
          f"{'rollback s':>11}")
    for name, row in cases.items():
        print(f"{name:24} {row['decision']:10} {row['acked']:6d} {row['lost']:5d} "
              f"{row['refused_s']:10.3f} {row['rollback_s']:11.2f}")
    carried, anchor = cases["(b) after a migration"], cases["(c) anchor: discard"]
    print(f"carry-forward rollback / discard rollback: "
          f"{carried['rollback_s'] / anchor['rollback_s']:.2f}x; writes kept "
          f"{carried['acked'] - carried['lost']}/{carried['acked']} against "
          f"{anchor['acked'] - anchor['lost']}/{anchor['acked']}")


if __name__ == "__main__":
    main()
