"""What every command gets from the top-level options."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from rich.text import Text

from controller.cli.output import err_console
from controller.engine.environment import open_journal
from controller.journal import Journal
from controller.paths import private_state_dir


@dataclass(frozen=True)
class AppContext:
    """The state directory and the journal the user chose."""

    chosen_state_dir: Path
    journal_target: str | None  # --journal / $RELCTL_JOURNAL: a path or a URL

    @cached_property
    def state_dir(self) -> Path:
        """The state directory, made private (0700) on first use: a command that needs
        none (``plan`` without a lab, ``init``) creates none. ``InputError`` (exit 2) when
        another user owns it or may write to it."""
        for notice in private_state_dir(self.chosen_state_dir):
            err_console.print(Text.assemble(("notice:", "yellow"), " ", notice))
        return self.chosen_state_dir

    def journal(self) -> Journal:
        """Open the journal (created on first use; in the state directory unless
        --journal names another)."""
        if self.journal_target:
            return open_journal(self.chosen_state_dir, self.journal_target)
        return open_journal(self.state_dir)
