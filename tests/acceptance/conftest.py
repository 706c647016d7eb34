"""Run the installed ``notifier`` command in processes of its own, as an operator would."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests import web_tier

# The web tier in this process, for the tests that drive it with a browser or a process.
make_web = web_tier.make_web
web = web_tier.web
serve_in_thread = web_tier.serve_in_thread

BIN = Path(sys.executable).parent


def notifier_command() -> list[str]:
    """The console script installed beside this Python, else ``python -m notifier``."""
    script = BIN / "notifier"
    return [str(script)] if script.exists() else [sys.executable, "-m", "notifier"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A minimal environment: a private home and state directory, nothing else."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": f"{BIN}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(home),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "LANG": "C.UTF-8",
    }


def cli(
    *args: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one notifier command to completion."""
    return subprocess.run(
        [*notifier_command(), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class RunningDaemon:
    """A ``notifier run`` process whose stderr is read line by line as it arrives."""

    command = "run"  # the notifier command this process runs

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [*notifier_command(), self.command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._queue.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        """Wait until a stderr line matches *pattern*; fail with what was seen if none does."""
        deadline = time.monotonic() + timeout
        compiled = re.compile(pattern)
        for line in self.lines:
            if match := compiled.search(line):
                return match
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and self._queue.empty():
                    break
                continue
            self.lines.append(line)
            if match := compiled.search(line):
                return match
        raise AssertionError(f"no line matched {pattern!r}; saw:\n" + "\n".join(self.lines))

    @property
    def port(self) -> int:
        return int(self.wait_for(r"http\.listening address=127\.0\.0\.1:(\d+)").group(1))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self.drain()
        return code

    def drain(self) -> None:
        while not self._queue.empty():
            self.lines.append(self._queue.get())

    def close(self) -> None:
        """Kill the process if it still runs, and close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(timeout=5)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


Running = TypeVar("Running", bound=RunningDaemon)


def tracked(kind: type[Running]) -> Iterator[type[Running]]:
    """For a fixture: a subclass of *kind* whose instances are closed after the test."""
    started: list[RunningDaemon] = []

    class Tracked(kind):  # type: ignore[valid-type,misc]  # a subclass of the given class
        def __init__(self, environment: dict[str, str]) -> None:
            super().__init__(environment)
            started.append(self)

    yield Tracked
    for running in started:
        running.close()


@pytest.fixture
def daemon() -> Iterator[type[RunningDaemon]]:
    """Start daemons with ``daemon(env)``; any left running are killed afterwards."""
    yield from tracked(RunningDaemon)


class RunningServe(RunningDaemon):
    """A ``notifier serve`` process whose stderr is read line by line as it arrives."""

    command = "serve"


@pytest.fixture
def serve_process() -> Iterator[type[RunningServe]]:
    """Start ``notifier serve`` with ``serve_process(env)``; any left running are killed."""
    yield from tracked(RunningServe)


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
