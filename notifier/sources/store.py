"""The ``store`` source: the daemon's own tokens, joined with the delivery state in SQL.

Two queries per sink, both bounded by the tokens near their expiry, not by the table:

- the **due query** walks the index (expires_at, id, revoked_at, superseded_by) over
  (now - lookback, now + horizon] in keyset pages, and LEFT JOINs each token's state for the
  sink by primary key, returning only what is due: a steady pass in which nothing is due
  reads no rows into Python;
- the **closing query** walks the sink's open loops (state last told "expiring") whose token
  has left that range: revoked, rotated, deleted, renewed far out, or expired long ago.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Select, and_, case, func, literal, not_, or_, select, true, tuple_
from sqlalchemy.sql.elements import ColumnElement

from notifier.core.model import DeliveryState, WatchedToken
from notifier.db.database import Database
from notifier.db.models import DeliveryStateRow, Token, UtcDateTime
from notifier.sources import Candidate, is_open_loop

STORE = "store"
_tokens = Token.__table__
_state = DeliveryStateRow.__table__
_TOKEN_COLUMNS = (
    _tokens.c.id,
    _tokens.c.name,
    _tokens.c.expires_at,
    _tokens.c.revoked_at,
    _tokens.c.owner,
    _tokens.c.labels,
    _tokens.c.created_at,
    _tokens.c.superseded_by,
)
_STATE_COLUMNS = (
    _state.c.token_id.label("state_token_id"),
    _state.c.sink,
    _state.c.expires_at.label("state_expires_at"),
    _state.c.last_sent_at,
    _state.c.notices_sent,
    _state.c.attempts,
    _state.c.last_kind,
    _state.c.last_threshold_s,
    _state.c.version,
)


class StoreSource:
    """The tokens table of our own database."""

    name = STORE

    def __init__(self, database: Database) -> None:
        self._database = database

    def snapshot(self, now: datetime, horizon: timedelta, lookback: timedelta) -> StoreSnapshot:
        """Count the window now; read due rows per sink as the pass asks."""
        return StoreSnapshot(self._database, now, horizon, lookback)

    def close(self) -> None:
        """Nothing of its own to release: the database belongs to the process."""


class StoreSnapshot:
    """The store's window at one pass's ``now``."""

    def __init__(
        self, database: Database, now: datetime, horizon: timedelta, lookback: timedelta
    ) -> None:
        self._database = database
        self._now = now
        self._horizon = horizon
        self._lookback = lookback
        self._lateral = database.dialect == "postgresql"
        with database.read() as connection:
            count = connection.execute(
                select(func.count()).select_from(_tokens).where(_window(now, horizon))
            ).scalar_one()
        self.in_window = int(count)

    def within(self, marks: Sequence[tuple[str, timedelta]]) -> dict[str, int]:
        """Count tokens within each mark in one index range scan."""
        if not marks:
            return {}
        widest = max(distance for _, distance in marks)
        columns = [
            func.count(case((_tokens.c.expires_at <= self._now + distance, 1))).label(f"m{i}")
            for i, (_, distance) in enumerate(marks)
        ]
        with self._database.read() as connection:
            row = connection.execute(
                select(*columns).select_from(_tokens).where(_window(self._now, widest))
            ).one()
        return {label: int(row[i]) for i, (label, _) in enumerate(marks)}

    def due_batches(self, sink: str, batch_size: int) -> Iterator[list[Candidate]]:
        """Yield keyset pages of due candidates, each read in its own short transaction."""
        after: tuple[datetime, str] | None = None
        while True:
            query = due_query(
                sink,
                self._now,
                self._horizon,
                after,
                batch_size,
                lookback=self._lookback,
                lateral=self._lateral,
            )
            with self._database.read() as connection:
                rows = connection.execute(query).all()
            if not rows:
                return
            yield [_candidate(row) for row in rows]
            if len(rows) < batch_size:
                return
            last = rows[-1]
            after = (last.expires_at, last.id)

    def closing_batches(self, sink: str, batch_size: int) -> Iterator[list[Candidate]]:
        """Yield the sink's open loops whose token left the window, in keyset pages."""
        after: str | None = None
        while True:
            query = closing_query(
                sink,
                self._now,
                self._horizon,
                self._lookback,
                after=after,
                limit=batch_size,
                lateral=self._lateral,
            )
            with self._database.read() as connection:
                rows = connection.execute(query).all()
            if not rows:
                return
            yield [_candidate(row) for row in rows]
            if len(rows) < batch_size:
                return
            after = rows[-1].state_token_id


def _window(
    now: datetime,
    horizon: timedelta,
    lookback: timedelta = timedelta(0),
    tokens: Any = _tokens.c,
) -> ColumnElement[bool]:
    """Tokens expiring in (now - lookback, now + horizon], not revoked, not superseded."""
    return and_(
        tokens.expires_at > now - lookback,
        tokens.expires_at <= now + horizon,
        or_(tokens.revoked_at.is_(None), tokens.revoked_at > now),
        tokens.superseded_by.is_(None),
    )


def due_query(
    sink: str,
    now: datetime,
    horizon: timedelta,
    after: tuple[datetime, str] | None,
    limit: int,
    *,
    lookback: timedelta = timedelta(0),
    lateral: bool = False,
) -> Select[Any]:
    """One keyset page of the store's tokens in the window that are due for *sink*.

    Due: no state yet, ``next_due_at`` reached, or state about another expiry. The walk
    follows the index (expires_at, id, ...), so the cost grows with the tokens in the window,
    not with the table. With *lateral* (PostgreSQL) each token's state is fetched by a
    LATERAL subquery on the primary key (see :func:`_state_of`).
    """
    state = _state
    match = and_(state.c.source == STORE, state.c.token_id == _tokens.c.id, state.c.sink == sink)
    if lateral:
        row = _state_of(match)
        joined = _tokens.outerjoin(row, true())
        columns = [*_TOKEN_COLUMNS, *(row.c[c.name] for c in _STATE_COLUMNS)]
        found_sink, next_due, state_expiry = row.c.sink, row.c.next_due_at, row.c.state_expires_at
    else:
        joined = _tokens.outerjoin(state, match)
        columns = [*_TOKEN_COLUMNS, *_STATE_COLUMNS]
        found_sink, next_due, state_expiry = state.c.sink, state.c.next_due_at, state.c.expires_at
    query = (
        select(*columns)
        .select_from(joined)
        .where(
            _window(now, horizon, lookback),
            or_(
                found_sink.is_(None),
                next_due <= now,
                state_expiry.is_(None),
                state_expiry != _tokens.c.expires_at,
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


def closing_query(
    sink: str,
    now: datetime,
    horizon: timedelta,
    lookback: timedelta,
    *,
    after: str | None,
    limit: int,
    lateral: bool = False,
) -> Select[Any]:
    """Open loops of *sink* whose token is gone, revoked, rotated, or out of the window.

    The walk follows the sink's open loops, and each looks up its token by primary key (with
    *lateral*, in a LATERAL subquery: see :func:`_state_of`), so the cost grows with the
    open loops, not with the tokens table.
    """
    state = _state
    if lateral:
        token = (
            select(*_TOKEN_COLUMNS)
            .where(_tokens.c.id == state.c.token_id)
            .limit(1)
            .lateral("token")
        )
        joined = state.outerjoin(token, true())
        columns = [*(token.c[c.name] for c in _TOKEN_COLUMNS), *_STATE_COLUMNS]
        tokens: Any = token.c
    else:
        joined = state.outerjoin(_tokens, _tokens.c.id == state.c.token_id)
        columns = [*_TOKEN_COLUMNS, *_STATE_COLUMNS]
        tokens = _tokens.c
    query = (
        select(*columns)
        .select_from(joined)
        .where(
            state.c.source == STORE,
            state.c.sink == sink,
            is_open_loop(),
            or_(
                tokens.id.is_(None),
                tokens.expires_at.is_(None),  # NOT (NULL > x) would hide these
                not_(_window(now, horizon, lookback, tokens)),
            ),
        )
        .order_by(state.c.token_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(state.c.token_id > after)
    return query


def _state_of(match: ColumnElement[bool]) -> Any:
    """The delivery state matching *match*, as a LATERAL subquery of at most one row.

    On PostgreSQL the planner joins by its statistics, and a state table that just grew
    from nothing (a first pass, a daemon's first hour) has none: it then scans every state
    row of the sink once per token, or a whole index of tokens once per pass, and a steady
    pass at 1M tokens took seconds. A LATERAL subquery with LIMIT 1 is not flattened into
    a join, so each row is one primary-key probe whatever the statistics say: the cost
    follows the tokens in the window, as on SQLite, whose planner does this by itself.
    """
    return select(*_STATE_COLUMNS, _state.c.next_due_at).where(match).limit(1).lateral("state")


def _candidate(row: Row[*tuple[Any, ...]]) -> Candidate:
    # Unpacked by position, in the order of _TOKEN_COLUMNS and _STATE_COLUMNS: a due pass
    # turns every row it reads into a candidate, and a named lookup per field adds up.
    (
        token_id,
        name,
        expires_at,
        revoked_at,
        owner,
        labels,
        created_at,
        superseded_by,
        state_token_id,
        sink,
        state_expires_at,
        last_sent_at,
        notices_sent,
        attempts,
        last_kind,
        last_threshold_s,
        version,
    ) = row
    token = None
    if token_id is not None:
        token = WatchedToken(
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
    state = None
    if sink is not None:
        state = DeliveryState(
            expires_at=state_expires_at,
            last_sent_at=last_sent_at,
            notices_sent=notices_sent,
            attempts=attempts,
            last_kind=last_kind,
            last_threshold=(
                timedelta(seconds=last_threshold_s) if last_threshold_s is not None else None
            ),
        )
    return Candidate(
        token_id=token_id or state_token_id,
        token=token,
        state=state,
        version=version or 0,
    )
