"""Retries for network sinks: exponential backoff with jitter, inside one deadline per pass.

A sink raises :class:`Transient` (408, 429, 5xx, a network error; optionally with the
receiver's Retry-After) or :class:`Permanent` (any other 4xx, a refused address) at its edge;
:class:`Retrier` turns each send into an :class:`~notifier.sinks.Outcome`.

The wait before retry *n* is stamina's formula, ``min(wait_max, wait_initial * 2 ** (n - 1) +
jitter)`` with a jitter of up to ``wait_initial``, or the Retry-After the receiver asked for; a
wait that would end past the deadline is not taken. All notices of one delivery share one
deadline: once it is spent, the rest are not attempted and stay due for the next pass, so a
receiver that is down costs one deadline per pass, not one per notice. Each retry is logged
as ``sink.retry``.

Given the daemon's stop event, a stop request (SIGTERM) ends a delivery at once: a retry wait
wakes, and a send in flight gets :data:`IN_FLIGHT_GRACE` to finish (and is recorded if it
does), after which it is abandoned on the daemon thread it runs on. Such a notice, and every
one after it, is :meth:`~notifier.sinks.Outcome.interrupted`: not sent, and its claim goes
back, so the next pass retries it at once. An abandoned send may still reach the receiver;
the retry reuses the notice id, so receivers deduplicate (at-least-once).
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable

import structlog

from notifier.sinks import Outcome
from notifier.sinks.registry import Retry

_POLL = 0.05  # seconds between looks at the stop event while a send is in flight
# How long a send already in flight when the stop comes may take to finish: a receiver that
# answers by then is recorded as sent (no duplicate); one that hangs is abandoned.
IN_FLIGHT_GRACE = 1.0

log = structlog.get_logger("notifier.sinks")


class Transient(Exception):  # noqa: N818 - reads as what the sink says: raise Transient(...)
    """The send failed but may succeed later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Permanent(Exception):  # noqa: N818
    """Retrying the same send cannot succeed."""


class _Stopped(Exception):  # noqa: N818
    """A stop request ended the send: before it, in a retry wait, or while it was in flight."""

    def __init__(self, *, in_flight: bool) -> None:
        super().__init__("stopping")
        self.in_flight = in_flight


class _Call:
    """One send handed to the worker, and how it ended."""

    def __init__(self, send: Callable[[], None]) -> None:
        self._send = send
        self.done = threading.Event()
        self.error: BaseException | None = None

    def __call__(self) -> None:
        try:
            self._send()
        except BaseException as error:  # noqa: BLE001 - handed back to the waiting caller
            self.error = error
        finally:
            self.done.set()


class _Worker:
    """A daemon thread that runs sends one at a time, so that a stop need not wait for one.

    A daemon thread, because a send the stop walked away from must not hold the process
    open: it ends with its own timeout, or with the process.
    """

    def __init__(self, sink: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=f"send:{sink}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def submit(self, send: Callable[[], None]) -> _Call:
        call = _Call(send)
        self._jobs.put(call)
        return call

    def then(self, release: Callable[[], None]) -> None:
        """Run *release* once the work queued so far has ended; its errors are ignored."""
        self._jobs.put(_Call(release))

    def close(self) -> None:
        """Let the thread end after what is queued."""
        self._jobs.put(None)


class Retrier:
    """Send notices one by one with retries, inside one shared deadline.

    One per delivery; :meth:`close` ends it. With a stop event the sends run on a worker
    thread, which a stop can leave behind; :attr:`abandoned` says whether it did.
    """

    def __init__(
        self,
        retry: Retry,
        *,
        sink: str,
        stop: threading.Event | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._retry = retry
        self._sink = sink
        self._monotonic = monotonic
        self._deadline = monotonic() + retry.deadline.total_seconds()
        self._wait_max = min(retry.wait_max, retry.deadline / 4).total_seconds()
        self._wait_initial = retry.wait_initial.total_seconds()
        # Without a stop event nothing can interrupt: sends run on the caller's thread, and
        # the waits sleep on an event no one sets.
        self._abandonable = stop is not None
        self._stop = stop or threading.Event()
        self._worker: _Worker | None = None
        self._spent = False
        self._interrupted = False
        self.abandoned = False  # a send was left running on the worker by a stop

    def close(self, release: Callable[[], None] | None = None) -> None:
        """End the delivery; run *release* (closing a connection) now, or after an abandoned send.

        A send the stop walked away from may still be blocked reading its socket, and closing
        a socket under a blocked read is unsafe (its descriptor can be reused meanwhile), so
        then *release* runs on the worker's thread once that send has ended.
        """
        worker, self._worker = self._worker, None
        if worker is not None and self.abandoned and release is not None:
            worker.then(release)
        elif release is not None:
            release()
        if worker is not None:
            worker.close()

    def run(self, send: Callable[[], None]) -> Outcome:
        """Call *send* until it succeeds, fails for good, the deadline is spent, or a stop."""
        if self._interrupted:
            return Outcome.interrupted()
        if self._spent:
            return Outcome.failed("not attempted: the retry deadline of this pass is spent")
        try:
            self._send_with_retries(send)
        except Transient as error:
            return Outcome.failed(str(error))
        except Permanent as error:
            return Outcome.failed(str(error), permanent=True)
        except _Stopped as stopped:
            return self._interrupt(in_flight=stopped.in_flight)
        return Outcome.sent()

    def _send_with_retries(self, send: Callable[[], None]) -> None:
        attempt = 1
        while True:
            if self._stop.is_set():
                raise _Stopped(in_flight=False)
            try:
                self._attempt(send)
            except Transient as error:
                if self._stop.is_set():
                    raise _Stopped(in_flight=False) from None
                wait = self._wait_after(attempt, error)
                if wait is None:
                    raise
                log.info(
                    "sink.retry",
                    sink=self._sink,
                    attempt=attempt,
                    attempts=self._retry.attempts,
                    wait_s=round(wait, 3),
                    error=str(error),
                )
                if self._stop.wait(wait):
                    raise _Stopped(in_flight=False) from None
                attempt += 1
            else:
                return

    def _attempt(self, send: Callable[[], None]) -> None:
        if not self._abandonable:
            send()
            return
        if self._worker is None:
            self._worker = _Worker(self._sink)
        call = self._worker.submit(send)
        while not call.done.wait(_POLL):
            if self._stop.is_set():
                if call.done.wait(IN_FLIGHT_GRACE):
                    break  # it finished in time: its outcome stands
                self.abandoned = True
                raise _Stopped(in_flight=True)
        if call.error is not None:
            raise call.error

    def _interrupt(self, *, in_flight: bool) -> Outcome:
        if not self._interrupted:
            self._interrupted = True
            log.info(
                "sink.interrupted",
                sink=self._sink,
                reason="stopping",
                abandoned_send=in_flight,
                retry="next pass; the claims are released",
            )
        return Outcome.interrupted()

    def _wait_after(self, attempt: int, error: Transient) -> float | None:
        """Seconds to wait before the next attempt, or None when none fits."""
        remaining = self._deadline - self._monotonic()
        if remaining <= 0:
            self._spent = True  # the notices after this one wait for the next pass
            return None
        if attempt >= self._retry.attempts:
            return None
        if error.retry_after is not None:
            wait = error.retry_after  # the receiver's; beyond the deadline means next pass
        else:
            jitter = random.uniform(0, self._wait_initial)  # noqa: S311 - not for secrets
            wait = min(self._wait_max, self._wait_initial * 2 ** (attempt - 1) + jitter)
        return wait if wait <= remaining else None
