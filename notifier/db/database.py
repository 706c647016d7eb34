"""The engine, short read and write transactions, and the database's own clock.

SQLite is the embedded default: WAL so readers never wait for the writer, a busy timeout so
the daemon, the web tier and CLI commands share the file, and ``BEGIN IMMEDIATE`` for write
transactions so two writers queue on the busy timeout instead of failing the upgrade from a
read lock. PostgreSQL is for several replicas.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Float,
    Table,
    create_engine,
    event,
    literal_column,
    text,
)
from sqlalchemy.dialects import postgresql as postgresql_insert
from sqlalchemy.dialects import sqlite as sqlite_insert
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from notifier.db.models import UtcDateTime

SQLITE_BUSY_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_S = 5


class DatabaseUnavailableError(Exception):
    """The database did not answer; the caller waits and retries, or exits 69."""


class Database:
    """A connection pool with short read and write transactions."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self.dialect = url.get_backend_name()
        connect_args: dict[str, Any] = {}
        if self.dialect == "sqlite":
            if url.database:
                try:
                    Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    raise DatabaseUnavailableError(
                        f"cannot create the directory of {url.database}: {error.strerror}"
                    ) from None
            connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_MS / 1000
        elif self.dialect == "postgresql":
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
            if "prepare_threshold" in url.query:
                connect_args["prepare_threshold"] = prepare_threshold(
                    url.query["prepare_threshold"]
                )
                url = url.difference_update_query(["prepare_threshold"])
        self.engine: Engine = create_engine(
            url,
            connect_args=connect_args,
            pool_pre_ping=self.dialect != "sqlite",
            hide_parameters=True,  # errors must not carry values (names, hashes) into logs
        )
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
        self._writer = self.engine.execution_options(notifier_write=True)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """Open a short transaction for reading."""
        with _translate_unavailable(), self.engine.begin() as connection:
            yield connection

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """Open a short transaction that will write (``BEGIN IMMEDIATE`` on SQLite)."""
        with _translate_unavailable(), self._writer.begin() as connection:
            yield connection

    def ping(self) -> None:
        """Raise :class:`DatabaseUnavailableError` unless the database answers ``SELECT 1``."""
        with self.read() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def prepare_threshold(value: str | tuple[str, ...]) -> int | None:
    """The ``prepare_threshold`` psycopg takes, from the URL's ``?prepare_threshold=`` (none, N).

    Behind PgBouncer in transaction pooling mode (before 1.21, or without
    ``max_prepared_statements``) server-side prepared statements break, since the next
    transaction may run on another server connection: ``?prepare_threshold=none`` turns them
    off. psycopg prepares a statement after it ran N times (5 by default); a URL query
    value is text, so it is converted here.
    """
    text = (value[-1] if isinstance(value, tuple) else value).strip().lower()
    if text in {"none", "off", ""}:
        return None
    try:
        threshold = int(text)
    except ValueError:
        threshold = -1
    if threshold < 0:
        raise ValueError(
            f"NOTIFIER_DATABASE_URL: prepare_threshold={text!r}: expected a whole number of "
            "executions, or none to turn prepared statements off (PgBouncer)"
        )
    return threshold


@contextmanager
def _translate_unavailable() -> Iterator[None]:
    try:
        yield
    except OperationalError as error:
        if _is_unavailable(error):
            raise DatabaseUnavailableError(_reason(error)) from error
        raise
    except DBAPIError as error:
        if error.connection_invalidated:
            raise DatabaseUnavailableError(_reason(error)) from error
        raise


def _is_unavailable(error: OperationalError) -> bool:
    if error.connection_invalidated:
        return True
    message = str(error.orig).lower()
    markers = (
        "connection",
        "could not connect",
        "server closed",
        "unable to open database",
        "terminating",
        "timeout",
        "the database system is",
        "no such host",
        "name or service not known",
    )
    return any(marker in message for marker in markers)


def _reason(error: DBAPIError) -> str:
    """The driver's message without the statement or parameters SQLAlchemy appends."""
    return str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over BEGIN from the driver so write transactions can say IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable enough in WAL, and far faster
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get("notifier_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class db_now(FunctionElement[Any]):  # noqa: N801 - reads like the SQL function it stands for
    """The database server's current time, optionally plus *seconds*: claims use this clock.

    Replicas' wall clocks may disagree; the database's is the one they share.
    """

    type = UtcDateTime()
    inherit_cache = True

    def __init__(self, seconds: float = 0) -> None:
        seconds = float(seconds)
        if not math.isfinite(seconds):
            raise ValueError(f"db_now() takes a finite number of seconds, not {seconds}")
        # Written into the SQL, not bound: claims run as executemany, which binds per row.
        super().__init__(literal_column(repr(seconds), Float()))


@compiles(db_now, "sqlite")
def _db_now_sqlite(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    # '%f' gives milliseconds; pad to the six digits the stored format has, so text compares
    # as time does.
    return f"(strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.3f seconds', {seconds})) || '000')"


@compiles(db_now, "postgresql")
def _db_now_postgresql(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return f"(statement_timestamp() + make_interval(secs => {seconds}))"


def upsert(dialect: str, table: Table) -> sqlite_insert.Insert | postgresql_insert.Insert:
    """An INSERT that can say ON CONFLICT on the given dialect (both spell it the same)."""
    if dialect == "postgresql":
        return postgresql_insert.insert(table)
    if dialect == "sqlite":
        return sqlite_insert.insert(table)
    raise ValueError(f"no upsert for the {dialect!r} dialect")  # pragma: no cover
