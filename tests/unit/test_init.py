"""``relctl init``: the starter files as data, and the command in a temporary repository.

What a user relies on: the files land where the help says, load as relctl reads them
(``relctl plan`` passes on the manifest, the continuity loader takes the plan), the
Python compiles, and nothing is ever overwritten or half-written without ``--force``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from controller.cli.main import cli
from controller.engine.continuity import load_plan
from controller.manifest_loader import load_manifest
from controller.models.manifest import ArtifactItem, DataItem, DirectoryItem, FileItem, ServiceItem
from controller.models.scaffold import ScaffoldRequest
from controller.planning.scaffold import layout_for, named_paths, render_scaffold

FILES = ["relctl/billing-release.yml", "relctl/billing-continuity.yml",
         "tests/gates/test_billing.py", "loadtests/billing.py"]
START = "/opt/billing/bin/billingctl start --config /etc/billing/billing.conf"
CHECK = "curl -fsS http://127.0.0.1:9090/health # exit 0: healthy"
INVENTORY = """\
all:
  children:
    lb:
      hosts: {lb-1: {ansible_host: 127.0.0.10}}
    app_primary:
      hosts:
        primary-1: {ansible_host: 127.0.0.11}
        primary-2: {ansible_host: 127.0.0.12}
        primary-3: {ansible_host: 127.0.0.13}
    app_backup:
      hosts:
        backup-1: {ansible_host: 127.0.0.14}
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A user's Ansible repository holding a deploy playbook."""
    root = tmp_path / "repo"
    (root / "playbooks").mkdir(parents=True)
    (root / "playbooks" / "deploy.yml").write_text("- hosts: all\n  tasks: []\n")
    return root


def billing_args(repo: Path, *extra: str) -> list[str]:
    """``relctl init`` for the brief's billing service, written into ``repo``."""
    return ["init", "-C", str(repo), "--service", "billing", "--port", "9090",
            "--playbook", str(repo / "playbooks" / "deploy.yml"),
            "--artifact-root", "/opt/billing", "--config", "/etc/billing/billing.conf",
            "--data", "/var/lib/billing/billing.db", "--start", START,
            "--stop", "systemctl stop billing", "--check", CHECK, "--owner", "Ada Ops", *extra]


def with_option(args: list[str], option: str, value: str | None) -> list[str]:
    """``args`` with ``option`` set to ``value`` (added if absent; dropped when None)."""
    if option not in args:
        return [*args, option, str(value)]
    at = args.index(option)
    return [*args[:at], *([option, value] if value is not None else []), *args[at + 2:]]


def run(tmp_path: Path, *args: str) -> Result:
    state = tmp_path / "state"
    return CliRunner().invoke(cli, ["--state-dir", str(state), "--journal",
                                    str(state / "journal.sqlite"), *args])


def request(repo: Path, **changes: object) -> ScaffoldRequest:
    fields: dict[str, object] = {"service": "billing", "port": 9090,
                                 "playbooks": (repo / "playbooks" / "deploy.yml",),
                                 "artifact_root": "/opt/billing",
                                 "configs": ("/etc/billing/billing.conf",),
                                 "data": ("/var/lib/billing/billing.db",),
                                 "start": START, "stop": "systemctl stop billing",
                                 "owner": "Ada Ops"}
    return ScaffoldRequest.model_validate({**fields, **changes})


# --- the files as data -------------------------------------------------------------------


def test_files_go_where_the_help_says_with_paths_relative_to_the_manifest(repo: Path) -> None:
    files = render_scaffold(request(repo), repo)
    assert list(files) == FILES
    manifest = yaml.safe_load(files["relctl/billing-release.yml"])
    assert manifest["playbooks"]["apply"] == ["../playbooks/deploy.yml"]
    assert manifest["gates"]["testinfra"][0]["tests"] == "../tests/gates/test_billing.py"
    assert manifest["gates"]["locust"]["locustfile"] == "../loadtests/billing.py"
    assert (manifest["environment"], manifest["targets"]) == ("lab", "app_primary")
    assert manifest["gates"]["locust"]["url"] is None  # the lab's frontend of the service
    assert [(i["kind"], i["name"]) for i in manifest["items"]] == [
        ("directory", "billing-code"), ("file", "billing-config"), ("service", "billing"),
        ("data", "billing-data")]


def test_the_continuity_plan_follows_the_lab_conventions(repo: Path) -> None:
    files = render_scaffold(request(repo, lb_port=8002, backup_group="dr_site"), repo)
    plan = yaml.safe_load(files["relctl/billing-continuity.yml"])
    assert plan["lb"] == {"group": "lb", "backend": "billing", "port": 8002,
                          "runtime_api_port": 9999}
    assert plan["sites"] == {"primary": "app_primary", "backup": "dr_site"}
    assert plan["data"][0]["path"] == "/var/lib/billing/billing.db"
    assert (plan["service_port"], plan["restart"]) == (9090, START)


def test_commands_and_paths_with_yaml_and_python_syntax_survive(repo: Path) -> None:
    tricky = "run --opt 'a: b' #not-a-comment \"q\""
    files = render_scaffold(request(repo, start=tricky, check=tricky), repo)
    items = yaml.safe_load(files["relctl/billing-release.yml"])["items"]
    service = next(i for i in items if i["kind"] == "service")
    assert service["start"] == service["check"] == tricky
    gate: dict[str, object] = {}
    exec(compile(files["tests/gates/test_billing.py"], "gate", "exec"), gate)  # defines only
    assert gate["CHECK_COMMAND"] == tricky


def test_several_paths_of_a_kind_get_distinct_names() -> None:
    named = named_paths("billing", "config", ("/etc/billing/a.conf", "/etc/other/a.conf",
                                              "/etc/billing/Logging.INI"))
    assert [n.name for n in named] == ["billing-config-a.conf", "billing-config-a.conf-2",
                                       "billing-config-logging.ini"]
    assert layout_for("billing-api.v2").gate.name == "test_billing_api_v2.py"


def test_a_tarball_makes_a_capistrano_artifact_checked_by_the_gate(repo: Path) -> None:
    tarball = repo / "build" / "billing-1.4.0.tar.gz"
    files = render_scaffold(request(repo, artifact=tarball, version="1.4.0"), repo)
    manifest = yaml.safe_load(files["relctl/billing-release.yml"])
    assert manifest["items"][0] == {"kind": "artifact", "name": "billing-code",
                                    "root": "/opt/billing",
                                    "source": "../build/billing-1.4.0.tar.gz"}
    assert manifest["release"] == "billing-1.4.0"
    assert manifest["gates"]["testinfra"][0]["env"] == {"EXPECTED_VERSION": "1.4.0"}
    assert "releases/{EXPECTED}" in files["tests/gates/test_billing.py"]


def test_no_version_endpoint_leaves_the_version_checks_out(repo: Path) -> None:
    files = render_scaffold(request(repo, version_path=None), repo)
    assert yaml.safe_load(files["relctl/billing-continuity.yml"])["version_path"] is None
    assert "VERSION_PATH" not in files["loadtests/billing.py"]
    assert "VERSION_PATH: str | None = None" in files["tests/gates/test_billing.py"]


def test_the_starter_files_know_no_sample_service(repo: Path) -> None:
    files = render_scaffold(request(repo), repo)
    assert not [path for path, text in files.items() if "ledger" in text.lower()]


class FakeService(BaseHTTPRequestHandler):
    """Answers /health and /version (1.4.0) as a service under test would, and /about
    with the version nested ({"billing": {"version": "1.4.0"}})."""

    def do_GET(self) -> None:
        body = {"/health": b"ok", "/version": b'{"version": "1.4.0"}',
                "/about": b'{"billing": {"version": "1.4.0", "build": 7}}'}.get(self.path)
        self.send_response(200 if body else 404)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def service_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("expected", "passes"), [("1.4.0", True), ("1.5.0", False)])
def test_the_gate_passes_only_when_the_expected_version_is_served(
        repo: Path, service_port: int, expected: str, passes: bool) -> None:
    files = render_scaffold(request(repo, port=service_port, check="true", configs=()), repo)
    gate = repo / "test_gate.py"
    gate.write_text(files["tests/gates/test_billing.py"])
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hosts=local://",
         str(gate)], capture_output=True, text=True, cwd=repo, timeout=120, check=False,
        env={**os.environ, "EXPECTED_VERSION": expected})
    assert (result.returncode == 0) is passes, result.stdout
    assert "3 passed" in result.stdout if passes else "1 failed, 2 passed" in result.stdout


def test_the_gate_reads_a_nested_version_with_its_pointer(repo: Path,
                                                         service_port: int) -> None:
    files = render_scaffold(request(repo, port=service_port, check="true", configs=(),
                                    version_path="/about", version_pointer="/billing/version"),
                            repo)
    gate = repo / "test_gate.py"
    gate.write_text(files["tests/gates/test_billing.py"])
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hosts=local://",
         str(gate)], capture_output=True, text=True, cwd=repo, timeout=120, check=False,
        env={**os.environ, "EXPECTED_VERSION": "1.4.0"})
    assert result.returncode == 0 and "3 passed" in result.stdout, result.stdout
    assert "version_pointer: /billing/version" in files["relctl/billing-continuity.yml"]


@pytest.mark.parametrize(("args", "code", "says"), [
    (("--version-path", "/about", "--version-pointer", "/billing/version"), 0, "1.4.0"),
    (("--version-path", "/about"), 2, "version_pointer '/version' finds nothing"),
    (("--version-path", "/nothing-here"), 2, "answered 404"),
])
def test_init_probes_a_running_instance_before_it_writes(
        repo: Path, tmp_path: Path, service_port: int, args: tuple[str, ...], code: int,
        says: str) -> None:
    result = run(tmp_path, *billing_args(repo, "--probe", f"http://127.0.0.1:{service_port}",
                                         *args, "--json"))
    assert result.exit_code == code, result.output
    if code == 0:
        assert json.loads(result.stdout)["probed_version"] == says
    else:
        assert "--probe" in result.stderr and says in result.stderr
        assert not (repo / "relctl").exists()  # nothing written


# --- the command ----------------------------------------------------------------------------


def test_init_writes_files_that_relctl_loads_and_python_compiles(repo: Path,
                                                                  tmp_path: Path) -> None:
    result = run(tmp_path, *billing_args(repo))
    assert result.exit_code == 0, result.output
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()) == sorted(
        [*FILES, "playbooks/deploy.yml"])
    manifest = load_manifest(repo / FILES[0])
    assert [type(i) for i in manifest.items] == [DirectoryItem, FileItem, ServiceItem, DataItem]
    assert manifest.playbooks.apply == [repo / "playbooks" / "deploy.yml"]
    plan, _ = load_plan(repo / FILES[1])
    assert (plan.service, plan.lb.backend, plan.lb.port) == ("billing", "billing", 8000)
    assert plan.drill is not None and plan.drill.locustfile == repo / FILES[3]
    for python in FILES[2:]:
        compile((repo / python).read_text(), python, "exec")
    assert "relctl plan relctl/billing-release.yml" in result.stdout


def test_a_shared_postgresql_database_becomes_a_data_item_read_by_relctl(
        repo: Path, tmp_path: Path) -> None:
    result = run(tmp_path, *billing_args(
        repo, "--postgresql", "postgresql://billing_owner@db.internal:6432/billing"))
    assert result.exit_code == 0, result.output
    manifest = load_manifest(repo / FILES[0])
    database = manifest.item("billing-db")
    assert isinstance(database, DataItem) and database.engine == "postgresql"
    assert database.postgresql is not None
    assert database.postgresql.password_env == "BILLING_BILLING_PASSWORD"
    assert database.location == "postgresql://billing_owner@db.internal:6432/billing"


@pytest.mark.parametrize("url", ["postgresql://u:secret@db/billing", "postgres://u@db/b",
                                 "postgresql://u@db/b;drop", "postgresql://db/billing"])
def test_a_database_url_with_a_password_or_garbage_is_refused(repo: Path, tmp_path: Path,
                                                               url: str) -> None:
    result = run(tmp_path, *billing_args(repo, "--postgresql", url))
    assert result.exit_code == 2, result.output
    assert "--postgresql" in result.stderr and "no password" in result.stderr
    assert not (repo / "relctl").exists()


def test_relctl_plan_accepts_the_written_manifest(repo: Path, tmp_path: Path) -> None:
    tarball = repo / "build" / "billing-1.0.0.tar.gz"
    tarball.parent.mkdir()
    tarball.write_bytes(b"not really a tarball")
    inventory = repo / "hosts.yml"
    inventory.write_text(INVENTORY)
    written = run(tmp_path, *billing_args(repo, "--artifact", str(tarball),
                                          "--inventory", str(inventory)))
    assert written.exit_code == 0, written.output
    assert isinstance(load_manifest(repo / FILES[0]).items[0], ArtifactItem)
    result = run(tmp_path, "plan", str(repo / FILES[0]), "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["hosts"] == ["primary-1", "primary-2", "primary-3"]
    assert plan["backup_hosts"] == ["backup-1"]
    assert [len(b["hosts"]) for b in plan["batches"]] == [1, 2]


def test_init_refuses_to_overwrite_and_writes_nothing(repo: Path, tmp_path: Path) -> None:
    (repo / "loadtests").mkdir()
    (repo / "loadtests" / "billing.py").write_text("# mine\n")
    result = run(tmp_path, *billing_args(repo))
    assert result.exit_code == 2
    assert "loadtests/billing.py" in result.stderr and "--force" in result.stderr
    assert not (repo / "relctl").exists() and not (repo / "tests").exists()
    assert (repo / "loadtests" / "billing.py").read_text() == "# mine\n"
    forced = run(tmp_path, *billing_args(repo, "--force", "--json"))
    assert forced.exit_code == 0, forced.output
    report = json.loads(forced.stdout)
    assert (report["written"], report["overwritten"]) == (FILES, ["loadtests/billing.py"])
    assert "HttpUser" in (repo / "loadtests" / "billing.py").read_text()


@pytest.mark.parametrize(("change", "message"), [
    (("--service", "Billing API"), "--service: 'Billing API' is not a slug"),
    (("--config", "etc/billing.conf"), "--config: must be an absolute path on the host"),
    (("--data", "/var/lib/../db"), "--data: must be an absolute path on the host"),
    (("--playbook", "missing.yml"), "missing.yml: no such file"),
    (("--port", "70000"), "--port: 70000 is not a port"),
    (("--health-path", "health"), "--health-path: 'health' is not a URL path"),
    (("--stop", None), "--start and --stop go together"),
    (("--targets", "app_backup"), "the backup site must be another group"),
])
def test_bad_options_exit_2_with_one_line_and_write_nothing(
        repo: Path, tmp_path: Path, change: tuple[str, str | None], message: str) -> None:
    result = run(tmp_path, *with_option(billing_args(repo), *change))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert not (repo / "relctl").exists()


def test_help_teaches_with_an_example(tmp_path: Path) -> None:
    result = run(tmp_path, "init", "--help")
    assert result.exit_code == 0
    assert "relctl init --service billing --port 9090" in result.stdout
    assert "--force" in result.stdout
