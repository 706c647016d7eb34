"""Helpers for the operations tests: the deploy/ files, and `notifier run` as systemd runs it."""

from __future__ import annotations

import os
import queue
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance import conftest as acceptance
from tests.acceptance.conftest import RunningDaemon, cli, notifier_command, tracked

__all__ = ["DEPLOY", "REPO", "JournalDaemon", "RunningDaemon", "cli", "tool"]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

# The acceptance tests' fixtures: a minimal environment, and daemons killed after the test.
env = acceptance.env
daemon = acceptance.daemon


@pytest.fixture(autouse=True)
def outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process daemons never talk to a systemd that happens to run the tests."""
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


def tool(name: str) -> str:
    """The path of a command-line tool, or skip the test saying which one is missing."""
    found = shutil.which(name) or shutil.which(name, path=str(acceptance.BIN))
    if found is None:
        pytest.skip(f"{name} is not installed here")
    return found


def example_variables() -> dict[str, bool]:
    """Every variable config.example.env lists, with whether it is a secret."""
    variables: dict[str, bool] = {}
    secret = False
    for line in (REPO / "config.example.env").read_text(encoding="utf-8").splitlines():
        if line.startswith("# Secret:"):
            secret = True
        elif match := re.fullmatch(r"#([A-Z][A-Z0-9_]*)=.*", line):
            variables[match.group(1)] = secret
            secret = False
    return variables


def credential_name(variable: str) -> str:
    """The file in $CREDENTIALS_DIRECTORY a secret is read from (token_pepper for the pepper)."""
    return variable.removeprefix("NOTIFIER_").lower()


class JournalDaemon(RunningDaemon):
    """A ``notifier run`` whose stderr is a stream socket named in JOURNAL_STREAM.

    That is how systemd connects a service to journald: stdout and stderr are one end of a
    socket, and ``JOURNAL_STREAM`` holds its ``<device>:<inode>``.
    """

    def __init__(self, environment: dict[str, str]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        status = os.fstat(theirs.fileno())
        self.journal_stream = f"{status.st_dev}:{status.st_ino}"
        self.process = subprocess.Popen(
            [*notifier_command(), "run"],
            env={**environment, "JOURNAL_STREAM": self.journal_stream},
            stdout=theirs.fileno(),
            stderr=theirs.fileno(),
            text=True,
        )
        theirs.close()
        self._socket = ours
        self._stream = ours.makefile("r", encoding="utf-8")
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._stream:
            self._queue.put(line.rstrip("\n"))

    def close(self) -> None:
        super().close()
        self._stream.close()
        self._socket.close()


@pytest.fixture
def journal_daemon() -> Iterator[type[JournalDaemon]]:
    """Start ``notifier run`` with stderr on a journal-like socket; killed afterwards."""
    yield from tracked(JournalDaemon)
