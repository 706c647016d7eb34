"""sd_notify: READY, WATCHDOG, STATUS and STOPPING on a real datagram socket."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from notifier.config.settings import load_settings
from notifier.runtime.daemon import Daemon
from notifier.runtime.sdnotify import SystemdNotifier, watchdog_timeout

from .conftest import RunningDaemon


class NotifySocket:
    """The socket systemd would listen on: a bound AF_UNIX datagram socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.messages: list[str] = []

    def lines(self) -> list[str]:
        """Every assignment received so far, in order."""
        return [line for message in self.messages for line in message.splitlines()]

    def wait_for(self, prefix: str, timeout: float = 20) -> str:
        """The first assignment starting with *prefix*, receiving datagrams until one comes."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines():
                if line.startswith(prefix):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {prefix!r}... in {self.messages!r}")
            self.socket.settimeout(left)
            try:
                self.messages.append(self.socket.recv(4096).decode("utf-8"))
            except TimeoutError:
                continue


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.socket.close()


class TestSystemdNotifier:
    def test_sends_one_datagram_per_call(self, notify_socket: NotifySocket) -> None:
        """Assignments go out as one newline-separated datagram on the named socket."""
        notifier = SystemdNotifier(str(notify_socket.path))
        assert notifier.notify("READY=1", "STATUS=up")
        notify_socket.wait_for("STATUS=")
        assert notify_socket.messages == ["READY=1\nSTATUS=up"]
        notifier.close()

    def test_abstract_namespace(self) -> None:
        """An ``@name`` socket is Linux's abstract namespace."""
        name = f"notifier-test-{os.getpid()}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            listener.bind("\0" + name)
            notifier = SystemdNotifier("@" + name)
            assert notifier.notify("WATCHDOG=1")
            assert listener.recv(64) == b"WATCHDOG=1"
            notifier.close()

    def test_status_is_one_line(self, notify_socket: NotifySocket) -> None:
        """A status with a newline cannot smuggle a second assignment (READY=1) in."""
        notifier = SystemdNotifier(str(notify_socket.path))
        notifier.status("database down\nREADY=1")
        assert notify_socket.wait_for("STATUS=") == "STATUS=database down\\nREADY=1"
        assert "READY=1" not in notify_socket.lines()
        notifier.close()

    def test_outside_systemd_nothing_is_sent(self) -> None:
        """Without NOTIFY_SOCKET every call is a no-op."""
        notifier = SystemdNotifier(None)
        assert not notifier.enabled
        assert not notifier.notify("READY=1")

    def test_a_gone_socket_is_logged_once_and_not_raised(self, tmp_path: Path) -> None:
        """Sending to a socket nobody listens on fails quietly after one warning."""
        notifier = SystemdNotifier(str(tmp_path / "gone.sock"))
        with capture_logs() as logs:
            assert not notifier.notify("WATCHDOG=1")
            assert not notifier.notify("WATCHDOG=1")
        assert [entry["event"] for entry in logs] == ["systemd.notify_failed"]
        notifier.close()

    def test_unsupported_address_is_said_once(self) -> None:
        """A vsock: address (systemd in a VM) is named in a warning and otherwise ignored."""
        with capture_logs() as logs:
            notifier = SystemdNotifier("vsock:2:1234")
        assert not notifier.enabled
        assert logs[0]["event"] == "systemd.notify_unsupported"


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, timedelta(seconds=30)),  # set for us
        ("30000000", "4242", timedelta(seconds=30)),  # set for our pid
        ("30000000", "1", None),  # set for another process (we inherited it)
        (None, None, None),  # no watchdog
        ("0", None, None),  # disabled
        ("soon", None, None),  # garbage is ignored, not fatal
        ("30000000", "me", None),
    ],
)
def test_watchdog_timeout(usec: str | None, pid: str | None, expected: timedelta | None) -> None:
    """WATCHDOG_USEC counts only when WATCHDOG_PID is unset or names this process."""
    assert watchdog_timeout(usec, pid, own_pid=4242) == expected


class TestDaemonInProcess:
    def test_heartbeat_job_feeds_the_watchdog(
        self, notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The scheduler's heartbeat job, not the pass, sends WATCHDOG=1."""
        monkeypatch.setenv("NOTIFY_SOCKET", str(notify_socket.path))
        monkeypatch.setenv("WATCHDOG_USEC", "30000000")
        daemon = Daemon(load_settings())
        daemon._heartbeat()
        notify_socket.wait_for("WATCHDOG=1")
        assert notify_socket.messages == ["WATCHDOG=1"]
        daemon._systemd.close()

    def test_no_watchdog_no_watchdog_messages(
        self, notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No WATCHDOG_USEC, no WATCHDOG=1; and a pass outside a running scheduler is no READY."""
        monkeypatch.setenv("NOTIFY_SOCKET", str(notify_socket.path))
        daemon = Daemon(load_settings())
        daemon._heartbeat()
        assert daemon.run_pass() is not None
        notify_socket.wait_for("STATUS=Last pass")
        assert all(not line.startswith(("WATCHDOG=", "READY=")) for line in notify_socket.lines())
        daemon._systemd.close()


class TestNotifierRun:
    def test_ready_watchdog_status_stopping(
        self, env: dict[str, str], daemon: type[RunningDaemon], notify_socket: NotifySocket
    ) -> None:
        """A real `notifier run` says WATCHDOG=1, READY=1 after migrating, STATUS=, STOPPING=1."""
        running = daemon(
            {
                **env,
                "NOTIFIER_HTTP_ADDRESS": "off",
                "NOTIFY_SOCKET": str(notify_socket.path),
                "WATCHDOG_USEC": "30000000",
            }
        )
        notify_socket.wait_for("READY=1")
        running.wait_for(r"db\.migrated")
        notify_socket.wait_for("WATCHDOG=1")
        status = notify_socket.wait_for("STATUS=Last pass")
        assert ": ok, 0 in the window, 0 sent, 0 failed" in status
        running.wait_for(r"check\.completed")
        assert running.stop(signal.SIGTERM) == 0
        notify_socket.wait_for("STOPPING=1")
        lines = notify_socket.lines()
        assert lines.count("READY=1") == 1
        assert lines.index("READY=1") < lines.index(status)
        assert lines.index("STOPPING=1") > lines.index(status)

    def test_not_ready_while_the_database_is_down(
        self, env: dict[str, str], daemon: type[RunningDaemon], notify_socket: NotifySocket
    ) -> None:
        """Without its database the daemon feeds the watchdog and says why, but never READY=1."""
        running = daemon(
            {
                **env,
                "NOTIFIER_HTTP_ADDRESS": "off",
                "NOTIFIER_DATABASE_URL": "postgresql://notifier@127.0.0.1:1/notifier",
                "NOTIFY_SOCKET": str(notify_socket.path),
                "WATCHDOG_USEC": "30000000",
            }
        )
        running.wait_for(r"check\.retry_scheduled")
        notify_socket.wait_for("WATCHDOG=1")
        status = notify_socket.wait_for("STATUS=Last pass failed: database unavailable")
        assert status.endswith("; retrying in 5s")
        assert running.stop(signal.SIGTERM) == 0
        notify_socket.wait_for("STOPPING=1")
        assert "READY=1" not in notify_socket.lines()
