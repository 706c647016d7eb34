"""uvicorn, configured for notifier's app: in a thread, on a socket bound up front.

Two things differ from a plain ``uvicorn.Server``:

- ``X-Forwarded-For`` is not applied by uvicorn (``proxy_headers=False``): uvicorn would believe
  it from 127.0.0.1 by default, while the API believes it only from
  ``NOTIFIER_TRUSTED_PROXIES`` (:func:`notifier.web.auth.client_address`).
- On shutdown the live streams are told to end first (``WebApi.close``): uvicorn waits for
  open responses to finish, and an event stream never does. The pending last-use times are
  written then too.
"""

from __future__ import annotations

import socket
import threading

import uvicorn
from fastapi import FastAPI

from notifier.settings import HttpAddress
from notifier.web.api import WebApi


class HttpBindError(Exception):
    """The HTTP address cannot be bound (in use, not ours)."""


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


def config(app: FastAPI) -> uvicorn.Config:
    """The uvicorn settings of notifier's app: our logging, no access log, no proxy headers."""
    return uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        proxy_headers=False,
        server_header=False,
    )


class WebServer(uvicorn.Server):
    """uvicorn that ends the live streams before it waits for open responses."""

    def __init__(self, app: FastAPI, api: WebApi | None) -> None:
        super().__init__(config(app))
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
