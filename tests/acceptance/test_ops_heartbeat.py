"""The dead-man's switch: NOTIFIER_HEARTBEAT_URL pinged after each successful pass."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs
from werkzeug import Request, Response

from notifier.config.settings import ConfigError, load_settings
from notifier.runtime.daemon import Daemon
from notifier.runtime.deadman import Heartbeat

from .conftest import RunningDaemon

CHECK = (
    "/ping/0b7d9bd0-1c5e-4c77-9e1f-3f1b4d4d8f0e"  # healthchecks.io style: the path is the secret
)


@pytest.fixture
def monitor() -> Iterator[HTTPServer]:
    """A monitor on 127.0.0.1 that records the pings it gets."""
    server = HTTPServer(host="127.0.0.1")
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestPing:
    def test_a_ping_is_a_get_of_the_url(self, monitor: HTTPServer) -> None:
        """One GET of the URL, with notifier's User-Agent; True when it answers 2xx."""
        monitor.expect_request(CHECK, method="GET").respond_with_data("OK")
        assert Heartbeat(monitor.url_for(CHECK)).ping()
        ((request, _),) = monitor.log
        assert request.headers["User-Agent"].startswith("notifier/")

    def test_an_error_answer_is_logged_without_the_url(self, monitor: HTTPServer) -> None:
        """A 5xx makes ping() False and logs the host and status, never the secret path."""
        monitor.expect_request(CHECK).respond_with_data("down", status=503)
        with capture_logs() as logs:
            assert not Heartbeat(monitor.url_for(CHECK)).ping()
        (entry,) = logs
        assert entry["event"] == "heartbeat.failed"
        assert entry["status"] == 503
        assert entry["host"] == "127.0.0.1"
        assert CHECK not in str(entry)

    def test_an_unreachable_monitor_does_not_raise(self) -> None:
        """A refused connection is a logged failure, not an exception."""
        url = f"http://127.0.0.1:{closed_port()}{CHECK}"
        with capture_logs() as logs:
            assert not Heartbeat(url).ping()
        assert logs[0]["event"] == "heartbeat.failed"
        assert logs[0]["reason"].startswith("ConnectError")
        assert CHECK not in str(logs)

    def test_a_hanging_monitor_is_given_up_on(self, monitor: HTTPServer) -> None:
        """A monitor that does not answer within the timeout is a failure, not a hang."""
        release = threading.Event()

        def hang(request: Request) -> Response:
            del request
            release.wait(timeout=10)
            return Response("late")

        monitor.expect_request(CHECK).respond_with_handler(hang)
        with capture_logs() as logs:
            assert not Heartbeat(monitor.url_for(CHECK), timeout=httpx.Timeout(0.2)).ping()
        release.set()
        assert logs[0]["reason"].startswith("ReadTimeout")


class TestSetting:
    @pytest.mark.parametrize("url", ["ftp://example.com/x", "hc-ping.com/uuid", "https://"])
    def test_only_http_urls(self, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
        """A URL that is not http(s) with a host stops start-up, without echoing the secret."""
        monkeypatch.setenv("NOTIFIER_HEARTBEAT_URL", url)
        with pytest.raises(ConfigError) as raised:
            load_settings()
        assert raised.value.lines == [
            "NOTIFIER_HEARTBEAT_URL: expected an http:// or https:// URL with a host"
        ]


class TestDaemon:
    def test_pinged_after_a_successful_pass_only(
        self, monitor: HTTPServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A pass that ran pings once; a pass that could not reach its database does not."""
        monitor.expect_request(CHECK).respond_with_data("OK")
        monkeypatch.setenv("NOTIFIER_HEARTBEAT_URL", monitor.url_for(CHECK))
        working = Daemon(load_settings())
        assert working.run_pass() is not None
        assert len(monitor.log) == 1
        working._parts.close()

        monkeypatch.setenv("NOTIFIER_DATABASE_URL", "postgresql://notifier@127.0.0.1:1/notifier")
        broken = Daemon(load_settings())
        assert broken.run_pass() is None
        assert len(monitor.log) == 1
        broken._parts.close()

    def test_notifier_run_pings(
        self, env: dict[str, str], daemon: type[RunningDaemon], monitor: HTTPServer
    ) -> None:
        """A real `notifier run` pings the monitor after its first pass, and logs only the host."""
        monitor.expect_request(CHECK).respond_with_data("OK")
        running = daemon(
            {
                **env,
                "NOTIFIER_HTTP_ADDRESS": "off",
                "NOTIFIER_HEARTBEAT_URL": monitor.url_for(CHECK),
            }
        )
        running.wait_for(r"check\.completed")
        running.wait_for(r"INFO heartbeat\.sent host=127\.0\.0\.1")
        assert running.stop(signal.SIGTERM) == 0
        assert [request.path for request, _ in monitor.log] == [CHECK]
        assert not any(CHECK in line for line in running.lines)
