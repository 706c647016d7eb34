"""Moving tokens in and out: the upsert of an import, and the export it round-trips with.

Reading the files (JSONL, CSV, api-keys.json) is :mod:`notifier.tokens.importer`'s; this module
writes what it read, and reads what export writes. Export is JSONL of exactly
:data:`RECORD_FIELDS`, the shape import accepts, streamed by id.

An import holds a bounded number of rows in memory, whatever the size of the file. The
checked rows are staged in a temporary table of the import's own connection, which no other
connection sees and which on SQLite takes no lock on the database file. Repeated ids are
found there. The rows move into the tokens and audit tables by INSERT ... SELECT for new
tokens and their events; the rows whose id is stored already come back to Python, a page at
a time, to see what they change. All of it commits in one transaction, or none of it does.

When the write happens differs by backend:

- **SQLite**: only when every row has passed does the write transaction begin, so that the
  database's one write lock is held for the write alone, not while a file is read.
- **PostgreSQL**: one transaction stages and writes a range of rows at a time while a thread
  reads and checks the next range, so that the server inserts while the file is checked
  (the way a ``COPY`` loader keeps both cores busy). Nothing of it is seen by another
  connection before the commit, and a bad row or a repeated id anywhere in the file rolls it
  all back: the file is still read to its end, so that every bad row is listed.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Self, cast

import structlog
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Integer,
    MetaData,
    Table,
    and_,
    bindparam,
    func,
    insert,
    literal,
    select,
    text,
    update,
)

from notifier import audit
from notifier.db.bulk import BulkLoad
from notifier.db.database import Database
from notifier.db.keyset import Order, stream_rows
from notifier.db.models import AuditEvent, Token, UtcDateTime
from notifier.tokens.views import iso

_STAGE_CHUNK = 500  # rows converted and staged at a time
_DIFF_PAGE = 5_000  # staged rows of stored ids diffed at a time (held with the stored tokens)
_INSERT_RANGE = 100_000  # staged rows per INSERT ... SELECT of new tokens (a progress step)
# PostgreSQL: staged rows written at a time while the next ones are checked, and so also
# about how many checked rows wait in memory for the write to take them.
_WRITE_RANGE = 20_000
MAX_ERRORS = 50  # bad rows listed at most
# Fields an import may set, in export order; export writes exactly these.
RECORD_FIELDS = (
    "id",
    "name",
    "role",
    "permissions",
    "owner",
    "labels",
    "description",
    "created_at",
    "expires_at",
    "revoked_at",
    "last_used_at",
    "rotated_from",
    "superseded_by",
)

log = structlog.get_logger("notifier.tokens")
_tokens = Token.__table__
_events = AuditEvent.__table__
_TOKEN_COLUMNS = tuple(column.key for column in _tokens.columns)
# What a new token has where an import row says nothing: the staged table's defaults, NULL
# but for these, and created_at, the import's time.
_NEW_TOKEN_JSON = {"permissions": text("'[]'"), "labels": text("'{}'")}
# Which fields a staged row carries, one bit per token column: absent ones keep what is stored.
_BIT = {name: 1 << index for index, name in enumerate(_TOKEN_COLUMNS)}
_staged = Table(
    "import_staged",
    MetaData(),
    Column("ordinal", Integer, primary_key=True, autoincrement=False),  # order in the file
    Column("line", Integer, nullable=False),
    Column("carried", Integer, nullable=False),
    Column("stored", Boolean),  # set when the write finds the id stored already
    *(
        Column(column.name, column.type, server_default=_NEW_TOKEN_JSON.get(column.name))
        for column in _tokens.columns
    ),
    prefixes=["TEMPORARY"],
)


class ImportRecord(NamedTuple):
    """One row of an import: the fields it carries (absent ones keep their stored value)."""

    line: int
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RowError:
    """One bad row: where, which field, and why."""

    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", field {self.field}" if self.field else "")
        return f"{where}: {self.message}"


class ImportDataError(Exception):
    """The file holds bad rows; nothing was imported."""

    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(f"{len(errors)} bad row(s)")
        self.errors = errors


@dataclass
class ImportReport:
    """What an import did."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0


_REFRESH_AFTER = 10_000  # rows written past which an import refreshes the planner's statistics


def import_records(
    database: Database,
    records: Iterable[ImportRecord],
    *,
    now: datetime,
    actor: str,
    staged: Callable[[int], object] | None = None,
    progress: Callable[[int], object] | None = None,
    before_commit: Callable[[], object] | None = None,
    write_range: int = _WRITE_RANGE,
) -> ImportReport:
    """Upsert *records* by id in one transaction: all of them, or nothing.

    *records* is read once, and may be a stream of any length. Nothing is committed unless
    all of it was read without an :class:`ImportDataError` (the reader's bad rows) and no id
    repeats (raised as one, with the reader's, by line). Fields a record does not carry keep
    their stored value (or the default for a new token). A record equal to what is stored
    changes nothing, so importing twice is the same as importing once. *staged* hears how
    many records each chunk read and checked, *progress* how many each step of the write
    wrote; *before_commit* is called once every row is written, just before the commit (the
    CLI holds signals back from there, to say truthfully whether the import happened). On
    PostgreSQL the rows are written *write_range* at a time while the next are checked.
    """
    report = ImportReport()
    started = time.monotonic()
    with database.held() as connection, database.temporary(connection, _staged):
        run = _Write(database, connection, now=now, actor=actor, report=report)
        load = database.load(_staged, defaults={"created_at": now})
        if database.one_writer:
            count = _stage(connection, load, records, staged, database=database)
            checked = time.monotonic()
            with database.transaction(connection, write=True):
                for written in run.write(0, count):
                    if progress is not None:
                        progress(written)
                if before_commit is not None:
                    before_commit()
        else:
            with database.transaction(connection, write=True):
                _Ranges(connection, load, run, staged, progress, write_range).import_all(records)
                checked = time.monotonic()
                if before_commit is not None:
                    before_commit()
    if report.created + report.updated >= _REFRESH_AFTER:
        # PostgreSQL plans by statistics, which autovacuum refreshes only a while later:
        # until then a search or a sort over a table that grew tenfold reads all of it.
        database.refresh_statistics(["tokens", "audit_events"], count="tokens")
    log.info(
        "token.imported",
        created=report.created,
        updated=report.updated,
        unchanged=report.unchanged,
        # SQLite: reading and checking (with the staging), then the write. PostgreSQL: the two
        # together, then what is left of the write after the last row was checked.
        check_ms=round((checked - started) * 1000),
        write_ms=round((time.monotonic() - checked) * 1000),
    )
    return report


def _staged_rows(records: Iterable[ImportRecord], start: int) -> list[dict[str, Any]]:
    """*records* as staged rows, numbered from *start*: the fields, and which they carry."""
    chunk: list[dict[str, Any]] = []
    ordinal = start
    bits = _BIT
    for record in records:
        values = record.values
        carried = 0
        for key in values:
            carried |= bits[key]
        chunk.append({**values, "ordinal": ordinal, "line": record.line, "carried": carried})
        ordinal += 1
    return chunk


def _stage(
    connection: Connection,
    load: BulkLoad,
    records: Iterable[ImportRecord],
    staged: Callable[[int], object] | None,
    *,
    database: Database,
) -> int:
    """Stage every record; raise :class:`ImportDataError` for bad rows; return how many."""
    errors: list[RowError] = []
    ordinal = 0
    with database.transaction(connection, write=False):
        with load.writing(connection) as append:
            try:
                for chunk in _chunks(records):
                    ordinal += append(_staged_rows(chunk, ordinal))
                    if staged is not None:
                        staged(len(chunk))
            except ImportDataError as error:
                errors = error.errors  # the reader's bad rows; what it read so far is staged
        errors.extend(_repeats(connection))
    if errors:
        raise ImportDataError(sorted(errors, key=lambda error: error.line)[:MAX_ERRORS])
    return ordinal


@dataclass
class _Ranges:
    """The PostgreSQL import: staged and written in the caller's transaction, a range at a time.

    A thread reads and checks the records ahead, up to a range of them, while the server
    writes the range before; the staging of a range waits for the write before it, on the
    one connection. Once a bad row or a repeat is seen, the rest is only staged, to list
    every bad row; :class:`ImportDataError` then ends the transaction, rolled back.
    """

    connection: Connection
    load: BulkLoad
    run: _Write
    staged: Callable[[int], object] | None
    progress: Callable[[int], object] | None
    size: int
    errors: list[RowError] = field(default_factory=list)
    failed: bool = False
    ended: bool = False

    def import_all(self, records: Iterable[ImportRecord]) -> None:
        """Stage and write every record, or raise :class:`ImportDataError`."""
        start = 0
        with _ReadAhead(records, depth=max(self.size // _STAGE_CHUNK, 1)) as chunks:
            while not self.ended:
                end = self._stage_range(chunks, start)
                if end > start and not self.failed:
                    if self.run.repeated(start, end):
                        self.failed = True  # listed by _repeats, below; nothing more is written
                    else:
                        for written in self.run.write(start, end):
                            if self.progress is not None:
                                self.progress(written)
                start = end
        # An id again in a later range than its first was taken for a stored one and diffed:
        # found here with the rest, it rolls everything back.
        errors = [*self.errors, *_repeats(self.connection)]
        if errors:
            raise ImportDataError(sorted(errors, key=lambda error: error.line)[:MAX_ERRORS])

    def _stage_range(self, chunks: _ReadAhead, start: int) -> int:
        """Stage up to a range of records from *start*; return the ordinal after the last."""
        ordinal = start
        with chunks.paused(), self.load.writing(self.connection) as append:
            while ordinal - start < self.size:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    self.ended = True
                    break
                except ImportDataError as error:
                    self.errors = error.errors  # the reader's bad rows, after all it read
                    self.failed = self.ended = True
                    break
                ordinal += append(chunk)
                if self.staged is not None:
                    self.staged(len(chunk))
        return ordinal


def _chunks(records: Iterable[ImportRecord]) -> Iterator[list[ImportRecord]]:
    """*records* in lists of :data:`_STAGE_CHUNK`.

    What the reading raises (at its end, the bad rows) comes after the rows read before it,
    so that those are staged too and their repeated ids are listed with the bad rows.
    """
    chunk: list[ImportRecord] = []
    iterator = iter(records)
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            break
        except BaseException:
            if chunk:
                yield chunk
            raise
        chunk.append(record)
        if len(chunk) == _STAGE_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _ReadAhead:
    """*records* read, checked and made staged rows by a thread of their own, *depth* ahead.

    Iterated as chunks of staged rows, numbered in file order; what the reading raised (bad
    rows, a file that stops being UTF-8) is raised where the chunk after the last good one
    would have come. Leaving the block stops the thread after its current chunk and waits
    for it, so that nothing reads the file after the import returned.
    """

    _END = object()

    def __init__(self, records: Iterable[ImportRecord], *, depth: int) -> None:
        self._records = records
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._running = threading.Event()  # cleared while the importing thread stages
        self._running.set()
        self._thread = threading.Thread(target=self._read, name="import-reader", daemon=True)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the reading back while chunks wait, so that staging them has the GIL to itself.

        The reading then runs while the server writes: as long as that takes more than the
        checking of a range, the next range is ready when the write returns.
        """
        self._running.clear()
        try:
            yield
        finally:
            self._running.set()

    def _read(self) -> None:
        ordinal = 0
        try:
            for chunk in _chunks(self._records):
                rows = _staged_rows(chunk, ordinal)  # here, not in the thread that stages
                ordinal += len(rows)
                if not self._put(rows):
                    return
                self._running.wait()
        except BaseException as error:  # noqa: BLE001 - handed to the importing thread
            self._put(error)
        else:
            self._put(self._END)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *failure: object) -> None:
        self._stop.set()
        self._running.set()  # a reading held back sees the stop
        self._thread.join()

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> list[dict[str, Any]]:
        if self._queue.empty():
            self._running.set()  # nothing waits: paused or not, the reading must go on
        item = self._queue.get()
        if item is self._END:
            self._queue.put(item)  # asked again, it ends again
            raise StopIteration
        if isinstance(item, BaseException):
            self._queue.put(item)
            raise item
        return cast("list[dict[str, Any]]", item)


def _repeats(connection: Connection) -> Iterator[RowError]:
    """The staged rows whose id an earlier row has, each naming the first one's line."""
    first = (
        select(_staged.c.id, func.min(_staged.c.ordinal).label("ordinal"))
        .group_by(_staged.c.id)
        .having(func.count() > 1)
        .subquery("repeated")
    )
    earlier = _staged.alias("earlier")
    later = _staged.alias("later")
    query = (
        select(later.c.line, later.c.id, earlier.c.line)
        .select_from(
            first.join(earlier, earlier.c.ordinal == first.c.ordinal).join(
                later, and_(later.c.id == first.c.id, later.c.ordinal > first.c.ordinal)
            )
        )
        .order_by(later.c.ordinal)
        .limit(MAX_ERRORS)
    )
    for line, token_id, first_line in connection.execute(query):
        yield RowError(line, "id", f"{token_id!r} repeats line {first_line}")


@dataclass
class _Write:
    """The write of the staged rows: the stored ones diffed a page at a time, then the new."""

    database: Database
    connection: Connection
    now: datetime
    actor: str
    report: ImportReport

    def write(self, start: int, end: int) -> Iterator[int]:
        """Write the staged rows ``start <= ordinal < end``; yield how many each step wrote."""
        connection = self.connection
        # Which ids are stored, in one statement over both tables: a join the planner sizes
        # once, rather than a probe per row from Python.
        connection.execute(
            update(_staged)
            .where(
                _staged.c.ordinal >= start,
                _staged.c.ordinal < end,
                select(_tokens.c.id).where(_tokens.c.id == _staged.c.id).exists(),
            )
            .values(stored=True)
        )
        after = start - 1
        while (page := self._update_stored(after, end)) is not None:
            after, rows = page
            yield rows
        for first in range(start, end, _INSERT_RANGE):
            yield self._insert_new(first, min(first + _INSERT_RANGE, end))

    def repeated(self, start: int, end: int) -> bool:
        """Whether an id repeats among the staged rows ``start <= ordinal < end``.

        Two new rows of one id in a range would break the insert of the range, and with it
        the transaction, before the repeats could be listed.
        """
        query = (
            select(_staged.c.id)
            .where(_staged.c.ordinal >= start, _staged.c.ordinal < end)
            .group_by(_staged.c.id)
            .having(func.count() > 1)
            .limit(1)
        )
        return self.connection.execute(query).first() is not None

    def _insert_new(self, start: int, end: int) -> int:
        """Insert the new tokens of the staged rows ``start <= ordinal < end``, with events."""
        new = (
            select()
            .where(_staged.c.ordinal >= start, _staged.c.ordinal < end, _staged.c.stored.is_(None))
            .order_by(_staged.c.ordinal)
        )
        self.connection.execute(
            insert(_events).from_select(
                ["at", "actor", "action", "token_id", "token_name", "details"],
                new.add_columns(
                    literal(self.now, UtcDateTime()),
                    literal(self.actor),
                    literal("import"),
                    _staged.c.id,
                    _staged.c.name,
                    literal({"created": True}, JSON()),
                ),
            )
        )
        # It reads only the staged rows: an INSERT that read its own table (to leave out the
        # stored ids) would make SQLite buffer every row first.
        inserted = self.connection.execute(
            insert(_tokens).from_select(
                list(_TOKEN_COLUMNS),
                new.add_columns(*(_staged.c[name] for name in _TOKEN_COLUMNS)),
            ),
            execution_options={"preserve_rowcount": True},  # an INSERT's is kept only if asked
        )
        self.report.created += inserted.rowcount
        return int(inserted.rowcount)

    def _update_stored(self, after: int, end: int) -> tuple[int, int] | None:
        """Diff the next page of stored rows after *after*, before *end*; update the changed.

        Returns the page's last ordinal and its size, or None when no stored row is left.
        """
        # Probed by key, so that PostgreSQL's planner cannot choose to scan the whole table
        # once per page (db.outer_probe).
        probe = self.database.outer_probe(
            _staged,
            _tokens,
            _tokens.c.id == _staged.c.id,
            [column.label(f"stored_{column.key}") for column in _tokens.c],
            name="stored",
        )
        query = (
            select(_staged, *probe.columns)
            .select_from(probe.joined)
            .where(_staged.c.stored.is_(True), _staged.c.ordinal > after, _staged.c.ordinal < end)
            .order_by(_staged.c.ordinal)
            .limit(_DIFF_PAGE)
        )
        # The whole page first: SQLite leaves a scan undefined when its table changes under it.
        rows = self.connection.execute(query).mappings().all()
        if not rows:
            return None
        report = self.report
        updates: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for row in rows:
            carried = row["carried"]
            changed = {
                name: row[name]
                for name in _TOKEN_COLUMNS
                if carried & _BIT[name] and row[name] != row[f"stored_{name}"]
            }
            if not changed:
                report.unchanged += 1
                continue
            report.updated += 1
            updates.append(
                {"k_id": row["id"], **{f"v_{key}": value for key, value in changed.items()}}
            )
            events.append(
                audit.event(
                    at=self.now,
                    actor=self.actor,
                    action="import",
                    token_id=row["id"],
                    token_name=row["name"],
                    details={"changed": sorted(changed)},
                )
            )
        _update_grouped(self.connection, updates)
        audit.record(self.connection, events)
        return rows[-1]["ordinal"], len(rows)


def _update_grouped(connection: Connection, updates: list[dict[str, Any]]) -> None:
    """Rows that change the same columns share one executemany."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in updates:
        groups.setdefault(tuple(sorted(key for key in row if key != "k_id")), []).append(row)
    for keys, rows in groups.items():
        statement = (
            update(_tokens)
            .where(_tokens.c.id == bindparam("k_id"))
            .values({key[2:]: bindparam(key) for key in keys})
        )
        connection.execute(statement, rows)


# Export reads by id, a page at a time (notifier.db.keyset): memory holds one page.
_EXPORT_ORDER = Order("id", (_tokens.c.id,))
_EXPORTED = select(*(_tokens.c[key] for key in RECORD_FIELDS))


def export_records(database: Database) -> Iterator[dict[str, Any]]:
    """Every token's metadata, by id, in the shape :func:`import_records` accepts; no hashes.

    Read a page at a time, each page its own short read: a token added or removed while an
    export runs is in it or not, as for any list; none is written twice or skipped when it
    stayed.
    """
    for row in stream_rows(database, _EXPORTED, _EXPORT_ORDER):
        yield {
            key: iso(row[key]) if isinstance(row[key], datetime) else row[key]
            for key in RECORD_FIELDS
        }
