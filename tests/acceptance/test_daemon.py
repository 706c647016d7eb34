"""`notifier run` as a process: a pass at start, health endpoints, signals, a missing database.

Also a stop in the middle of a delivery, against a webhook receiver on 127.0.0.1 that hangs or
keeps the sink waiting to retry, and the claim a killed daemon leaves behind.
"""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from .conftest import RunningDaemon, cli

WARN = r"Warn: API Token ci-deploy \(ID \w+\) will expire in less than 3 days\."


class TestRun:
    def test_pass_at_start_health_and_sigterm(
        self, env: dict[str, str], daemon: type[RunningDaemon]
    ) -> None:
        """The daemon warns at start, answers /healthz and /readyz, and exits 0 on SIGTERM."""
        cli("tokens", "create", "--name", "ci-deploy", "--ttl", "3d", env=env)
        running = daemon({**env, "NOTIFIER_HTTP_ADDRESS": "127.0.0.1:0"})
        port = running.port
        running.wait_for(WARN)
        running.wait_for(r"check\.completed in_window=1 sent=2")
        base = f"http://127.0.0.1:{port}"
        health = httpx.get(f"{base}/healthz", timeout=5)
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        ready = httpx.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200
        assert running.stop(signal.SIGTERM) == 0
        assert any("daemon.stopped" in line for line in running.lines)
        # uvicorn's own INFO lines ("Started server process") are DEBUG: the stream is ours.
        assert not [line for line in running.lines if "logger=uvicorn" in line]

    def test_sigint_exits_zero(self, env: dict[str, str], daemon: type[RunningDaemon]) -> None:
        """Ctrl-C stops the daemon cleanly too."""
        running = daemon({**env, "NOTIFIER_HTTP_ADDRESS": "off"})
        running.wait_for(r"check\.completed")
        assert running.stop(signal.SIGINT) == 0

    def test_database_down_keeps_the_daemon_up(
        self, env: dict[str, str], daemon: type[RunningDaemon]
    ) -> None:
        """Without its database the daemon stays alive and says so: live, not ready, retrying."""
        running = daemon(
            {
                **env,
                "NOTIFIER_HTTP_ADDRESS": "127.0.0.1:0",
                "NOTIFIER_DATABASE_URL": "postgresql://notifier:hunter2@127.0.0.1:1/notifier",
            }
        )
        port = running.port
        running.wait_for(r"ERROR check\.failed reason=\"database unavailable")
        running.wait_for(r"check\.retry_scheduled delay=5s")
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["status"] == "failing"
        assert running.process.poll() is None
        assert running.stop() == 0
        assert not any("hunter2" in line for line in running.lines)

    def test_port_in_use_exits_69(self, env: dict[str, str], daemon: type[RunningDaemon]) -> None:
        """A taken HTTP port stops start-up with exit 69 and the address named."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            running = daemon({**env, "NOTIFIER_HTTP_ADDRESS": f"127.0.0.1:{port}"})
            assert running.process.wait(timeout=20) == 69
            running.drain()
        assert any(f"127.0.0.1:{port}" in line for line in running.lines)


class StallingReceiver:
    """A webhook receiver on 127.0.0.1 that stalls until told to answer 200.

    ``mode`` is ``hang`` (hold each request open) or ``retry`` (answer 503 with a long
    Retry-After, so the sink waits inside its retry deadline); ``recover()`` makes every later
    request, and the ones held open, end.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.statuses: list[int] = []  # what each request was answered, in order
        self.arrived = threading.Event()
        self._recovered = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                receiver.arrived.set()
                status, headers = receiver.answer()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                del format, args

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self) -> tuple[int, dict[str, str]]:
        """The status and headers of the next answer, once the stall (if any) ends."""
        if not self._recovered.is_set() and self.mode == "retry":
            status, headers = 503, {"retry-after": "60"}
        else:
            self._recovered.wait(timeout=120)  # "hang": held until recover()
            status, headers = 200, {}
        with self._lock:
            self.statuses.append(status)
        return status, headers

    def recover(self) -> None:
        self._recovered.set()

    @property
    def delivered(self) -> int:
        with self._lock:
            return self.statuses.count(200)

    def close(self) -> None:
        self._recovered.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=["hang", "retry"])
def stalling(request: pytest.FixtureRequest) -> Iterator[StallingReceiver]:
    """A receiver that hangs, or one that keeps the sink waiting to retry."""
    receiver = StallingReceiver(request.param)
    yield receiver
    receiver.close()


class TestStopDuringDelivery:
    def test_sigterm_interrupts_the_send_and_releases_the_claim(
        self, env: dict[str, str], daemon: type[RunningDaemon], stalling: StallingReceiver
    ) -> None:
        """SIGTERM mid-delivery exits 0 at once; the next pass sends, nothing claimed elsewhere."""
        settings = {
            **env,
            "NOTIFIER_HTTP_ADDRESS": "off",
            "NOTIFIER_SINKS": "webhook",
            "NOTIFIER_WEBHOOK_URL": stalling.url,
            "NOTIFIER_WEBHOOK_TIMEOUT": "60s",
            "NOTIFIER_RETRY_DEADLINE": "3m",
            "NOTIFIER_SHUTDOWN_TIMEOUT": "10s",
        }
        cli("tokens", "create", "--name", "ci-deploy", "--ttl", "3d", env=settings)
        running = daemon(settings)
        running.wait_for(r"daemon\.started")
        assert stalling.arrived.wait(timeout=20), "the daemon never reached the receiver"
        if stalling.mode == "retry":
            running.wait_for(r"sink\.retry .*wait_s=60")
        started = time.monotonic()
        code = running.stop(signal.SIGTERM, timeout=30)
        elapsed = time.monotonic() - started
        assert code == 0, "\n".join(running.lines)
        assert elapsed < 10, f"the stop took {elapsed:.1f}s"
        assert not any("shutdown_timeout" in line for line in running.lines)
        assert any(re.search(r"check\.completed .*released=1", line) for line in running.lines)
        stalling.recover()
        result = cli("check", env=settings)
        assert result.returncode == 0, result.stderr
        assert re.search(r"check\.completed .*sent=1 .*claimed_elsewhere=0", result.stderr)
        assert stalling.delivered >= 1

    def test_a_killed_daemons_claim_is_taken_over_on_its_host(
        self, env: dict[str, str], daemon: type[RunningDaemon]
    ) -> None:
        """A daemon killed mid-send cannot release; the next pass on its host takes the claim."""
        receiver = StallingReceiver("hang")
        try:
            settings = {
                **env,
                "NOTIFIER_HTTP_ADDRESS": "off",
                "NOTIFIER_SINKS": "webhook",
                "NOTIFIER_WEBHOOK_URL": receiver.url,
                "NOTIFIER_WEBHOOK_TIMEOUT": "60s",
            }
            cli("tokens", "create", "--name", "ci-deploy", "--ttl", "3d", env=settings)
            running = daemon(settings)
            assert receiver.arrived.wait(timeout=20), "the daemon never reached the receiver"
            running.process.kill()
            running.process.wait(timeout=10)
            receiver.recover()
            result = cli("check", env=settings)
        finally:
            receiver.close()
        assert result.returncode == 0, result.stderr
        assert "check.taken_over" in result.stderr
        assert re.search(r"check\.completed .*sent=1 .*claimed_elsewhere=0", result.stderr)
