"""Real receivers on 127.0.0.1 for the sink tests: a free port, an SMTP mailbox, fast retries.

Also an HTTP server that handles requests in threads of their own, so that a sink's
concurrent POSTs overlap there, and :class:`InFlight`, which counts how many do.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session
from pytest_httpserver import HTTPServer

from notifier.core.clock import FixedClock
from notifier.sinks.registry import Retry

FAST = Retry(
    deadline=timedelta(seconds=3),
    attempts=3,
    wait_initial=timedelta(milliseconds=5),
    wait_max=timedelta(milliseconds=20),
)


@pytest.fixture
def recent_clock() -> FixedClock:
    """A clock near the real now, so webhook timestamps pass a receiver's freshness check."""
    return FixedClock(datetime.now(UTC).replace(microsecond=0))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class Mailbox:
    """What a loopback SMTP server received."""

    messages: list[tuple[list[str], Message]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        del server, session, options
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        del server, session
        assert isinstance(envelope.content, bytes)
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    """A plain SMTP server on 127.0.0.1 that keeps what it receives."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


@pytest.fixture
def threaded_httpserver() -> Iterator[HTTPServer]:
    """An HTTP server on 127.0.0.1 that answers each request in a thread of its own."""
    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        server.stop()


class InFlight:
    """How many requests a receiver handles at once, and the most it has seen."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self._lock = threading.Lock()

    @contextmanager
    def request(self) -> Iterator[None]:
        """Count one request while the block runs (before its answer is written)."""
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            yield
        finally:
            with self._lock:
                self.now -= 1
