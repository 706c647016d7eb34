"""Tokens' last-use times, kept in memory and written in one batched UPDATE now and then.

Writing ``last_used_at`` on every request would turn each read of the API into a write
transaction (and, on SQLite, into a wait for the one writer). Instead the time of each token's
latest request is kept here and flushed at most once per interval, by the first request that
finds the interval over, and once more when the server stops. A crash loses at most one
interval of last-use times, which only ever say "roughly when".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from notifier.db.database import DatabaseUnavailableError
from notifier.tokens.lifecycle import TokenStore

log = structlog.get_logger("notifier.web")


class LastUse:
    """Collect last-use times per token id; flush them in one write at most every *interval*."""

    def __init__(
        self,
        store: TokenStore,
        interval: timedelta,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._interval = interval.total_seconds()
        self._monotonic = monotonic
        self._pending: dict[str, datetime] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._next_flush = monotonic() + self._interval

    @property
    def pending(self) -> dict[str, datetime]:
        """A copy of the times not written yet."""
        with self._lock:
            return dict(self._pending)

    def record(self, token_id: str, at: datetime) -> None:
        """Note a use of *token_id* at *at*; flush when the interval is over."""
        with self._lock:
            known = self._pending.get(token_id)
            if known is None or at > known:
                self._pending[token_id] = at
            due = self._monotonic() >= self._next_flush
        if due:
            self.flush()

    def flush(self) -> int:
        """Write what was collected in one UPDATE; return the number of tokens written."""
        # One flush at a time: a second caller that finds the lock taken leaves it to the first.
        if not self._flush_lock.acquire(blocking=False):
            return 0
        try:
            with self._lock:
                batch, self._pending = self._pending, {}
                self._next_flush = self._monotonic() + self._interval
            if not batch:
                return 0
            try:
                self._store.record_last_used(batch)
            except DatabaseUnavailableError as error:
                with self._lock:
                    for token_id, at in batch.items():
                        known = self._pending.get(token_id)
                        if known is None or at > known:
                            self._pending[token_id] = at
                log.warning("api.last_used_deferred", tokens=len(batch), reason=str(error))
                return 0
            log.debug("api.last_used_flushed", tokens=len(batch))
            return len(batch)
        finally:
            self._flush_lock.release()
