"""The ``store`` source: the daemon's own tokens table.

It lists like any source, by an index range scan over (expires_at, id, ...) for a window
and by primary key for ids. A pass does not call those: the ledger joins this table with
the delivery state inside the database (notifier/delivery/ledger/candidates.py), using the
columns, the window condition and the row decoding given here, so that a steady pass costs
one index probe per token and reads no rows into Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from notifier.core.model import WatchedToken
from notifier.db.database import Database
from notifier.db.models import Token

STORE = "store"
TOKENS = Token.__table__
# The columns a token is read from, in the order token_of() takes them.
COLUMNS = (
    TOKENS.c.id,
    TOKENS.c.name,
    TOKENS.c.expires_at,
    TOKENS.c.revoked_at,
    TOKENS.c.owner,
    TOKENS.c.labels,
    TOKENS.c.created_at,
    TOKENS.c.superseded_by,
)


class StoreSource:
    """The tokens table of our own database."""

    name = STORE

    def __init__(self, database: Database) -> None:
        self.database = database

    def window(self, now: datetime, horizon: timedelta, lookback: timedelta) -> list[WatchedToken]:
        """The tokens in the window, in expiry order."""
        query = (
            select(*COLUMNS)
            .where(in_window(now, horizon, lookback))
            .order_by(TOKENS.c.expires_at, TOKENS.c.id)
        )
        with self.database.read() as connection:
            return [token_of(*row) for row in connection.execute(query)]

    def by_ids(self, token_ids: Sequence[str]) -> dict[str, WatchedToken]:
        """The tokens of *token_ids* the table still holds."""
        with self.database.read() as connection:
            rows = connection.execute(select(*COLUMNS).where(TOKENS.c.id.in_(list(token_ids))))
            return {token.token_id: token for token in (token_of(*row) for row in rows)}

    def count(self, now: datetime, horizon: timedelta) -> int:
        """How many tokens expire in (now, now + horizon]: one index range scan."""
        with self.database.read() as connection:
            return int(
                connection.execute(
                    select(func.count()).select_from(TOKENS).where(in_window(now, horizon))
                ).scalar_one()
            )

    def within(self, now: datetime, marks: Sequence[tuple[str, timedelta]]) -> dict[str, int]:
        """Count tokens within each mark from *now* in one index range scan."""
        if not marks:
            return {}
        widest = max(distance for _, distance in marks)
        columns = [
            func.count(case((TOKENS.c.expires_at <= now + distance, 1))).label(f"m{i}")
            for i, (_, distance) in enumerate(marks)
        ]
        with self.database.read() as connection:
            row = connection.execute(
                select(*columns).select_from(TOKENS).where(in_window(now, widest))
            ).one()
        return {label: int(row[i]) for i, (label, _) in enumerate(marks)}

    def close(self) -> None:
        """Nothing of its own to release: the database belongs to the process."""


def in_window(
    now: datetime,
    horizon: timedelta,
    lookback: timedelta = timedelta(0),
    tokens: Any = TOKENS.c,
) -> ColumnElement[bool]:
    """Tokens expiring in (now - lookback, now + horizon], not revoked, not superseded.

    *tokens* is where the columns come from: the table, or a subquery of it.
    """
    return and_(
        tokens.expires_at > now - lookback,
        tokens.expires_at <= now + horizon,
        or_(tokens.revoked_at.is_(None), tokens.revoked_at > now),
        tokens.superseded_by.is_(None),
    )


def token_of(  # noqa: PLR0917 - one argument per column of COLUMNS, by position
    token_id: str,
    name: str,
    expires_at: datetime | None,
    revoked_at: datetime | None,
    owner: str | None,
    labels: dict[str, str] | None,
    created_at: datetime | None,
    superseded_by: str | None,
) -> WatchedToken:
    """The token of a row of COLUMNS."""
    return WatchedToken(
        source=STORE,
        token_id=token_id,
        name=name,
        expires_at=expires_at,
        revoked_at=revoked_at,
        owner=owner,
        superseded=superseded_by is not None,
        created_at=created_at,
        labels=labels or {},
    )
