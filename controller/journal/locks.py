"""One release at a time per environment: a row in ``locks``, taken in one transaction.

The row names its holder (user, host, pid). Whether that holder still runs:

- **SQLite** (one machine): its process, by pid and create time; a holder on another
  host is ``unknown`` (never broken without ``--force``), a dead one is ``gone`` and its
  lock is broken by ``unlock`` or ``resume``.
- **PostgreSQL** (many machines): the holder's database session also holds a
  session-level advisory lock keyed by the row, which the server frees when that session
  ends, however the controller died and wherever it ran. So the holder is ``alive`` or
  ``gone`` from any machine, and the next ``acquire_lock`` takes a gone holder's lock
  over by itself (the journal logs whose it was; ``resume`` still rolls back what the
  dead release left). The row stays the one truth for who holds the lock: the advisory
  lock only says whether its holder lives, so a lock broken with ``--force`` while its
  holder runs cannot be held twice.
"""

from __future__ import annotations

import hashlib

from controller.journal.backends import Database
from controller.journal.db import JournalBase, iso
from controller.journal.errors import JournalError, LockedError
from controller.journal.identity import Liveness, current_holder, liveness
from controller.journal.records import Holder, LockRecord


class LockTable(JournalBase):
    """Acquire, release, inspect and break environment locks."""

    def acquire_lock(self, environment: str, release: str,
                     holder: Holder | None = None) -> LockRecord:
        """Lock ``environment`` for ``release``; ``LockedError`` if someone holds it.

        Taking a lock this very holder already holds for the same release is a no-op. On
        PostgreSQL, a lock whose holder's session ended is taken over.
        """
        who = holder or current_holder()
        stale: LockRecord | None = None
        with self._transaction() as db:
            inserted = self._insert_lock(db, environment, release, who)
            lock = self._current(db, environment)
            if not inserted and not _same(lock, release, who) and self._frees_itself(lock):
                stale = lock
                db.execute("DELETE FROM locks WHERE environment = ? AND release = ?"
                           " AND holder_pid = ? AND acquired = ?",
                           (environment, lock.release, lock.holder.pid, _stored(lock)))
                inserted = self._insert_lock(db, environment, release, who)
                lock = self._current(db, environment)
            if inserted:  # in the transaction: nobody sees the row before its session lock
                self._hold_session_lock(lock)
        if inserted:
            self._log_taken(lock, stale)
            return lock
        if _same(lock, release, who):
            return lock
        raise LockedError(_held_message(lock), hint=_held_hint(lock, self.holder_state(lock)))

    def release_lock(self, environment: str, release: str) -> bool:
        """Give up ``release``'s lock on ``environment``; False if it held none."""
        row = self._write("DELETE FROM locks WHERE environment = ? AND release = ? RETURNING *",
                          (environment, release)).first()
        if row is None:
            return False
        self._let_go(LockRecord.from_row(row))
        self.log(None, f"lock on {environment} released by {release}")
        return True

    def lock_status(self, environment: str) -> LockRecord | None:
        """Who holds ``environment``, or None when it is free."""
        row = self._row("SELECT * FROM locks WHERE environment = ?", (environment,))
        return LockRecord.from_row(row) if row is not None else None

    def locks(self) -> list[LockRecord]:
        """Every lock held, by environment."""
        return [LockRecord.from_row(r)
                for r in self._rows("SELECT * FROM locks ORDER BY environment")]

    def holder_state(self, lock: LockRecord) -> Liveness:
        """Whether a lock's holder still runs: ``alive``, ``gone``, or (SQLite, another
        host) ``unknown``."""
        local = liveness(lock.holder)
        session = self._db.session_locks()
        if session is None:
            return local
        return "gone" if local == "gone" or not session.held(lock_key(lock)) else "alive"

    def break_lock(self, environment: str, *, force: bool = False) -> LockRecord | None:
        """Remove a stale lock: its holder died or its pid was reused (SQLite: on this host).

        Refuses (``LockedError``) while the holder still runs, or when it is ``unknown``
        (SQLite: it ran on another host), unless ``force``. Returns the lock removed, or
        None when there was none.
        """
        lock = self.lock_status(environment)
        if lock is None:
            return None
        state = self.holder_state(lock)
        if state != "gone" and not force:
            raise LockedError(_refusal(lock, state), hint=_refusal_hint(lock, state))
        removed = self._write(
            "DELETE FROM locks WHERE environment = ? AND release = ? AND holder_pid = ?"
            " AND acquired = ?",
            (environment, lock.release, lock.holder.pid, _stored(lock)),
        ).rowcount
        if not removed:
            raise LockedError(f"the lock on {environment!r} changed while being broken",
                              hint="look at it again before breaking it")
        self._let_go(lock)
        how = "forced" if state != "gone" else "holder gone"
        self.log(None, f"lock on {environment} held by {lock.release} ({lock.holder}) "
                       f"broken ({how})")
        return lock

    # -- the rows and the session locks behind them ----------------------------------

    def _insert_lock(self, db: Database, environment: str, release: str, who: Holder) -> bool:
        return bool(db.execute(
            "INSERT INTO locks (environment, release, holder_user, holder_host, holder_pid,"
            " holder_started, acquired) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (environment) DO NOTHING RETURNING environment",
            (environment, release, who.user, who.host, who.pid, who.started, self._now()),
        ).rows)

    def _current(self, db: Database, environment: str) -> LockRecord:
        row = db.execute("SELECT * FROM locks WHERE environment = ?", (environment,)).first()
        if row is None:  # cannot happen inside the transaction; keeps mypy honest
            raise LockedError(f"the lock on {environment!r} vanished while being taken")
        return LockRecord.from_row(row)

    def _frees_itself(self, lock: LockRecord) -> bool:
        """Whether a held lock is free to take: its holder's session ended (PostgreSQL)."""
        return self._db.session_locks() is not None and self.holder_state(lock) == "gone"

    def _hold_session_lock(self, lock: LockRecord) -> None:
        session = self._db.session_locks()
        if session is not None and not session.hold(lock_key(lock)):
            raise JournalError(f"the session lock of {lock.environment!r} is taken by another "
                               "session: retry", hint="a key collision; it cannot last")

    def _let_go(self, lock: LockRecord) -> None:
        session = self._db.session_locks()
        if session is not None:
            session.release(lock_key(lock))

    def _log_taken(self, lock: LockRecord, stale: LockRecord | None) -> None:
        taken = f"lock on {lock.environment} acquired for {lock.release} by {lock.holder}"
        if stale is not None:
            taken += (f", taken over from {stale.release} ({stale.holder}), whose session "
                      "ended")
        self.log(None, taken)


def lock_key(lock: LockRecord) -> int:
    """The advisory lock key of one lock row (31 bits: PostgreSQL's ``pg_locks`` shows
    keys as unsigned oids, and a positive int4 reads back the same)."""
    text = "\0".join((lock.environment, lock.release, lock.holder.host, str(lock.holder.pid),
                      repr(lock.holder.started), _stored(lock)))
    digest = hashlib.blake2b(text.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def _same(lock: LockRecord, release: str, who: Holder) -> bool:
    return lock.release == release and lock.holder == who


def _stored(lock: LockRecord) -> str:
    return iso(lock.acquired)


def _since(lock: LockRecord) -> str:
    return lock.acquired.strftime("%Y-%m-%d %H:%M:%S UTC")


def _held_message(lock: LockRecord) -> str:
    holder = lock.holder
    return (f"environment {lock.environment!r} is locked by release {lock.release}: held by "
            f"{holder.user}@{holder.host}, pid {holder.pid}, since {_since(lock)}")


def _held_hint(lock: LockRecord, state: Liveness) -> str:
    if state == "gone":
        return (f"pid {lock.holder.pid} no longer runs on {lock.holder.host}: the lock is "
                "stale and may be broken")
    if state == "unknown":
        return f"the holder runs on {lock.holder.host}; wait for it or check there"
    return f"wait for release {lock.release} to finish"


def _refusal(lock: LockRecord, state: Liveness) -> str:
    if state == "unknown":
        return (f"will not break the lock on {lock.environment!r}: its holder ran on "
                f"{lock.holder.host}, where this machine cannot see whether pid "
                f"{lock.holder.pid} still runs")
    return (f"will not break the lock on {lock.environment!r}: its holder "
            f"{lock.holder} is still running release {lock.release} (since {_since(lock)})")


def _refusal_hint(lock: LockRecord, state: Liveness) -> str:
    where = f" on {lock.holder.host}" if state == "unknown" else ""
    return f"make sure pid {lock.holder.pid}{where} is gone or hung, then force it"
