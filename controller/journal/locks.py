"""One release at a time per environment: a row in ``locks``, taken in one transaction."""

from __future__ import annotations

from controller.journal.db import JournalBase, iso, transaction
from controller.journal.errors import LockedError
from controller.journal.identity import Liveness, current_holder, liveness
from controller.journal.records import Holder, LockRecord


class LockTable(JournalBase):
    """Acquire, release, inspect and break environment locks."""

    def acquire_lock(self, environment: str, release: str,
                     holder: Holder | None = None) -> LockRecord:
        """Lock ``environment`` for ``release``; ``LockedError`` if someone holds it.

        Taking a lock this very holder already holds for the same release is a no-op.
        """
        who = holder or current_holder()
        with transaction(self._conn):
            inserted = self._conn.execute(
                "INSERT INTO locks (environment, release, holder_user, holder_host, holder_pid,"
                " holder_started, acquired) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (environment) DO NOTHING",
                (environment, release, who.user, who.host, who.pid, who.started, self._now()),
            ).rowcount
            lock = self.lock_status(environment)
        if lock is None:  # cannot happen inside the transaction; keeps mypy honest
            raise LockedError(f"the lock on {environment!r} vanished while being taken")
        if inserted or (lock.release == release and lock.holder == who):
            if inserted:
                self.log(None, f"lock on {environment} acquired for {release} by {who}")
            return lock
        state = liveness(lock.holder)
        raise LockedError(_held_message(lock), hint=_held_hint(lock, state))

    def release_lock(self, environment: str, release: str) -> bool:
        """Give up ``release``'s lock on ``environment``; False if it held none."""
        cursor = self._write("DELETE FROM locks WHERE environment = ? AND release = ?",
                             (environment, release))
        if cursor.rowcount:
            self.log(None, f"lock on {environment} released by {release}")
        return bool(cursor.rowcount)

    def lock_status(self, environment: str) -> LockRecord | None:
        """Who holds ``environment``, or None when it is free."""
        row = self._row("SELECT * FROM locks WHERE environment = ?", (environment,))
        return LockRecord.from_row(row) if row is not None else None

    def locks(self) -> list[LockRecord]:
        """Every lock held, by environment."""
        return [LockRecord.from_row(r)
                for r in self._rows("SELECT * FROM locks ORDER BY environment")]

    def break_lock(self, environment: str, *, force: bool = False) -> LockRecord | None:
        """Remove a stale lock: its holder died or its pid was reused, on this host.

        Refuses (``LockedError``) while the holder still runs, or when it ran on another
        host, unless ``force``. Returns the lock removed, or None when there was none.
        """
        lock = self.lock_status(environment)
        if lock is None:
            return None
        state = liveness(lock.holder)
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
        how = "forced" if state != "gone" else "holder gone"
        self.log(None, f"lock on {environment} held by {lock.release} ({lock.holder}) "
                       f"broken ({how})")
        return lock


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
