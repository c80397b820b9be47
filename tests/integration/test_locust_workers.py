"""The load gate in Locust's distributed mode: ``workers: N``, a master and N worker
processes on the controller, gives the same figures and verdicts as one process (no lab:
Locust loads a tiny HTTP service the test starts on 127.0.70.2); ``worker_hosts``, the
workers on inventory hosts started over Ansible, is proved on the session lab.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from controller.adapters.locust import LoadRun, _only_ours, run_load
from controller.engine.environment import resolve_environment
from controller.engine.gates import GateRunner
from controller.errors import RelctlError
from controller.journal import Journal
from controller.manifest_loader import load_manifest
from controller.models.manifest import LoadThresholds, LocustGate
from controller.planning.gates import judge_load
from tests.http_target import LOCUSTFILE, HealthServer
from tests.integration.ansible_cli import shell
from tests.integration.conftest import RunningLab
from tests.integration.ledger_http import served_versions
from tests.relctl_cli import ROOT, deploy_ledger, example_text, relctl

RELEASES = ROOT / "examples" / "releases"


@pytest.mark.parametrize("workers", [0, 2])
def test_a_load_gate_gives_figures_and_a_verdict(workers: int, tmp_path: Path) -> None:
    gate = LocustGate(locustfile=LOCUSTFILE, users=8, spawn_rate=8, duration_s=4,
                      workers=workers,
                      thresholds=LoadThresholds(p95_ms=2000, max_failure_ratio=0.01, min_rps=5))
    with HealthServer("127.0.70.2") as server:
        stats = run_load(LoadRun(gate.locustfile, server.url, gate.users, gate.spawn_rate,
                                 gate.duration_s, tmp_path, f"candidate-{workers}",
                                 workers=gate.workers))
    verdict = judge_load(gate.thresholds, stats, None)
    assert stats.requests >= 20 and stats.failures == 0, stats
    assert stats.rps > 5 and 0 < stats.p50_ms <= stats.p95_ms <= stats.p99_ms
    assert verdict.outcome == "pass", verdict.reasons
    log = (tmp_path / f"candidate-{workers}.log").read_text()
    if workers:  # a master, and its workers reporting to it
        assert f"{workers} workers connected" in log, log[-800:]
        assert "The last worker quit, stopping test" in log, log[-800:]


def test_workers_on_the_controller_have_a_master_of_their_own_on_loopback(
        tmp_path: Path) -> None:
    """Two gates with workers at once on one controller (two releases on one CI runner):
    each master listens on loopback only, on a port of its own, and counts only its own
    workers. (Locust's default is every address and port 5557: anyone could join the
    first master as a worker, and the second run's workers joined it too.)"""
    listening: set[tuple[str, int]] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for conn in psutil.net_connections("tcp"):
                if conn.status != psutil.CONN_LISTEN or not conn.pid:
                    continue
                try:
                    command = " ".join(psutil.Process(conn.pid).cmdline())
                except psutil.Error:
                    continue
                if str(tmp_path) in command:
                    listening.add((conn.laddr.ip, conn.laddr.port))
            stop.wait(0.2)

    with HealthServer("127.0.70.2") as server, ThreadPoolExecutor(3) as pool:
        watcher = pool.submit(watch)
        runs = [pool.submit(run_load, LoadRun(LOCUSTFILE, server.url, 4, 4, 3, tmp_path / name,
                                              name, workers=2)) for name in ("a", "b")]
        try:
            stats = [run.result() for run in runs]
        finally:
            stop.set()
            watcher.result()
    for name, figures in zip(("a", "b"), stats, strict=True):
        assert figures.requests >= 10 and figures.failures == 0, figures
        log = (tmp_path / name / f"{name}.log").read_text()
        assert "2 workers connected" in log and "3 workers connected" not in log, log[-800:]
    assert {address for address, _ in listening} == {"127.0.0.1"}, listening
    assert len({port for _, port in listening}) == 2, listening


def test_workers_are_a_bounded_whole_number() -> None:
    with pytest.raises(ValueError, match="workers"):
        LocustGate(locustfile=LOCUSTFILE, workers=-1)
    with pytest.raises(ValueError, match="workers"):
        LocustGate(locustfile=LOCUSTFILE, workers=65)
    with pytest.raises(ValueError, match="exclude each other"):
        LocustGate(locustfile=LOCUSTFILE, workers=2, worker_hosts={"hosts": "loadgen"})
    with pytest.raises(ValueError, match="command"):
        LocustGate(locustfile=LOCUSTFILE, worker_hosts={"hosts": "loadgen", "command": []})


@pytest.mark.parametrize("address", ["0.0.0.0", "0", "0x0"])
def test_the_master_never_listens_on_every_address(address: str) -> None:
    """The master has no authentication: "any address" would let every network the
    controller is on join the run (and the workers, told to reach 0.0.0.0, never would)."""
    with pytest.raises(ValueError, match="means every address"):
        LocustGate(locustfile=LOCUSTFILE,
                   worker_hosts={"hosts": "loadgen", "master_host": address})
    gate = LocustGate(locustfile=LOCUSTFILE,
                      worker_hosts={"hosts": "loadgen", "master_host": "10.0.0.7"})
    assert gate.worker_hosts is not None and gate.worker_hosts.master_host == "10.0.0.7"


HOST_LOCUST = "/opt/relctl-test-locust"  # on backup-1, in its own /opt


@pytest.fixture(scope="module")
def host_locust(lab: RunningLab) -> list[str]:
    """Locust installed on backup-1 as its operators would: a virtualenv of the host's
    python3 with pip (the controller's Locust version); the command that runs it."""
    shell(lab.ansible_cfg, "backup-1",
          f"[ -x {HOST_LOCUST}/bin/locust ] || {{ /usr/bin/python3 -m venv {HOST_LOCUST} && "
          f"{HOST_LOCUST}/bin/pip install -q --no-compile locust=={version('locust')}; }}")
    return [f"{HOST_LOCUST}/bin/python", "-m", "locust"]


def _worker_hosts_manifest(folder: Path, command: list[str]) -> Path:
    """ledger 1.1.0 with its load gate's workers on the lab's backup host (a load
    generator here, not a target), two per host, run by ``command``."""
    data: dict[str, Any] = yaml.safe_load(example_text(RELEASES / "ledger-1.1.0.yml"))
    data["release"] = "ledger-1.1.0-remote-load"
    locust = data["gates"]["locust"]
    locust["worker_hosts"] = {"hosts": "app_backup", "per_host": 2, "command": command}
    locust["thresholds"]["p95_vs_baseline"] = None  # a few-ms ratio flaps on 2 loaded cores
    path = folder / "remote-load.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _left_on(lab: RunningLab, host: str) -> str:
    """What a run left on ``host``: its private folders and Locust processes."""
    return shell(lab.ansible_cfg, host, "ls -d /tmp/relctl-locust.* 2>/dev/null; "
                 "pgrep -a -f '[l]ocust .*--worker' || true").strip()


@pytest.mark.lab
def test_the_load_comes_from_workers_on_inventory_hosts(lab: RunningLab, tmp_path: Path,
                                                        host_locust: list[str]) -> None:
    """The manifest's load gate as a release runs it (its GateRunner): Locust's master on
    the controller, two workers on backup-1 started over Ansible; the gate's figures are
    theirs, aggregated by the master, and nothing of the workers is left on the host.
    (The release around it is the same as with a local Locust: the next test runs one.)"""
    deployed = deploy_ledger(lab.state_dir, "1.0.0")
    assert deployed.returncode == 0, deployed.stderr
    path = _worker_hosts_manifest(tmp_path, host_locust)
    plan = relctl(lab.state_dir, "plan", str(path))
    assert plan.returncode == 0 and "2 worker(s) on each host of app_backup" in plan.stdout
    manifest = load_manifest(path)
    env = resolve_environment(lab.state_dir, manifest)
    with Journal(lab.state_dir / "journal.sqlite") as journal:
        stats = GateRunner(env, journal, 0, manifest, record=False).load("candidate")
    assert stats is not None and stats.requests >= 20 and stats.failures == 0, stats
    log = (env.gate_dir(0) / "candidate.log").read_text()
    ready = re.findall(r"(\S+)_[0-9a-f]{32} \(index \d+\) reported as ready", log)
    assert sorted(ready) == ["backup-1", "backup-1"], log[-1500:]
    assert _left_on(lab, "backup-1") == ""


@pytest.mark.lab
def test_workers_that_cannot_run_stop_the_release_before_any_change(
        lab: RunningLab, tmp_path: Path) -> None:
    deployed = deploy_ledger(lab.state_dir, "1.0.0")
    assert deployed.returncode == 0, deployed.stderr
    manifest = _worker_hosts_manifest(tmp_path, ["/opt/no-such-locust/bin/locust"])
    started = time.monotonic()
    applied = relctl(lab.state_dir, "apply", str(manifest), "--yes")
    assert applied.returncode == 6, applied.stderr  # a prerequisite is missing
    assert "the workers on backup-1 did not run" in applied.stderr, applied.stderr
    assert "/opt/no-such-locust/bin/locust" in applied.stderr
    assert "Traceback" not in applied.stderr
    assert time.monotonic() - started < 60  # the master does not wait out connect_s
    assert served_versions(lab) == {"1.0.0"}
    assert _left_on(lab, "backup-1") == ""


def test_a_worker_relctl_did_not_start_voids_the_run(tmp_path: Path) -> None:
    """Locust's master has no authentication: a third worker where relctl started two
    means someone else's figures are in the run."""
    run = LoadRun(LOCUSTFILE, "http://127.0.70.2:1", 1, 1, 1, tmp_path, "candidate")
    ready = "".join(f"[x] m/INFO/locust.runners: host_{n:032x} (index {n}) reported as "
                    f"ready. {n + 1} workers connected.\n" for n in range(3))
    (tmp_path / "candidate.log").write_text(ready)
    _only_ours(run, 3, "127.0.0.1", 5557)  # as many as started: counted
    joined = re.escape("3 workers joined the master on 127.0.0.1:5557")
    with pytest.raises(RelctlError, match=joined):
        _only_ours(run, 2, "127.0.0.1", 5557)
    # One of ours that missed a heartbeat and joined again is still one worker.
    again = ready.splitlines(keepends=True)[0].replace("1 workers", "3 workers")
    (tmp_path / "candidate.log").write_text(ready + again)
    _only_ours(run, 3, "127.0.0.1", 5557)


def test_a_master_log_relctl_cannot_read_voids_the_run(tmp_path: Path) -> None:
    """Fail closed: a master whose log names fewer workers than relctl started (all of
    them joined, or it would not have run) is a log relctl cannot read, so it cannot say
    that no one else's worker joined."""
    run = LoadRun(LOCUSTFILE, "http://127.0.70.2:1", 1, 1, 1, tmp_path, "candidate")
    (tmp_path / "candidate.log").write_text(
        "[x] m/INFO/locust.runners: worker host_1 ready; 1 connected\n"
        "[x] m/INFO/locust.runners: host_2 (index 1) reported as ready. 1 workers connected.\n")
    with pytest.raises(RelctlError, match="names 1 ready workers, relctl started 2") as caught:
        _only_ours(run, 2, "127.0.0.1", 5557)
    assert "reported as ready" in (caught.value.hint or "")
