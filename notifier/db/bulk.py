"""Statements run as executemany, compiled once, with their rows converted once."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
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
