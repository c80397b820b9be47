"""Each crash, hang and injection class of issue 9, as a plain regression test: refused with
exit 2 and a located message, never a traceback, a hang or a shell."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from controller.adapters.ansible import list_hosts
from controller.adapters.haproxy import RuntimeApi
from controller.agent import snapshot_agent as agent
from controller.cli.output import err_console, report_error
from controller.errors import InputError
from controller.manifest_loader import ConfigError, load_manifest, load_yaml_model
from controller.models.continuity import ContinuityPlan, LoadBalancer
from controller.models.manifest import PackageItem
from tests.unit.hostile import (
    assert_located,
    assert_refused,
    fake_hosts,
    hostile_tree,
    run_cli,
)

RELEASE = "examples/releases/ledger-1.1.0.yml"
PLAN = "examples/continuity/ledger-lab.yml"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hostile_tree(tmp_path_factory.mktemp("hostile"))


def refusal(path: Path, text: str | bytes, plan: bool = False) -> str:
    """Write ``text`` to ``path``, load it, and return the (located) refusal."""
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        if plan:
            load_yaml_model(path, ContinuityPlan)
        else:
            load_manifest(path)
    assert time.monotonic() - started < 2
    assert caught.value.exit_code == 2
    assert_located(caught.value.message, path)
    return caught.value.message


def edited(tree: Path, old: str, new: str, name: str = RELEASE) -> str:
    text = (tree / name).read_text()
    assert old in text
    return text.replace(old, new, 1)


def target(tree: Path, name: str = "case.yml", folder: str = "examples/releases") -> Path:
    return tree / folder / name


# --- the YAML reader ------------------------------------------------------------------


@pytest.mark.parametrize("byte", [b"\x00", b"\x07", b"\x1b"])
def test_a_control_byte_is_a_located_yaml_error(tree: Path, byte: bytes) -> None:
    text = (tree / RELEASE).read_bytes().replace(b"Ada Ops", b"Ada" + byte + b"Ops")
    assert "YAML syntax error" in refusal(target(tree), text)


def test_invalid_utf8_names_its_line(tree: Path) -> None:
    text = (tree / RELEASE).read_bytes().replace(b"Ada Ops", b"Ada \xff Ops")
    assert "not UTF-8" in refusal(target(tree), text)


def test_deep_nesting_is_refused(tree: Path) -> None:
    deep = "extravars: {x: " + "[" * 500 + "]" * 500 + "}\n"
    assert "nested deeper than" in refusal(target(tree), (tree / RELEASE).read_text() + deep)


@pytest.mark.parametrize("levels", [9, 30])
def test_an_alias_bomb_is_refused_fast(tree: Path, levels: int) -> None:
    bomb = "extravars:\n  l0: &l0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, levels))
    assert "aliases expand to more than" in refusal(target(tree),
                                                    (tree / RELEASE).read_text() + bomb)


def test_an_alias_that_contains_itself_is_refused(tree: Path) -> None:
    looped = (tree / RELEASE).read_text() + "extravars: &loop {again: *loop}\n"
    assert "refers to a node that contains it" in refusal(target(tree), looped)


@pytest.mark.parametrize("scalar", ["2026-13-45", "1" * 5000])
def test_a_scalar_python_cannot_build_is_located(tree: Path, scalar: str) -> None:
    text = (tree / RELEASE).read_text() + f"extravars: {{x: {scalar}}}\n"
    assert "invalid value" in refusal(target(tree), text)


def test_a_huge_file_is_not_read(tree: Path) -> None:
    path = target(tree, "huge.yml")
    path.write_bytes(b"#" * (2 << 20))
    with pytest.raises(ConfigError, match="larger than"):
        load_manifest(path)


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/urandom", "/dev/null", "/"])
def test_only_regular_files_are_read(special: str) -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        load_manifest(Path(special))


def test_a_fifo_never_hangs(tmp_path: Path) -> None:
    fifo = tmp_path / "release.yml"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="not a regular file"):
        load_manifest(fifo)
    assert time.monotonic() - started < 1


# --- values ---------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "field"), [
    ("source: ../../build", "source: ~nosuchuser/../build", "items[0].source"),
    ("source: ../../build", "source: " + "x" * 256 + "/build", "items[0].source"),
    ("targets: app_primary", "targets: --version", "targets"),
    ("targets: app_primary", "targets: '-i /etc/passwd'", "targets"),
    ("path: /etc/ledger/ledger.conf", "path: /etc/x;touch /tmp/pwned;#", "items[1].path"),
    ("path: /etc/ledger/ledger.conf", "path: /etc/$(id)", "items[1].path"),
    ("path: /etc/ledger/ledger.conf", "path: /etc/`id`", "items[1].path"),
    ("path: /etc/ledger/ledger.conf", "path: /etc/a|b", "items[1].path"),
    ("path: /etc/ledger/ledger.conf", "path: /etc/*", "items[1].path"),
    ("path: /etc/ledger/ledger.conf", 'path: "/etc/a\\nb"', "items[1].path"),
    ("path: /var/lib/ledger/ledger.db", "path: /var/lib/%2e%2e/x.db", "items[3].path"),
    ("path: /var/lib/ledger/ledger.db", "path: /var/lib/x.db?mode=rwc", "items[3].path"),
    ("version: \"1.1.0\"", "version: ../../etc", "version"),
    ("users: 10", "users: true", "gates.locust.users"),
    ("duration_s: 6", "duration_s: .inf", "gates.locust.duration_s"),
    ("duration_s: 6", "duration_s: 1.0e+308", "gates.locust.duration_s"),
    ("p95_ms: 300", "p95_ms: .nan", "gates.locust.thresholds.p95_ms"),
    ("canary: 1", "canary: true", "strategy.canary"),
    ("reversible: true", "reversible: 1", "items[3].reversible"),
])
def test_hostile_manifest_values_are_refused(tree: Path, old: str, new: str,
                                             field: str) -> None:
    message = refusal(target(tree), edited(tree, old, new))
    assert f" {field}: " in message


def test_a_pip_venv_cannot_inject_a_shell_command() -> None:
    with pytest.raises(ValidationError, match="no shell"):
        PackageItem(kind="package", name="requests", version="2.31.0", manager="pip",
                    venv="/opt/v;touch /tmp/pwned;#")


@pytest.mark.parametrize("window", ["{start: 0, end: 3600}",
                                    "{start: 2026-12-01T22:00:00Z, end: 1e308}",
                                    "{start: 9999-12-31T23:00:00Z, end: 9999-12-31T23:30:00Z}"])
def test_a_window_is_a_time_not_a_number(tree: Path, window: str) -> None:
    text = (tree / RELEASE).read_text() + f"window: {window}\n"
    assert " window." in refusal(target(tree), text)


@pytest.mark.parametrize(("old", "new", "field"), [
    ("port: 8000", "port: true", "lb.port"),
    ("users: 5", "users: true", "drill.users"),
    ("backend: ledger", "backend: 'app; shutdown sessions'", "lb.backend"),
    ("backend: ledger", 'backend: "app\\nshutdown"', "lb.backend"),
    ("rto: 10s", "rto: .inf", "functions[0].rto"),
    ("every: 1m", "every: 99999999999d", "data[0].every"),
    ("primary: app_primary", "primary: --version", "sites.primary"),
    ("path: /var/lib/ledger/ledger.db", "path: /x?mode=rwc", "data[0].path"),
])
def test_hostile_plan_values_are_refused(tree: Path, old: str, new: str, field: str) -> None:
    path = target(tree, "case.yml", "examples/continuity")
    message = refusal(path, edited(tree, old, new, PLAN), plan=True)
    assert f" {field}: " in message


def test_haproxy_names_are_checked_before_a_command_is_sent() -> None:
    api = RuntimeApi("127.0.0.1:9")  # nothing listens: a command sent would fail otherwise
    for backend, server in (("app;shutdown", "s1"), ("app", "s1 state ready\nshutdown")):
        with pytest.raises(InputError, match="invalid HAProxy"):
            api.set_state(backend, server, "maint")
    with pytest.raises(ValidationError):
        LoadBalancer(backend="app backend")


def test_a_host_pattern_never_becomes_an_ansible_option(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot start with '-'"):
        list_hosts(tmp_path / "hosts.yml", tmp_path / "ansible.cfg", "--version")


# --- the agent on the host ------------------------------------------------------------


def test_the_agent_runs_pip_without_a_shell(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    item = {"kind": "package", "name": "x", "manager": "pip", "venv": "/v;touch pwned;#"}
    assert agent.package_version(item) is None
    assert not (tmp_path / "pwned").exists()


def test_the_agent_opens_sqlite_by_path_never_by_uri_parameters(tmp_path: Path) -> None:
    odd = tmp_path / "a%2e?mode=rwc#.db"
    with sqlite3.connect(odd) as db:
        db.execute("CREATE TABLE t (x)")
    assert len(agent.sqlite_digest(odd)) == 64
    absent = tmp_path / "absent.db?mode=rwc"
    with pytest.raises(sqlite3.OperationalError):
        agent.open_read_only(absent).execute("SELECT 1")
    assert not list(tmp_path.glob("absent*"))


# --- the CLI --------------------------------------------------------------------------


def test_the_error_printer_prints_text_not_markup() -> None:
    with err_console.capture() as captured:
        report_error(InputError("bad value [/x] [bold]", hint="[/]"), as_json=False)
    assert "bad value [/x] [bold]" in captured.get() and "hint: [/]" in captured.get()


def test_a_markup_like_path_is_printed_as_is(tmp_path: Path) -> None:
    ran = run_cli(tmp_path / "state", "plan", str(tmp_path / "no[/x]such.yml"))
    assert_refused(ran)
    assert "no[/x]such.yml: file not found" in ran.stderr


def test_a_start_past_year_9000_is_a_bad_option(tree: Path, tmp_path: Path) -> None:
    ran = run_cli(tmp_path / "state", "plan", str(tree / RELEASE),
                  "--start", "9999-12-31T23:00+00:00")
    assert_refused(ran)
    assert len(ran.stderr.splitlines()) == 1 and "--start" in ran.stderr


def test_output_into_a_missing_folder_is_a_bad_option(tree: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_hosts(monkeypatch, ["primary-1"]):
        ran = run_cli(tmp_path / "state", "plan", str(tree / RELEASE), "--inventory",
                      str(tree / "hosts.yml"), "-o", str(tmp_path / "missing" / "plan.md"))
    assert_refused(ran)
    assert "cannot write" in ran.stderr


def _not_sqlite(path: Path) -> Path:
    path.write_text("hello, not a database\n" * 100)
    return path


def _no_tables(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 3")
    return path


def _someone_elses(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE accounts (id)")
    return path


@pytest.mark.parametrize("make", [
    lambda tmp: Path("/proc/relctl-journal.sqlite"),
    lambda tmp: Path("/proc/self/journal.sqlite"),
    lambda tmp: Path("/dev/zero"),
    lambda tmp: tmp,
    lambda tmp: _not_sqlite(tmp / "j.sqlite"),
    lambda tmp: _no_tables(tmp / "j.sqlite"),
    lambda tmp: _someone_elses(tmp / "j.sqlite"),
])
def test_a_journal_that_cannot_be_one_is_a_bad_option(tmp_path: Path, make: object) -> None:
    journal = make(tmp_path)  # type: ignore[operator]
    ran = run_cli(tmp_path / "state", "--journal", str(journal), "history")
    assert_refused(ran)
    assert "journal" in ran.stderr
