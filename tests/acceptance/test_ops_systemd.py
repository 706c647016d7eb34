"""deploy/systemd/notifier.service: systemd's own checks, its settings, and logrotate."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from notifier.config.settings import Settings
from notifier.core.durations import parse_duration
from notifier.runtime.daemon import HEARTBEAT
from tests.deploy import DEPLOY, REPO, credential_name, example_variables, tool

from .conftest import RunningDaemon

UNIT = DEPLOY / "systemd" / "notifier.service"
EXEC_START = "/opt/notifier/bin/notifier"
SCORE_LIMIT = 2.0


def directives(path: Path = UNIT) -> dict[str, list[str]]:
    """Each ``Key=value`` of the unit, by key, in order (systemd allows a key many times)."""
    found: dict[str, list[str]] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def one(key: str) -> str:
    values = directives()[key]
    assert len(values) == 1, f"{key}= is set {len(values)} times"
    return values[0]


def exposure(analyze: str) -> float:
    result = subprocess.run(
        [analyze, "security", "--offline=yes", UNIT.name],
        cwd=UNIT.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for notifier\.service: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


class TestSystemdAnalyze:
    def test_verify_is_silent(self, tmp_path: Path) -> None:
        """`systemd-analyze verify` accepts the unit without a single warning."""
        analyze = tool("systemd-analyze")
        # verify checks that ExecStart= exists; point it at the notifier installed here.
        installed = Path(sys.executable).parent / "notifier"
        unit = tmp_path / "notifier.service"
        text = UNIT.read_text(encoding="utf-8")
        assert f"ExecStart={EXEC_START} run" in text
        unit.write_text(text.replace(EXEC_START, str(installed)), encoding="utf-8")
        result = subprocess.run(
            [analyze, "verify", str(unit)], capture_output=True, text=True, check=False
        )
        # verify exits 0 on unknown keys too; only silence means every line was understood.
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")

    def test_security_exposure_is_at_most_two(self) -> None:
        """`systemd-analyze security --offline=yes` rates the unit 2.0 or better."""
        analyze = tool("systemd-analyze")
        assert exposure(analyze) <= SCORE_LIMIT
        threshold = subprocess.run(
            [
                *(analyze, "security", "--offline=yes"),
                *(f"--threshold={int(SCORE_LIMIT * 10)}", UNIT.name),
            ],
            cwd=UNIT.parent,
            capture_output=True,
            check=False,
        )
        assert threshold.returncode == 0

    def test_operations_doc_records_the_measured_score(self) -> None:
        """docs/operations.md states the exposure systemd-analyze measures today."""
        score = exposure(tool("systemd-analyze"))
        doc = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
        assert f"exposure level {score:.1f}" in doc


class TestUnitSettings:
    def test_type_notify_with_a_watchdog_the_heartbeat_can_feed(self) -> None:
        """Type=notify, and WatchdogSec= leaves room for several 5 s heartbeats."""
        assert one("Type") == "notify"
        assert one("NotifyAccess") == "main"
        assert parse_duration(one("WatchdogSec")) >= HEARTBEAT * 4

    def test_restart_policy_spares_configuration_errors(self) -> None:
        """Restart=on-failure, except exit 78 (EX_CONFIG), which would only crash-loop."""
        assert one("Restart") == "on-failure"
        assert one("RestartPreventExitStatus") == "78"

    def test_stop_timeout_outlasts_the_shutdown_timeout(self) -> None:
        """The unit waits longer than notifier lets a running pass finish."""
        default = Settings.model_fields["shutdown_timeout"].default
        assert parse_duration(one("TimeoutStopSec")) > parse_duration(default)

    def test_dynamic_user_state_directory_and_environment_file(self) -> None:
        """A dynamic user, its state directory, and an optional environment file."""
        assert one("DynamicUser") == "yes"
        assert one("StateDirectory") == "notifier"
        assert one("EnvironmentFile") == "-/etc/notifier/notifier.env"
        assert one("ExecStart") == f"{EXEC_START} run"

    def test_every_secret_comes_through_load_credential(self) -> None:
        """Each secret setting has a LoadCredential= named as notifier reads it."""
        secrets = {credential_name(v) for v, secret in example_variables().items() if secret}
        assert secrets, "config.example.env lists no secret"
        assert set(directives()["LoadCredential"]) == secrets

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("PrivateDevices", "yes"),
            ("NoNewPrivileges", "yes"),
            ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"),
            ("SystemCallFilter", "@system-service"),
            ("CapabilityBoundingSet", ""),
            ("MemoryDenyWriteExecute", "yes"),
        ],
    )
    def test_hardening(self, key: str, value: str) -> None:
        """The hardening set the issue names is in the unit."""
        assert value in directives()[key]


def wait_until(condition: Callable[[], bool], timeout: float = 20) -> None:
    """Poll *condition* until it holds; fail after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)


class TestLogrotate:
    def test_config_parses(self, tmp_path: Path) -> None:
        """The logrotate config parses without an error (debug mode: nothing is rotated)."""
        logrotate = tool("logrotate")
        result = subprocess.run(
            [
                logrotate,
                "--debug",
                "--state",
                str(tmp_path / "logrotate.state"),
                str(DEPLOY / "logrotate" / "notifier"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "error" not in result.stderr.lower()

    def test_rotation_under_a_running_daemon(
        self, env: dict[str, str], daemon: type[RunningDaemon], tmp_path: Path
    ) -> None:
        """After logrotate moves the file away and signals, lines go to a fresh file at the path."""
        logrotate = tool("logrotate")
        log_file = tmp_path / "log" / "notifier.log"
        log_file.parent.mkdir(mode=0o700)
        running = daemon(
            {**env, "NOTIFIER_HTTP_ADDRESS": "off", "NOTIFIER_LOG_FILE": str(log_file)}
        )
        running.wait_for(r"check\.completed")
        # stderr shows a line before the file handler writes it: rotate only once the file
        # has it, or a rename in between sends it to the fresh file.
        wait_until(lambda: "check.completed" in log_file.read_text(encoding="utf-8"))
        # The shipped config, with its path and its systemctl pointed at this test's daemon.
        config = (DEPLOY / "logrotate" / "notifier").read_text(encoding="utf-8")
        config = config.replace("/var/log/notifier/notifier.log", str(log_file))
        config, replaced = re.subn(
            r"systemctl kill [^\n]*", f"kill -HUP {running.process.pid}", config
        )
        assert replaced == 1
        (tmp_path / "logrotate.conf").write_text(config, encoding="utf-8")
        result = subprocess.run(
            [
                logrotate,
                "--force",
                "--state",
                str(tmp_path / "logrotate.state"),
                str(tmp_path / "logrotate.conf"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        running.wait_for(r"INFO log\.reopened files=\S*notifier\.log")
        assert running.stop(signal.SIGTERM) == 0
        rotated = log_file.with_name("notifier.log.1")
        assert "check.completed" in rotated.read_text(encoding="utf-8")
        fresh = log_file.read_text(encoding="utf-8")
        assert "log.reopened" in fresh
        assert "daemon.stopped" in fresh
