"""Sign-offs as data: which required roles have approved a release, and which are missing.

The manifest's ``signoff.required`` names the roles its environment requires; the
journal holds who signed what (``relctl signoff``). A sign-off approves one manifest text
(its sha256) for one environment: one of another text or environment is *stale* and
counts for nothing. Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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
    environment: str | None = None  # what was signed; None: an old, unbound sign-off
    sha256: str | None = None

    def approves(self, environment: str, sha256: str) -> bool:
        """True when this sign-off is of manifest text ``sha256`` for ``environment``."""
        return self.environment == environment and self.sha256 == sha256

    def signed_what(self) -> str:
        """What it approved, for messages."""
        if self.sha256 is None:
            return "no manifest (recorded before sign-offs named one)"
        return f"manifest sha256 {self.sha256[:12]} for {self.environment}"


@dataclass(frozen=True)
class SignoffStatus:
    """Where a release stands against the roles its environment requires."""

    release: str
    required: list[str]
    approvals: list[Approval]
    missing: list[str]
    stale: list[Approval] = field(default_factory=list)  # of another text or environment

    @property
    def complete(self) -> bool:
        """True when every required role has signed."""
        return not self.missing


def missing_roles(required: Sequence[str], signed: Iterable[str]) -> list[str]:
    """The required roles (in their order, once each) that nobody has signed as."""
    have = set(signed)
    return [role for role in dict.fromkeys(required) if role not in have]


def signoff_status(release: str, required: Sequence[str], approvals: Sequence[Approval],
                   bound_to: tuple[str, str] | None = None) -> SignoffStatus:
    """``release``'s approvals against ``required``, and what is still missing; with
    ``bound_to`` (environment, manifest sha256) only the approvals of that count."""
    valid = [a for a in approvals if bound_to is None or a.approves(*bound_to)]
    stale = [a for a in approvals if a not in valid]
    return SignoffStatus(release, list(dict.fromkeys(required)), valid,
                         missing_roles(required, (a.role for a in valid)), stale)


def sign_command(release: str, role: str) -> str:
    """The command that records ``role``'s sign-off of ``release``."""
    return f"relctl signoff {release} --role {role} --by NAME"


def refusal(release: str, environment: str, missing: Sequence[str],
            waited_s: float | None, stale: Sequence[Approval] = ()) -> tuple[str, str]:
    """Why ``apply`` refuses, and how to fix it: (message, hint)."""
    message = (f"{release} may not be applied to {environment}: no sign-off by "
               f"{', '.join(missing)} of this manifest")
    outdated = [a for a in stale if a.role in missing]
    if outdated:
        message += "; " + "; ".join(f"{a.role} signed {a.signed_what()}, not this one"
                                    for a in outdated)
    if waited_s:
        message += f" (waited {format_duration(waited_s)} for approval: counts as denied)"
    hint = "record each sign-off, then apply again:\n" + "\n".join(
        f"  {sign_command(release, role)}" for role in missing)
    return message, hint


def poll_interval(wait_s: float) -> float:
    """How often to look for new sign-offs during a wait of ``wait_s`` seconds."""
    return min(POLL_MAX_S, max(POLL_MIN_S, wait_s / 20))
