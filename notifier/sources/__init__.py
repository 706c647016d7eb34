"""Token sources: where a pass finds the tokens it watches.

``store`` is the daemon's own table, joined with the delivery state inside the database so a
steady pass costs one index probe per token. ``sql`` and ``file`` read tokens that live in
other systems; their window is read once per pass and matched with the delivery state here.
Each token is keyed by (source name, id), so ids from different sources never collide.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select

from notifier.db.database import Database
from notifier.db.models import DeliveryStateRow
from notifier.policy import DeliveryState, WatchedToken

Pair = tuple[WatchedToken, DeliveryState | None]
_state = DeliveryStateRow.__table__


class SourceError(Exception):
    """A source could not be read this pass (unreachable, a missing column, bad rows)."""


class Snapshot(Protocol):
    """One pass's view of a source."""

    in_window: int  # tokens inside the horizon, not revoked, not superseded

    def due_batches(self, sink: str, batch_size: int) -> Iterator[list[Pair]]:
        """Yield batches of (token, state) pairs that are due for *sink*."""
        ...


class TokenSource(Protocol):
    """Tell a pass which tokens expire soon."""

    name: str  # "store", "sql:billing": the source part of every state key

    def snapshot(self, now: datetime, horizon: timedelta) -> Snapshot:
        """Read what the pass at *now* needs; raise :class:`SourceError` if it cannot."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class WindowSnapshot:
    """The tokens an external source has in the window, matched with our delivery state."""

    def __init__(
        self, name: str, tokens: Sequence[WatchedToken], database: Database, now: datetime
    ) -> None:
        self._name = name
        self._tokens = sorted(tokens, key=lambda token: (token.expires_at, token.token_id))
        self._database = database
        self._now = now
        self.in_window = len(self._tokens)

    def due_batches(self, sink: str, batch_size: int) -> Iterator[list[Pair]]:
        """Yield the due pairs, reading state for one batch of tokens at a time."""
        for start in range(0, len(self._tokens), batch_size):
            chunk = self._tokens[start : start + batch_size]
            states = self._states(sink, [token.token_id for token in chunk])
            due = [
                (token, state)
                for token in chunk
                if _is_due(token, (state := states.get(token.token_id)), self._now)
            ]
            if due:
                yield [(token, state[0] if state else None) for token, state in due]

    def _states(
        self, sink: str, token_ids: list[str]
    ) -> dict[str, tuple[DeliveryState, datetime | None]]:
        query = select(
            _state.c.token_id,
            _state.c.expires_at,
            _state.c.last_sent_at,
            _state.c.notices_sent,
            _state.c.attempts,
            _state.c.next_due_at,
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
                ),
                row.next_due_at,
            )
            for row in rows
        }


def _is_due(
    token: WatchedToken, state: tuple[DeliveryState, datetime | None] | None, now: datetime
) -> bool:
    """The store's SQL due condition, for tokens read from elsewhere."""
    if state is None:
        return True
    facts, next_due_at = state
    return (
        next_due_at is None
        or next_due_at <= now
        or facts.expires_at is None
        or facts.expires_at != token.expires_at
    )
