"""The HTTP listener under uvicorn, over real sockets: header deadline, connection cap, logs."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from structlog.testing import capture_logs

from notifier.web.stream import StreamOptions
from tests.web_tier import Served, Web, WebFactory

ServeInThread = Callable[[Web, StreamOptions | None], Served]


def connect(served: Served) -> socket.socket:
    """A raw TCP connection to the served app."""
    parts = urlsplit(served.base)
    assert parts.hostname is not None
    assert parts.port is not None
    return socket.create_connection((parts.hostname, parts.port), timeout=5)


def seconds_until_closed(sock: socket.socket, limit: float = 6) -> float | None:
    """How long until the server closes *sock* (reading and discarding); None: not in *limit*."""
    started = time.monotonic()
    sock.settimeout(0.1)
    while (elapsed := time.monotonic() - started) < limit:
        try:
            if sock.recv(65536) == b"":
                return elapsed
        except TimeoutError:
            continue
        except ConnectionResetError:
            return elapsed
    return None


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Raw connections a test opened; closed afterwards."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


class TestHeaderDeadline:
    def test_a_request_line_trickled_byte_by_byte_is_cut_off(
        self, make_web: WebFactory, serve_in_thread: ServeInThread, sockets: list[socket.socket]
    ) -> None:
        """A client still sending its headers after the timeout is disconnected (slowloris)."""
        served = serve_in_thread(make_web(NOTIFIER_HTTP_HEADER_TIMEOUT="1s"), None)
        sock = connect(served)
        sockets.append(sock)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: notifier\r\nX-Slow: ")
        stop = threading.Event()

        def trickle() -> None:  # a byte every 200 ms: each one would reset an idle timer
            while not stop.wait(0.2):
                try:
                    sock.send(b"a")
                except OSError:
                    return

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        try:
            closed_after = seconds_until_closed(sock)
        finally:
            stop.set()
            trickler.join(timeout=2)
        assert closed_after is not None, "the server kept the half-sent request open"
        assert 0.8 <= closed_after <= 3

    def test_a_connection_that_sends_nothing_is_closed(
        self, make_web: WebFactory, serve_in_thread: ServeInThread, sockets: list[socket.socket]
    ) -> None:
        """A connection that never starts a request is closed after the timeout."""
        served = serve_in_thread(make_web(NOTIFIER_HTTP_HEADER_TIMEOUT="1s"), None)
        sock = connect(served)
        sockets.append(sock)
        closed_after = seconds_until_closed(sock)
        assert closed_after is not None
        assert 0.8 <= closed_after <= 3

    def test_a_prompt_request_is_answered_and_an_idle_connection_closed(
        self, make_web: WebFactory, serve_in_thread: ServeInThread, sockets: list[socket.socket]
    ) -> None:
        """Whole headers in time are answered; the kept-alive connection then idles out."""
        served = serve_in_thread(make_web(NOTIFIER_HTTP_HEADER_TIMEOUT="1s"), None)
        sock = connect(served)
        sockets.append(sock)
        for _ in range(2):  # the clock starts again after each answer
            time.sleep(0.6)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: notifier\r\n\r\n")
            answer = b""
            while not answer.endswith(b'{"status":"ok"}'):
                chunk = sock.recv(65536)
                assert chunk, f"closed before the whole answer: {answer!r}"
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 "), answer
        closed_after = seconds_until_closed(sock)
        assert closed_after is not None
        assert 0.8 <= closed_after <= 3

    def test_a_slow_answer_is_not_cut_off(
        self, make_web: WebFactory, serve_in_thread: ServeInThread
    ) -> None:
        """The deadline covers the headers only: a stream outlives it."""
        web = make_web(NOTIFIER_HTTP_HEADER_TIMEOUT="1s")
        admin = web.token("*", name="admin")
        served = serve_in_thread(
            web,
            StreamOptions(poll=timedelta(milliseconds=200), keepalive=timedelta(milliseconds=400)),
        )
        headers = {"Authorization": f"Bearer {admin.token}"}
        with (
            httpx.Client(timeout=5) as client,
            client.stream(
                "GET", f"{served.base}/api/v1/notifications/stream", headers=headers
            ) as r,
        ):
            assert r.status_code == 200
            started = time.monotonic()
            chunks = r.iter_bytes()
            next(chunks)
            while time.monotonic() - started < 2:  # twice the header timeout
                next(chunks)


class TestConnectionCap:
    def test_past_the_cap_requests_are_503_until_connections_close(
        self, make_web: WebFactory, serve_in_thread: ServeInThread, sockets: list[socket.socket]
    ) -> None:
        """With NOTIFIER_HTTP_MAX_CONNECTIONS=2 open, the next request is 503; then served."""
        served = serve_in_thread(
            make_web(NOTIFIER_HTTP_MAX_CONNECTIONS="2", NOTIFIER_HTTP_HEADER_TIMEOUT="30s"), None
        )
        sockets.append(connect(served))
        # One connection held open by another client: a second one is still served.
        assert httpx.get(f"{served.base}/healthz", timeout=5).status_code == 200
        sockets.append(connect(served))
        time.sleep(0.2)  # the server has accepted both
        refused = httpx.get(f"{served.base}/healthz", timeout=5)
        assert refused.status_code == 503
        for sock in sockets:
            sock.close()
        deadline = time.monotonic() + 5
        while httpx.get(f"{served.base}/healthz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "still refused after the connections closed"
            time.sleep(0.05)


class TestFailuresAreLoggedOnce:
    def test_an_unexpected_error_logs_one_traceback(
        self, web: Web, serve_in_thread: ServeInThread, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An exception in a route is answered 500 as JSON and logged once, as api.failed."""

        @web.app.get("/api/v1/broken", include_in_schema=False)
        def broken() -> None:
            raise RuntimeError("broken on purpose")

        served = serve_in_thread(web, None)
        admin = web.token("*", name="admin")
        with capture_logs() as logs, caplog.at_level(logging.ERROR):
            response = httpx.get(
                f"{served.base}/api/v1/broken",
                headers={"Authorization": f"Bearer {admin.token}"},
                timeout=5,
            )
        assert response.status_code == 500
        assert response.json()["error"] == "internal"
        assert "Traceback" not in response.text
        assert [entry["event"] for entry in logs if entry["log_level"] == "error"] == ["api.failed"]
        # uvicorn logged no traceback of its own (its "Started server process" INFO line,
        # which may arrive from the server's thread at any time, is not the point here).
        assert not [
            r for r in caplog.records if r.name.startswith("uvicorn") and r.levelno >= logging.ERROR
        ]
