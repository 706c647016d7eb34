"""Retries for network sinks: exponential backoff with jitter, inside one deadline per pass.

A sink raises :class:`Transient` (408, 429, 5xx, a network error; optionally with the
receiver's Retry-After) or :class:`Permanent` (any other 4xx, a refused address) at its edge;
:class:`Retrier` turns each send into an :class:`~notifier.sinks.Outcome`.

The wait before retry *n* is stamina's ``min(wait_max, wait_initial * 2 ** (n - 1) + jitter)``,
or the Retry-After the receiver asked for. All notices of one delivery share one deadline:
once it is spent, the rest are not attempted and stay due for the next pass, so a receiver
that is down costs one deadline per pass, not one per notice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import stamina

from notifier.sinks import Outcome
from notifier.sinks.registry import Retry


class Transient(Exception):  # noqa: N818 - reads as what the sink says: raise Transient(...)
    """The send failed but may succeed later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Permanent(Exception):  # noqa: N818
    """Retrying the same send cannot succeed."""


class Retrier:
    """Send notices one by one with retries, inside one shared deadline."""

    def __init__(self, retry: Retry, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._retry = retry
        self._monotonic = monotonic
        self._deadline = monotonic() + retry.deadline.total_seconds()
        self._spent = False

    def run(self, send: Callable[[], None]) -> Outcome:
        """Call *send* until it succeeds, fails for good, or the deadline is spent."""
        if self._spent:
            return Outcome.failed("not attempted: the retry deadline of this pass is spent")
        remaining = self._deadline - self._monotonic()
        try:
            for attempt in stamina.retry_context(
                on=self._should_retry,
                attempts=self._retry.attempts,
                timeout=max(remaining, 0.001),
                wait_initial=self._retry.wait_initial,
                wait_max=min(self._retry.wait_max, self._retry.deadline / 4),
                wait_jitter=self._retry.wait_initial,
            ):
                with attempt:
                    send()
        except Transient as error:
            if self._monotonic() >= self._deadline:
                self._spent = True
            return Outcome.failed(str(error))
        except Permanent as error:
            return Outcome.failed(str(error), permanent=True)
        return Outcome.sent()

    def _should_retry(self, error: Exception) -> bool | float | timedelta:
        """Retry transient failures, after Retry-After if given and it fits the deadline."""
        if not isinstance(error, Transient):
            return False
        remaining = self._deadline - self._monotonic()
        if remaining <= 0:
            self._spent = True
            return False
        if error.retry_after is not None:
            if error.retry_after > remaining:
                return False  # the receiver asked for longer than this pass has: next pass
            return error.retry_after
        return True
