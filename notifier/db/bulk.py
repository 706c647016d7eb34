"""Statements run as executemany, compiled once, with their rows converted once; bulk loads."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Self, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Connection,
    DateTime,
    Dialect,
    Integer,
    SmallInteger,
    String,
    Table,
    TypeDecorator,
)
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import UpdateBase
from sqlalchemy.types import TypeEngine


class _Required:
    """Where a row must give a value: a key without a default."""


_REQUIRED = _Required()


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

    With *defaults*, a row may leave out the keys that have one (converted once, here), and
    only the keys it carries are converted. *processors* replace the conversion of the keys
    they name.
    """

    def __init__(
        self,
        statement: UpdateBase,
        dialect: Dialect,
        keys: Sequence[str],
        *,
        defaults: Mapping[str, Any] | None = None,
        processors: Mapping[str, Callable[[Any], Any]] | None = None,
    ) -> None:
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
        self.names = tuple(names)  # the parameters, in the compiled order of a row's tuple
        self.types = [binds[name].type for name in names]  # of each parameter, in order
        wanted = set(keys)
        self._template: list[Any] = []
        # (position, row key, processor, whether None goes through it too)
        self._plan: list[tuple[int, str, Callable[[Any], Any] | None, bool]] = []
        for index, name in enumerate(names):
            bind = binds[name]
            # The engine's own dialect converts: it carries its settings (the JSON text).
            processor = (processors or {}).get(name) or bind.type.dialect_impl(
                dialect
            ).bind_processor(dialect)
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
        self._sparse: dict[str, tuple[int, Callable[[Any], Any] | None, bool]] | None = None
        if defaults is not None:
            self._take(defaults, wanted)
        # A row's values taken in one call, the few that convert converted, and the whole
        # put in the compiled order with the constants in one more: no loop over every value.
        fed = [key for _, key, _, _ in self._plan]
        self._fetch = _getter(fed)
        self._converts = [
            (position, processor, none_too)
            for position, (_, _, processor, none_too) in enumerate(self._plan)
            if processor is not None
        ]
        constants = [i for i in range(len(self._template)) if i not in {p[0] for p in self._plan}]
        self._constant_values = [self._template[i] for i in constants]
        slots = {index: position for position, (index, *_) in enumerate(self._plan)}
        slots.update((index, len(fed) + n) for n, index in enumerate(constants))
        self._order = _getter([slots[index] for index in range(len(self._template))], tuple)

    def _take(self, defaults: Mapping[str, Any], wanted: set[str]) -> None:
        """Convert *defaults* into the template; keys without one are marked required."""
        unknown = set(defaults).difference(wanted)
        if unknown:
            raise ValueError(f"defaults for keys the rows do not carry: {sorted(unknown)}")
        self._sparse = {}
        for index, name, convert, none_too in self._plan:
            self._sparse[name] = (index, convert, none_too)
            if name not in defaults:
                self._template[index] = _REQUIRED
                continue
            value = defaults[name]
            if convert is not None and (none_too or value is not None):
                value = convert(value)
            self._template[index] = value

    def parameters(self, rows: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """The driver's parameters for *rows*: one tuple each, in the compiled order."""
        if self._sparse is not None:
            return self._sparse_parameters(rows)
        take, order, converts = self._fetch, self._order, self._converts
        constants = self._constant_values
        converted: list[tuple[Any, ...]] = []
        for row in rows:
            values = take(row)
            for position, processor, none_too in converts:
                value = values[position]
                if none_too or value is not None:
                    values[position] = processor(value)
            converted.append(order(values + constants))
        return converted

    def _sparse_parameters(self, rows: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        plan = self._sparse
        assert plan is not None  # noqa: S101 - only called with defaults
        template = self._template
        converted: list[tuple[Any, ...]] = []
        for row in rows:
            values = template.copy()
            for key, value in row.items():
                index, processor, none_too = plan[key]
                values[index] = (
                    processor(value)
                    if processor is not None and (none_too or value is not None)
                    else value
                )
            if _REQUIRED in values:
                missing = [
                    name
                    for name, value in zip(self.names, values, strict=True)
                    if value is _REQUIRED
                ]
                raise KeyError(f"a row lacks {missing}, which have no default")
            converted.append(tuple(values))
        return converted

    def execute(self, connection: Connection, rows: Iterable[Mapping[str, Any]]) -> int:
        """Run the statement once per row, as one executemany; return the rows it changed."""
        parameters = self.parameters(rows)
        if not parameters:
            return 0
        return connection.exec_driver_sql(self.sql, parameters).rowcount


def _getter(keys: Sequence[Any], kind: type = list) -> Callable[[Any], Any]:
    """``itemgetter(*keys)`` answering a list (or *kind*), even of one key or none."""
    if not keys:
        return lambda _: kind()
    get = itemgetter(*keys)
    if len(keys) == 1:
        return lambda row: kind((get(row),))
    return lambda row: kind(get(row))


# The casts psycopg's dialect writes after each parameter: the arrays are cast alike.
_CAST = re.compile(
    r"::(?:TIMESTAMP WITH(?:OUT)? TIME ZONE|TIMESTAMP|VARCHAR|INTEGER|BIGINT|SMALLINT|TEXT"
    r"|JSONB|JSON|BOOLEAN|FLOAT|DOUBLE PRECISION|NUMERIC|DATE|UUID|BYTEA)\b"
)


class ArrayStatement(BulkStatement):
    """A :class:`BulkStatement` run as one statement over arrays, on PostgreSQL.

    psycopg pipelines an executemany, but the server still binds and runs one statement per
    row: for the pass's batches that is most of its time. Here each column the rows carry is
    one array parameter, unnested into a row source: ``INSERT ... VALUES (...)`` becomes
    ``INSERT ... SELECT ... FROM unnest(...) AS v``, and ``UPDATE ... SET ... WHERE`` gets
    ``FROM unnest(...) AS v`` before its WHERE; each ``%s::TYPE`` the rows fill becomes
    ``v.cN::TYPE``. The statement text is the same for every batch, so the server plans it
    once. The rows of one call must not repeat a key (an upsert cannot change a row twice):
    the pass's batches hold each (token, sink) once.
    """

    def __init__(self, statement: UpdateBase, dialect: Dialect, keys: Sequence[str]) -> None:
        super().__init__(statement, dialect, keys)
        pieces = self.sql.split("%s")
        if "%%" in self.sql or len(pieces) != len(self.types) + 1:  # pragma: no cover
            raise TypeError("cannot read the statement's parameters")
        fed = {index: position for position, (index, *_) in enumerate(self._plan)}
        casts: list[str] = []
        body = pieces[0]
        self._constants: list[int] = []  # template positions still bound one by one
        offsets: list[int] = []  # where each of those stands in the new text
        for index, piece in enumerate(pieces[1:]):
            cast = _CAST.match(piece)
            if cast is None:
                raise TypeError(f"parameter {index} has no cast to a known type")
            casts.append(cast.group(0))
            if index in fed:
                body += f"v.c{fed[index]}{piece}"
            else:
                offsets.append(len(body))
                body += f"%s{piece}"
                self._constants.append(index)
        rows = ", ".join(f"%b{casts[index]}[]" for index, *_ in self._plan)
        names = ", ".join(f"c{position}" for position in range(len(self._plan)))
        source = f"unnest({rows}) AS v({names})"
        if body.startswith("UPDATE "):
            at = body.index(" WHERE ")
            self.sql = f"{body[:at]} FROM {source}{body[at:]}"
        elif body.startswith("INSERT "):
            start = body.index(" VALUES (")
            end = _closing(body, start + len(" VALUES ("))
            tuple_ = body[start + len(" VALUES (") : end]
            self.sql = f"{body[:start]} SELECT {tuple_} FROM {source}{body[end + 1 :]}"
            at = end
        else:  # pragma: no cover - only inserts and updates are bulk statements
            raise TypeError("expected an INSERT or an UPDATE")
        # The constants bound before the row source, then the arrays, then the rest.
        self._before = sum(1 for offset in offsets if offset < at)

    def execute(self, connection: Connection, rows: Iterable[Mapping[str, Any]]) -> int:
        """Run the statement once over all *rows*; return the rows it changed."""
        parameters = self.parameters(rows)
        if not parameters:
            return 0
        columns = [[row[index] for row in parameters] for index, *_ in self._plan]
        constants = [parameters[0][index] for index in self._constants]
        bound = [*constants[: self._before], *columns, *constants[self._before :]]
        return connection.exec_driver_sql(self.sql, tuple(bound)).rowcount


def _closing(text: str, start: int) -> int:
    """The index of the parenthesis that closes the one open before *start*."""
    depth = 1
    for index in range(start, len(text)):
        if text[index] == "(":
            depth += 1
        elif text[index] == ")":
            depth -= 1
            if depth == 0:
                return index
    raise TypeError("unbalanced parentheses")  # pragma: no cover


class BulkLoad:
    """Rows appended to a table by the fastest path its database has.

    A row names the columns it carries; the others take the table's own defaults (NULL,
    or the column's server default), except those in *defaults*, whose values the load
    supplies (converted once). Rows of one shape, the same keys in the same order, share a
    statement compiled once: writing only what a row carries costs SQLite 1.5 µs a row
    instead of 3.9 for a token import's eight columns of seventeen.

    PostgreSQL's ``COPY`` takes rows several times faster than an executemany of INSERTs
    (psycopg pipelines those, but each is still a statement the server plans and runs), so a
    load into a PostgreSQL table is a ``COPY ... FROM STDIN`` on the driver's own
    connection, inside the transaction the caller opened, kept open while :meth:`writing`
    lasts and rows keep their shape: the server takes rows in while the caller makes the
    next ones. It is in the binary format, which psycopg writes in less than half the time
    of text (1.2 against 3.0 µs for a row of seventeen columns), each column as the binary
    type of :data:`_COPY_TYPES`. Elsewhere each batch is an executemany per shape. Either
    way the rows are converted as :class:`BulkStatement` converts them, by each column's
    own bind processor, except that a ``COPY`` takes a JSON column as the text *json_text*
    makes (the server's json type reads text; psycopg's wrapper would dump even a constant
    once per row). SQLAlchemy's events do not see a ``COPY``.
    """

    def __init__(
        self,
        table: Table,
        dialect: Dialect,
        *,
        copy: bool,
        json_text: Callable[[Any], str],
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        self._table = table
        self._dialect = dialect
        self._copy = copy
        self._defaults = dict(defaults or {})
        self._as_text = {
            column.key: json_text for column in table.columns if isinstance(column.type, JSON)
        }
        self._shapes: dict[tuple[str, ...], _Shape] = {}

    def _shape(self, keys: tuple[str, ...]) -> _Shape:
        """The statement for rows that carry *keys*, compiled the first time."""
        shape = self._shapes.get(keys)
        if shape is None:
            defaults = {key: value for key, value in self._defaults.items() if key not in keys}
            insert = BulkStatement(
                self._table.insert(),
                self._dialect,
                (*keys, *defaults),
                defaults=defaults,
                processors=self._as_text if self._copy else None,
            )
            quote = self._dialect.identifier_preparer
            columns = ", ".join(quote.quote(name) for name in insert.names)
            shape = _Shape(
                insert,
                f"COPY {quote.format_table(self._table)} ({columns}) FROM STDIN (FORMAT BINARY)",
                [_copy_type(self._table.c[name].type) for name in insert.names]
                if self._copy
                else [],
            )
            self._shapes[keys] = shape
        return shape

    @contextmanager
    def writing(
        self, connection: Connection
    ) -> Iterator[Callable[[Iterable[Mapping[str, Any]]], int]]:
        """A function that appends a batch of rows and says how many, while the block lasts."""
        if not self._copy:

            def execute(rows: Iterable[Mapping[str, Any]]) -> int:
                return sum(
                    self._shape(keys).insert.execute(connection, batch)
                    for keys, batch in _by_shape(rows).items()
                )

            yield execute
            return
        with _Copying(connection) as copying:

            def append(rows: Iterable[Mapping[str, Any]]) -> int:
                return sum(
                    copying.write(self._shape(keys), batch)
                    for keys, batch in _by_shape(rows).items()
                )

            yield append


def _by_shape(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, ...], list[Mapping[str, Any]]]:
    """*rows* grouped by the keys each carries, in order."""
    shapes: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        keys = tuple(row)
        batch = shapes.get(keys)
        if batch is None:
            shapes[keys] = [row]
        else:
            batch.append(row)
    return shapes


@dataclass(frozen=True, slots=True)
class _Shape:
    """What rows with the same keys are written by: the INSERT, or the COPY and its types."""

    insert: BulkStatement
    copy: str
    copy_types: list[str]


class _Copying:
    """A binary COPY on the driver's connection, restarted when the rows change shape."""

    def __init__(self, connection: Connection) -> None:
        driver = connection.connection.driver_connection
        if driver is None:  # pragma: no cover - a live connection has its driver's
            raise RuntimeError("the connection has no driver connection")
        self._driver = driver
        self._dbapi = connection.dialect.loaded_dbapi
        self._stack = ExitStack()
        self._shape: _Shape | None = None
        self._copy: Any = None

    def write(self, shape: _Shape, rows: list[Mapping[str, Any]]) -> int:
        """Append *rows*, all of *shape*; return how many."""
        with self._translated(shape):
            if shape is not self._shape:
                self._stack.close()  # the COPY of the shape before, finished
                cursor = self._stack.enter_context(self._driver.cursor())
                self._copy = self._stack.enter_context(cursor.copy(shape.copy))
                self._copy.set_types(shape.copy_types)
                self._shape = shape
            write_row = self._copy.write_row
            for row in shape.insert.parameters(rows):
                write_row(row)
        return len(rows)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *failure: object) -> None:
        with self._translated(self._shape):
            self._stack.__exit__(*failure)  # type: ignore[arg-type]

    @contextmanager
    def _translated(self, shape: _Shape | None) -> Iterator[None]:
        try:
            yield
        except self._dbapi.Error as error:
            # As SQLAlchemy wraps the driver's errors, so that callers see one hierarchy.
            statement = shape.copy if shape is not None else "COPY"
            raise DBAPIError.instance(
                statement, None, error, self._dbapi.Error, hide_parameters=True
            ) from error


# The psycopg type each column is sent as in a binary COPY. Text-like columns, JSON among
# them, go as text: the binary input of varchar and json is their text.
_COPY_TYPES: tuple[tuple[type[TypeEngine[Any]], str], ...] = (
    (Boolean, "bool"),
    (SmallInteger, "int2"),
    (BigInteger, "int8"),
    (Integer, "int4"),
    (String, "text"),  # Text and its kind
    (JSON, "text"),
)


def _copy_type(column_type: TypeEngine[Any]) -> str:
    """The binary COPY type of a column of *column_type*."""
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    if isinstance(column_type, DateTime):
        return "timestamptz" if column_type.timezone else "timestamp"
    for kind, name in _COPY_TYPES:
        if isinstance(column_type, kind):
            return name
    raise TypeError(f"no binary COPY type for a {column_type!r} column")
