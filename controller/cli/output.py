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
from rich.markup import escape

from controller.errors import RelctlError

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")


def progress_printer(as_json: bool) -> Callable[[str], None]:
    """Progress lines on stderr for people; silence under ``--json``."""
    if as_json:
        return lambda _message: None
    # Messages carry outside text (task output, HTTP answers): never read it as markup.
    return lambda message: err_console.print(f"[dim]·[/] {escape(message)}")


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
    """Tell the user what failed and what to do; JSON on stdout too when asked."""
    if as_json:
        emit_json(
            {
                "ok": False,
                "error": type(error).__name__,
                "message": error.message,
                "hint": error.hint,
                "exit_code": int(error.exit_code),
            }
        )
    err_console.print(f"[bold red]error:[/] {error.message}")
    if error.hint:
        err_console.print(f"[dim]hint:[/] {error.hint}")
