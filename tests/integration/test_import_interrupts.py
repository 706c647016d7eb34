"""A signal at a chosen point of ``tokens import``, run in-process on SQLite and PostgreSQL.

SQLAlchemy's own events mark the points: the first INSERT into the tokens table (mid-import)
and the COMMIT (called before the driver commits). The signal is sent to this very process
there, so where it lands is certain, and the CLI's line is checked against the database.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
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


@pytest.mark.postgres
@pytest.mark.usefixtures("guarded")
class TestInterruptedOnPostgresql:
    """PostgreSQL writes range by range while a thread reads ahead: a signal still rolls back.

    The file is longer than a range (20,000 rows), so the first INSERT comes while the reader
    is still reading; the reader must stop, and nothing stays.
    """

    @pytest.fixture
    def long_file(self, tmp_path: Path) -> Path:
        path = tmp_path / "long.jsonl"
        path.write_text(
            "".join(
                json.dumps({"id": f"k{index}", "name": f"t{index}", "expires_at": None}) + "\n"
                for index in range(45_000)
            )
        )
        return path

    @pytest.fixture
    def url(
        self, clean_environment: Path, postgres_url: Any, monkeypatch: pytest.MonkeyPatch
    ) -> Any:
        """The CLI's database, a fresh PostgreSQL one."""
        del clean_environment  # the variables cleared first, then ours set
        monkeypatch.setenv(
            "NOTIFIER_DATABASE_URL", postgres_url.render_as_string(hide_password=False)
        )
        return postgres_url

    def count(self, url: Any) -> int:
        from notifier.db.database import Database  # noqa: PLC0415

        database = Database(url)
        try:
            with database.read() as connection:
                return int(connection.exec_driver_sql("SELECT count(*) FROM tokens").scalar_one())
        finally:
            database.dispose()

    def test_during_the_writes_nothing_is_imported_and_the_reader_stops(
        self,
        long_file: Path,
        url: Any,
        signal_at: Callable[[str, signal.Signals], None],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        signal_at("insert", signal.SIGINT)
        assert cli.main(["tokens", "import", str(long_file)]) == 128 + signal.SIGINT
        captured = capsys.readouterr()
        assert captured.err.splitlines() == ["notifier: interrupted; nothing was imported"]
        assert not [t for t in threading.enumerate() if t.name == "import-reader"]
        assert self.count(url) == 0

    def test_during_the_commit_everything_is_imported(
        self,
        long_file: Path,
        url: Any,
        signal_at: Callable[[str, signal.Signals], None],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        signal_at("commit", signal.SIGTERM)
        assert cli.main(["tokens", "import", str(long_file)]) == 128 + signal.SIGTERM
        lines = capsys.readouterr().err.splitlines()
        assert lines[-1] == "notifier: interrupted after the commit; all 45000 rows were imported"
        assert self.count(url) == 45_000
