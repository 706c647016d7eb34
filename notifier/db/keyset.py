"""Keyset paging: each page of a list starts after the last row of the page before.

A list is read in an :class:`Order`: key columns, the last of them unique (the id), each
page ``ORDER BY`` them with ``LIMIT``, and the next page ``WHERE (key) > (last key)``. Each
page is a range scan of the index in that order, however deep into the list it is, and a
row added or changed meanwhile moves no other row from one page to another: no page repeats
a row of an earlier one, or skips one that stayed where it was. (OFFSET would read and drop
every row before the page, and shift when one is added.)

An order's first column may hold NULL (a token that never expires). NULL does not compare,
so the list is read in two segments, each a range scan: the rows with a value, then those
without (ascending; the other way round descending, so that "never" sorts as the latest).

The cursor handed out for the next page is opaque text: the key of the last row, the order
and a fingerprint of the filters it was made for, in URL-safe base64. A cursor given with
another order or other filters is refused (:class:`CursorError`): it would start a list
somewhere that list never was.

A list may be **merged** from parts that live in different tables (the credentials list:
the store's tokens and what other sources found). Each part pages by its own keyset; a page
reads a page of each after that part's position, merges them in the list's order, and keeps
the first rows. Its cursor holds one position per part, so no key of one part is ever
compared with another part's columns, and each part's rows keep the order its index gives.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, RowMapping, Select, tuple_

if TYPE_CHECKING:
    from notifier.db.database import Database

Key = tuple[Any, ...]
_TIME = "t"  # how a time is tagged in a cursor's JSON


class CursorError(ValueError):
    """A cursor that is not one of ours, or was made for another order or other filters."""


@dataclass(frozen=True, slots=True)
class Order:
    """How a list is sorted: key columns (the last one unique), ascending or descending.

    *nullable*: the first column may be NULL; those rows come after the others ascending,
    before them descending.
    """

    name: str  # as the list's ``sort`` names it: "expires_at", "-name"
    columns: tuple[ColumnElement[Any], ...]
    descending: bool = False
    nullable: bool = False

    def key_of(self, row: RowMapping) -> Key:
        """The key of *row*, which must carry each key column under its own name."""
        return tuple(row[str(column.key)] for column in self.columns)

    def _segments(self) -> list[bool]:
        """The segments in reading order: True for the rows whose first key is NULL."""
        if not self.nullable:
            return [False]
        return [True, False] if self.descending else [False, True]

    def _segment_query(self, base: Select[Any], nulls: bool, after: Key | None) -> Select[Any]:
        columns = self.columns
        query = base
        if self.nullable:
            first = columns[0]
            query = query.where(first.is_(None) if nulls else first.is_not(None))
            if nulls:
                columns = columns[1:]
        if after is not None:
            bound = after[len(self.columns) - len(columns) :]
            row, last = tuple_(*columns), tuple_(*bound)
            query = query.where(row < last if self.descending else row > last)
        return query.order_by(*(c.desc() if self.descending else c.asc() for c in columns))

    def queries(self, base: Select[Any], after: Key | None) -> Iterator[Select[Any]]:
        """The segment queries of the rows after *after* (None: from the start), in order."""
        segments = self._segments()
        if after is not None and self.nullable:
            # A key whose first value is NULL is in the NULL segment: begin there.
            segments = segments[segments.index(after[0] is None) :]
        for position, nulls in enumerate(segments):
            yield self._segment_query(base, nulls, after if position == 0 else None)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list: its rows, and the cursor of the next page (None: the last)."""

    rows: list[RowMapping]
    next_cursor: str | None


def fingerprint(filters: Any) -> str:
    """A short digest of *filters* (JSON-able), for a cursor to say what it was made for."""
    text = json.dumps(filters, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def encode_cursor(order: Order, filters: str, key: Key) -> str:
    """The opaque cursor of the rows after *key* in *order*, for the list *filters* names."""
    return _encode(order.name, filters, _encoded_key(key))


def decode_cursor(cursor: str, order: Order, filters: str) -> Key:
    """The key *cursor* holds; :class:`CursorError` unless it is ours, for *order* and *filters*."""
    values = _decode(cursor, order.name, filters)
    return _decode_values(values, order)


def _decode(cursor: str, name: str, filters: str) -> Any:
    """What *cursor* holds after its order's name and filters, which must be *name*, *filters*."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_as, made_for, values = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise CursorError("not a cursor this API made") from None
    if made_as != name or made_for != filters:
        raise CursorError(
            "this cursor was made for another sort or other filters; start again without it"
        )
    return values


def _encode(name: str, filters: str, values: Any) -> str:
    text = json.dumps([name, filters, values], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _encoded_key(key: Key) -> list[Any]:
    return [{_TIME: value.isoformat()} if isinstance(value, datetime) else value for value in key]


_LARGEST_INTEGER = 2**63 - 1


def _fits(value: Any, column: ColumnElement[Any], *, nullable: bool) -> bool:
    """Whether *value* can stand for *column* in a key: its type, in the database's range."""
    if value is None:
        return nullable
    expected = column.type.python_type
    if expected is int:
        return type(value) is int and abs(value) <= _LARGEST_INTEGER
    if expected is str:
        return isinstance(value, str) and "\x00" not in value  # PostgreSQL refuses NUL
    return isinstance(value, expected)


def _decode_values(values: Any, order: Order) -> Key:
    """The key *values* (as a cursor's JSON holds them) stand for in *order*, checked."""
    if not isinstance(values, list):
        raise CursorError("not a cursor this API made")
    try:
        key = tuple(_value(value) for value in values)
    except (ValueError, TypeError, KeyError):
        raise CursorError("not a cursor this API made") from None
    if len(key) != len(order.columns) or not all(
        _fits(value, column, nullable=order.nullable and position == 0)
        for position, (value, column) in enumerate(zip(key, order.columns, strict=True))
    ):
        raise CursorError("not a cursor this API made")
    return key


def _value(value: Any) -> Any:
    if isinstance(value, dict):
        moment = datetime.fromisoformat(value[_TIME])
        if moment.tzinfo is None:
            raise ValueError("naive time")
        return moment
    if value is None or isinstance(value, (str, int)):
        return value
    raise TypeError("unexpected value")


def _rows_after(
    connection: Connection, base: Select[Any], order: Order, after: Key | None, wanted: int
) -> list[RowMapping]:
    """At most *wanted* rows of *base* after *after* in *order*."""
    rows: list[RowMapping] = []
    for query in order.queries(base, after):
        rows.extend(connection.execute(query.limit(wanted - len(rows))).mappings().all())
        if len(rows) >= wanted:
            break
    return rows


def read_page(
    database: Database,
    base: Select[Any],
    order: Order,
    *,
    after: Key | None,
    limit: int,
    filters: str,
) -> Page:
    """The *limit* rows of *base* after *after* in *order*, read in one transaction."""
    with database.read() as connection:
        rows = _rows_after(connection, base, order, after, limit + 1)
    if len(rows) <= limit:
        return Page(rows, None)
    del rows[limit:]
    return Page(rows, encode_cursor(order, filters, order.key_of(rows[-1])))


def stream_rows(
    database: Database,
    base: Select[Any],
    order: Order,
    *,
    batch: int = 1000,
    limit: int | None = None,
    filters: str = "",
) -> Iterator[RowMapping]:
    """Every row of *base* in *order* (at most *limit*), a page of *batch* at a time.

    Each page is its own short read, so that a reader holds no snapshot (SQLite's WAL, a
    PostgreSQL transaction) while its consumer writes out what it has; memory holds one page.
    """
    after: Key | None = None
    left = limit
    while left is None or left > 0:
        size = batch if left is None else min(batch, left)
        page = read_page(database, base, order, after=after, limit=size, filters=filters)
        yield from page.rows
        if left is not None:
            left -= len(page.rows)
        if page.next_cursor is None:
            return
        after = order.key_of(page.rows[-1])


def page_after(
    database: Database,
    base: Select[Any],
    order: Order,
    described: Any,
    *,
    limit: int,
    cursor: str | None,
) -> Page:
    """The page of *base* after *cursor* (None: the first), for the filters *described*.

    *described* is what a cursor is bound to (JSON-able): a cursor made for other filters
    raises :class:`CursorError`.
    """
    filters = fingerprint(described)
    after = None if cursor is None else decode_cursor(cursor, order, filters)
    return read_page(database, base, order, after=after, limit=limit, filters=filters)


# --- lists merged from parts -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a merged list: its rows, and the order (its own columns) they page in."""

    name: str  # the part's name in the cursor
    base: Select[Any]
    order: Order


@dataclass(frozen=True, slots=True)
class Merged:
    """A list merged from *parts*, sorted by *sort_key* of a row (the same for every part).

    *name* is the list's sort as a cursor names it; *descending* says that *sort_key* runs
    from the greatest. Each part's order must agree with *sort_key* on its own rows.
    """

    name: str
    parts: Sequence[Part]
    sort_key: Callable[[RowMapping], Any]
    descending: bool = False

    def page(self, database: Database, described: Any, *, limit: int, cursor: str | None) -> Page:
        """The page after *cursor* (None: the first), for the filters *described*."""
        filters = fingerprint(described)
        after = self._positions(cursor, filters)
        return self._read(database, after, limit=limit, filters=filters)

    def stream(self, database: Database, *, batch: int = 1000) -> Iterator[RowMapping]:
        """Every row, a page of *batch* at a time, each page its own short read."""
        after: dict[str, Key | None] = {part.name: None for part in self.parts}
        while True:
            rows, after, more = self._merge(database, after, batch)
            yield from rows
            if not more:
                return

    def _positions(self, cursor: str | None, filters: str) -> dict[str, Key | None]:
        if cursor is None:
            return {part.name: None for part in self.parts}
        values = _decode(cursor, self.name, filters)
        if not isinstance(values, dict) or set(values) != {part.name for part in self.parts}:
            raise CursorError("not a cursor this API made")
        return {
            part.name: None
            if values[part.name] is None
            else _decode_values(values[part.name], part.order)
            for part in self.parts
        }

    def _read(
        self, database: Database, after: Mapping[str, Key | None], *, limit: int, filters: str
    ) -> Page:
        rows, positions, more = self._merge(database, after, limit)
        if not more:
            return Page(rows, None)
        values = {
            name: None if key is None else _encoded_key(key) for name, key in positions.items()
        }
        return Page(rows, _encode(self.name, filters, values))

    def _merge(
        self, database: Database, after: Mapping[str, Key | None], limit: int
    ) -> tuple[list[RowMapping], dict[str, Key | None], bool]:
        """The first *limit* rows after *after*, each part's new position, whether more follow.

        A page of each part is read in one transaction; their merge keeps each part's own
        order, so the rows taken from a part are the first of its page and its position
        moves to the last of them.
        """
        with database.read() as connection:
            fetched = [
                [
                    (self.sort_key(row), part, row)
                    for row in _rows_after(
                        connection, part.base, part.order, after[part.name], limit + 1
                    )
                ]
                for part in self.parts
            ]
        positions = dict(after)
        rows: list[RowMapping] = []
        for _, part, row in heapq.merge(
            *fetched, key=lambda entry: entry[0], reverse=self.descending
        ):
            if len(rows) == limit:
                return rows, positions, True
            rows.append(row)
            positions[part.name] = part.order.key_of(row)
        return rows, positions, False
