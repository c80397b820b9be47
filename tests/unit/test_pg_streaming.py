"""PostgreSQL streaming: which standby a failover promotes (the one that received the most
WAL: the others can follow it), from the LSNs the standbys report."""

from __future__ import annotations

from controller.adapters.postgresql import Standby, lsn_number


def standby(host: str, replay: str | None, receive: str | None) -> Standby:
    return Standby(host, True, "streaming", "127.0.0.11:5432", replay, 0.0, None, receive)


def test_lsns_compare_as_positions_in_the_wal() -> None:
    assert lsn_number("0/0") == 0 and lsn_number(None) == 0 and lsn_number("") == 0
    assert lsn_number("1/0") == 1 << 32
    assert lsn_number("16/B374D848") == (0x16 << 32) + 0xB374D848
    # compared as text, "0/9" would come after "0/10"
    assert lsn_number("0/9000000") < lsn_number("0/10000000")
    assert lsn_number("0/FFFFFFFF") < lsn_number("1/0")


def test_the_standby_with_the_most_wal_is_the_one_to_promote() -> None:
    behind = standby("backup-1", "0/3000060", "0/3000060")
    ahead = standby("backup-2", "0/3000060", "0/3001000")  # received more, not replayed yet
    assert max([behind, ahead], key=lambda s: s.received).host == "backup-2"
    # a standby whose receiver stopped still counts what it replayed
    assert standby("backup-3", "0/4000000", None).received == lsn_number("0/4000000")
