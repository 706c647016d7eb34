"""Statements run as executemany, compiled once, with their rows converted once."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import Connection, Dialect
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.sql.expression import UpdateBase


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
        self.types = [binds[name].type for name in names]  # of each parameter, in order
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
        # A row's values taken in one call, the few that convert converted, and the whole
        # put in the compiled order with the constants in one more: no loop over every value.
        fed = [key for _, key, _, _ in self._plan]
        self._take = _getter(fed)
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

    def parameters(self, rows: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """The driver's parameters for *rows*: one tuple each, in the compiled order."""
        take, order, converts = self._take, self._order, self._converts
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
        rows = ", ".join(f"%s{casts[index]}[]" for index, *_ in self._plan)
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
