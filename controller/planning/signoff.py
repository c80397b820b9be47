"""Sign-offs as data: which required roles have approved a release, and which are missing.

The manifest's ``signoff.required`` names the roles its environment requires; the
journal holds who signed what (``relctl signoff``). Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from controller.models.durations import format_duration

POLL_MIN_S = 0.25
POLL_MAX_S = 5.0


@dataclass(frozen=True)
class Approval:
    """One recorded sign-off."""

    role: str
    by: str
    time: datetime
    note: str = ""


@dataclass(frozen=True)
class SignoffStatus:
    """Where a release stands against the roles its environment requires."""

    release: str
    required: list[str]
    approvals: list[Approval]
    missing: list[str]

    @property
    def complete(self) -> bool:
        """True when every required role has signed."""
        return not self.missing


def missing_roles(required: Sequence[str], signed: Iterable[str]) -> list[str]:
    """The required roles (in their order, once each) that nobody has signed as."""
    have = set(signed)
    return [role for role in dict.fromkeys(required) if role not in have]


def signoff_status(release: str, required: Sequence[str],
                   approvals: Sequence[Approval]) -> SignoffStatus:
    """``release``'s approvals against ``required``, and what is still missing."""
    return SignoffStatus(release, list(dict.fromkeys(required)), list(approvals),
                         missing_roles(required, (a.role for a in approvals)))


def sign_command(release: str, role: str) -> str:
    """The command that records ``role``'s sign-off of ``release``."""
    return f"relctl signoff {release} --role {role} --by NAME"


def refusal(release: str, environment: str, missing: Sequence[str],
            waited_s: float | None) -> tuple[str, str]:
    """Why ``apply`` refuses, and how to fix it: (message, hint)."""
    message = (f"{release} may not be applied to {environment}: no sign-off by "
               f"{', '.join(missing)}")
    if waited_s:
        message += f" (waited {format_duration(waited_s)} for approval: counts as denied)"
    hint = "record each sign-off, then apply again:\n" + "\n".join(
        f"  {sign_command(release, role)}" for role in missing)
    return message, hint


def poll_interval(wait_s: float) -> float:
    """How often to look for new sign-offs during a wait of ``wait_s`` seconds."""
    return min(POLL_MAX_S, max(POLL_MIN_S, wait_s / 20))
