"""SIGTERM at 10 moments of a release: is the cancelled release final?

A lab of one LB and two primary hosts (127.0.82.10-12, loopback only) runs ledger 1.2.0.
For each moment a ``relctl apply --yes --json`` of a copy of ledger 2.0.0 starts, written
into a temporary folder: absolute paths, one more file item (/etc/ledger/bench-slow.conf)
and a second apply playbook that writes it, runs a slow step on the host (sleep 15 s, then
write it: a remote process left running shows as a change) and writes it again from the
controller (as tests/integration/test_rollback_final.py does). The moment is found in the
journal (a phase running) or in ansible-runner's events (a task started), then relctl
gets SIGTERM. Five moments fall during a playbook (the canary's and the second batch's),
five elsewhere (Locust baseline, snapshot, testinfra gate, Locust gate, and the rollback
of a copy of ledger 2.0.1, whose canary fails its testinfra gate).

After relctl exits:

- processes of the release still alive: any process started since relctl started that
  was seen as relctl's descendant (sampled every 0.25 s while it ran, by pid and create
  time), carries the launcher's mark of one of relctl's children ($RELCTL_CHILD_OF, the
  journal's ``children`` rows), is a launcher relctl started, is in a launcher's process
  group, or has relctl's state directory in its environment; and, apart, processes inside
  the lab's hosts started since relctl started that are no daemon (a pid file under the
  host's /run: the ledger service, HAProxy);
- changes on the hosts: every item path of the manifest (a directory as every entry in
  it: path, mode, content or link target; a data item with its -wal and -journal) on
  every lab host, read through the host's own mount namespace (/proc/<the host's
  sshd>/root) right at exit and every 2 s for 60 s.

Printed per moment: the phase relctl was in (the journal, at the signal), exit code, the
release's final state (``relctl show``), seconds from SIGTERM to exit, processes of the
release found right after SIGTERM (the detector at work), processes alive after exit
(controller side, and inside the hosts), changes in the window; then the totals, and
what was left or changed.

Run: .venv/bin/python bench/sigterm_moments.py [--watch 60] [--only 1,5,10]
     (as root; lab at 127.0.82.10, torn down after; about 20 minutes)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml
from _lab import LEDGER, RELCTL, ROOT, deploy_ledger, fresh_state_dir, relctl

from controller.adapters import http
from controller.adapters.launcher import OWNER_ENV, PARENT_ENV, owner_mark
from controller.adapters.processes import is_live

BASE_ADDRESS = "127.0.82.10"
BASE_VERSION = "1.2.0"
INTERVAL_S = 2.0
EXIT_TIMEOUT_S = 600.0
MOMENT_TIMEOUT_S = 400.0
BENCH_FILE = "/etc/ledger/bench-slow.conf"
SLOW_TASK = "A slow step that writes at its end"
SLOW_PLAYBOOK = """\
- name: The bench's slow step, between two writes of an item
  hosts: all
  gather_facts: false
  tasks:
    - name: A first write
      ansible.builtin.copy:
        dest: {path}
        content: "version={{{{ ledger_version }}}}\\n"
        mode: "0644"
    - name: {task}
      ansible.builtin.shell: >-
        sleep {{{{ bench_sleep }}}} &&
        echo "version={{{{ ledger_version }}}} (slow step)" > {path}
      changed_when: false
    - name: A last write after it
      ansible.builtin.copy:
        dest: {path}
        content: "version={{{{ ledger_version }}}} (final)\\n"
        mode: "0644"
"""


@dataclass(frozen=True)
class Moment:
    """When to send SIGTERM: ``delay`` seconds after a phase runs or a task starts."""

    name: str
    in_playbook: bool
    phase: str = ""  # a phase of the journal, running
    run: str = ""  # an apply run's label ("canary", "batch2") ...
    task: str = ""  # ... and the task that started in it
    delay: float = 0.0
    release: str = "2.0.0"  # the copy of which example release


MOMENTS = [
    Moment("baseline: Locust baseline load", False, phase="baseline", delay=3),
    Moment("snapshot", False, phase="snapshot"),
    Moment("canary playbook: first task", True, run="canary",
           task="Check the deployment variables", delay=0.3),
    Moment("canary playbook: artifact upload", True, run="canary",
           task="Upload the release artifact", delay=0.3),
    Moment("canary playbook: slow task", True, run="canary", task=SLOW_TASK, delay=2),
    Moment("testinfra gate on the canary", False, phase="gate:testinfra:canary", delay=1),
    Moment("batch2 playbook: first task", True, run="batch2",
           task="Check the deployment variables", delay=0.3),
    Moment("batch2 playbook: slow task", True, run="batch2", task=SLOW_TASK, delay=2),
    Moment("Locust gate", False, phase="gate:locust", delay=3),
    Moment("rollback (2.0.1 fails its canary gate)", False, phase="rollback", delay=0.5,
           release="2.0.1"),
]


@dataclass
class Host:
    name: str
    address: str
    group: str
    sshd: int  # the host's PID 1, as this machine sees it

    @property
    def root(self) -> Path:
        """The host's file tree, through its own mount namespace."""
        return Path(f"/proc/{self.sshd}/root")


@dataclass
class Outcome:
    """What one moment gave."""

    moment: Moment
    number: int
    phase: str = "-"
    exit_code: int | None = None
    state: str = "-"
    exit_s: float = 0.0
    alive: list[str] = field(default_factory=list)  # controller side, right after exit
    on_hosts: list[str] = field(default_factory=list)  # inside the hosts, right after exit
    alive_end: int = 0  # both, at the end of the window
    at_signal: int = 0  # controller side, right after SIGTERM (the detector at work)
    seen: int = 0  # relctl's descendants sampled while it ran
    changes: list[str] = field(default_factory=list)
    children: dict[str, int] = field(default_factory=dict)  # journal: state -> count
    note: str = ""


# -- the release copies ---------------------------------------------------------------

def write_manifests(folder: Path, slow_s: int) -> dict[str, dict[str, Any]]:
    """The copies of 2.0.0 and 2.0.1 (absolute paths, the bench's item and playbook)."""
    slow = folder / "bench_slow.yml"
    slow.write_text(SLOW_PLAYBOOK.format(path=BENCH_FILE, task=SLOW_TASK))
    copies = {}
    for version in ("2.0.0", "2.0.1"):
        source = ROOT / "examples" / "releases" / f"ledger-{version}.yml"
        data = yaml.safe_load(source.read_text())
        for item in data["items"]:
            if "source" in item:
                item["source"] = str((source.parent / item["source"]).resolve())
        data["items"].append({"kind": "file", "name": "bench-slow", "path": BENCH_FILE})
        data["playbooks"]["apply"] = [
            str((source.parent / p).resolve()) for p in data["playbooks"]["apply"]]
        data["playbooks"]["apply"].append(str(slow))
        data["extravars"]["bench_sleep"] = slow_s
        for gate in data["gates"]["testinfra"]:
            gate["tests"] = str((source.parent / gate["tests"]).resolve())
        locust = data["gates"]["locust"]
        locust["locustfile"] = str((source.parent / locust["locustfile"]).resolve())
        copies[version] = data
    return copies


def manifest_for(folder: Path, copies: dict[str, dict[str, Any]], number: int,
                 moment: Moment) -> tuple[Path, str]:
    data = json.loads(json.dumps(copies[moment.release]))
    data["release"] = f"ledger-{moment.release}-sigterm{number:02d}-{os.getpid()}"
    path = folder / f"{data['release']}.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, data["release"]


def item_paths(copies: dict[str, dict[str, Any]]) -> list[str]:
    """Every path the release's items name (a data item with its -wal and -journal)."""
    paths: list[str] = []
    for data in copies.values():
        for item in data["items"]:
            path = item.get("path") or item.get("root")
            if not path:
                continue
            extra = [f"{path}-wal", f"{path}-journal"] if item["kind"] == "data" else []
            paths += [p for p in [path, *extra] if p not in paths]
    return paths


# -- host files -----------------------------------------------------------------------

def _file_sha(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _entry(path: Path) -> str:
    """One entry, never following a link (an absolute link would leave the host)."""
    info = os.lstat(path)
    kind = stat.S_IFMT(info.st_mode)
    mode = f"{stat.S_IMODE(info.st_mode):o}"
    if kind == stat.S_IFLNK:
        return f"link {mode} -> {os.readlink(path)}"
    if kind == stat.S_IFREG:
        return f"file {mode} {info.st_size} {_file_sha(path)}"
    if kind == stat.S_IFDIR:
        return f"dir {mode}"
    return f"other {kind:o} {mode}"


def digest_item(host: Host, item: str) -> dict[str, str]:
    """``item`` on ``host``: {"": what it is} and, for a folder, each entry below it."""
    top = host.root / item.lstrip("/")
    try:
        found = {"": _entry(top)}
    except FileNotFoundError:
        return {"": "absent"}
    except OSError as error:
        return {"": f"unreadable {error.errno}"}
    if item.endswith(("-wal", "-journal")) and found[""].startswith("file ") and (
            found[""].split()[2] == "0"):
        # SQLite creates an empty WAL on open and deletes it when the last connection
        # closes (the ledger opens one per request): no data in it, no change.
        return {"": "absent"}
    if found[""].startswith("dir"):
        for folder, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(dirs + files):
                path = Path(folder) / name
                try:
                    found[str(path.relative_to(top))] = _entry(path)
                except FileNotFoundError:
                    found[str(path.relative_to(top))] = "vanished"
                except OSError as error:
                    found[str(path.relative_to(top))] = f"unreadable {error.errno}"
    return found


def digest_hosts(hosts: list[Host], items: list[str]) -> dict[tuple[str, str], dict[str, str]]:
    return {(h.name, item): digest_item(h, item) for h in hosts for item in items}


def differences(before: dict[str, str], after: dict[str, str]) -> list[str]:
    keys = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return [f"{k or '.'}: {before.get(k, 'absent')} => {after.get(k, 'absent')}"
            for k in keys]


def cross_check(hosts: list[Host]) -> None:
    """The /proc/PID/root view equals what a shell inside the host reads (nsenter)."""
    for host in hosts:
        if host.group != "app_primary":
            continue
        inside = subprocess.run(
            ["nsenter", "--target", str(host.sshd), "--mount", "--", "sha256sum",
             "/etc/ledger/ledger.conf"], capture_output=True, text=True, check=False)
        outside = _file_sha(host.root / "etc/ledger/ledger.conf")
        if inside.returncode != 0 or not inside.stdout.startswith(outside):
            raise SystemExit(f"{host.name}: /proc/{host.sshd}/root does not show the host's "
                             f"files ({inside.stdout or inside.stderr})")


# -- processes ------------------------------------------------------------------------

class Descendants(threading.Thread):
    """relctl's descendants, sampled every 0.25 s while it runs: pid -> (create time,
    command line)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.stop = pid, threading.Event()
        self.seen: dict[int, tuple[float, str]] = {}
        self.direct: dict[int, float] = {}  # relctl's own children (launchers)

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.stop.is_set():
            try:
                direct = {p.pid for p in root.children()}
                procs = root.children(recursive=True)
            except psutil.Error:
                return
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    created = proc.create_time()
                    known = self.seen.get(proc.pid)
                    if known is None or abs(known[0] - created) > 0.01:
                        self.seen[proc.pid] = (created, " ".join(proc.cmdline())[:200])
                    if proc.pid in direct:
                        self.direct[proc.pid] = created
            self.stop.wait(0.25)


def journal_children(journal: Path, owner: int) -> list[tuple[str, str, int | None,
                                                           float | None, str]]:
    """The ``children`` rows relctl ``owner`` journaled: label, program, launcher pid and
    create time, state."""
    with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT label, program, pid, started, state FROM children "
                            "WHERE owner_pid = ?", (owner,)).fetchall()


def host_tree(hosts: list[Host]) -> dict[int, str]:
    """Every process of the lab's hosts (their unshare, sshd and all below): pid -> host."""
    tree: dict[int, str] = {}
    for host in hosts:
        with contextlib.suppress(psutil.Error):
            sshd = psutil.Process(host.sshd)
            tree[sshd.ppid()] = host.name
            for proc in [sshd, *sshd.children(recursive=True)]:
                tree[proc.pid] = host.name
    return tree


def _ns_pid(pid: int) -> int | None:
    """``pid``'s number inside its own pid namespace (the last of NSpid)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def _daemons(host: Host) -> set[int]:
    """The host's daemons (a pid file under its /run) and all they run, as pids here."""
    wanted = set()
    for pidfile in (host.root / "run").rglob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            wanted.add(int(pidfile.read_text().split()[0]))
    found: set[int] = set()
    with contextlib.suppress(psutil.Error):
        for proc in psutil.Process(host.sshd).children(recursive=True):
            if _ns_pid(proc.pid) in wanted:
                with contextlib.suppress(psutil.Error):
                    found |= {proc.pid, *(c.pid for c in proc.children(recursive=True))}
    return found


def _line(proc: psutil.Process, why: str) -> str:
    try:
        command = " ".join(proc.cmdline())[:220]
        return f"pid {proc.pid} ppid {proc.ppid()} ({why}): {command}"
    except psutil.Error:
        return f"pid {proc.pid} ({why})"


@dataclass
class Release:
    """One relctl apply under watch: its pid, create time, launchers and descendants."""

    pid: int
    started: float
    state_dir: Path
    descendants: Descendants

    def marks(self) -> dict[str, int]:
        """Every launcher mark of this relctl ($RELCTL_CHILD_OF) -> the launcher's pid."""
        launchers = dict(self.descendants.direct)
        for _label, _program, pid, started, _state in journal_children(
                self.state_dir / "journal.sqlite", self.pid):
            if pid is not None and started is not None:
                launchers[pid] = started
        return {owner_mark(pid, started): pid for pid, started in launchers.items()}

    def reasons(self, proc: psutil.Process, created: float, marks: dict[str, int]) -> list[str]:
        why = []
        known = self.descendants.seen.get(proc.pid)
        if known is not None and abs(known[0] - created) < 0.01:
            why.append("relctl's descendant")
        env = proc.environ()
        if env.get(OWNER_ENV) in marks:
            why.append(f"mark {env[OWNER_ENV]}")
        if env.get(PARENT_ENV) == str(self.pid):
            why.append("relctl's launcher")
        with contextlib.suppress(OSError):
            if os.getpgid(proc.pid) in marks.values():
                why.append("a launcher's process group")
        if any(str(self.state_dir) in value for value in env.values()):
            why.append("state dir in its environment")
        return why

    def left(self, hosts: list[Host]) -> tuple[list[str], list[str]]:
        """What of the release is alive: on this machine, and inside the lab's hosts."""
        marks, lab = self.marks(), host_tree(hosts)
        daemons = set().union(*(_daemons(h) for h in hosts))
        here, inside = [], []
        for proc in psutil.process_iter():
            try:
                if proc.pid == os.getpid() or not is_live(proc):
                    continue
                created = proc.create_time()
                if created < self.started - 0.01:
                    continue
                if proc.pid in lab:
                    if proc.pid not in daemons:
                        inside.append(_line(proc, f"in {lab[proc.pid]}"))
                    continue
                why = self.reasons(proc, created, marks)
                if why:
                    here.append(_line(proc, ", ".join(why)))
            except (psutil.Error, OSError):
                continue
        return here, inside


# -- the journal and ansible-runner's events ------------------------------------------

def running_phase(journal: Path, release: str) -> str:
    """The phase of ``release`` running now ("after:X" between phases, "" before any)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as conn:
            rows = conn.execute(
                "SELECT p.name, p.state FROM phases p JOIN releases r ON r.id = p.release_id "
                "WHERE r.name = ? ORDER BY p.id", (release,)).fetchall()
    except sqlite3.Error:
        return ""
    running = [name for name, state in rows if state == "running"]
    if running:
        return str(running[-1])
    return f"after:{rows[-1][0]}" if rows else ""


class TaskEvents:
    """The tasks ansible-runner saw start in the runs of one relctl (new run folders)."""

    def __init__(self, runs: Path) -> None:
        self.runs = runs
        self.old = set(runs.iterdir()) if runs.exists() else set()
        self.parsed: set[Path] = set()
        self.started: list[tuple[str, str]] = []  # (run folder, task)

    def poll(self) -> None:
        if not self.runs.exists():
            return
        for run in sorted(set(self.runs.iterdir()) - self.old):
            events = run / "artifacts" / run.name / "job_events"
            if not events.is_dir():
                continue
            found = []
            for path in events.glob("*.json"):
                if path in self.parsed:
                    continue
                try:
                    event = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                self.parsed.add(path)
                if event.get("event") == "playbook_on_task_start":
                    found.append((event.get("counter", 0),
                                  event.get("event_data", {}).get("task", "")))
            self.started += [(run.name, task) for _, task in sorted(found)]

    def seen(self, run: str, task: str) -> bool:
        return any(f"-{run}-" in name and t == task for name, t in self.started)

    def last(self) -> str:
        return self.started[-1][1] if self.started else ""


# -- one moment -----------------------------------------------------------------------

def wait_for(moment: Moment, process: subprocess.Popen[str], journal: Path, release: str,
             events: TaskEvents) -> str:
    """Wait for the moment (then its delay); '' when reached, else why not."""
    deadline = time.monotonic() + MOMENT_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"relctl ended (exit {process.returncode}) before the moment"
        if moment.phase and running_phase(journal, release) == moment.phase:
            break
        if moment.task:
            events.poll()
            if events.seen(moment.run, moment.task):
                break
        time.sleep(0.05)
    else:
        return f"moment not reached in {MOMENT_TIMEOUT_S:.0f} s: SIGTERM sent then"
    time.sleep(moment.delay)
    return ""


def release_state(state: Path, release: str) -> tuple[str, dict[str, Any]]:
    result = subprocess.run([*RELCTL, "--state-dir", str(state), "show", release, "--json"],
                            capture_output=True, text=True, check=False, cwd=ROOT)
    if result.returncode != 0:
        return "-", {}
    shown = json.loads(result.stdout)
    return str(shown.get("state", "-")), shown


def watch(hosts: list[Host], items: list[str], seconds: float) -> list[str]:
    """Every change of an item on a host from now on, sampled every 2 s for ``seconds``."""
    start = time.monotonic()
    before = digest_hosts(hosts, items)
    changes = []
    tick = 1
    while time.monotonic() - start < seconds:
        time.sleep(max(0.0, start + tick * INTERVAL_S - time.monotonic()))
        now = digest_hosts(hosts, items)
        at = time.monotonic() - start
        for key, value in now.items():
            if value != before[key]:
                lines = differences(before[key], value)
                changes.append(f"+{at:.0f} s {key[0]} {key[1]}: " + "; ".join(lines[:4])
                               + (f" (+{len(lines) - 4} more)" if len(lines) > 4 else ""))
        before, tick = now, tick + 1
    return changes


def run_moment(number: int, moment: Moment, state: Path, folder: Path,
               copies: dict[str, dict[str, Any]], hosts: list[Host], watch_s: float) -> Outcome:
    manifest, release = manifest_for(folder, copies, number, moment)
    journal = state / "journal.sqlite"
    events = TaskEvents(state / "runs")
    outcome = Outcome(moment, number)
    logs = state / "bench-logs"
    logs.mkdir(exist_ok=True)
    stderr = (logs / f"{release}.stderr").open("w")
    sent = 0.0
    process = subprocess.Popen([*RELCTL, "--state-dir", str(state), "apply", str(manifest),
                                "--yes", "--json"], stdout=subprocess.PIPE, stderr=stderr,
                               text=True, cwd=ROOT, start_new_session=True)
    watched = Release(process.pid, psutil.Process(process.pid).create_time(), state,
                      Descendants(process.pid))
    watched.descendants.start()
    try:
        outcome.note = wait_for(moment, process, journal, release, events)
        signalled = process.poll() is None
        if signalled:
            events.poll()
            outcome.phase = running_phase(journal, release) or "before any phase"
            if outcome.phase.startswith("apply:"):
                outcome.phase += f" ({events.last()})"
            sent = time.monotonic()
            process.send_signal(signal.SIGTERM)
            outcome.at_signal = len(watched.left(hosts)[0])
        try:
            out, _ = process.communicate(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()  # ours, by pid
            out, _ = process.communicate()
            outcome.note += f" relctl still ran {EXIT_TIMEOUT_S:.0f} s after SIGTERM: killed"
        outcome.exit_s = time.monotonic() - sent if signalled else 0.0
    finally:
        watched.descendants.stop.set()
        if process.poll() is None:
            process.kill()
            process.wait()
        stderr.close()
    outcome.exit_code = process.returncode
    outcome.seen = len(watched.descendants.seen)
    outcome.alive, outcome.on_hosts = watched.left(hosts)
    outcome.changes = watch(hosts, item_paths(copies), watch_s)
    here, inside = watched.left(hosts)
    outcome.alive_end = len(here) + len(inside)
    outcome.state, _shown = release_state(state, release)
    if outcome.state == "-" and out.strip():
        with contextlib.suppress(ValueError):
            outcome.state = str(json.loads(out).get("state", "-"))
    for *_rest, child_state in journal_children(journal, watched.pid):
        outcome.children[child_state] = outcome.children.get(child_state, 0) + 1
    return outcome


# -- the lab --------------------------------------------------------------------------

def lab_hosts(state: Path) -> tuple[list[Host], str]:
    status = relctl(state, "lab", "status")
    hosts = [Host(h["name"], h["address"], h["group"], int(h["pid"])) for h in status["hosts"]]
    return hosts, str(status["url"])


def serves(host: Host, version: str) -> bool:
    answer = http.request("GET", f"http://{host.address}:8080/version", timeout=5)
    return answer.status == 200 and answer.json() == {"version": version}


def ensure_base(state: Path, hosts: list[Host]) -> bool:
    """Every primary runs 1.2.0 (deployed again when one does not); True if deployed."""
    primaries = [h for h in hosts if h.group == "app_primary"]
    link = f"/srv/ledger/releases/{BASE_VERSION}"

    def ready() -> bool:
        for host in primaries:
            try:
                if os.readlink(host.root / "srv/ledger/current") != link:
                    return False
            except OSError:
                return False
            if not serves(host, BASE_VERSION):
                return False
        return True

    if ready():
        return False
    deploy_ledger(state, BASE_VERSION)
    deadline = time.monotonic() + 60
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"the primaries do not serve {BASE_VERSION} after a deploy")
        time.sleep(0.5)
    return True


# -- output ---------------------------------------------------------------------------

def report(outcomes: list[Outcome], watch_s: float) -> None:
    if not outcomes:
        print("no moment ran")
        return
    print(f"\n{'#':>2} {'moment':42} {'pb':2} {'phase at SIGTERM':44} {'exit':>4} "
          f"{'final state':12} {'exit s':>6} {'at sig':>6} {'alive':>5} {'in hosts':>8} "
          f"{f'changes {watch_s:.0f}s':>11}")
    for o in outcomes:
        print(f"{o.number:2d} {o.moment.name[:42]:42} {'y' if o.moment.in_playbook else 'n':2} "
              f"{o.phase[:44]:44} {o.exit_code if o.exit_code is not None else '-':>4} "
              f"{o.state[:12]:12} {o.exit_s:6.1f} {o.at_signal:6d} {len(o.alive):5d} "
              f"{len(o.on_hosts):8d} {len(o.changes):11d}")
    in_playbook = [o for o in outcomes if o.moment.in_playbook]
    landed = sum(1 for o in in_playbook if o.phase.startswith("apply:"))
    alive = sum(len(o.alive) for o in outcomes)
    inside = sum(len(o.on_hosts) for o in outcomes)
    changes = sum(len(o.changes) for o in outcomes)
    print(f"\ntotals over {len(outcomes)} moments ({len(in_playbook)} meant during a playbook, "
          f"{landed} landed in an apply phase):")
    print(f"  processes of the release alive after relctl exited: {alive} "
          f"(in {sum(1 for o in outcomes if o.alive)} moments); inside the hosts: {inside} "
          f"(in {sum(1 for o in outcomes if o.on_hosts)} moments); alive at the window's "
          f"end: {sum(o.alive_end for o in outcomes)}")
    print(f"  changes on any host in the {watch_s:.0f} s after exit: {changes} "
          f"(in {sum(1 for o in outcomes if o.changes)} moments)")
    print(f"  processes of the release found right after SIGTERM: "
          f"{sum(o.at_signal for o in outcomes)}; relctl descendants sampled while it ran: "
          f"{sum(o.seen for o in outcomes)}")
    print(f"  seconds from SIGTERM to exit: max {max(o.exit_s for o in outcomes):.1f}")
    print("  journal children by state: " + ", ".join(
        f"{k} {v}" for k, v in sorted(_sum_children(outcomes).items())))
    for o in outcomes:
        lines = ([f"note: {o.note.strip()}"] if o.note else []) + [
            f"alive: {a}" for a in o.alive] + [f"in a host: {a}" for a in o.on_hosts] + [
            f"changed: {c}" for c in o.changes]
        if lines:
            print(f"\n{o.number}. {o.moment.name}")
            for line in lines:
                print(f"   {line}")


def _sum_children(outcomes: list[Outcome]) -> dict[str, int]:
    total: dict[str, int] = {}
    for o in outcomes:
        for key, value in o.children.items():
            total[key] = total.get(key, 0) + value
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watch", type=float, default=60.0,
                        help="seconds to watch the hosts after relctl exits (default 60)")
    parser.add_argument("--only", default="",
                        help="moments to run, e.g. 1,5,10 (default: all 10)")
    parser.add_argument("--slow", type=int, default=15,
                        help="seconds of the bench playbook's slow task (default 15)")
    args = parser.parse_args()
    chosen = [int(n) for n in args.only.split(",") if n] or list(range(1, len(MOMENTS) + 1))
    state = fresh_state_dir("sigterm-moments")
    folder = Path(tempfile.mkdtemp(prefix="relctl-sigterm-"))
    copies = write_manifests(folder, args.slow)
    outcomes = []
    started = time.monotonic()
    relctl(state, "lab", "up", "--primary", "2", "--backup", "0", "--base-address",
           BASE_ADDRESS, *LEDGER)
    try:
        hosts, _url = lab_hosts(state)
        ensure_base(state, hosts)
        cross_check(hosts)
        for number in chosen:
            moment = MOMENTS[number - 1]
            deployed = ensure_base(state, hosts)
            print(f"[{time.monotonic() - started:6.0f} s] {number}. {moment.name}"
                  + (" (1.2.0 deployed again first)" if deployed else ""), flush=True)
            outcome = run_moment(number, moment, state, folder, copies, hosts, args.watch)
            outcomes.append(outcome)
            print(f"         phase {outcome.phase}, exit {outcome.exit_code}, "
                  f"{outcome.state}, alive {len(outcome.alive)}+{len(outcome.on_hosts)}, "
                  f"changes {len(outcome.changes)} {outcome.note}", flush=True)
    finally:
        down = subprocess.run([*RELCTL, "--state-dir", str(state), "lab", "down"],
                              check=False, capture_output=True, text=True)
        if down.returncode != 0:
            print(f"lab down failed: {down.stderr[-1000:]}", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)
    report(outcomes, args.watch)
    print(f"\nwall time {time.monotonic() - started:.0f} s; relctl state dir {state}")


if __name__ == "__main__":
    main()
