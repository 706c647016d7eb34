"""The engine, short read and write transactions, and the database's own clock.

SQLite is the embedded default: WAL so readers never wait for the writer, a busy timeout so
the daemon, the web tier and CLI commands share the file, and ``BEGIN IMMEDIATE`` for write
transactions so two writers queue on the busy timeout instead of failing the upgrade from a
read lock. PostgreSQL is for several replicas.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Dialect,
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
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import UpdateBase
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
            if url.database and url.database != ":memory:" and not url.query.get("uri"):
                _create_private_file(Path(url.database).expanduser())
            connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_MS / 1000
        elif self.dialect == "postgresql":
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
            if "prepare_threshold" in url.query:
                try:
                    threshold = prepare_threshold(url.query["prepare_threshold"])
                except ValueError as error:
                    raise ValueError(f"NOTIFIER_DATABASE_URL: {error}") from None
                connect_args["prepare_threshold"] = threshold
                url = url.difference_update_query(["prepare_threshold"])
        self.engine: Engine = create_engine(
            url,
            connect_args=connect_args,
            pool_pre_ping=self.dialect != "sqlite",
            hide_parameters=True,  # errors must not carry values (names, hashes) into logs
            json_serializer=json_text,
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

    def bulk(self, statement: UpdateBase, keys: Sequence[str]) -> BulkStatement:
        """*statement* compiled for this database, to run as executemany of rows with *keys*."""
        return BulkStatement(statement, self.engine.dialect, keys)


def json_text(value: Any) -> str:
    """A JSON column's text: ``json.dumps``, without the encoder for an empty list or object.

    Most tokens carry no scopes or labels, and an import writes both for every row.
    """
    if not value and type(value) in _EMPTY_JSON:
        return _EMPTY_JSON[type(value)]
    return json.dumps(value)


_EMPTY_JSON: dict[type, str] = {list: "[]", dict: "{}"}


def prepare_threshold(value: str | tuple[str, ...]) -> int | None:
    """The ``prepare_threshold`` psycopg takes, from the URL's ``?prepare_threshold=`` (none, N).

    Behind PgBouncer in transaction pooling mode (before 1.21, or without
    ``max_prepared_statements``) server-side prepared statements break, since the next
    transaction may run on another server connection: ``?prepare_threshold=none`` turns them
    off. psycopg prepares a statement after it ran N times (5 by default); a URL query
    value is text, so it is converted here. Settings check it at start-up (exit 78); the
    message names the option, and the caller the variable.
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
            f"prepare_threshold={text!r}: expected a whole number of executions, or none to "
            "turn prepared statements off (PgBouncer)"
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


def _create_private_file(path: Path) -> None:
    """Create the SQLite file 0600, and the directories notifier makes for it 0700.

    It holds token hashes and the audit trail, so nobody else on the host reads it, whatever
    the umask. SQLite gives its -wal and -shm files the database file's permissions. A file or
    directory that already exists keeps the permissions its owner chose.
    """
    missing = [parent for parent in reversed(path.parents) if not parent.exists()]
    try:
        for directory in missing:
            directory.mkdir(mode=0o700, exist_ok=True)
            directory.chmod(0o700)  # mkdir's mode is filtered by the umask; 0700 is the point
    except OSError as error:
        raise DatabaseUnavailableError(
            f"cannot create the directory of {path}: {error.strerror}"
        ) from None
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as error:
        raise DatabaseUnavailableError(f"cannot create {path}: {error.strerror}") from None
    os.close(descriptor)


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


class BulkStatement:
    """An executemany statement compiled once, whose rows reach the driver converted once.

    SQLAlchemy's executemany builds, for every row, a dict of every parameter of the
    statement and then runs each value through its type: for the pass's batches of 500 rows
    (and an import's chunks) that cost more than the database's own work. Here the statement
    is compiled once for the dialect and for the *keys* each row carries; a row becomes a
    tuple in the compiled order, each value converted by its column type's own bind
    processor, and constants written into the statement (``.values(hint=...)``, a lease
    owner) are converted once, here. The SQL is SQLAlchemy's, and so are the conversions;
    only the per-row bookkeeping is skipped. Statements that return rows are not for this: a
    driver's executemany discards them.

    psycopg's dialect speaks ``%(name)s``, and psycopg then reorders a dict into position
    for every row; the statement is compiled with ``%s`` instead (psycopg takes both), and
    the rows are tuples on every backend.
    """

    def __init__(self, statement: UpdateBase, dialect: Dialect, keys: Sequence[str]) -> None:
        compiler = dialect
        if not dialect.positional:
            # DefaultDialect's constructor takes the paramstyle; the Dialect protocol's does not.
            compiler = cast("type[DefaultDialect]", type(dialect))(paramstyle="format")
        compiled = statement.compile(dialect=compiler, column_keys=list(keys))
        if not compiled.positional or compiled.positiontup is None:  # pragma: no cover
            raise TypeError(f"{dialect.name}: cannot compile positional parameters")
        self.sql = compiled.string
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        names = list(compiled.positiontup)
        wanted = set(keys)
        self._template: list[Any] = []
        # (position, row key, processor, whether None goes through it too)
        self._plan: list[tuple[int, str, Callable[[Any], Any] | None, bool]] = []
        for index, name in enumerate(names):
            bind = binds[name]
            # The engine's own dialect converts: it carries its settings (the JSON text).
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required or name in wanted:
                if name not in wanted:
                    raise ValueError(f"the statement needs {name!r}, which the rows do not carry")
                # Most processors keep None as None, and are skipped for it; a JSON column's
                # turns None into 'null', and sees it.
                none_too = processor is not None and processor(None) is not None
                self._template.append(None)
                self._plan.append((index, name, processor, none_too))
            else:
                value = bind.effective_value
                self._template.append(value if processor is None else processor(value))
        missing = wanted.difference(names)
        if missing:
            raise ValueError(f"the statement does not use {sorted(missing)}")

    def parameters(self, rows: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """The driver's parameters for *rows*: one tuple each, in the compiled order."""
        plan = self._plan
        template = self._template
        converted: list[tuple[Any, ...]] = []
        for row in rows:
            values = template.copy()
            for index, key, processor, none_too in plan:
                value = row[key]
                if processor is not None and (none_too or value is not None):
                    value = processor(value)
                values[index] = value
            converted.append(tuple(values))
        return converted

    def execute(self, connection: Connection, rows: Iterable[Mapping[str, Any]]) -> int:
        """Run the statement once per row, as one executemany; return the rows it changed."""
        parameters = self.parameters(rows)
        if not parameters:
            return 0
        return connection.exec_driver_sql(self.sql, parameters).rowcount


def upsert(dialect: str, table: Table) -> sqlite_insert.Insert | postgresql_insert.Insert:
    """An INSERT that can say ON CONFLICT on the given dialect (both spell it the same)."""
    if dialect == "postgresql":
        return postgresql_insert.insert(table)
    if dialect == "sqlite":
        return sqlite_insert.insert(table)
    raise ValueError(f"no upsert for the {dialect!r} dialect")  # pragma: no cover
