"""docs/operations.md: the commands it gives for tailing the warn lines do find them."""

from __future__ import annotations

import io
import re
import subprocess

import pytest
import structlog

from notifier.runtime import logs
from notifier.sinks.log import LogSink
from tests.deploy import REPO, tool
from tests.unit.test_logs import notice

OPERATIONS = REPO / "docs" / "operations.md"
SENTENCE = "Warn: API Token ci-deploy (ID abc123) will expire in less than 3 days."


def documented(pattern: str) -> str:
    """The first shell line of docs/operations.md that matches *pattern*."""
    for line in OPERATIONS.read_text(encoding="utf-8").splitlines():
        if re.search(pattern, line):
            return line.strip()
    raise AssertionError(f"docs/operations.md has no line matching {pattern!r}")


def output(log_format: str) -> str:
    """What notifier logs for one warn line and one other event, in *log_format*."""
    stream = io.StringIO()
    logs.configure(log_format=log_format, level="INFO", stream=stream)
    structlog.get_logger("t").info("check.completed", in_window=1, sent=1)
    LogSink("log", "day").deliver([notice()])
    structlog.get_logger("t").warning("sink.failed", sink="webhook", error="answered 500")
    return stream.getvalue()


@pytest.mark.parametrize("log_format", ["text", "json", "logfmt"])
def test_the_grep_pattern_finds_exactly_the_warn_lines(log_format: str) -> None:
    """The documented `grep -E` keeps the warn line and drops the other events, in each format."""
    command = documented(r"^\s*grep -E '")
    pattern = re.fullmatch(r"grep -E '(.+)'", command)
    assert pattern, command
    result = subprocess.run(
        [tool("grep"), "-E", pattern.group(1)],
        input=output(log_format),
        capture_output=True,
        text=True,
        check=False,
    )
    (line,) = result.stdout.splitlines()
    assert SENTENCE in line


def test_the_jq_filter_prints_the_sentences() -> None:
    """The documented jq filter turns the image's JSON logs into the warn sentences."""
    command = documented(r"\| jq -r '")
    program = re.search(r"jq -r '([^']+)'", command)
    assert program, command
    result = subprocess.run(
        [tool("jq"), "-r", program.group(1)],
        input=output("json"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [SENTENCE]
