"""The release journal: a crash-safe record of every release, in one SQLite file.

    Journal(path)                           open or create it (WAL, migrated)
    ├── releases   start_release, set_release_state, mark_bad, release, find_release,
    │              history, last_good_release, unfinished_releases, log, events
    ├── steps      begin_phase/end_phase, set_host_state, add_snapshot, add_gate_result
    │              (and their readers)
    ├── signoffs   add_signoff, signoffs, request_signoff, signoff_request: a sign-off
    │              approves one manifest text (sha256) in one environment
    ├── locks      acquire_lock, release_lock, lock_status, locks, break_lock
    ├── continuity begin_continuity/end_continuity, continuity_records, last_replication
    ├── monitoring claim_monitor/end_monitor, begin_round/end_round, monitors,
    │              monitor_rounds (warranty monitoring after a release)
    └── children   add_child, child_running, child_ended, open_children, children: every
                   process relctl starts, recorded before it starts

Each step is written before it starts and after it ends, so a crash leaves a record that
``unfinished_releases`` finds. Secrets are masked by ``redact`` before anything is stored.
"""

from __future__ import annotations

from controller.journal.db import SCHEMA_VERSION
from controller.journal.errors import JournalError, LockedError, UnusableJournalError
from controller.journal.identity import current_holder
from controller.journal.records import (
    FINAL_STATES,
    ChildRecord,
    ChildState,
    ContinuityKind,
    ContinuityRecord,
    EventRecord,
    GateKind,
    GateRecord,
    Holder,
    HostState,
    HostStateRecord,
    LockRecord,
    ManifestRef,
    MonitorRecord,
    MonitorRoundRecord,
    MonitorState,
    MonitorVerdict,
    PhaseRecord,
    PhaseState,
    ReleaseRecord,
    ReleaseState,
    SignoffRecord,
    SignoffRequest,
    SnapshotRecord,
    Verdict,
)
from controller.journal.redaction import redact
from controller.journal.store import Journal

__all__ = [
    "FINAL_STATES",
    "SCHEMA_VERSION",
    "ChildRecord",
    "ChildState",
    "ContinuityKind",
    "ContinuityRecord",
    "EventRecord",
    "GateKind",
    "GateRecord",
    "Holder",
    "HostState",
    "HostStateRecord",
    "Journal",
    "JournalError",
    "LockRecord",
    "LockedError",
    "ManifestRef",
    "MonitorRecord",
    "MonitorRoundRecord",
    "MonitorState",
    "MonitorVerdict",
    "PhaseRecord",
    "PhaseState",
    "ReleaseRecord",
    "ReleaseState",
    "SignoffRecord",
    "SignoffRequest",
    "SnapshotRecord",
    "UnusableJournalError",
    "Verdict",
    "current_holder",
    "redact",
]
