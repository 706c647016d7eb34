"""SIGINT and SIGTERM sent to real ``notifier`` processes: one line, 130 or 143, no traceback.

An interrupted import must say whether it wrote anything, and the database must agree.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import cli, notifier_command

ROWS = 40_000  # a few seconds of parsing and writing on a busy machine
NOTHING = "notifier: interrupted; nothing was imported"
EVERYTHING = f"notifier: interrupted after the commit; all {ROWS} rows were imported"


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("import") / "big.jsonl"
    with path.open("w") as handle:
        for index in range(ROWS):
            row = {
                "id": f"k{index}",
                "name": f"token {index}",
                "expires_at": "2030-01-01T00:00:00Z",
            }
            handle.write(json.dumps(row) + "\n")
    return path


def database_file(env: dict[str, str]) -> Path:
    return Path(env["XDG_STATE_HOME"]) / "notifier" / "notifier.db"


def stored_tokens(env: dict[str, str]) -> int:
    """How many tokens the database holds (none when the schema was never made)."""
    with sqlite3.connect(database_file(env)) as connection:
        try:
            (count,) = connection.execute("SELECT count(*) FROM tokens").fetchone()
        except sqlite3.OperationalError:  # interrupted before the migration committed
            return 0
    return int(count)


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """Start a command and wait until it has opened the database: past start-up."""
    process = subprocess.Popen(
        [*notifier_command(), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not database_file(env).exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the command never opened the database"
        time.sleep(0.01)
    return process


class TestImport:
    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
    def test_signal_before_the_commit_imports_nothing(
        self, env: dict[str, str], big_file: Path, sig: signal.Signals
    ) -> None:
        """Interrupted while it reads or writes: one line saying nothing was imported; none was."""
        process = start(env, "tokens", "import", str(big_file))
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 128 + sig
        assert stderr.splitlines() == [NOTHING]
        assert stdout == ""
        assert stored_tokens(env) == 0

    @pytest.mark.parametrize("delay", [0.5, 1.5, 3.0, 4.5])
    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
    def test_whatever_the_line_says_the_database_holds(
        self, env: dict[str, str], big_file: Path, sig: signal.Signals, delay: float
    ) -> None:
        """At any point, the interrupted import's one line matches the database: all or none."""
        process = start(env, "tokens", "import", str(big_file))
        time.sleep(delay)
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=60)
        assert "Traceback" not in stderr
        if process.returncode in {0, -sig}:
            # It finished before the signal came, or the signal found the interpreter shutting
            # down, after the command, where Python leaves each signal its default action.
            assert stdout.startswith(f"Imported {ROWS} token(s)")
            assert stored_tokens(env) == ROWS
            return
        assert process.returncode == 128 + sig
        (line,) = [line for line in stderr.splitlines() if "interrupted" in line]
        assert line in {NOTHING, EVERYTHING}
        assert stored_tokens(env) == (ROWS if line == EVERYTHING else 0)


class TestOtherCommands:
    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
    def test_export_says_it_is_incomplete(
        self, env: dict[str, str], big_file: Path, sig: signal.Signals
    ) -> None:
        """An export interrupted while it writes says its output is incomplete."""
        assert cli("tokens", "import", str(big_file), env=env).returncode == 0
        process = subprocess.Popen(
            [*notifier_command(), "tokens", "export"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        process.stdout.readline()  # it is writing: the export is under way
        process.send_signal(sig)
        # Unread, the pipe fills and the export blocks on it, so the signal finds it writing.
        _, stderr = process.communicate(timeout=60)
        if process.returncode == 0:  # pragma: no cover - the pipe took it all first
            pytest.skip("the export finished before the signal")
        assert process.returncode == 128 + sig
        assert stderr.splitlines() == ["notifier: interrupted; the export is incomplete"]

    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
    def test_check_waiting_on_a_receiver(self, env: dict[str, str], sig: signal.Signals) -> None:
        """A pass stuck on a receiver that never answers stops with one line, 128 + signal."""
        assert cli("tokens", "create", "--name", "ci", "--ttl", "2d", env=env).returncode == 0
        with socket.create_server(("127.0.0.1", 0)) as server:
            port = server.getsockname()[1]
            process = subprocess.Popen(
                [*notifier_command(), "check"],
                env={
                    **env,
                    "NOTIFIER_SINKS": "webhook",
                    "NOTIFIER_WEBHOOK_URL": f"http://127.0.0.1:{port}/hook",
                },
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            server.settimeout(30)
            connection, _ = server.accept()  # the pass is now waiting for an answer
            with connection:
                process.send_signal(sig)
                _, stderr = process.communicate(timeout=60)
        assert process.returncode == 128 + sig
        assert "Traceback" not in stderr
        assert [line for line in stderr.splitlines() if "interrupted" in line] == [
            "notifier: interrupted"
        ]
