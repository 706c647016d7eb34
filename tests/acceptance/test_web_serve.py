"""`notifier serve` and `notifier run` as processes: the web tier alone, and beside the checker."""

from __future__ import annotations

import json
import signal
import socket

import httpx

from tests.acceptance.conftest import RunningDaemon, cli
from tests.integration.test_web_api import V1

from .conftest import RunningServe


def admin_token(env: dict[str, str]) -> dict[str, str]:
    """Create a '*' token with the CLI; return its JSON (with the secret)."""
    created = cli("tokens", "create", "--name", "admin", "--permission", "*", "--json", env=env)
    assert created.returncode == 0, created.stderr
    return json.loads(created.stdout)  # type: ignore[no-any-return]


class TestServe:
    def test_serves_probes_page_and_api_without_a_scheduler(
        self, env: dict[str, str], serve_process: type[RunningServe]
    ) -> None:
        """Serve answers /healthz, /readyz, the page and the API, and runs no pass."""
        admin = admin_token(env)
        cli("tokens", "create", "--name", "ci-deploy", "--ttl", "2d", env=env)
        running = serve_process({**env, "NOTIFIER_HTTP_ADDRESS": "127.0.0.1:0"})
        base = f"http://127.0.0.1:{running.port}"
        running.wait_for(r"serve\.ready")
        assert httpx.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
        page = httpx.get(f"{base}/", timeout=5)
        assert page.status_code == 200
        assert "default-src 'none'" in page.headers["content-security-policy"]
        headers = {"Authorization": f"Bearer {admin['token']}"}
        tokens = httpx.get(f"{base}{V1}/tokens", headers=headers, timeout=5).json()
        assert {t["name"] for t in tokens} == {"admin", "ci-deploy"}
        assert httpx.get(f"{base}{V1}/notifications", headers=headers, timeout=5).json() == []
        assert running.stop(signal.SIGTERM) == 0
        assert not any("check.completed" in line for line in running.lines)
        assert any("serve.stopped" in line for line in running.lines)

    def test_last_use_is_written_at_shutdown(
        self, env: dict[str, str], serve_process: type[RunningServe]
    ) -> None:
        """A token used once shows last_used_at after serve stopped on SIGTERM."""
        admin = admin_token(env)
        running = serve_process({**env, "NOTIFIER_HTTP_ADDRESS": "127.0.0.1:0"})
        base = f"http://127.0.0.1:{running.port}"
        running.wait_for(r"serve\.ready")
        whoami = httpx.get(
            f"{base}{V1}/auth/whoami", headers={"X-API-Key": admin["token"]}, timeout=5
        )
        assert whoami.json()["id"] == admin["id"]
        assert running.stop(signal.SIGINT) == 0
        shown = cli("tokens", "get", admin["id"], "--json", env=env)
        assert json.loads(shown.stdout)["last_used_at"] is not None

    def test_database_down_is_live_not_ready(
        self, env: dict[str, str], serve_process: type[RunningServe]
    ) -> None:
        """Without its database serve stays up: /healthz 200, /readyz 503, the API 503."""
        running = serve_process(
            {
                **env,
                "NOTIFIER_HTTP_ADDRESS": "127.0.0.1:0",
                "NOTIFIER_DATABASE_URL": "postgresql://notifier:hunter2@127.0.0.1:1/notifier",
            }
        )
        base = f"http://127.0.0.1:{running.port}"
        running.wait_for(r"db\.unavailable")
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 503
        api = httpx.get(f"{base}{V1}/tokens", headers={"X-API-Key": "x"}, timeout=10)
        assert api.status_code == 503
        assert api.json()["error"] == "unavailable"
        assert running.stop() == 0
        assert not any("hunter2" in line for line in running.lines)

    def test_port_in_use_exits_69(
        self, env: dict[str, str], serve_process: type[RunningServe]
    ) -> None:
        """A taken port stops serve with exit 69 and the address named."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            running = serve_process({**env, "NOTIFIER_HTTP_ADDRESS": f"127.0.0.1:{port}"})
            assert running.process.wait(timeout=20) == 69
            running.drain()
        assert any(f"127.0.0.1:{port}" in line for line in running.lines)

    def test_http_off_is_a_configuration_error(self, env: dict[str, str]) -> None:
        """Serve with NOTIFIER_HTTP_ADDRESS=off exits 78 saying it needs an address."""
        result = cli("serve", env={**env, "NOTIFIER_HTTP_ADDRESS": "off"})
        assert result.returncode == 78
        assert "needs an address" in result.stderr


class TestRun:
    def test_the_daemon_serves_the_api_beside_the_scheduler(
        self, env: dict[str, str], daemon: type[RunningDaemon]
    ) -> None:
        """`notifier run` answers the API with the notification its own first pass raised."""
        admin = admin_token(env)
        cli("tokens", "create", "--name", "ci-deploy", "--ttl", "3d", env=env)
        running = daemon({**env, "NOTIFIER_HTTP_ADDRESS": "127.0.0.1:0"})
        base = f"http://127.0.0.1:{running.port}"
        running.wait_for(r"check\.completed in_window=1 sent=2")
        headers = {"Authorization": f"Bearer {admin['token']}"}
        (notification,) = httpx.get(
            f"{base}{V1}/notifications?active=true", headers=headers, timeout=5
        ).json()
        assert notification["token_name"] == "ci-deploy"
        assert httpx.get(f"{base}{V1}/tokens", timeout=5).status_code == 401
        assert running.stop() == 0
