"""The release journal: a crash-safe record of every release, in an SQLite file or in a
PostgreSQL database that controllers on several machines share.

    Journal(target)                         open or create it (migrated); target: a path,
                                            sqlite:PATH or postgresql://… (``backends``)
    ├── releases   start_release, set_release_state, mark_bad, release, find_release,
    │              history, last_good_release, unfinished_releases, log, events
    ├── steps      begin_phase/end_phase, set_host_state, add_snapshot, add_gate_result
    │              (and their readers)
    ├── signoffs   add_signoff, signoffs, request_signoff, signoff_request: a sign-off
    │              approves one manifest text (sha256) in one environment
    ├── locks      acquire_lock, release_lock, lock_status, locks, holder_state,
    │              break_lock (on PostgreSQL, backed by session advisory locks)
    ├── continuity begin_continuity/end_continuity, continuity_records, last_replication
    ├── monitoring claim_monitor/end_monitor, begin_round/end_round, monitors,
    │              monitor_rounds (warranty monitoring after a release)
    └── children   add_child, child_running, child_ended, open_children, children: every
                   process relctl starts, recorded before it starts
    copy_journal   copy every row of one journal into another, empty one, checking counts

Each step is written before it starts and after it ends, so a crash leaves a record that
``unfinished_releases`` finds. Secrets are masked by ``redact`` before anything is stored.
"""

from __future__ import annotations

from controller.journal.copy import CopyReport, copy_journal
from controller.journal.db import SCHEMA_VERSION
from controller.journal.errors import (
    JournalDatabaseError,
    JournalError,
    JournalUnreachableError,
    LockedError,
    UnusableJournalError,
)
from controller.journal.identity import Liveness, current_holder
from controller.journal.locations import describe, mask_url
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
from controller.journal.redaction import mask_secrets, redact
from controller.journal.releases import MAX_RECORD_ID, is_record_id
from controller.journal.store import Journal

__all__ = [
    "FINAL_STATES",
    "MAX_RECORD_ID",
    "SCHEMA_VERSION",
    "ChildRecord",
    "ChildState",
    "ContinuityKind",
    "ContinuityRecord",
    "CopyReport",
    "EventRecord",
    "GateKind",
    "GateRecord",
    "Holder",
    "HostState",
    "HostStateRecord",
    "Journal",
    "JournalDatabaseError",
    "JournalError",
    "JournalUnreachableError",
    "Liveness",
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
    "copy_journal",
    "current_holder",
    "describe",
    "is_record_id",
    "mask_secrets",
    "mask_url",
    "redact",
]
