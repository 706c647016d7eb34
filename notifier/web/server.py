"""uvicorn, configured for notifier's app: in a thread, on a socket bound up front.

Three things differ from a plain ``uvicorn.Server``:

- ``X-Forwarded-For`` is not applied by uvicorn (``proxy_headers=False``): uvicorn would believe
  it from 127.0.0.1 by default, while the API believes it only from
  ``NOTIFIER_TRUSTED_PROXIES`` (:func:`notifier.web.auth.client_address`).
- On shutdown the live streams are told to end first (:class:`Served`, the API): uvicorn
  waits for open responses to finish, and an event stream never does. The pending last-use
  times are written then too.
- The listener is bounded (:class:`ListenerLimits`): a connection must send each request's
  line and headers within ``NOTIFIER_HTTP_HEADER_TIMEOUT`` of opening or of its previous
  answer, and past ``NOTIFIER_HTTP_MAX_CONNECTIONS`` open connections requests are answered
  503. uvicorn's own keep-alive timer is cancelled by any byte received, and nothing times a
  connection's first request at all, so one that trickles a header line a byte at a time
  would be held for ever (slowloris): :class:`HeaderDeadlineProtocol` closes it.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import h11
import structlog
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from notifier.config.settings import HttpAddress

log = structlog.get_logger("notifier.web")


class HttpBindError(Exception):
    """The HTTP address cannot be bound (in use, not ours)."""


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """How long a client may take over a request's headers, and how many may connect."""

    header_timeout: timedelta = timedelta(seconds=10)  # NOTIFIER_HTTP_HEADER_TIMEOUT
    max_connections: int = 1000  # NOTIFIER_HTTP_MAX_CONNECTIONS


class Served(Protocol):
    """What the server serves beside the app: its limits, and streams to end on shutdown."""

    listener: ListenerLimits
    closing: threading.Event  # set first on shutdown: the live streams end

    def close(self) -> None:
        """The server has stopped: write what is pending."""


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers come too slowly.

    The deadline starts when the connection opens and again when an answer is complete, and
    is not moved by the bytes that trickle in meanwhile; it is cancelled once h11 has the
    whole request line and headers. Its length is the keep-alive timeout, which
    :func:`config` sets to ``NOTIFIER_HTTP_HEADER_TIMEOUT``: an idle keep-alive connection
    and a slow request are given the same time.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock on the first request's headers."""
        super().connection_made(transport)
        self._follow_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock."""
        self._cancel_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        """Parse what arrived; stop the clock once a request's headers are complete."""
        super().handle_events()
        self._follow_deadline()

    def on_response_complete(self) -> None:
        """Start the clock on the next request's headers."""
        super().on_response_complete()
        self._follow_deadline()

    def _waiting_for_headers(self) -> bool:
        idle = self.cycle is None or self.cycle.response_complete
        return idle and self.conn.their_state is h11.IDLE and not self.transport.is_closing()

    def _follow_deadline(self) -> None:
        if not self._waiting_for_headers():
            self._cancel_deadline()
        elif self._header_deadline is None:  # already running: trickled bytes do not reset it
            self._header_deadline = self.loop.call_later(
                self.timeout_keep_alive, self._headers_too_slow
            )

    def _cancel_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self._waiting_for_headers():
            log.debug("http.header_timeout", client=_peer(self.client))
            self.transport.close()


def _peer(client: tuple[str, int] | None) -> str | None:
    return client[0] if client is not None else None


def bind(address: HttpAddress) -> socket.socket:
    """Bind the listening socket ourselves: port 0 is known before serving, a taken port fails."""
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
    except OSError as error:
        raise HttpBindError(f"cannot listen on {address}: {error.strerror or error}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def config(app: FastAPI, limits: ListenerLimits | None = None) -> uvicorn.Config:
    """The uvicorn settings of notifier's app: our logging, no access log, no proxy headers."""
    bounds = limits or ListenerLimits()
    return uvicorn.Config(
        app,
        http=HeaderDeadlineProtocol,
        log_config=None,
        access_log=False,
        lifespan="off",
        proxy_headers=False,
        server_header=False,
        # uvicorn counts the connection asking among the open ones: one more serves exactly
        # max_connections at once.
        limit_concurrency=bounds.max_connections + 1,
        timeout_keep_alive=math.ceil(bounds.header_timeout.total_seconds()),
    )


class WebServer(uvicorn.Server):
    """uvicorn that ends the live streams before it waits for open responses."""

    def __init__(self, app: FastAPI, api: Served | None) -> None:
        super().__init__(config(app, api.listener if api is not None else None))
        self._api = api
        self.thread: threading.Thread | None = None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Close the streams, let the other responses finish, then flush the last uses."""
        if self._api is not None:
            self._api.closing.set()
        await super().shutdown(sockets)
        if self._api is not None:
            self._api.close()

    def start(self, sock: socket.socket) -> None:
        """Serve on *sock* in a thread of its own."""
        self.thread = threading.Thread(
            target=self.run, kwargs={"sockets": [sock]}, name="http", daemon=True
        )
        self.thread.start()

    def stop(self, timeout: float = 5) -> None:
        """Ask the server to stop and wait for it (at most *timeout* seconds)."""
        self.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=timeout)
