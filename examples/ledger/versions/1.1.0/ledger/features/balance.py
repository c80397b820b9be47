"""GET /accounts/<name>/balance: sum of an account's amounts (schema 1)."""

from __future__ import annotations

from urllib.parse import unquote

from .. import db
from ..web import HTTPError, Request, Response


def balance(req: Request) -> Response:
    """Balance and transaction count of one account; 404 if it has none."""
    account = unquote(req.params[0])
    with db.session(req.config.db) as conn:
        count, total = conn.execute(
            "SELECT count(*), coalesce(sum(amount_cents), 0) FROM tx WHERE account = ?",
            (account,),
        ).fetchone()
    if count == 0:
        raise HTTPError(404, "unknown account")
    return Response(200, {"account": account, "balance_cents": total, "tx_count": count})


ROUTES = [("GET", r"/accounts/([^/]+)/balance", balance)]
