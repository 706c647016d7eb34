"""Retries and bounded concurrency for network sinks, inside one deadline per delivery.

A sink raises :class:`Transient` (408, 429, 5xx, a network error; optionally with the
receiver's Retry-After) or :class:`Permanent` (any other 4xx, a refused address) at its edge;
:class:`Retrier` turns each send into an :class:`~notifier.sinks.Outcome`, one per send, in
order, whatever order the sends end in.

The wait before retry *n* is stamina's formula, ``min(wait_max, wait_initial * 2 ** (n - 1) +
jitter)`` with a jitter of up to ``wait_initial``, or the Retry-After the receiver asked for; a
wait that would end past the deadline is not taken. All sends of one delivery share one
deadline: once it is spent, the rest are not attempted and stay due for the next pass, so a
receiver that is down costs one deadline per pass, not one per notice. Each retry is logged
as ``sink.retry``.

**Concurrency.** :meth:`Retrier.run_all` runs up to ``concurrency`` sends at once (the sink's
option, :data:`DEFAULT_CONCURRENCY`) on daemon threads of the delivery, as many threads as
sends may be in flight: they end when the limit comes down and start when it goes up. How
fast a sink may go is its :class:`Throttle`, which the sink keeps across deliveries. Sends in
flight are held to the smaller of two limits, and a pause:

- the receiver's limit starts at ``concurrency``. A 429 halves it (down to 1), at most once
  per round trip: a 429 that answers a send started before the last cut does not cut again.
  Each success adds ``1 / limit``, so it grows back by about one per round of sends (AIMD,
  as TCP's congestion window does). The cut is logged as ``sink.slowed``;
- our own limit is what the sending threads' CPU leaves room for. Building and signing a
  POST and running httpx's HTTP/1.1 code hold Python's GIL; while one send waits for its
  answer, others can use that time, but no more than ``1 + wait // cpu`` of them (Little's
  law, whole sends), with *cpu* a send's CPU time (a moving average) and *wait* the least
  time a send spent waiting on the network in the last second or so. Behind a receiver
  across a network that is far above any setting; against one that answers at once it is
  one: a second thread would cost each send GIL hand-offs (about half a send's CPU here)
  for a wait shorter than a send, and more threads only queue for the GIL, which costs more
  than they gain (docs/performance.md). The first sends go two at a time, until the first
  of them has ended and there is something to measure (behind a slow receiver, one round
  trip at two); at the full ``concurrency`` from the start, a fast receiver got a connection per
  thread, which the connection pool then polls on every request until they expire;
- a Retry-After (on a 429 or a 503) pauses the whole sink until that moment: no send of it
  starts before then, whichever notice got the answer. A pause that ends past a delivery's
  deadline leaves that delivery's unsent notices to the next pass at once. A Retry-After
  longer than :data:`MAX_PAUSE` counts as that long, so a receiver's mistake cannot silence
  a sink for days.

Threads rather than an event loop: Apprise's calls block, so they need threads anyway, and
with threads a stop means what it meant for one send at a time (below). An asyncio client
can cancel a POST in flight, but a cancelled POST may have arrived all the same, so its
notice is interrupted either way; and httpx's AsyncClient measured slower per request than
its threaded transport (docs/performance.md).

**Stop.** Given the daemon's stop event, a stop request (SIGTERM) ends a delivery at once: no
send starts after it, retry and pause waits wake, and the sends in flight get
:data:`IN_FLIGHT_GRACE` to finish. One that finishes by then is recorded (sent, or failed for
good); one that does not is abandoned on its daemon thread, where it ends with its own
timeout or with the process. Its notice, and every notice not sent, is
:meth:`~notifier.sinks.Outcome.interrupted`: not sent, and its claim goes back, so the next
pass retries it at once. An abandoned send may still reach the receiver; the retry reuses the
notice id, so receivers deduplicate (at-least-once). :meth:`Retrier.close` then runs the
sink's release (closing its connections) only once the last abandoned send has ended: closing
a socket under a blocked read is unsafe (its descriptor can be reused meanwhile).
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from collections.abc import Callable, Sequence

import structlog

from notifier.config.options import OptionError
from notifier.sinks import Outcome
from notifier.sinks.registry import Retry

_POLL = 0.05  # seconds between looks at the stop event while a delivery runs
# How long a send already in flight when the stop comes may take to finish: a receiver that
# answers by then is recorded as sent (no duplicate); one that hangs is abandoned.
IN_FLIGHT_GRACE = 1.0
# Sends of one sink in flight at most, unless its `concurrency` option says otherwise: behind
# a receiver that answers in 50 ms, 32 carry a pass at about 440 notices/s, 16 at about 260,
# too close to the 250 asked for (docs/performance.md).
DEFAULT_CONCURRENCY = 32
MAX_CONCURRENCY = 256
MAX_PAUSE = 3600.0  # seconds: the longest Retry-After a sink waits out
_AVERAGED = 16  # sends in the moving average of a send's CPU time
_WINDOW = 0.5  # seconds per window of the least network wait
_FIRST_SENDS = 2  # sends in flight before one has ended and been measured

log = structlog.get_logger("notifier.sinks")


class Transient(Exception):  # noqa: N818 - reads as what the sink says: raise Transient(...)
    """The send failed but may succeed later."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, throttled: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.throttled = throttled  # the receiver said "too many requests" (429): slow down


class Permanent(Exception):  # noqa: N818
    """Retrying the same send cannot succeed."""


class _Stopped(Exception):  # noqa: N818
    """A stop request came before the send could start."""


def check_concurrency(value: object) -> int:
    """The ``concurrency`` option: a whole number from 1 to 256; the default when unset."""
    if value is None:
        return DEFAULT_CONCURRENCY
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not 1 <= number <= MAX_CONCURRENCY:
        raise OptionError(
            "concurrency",
            f"expected a whole number from 1 to {MAX_CONCURRENCY} (sends in flight at once)",
        )
    return number


class Throttle:
    """How fast one sink may send: the in-flight limits (the receiver's, ours) and a pause.

    The sink keeps one across deliveries, so a delivery starts at the pace the last one left.
    """

    def __init__(
        self, ceiling: int, *, sink: str, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.ceiling = ceiling
        self._sink = sink
        self._monotonic = monotonic
        self._limit = float(ceiling)  # the receiver's: AIMD on its 429s
        self._cuts = 0  # how often it was cut; a send carries the count it started under
        self._resume_at = float("-inf")  # monotonic seconds: no send starts before
        self._in_flight = 0
        # Ours: a send's CPU time (a moving average), and the least time one waited on the
        # network, over this window of sends and the one before.
        self._cpu: float | None = None
        self._samples = 0  # sends in that average, up to _AVERAGED
        self._waits = [math.inf, math.inf]
        self._window_ends = monotonic() + _WINDOW
        self._changed = threading.Condition(threading.Lock())

    @property
    def limit(self) -> int:
        """Sends that may be in flight at once now."""
        limit = min(int(self._limit), self.ceiling)
        if self._cpu is None:
            # Nothing measured yet: the first send to end says how long one waits. At the
            # full concurrency from the start, a receiver that answers at once got as many
            # connections as threads, and httpcore's pool polls every idle one of them on
            # each request until they expire: more CPU than the POSTs.
            limit = min(limit, _FIRST_SENDS)
        elif self._cpu:
            # While one send waits for its answer, others fill the time with their own CPU
            # work; more than that many only queue for the GIL (Little's law). Only whole
            # sends' CPU counts: a second thread costs each send GIL hand-offs, about half
            # a send's CPU more against a receiver that answers at once, where one at a
            # time is the faster (docs/performance.md).
            useful = 1 + math.floor(min(self._waits) / self._cpu)
            limit = min(limit, useful)
        return limit

    def acquire(self, stop: threading.Event, deadline: float) -> int | None:
        """Wait for a free slot and the end of a pause; None if the pause outlasts *deadline*.

        Returns the cut count to hand back to :meth:`release`; raises :class:`_Stopped` once
        *stop* is set.
        """
        with self._changed:
            while True:
                if stop.is_set():
                    raise _Stopped
                if self._resume_at > deadline:
                    return None
                pause = self._resume_at - self._monotonic()
                if pause > 0:
                    self._changed.wait(pause)
                elif self._in_flight < self.limit:
                    self._in_flight += 1
                    return self._cuts
                else:
                    self._changed.wait()

    def release(
        self,
        cuts: int,
        *,
        wall: float = 0.0,
        cpu: float = 0.0,
        sent: bool = False,
        throttled: bool = False,
        pause: float = 0.0,
    ) -> None:
        """End a send that started under *cuts* and took *wall* seconds, *cpu* of them ours."""
        with self._changed:
            self._in_flight -= 1
            if wall:
                self._measured(wall, cpu)
            paused = pause > 0 and self._resume_at < self._monotonic()
            if pause > 0:
                self._resume_at = max(self._resume_at, self._monotonic() + min(pause, MAX_PAUSE))
            cut = throttled and cuts == self._cuts and self._limit > 1
            if cut:
                self._limit = max(1.0, self._limit / 2)
                self._cuts += 1
            elif sent and self._limit < self.ceiling:
                self._limit = min(float(self.ceiling), self._limit + 1 / self._limit)
            # Wake as many as may start now, not every waiter: a herd of threads woken only
            # to wait again costs more GIL than the sends themselves.
            self._changed.notify(max(1, self.limit - self._in_flight))
            receivers = int(self._limit)
        if cut or paused:
            log.info(
                "sink.slowed",
                sink=self._sink,
                in_flight_limit=receivers,
                paused_s=round(min(pause, MAX_PAUSE), 3) if paused else None,
            )

    def _measured(self, wall: float, cpu: float) -> None:
        # A moving average, which is the plain mean of the first _AVERAGED sends: a process's
        # first send pays its one-time work (imports, the first connection), and as the seed
        # of a slow average it held the limit down for many sends, long enough, behind a
        # receiver at 20 ms, for a pass to outlive its claims' lease (bench/faults.py).
        self._samples = min(self._samples + 1, _AVERAGED)
        self._cpu = cpu if self._cpu is None else self._cpu + (cpu - self._cpu) / self._samples
        self._waits[1] = min(self._waits[1], max(wall - cpu, 0.0))
        if (now := self._monotonic()) >= self._window_ends:
            # A receiver that got slower is seen within two windows.
            self._waits = [self._waits[1], math.inf]
            self._window_ends = now + _WINDOW

    def wake(self) -> None:
        """Wake the sends waiting for a slot or a pause, so that they see a stop."""
        with self._changed:
            self._changed.notify_all()


class _Book:
    """The sends of one :meth:`Retrier.run_all` call: which are taken, and their outcomes."""

    def __init__(self, count: int) -> None:
        self.outcomes: list[Outcome | None] = [None] * count
        self.workers = 0  # threads taking its sends
        self.taken = 0
        self.done = 0
        self.closed = False  # the caller has its answer: later outcomes are not recorded
        self.error: BaseException | None = None  # a send raised something unexpected

    def finished(self) -> bool:
        complete = self.taken == len(self.outcomes) or self.error is not None
        return complete and self.done == self.taken


class Retrier:
    """Run a delivery's sends with retries, up to its throttle's limit at once, in one deadline.

    One per delivery; :meth:`close` ends it. :attr:`abandoned` says whether a stop left a send
    running.
    """

    def __init__(
        self,
        retry: Retry,
        *,
        sink: str,
        stop: threading.Event | None = None,
        throttle: Throttle | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._retry = retry
        self._sink = sink
        self._monotonic = monotonic
        self._deadline = monotonic() + retry.deadline.total_seconds()
        self._wait_max = min(retry.wait_max, retry.deadline / 4).total_seconds()
        self._wait_initial = retry.wait_initial.total_seconds()
        # Without a stop event nothing interrupts: the waits are on an event no one sets.
        self._stop = stop or threading.Event()
        self._throttle = throttle or Throttle(1, sink=sink, monotonic=monotonic)
        self._lock = threading.Condition(threading.Lock())
        self._workers = 0  # threads of this delivery still running, abandoned ones too
        self._sending = 0  # sends in flight, inside the sink's send call
        self._draining = False  # a stop waits for the sends in flight (their grace)
        self._release: Callable[[], None] | None = None
        self._spent = False
        self._interrupted = False
        self.abandoned = False  # a stop left a send running

    def close(self, release: Callable[[], None] | None = None) -> None:
        """End the delivery; run *release* (closing connections) now, or after abandoned sends.

        A send the stop walked away from may still be blocked reading its socket, so then
        *release* runs on the thread of the last such send, once it has ended; its errors are
        ignored there.
        """
        if release is None:
            return
        with self._lock:
            if self.abandoned and self._workers:
                self._release = release
                return
        release()

    def run(self, send: Callable[[], None]) -> Outcome:
        """Call *send* until it succeeds, fails for good, the deadline is spent, or a stop."""
        (outcome,) = self.run_all([send])
        return outcome

    def run_all(self, sends: Sequence[Callable[[], None]]) -> list[Outcome]:
        """Run *sends*, up to the throttle's limit at once; one outcome per send, in order."""
        if self._interrupted or not sends:
            return [Outcome.interrupted()] * len(sends)
        book = _Book(len(sends))
        with self._lock:
            self._spawn(book, sends, min(self._throttle.limit, len(sends)))
            while not book.finished():
                if self._stop.is_set():
                    self._end_on_stop(book)
                    break
                self._lock.wait(_POLL)
            book.closed = True
        if book.error is not None:
            raise book.error
        outcomes = [outcome or Outcome.interrupted() for outcome in book.outcomes]
        if not self._interrupted and any(outcome.stopped for outcome in outcomes):
            self._interrupted = True
            log.info(
                "sink.interrupted",
                sink=self._sink,
                reason="stopping",
                abandoned_send=self.abandoned,
                retry="next pass; the claims are released",
            )
        return outcomes

    def _end_on_stop(self, book: _Book) -> None:
        """Give the sends in flight their grace, then close the book (the lock is held)."""
        self._throttle.wake()
        grace_ends = time.monotonic() + IN_FLIGHT_GRACE
        self._draining = True
        while self._sending and (left := grace_ends - time.monotonic()) > 0:
            self._lock.wait(left)
        book.closed = True
        self.abandoned = self.abandoned or self._sending > 0

    def _spawn(self, book: _Book, sends: Sequence[Callable[[], None]], count: int) -> None:
        """Start *count* more threads on *book* (the lock is held)."""
        self._workers += count
        book.workers += count
        for _ in range(count):
            # Daemon threads: a send the stop walked away from must not hold the process open.
            threading.Thread(
                target=self._work, args=(book, sends), name=f"send:{self._sink}", daemon=True
            ).start()

    def _work(self, book: _Book, sends: Sequence[Callable[[], None]]) -> None:
        """Take the next send until none is left, or the limit has fewer threads."""
        try:
            while (index := self._next(book, sends)) is not None:
                try:
                    self._send(book, index, sends[index])
                except BaseException as error:  # noqa: BLE001 - handed to run_all, which raises
                    with self._lock:
                        book.error = book.error or error
                        self._record(book, index, Outcome.failed(type(error).__name__))
        finally:
            with self._lock:
                self._workers -= 1
                release = None
                if not self._workers:  # the last thread out runs a release left for it
                    release, self._release = self._release, None
            if release is not None:
                with contextlib.suppress(Exception):
                    release()

    def _next(self, book: _Book, sends: Sequence[Callable[[], None]]) -> int | None:
        """The index of the send this thread takes next, or None when the thread should end."""
        with self._lock:
            limit = self._throttle.limit
            untaken = len(sends) - book.taken
            # Ending is decided and counted at once, so that threads that all see the limit
            # come down do not all end.
            if book.closed or book.error is not None or not untaken or book.workers > limit:
                book.workers -= 1
                return None
            # The limit went up: threads for it, rather than parked ones that each send would
            # wake and put back to sleep.
            self._spawn(book, sends, min(limit - book.workers, untaken - 1))
            book.taken += 1
            return book.taken - 1

    def _record(self, book: _Book, index: int, outcome: Outcome) -> None:
        """Keep *outcome* unless the caller already answered (the lock is held)."""
        book.done += 1
        if not book.closed:
            book.outcomes[index] = outcome
        if book.finished():
            self._lock.notify_all()

    def _send(self, book: _Book, index: int, send: Callable[[], None]) -> None:
        """Attempt one send until it has an outcome, and record it."""
        attempt = 1
        while True:
            started = self._start(book)
            if isinstance(started, Outcome):
                with self._lock:
                    self._record(book, index, started)
                return
            result = self._call(book, send, started)
            with self._lock:
                # Out of flight and recorded at once: a stop waiting out the grace either sees
                # this send in flight or finds its outcome.
                self._sending -= 1
                if self._draining and not self._sending:
                    # Only a stop waits for this; waking run_all's poll after every send that
                    # empties the flight would cost a thread switch per send.
                    self._lock.notify_all()
                if isinstance(result, Transient) and self._stop.is_set():
                    result = Outcome.interrupted()
                if isinstance(result, Outcome):
                    self._record(book, index, result)
                    return
            wait = self._wait_after(attempt, result)
            if wait is None:
                with self._lock:
                    self._record(book, index, Outcome.failed(str(result)))
                return
            log.info(
                "sink.retry",
                sink=self._sink,
                attempt=attempt,
                attempts=self._retry.attempts,
                wait_s=round(wait, 3),
                error=str(result),
            )
            if self._stop.wait(wait):
                with self._lock:
                    self._record(book, index, Outcome.interrupted())
                return
            attempt += 1

    def _start(self, book: _Book) -> int | Outcome:
        """Take a slot of the throttle and count the send in flight; or why it cannot start."""
        if self._spent:
            return Outcome.failed("not attempted: the retry deadline of this pass is spent")
        try:
            cuts = self._throttle.acquire(self._stop, self._deadline)
        except _Stopped:
            return Outcome.interrupted()
        if cuts is None:
            return Outcome.failed(
                "not attempted: the receiver asked to wait past the retry deadline of this pass"
            )
        with self._lock:
            if self._stop.is_set() or book.closed:
                self._throttle.release(cuts)
                return Outcome.interrupted()
            self._sending += 1
        return cuts

    def _call(self, book: _Book, send: Callable[[], None], cuts: int) -> Outcome | Transient:
        """Call *send* once: its outcome, or the transient error to retry after."""
        wall, cpu = time.perf_counter(), time.thread_time()
        result: Outcome | Transient
        try:
            send()
        except Transient as error:
            result = error
        except Permanent as error:
            result = Outcome.failed(str(error), permanent=True)
        except BaseException as error:  # noqa: BLE001 - a fault of the sink: run_all raises it
            with self._lock:
                book.error = book.error or error
            result = Outcome.failed(type(error).__name__)
        else:
            result = Outcome.sent()
        self._throttle.release(
            cuts,
            wall=time.perf_counter() - wall,
            cpu=time.thread_time() - cpu,
            sent=result is Outcome.sent(),
            throttled=isinstance(result, Transient) and result.throttled,
            pause=(result.retry_after or 0.0) if isinstance(result, Transient) else 0.0,
        )
        return result

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
