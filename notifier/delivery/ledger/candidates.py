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
  key. A token leaves the window by a change (revoked, rotated, deleted, its expiry moved)
  or by time (expired past the lookback, or a revocation scheduled for later came).
  Triggers count the changes (migration 0004), so the walk over every open loop runs only
  when the count moved since the last walk of this (source, sink) that found nothing, or
  when a scheduled revocation seen in the window since then has come (:class:`Walks`);
  otherwise only the loops that left by time are read, by one range scan of the open
  loops' expiry index. A steady pass then reads no open loop at all.

Another source's window (``sql``, ``file``) is read once per pass and matched with the
state here, a batch of ids at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import (
    Integer,
    Select,
    case,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    tuple_,
)
from sqlalchemy.sql.elements import ColumnElement

from notifier.core.model import DeliveryState, WatchedToken
from notifier.db.database import Database, KeyProbe
from notifier.db.models import Meta, UtcDateTime
from notifier.delivery.ledger.codec import COLUMNS, STATE, Candidate, decode, is_open_loop
from notifier.sources import TokenSource
from notifier.sources.store import COLUMNS as TOKEN_COLUMNS
from notifier.sources.store import STORE, TOKENS, StoreSource, in_window, token_of

StateRow = tuple[DeliveryState, datetime | None, int]  # state, next_due_at, version
_TOKEN_WIDTH = len(TOKEN_COLUMNS)
# Where a candidate row holds the keys its page continues after (TOKEN_COLUMNS, COLUMNS).
_ID, _EXPIRES = 0, 2
_STATE_ID, _STATE_EXPIRES = _TOKEN_WIDTH, _TOKEN_WIDTH + 2
META = Meta.__table__
_ONE = literal_column("1", Integer())
CHANGES = "tokens.changes"  # the count the triggers of migration 0004 keep


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


@dataclass(slots=True)
class _Walk:
    """A walk over a (source, sink)'s open loops that found none to close."""

    changes: int  # the count of token changes read before it
    horizon: timedelta
    lookback: timedelta
    revocation: datetime | None  # the earliest revocation scheduled in the window since


class Walks:
    """The last walk over each (source, sink)'s open loops that found nothing to close.

    Kept by the checker across passes, in memory: a new process walks once. The walk can be
    left out while it still holds: no change to tokens counted since (a count the walk read
    before it started, so a change during the walk is seen next pass), the same window, and
    no revocation scheduled in the window since has come. A scheduled revocation (a rotated
    token's grace, an imported future ``revoked_at``) takes a token out of the window
    without a change.
    """

    def __init__(self) -> None:
        self._walks: dict[tuple[str, str], _Walk] = {}

    def holds(  # noqa: PLR0917 - what the walk must have seen the same
        self,
        source: str,
        sink: str,
        changes: int | None,
        horizon: timedelta,
        lookback: timedelta,
        now: datetime,
    ) -> bool:
        """Whether the last clean walk still says that no loop left the window by a change."""
        walk = self._walks.get((source, sink))
        return (
            walk is not None
            and changes is not None
            and walk.changes == changes
            and walk.horizon == horizon
            and walk.lookback == lookback
            and (walk.revocation is None or walk.revocation > now)
        )

    def saw(self, source: str, revocation: datetime | None) -> None:
        """Fold the earliest revocation a pass saw scheduled in *source*'s window in."""
        if revocation is None:
            return
        for (walked, _), walk in self._walks.items():
            if walked == source and (walk.revocation is None or revocation < walk.revocation):
                walk.revocation = revocation

    def found_nothing(  # noqa: PLR0917
        self,
        source: str,
        sink: str,
        changes: int | None,
        horizon: timedelta,
        lookback: timedelta,
        revocation: datetime | None,
    ) -> None:
        """Remember a walk that found no loop to close (it counts only with a known count)."""
        if changes is None:
            self._walks.pop((source, sink), None)
            return
        self._walks[source, sink] = _Walk(changes, horizon, lookback, revocation)

    def forget(self, source: str, sink: str) -> None:
        """The walk found loops to close: walk again next pass."""
        self._walks.pop((source, sink), None)


def view(  # noqa: PLR0917 - the pass's moment and window, and what it remembers
    source: TokenSource,
    database: Database,
    now: datetime,
    horizon: timedelta,
    lookback: timedelta,
    walks: Walks | None = None,
) -> View:
    """What the pass at *now* sees of *source*; a source that cannot be read raises."""
    if isinstance(source, StoreSource):
        return StoreView(source, now, horizon, lookback, walks or Walks())
    tokens = source.window(now, horizon, lookback)
    return WindowView(source.name, tokens, database, now, source.by_ids)


class StoreView:
    """The store's window at one pass's ``now``, joined with the state in SQL."""

    def __init__(
        self,
        store: StoreSource,
        now: datetime,
        horizon: timedelta,
        lookback: timedelta,
        walks: Walks,
    ) -> None:
        self._store = store
        self._database = store.database
        self._now = now
        self._horizon = horizon
        self._lookback = lookback
        self._walks = walks
        # The count first: a change after this read is counted, and seen next pass.
        self._changes, self.in_window, self._revocation, self._planned = _window_summary(
            self._database, now, horizon, lookback
        )
        walks.saw(STORE, self._revocation)

    def within(self, marks: Sequence[tuple[str, timedelta]]) -> dict[str, int]:
        """Count tokens within each mark in one index range scan."""
        return self._store.within(self._now, marks)

    def due_batches(self, sink: str, batch_size: int) -> Iterator[list[Candidate]]:
        """Yield keyset pages of due candidates, each read in its own short transaction.

        Where the planner plans by statistics and has current ones, what is due is counted
        first (:func:`due_count_query`), and a pass in which nothing is due reads no page.
        """

        def page(after: tuple[Any, ...] | None) -> Select[Any]:
            return due_query(
                self._database,
                sink,
                self._now,
                self._horizon,
                None if after is None else (after[_EXPIRES], after[_ID]),
                batch_size,
                lookback=self._lookback,
                planned=self._planned,
            )

        if self._planned and self._database.plans_by_statistics and not self._any_due(sink):
            return iter(())
        return self._pages(page, batch_size)

    def _any_due(self, sink: str) -> bool:
        """Whether any token of the window is due for *sink*, by one count (``due_count_query``)."""
        query = due_count_query(self._database, sink, self._now, self._horizon, self._lookback)
        with self._database.read() as connection:
            return bool(connection.execute(query).scalar_one())

    def closing_batches(self, sink: str, batch_size: int) -> Iterator[list[Candidate]]:
        """Yield the sink's open loops whose token left the window, in keyset pages.

        All of them when the last walk no longer holds (:class:`Walks`); else only those
        that left by time.
        """
        window = (self._changes, self._horizon, self._lookback)
        if self._walks.holds(STORE, sink, *window, self._now):
            return self._pages(self._loops(sink, batch_size, by_time=True), batch_size)
        return self._walk(sink, batch_size)

    def _walk(self, sink: str, batch_size: int) -> Iterator[list[Candidate]]:
        found = False
        for batch in self._pages(self._loops(sink, batch_size, by_time=False), batch_size):
            found = True
            yield batch
        if found:
            self._walks.forget(STORE, sink)
        else:
            self._walks.found_nothing(
                STORE, sink, self._changes, self._horizon, self._lookback, self._revocation
            )

    def _loops(
        self, sink: str, batch_size: int, *, by_time: bool
    ) -> Callable[[tuple[Any, ...] | None], Select[Any]]:
        """Pages of the sink's open loops: all of them, or those whose expiry left by time."""

        def page(after: tuple[Any, ...] | None) -> Select[Any]:
            keyset = None if after is None else (after[_STATE_EXPIRES], after[_STATE_ID])
            if by_time:
                return expired_loops_query(
                    self._database, sink, self._now - self._lookback, after=keyset, limit=batch_size
                )
            return closing_query(
                self._database,
                sink,
                self._now,
                self._horizon,
                self._lookback,
                after=keyset,
                limit=batch_size,
            )

        return page

    def _pages(
        self, page: Callable[[tuple[Any, ...] | None], Select[Any]], size: int
    ) -> Iterator[list[Candidate]]:
        """Walk a keyset: each page after the last row of the one before, until one is short."""
        last: tuple[Any, ...] | None = None
        while True:
            with self._database.read() as connection:
                rows = self._database.fetch_all(connection, page(last))
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
    planned: bool = False,
) -> Select[Any]:
    """One keyset page of the store's tokens in the window that are due for *sink*.

    Due: no state yet, ``next_due_at`` reached, or state about another expiry. The page is
    found in the index (expires_at, id, revoked_at, superseded_by) alone, each token kept
    unless its state for the sink says it is not due (``Database.absent``: a primary-key
    probe, or the anti-join the planner picks when *planned* says its statistics are
    current); only the page's tokens are then read whole, with their state
    (``Database.reads_columns_late``: SQLite does that by itself). So the cost grows with
    the tokens in the window, not with the table, and a steady pass in which nothing is due
    reads no token row at all.
    """
    match = _state_of_token(sink)
    keyset = (
        None
        if after is None
        else tuple_(TOKENS.c.expires_at, TOKENS.c.id)
        > tuple_(literal(after[0], UtcDateTime()), literal(after[1]))
    )
    if database.reads_columns_late:
        # SQLite reads a row's other columns only for the rows a query returns: one join.
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
        return query if keyset is None else query.where(keyset)
    page = (
        select(TOKENS.c.expires_at, TOKENS.c.id)
        .where(
            in_window(now, horizon, lookback),
            database.absent(_waiting(sink, now), planned=planned),
        )
        .order_by(TOKENS.c.expires_at, TOKENS.c.id)
        .limit(limit)
    )
    due = (page if keyset is None else page.where(keyset)).subquery("due")
    state = database.outer_probe(
        due.join(TOKENS, TOKENS.c.id == due.c.id), STATE, match, COLUMNS, name="state"
    )
    return (
        select(*TOKEN_COLUMNS, *state.columns)
        .select_from(state.joined)
        .order_by(due.c.expires_at, due.c.id)
    )


def due_count_query(
    database: Database, sink: str, now: datetime, horizon: timedelta, lookback: timedelta
) -> Select[Any]:
    """How many of the store's tokens in the window are due for *sink*: one count.

    A pass asks it before the first page where the planner chooses the join by statistics
    (PostgreSQL, statistics current), and reads no page when it is nought: in a steady pass
    nothing is due. A page's LIMIT makes the planner expect to stop early, so it probes the
    state by key for each token (a nested loop anti-join), which then runs to the window's
    end; counted, with no LIMIT, the same anti-join is planned for the whole window: a hash
    or merge join while the sink's state rows are few against the window, the probes once
    they are not (docs/performance.md). Where something is due the count is one more
    statement, beside the pages that follow it.
    """
    return (
        select(func.count())
        .select_from(TOKENS)
        .where(
            in_window(now, horizon, lookback),
            database.absent(_waiting(sink, now), planned=True),  # the planner's choice
        )
    )


def _state_of_token(sink: str) -> ColumnElement[bool]:
    """The join of a token with its state for *sink*."""
    return (STATE.c.source == STORE) & (STATE.c.token_id == TOKENS.c.id) & (STATE.c.sink == sink)


def _waiting(sink: str, now: datetime) -> Select[Any]:
    """Not due: the token's state for this expiry, whose next look is later (or never)."""
    return (
        select(_ONE)
        .select_from(STATE)
        .where(
            _state_of_token(sink),
            or_(STATE.c.next_due_at.is_(None), STATE.c.next_due_at > now),
            STATE.c.expires_at == TOKENS.c.expires_at,
        )
    )


def closing_query(
    database: Database,
    sink: str,
    now: datetime,
    horizon: timedelta,
    lookback: timedelta,
    *,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Select[Any]:
    """Open loops of *sink* whose token is gone, revoked, rotated, or out of the window.

    The walk follows the sink's open loops in (expiry, token) order, as their index has
    them (an open loop is always about an expiry), and each finds its token by primary key
    (``outer_probe``), so the cost grows with the open loops, not with the tokens table.
    """
    return _open_loops(
        database,
        sink,
        lambda token: or_(
            token.id.is_(None),
            token.expires_at.is_(None),  # NOT (NULL > x) would hide these
            not_(in_window(now, horizon, lookback, token)),
        ),
        after=after,
        limit=limit,
    )


def expired_loops_query(
    database: Database,
    sink: str,
    bound: datetime,
    *,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Select[Any]:
    """Open loops of *sink* about an expiry at or before *bound* (the window's start).

    One range scan of the open loops' expiry index, in (expiry, token) keyset pages; each
    finds its token by primary key. The loop's expiry is its token's, unless the token
    changed, which the walk over every loop handles.
    """
    return _open_loops(
        database, sink, lambda _: STATE.c.expires_at <= bound, after=after, limit=limit
    )


def _open_loops(
    database: Database,
    sink: str,
    which: Callable[[KeyProbe], ColumnElement[bool]],
    *,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Select[Any]:
    """One keyset page, in (expiry, token) order, of *sink*'s open loops that *which* keeps."""
    token = database.outer_probe(
        STATE, TOKENS, TOKENS.c.id == STATE.c.token_id, TOKEN_COLUMNS, name="token"
    )
    query = (
        select(*token.columns, *COLUMNS)
        .select_from(token.joined)
        .where(STATE.c.source == STORE, STATE.c.sink == sink, is_open_loop(), which(token))
        .order_by(STATE.c.expires_at, STATE.c.token_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(
            tuple_(STATE.c.expires_at, STATE.c.token_id)
            > tuple_(literal(after[0], UtcDateTime()), literal(after[1]))
        )
    return query


def _window_summary(
    database: Database, now: datetime, horizon: timedelta, lookback: timedelta
) -> tuple[int | None, int, datetime | None, bool]:
    """What a pass reads of the store before its batches, in one read, the count first.

    The count of token changes, the tokens in the window, its earliest revocation, and
    whether the planner may choose how to join each token with its state. The tokens
    counted expire in (now, now + horizon]; the revocation is the earliest scheduled among
    the whole window's (a revoked one is out).
    """
    counted = select(
        func.count(case((TOKENS.c.expires_at > now, 1))), func.min(TOKENS.c.revoked_at)
    )
    with database.read() as connection:
        changes = connection.execute(select(META.c.value).where(META.c.key == CHANGES)).scalar()
        inside, revocation = connection.execute(
            counted.select_from(TOKENS).where(in_window(now, horizon, lookback))
        ).one()
        planned = database.statistics_current(STATE.name, connection)
    try:
        count = int(changes) if changes is not None else None
    except ValueError:
        count = None  # not ours to fix: walk every pass
    return count, int(inside), revocation, planned


def _candidate(values: tuple[Any, ...]) -> Candidate:
    # By position, in the order of the token's COLUMNS and the state's: a due pass turns
    # every row it reads into a candidate, and a named lookup per field adds up.
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

    @property
    def tokens(self) -> Sequence[WatchedToken]:
        """The window's tokens, as the source listed them."""
        return self._tokens

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
