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

from notifier.durations import DurationError, parse_duration
from notifier.logs import rfc3339
from notifier.settings import Settings

if TYPE_CHECKING:
    from notifier.compose import Components

Handler = Callable[[Settings, argparse.Namespace], int]


def duration_argument(text: str) -> timedelta:
    """A positive duration (``72h``, ``30d``) as given to --ttl and friends."""
    try:
        value = parse_duration(text)
    except DurationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if value <= timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than zero")
    return value


def non_negative_duration_argument(text: str) -> timedelta:
    """A duration that may be 0 (``--grace 0``)."""
    try:
        value = parse_duration(text)
    except DurationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if value < timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def aware_time_argument(text: str) -> datetime:
    """An ISO 8601 time that says its zone."""
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
    from notifier.compose import build  # noqa: PLC0415 - keeps `notifier --help` light
    from notifier.db import migrate  # noqa: PLC0415

    parts = build(settings)
    try:
        migrate.upgrade(parts.database)
        yield parts
    finally:
        parts.close()
