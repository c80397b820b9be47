"""``apply --dry-run``: the apply playbooks in check mode with diff; nothing changes.

Any non-zero ``ansible-playbook`` result (a parse error, an unreachable host, a failed
task) is exit 8 with its error; the would-be changes come per host, with their diffs, and
the time is the real one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from controller.adapters.ansible import PlaybookRun, TaskEvent, failure_summary, run_playbook
from controller.engine.cancel import Cancellation
from controller.engine.outcome import ReleaseOutcome
from controller.errors import ExitCode
from controller.models.manifest import Manifest
from controller.planning.release import ReleasePlan


def check_mode(manifest: Manifest, plan: ReleasePlan, cancel: Cancellation,
               on_event: Callable[[TaskEvent], None],
               run_for: Callable[[Path], PlaybookRun]) -> ReleaseOutcome:
    """Run each apply playbook in check mode (``run_for(playbook)``: its run, check=True);
    stop at a cancel. The outcome: exit 0 and the changes, or exit 8 and every error."""
    started = time.monotonic()
    changes: dict[str, list[dict[str, str]]] = {}

    def collect(event: TaskEvent) -> None:
        on_event(event)
        if event.changed:
            changes.setdefault(event.host, []).append({"task": event.task, "diff": event.diff})

    errors = []
    for playbook in manifest.playbooks.apply:
        result = run_playbook(run_for(playbook), collect)
        if not result.succeeded:
            errors.append(f"{playbook.name}: {failure_summary(result)}")
        if result.cancelled or cancel.requested():
            errors.append(cancel.reason or "cancelled")
            break
    message = ("check mode passed: " + changes_line(changes) if not errors else
               "check mode failed: " + "; ".join(errors))
    return ReleaseOutcome(manifest.release, None, "dry-run",
                          int(ExitCode.PLAYBOOK) if errors else 0, message, plan.hosts,
                          time.monotonic() - started, changes=changes)


def changes_line(changes: dict[str, list[dict[str, str]]]) -> str:
    """What a dry run would change, in one line."""
    if not changes:
        return "no host would change"
    return "would change " + ", ".join(f"{host} ({len(tasks)} tasks)"
                                       for host, tasks in sorted(changes.items()))
