"""The ``store`` source: the daemon's own tokens, joined with the delivery state in SQL.

The due query walks the index (expires_at, id, revoked_at, superseded_by) in keyset pages and
LEFT JOINs each token's state for one sink by primary key, returning only what is due: a
steady pass in which nothing is due reads no rows into Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Select, and_, func, literal, or_, select, tuple_
from sqlalchemy.sql.elements import ColumnElement

from notifier.db.database import Database
from notifier.db.models import DeliveryStateRow, Token, UtcDateTime
from notifier.policy import DeliveryState, WatchedToken
from notifier.sources import Pair

STORE = "store"
_tokens = Token.__table__
_state = DeliveryStateRow.__table__


class StoreSource:
    """The tokens table of our own database."""

    name = STORE

    def __init__(self, database: Database) -> None:
        self._database = database

    def snapshot(self, now: datetime, horizon: timedelta) -> StoreSnapshot:
        """Count the window now; read due rows per sink as the pass asks."""
        return StoreSnapshot(self._database, now, horizon)

    def close(self) -> None:
        """Nothing of its own to release: the database belongs to the process."""


class StoreSnapshot:
    """The store's window at one pass's ``now``."""

    def __init__(self, database: Database, now: datetime, horizon: timedelta) -> None:
        self._database = database
        self._now = now
        self._horizon = horizon
        with database.read() as connection:
            count = connection.execute(
                select(func.count()).select_from(_tokens).where(_window(now, horizon))
            ).scalar_one()
        self.in_window = int(count)

    def due_batches(self, sink: str, batch_size: int) -> Iterator[list[Pair]]:
        """Yield keyset pages of due pairs, each read in its own short transaction."""
        after: tuple[datetime, str] | None = None
        while True:
            query = due_query(sink, self._now, self._horizon, after, batch_size)
            with self._database.read() as connection:
                rows = connection.execute(query).all()
            if not rows:
                return
            yield [_pair(row) for row in rows]
            if len(rows) < batch_size:
                return
            last = rows[-1]
            after = (last.expires_at, last.id)


def _window(now: datetime, horizon: timedelta) -> ColumnElement[bool]:
    """Tokens expiring in (now, now + horizon], not revoked at now, not superseded."""
    return and_(
        _tokens.c.expires_at > now,
        _tokens.c.expires_at <= now + horizon,
        or_(_tokens.c.revoked_at.is_(None), _tokens.c.revoked_at > now),
        _tokens.c.superseded_by.is_(None),
    )


def due_query(
    sink: str,
    now: datetime,
    horizon: timedelta,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Select[Any]:
    """One keyset page of the store's tokens in the window that are due for *sink*.

    Due: no state yet, ``next_due_at`` reached (or cleared), or state about another expiry.
    The walk follows the index (expires_at, id, revoked_at), so the cost grows with the
    tokens in the window, not with the table.
    """
    state = _state
    query = (
        select(
            _tokens.c.id,
            _tokens.c.name,
            _tokens.c.expires_at,
            _tokens.c.revoked_at,
            state.c.sink,
            state.c.expires_at.label("state_expires_at"),
            state.c.last_sent_at,
            state.c.notices_sent,
            state.c.attempts,
        )
        .select_from(
            _tokens.outerjoin(
                state,
                and_(
                    state.c.source == STORE,
                    state.c.token_id == _tokens.c.id,
                    state.c.sink == sink,
                ),
            )
        )
        .where(
            _window(now, horizon),
            or_(
                state.c.sink.is_(None),
                state.c.next_due_at.is_(None),
                state.c.next_due_at <= now,
                state.c.expires_at.is_(None),
                state.c.expires_at != _tokens.c.expires_at,
            ),
        )
        .order_by(_tokens.c.expires_at, _tokens.c.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(
            tuple_(_tokens.c.expires_at, _tokens.c.id)
            > tuple_(literal(after[0], UtcDateTime()), literal(after[1]))
        )
    return query


def _pair(row: Row[*tuple[Any, ...]]) -> tuple[WatchedToken, DeliveryState | None]:
    token = WatchedToken(
        source=STORE,
        token_id=row.id,
        name=row.name,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )
    if row.sink is None:
        return token, None
    state = DeliveryState(
        expires_at=row.state_expires_at,
        last_sent_at=row.last_sent_at,
        notices_sent=row.notices_sent,
        attempts=row.attempts,
    )
    return token, state
