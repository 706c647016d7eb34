"""journald priorities: `<4>` before warning lines when stderr is the journal, nothing otherwise."""

from __future__ import annotations

import logging
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest
import structlog

from notifier.runtime import logs
from tests.unit.test_logs import notice

from .conftest import JournalDaemon, cli

WARN = r"Warn: API Token ci-deploy \(ID \w+\) will expire in less than 3 days\."


def journal_stream_of(stream: TextIO) -> str:
    status = os.fstat(stream.fileno())
    return f"{status.st_dev}:{status.st_ino}"


@pytest.fixture
def stderr_file(tmp_path: Path) -> Iterator[TextIO]:
    """A real file standing in for stderr, so that it has a device and an inode."""
    with (tmp_path / "stderr").open("w+", encoding="utf-8") as stream:
        yield stream


def emit_all_levels() -> None:
    log = structlog.get_logger("t")
    log.debug("x.debug")
    log.info("x.info")
    log.warning("x.warning")
    log.error("x.error")
    log.critical("x.critical")
    logging.getLogger("uvicorn.error").warning("stdlib warning")


class TestPriorityPrefix:
    def test_each_level_gets_its_syslog_priority(self, stderr_file: TextIO) -> None:
        """Levels map to syslog: debug 7, info 6, warning 4, error 3, critical 2; stdlib too."""
        logs.configure(log_format="text", level="DEBUG", stream=stderr_file)
        assert logs.use_journal_priorities(journal_stream_of(stderr_file))
        emit_all_levels()
        stderr_file.seek(0)
        prefixes = [re.match(r"<(\d)>", line) for line in stderr_file.read().splitlines()]
        assert [int(match.group(1)) for match in prefixes if match] == [7, 6, 4, 3, 2, 4]

    def test_the_warn_line_is_a_warning(self, stderr_file: TextIO) -> None:
        """The warn line carries <4>, so `journalctl -p warning` shows it."""
        from notifier.sinks.log import LogSink  # noqa: PLC0415

        logs.configure(log_format="json", level="INFO", stream=stderr_file)
        logs.use_journal_priorities(journal_stream_of(stderr_file))
        LogSink("log", "day").deliver([notice()])
        stderr_file.seek(0)
        (line,) = stderr_file.read().splitlines()
        assert line.startswith('<4>{"timestamp"')

    @pytest.mark.parametrize(
        "journal_stream",
        [
            None,  # not under systemd
            "",
            "1:2",  # the journal, but stderr was redirected elsewhere
            "journal",  # garbage
        ],
    )
    def test_no_prefix_unless_stderr_is_the_journal(
        self, stderr_file: TextIO, journal_stream: str | None
    ) -> None:
        """Lines stay bare when JOURNAL_STREAM is unset, malformed or names another stream."""
        logs.configure(log_format="text", level="INFO", stream=stderr_file)
        assert not logs.use_journal_priorities(journal_stream)
        structlog.get_logger("t").warning("x.warning")
        stderr_file.seek(0)
        assert not stderr_file.read().startswith("<")

    def test_the_log_file_gets_no_prefix(self, stderr_file: TextIO, tmp_path: Path) -> None:
        """Only the journal strips the prefix: NOTIFIER_LOG_FILE keeps plain lines."""
        log_file = tmp_path / "notifier.log"
        logs.configure(log_format="text", level="INFO", stream=stderr_file, log_file=log_file)
        logs.use_journal_priorities(journal_stream_of(stderr_file))
        logs.use_journal_priorities(journal_stream_of(stderr_file))  # twice: still one prefix
        structlog.get_logger("t").warning("x.warning")
        stderr_file.seek(0)
        assert re.match(r"<4>\d{4}-", stderr_file.read())
        assert re.match(r"\d{4}-", log_file.read_text(encoding="utf-8"))


class TestNotifierRun:
    def test_warning_lines_are_exactly_the_warn_lines(
        self, env: dict[str, str], journal_daemon: type[JournalDaemon]
    ) -> None:
        """On a journal stream every line has a priority, and <4> marks exactly the warn line."""
        cli("tokens", "create", "--name", "ci-deploy", "--ttl", "3d", env=env)
        running = journal_daemon({**env, "NOTIFIER_HTTP_ADDRESS": "off"})
        running.wait_for(WARN)
        running.wait_for(r"check\.completed")
        assert running.stop(signal.SIGTERM) == 0
        assert all(re.match(r"<[0-7]>", line) for line in running.lines), running.lines
        warnings = [line for line in running.lines if re.match(r"<[0-4]>", line)]
        assert len(warnings) == 1
        assert re.search(WARN, warnings[0])
        assert warnings[0].startswith("<4>")
