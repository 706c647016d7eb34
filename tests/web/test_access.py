"""The pieces the gate is made of: client addresses, the rolling rate limit, event ids."""

from __future__ import annotations

import ipaddress

import pytest

from notifier.web.auth import client_address, parse_address
from notifier.web.ratelimit import RateLimiter
from notifier.web.stream import parse_event_id

from .conftest import Ticker

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
        assert set(limiter._accepted) == {"d"}


class TestEventIds:
    @pytest.mark.parametrize(
        ("text", "parsed"),
        [
            ("2026-01-01T00:00:00Z", "2026-01-01 00:00:00+00:00"),
            ("2026-01-01T01:00:00+01:00", "2026-01-01 00:00:00+00:00"),
            ("2026-01-01T00:00:00", None),  # no zone: not one of ours
            ("yesterday", None),
            (None, None),
        ],
    )
    def test_last_event_id(self, text: str | None, parsed: str | None) -> None:
        """Last-Event-ID is an RFC 3339 time with a zone, or ignored."""
        found = parse_event_id(text)
        assert (str(found) if found is not None else None) == parsed
