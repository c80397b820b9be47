"""Run playbooks through ansible-runner and turn its dicts into typed results.

This is the only module that imports ``ansible_runner``. It is also where relctl's rules
for what reaches Ansible hold:

- every extra variable is data: written with YAML's ``!unsafe`` tag (Ansible never
  templates it, whatever text a manifest puts there) to a 0600 file in the run's private
  folder, passed as ``-e @file`` (never on the command line, where ``ps`` shows it) and
  removed when the run ends;
- the user's Ansible and SSH settings win: relctl does not add ansible-runner's
  ``ANSIBLE_HOST_KEY_CHECKING=False``; ansible-playbook gets the controller's
  environment (a playbook may read a ``password_env`` there) but not relctl's journal URL;
- ansible-runner's ``command`` artifact records only the variables relctl or the runner
  set; the values the controller's environment holds (any password in it) are not kept.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.adapters.ansible_vars import extravars_file
from controller.adapters.children import ChildRecorder, owned_child, ssh_connections
from controller.adapters.connections import settings_key
from controller.adapters.launcher import PROGRAM_ENV
from controller.errors import InputError, PrerequisiteError
from controller.paths import tools_path

CUT_SHORT = ("canceled", "timeout")  # ansible-runner's statuses of a run it stopped
# Set by ansible-runner when the environment lacks it; it would override the user's
# ansible.cfg (``host_key_checking = True``) and turn host key checking off.
HOST_KEY_CHECKING = "ANSIBLE_HOST_KEY_CHECKING"
# relctl's own secrets, which no playbook needs: the journal URL (``JOURNAL_ENV`` of
# engine/environment.py), with its password.
WITHHELD = ("RELCTL_JOURNAL",)
NOT_RECORDED = "(from the controller's environment: not recorded)"
HOST_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


@dataclass(frozen=True)
class TaskEvent:
    """One task finished on one host."""

    host: str
    task: str
    outcome: str  # ok | failed | unreachable | skipped
    changed: bool
    message: str = ""
    stdout: str = ""  # the task's stdout (relctl's agent replies on it)
    diff: str = ""  # what the task changed or would change (``--diff``), as text


@dataclass
class HostOutcome:
    """The end state of one host after a playbook run."""

    ok: int = 0
    changed: int = 0
    failed: bool = False
    unreachable: bool = False
    messages: list[str] = field(default_factory=list)


@dataclass
class PlaybookResult:
    """What a playbook run did, per host."""

    ident: str
    status: str
    rc: int
    seconds: float
    artifact_dir: Path
    hosts: dict[str, HostOutcome]
    stopped: list[int] = field(default_factory=list)  # pids it left that relctl stopped
    # Cut short: the ssh connections relctl held then (``stop_sessions`` on the hosts).
    connections: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)  # the hosts of ``--limit``, if any

    @property
    def matched_none(self) -> bool:
        """The run was limited to hosts and no play matched any of them (Ansible says
        "skipping: no hosts matched" and exits 0): nothing was deployed."""
        return bool(self.asked) and not set(self.asked) & set(self.hosts)

    @property
    def cancelled(self) -> bool:
        return self.status in CUT_SHORT

    @property
    def succeeded(self) -> bool:
        return (self.rc == 0 and self.status == "successful" and not self.failed_hosts
                and not self.matched_none)

    @property
    def failed_hosts(self) -> list[str]:
        return sorted(n for n, h in self.hosts.items() if h.failed or h.unreachable)


EventCallback = Callable[[TaskEvent], None]


@dataclass(frozen=True)
class PlaybookRun:
    """Everything needed to run one playbook."""

    playbook: Path
    inventory: Path
    ansible_cfg: Path
    runs_dir: Path
    extravars: dict[str, Any] = field(default_factory=dict)
    limit: str | None = None
    check: bool = False
    label: str = "run"
    children: ChildRecorder | None = None  # journals ansible-playbook before it starts
    # Asked between events: True cancels the run (ansible-runner's own SIGTERM/SIGINT
    # handlers, which it would install for good otherwise, stay out of relctl).
    cancel: Callable[[], bool] | None = None
    strategy: str = "linear"  # "mitogen": Mitogen for Ansible's mitogen_linear strategy


def run_playbook(run: PlaybookRun, on_event: EventCallback | None = None) -> PlaybookResult:
    """Run ``run.playbook`` with its own ident and artifact dir; collect per-host results.

    ansible-playbook runs under relctl's launcher (``adapters/launcher.py``): it dies with
    the controller, and with ``run.children`` it is journaled before it starts."""
    ident = f"{time.strftime('%Y%m%dT%H%M%S')}-{run.label}-{uuid.uuid4().hex[:6]}"
    hosts: dict[str, HostOutcome] = {}
    private = run.runs_dir / ident
    private.mkdir(mode=0o700, parents=True, exist_ok=True)
    started = time.monotonic()
    with owned_child(run.children, run.label, "ansible-playbook") as child, \
            extravars_file(private, run.extravars) as extravars:

        def handler(event: dict[str, Any]) -> bool:
            child.seen()
            parsed = _task_event(event)
            if parsed is not None:
                _record(hosts.setdefault(parsed.host, HostOutcome()), parsed)
                if on_event is not None:
                    on_event(parsed)
            return True

        def cancel() -> bool:
            """Asked between events; before ansible-runner kills the launcher's group (and
            the ssh connections with it), note them: what they ran is stopped on hosts."""
            if run.cancel is None or not run.cancel():
                return False
            child.connections = ssh_connections()
            return True

        explicit = {**_environment(run), **child.env, PROGRAM_ENV: "ansible-playbook"}
        import ansible_runner  # noqa: PLC0415 - 0.14 s at import: only for a playbook run

        config = ansible_runner.RunnerConfig(
            private_data_dir=str(private),
            ident=ident,
            playbook=str(run.playbook),
            inventory=str(run.inventory),
            limit=run.limit,
            # With a `binary`, ansible-runner passes no playbook argument: we name it.
            cmdline=shlex.join([*(["-e", f"@{extravars}"] if extravars else []),
                                *(["--check", "--diff"] if run.check else []),
                                str(run.playbook)]),
            binary=child.binary(run.runs_dir),
            envvars=explicit,
            quiet=True,
            suppress_env_files=True,
        )
        config.prepare()
        config.env = child_environment(config.env, explicit, os.environ)
        runner = ansible_runner.Runner(config, event_handler=handler, cancel_callback=cancel,
                                       status_handler=_unrecorded_environment(explicit))
        runner.run()
        child.exit_code = int(runner.rc if runner.rc is not None else -1)
        child.cut_short = str(runner.status) in CUT_SHORT
    return PlaybookResult(
        ident=ident,
        status=str(runner.status),
        rc=child.exit_code,
        seconds=time.monotonic() - started,
        artifact_dir=private / "artifacts" / ident,
        hosts=hosts,
        stopped=child.stopped,
        connections=child.connections,
        asked=[h for h in (run.limit or "").split(",") if h],
    )


def playbook_hosts(playbook: Path, inventory: Path, ansible_cfg: Path, limit: list[str],
                   extravars: Mapping[str, Any], runs_dir: Path) -> list[str]:
    """The hosts of ``limit`` that some play of ``playbook`` targets, as ``ansible-playbook
    --list-hosts`` resolves them (no host is contacted, no task runs); ``InputError``
    when Ansible cannot read the playbook."""
    runs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "ANSIBLE_CONFIG": str(ansible_cfg), "PATH": tools_path()}
    env = {k: v for k, v in env.items() if k not in WITHHELD}
    private = Path(tempfile.mkdtemp(prefix="list-hosts-", dir=runs_dir))
    try:
        with extravars_file(private, dict(extravars)) as extra:
            result = subprocess.run(
                ["ansible-playbook", "--list-hosts", "-i", str(inventory), "--limit",
                 ",".join(limit), *(["-e", f"@{extra}"] if extra else []), str(playbook)],
                capture_output=True, text=True, env=env, check=False, timeout=120)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    if result.returncode != 0:
        found = list(ANSIBLE_ERROR.finditer(result.stderr + result.stdout))
        text = plain_text((result.stderr + result.stdout)[found[-1].start():] if found
                          else result.stderr)
        raise InputError(f"ansible-playbook cannot list the hosts of {playbook}: "
                         + " ".join(text.split())[:600])
    return listed_hosts(result.stdout, limit)


def listed_hosts(output: str, limit: list[str]) -> list[str]:
    """The hosts of ``limit`` named under a ``hosts (N):`` line of ``--list-hosts``."""
    found: set[str] = set()
    lines = output.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"\s*hosts \((\d+)\):\s*$", line)
        if match:
            found.update(name.strip() for name in lines[index + 1:index + 1 + int(match[1])])
    return [host for host in limit if host in found]


def child_environment(prepared: Mapping[str, str], explicit: Mapping[str, str],
                      controller: Mapping[str, str]) -> dict[str, str]:
    """ansible-playbook's environment: ``prepared`` (the controller's environment with
    relctl's and ansible-runner's settings) less ansible-runner's host key default (unless
    the controller or relctl set it on purpose) and relctl's ``WITHHELD`` secrets."""
    env = {k: v for k, v in prepared.items() if k not in WITHHELD or k in explicit}
    if HOST_KEY_CHECKING not in controller and HOST_KEY_CHECKING not in explicit:
        env.pop(HOST_KEY_CHECKING, None)
    return env


def recorded_environment(env: Mapping[str, str], explicit: Mapping[str, str],
                         controller: Mapping[str, str]) -> dict[str, str]:
    """``env`` as the run's artifacts may keep it: what relctl or the runner set, and
    only the names of what came from the controller's environment."""
    return {k: v if k in explicit or controller.get(k) != v else NOT_RECORDED
            for k, v in env.items()}


def _unrecorded_environment(explicit: Mapping[str, str]) -> Callable[..., None]:
    """A status handler: once ansible-runner wrote its ``command`` file (with the whole
    environment), and before ansible-playbook starts ("running"), rewrite the file
    without the values that came from the controller's environment."""

    def handler(status: dict[str, Any], runner_config: Any = None) -> None:
        if status.get("status") != "running" or runner_config is None:
            return
        path = Path(runner_config.artifact_dir) / "command"
        if path.is_file() and not path.is_symlink():
            record = json.loads(path.read_text(encoding="utf-8"))
            record["env"] = recorded_environment(record.get("env") or {}, explicit, os.environ)
            path.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")

    return handler


def _environment(run: PlaybookRun) -> dict[str, str]:
    return {"ANSIBLE_CONFIG": str(run.ansible_cfg), "PATH": tools_path(),
            **strategy_environment(run.strategy)}


def strategy_environment(strategy: str) -> dict[str, str]:
    """ansible-playbook's settings for a ``playbooks.strategy`` (none for Ansible's own
    linear); ``PrerequisiteError`` when it needs Mitogen and Mitogen is not installed."""
    if strategy != "mitogen":
        return {}
    return {"ANSIBLE_STRATEGY": "mitogen_linear",
            "ANSIBLE_STRATEGY_PLUGINS": str(mitogen_strategy_plugins())}


def mitogen_strategy_plugins() -> Path:
    """The strategy plugins of Mitogen for Ansible installed beside relctl (ansible-playbook
    runs from relctl's own environment); ``PrerequisiteError`` when it is not there."""
    spec = importlib.util.find_spec("ansible_mitogen")
    folder = (Path(spec.origin).parent / "plugins" / "strategy"
              if spec is not None and spec.origin else None)
    if folder is None or not (folder / "mitogen_linear.py").is_file():
        raise PrerequisiteError(
            "playbooks.strategy: mitogen needs Mitogen for Ansible installed beside relctl",
            hint="pipx inject relctl mitogen (in a virtualenv: pip install 'relctl[mitogen]'),"
                 " or leave playbooks.strategy out")
    return folder


def list_hosts(inventory: Path, ansible_cfg: Path, pattern: str) -> list[str]:
    """The inventory hosts matching ``pattern``, as Ansible resolves them (empty if none).

    A pattern that starts with ``-`` would be read as an option: refused."""
    if pattern.startswith("-") or not pattern.strip():
        raise InputError(f"invalid host pattern {pattern!r}: it cannot start with '-'")
    env = {**os.environ, "ANSIBLE_CONFIG": str(ansible_cfg), "PATH": tools_path()}
    result = subprocess.run(["ansible", "--list-hosts", "-i", str(inventory), "--", pattern],
                            capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        return []
    return [line.strip() for line in result.stdout.splitlines()[1:] if line.strip()]


@dataclass(frozen=True)
class Inventory:
    """Every group (with the hosts of its children) and every host's address."""

    groups: dict[str, list[str]]
    addresses: dict[str, str]
    hostvars: dict[str, dict[str, Any]] = field(default_factory=dict)


# read_inventory's answers in this process: (inventory, ansible.cfg, their settings key)
# -> (when read, the answer). A release reads the inventory for each gate of each batch.
_READ: dict[tuple[Path, Path, str], tuple[float, Inventory]] = {}
READ_FRESH_S = 300.0  # a dynamic inventory (a script, a plugin) is asked again after this


def read_inventory(inventory: Path, ansible_cfg: Path) -> Inventory:
    """The inventory as ``ansible-inventory --list`` resolves it (no host is contacted);
    asked again when the inventory's files, ansible.cfg or ``ANSIBLE_*`` change, or
    ``READ_FRESH_S`` after it was last asked."""
    key = (inventory, ansible_cfg, settings_key(inventory, ansible_cfg))
    known = _READ.get(key)
    if known is not None and time.monotonic() - known[0] < READ_FRESH_S:
        return known[1]
    found = _read_inventory(inventory, ansible_cfg)
    if found.groups:  # a failed read is never kept
        _READ[key] = (time.monotonic(), found)
    return found


def _read_inventory(inventory: Path, ansible_cfg: Path) -> Inventory:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ansible_cfg), "PATH": tools_path()}
    result = subprocess.run(["ansible-inventory", "-i", str(inventory), "--list"],
                            capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        return Inventory({}, {})
    data = json.loads(result.stdout)
    hostvars = _plain(data.get("_meta", {}).get("hostvars", {}))

    def members(group: str, seen: frozenset[str] = frozenset()) -> list[str]:
        node = data.get(group) or {}
        hosts = list(node.get("hosts", []))
        for child in node.get("children", []):
            if child not in seen:
                hosts += [h for h in members(child, seen | {group}) if h not in hosts]
        return hosts

    groups = {name: members(name) for name in data if name != "_meta"}
    addresses = {h: str(v.get("ansible_host", h)) for h, v in hostvars.items()}
    for host in {h for hosts in groups.values() for h in hosts}:
        addresses.setdefault(host, host)
    return Inventory(groups, addresses, hostvars)


def _plain(value: Any) -> Any:
    """``value`` with ansible-inventory's ``{"__ansible_unsafe": text}`` as the text."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


ANSIBLE_ERROR = re.compile(r"^(ERROR!|\[ERROR\]:)", re.MULTILINE)  # older | newer ansible-core
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def plain_text(text: str) -> str:
    """``text`` without terminal colour and cursor codes."""
    return ANSI.sub("", text)


def failure_summary(result: PlaybookResult) -> str:
    """Why the run failed, for people: each failed task's host, name and message, or
    Ansible's own error when it stopped before any task (a YAML error, a missing file);
    then where the whole output is. No terminal codes."""
    messages = [f"{name}: {m}" for name, h in sorted(result.hosts.items()) for m in h.messages]
    stdout = result.artifact_dir / "stdout"
    where = f" (full output: {stdout})" if stdout.exists() else ""
    if result.matched_none and result.rc == 0:
        return (f"no play matched {', '.join(result.asked)}: nothing ran there (check the "
                "plays' hosts: patterns against the inventory's groups)" + where)
    if messages:
        return plain_text("; ".join(messages))[:1500] + where
    text = plain_text(stdout.read_text(errors="replace")) if stdout.exists() else ""
    found = list(ANSIBLE_ERROR.finditer(text))
    lines = (text[found[-1].start():] if found else text).strip().splitlines()
    head = " ".join(line.strip() for line in lines[:12] if line.strip())
    return (head[:800] or f"ansible-playbook ended with {result.status}, exit {result.rc}"
            ) + where


def _task_event(event: dict[str, Any]) -> TaskEvent | None:
    outcome = HOST_EVENTS.get(str(event.get("event", "")))
    data = event.get("event_data") or {}
    if outcome is None or "host" not in data:
        return None
    res = data.get("res") or {}
    ignored = bool(data.get("ignore_errors")) and outcome == "failed"
    return TaskEvent(
        host=str(data["host"]),
        task=str(data.get("task", "")),
        outcome="ok" if ignored else outcome,
        changed=bool(res.get("changed", False)) if isinstance(res, dict) else False,
        message=_message(res) if outcome in ("failed", "unreachable") and not ignored else "",
        stdout=str(res.get("stdout") or "") if isinstance(res, dict) else "",
        diff=_diff_text(res.get("diff")) if isinstance(res, dict) else "",
    )


def _diff_text(diff: Any) -> str:
    """A task's ``--diff`` record (a dict or a list of them) as unified text."""
    parts = diff if isinstance(diff, list) else [diff] if isinstance(diff, dict) else []
    out = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if part.get("prepared"):
            out.append(str(part["prepared"]))
        elif "before" in part or "after" in part:
            where = part.get("after_header") or part.get("before_header") or ""
            out.append(f"--- before {where}\n{part.get('before', '')}\n"
                       f"+++ after {where}\n{part.get('after', '')}")
    return plain_text("\n".join(out))[:4000]


def _message(res: Any) -> str:
    if not isinstance(res, dict):
        return str(res)[:500]
    parts = [str(res.get(key) or "").strip() for key in ("msg", "stderr", "stdout")]
    return plain_text(" | ".join(p[-400:] for p in parts if p))


def _record(outcome: HostOutcome, event: TaskEvent) -> None:
    if event.outcome == "ok":
        outcome.ok += 1
        outcome.changed += int(event.changed)
    elif event.outcome == "failed":
        outcome.failed = True
    elif event.outcome == "unreachable":
        outcome.unreachable = True
    if event.message:
        outcome.messages.append(f"{event.task}: {event.message}")
