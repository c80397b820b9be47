"""Core endpoints: health, version and transactions."""

from __future__ import annotations

import sqlite3
from typing import Any

from .. import db, schema, store
from ..version import VERSION
from ..web import HTTPError, Request, Response

MAX_ACCOUNT_LEN = 200


def health(req: Request) -> Response:
    """200 only if the database opens and has the expected schema."""
    try:
        with db.session(req.config.db):
            pass
    except (sqlite3.Error, db.SchemaMismatchError) as exc:
        payload = {"status": "error", "version": VERSION, "error": str(exc)}
        return Response(503, payload)
    return Response(200, {"status": "ok", "version": VERSION, "schema": schema.SCHEMA})


def version(req: Request) -> Response:
    """The release version."""
    return Response(200, {"version": VERSION})


def validate_tx(body: dict[str, Any]) -> tuple[str, int]:
    """Check the mandatory fields of a new transaction."""
    account = body.get("account")
    amount = body.get("amount_cents")
    if not isinstance(account, str) or not account.strip():
        raise HTTPError(400, "account must be a non-empty string")
    if len(account) > MAX_ACCOUNT_LEN:
        raise HTTPError(400, f"account is longer than {MAX_ACCOUNT_LEN} characters")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise HTTPError(400, "amount_cents must be an integer")
    return account, amount


def create_tx(req: Request) -> Response:
    """POST /tx: store a transaction, 201 with the stored record."""
    body = req.json()
    account, amount = validate_tx(body)
    with db.session(req.config.db) as conn:
        try:
            tx = store.insert_tx(conn, account, amount, body)
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from exc
    return Response(201, tx)


def get_tx(req: Request) -> Response:
    """GET /tx/<id>: one transaction or 404."""
    with db.session(req.config.db) as conn:
        tx = store.get_tx(conn, int(req.params[0]))
    if tx is None:
        raise HTTPError(404, "no such transaction")
    return Response(200, tx)


ROUTES = [
    ("GET", r"/health", health),
    ("GET", r"/version", version),
    ("POST", r"/tx", create_tx),
    ("GET", r"/tx/(\d{1,18})", get_tx),
]
