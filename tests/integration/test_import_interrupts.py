"""A signal at a chosen point of ``tokens import``, run in-process on a real SQLite file.

SQLAlchemy's own events mark the points: the first INSERT into the tokens table (mid-import)
and the COMMIT (called before the driver commits). The signal is sent to this very process
there, so where it lands is certain, and the CLI's line is checked against the database.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

# The CLI imports these lazily; import them before the test listens to every engine.
from notifier import cli

ROWS = 1_200  # three chunks of the importer's 500


class SignalNotHandledError(AssertionError):
    """The CLI left a signal to the handler the test had installed: no handler of its own."""


@pytest.fixture
def guarded() -> Iterator[None]:
    """Fail the test, rather than kill pytest, should the CLI not take SIGINT and SIGTERM."""

    def refuse(signum: int, frame: FrameType | None) -> None:
        del frame
        raise SignalNotHandledError(f"the CLI did not handle {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, refuse) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@pytest.fixture
def rows_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"k{index}", "name": f"t{index}", "expires_at": None}) + "\n"
            for index in range(ROWS)
        )
    )
    return path


@pytest.fixture
def state(clean_environment: Path) -> Path:
    """The SQLite file the CLI uses in this test's state directory."""
    return clean_environment / "notifier" / "notifier.db"


def stored_tokens(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        (count,) = connection.execute("SELECT count(*) FROM tokens").fetchone()
    return int(count)


@pytest.fixture
def signal_at() -> Iterator[Callable[[str, signal.Signals], None]]:
    """Send a signal to this process at "insert" (the first row written) or "commit"."""
    listeners: list[tuple[str, Callable[..., Any]]] = []
    importing: set[int] = set()  # connections that have inserted into tokens
    sent: list[str] = []

    def arm(point: str, sig: signal.Signals) -> None:
        def after_execute(connection: Connection, *args: Any) -> None:
            statement = str(args[1] if len(args) > 1 else "")
            if statement.lstrip().upper().startswith("INSERT INTO TOKENS"):
                importing.add(id(connection))
                if point == "insert" and not sent:
                    sent.append(point)
                    os.kill(os.getpid(), sig)

        def on_commit(connection: Connection) -> None:
            if point == "commit" and id(connection) in importing and not sent:
                sent.append(point)
                os.kill(os.getpid(), sig)  # runs before the driver's COMMIT

        for name, listener in (("after_cursor_execute", after_execute), ("commit", on_commit)):
            event.listen(Engine, name, listener)
            listeners.append((name, listener))

    yield arm
    for name, listener in listeners:
        event.remove(Engine, name, listener)
    assert sent, "the signal was never sent"


@pytest.mark.usefixtures("guarded")
class TestInterruptedImport:
    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
    def test_during_the_writes_nothing_is_imported(
        self,
        rows_file: Path,
        state: Path,
        signal_at: Callable[[str, signal.Signals], None],
        capsys: pytest.CaptureFixture[str],
        sig: signal.Signals,
    ) -> None:
        """A signal after the first rows are written rolls them back, and the line says so."""
        signal_at("insert", sig)
        assert cli.main(["tokens", "import", str(rows_file)]) == 128 + sig
        captured = capsys.readouterr()
        assert captured.err.splitlines() == ["notifier: interrupted; nothing was imported"]
        assert captured.out == ""
        assert stored_tokens(state) == 0

    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
    def test_during_the_commit_everything_is_imported(
        self,
        rows_file: Path,
        state: Path,
        signal_at: Callable[[str, signal.Signals], None],
        capsys: pytest.CaptureFixture[str],
        sig: signal.Signals,
    ) -> None:
        """A signal as the commit begins lets it finish; the line says every row is in."""
        signal_at("commit", sig)
        assert cli.main(["tokens", "import", str(rows_file)]) == 128 + sig
        captured = capsys.readouterr()
        lines = captured.err.splitlines()
        assert lines[-1] == f"notifier: interrupted after the commit; all {ROWS} rows were imported"
        assert "Traceback" not in captured.err
        assert stored_tokens(state) == ROWS
