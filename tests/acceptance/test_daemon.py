"""`notifier run` as a process: a pass at start, health endpoints, signals, a missing database."""

from __future__ import annotations

import signal
import socket

import httpx

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
