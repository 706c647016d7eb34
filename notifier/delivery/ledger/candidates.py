"""The ledger's reads for a pass: which (token, sink) pairs it must look at.

Two kinds of candidate per sink, both bounded by the tokens near their expiry, not by the
table: the **due** ones (tokens of the window with no state yet, ``next_due_at`` reached, or
state about another expiry), and the **closing** ones (the sink's open loops, last told
"expiring", whose token has left the window: revoked, rotated, deleted, renewed far out,
or expired long ago).

For the store, both are one keyset join of its table with the state, inside the database:

- the **due query** walks the index (expires_at, id, revoked_at, superseded_by) over the
  window in keyset pages, and finds each token's state for the sink by primary key,
  returning only what is due: a steady pass in which nothing is due reads no rows into
  Python;
- the **closing query** walks the sink's open loops and finds each one's token by primary
  key.

Another source's window (``sql``, ``file``) is read once per pass and matched with the
state here, a batch of ids at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Row, Select, literal, not_, or_, select, tuple_

from notifier.core.model import DeliveryState, WatchedToken
from notifier.db.database import Database
from notifier.db.models import UtcDateTime
from notifier.delivery.ledger.codec import COLUMNS, STATE, Candidate, decode, is_open_loop
from notifier.sources import TokenSource
from notifier.sources.store import COLUMNS as TOKEN_COLUMNS
from notifier.sources.store import STORE, TOKENS, StoreSource, in_window, token_of

StateRow = tuple[DeliveryState, datetime | None, int]  # state, next_due_at, version
_TOKEN_WIDTH = len(TOKEN_COLUMNS)


class View(Protocol):
    """One pass's view of one source, matched with the delivery state."""

    in_window: int  # tokens expiring inside the horizon, not revoked, not superseded

    def due_batches(self, sink: str, batch_size: int) -> Iterator[list[Candidate]]:
        """Yield batches of candidates that are due for *sink*."""
        ...

    def closing_batches(self, sink: str, batch_size: int) -> Iterator[list[Candidate]]:
        """Yield the sink's open loops whose token has left the window."""
        ...

    def within(self, marks: Sequence[tuple[str, timedelta]]) -> dict[str, int]:
        """How many tokens expire within each mark from now (not expired, not revoked)."""
        ...


def view(
    source: TokenSource, database: Database, now: datetime, horizon: timedelta, lookback: timedelta
) -> View:
    """What the pass at *now* sees of *source*; a source that cannot be read raises."""
    if isinstance(source, StoreSource):
        return StoreView(source, now, horizon, lookback)
    tokens = source.window(now, horizon, lookback)
    return WindowView(source.name, tokens, database, now, source.by_ids)


class StoreView:
    """The store's window at one pass's ``now``, joined with the state in SQL."""

    def __init__(
        self, store: StoreSource, now: datetime, horizon: timedelta, lookback: timedelta
    ) -> None:
        self._store = store
        self._database = store.database
        self._now = now
        self._horizon = horizon
        self._lookback = lookback
        self.in_window = store.count(now, horizon)

    def within(self, marks: Sequence[tuple[str, timedelta]]) -> dict[str, int]:
        """Count tokens within each mark in one index range scan."""
        return self._store.within(self._now, marks)

    def due_batches(self, sink: str, batch_size: int) -> Iterator[list[Candidate]]:
        """Yield keyset pages of due candidates, each read in its own short transaction."""

        def page(after: Row[Any] | None) -> Select[Any]:
            return due_query(
                self._database,
                sink,
                self._now,
                self._horizon,
                None if after is None else (after.expires_at, after.id),
                batch_size,
                lookback=self._lookback,
            )

        return self._pages(page, batch_size)

    def closing_batches(self, sink: str, batch_size: int) -> Iterator[list[Candidate]]:
        """Yield the sink's open loops whose token left the window, in keyset pages."""

        def page(after: Row[Any] | None) -> Select[Any]:
            return closing_query(
                self._database,
                sink,
                self._now,
                self._horizon,
                self._lookback,
                after=None if after is None else after.state_token_id,
                limit=batch_size,
            )

        return self._pages(page, batch_size)

    def _pages(
        self, page: Callable[[Row[Any] | None], Select[Any]], size: int
    ) -> Iterator[list[Candidate]]:
        """Walk a keyset: each page after the last row of the one before, until one is short."""
        last: Row[Any] | None = None
        while True:
            with self._database.read() as connection:
                rows = connection.execute(page(last)).all()
            if rows:
                yield [_candidate(row) for row in rows]
            if len(rows) < size:
                return
            last = rows[-1]


def due_query(  # noqa: PLR0917 - the window, the page, and where it runs
    database: Database,
    sink: str,
    now: datetime,
    horizon: timedelta,
    after: tuple[datetime, str] | None,
    limit: int,
    *,
    lookback: timedelta = timedelta(0),
) -> Select[Any]:
    """One keyset page of the store's tokens in the window that are due for *sink*.

    Due: no state yet, ``next_due_at`` reached, or state about another expiry. The walk
    follows the index (expires_at, id, ...), so the cost grows with the tokens in the window,
    not with the table; each token's state is one primary-key probe (``outer_probe``).
    """
    match = (STATE.c.source == STORE) & (STATE.c.token_id == TOKENS.c.id) & (STATE.c.sink == sink)
    state = database.outer_probe(
        TOKENS, STATE, match, COLUMNS, name="state", also=(STATE.c.next_due_at,)
    )
    query = (
        select(*TOKEN_COLUMNS, *state.columns)
        .select_from(state.joined)
        .where(
            in_window(now, horizon, lookback),
            or_(
                state.sink.is_(None),
                state.next_due_at <= now,
                state.state_expires_at.is_(None),
                state.state_expires_at != TOKENS.c.expires_at,
            ),
        )
        .order_by(TOKENS.c.expires_at, TOKENS.c.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(
            tuple_(TOKENS.c.expires_at, TOKENS.c.id)
            > tuple_(literal(after[0], UtcDateTime()), literal(after[1]))
        )
    return query


def closing_query(
    database: Database,
    sink: str,
    now: datetime,
    horizon: timedelta,
    lookback: timedelta,
    *,
    after: str | None,
    limit: int,
) -> Select[Any]:
    """Open loops of *sink* whose token is gone, revoked, rotated, or out of the window.

    The walk follows the sink's open loops, and each finds its token by primary key
    (``outer_probe``), so the cost grows with the open loops, not with the tokens table.
    """
    token = database.outer_probe(
        STATE, TOKENS, TOKENS.c.id == STATE.c.token_id, TOKEN_COLUMNS, name="token"
    )
    query = (
        select(*token.columns, *COLUMNS)
        .select_from(token.joined)
        .where(
            STATE.c.source == STORE,
            STATE.c.sink == sink,
            is_open_loop(),
            or_(
                token.id.is_(None),
                token.expires_at.is_(None),  # NOT (NULL > x) would hide these
                not_(in_window(now, horizon, lookback, token)),
            ),
        )
        .order_by(STATE.c.token_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(STATE.c.token_id > after)
    return query


def _candidate(row: Row[Any]) -> Candidate:
    # By position, in the order of the token's COLUMNS and the state's: a due pass turns
    # every row it reads into a candidate, and a named lookup per field adds up.
    values = tuple(row)
    token_id = values[0]
    token = token_of(*values[:_TOKEN_WIDTH]) if token_id is not None else None
    state_token_id, sink, *state, version = values[_TOKEN_WIDTH:]
    return Candidate(
        token_id=token_id or state_token_id,
        token=token,
        state=decode(*state) if sink is not None else None,
        version=version or 0,
    )


class WindowView:
    """An external source's window, matched with the delivery state batch by batch."""

    def __init__(
        self,
        name: str,
        tokens: Sequence[WatchedToken],
        database: Database,
        now: datetime,
        lookup: Callable[[Sequence[str]], dict[str, WatchedToken]],
    ) -> None:
        self._name = name
        self._tokens = sorted(tokens, key=lambda token: (token.expires_at or now, token.token_id))
        self._ids = {token.token_id for token in self._tokens}
        self._database = database
        self._now = now
        self._lookup = lookup
        self.in_window = sum(
            1 for token in self._tokens if token.expires_at is not None and token.expires_at > now
        )

    def due_batches(self, sink: str, batch_size: int) -> Iterator[list[Candidate]]:
        """Yield the due candidates, reading state for one batch of tokens at a time."""
        for start in range(0, len(self._tokens), batch_size):
            chunk = self._tokens[start : start + batch_size]
            states = self._states(sink, [token.token_id for token in chunk])
            due = [
                Candidate(token.token_id, token, row[0], row[2])
                if row
                else Candidate(token.token_id, token, None)
                for token in chunk
                if _is_due(token, (row := states.get(token.token_id)), self._now)
            ]
            if due:
                yield due

    def closing_batches(self, sink: str, batch_size: int) -> Iterator[list[Candidate]]:
        """Open loops for tokens outside the window: looked up by id to see what became of them."""
        query = select(STATE.c.token_id).where(
            STATE.c.source == self._name, STATE.c.sink == sink, is_open_loop()
        )
        with self._database.read() as connection:
            open_ids = [row for row in connection.execute(query).scalars() if row not in self._ids]
        for start in range(0, len(open_ids), batch_size):
            chunk = open_ids[start : start + batch_size]
            states = self._states(sink, chunk)
            found = self._lookup(chunk)
            yield [
                Candidate(token_id, found.get(token_id), states[token_id][0], states[token_id][2])
                for token_id in chunk
                if token_id in states
            ]

    def within(self, marks: Sequence[tuple[str, timedelta]]) -> dict[str, int]:
        """Count the window's tokens within each mark, in Python: the window is small."""
        return {
            label: sum(
                1
                for token in self._tokens
                if token.expires_at is not None
                and self._now < token.expires_at <= self._now + distance
            )
            for label, distance in marks
        }

    def _states(self, sink: str, token_ids: list[str]) -> dict[str, StateRow]:
        query = select(STATE.c.token_id, *COLUMNS[2:-1], STATE.c.next_due_at, STATE.c.version)
        query = query.where(
            STATE.c.source == self._name, STATE.c.sink == sink, STATE.c.token_id.in_(token_ids)
        )
        with self._database.read() as connection:
            rows = connection.execute(query).all()
        return {
            token_id: (decode(*state), next_due_at, version)
            for token_id, *state, next_due_at, version in rows
        }


def _is_due(token: WatchedToken, row: StateRow | None, now: datetime) -> bool:
    """The store's SQL due condition, for tokens read from elsewhere."""
    if row is None:
        return True
    state, next_due_at, _version = row
    return (
        (next_due_at is not None and next_due_at <= now)
        or state.expires_at is None
        or state.expires_at != token.expires_at
    )
