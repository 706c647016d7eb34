"""The pieces the gate is made of: client addresses, the rolling limits, event ids, slots."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest

from notifier.web.access import client_address, parse_address, throttle_key
from notifier.web.ratelimit import FailureThrottle, RateLimiter, Throttled
from notifier.web.stream import InvalidCursorError, StreamSlots, parse_event_id
from tests.web_tier import Ticker

PROXIES = (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32"))


class TestClientAddress:
    @pytest.mark.parametrize(
        ("peer", "forwarded_for", "client"),
        [
            ("203.0.113.5", None, "203.0.113.5"),  # no proxy: the peer
            ("203.0.113.5", "10.0.0.1", "203.0.113.5"),  # untrusted peer: header ignored
            ("192.0.2.1", "10.0.0.1", "10.0.0.1"),  # trusted proxy: its hop
            ("192.0.2.1", "10.0.0.1, 192.0.2.9", "10.0.0.1"),  # two trusted proxies in a row
            ("192.0.2.1", "10.0.0.1, 203.0.113.7", "203.0.113.7"),  # stops at the first untrusted
            ("192.0.2.1", "", "192.0.2.1"),  # a proxy that added nothing is the client
            ("192.0.2.1", "nonsense", "192.0.2.1"),  # a garbled hop is not believed
            ("192.0.2.1", "10.0.0.1:5000", "10.0.0.1"),  # a port is dropped
            ("2001:db8::1", "[2001:db8:1::5]:443", "2001:db8:1::5"),  # IPv6 with a port
            ("::ffff:203.0.113.5", None, "203.0.113.5"),  # IPv4-mapped becomes IPv4
            (None, "10.0.0.1", None),  # no peer known (a Unix socket)
        ],
    )
    def test_addresses(self, peer: str | None, forwarded_for: str | None, client: str) -> None:
        """The client is the peer, or the nearest untrusted hop when the peer is a proxy."""
        found = client_address(peer, forwarded_for, PROXIES)
        assert (str(found) if found is not None else None) == client

    def test_garbage_is_not_an_address(self) -> None:
        """Text that is no address parses to None rather than failing."""
        assert parse_address("999.1.1.1") is None
        assert parse_address("") is None


class TestRateLimiter:
    def test_allows_the_limit_then_says_how_long_to_wait(self) -> None:
        """After `limit` requests the next is refused with the seconds until the oldest ages out."""
        ticker = Ticker()
        limiter = RateLimiter(2, window_s=3600, monotonic=ticker)
        assert limiter.acquire("a") is None
        ticker.advance(100)
        assert limiter.acquire("a") is None
        ticker.advance(100)
        assert limiter.acquire("a") == 3400
        ticker.advance(3400)
        assert limiter.acquire("a") is None

    def test_refusals_are_not_counted(self) -> None:
        """Hammering while refused does not push the next allowed request further away."""
        ticker = Ticker()
        limiter = RateLimiter(1, window_s=60, monotonic=ticker)
        limiter.acquire("a")
        for _ in range(50):
            assert limiter.acquire("a") == 60
        ticker.advance(60)
        assert limiter.acquire("a") is None

    def test_zero_means_no_limit(self) -> None:
        """NOTIFIER_API_RATE_LIMIT=0 turns the limit off."""
        limiter = RateLimiter(0)
        assert all(limiter.acquire("a") is None for _ in range(10_000))

    def test_idle_keys_are_forgotten(self) -> None:
        """Keys with no request inside the window are dropped, so memory follows active tokens."""
        ticker = Ticker()
        limiter = RateLimiter(5, window_s=60, monotonic=ticker)
        for key in ("a", "b", "c"):
            limiter.acquire(key)
        ticker.advance(600)
        limiter.acquire("d")
        assert limiter.keys() == {"d"}


class TestFailureThrottle:
    def test_refuses_past_the_limit_until_the_oldest_failure_ages_out(self) -> None:
        """After `limit` failures in a minute the key waits until the oldest is a minute old."""
        ticker = Ticker()
        throttle = FailureThrottle(2, window_s=60, monotonic=ticker)
        assert throttle.check("a") is None
        throttle.fail("a")
        ticker.advance(10)
        throttle.fail("a")
        assert throttle.check("a") == Throttled(retry_after=50, announce=True)
        assert throttle.check("b") is None  # another key is not affected
        ticker.advance(50)
        assert throttle.check("a") is None

    def test_announces_once_per_window(self) -> None:
        """Only the first refusal in a window is to be logged."""
        ticker = Ticker()
        throttle = FailureThrottle(1, window_s=60, monotonic=ticker)
        throttle.fail("a")
        refusals = [throttle.check("a") for _ in range(5)]
        announced = [refusal.announce if refusal else None for refusal in refusals]
        assert announced == [True] + [False] * 4
        ticker.advance(60)
        throttle.fail("a")
        assert throttle.check("a") == Throttled(retry_after=60, announce=True)

    def test_memory_is_bounded(self) -> None:
        """A key keeps at most `limit` failures, and keys quiet for a window are dropped."""
        ticker = Ticker()
        throttle = FailureThrottle(3, window_s=60, monotonic=ticker)
        for _ in range(1000):
            throttle.fail("a")
        assert throttle.count("a") == 3
        throttle.fail("b")
        ticker.advance(61)
        throttle.check("c")
        assert throttle.keys() == frozenset()

    def test_zero_means_off(self) -> None:
        """A limit of 0 never refuses."""
        throttle = FailureThrottle(0)
        for _ in range(100):
            throttle.fail("a")
        assert throttle.check("a") is None

    @pytest.mark.parametrize(
        ("address", "key"),
        [
            ("203.0.113.5", "203.0.113.5"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),  # a host's whole /64
            (None, "unknown"),
        ],
    )
    def test_keys(self, address: str | None, key: str) -> None:
        """Failures count by IPv4 address, by IPv6 /64."""
        parsed = ipaddress.ip_address(address) if address is not None else None
        assert throttle_key(parsed) == key


class TestStreamSlots:
    def test_at_most_the_limit_per_key(self) -> None:
        """A key holds at most `limit` slots; giving one back frees it; keys are apart."""
        slots = StreamSlots(2)
        assert [slots.take("a") for _ in range(3)] == [True, True, False]
        assert slots.take("b")
        slots.give_back("a")
        assert slots.take("a")
        assert slots.held("a") == 2
        slots.give_back("a")
        slots.give_back("a")
        assert slots.held("a") == 0


NOW = datetime(2026, 1, 1, tzinfo=UTC)


class TestEventIds:
    @pytest.mark.parametrize(
        ("text", "parsed"),
        [
            ("2026-01-01T00:00:00Z", "2026-01-01 00:00:00+00:00"),
            ("2026-01-01T01:00:00+01:00", "2026-01-01 00:00:00+00:00"),
            ("1970-01-01T00:00:00Z", "1970-01-01 00:00:00+00:00"),  # the earliest
            ("2026-01-01T23:59:59Z", "2026-01-01 23:59:59+00:00"),  # a writer's clock ahead
            ("", None),  # empty: no cursor, as if absent
            (None, None),
        ],
    )
    def test_last_event_id(self, text: str | None, parsed: str | None) -> None:
        """Last-Event-ID is an RFC 3339 time with a zone, or absent."""
        found = parse_event_id(text, now=NOW)
        assert (str(found) if found is not None else None) == parsed

    @pytest.mark.parametrize(
        ("text", "words"),
        [
            ("0001-01-01T00:00:00+23:59", "before 1970"),  # overflowed converting to UTC
            ("0001-01-01T00:00:00+00:00", "before 1970"),  # overflowed the look-back
            ("9999-12-31T23:59:59-23:59", "more than a day ahead"),
            ("2026-01-03T00:00:00Z", "more than a day ahead"),
            ("2026-01-01T00:00:00", "no timezone"),  # not one of ours
            ("yesterday", "not an event id"),
        ],
    )
    def test_a_bad_cursor_is_refused(self, text: str, words: str) -> None:
        """A Last-Event-ID the stream never sent is an error, not a silent restart."""
        with pytest.raises(InvalidCursorError, match=words):
            parse_event_id(text, now=NOW)
