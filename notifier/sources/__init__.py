"""Token sources: where a pass finds the tokens it watches.

``store`` is the daemon's own table, joined with the delivery state inside the database so a
steady pass costs one index probe per token. ``sql`` and ``file`` read tokens that live in
other systems; their window is read once per pass and matched with the delivery state here.
Each token is keyed by (source name, id), so ids from different sources never collide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import String, literal_column, select
from sqlalchemy.sql.elements import ColumnElement

from notifier.core.model import OPEN, DeliveryState, WatchedToken
from notifier.db.database import Database
from notifier.db.models import DeliveryStateRow

_state = DeliveryStateRow.__table__


def is_open_loop() -> ColumnElement[bool]:
    """State rows last told "expiring", with the value in the SQL as the partial index has it.

    A bound parameter would not do: a planner cannot tell that ``last_kind = $1`` implies the
    index's ``last_kind = 'expiring'`` (PostgreSQL's generic plans, SQLite's prepare).
    """
    return _state.c.last_kind == literal_column(f"'{OPEN}'", String())


@dataclass(frozen=True, slots=True)
class Candidate:
    """A (token, sink) pair a pass must look at."""

    token_id: str
    token: WatchedToken | None  # None: the source no longer has it
    state: DeliveryState | None  # None: the sink has never heard of it
    version: int = 0  # of the state row as read; writes succeed only over this version


class SourceError(Exception):
    """A source could not be read this pass (unreachable, a missing column, bad rows)."""


class Snapshot(Protocol):
    """One pass's view of a source."""

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


class TokenSource(Protocol):
    """Tell a pass which tokens expire soon."""

    name: str  # "store", "sql:billing": the source part of every state key

    def snapshot(self, now: datetime, horizon: timedelta, lookback: timedelta) -> Snapshot:
        """Read what the pass at *now* needs; raise :class:`SourceError` if it cannot.

        The window is (now - lookback, now + horizon]: the lookback keeps recently expired
        tokens in view for their expired notice.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


StateRow = tuple[DeliveryState, datetime | None, int]  # state, next_due_at, version


class WindowSnapshot:
    """An external source's window, matched with our delivery state batch by batch."""

    def __init__(
        self,
        name: str,
        tokens: Sequence[WatchedToken],
        database: Database,
        now: datetime,
        lookup: Callable[[list[str]], dict[str, WatchedToken]],
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
        query = select(_state.c.token_id).where(
            _state.c.source == self._name, _state.c.sink == sink, is_open_loop()
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
        query = select(
            _state.c.token_id,
            _state.c.expires_at,
            _state.c.last_sent_at,
            _state.c.notices_sent,
            _state.c.attempts,
            _state.c.last_kind,
            _state.c.last_threshold_s,
            _state.c.next_due_at,
            _state.c.version,
        ).where(
            _state.c.source == self._name,
            _state.c.sink == sink,
            _state.c.token_id.in_(token_ids),
        )
        with self._database.read() as connection:
            rows = connection.execute(query).all()
        return {
            row.token_id: (
                DeliveryState(
                    expires_at=row.expires_at,
                    last_sent_at=row.last_sent_at,
                    notices_sent=row.notices_sent,
                    attempts=row.attempts,
                    last_kind=row.last_kind,
                    last_threshold=(
                        timedelta(seconds=row.last_threshold_s)
                        if row.last_threshold_s is not None
                        else None
                    ),
                ),
                row.next_due_at,
                row.version,
            )
            for row in rows
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
