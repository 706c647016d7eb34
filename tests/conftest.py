"""Shared fixtures: a clean environment, a fixed clock, real SQLite and PostgreSQL databases."""

from __future__ import annotations

import gc
import logging
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import hypothesis
import pytest
import structlog
from sqlalchemy.engine import URL, make_url

from notifier.core.clock import FixedClock
from notifier.db import migrate
from notifier.db.database import Database

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Every test starts without NOTIFIER_/ROX_ variables and with its own state directory."""
    for name in list(os.environ):
        if name.startswith(("NOTIFIER_", "ROX_")) or name in {
            "STATE_DIRECTORY",
            "CREDENTIALS_DIRECTORY",
            "JOURNAL_STREAM",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
        }:
            monkeypatch.delenv(name)
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    return state


@pytest.fixture(autouse=True)
def reset_logging() -> Iterator[None]:
    """Undo what a test's logging configuration (or a CLI call in-process) installed."""
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()


@pytest.fixture(autouse=True)
def unfreeze_objects() -> Iterator[None]:
    """Give back to the collector what an in-process `check` or service froze (heap.settle)."""
    yield
    gc.unfreeze()


@pytest.fixture
def clock() -> FixedClock:
    """A clock standing at 2026-01-01T00:00:00Z."""
    return FixedClock(T0)


def _postgres_admin() -> object:
    import psycopg  # noqa: PLC0415 - only the PostgreSQL tests need it

    try:
        return psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3",
            autocommit=True,
        )
    except psycopg.OperationalError as error:
        pytest.skip(f"no PostgreSQL server answers at 127.0.0.1:5432: {error}".splitlines()[0])


@pytest.fixture
def postgres_url() -> Iterator[URL]:
    """A fresh PostgreSQL database on 127.0.0.1:5432, dropped afterwards."""
    import psycopg  # noqa: PLC0415

    admin = _postgres_admin()
    assert isinstance(admin, psycopg.Connection)
    name = f"notifier_test_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(PG_ADMIN_URL).set(database=name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> URL:
    """A SQLite file in the test's directory."""
    return URL.create("sqlite+pysqlite", database=str(tmp_path / "db" / "notifier.db"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> URL:
    """Each backend in turn: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        url: URL = request.getfixturevalue("sqlite_url")
    else:
        url = request.getfixturevalue("postgres_url")
    return url


def _migrated(url: URL) -> Iterator[Database]:
    db = Database(url)
    migrate.upgrade(db)
    yield db
    db.dispose()


@pytest.fixture
def database(database_url: URL) -> Iterator[Database]:
    """A migrated database on each backend."""
    yield from _migrated(database_url)


@pytest.fixture
def sqlite_database(sqlite_url: URL) -> Iterator[Database]:
    """A migrated SQLite file, for tests about something else than the backend.

    A module whose tests take ``database`` runs them on SQLite only with
    ``database = sqlite_database``.
    """
    yield from _migrated(sqlite_url)


@pytest.fixture
def mariadb_url() -> Iterator[URL]:
    """A fresh MariaDB database on 127.0.0.1:3306, dropped afterwards."""
    import pymysql  # noqa: PLC0415 - only the MariaDB tests need it

    try:
        admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", connect_timeout=3)
    except pymysql.MySQLError as error:
        pytest.skip(f"no MariaDB server answers at 127.0.0.1:3306: {error}")
    name = f"notifier_src_{secrets.token_hex(6)}"
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}`")
        yield URL.create(
            "mysql+pymysql", username="root", host="127.0.0.1", port=3306, database=name
        )
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """pytest-httpserver binds loopback IPv4 on a free port, as every test server here does."""
    return ("127.0.0.1", 0)


def exploring() -> bool:
    """Whether NOTIFIER_TEST_EXPLORE=1 asks for fresh random examples instead of the fixed ones."""
    return os.environ.get("NOTIFIER_TEST_EXPLORE", "").lower() in {"1", "true", "yes"}


# Hypothesis: every run of `make test` draws the same examples (derandomized, as Hypothesis's
# own "ci" profile does), so the suite passes every time or fails every time. To look for new
# failures, NOTIFIER_TEST_EXPLORE=1 draws fresh ones; each failure then prints the blob that
# reproduces it. `--hypothesis-profile` still chooses. tests/integration/test_web_openapi.py fixes
# schemathesis's own seed the same way.
hypothesis.settings.register_profile(
    "notifier-fixed", hypothesis.settings.get_profile("ci"), print_blob=True
)
hypothesis.settings.register_profile("notifier-explore", print_blob=True)
hypothesis.settings.load_profile("notifier-explore" if exploring() else "notifier-fixed")
