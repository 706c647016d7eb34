"""SIGHUP reopens NOTIFIER_LOG_FILE; it neither stops notifier nor reloads its configuration."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import structlog

from notifier.runtime import logs

from .conftest import RunningDaemon


def test_reopen_follows_the_path(tmp_path: Path) -> None:
    """After a rename, reopening writes to a new file at the configured path."""
    log_file = tmp_path / "notifier.log"
    logs.configure(log_format="text", level="INFO", log_file=log_file)
    structlog.get_logger("t").info("before.rotation")
    log_file.rename(tmp_path / "notifier.log.1")
    assert logs.reopen_log_files() == [str(log_file)]
    structlog.get_logger("t").info("after.rotation")
    assert "before.rotation" in (tmp_path / "notifier.log.1").read_text(encoding="utf-8")
    assert "after.rotation" in log_file.read_text(encoding="utf-8")
    assert "before.rotation" not in log_file.read_text(encoding="utf-8")


def test_without_a_log_file_there_is_nothing_to_reopen() -> None:
    """SIGHUP with only stderr configured reopens nothing and raises nothing."""
    logs.configure(log_format="text", level="INFO")
    assert logs.reopen_log_files() == []


def test_notifier_run_survives_sighup(
    env: dict[str, str], daemon: type[RunningDaemon], tmp_path: Path
) -> None:
    """`notifier run` reopens its log file on SIGHUP, keeps running, and stops cleanly later."""
    log_file = tmp_path / "notifier.log"
    running = daemon({**env, "NOTIFIER_HTTP_ADDRESS": "off", "NOTIFIER_LOG_FILE": str(log_file)})
    running.wait_for(r"check\.completed")
    # stderr gets each line before the file does: wait until the file has it too.
    deadline = time.monotonic() + 10
    while "check.completed" not in log_file.read_text(encoding="utf-8"):
        assert time.monotonic() < deadline, "the log file never got check.completed"
        time.sleep(0.05)
    log_file.rename(tmp_path / "notifier.log.1")
    running.process.send_signal(signal.SIGHUP)
    running.wait_for(r"INFO log\.reopened files=\S+notifier\.log")
    assert running.process.poll() is None
    assert running.stop(signal.SIGTERM) == 0
    assert "log.reopened" in log_file.read_text(encoding="utf-8")
    assert "check.completed" in (tmp_path / "notifier.log.1").read_text(encoding="utf-8")
