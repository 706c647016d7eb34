"""A rolling-hour request limit per token, kept in this process's memory.

Each key keeps the times of its accepted requests within the last window (at most *limit* of
them), so the limit holds over every window-long span, not just over calendar hours: a client
cannot send *limit* requests at 09:59 and *limit* more at 10:00. A refused request is not
counted. Memory is bounded by *limit* floats per key that was used within the window; keys
idle for a whole window are dropped.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 3600.0
_SWEEP_EVERY_S = 300.0


class RateLimiter:
    """At most *limit* requests per key in any rolling window; 0 means no limit."""

    def __init__(
        self,
        limit: int,
        *,
        window_s: float = WINDOW_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self._window = window_s
        self._monotonic = monotonic
        self._accepted: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._next_sweep = monotonic() + _SWEEP_EVERY_S

    def acquire(self, key: str) -> int | None:
        """Count a request for *key*; None when allowed, else the seconds to wait (>= 1)."""
        if self.limit <= 0:
            return None
        now = self._monotonic()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            times = self._accepted.setdefault(key, deque())
            horizon = now - self._window
            while times and times[0] <= horizon:
                times.popleft()
            if len(times) >= self.limit:
                return max(1, math.ceil(times[0] - horizon))
            times.append(now)
            return None

    def _sweep(self, now: float) -> None:
        """Drop keys with no request inside the window, so idle tokens cost nothing."""
        horizon = now - self._window
        for key in [key for key, times in self._accepted.items() if times[-1] <= horizon]:
            del self._accepted[key]
        self._next_sweep = now + _SWEEP_EVERY_S
