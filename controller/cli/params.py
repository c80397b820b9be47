"""Click parameter types shared by the commands."""

from __future__ import annotations

import click

from controller.journal import MAX_RECORD_ID, is_record_id


class RecordIdType(click.ParamType[int]):
    """A journal row id (``12`` or ``#12``): ASCII digits, 1 to 2**63-1. ``int()`` alone
    reads ``²`` and ``١٢`` too, and SQLite cannot bind an id past 64 bits."""

    name = "ID"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        text = str(value).removeprefix("#")
        if not is_record_id(text) or int(text) < 1:
            self.fail(f"{value!r} is not an id (a number from 1 to {MAX_RECORD_ID})",
                      param, ctx)
        return int(text)


RECORD_ID = RecordIdType()
