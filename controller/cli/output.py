"""Rendering shared by every command: rich for people, JSON for machines, errors to stderr."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from controller.adapters.ansible import TaskEvent
from controller.errors import InputError, RelctlError
from controller.journal.redaction import mask_secrets

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")


def progress_printer(as_json: bool) -> Callable[[str], None]:
    """Progress lines on stderr for people; silence under ``--json``."""
    if as_json:
        return lambda _message: None
    return print_progress


def print_progress(message: str) -> None:
    """One progress line on stderr."""
    # Messages carry outside text (task output, HTTP answers): never read it as markup.
    err_console.print(f"[dim]·[/] {escape(message)}")


def to_jsonable(value: Any) -> Any:
    """Dataclasses, paths and pydantic models as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return to_jsonable(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def emit_json(payload: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(json.dumps(to_jsonable(payload), indent=2) + "\n")
    sys.stdout.flush()


def report_error(error: RelctlError, *, as_json: bool) -> None:
    """Tell the user what failed and what to do; JSON on stdout too when asked.

    A message may quote input holding a credential (a journal URL that did not parse):
    every URL's user info and ``password=`` value is masked here, the last door out."""
    message = mask_secrets(error.message)
    hint = mask_secrets(error.hint) if error.hint else error.hint
    if as_json:
        emit_json(
            {
                "ok": False,
                "error": type(error).__name__,
                "message": message,
                "hint": hint,
                "exit_code": int(error.exit_code),
            }
        )
    # Messages quote input ("[/x]" in a manifest value): printed as text, never as markup.
    err_console.print(Text.assemble(("error:", "bold red"), " ", message))
    if hint:
        err_console.print(Text.assemble(("hint:", "dim"), " ", hint))


def write_output(path: Path, text: str) -> None:
    """Write a report or plan the user asked for with ``-o``; ``InputError`` when the file
    cannot be written (a missing folder, a folder, a path under /proc)."""
    try:
        path.write_text(text, encoding="utf-8")
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise InputError(f"cannot write {path}: {reason}",
                         hint="-o names a file in an existing folder") from error


class HostBoard:
    """A live table of every host's last task (rich), above which progress lines scroll.

    Only on a terminal and without ``--json``; elsewhere it is inert and progress goes
    out as plain lines, which logs and pipelines read better.
    """

    def __init__(self, enabled: bool) -> None:
        self.hosts: dict[str, list[str]] = {}
        self.live: Live | None = (Live(self._table(), console=err_console, transient=True,
                                       refresh_per_second=4) if enabled else None)

    @classmethod
    def for_terminal(cls, as_json: bool) -> HostBoard:
        return cls(not as_json and err_console.is_terminal)

    def __enter__(self) -> HostBoard:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def on_task(self, event: TaskEvent) -> None:
        row = self.hosts.setdefault(event.host, ["", "0", "0", "0"])
        row[0] = event.task
        column = {"ok": 1, "skipped": 1, "failed": 3, "unreachable": 3}[event.outcome]
        row[column] = str(int(row[column]) + 1)
        if event.changed and event.outcome == "ok":
            row[2] = str(int(row[2]) + 1)
        if self.live is not None:
            self.live.update(self._table())

    def _table(self) -> Table:
        table = Table("host", "last task", "ok", "changed", "failed", box=None)
        for host, (task, ok, changed, failed) in sorted(self.hosts.items()):
            table.add_row(host, escape(task[:60]), ok, changed,
                          f"[red]{failed}[/]" if failed != "0" else failed)
        return table
