"""What every command gets from the top-level options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from controller.engine.environment import open_journal
from controller.journal import Journal


@dataclass(frozen=True)
class AppContext:
    """The state directory and the journal the user chose."""

    state_dir: Path
    journal_target: str | None  # --journal / $RELCTL_JOURNAL: a path or a URL

    def journal(self) -> Journal:
        """Open the journal (created on first use)."""
        return open_journal(self.state_dir, self.journal_target)
