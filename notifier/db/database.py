"""The engine, short transactions, the database's own clock, and every dialect branch.

SQLite is the embedded default: WAL so readers never wait for the writer, a busy timeout so
the daemon, the web tier and CLI commands share the file, and ``BEGIN IMMEDIATE`` for write
transactions so two writers queue on the busy timeout instead of failing the upgrade from a
read lock. PostgreSQL is for several replicas.

Callers say what they want (an upsert, a row found by its key, fresh planner statistics),
and this module says how each database does it: nothing outside ``db/`` asks which one it
runs on.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Float,
    FromClause,
    Select,
    String,
    Table,
    and_,
    collate,
    create_engine,
    event,
    exists,
    extract,
    func,
    literal,
    literal_column,
    select,
    text,
    true,
    type_coerce,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import UpdateBase
from sqlalchemy.sql.functions import FunctionElement

from notifier.db.bulk import ArrayStatement, BulkLoad, BulkStatement
from notifier.db.models import UtcDateTime

if TYPE_CHECKING:
    # Each dialect's INSERT is imported when an upsert asks for it: the PostgreSQL dialect
    # costs a command on SQLite about as much as a bare interpreter's start (issue #13).
    from sqlalchemy.dialects import postgresql as postgresql_insert
    from sqlalchemy.dialects import sqlite as sqlite_insert

__all__ = [
    "BulkLoad",
    "BulkStatement",
    "Database",
    "DatabaseUnavailableError",
    "KeyProbe",
    "db_now",
    "json_text",
    "prepare_threshold",
    "upsert",
]

SQLITE_BUSY_TIMEOUT_MS = 10_000
TEMP_CACHE_KIB = 32_768  # SQLite's page cache for temporary tables, while one is in use
# SQLite's page cache per connection, filled as pages are read (2 MiB by default): a steady
# pass over 10,000 tokens in the window reads about 4.6 MiB of pages, and so read each page
# from the file again (docs/performance.md).
CACHE_KIB = 16_384
CONNECT_TIMEOUT_S = 5
# Rows a table may gain on its last statistics before they count as stale (and at least as
# many as the ledger creates before it refreshes them).
_STATISTICS_FLOOR = 500


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
            json_deserializer=json_value,
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
    def write(self, *, durable: bool = True) -> Iterator[Connection]:
        """Open a short transaction that will write (``BEGIN IMMEDIATE`` on SQLite).

        Not *durable*: on PostgreSQL the commit does not wait for the disk, for what costs
        nothing to lose in a crash (a replica's heartbeat, written again next pass). SQLite
        in WAL mode with ``synchronous=NORMAL`` never waits for it at a commit.
        """
        with _translate_unavailable(), self._writer.begin() as connection:
            if not durable and self.dialect == "postgresql":
                connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            yield connection

    @contextmanager
    def held(self) -> Iterator[Connection]:
        """One connection for work across several transactions, and the temporary tables in it.

        Its transactions are :meth:`transaction`'s. A temporary table lives as long as the
        connection and is seen by no other, which is what stages rows before they are written.
        """
        with _translate_unavailable(), self.engine.connect() as connection:
            yield connection

    @contextmanager
    def transaction(self, connection: Connection, *, write: bool) -> Iterator[Connection]:
        """A transaction on a :meth:`held` connection; *write*: as :meth:`write` takes it.

        On SQLite a transaction that only touches temporary tables takes no lock on the
        database file, so another process can write meanwhile; ``write=True`` takes the write
        lock at its start (``BEGIN IMMEDIATE``), waiting on the busy timeout.
        """
        with _translate_unavailable():
            connection.execution_options(notifier_write=write)
            with connection.begin():
                yield connection

    @contextmanager
    def temporary(self, connection: Connection, table: Table) -> Iterator[Table]:
        """*table*, declared ``prefixes=["TEMPORARY"]``, made on *connection*; dropped after."""
        with self.transaction(connection, write=False):
            if self.dialect == "sqlite":
                # Its pages live in a file of their own, through a cache of 2 MiB by default;
                # a million staged rows spilt from that took twice as long to write.
                connection.exec_driver_sql(f"PRAGMA temp.cache_size = -{TEMP_CACHE_KIB}")
            table.create(connection)
        try:
            yield table
        finally:
            try:
                with self.transaction(connection, write=False):
                    table.drop(connection)
            except (DBAPIError, DatabaseUnavailableError):
                # A connection that cannot drop it is broken: closing it drops the table, and
                # the work done before (a commit) stands.
                connection.invalidate()

    def ping(self) -> None:
        """Raise :class:`DatabaseUnavailableError` unless the database answers ``SELECT 1``."""
        with self.read() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def bulk(self, statement: UpdateBase, keys: Sequence[str]) -> BulkStatement:
        """*statement* compiled for this database, to run over many rows with *keys*.

        An executemany; on PostgreSQL one statement over arrays (:class:`ArrayStatement`).
        """
        if self.dialect == "postgresql":
            try:
                return ArrayStatement(statement, self.engine.dialect, keys)
            except TypeError:  # pragma: no cover - a statement it cannot rewrite: as it is
                pass
        return BulkStatement(statement, self.engine.dialect, keys)

    def load(self, table: Table, *, defaults: Mapping[str, Any] | None = None) -> BulkLoad:
        """Rows appended to *table* by this database's fastest path (:class:`BulkLoad`)."""
        copy = self.dialect == "postgresql"
        return BulkLoad(
            table, self.engine.dialect, copy=copy, json_text=json_text, defaults=defaults
        )

    def upsert(self, table: Table) -> sqlite_insert.Insert | postgresql_insert.Insert:
        """An INSERT into *table* that can say ON CONFLICT, in this database's dialect."""
        return upsert(self.dialect, table)

    def put(self, connection: Connection, table: Table, **values: Any) -> None:
        """Insert a row of *table* or, when its primary key exists, overwrite its other values."""
        key = [column.name for column in table.primary_key.columns]
        insert = self.upsert(table).values(**values)
        connection.execute(
            insert.on_conflict_do_update(
                index_elements=key,
                set_={name: insert.excluded[name] for name in values if name not in key},
            )
        )

    def outer_probe(
        self,
        left: FromClause,
        right: Table,
        match: ColumnElement[bool],
        columns: Sequence[ColumnElement[Any]],
        *,
        name: str,
        also: Sequence[ColumnElement[Any]] = (),
        planned: bool = False,
    ) -> KeyProbe:
        """*left* LEFT JOIN the one row of *right* that *match* finds by its key, if any.

        On PostgreSQL the planner joins by its statistics, and a table that just grew from
        nothing (a first pass, a daemon's first hour) has none: it then scans every row of
        *right* once per row of *left*, or a whole index once per query, and a steady pass
        at 1M tokens took seconds. A LATERAL subquery with LIMIT 1 is not flattened into a
        join, so each row is one primary-key probe whatever the statistics say; SQLite's
        planner does this by itself, and keeps the plain join. *columns* are selected (a
        label keeps its name), *also* can be filtered on as well.

        *planned*: *right*'s statistics are current (:meth:`statistics_current`), so the
        planner may join as it judges best: a hash join over a window of thousands of rows
        is several times faster than as many probes.
        """
        if self.dialect == "postgresql" and not planned:
            row = select(*columns, *also).where(match).limit(1).lateral(name)
            named: dict[str, ColumnElement[Any]] = {column.name: column for column in row.c}
            return KeyProbe(left.outerjoin(row, true()), [row.c[c.name] for c in columns], named)
        named = {column.name: column for column in right.c}
        named.update((str(getattr(column, "name", "")), column) for column in columns)
        return KeyProbe(left.outerjoin(right, match), list(columns), named)

    def fetch_all(self, connection: Connection, query: Select[Any]) -> list[tuple[Any, ...]]:
        """The rows of *query* as plain tuples, each value converted by its column's type.

        What ``connection.execute(query).all()`` returns, less SQLAlchemy's Row for every
        row: the driver's rows are read whole and converted column by column, by the same
        result processors. For a pass's pages, that is half the cost of reading them.
        """
        result = connection.execute(query)
        try:
            cursor = result.cursor
            description = cursor.description or ()
            rows = cursor.fetchall()
        finally:
            result.close()
        dialect = self.engine.dialect
        converters = [
            (index, processor)
            for index, (column, described) in enumerate(
                zip(query.selected_columns, description, strict=True)
            )
            if (
                processor := column.type.dialect_impl(dialect).result_processor(
                    dialect, described[1]
                )
            )
            is not None
        ]
        if not converters:
            return [tuple(row) for row in rows]
        converted: list[tuple[Any, ...]] = []
        for row in rows:
            values = list(row)
            for index, processor in converters:
                values[index] = processor(values[index])
            converted.append(tuple(values))
        return converted

    def absent(self, rows: Select[Any], *, planned: bool = False) -> ColumnElement[bool]:
        """``NOT EXISTS (rows)``, for *rows* correlated with the outer query by a key.

        On PostgreSQL without current statistics (*planned* False) the subquery is fenced
        (``OFFSET 0`` keeps the planner from turning it into a join): each outer row is one
        probe by key, as :meth:`outer_probe` makes it; otherwise the planner chooses.
        """
        if self.dialect == "postgresql" and not planned:
            rows = rows.offset(0)
        return ~exists(rows)

    @property
    def reads_columns_late(self) -> bool:
        """Whether a query reads a row's columns only once the row passed every filter.

        SQLite's does (a deferred seek from the index into the table); PostgreSQL's index
        scan reads each row it visits, so a query that filters most rows away is cheaper
        finding its keys in an index alone, then reading the few rows it keeps.
        """
        return self.dialect == "sqlite"

    @property
    def one_writer(self) -> bool:
        """Whether a write transaction keeps every other writer out until it ends.

        SQLite's write lock is the whole database's; PostgreSQL's writers lock only the rows
        they change, and readers see none of a transaction before its commit, so a long one
        may write as it goes (an import writes while it checks).
        """
        return self.dialect == "sqlite"

    @property
    def plans_by_statistics(self) -> bool:
        """Whether the planner's choices follow statistics a grown table must refresh."""
        return self.dialect == "postgresql"

    def statistics_current(self, table: str, connection: Connection | None = None) -> bool:
        """Whether the planner's statistics of *table* still describe it (PostgreSQL).

        Current: analyzed, and holding no more than twice the rows it held then (the
        ledger refreshes them when a table doubles). Elsewhere there is nothing to go
        stale: True. The name is this schema's own table, not input. Read in
        *connection*'s transaction, or in one of its own.
        """
        if not self.plans_by_statistics:
            return True
        if connection is None:
            with self.read() as own:
                return self.statistics_current(table, own)
        row = connection.exec_driver_sql(
            "SELECT c.reltuples, s.n_live_tup FROM pg_class c"
            " JOIN pg_stat_user_tables s ON s.relid = c.oid"
            f" WHERE c.oid = '{table}'::regclass"
        ).first()
        if row is None or row[0] is None or row[0] < 0:
            return False  # never analyzed
        analyzed, live = float(row[0]), int(row[1] or 0)
        return live <= 2 * max(analyzed, _STATISTICS_FLOOR)

    @contextmanager
    def indexes_aside(self, connection: Connection, table: Table) -> Iterator[None]:
        """Drop *table*'s secondary indexes while the block loads rows, then build them again.

        Building an index from a table's rows at once is several times faster than keeping it
        in order row by row (a million random keys in seven indexes: over a minute on SQLite).
        For a loader that is the table's only writer, in *connection*'s transaction: test
        fixtures and benchmarks. The primary key and unique constraints stay.
        """
        if self.dialect == "postgresql":
            found = connection.execute(
                text(
                    "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x"
                    " JOIN pg_class i ON i.oid = x.indexrelid"
                    " WHERE x.indrelid = CAST(:table AS regclass) AND NOT EXISTS"
                    " (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"
                ),
                {"table": table.name},
            ).all()
        else:
            found = connection.execute(
                text(
                    "SELECT name, sql FROM sqlite_master"
                    " WHERE type = 'index' AND tbl_name = :table AND sql IS NOT NULL"
                ),
                {"table": table.name},
            ).all()
        quote = self.engine.dialect.identifier_preparer.quote
        for name, _ in found:
            connection.exec_driver_sql(f"DROP INDEX {quote(name)}")
        yield
        for _, definition in found:
            connection.exec_driver_sql(definition)

    # --- lists: search, days, shares of a lifetime (notifier.tokens.listing) --------------

    def fold_case(self, text_: str) -> str:
        """*text_* lowered as this database's ``lower()`` lowers it (SQLite: ASCII only).

        A search compares it with ``lower(name)`` in an index, so both must fold alike.
        """
        with self.read() as connection:
            folded = connection.execute(select(func.lower(literal(text_, String())))).scalar()
        return str(folded)

    def starts_with(
        self, expression: ColumnElement[str], prefix: str, *, indexed: bool = True
    ) -> ColumnElement[bool]:
        """*expression* starts with *prefix*, as a range its index answers.

        Compared byte by byte: SQLite's own order, and PostgreSQL's "C" collation (the
        search indexes of migration 0005 are in it), whatever the database's collation,
        under which a prefix need not be a range. *indexed* False keeps SQLite's planner
        from answering it by its index (``expression || ''``, the same value): a range of
        many rows is better met while walking another index. PostgreSQL's planner weighs
        that by its statistics, and is left to.
        """
        if self.dialect == "postgresql":
            expression = collate(expression, "C")
        elif not indexed:
            expression = expression.concat("")
        low = literal(prefix, String())
        if not prefix:
            return true()
        last = ord(prefix[-1])
        if last >= sys.maxunicode:
            return expression >= low
        high = literal(prefix[:-1] + chr(last + 1), String())
        return and_(expression >= low, expression < high)

    def utc_day(self, moment: ColumnElement[Any]) -> ColumnElement[str]:
        """The UTC calendar day of a stored time, as ``YYYY-MM-DD`` text."""
        if self.dialect == "postgresql":
            return func.to_char(func.timezone("UTC", moment), "YYYY-MM-DD")
        return func.substr(moment, 1, 10)  # the stored text starts with the UTC day

    def share_of_lifetime_left(
        self,
        created: ColumnElement[Any],
        expires: ColumnElement[Any],
        now: datetime,
        share: float,
    ) -> ColumnElement[bool]:
        """What is left of the lifetime created..expires at *now* is at most *share* of it."""
        # (1 - share) * expires + share * created <= now, in seconds or days since an epoch
        if self.dialect == "postgresql":

            def point(moment: ColumnElement[Any]) -> ColumnElement[Any]:
                return type_coerce(extract("epoch", moment), Float())

        else:

            def point(moment: ColumnElement[Any]) -> ColumnElement[Any]:
                return func.julianday(moment, type_=Float())  # reads the stored text

        moment = literal(now, UtcDateTime())
        return point(expires) * (1 - share) + point(created) * share <= point(moment)

    def refresh_statistics(self, tables: Sequence[str], *, count: str) -> int | None:
        """Refresh the planner's statistics of *tables*; return the rows *count* now holds.

        Only where plans follow statistics (PostgreSQL's ANALYZE); elsewhere nothing is
        done and None is returned. The names are this schema's own tables, not input.
        """
        if not self.plans_by_statistics:
            return None
        with self.write() as connection:
            connection.exec_driver_sql(f"ANALYZE {', '.join(tables)}")
            rows = connection.exec_driver_sql(
                f"SELECT reltuples FROM pg_class WHERE oid = '{count}'::regclass"
            ).scalar()
        return int(rows or 0)


@dataclass(frozen=True, slots=True)
class KeyProbe:
    """A left join with the row found by key: what to select from, and the row's columns."""

    joined: FromClause
    columns: list[ColumnElement[Any]]  # the selected columns, in the order asked
    named: dict[str, ColumnElement[Any]]  # every column of the row, by name, for filters

    def __getattr__(self, name: str) -> ColumnElement[Any]:
        """The row's column *name*, as ``table.c.name`` would give it."""
        try:
            return self.named[name]
        except KeyError:
            raise AttributeError(name) from None


def json_text(value: Any) -> str:
    """A JSON column's text: ``json.dumps``, without the encoder for an empty list or object.

    Most tokens carry no scopes or labels, and an import writes both for every row.
    """
    if not value and type(value) in _EMPTY_JSON:
        return _EMPTY_JSON[type(value)]
    return json.dumps(value)


_EMPTY_JSON: dict[type, str] = {list: "[]", dict: "{}"}


def json_value(text: str) -> Any:
    """A JSON column's value: ``json.loads``, without the decoder for an empty list or object.

    The other way of :func:`json_text`: a pass reads every due token's labels. Each call
    returns a new list or dict, never a shared one.
    """
    if text == "{}":
        return {}
    if text == "[]":
        return []
    return json.loads(text)


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
        cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
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
        from sqlalchemy.dialects import postgresql  # noqa: PLC0415 - see TYPE_CHECKING above

        return postgresql.insert(table)
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite  # noqa: PLC0415

        return sqlite.insert(table)
    raise ValueError(f"no upsert for the {dialect!r} dialect")  # pragma: no cover
