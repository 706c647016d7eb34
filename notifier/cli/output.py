"""What the commands share: argument types, output on stdout, and opening the store."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

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


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Write an aligned table on stdout."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    for line in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        sys.stdout.write("  ".join(cells).rstrip() + "\n")


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
