"""What the commands share: argument types, output on stdout, and opening the store.

A list is written as it is read (:func:`write_list`): a JSON array an item at a time, JSON
Lines, or a table whose column widths come from its first rows. None of them holds more than
one page of the list, however long it is.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from notifier import exitcodes
from notifier.config.settings import Settings
from notifier.core.durations import DurationError, parse_duration
from notifier.core.limits import MAX_LIFETIME_TEXT, duration_in_range
from notifier.runtime.logs import rfc3339

if TYPE_CHECKING:
    from notifier.runtime.compose import Components

Handler = Callable[[Settings, argparse.Namespace], int]
_LARGEST_INTEGER = 2**63 - 1  # SQLite's INTEGER and PostgreSQL's bigint
# A streamed table's column widths are those of its first rows: one page of the list.
TABLE_MEASURED_ROWS = 1000
Item = TypeVar("Item")


def duration_argument(text: str) -> timedelta:
    """A positive duration of at most 100 years (``72h``, ``30d``), for --ttl and friends."""
    value = _duration(text)
    if value <= timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than zero")
    return value


def non_negative_duration_argument(text: str) -> timedelta:
    """A duration that may be 0 (``--grace 0``), and at most 100 years."""
    value = _duration(text)
    if value < timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _duration(text: str) -> timedelta:
    try:
        value = parse_duration(text)
    except DurationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not duration_in_range(value):
        # Anything longer overflows the moment it is added to now (datetime ends at 9999).
        raise argparse.ArgumentTypeError(f"{text!r} is longer than {MAX_LIFETIME_TEXT}")
    return value


def aware_time_argument(text: str) -> datetime:
    """An ISO 8601 time that says its zone.

    How far away it may be depends on now, so the command checks that (``time_in_range``).
    """
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2027-01-31T12:00:00Z)"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no timezone; add Z or an offset such as +02:00"
        )
    return value


def positive_int_argument(text: str) -> int:
    """A whole number from 1 to the largest the database takes (``--limit``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= _LARGEST_INTEGER:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 1 and {_LARGEST_INTEGER}")
    return value


def label_argument(text: str) -> str:
    """A ``key=value`` label filter (``--label``), checked as the API checks ``label``."""
    from notifier.tokens.listing import label_filters  # noqa: PLC0415 - when given

    try:
        label_filters([text])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value") from None
    return text


def usage_error(args: argparse.Namespace, argument: str | None, message: str) -> int:
    """Refuse an argument the way argparse does, in one line on stderr; return exit code 2.

    For what only the command can check (against now, or the settings): the line reads as
    argparse's own, ``notifier tokens create: error: argument --ttl: ...``.
    """
    parser: argparse.ArgumentParser | None = getattr(args, "parser", None)
    prog = parser.prog if parser is not None else "notifier"
    named = f"argument {argument}: " if argument else ""
    sys.stderr.write(f"{prog}: error: {named}{message}\n")
    return exitcodes.USAGE


def print_json(value: BaseModel | Sequence[BaseModel] | Any) -> None:
    """Write *value* as indented JSON on stdout."""
    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    elif isinstance(value, list) and all(isinstance(item, BaseModel) for item in value):
        data = [item.model_dump(mode="json") for item in value]
    else:
        data = value
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _data(item: BaseModel | Any) -> Any:
    return item.model_dump(mode="json") if isinstance(item, BaseModel) else item


def write_json_array(items: Iterable[BaseModel | Any]) -> None:
    """Write *items* as one JSON array on stdout, an item at a time.

    The text is what :func:`print_json` writes for the whole list (``[]`` for none), so a
    reader sees one array either way. An item's own newlines are all indentation (JSON
    escapes those in strings), so indenting it one level is a replace.
    """
    write = sys.stdout.write
    opening = "[\n  "
    for item in items:
        write(opening + json.dumps(_data(item), indent=2, ensure_ascii=False).replace("\n", "\n  "))
        opening = ",\n  "
    write("[]\n" if opening == "[\n  " else "\n]\n")


def write_jsonl(items: Iterable[BaseModel | Any]) -> None:
    """Write *items* on stdout as JSON Lines: one compact object per line."""
    write = sys.stdout.write
    for item in items:
        write(json.dumps(_data(item), ensure_ascii=False, separators=(",", ":")) + "\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Write an aligned table on stdout, every column as wide as its widest cell."""
    write_table(headers, rows, measured=len(rows))


def write_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, measured: int = TABLE_MEASURED_ROWS
) -> None:
    """Write an aligned table on stdout as its rows come.

    A column is as wide as its header and its cells in the first *measured* rows: the table
    cannot wait for every row of a long list before it prints one. A longer cell further
    down is written whole, and pushes the rest of its line to the right.
    """
    remaining = iter(rows)
    first = list(itertools.islice(remaining, measured))
    widths = [len(header) for header in headers]
    for row in first:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    write = sys.stdout.write
    for line in itertools.chain([headers], first, remaining):
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        write("  ".join(cells).rstrip() + "\n")


def add_list_options(parser: argparse.ArgumentParser, *, what: str) -> None:
    """Add ``--limit``, ``--json`` and ``--jsonl`` to a list command of *what* (``tokens``)."""
    parser.add_argument(
        "--limit", type=positive_int_argument, metavar="N", help=f"at most N {what}"
    )
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print one JSON array")
    shape.add_argument(
        "--jsonl", action="store_true", help="print JSON Lines: one compact object per line"
    )


def write_list(
    args: argparse.Namespace,
    items: Iterable[Item],
    headers: Sequence[str],
    row: Callable[[Item], Sequence[str]],
) -> None:
    """Write *items* as ``--json`` or ``--jsonl`` ask, or as a table of *row* of each."""
    if args.json:
        write_json_array(items)
    elif args.jsonl:
        write_jsonl(items)
    else:
        write_table(headers, (row(item) for item in items))


def table_time(value: datetime | None, empty: str = "-") -> str:
    """A time for a table: RFC 3339 to the second."""
    return rfc3339(value.replace(microsecond=0)) if value is not None else empty


def fail(message: str) -> None:
    """Say what went wrong on stderr, for a human."""
    sys.stderr.write(f"notifier: {message}\n")


@contextmanager
def opened(settings: Settings) -> Iterator[Components]:
    """The parts, with the schema migrated; released on exit."""
    from notifier.db import migrate  # noqa: PLC0415
    from notifier.runtime.compose import build  # noqa: PLC0415 - keeps `notifier --help` light

    parts = build(settings)
    try:
        migrate.upgrade(parts.database)
        yield parts
    finally:
        parts.close()
