"""The throttle of a network sink: its two in-flight limits and the Retry-After pause."""

from __future__ import annotations

import threading

import pytest

from notifier.sinks.retrying import MAX_PAUSE, Throttle, _Stopped

NEVER = threading.Event()
FAR = 10**9  # a delivery deadline that no pause reaches


class Ticker:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sends(throttle: Throttle, count: int, *, wall: float, cpu: float) -> None:
    """*count* sends, one after another, each taking *wall* seconds, *cpu* of them CPU."""
    for _ in range(count):
        cuts = throttle.acquire(NEVER, FAR)
        assert cuts is not None
        throttle.release(cuts, wall=wall, cpu=cpu, sent=True)


class TestOurLimit:
    def test_it_starts_at_two_until_a_send_has_ended(self) -> None:
        """Before anything is measured two sends go at once; the first to end lifts that."""
        throttle = Throttle(32, sink="webhook")
        assert throttle.limit == 2
        sends(throttle, 1, wall=0.0503, cpu=0.0003)
        assert throttle.limit == 32

    def test_a_costly_first_send_does_not_hold_the_limit_down(self) -> None:
        """A process's first send pays its one-time work; the next few outweigh it.

        Behind a receiver at 20 ms, a first send of 10 ms CPU then sends of 0.3 ms: as the
        seed of a moving average over 16 sends it would hold the limit at 4 after 8 more
        sends (1 + 20 ms // 6.1 ms); averaged as a plain mean while there are fewer than 16,
        it is 15 then (1 + 20 ms // 1.4 ms), and the ceiling soon after.
        """
        throttle = Throttle(32, sink="webhook")
        sends(throttle, 1, wall=0.030, cpu=0.010)
        sends(throttle, 8, wall=0.0203, cpu=0.0003)
        assert throttle.limit == 15
        sends(throttle, 24, wall=0.0203, cpu=0.0003)
        assert throttle.limit == 32

    def test_a_ceiling_of_one_starts_at_one(self) -> None:
        """``concurrency = 1`` is one send at a time from the first."""
        assert Throttle(1, sink="webhook").limit == 1

    def test_a_receiver_across_a_network_gets_the_ceiling(self) -> None:
        """Sends that wait 50 ms for 0.3 ms of CPU leave room for far more than 32."""
        throttle = Throttle(32, sink="webhook")
        sends(throttle, 50, wall=0.0503, cpu=0.0003)
        assert throttle.limit == 32

    @pytest.mark.parametrize(
        ("wait", "limit"),
        [
            (0.0, 1),  # an instant receiver: one at a time, no GIL hand-offs
            (0.0002, 1),  # a wait shorter than a send's CPU: a second thread costs more
            (0.0003, 2),  # waits as long as a send's CPU: 1 + 1
            (0.0009, 4),  # three sends' CPU per wait: 1 + 3
            (0.0010, 4),  # three and a third: only whole sends count
        ],
    )
    def test_a_fast_receiver_gets_what_the_cpu_leaves_room_for(
        self, wait: float, limit: int
    ) -> None:
        """In flight: one more than the whole sends whose CPU fits in the least wait."""
        throttle = Throttle(32, sink="webhook")
        sends(throttle, 50, wall=0.0003 + wait, cpu=0.0003)
        assert throttle.limit == limit

    def test_a_receiver_that_slows_down_is_seen_within_two_windows(self) -> None:
        """The least wait is of the last second or so: slow sends then lift the limit again."""
        ticker = Ticker()
        throttle = Throttle(32, sink="webhook", monotonic=ticker)
        sends(throttle, 10, wall=0.0003, cpu=0.0003)
        assert throttle.limit == 1
        ticker.now += 0.5
        sends(throttle, 10, wall=0.05, cpu=0.0003)
        assert throttle.limit == 1  # the fast sends are still in the window before
        ticker.now += 0.5
        sends(throttle, 10, wall=0.05, cpu=0.0003)
        assert throttle.limit == 32


class TestReceiversLimit:
    def test_a_429_halves_it_once_per_round_trip(self) -> None:
        """Three 429s to sends started together cut once; one to a later send cuts again."""
        throttle = Throttle(16, sink="webhook")
        sends(throttle, 1, wall=0.05, cpu=0.0003)  # measured: our limit is past 16
        together = [throttle.acquire(NEVER, FAR) for _ in range(3)]
        for cuts in together:
            assert cuts is not None
            throttle.release(cuts, wall=0.05, cpu=0.0003, throttled=True)
        assert throttle.limit == 8
        later = throttle.acquire(NEVER, FAR)
        assert later is not None
        throttle.release(later, wall=0.05, cpu=0.0003, throttled=True)
        assert throttle.limit == 4

    def test_successes_grow_it_back_by_one_per_round(self) -> None:
        """From 4, four successes (a round) make it 4.9x; about five rounds reach 8 again."""
        throttle = Throttle(8, sink="webhook")
        cuts = throttle.acquire(NEVER, FAR)
        assert cuts is not None
        throttle.release(cuts, wall=0.05, cpu=0.0003, throttled=True)
        assert throttle.limit == 4
        sends(throttle, 4, wall=0.05, cpu=0.0003)
        assert throttle.limit == 4
        sends(throttle, 30, wall=0.05, cpu=0.0003)
        assert throttle.limit == 8

    def test_it_never_goes_below_one(self) -> None:
        """However many 429s, one send may still go."""
        throttle = Throttle(2, sink="webhook")
        for _ in range(5):
            cuts = throttle.acquire(NEVER, FAR)
            assert cuts is not None
            throttle.release(cuts, throttled=True)
        assert throttle.limit == 1


class TestPause:
    def test_a_pause_past_the_deadline_refuses_at_once(self) -> None:
        """A Retry-After that ends after the delivery's deadline: not attempted, no wait."""
        ticker = Ticker()
        throttle = Throttle(4, sink="webhook", monotonic=ticker)
        cuts = throttle.acquire(NEVER, FAR)
        assert cuts is not None
        throttle.release(cuts, throttled=True, pause=30)
        assert throttle.acquire(NEVER, ticker.now + 29) is None

    def test_a_pause_is_capped(self) -> None:
        """A Retry-After of a year pauses for MAX_PAUSE, not a year."""
        ticker = Ticker()
        throttle = Throttle(4, sink="webhook", monotonic=ticker)
        cuts = throttle.acquire(NEVER, FAR)
        assert cuts is not None
        throttle.release(cuts, pause=365 * 86400)
        assert throttle.acquire(NEVER, ticker.now + MAX_PAUSE - 1) is None
        ticker.now += MAX_PAUSE  # then a send starts without waiting
        assert throttle.acquire(NEVER, ticker.now + 1) is not None

    def test_a_stop_ends_the_wait(self) -> None:
        """A send waiting for a slot gives up once the stop is set."""
        throttle = Throttle(1, sink="webhook")
        assert throttle.acquire(NEVER, FAR) is not None
        stop = threading.Event()
        stop.set()
        with pytest.raises(_Stopped):
            throttle.acquire(stop, FAR)
