"""Reading token files for ``tokens import``: JSONL, CSV and ``api-keys.json``.

Every row is checked before anything is committed; the errors name the line and the field. The
shapes are documented in docs/tokens.md:

- **JSONL** (``.jsonl``, ``.ndjson``): one object per line, the fields ``tokens export``
  writes: id, name, role, permissions, owner, labels, description, created_at, expires_at,
  revoked_at, last_used_at, rotated_from, superseded_by, plus an optional secret_hash.
- **CSV** (``.csv``): a header row naming those fields; permissions separated by spaces or
  ``;``, labels as ``key=value;key=value``, ``never`` for no expiry, empty cells for nothing.
- **api-keys.json** (``.json``): ``{"keys": [...]}`` (or a bare array) of objects in the
  camelCase a web application writes: id, name, hash, role, permissions, owner, labels,
  description, createdAt, expiresAt, revokedAt, lastUsedAt.

``expires_at`` must be present in every row (``null`` or ``never`` for a token that does not
expire), so that a forgotten column cannot import tokens as immortal. Times lie between 1970
and 100 years from now (:mod:`notifier.core.limits`); an expiry may be past (the token is imported
as expired), but no further away than ``NOTIFIER_TOKEN_MAX_LIFETIME`` when that is set, and a
token that never expires is then refused.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from notifier.core.limits import EARLIEST_TIME, MAX_LIFETIME, MAX_LIFETIME_TEXT
from notifier.tokens.fields import (
    DESCRIPTION_MAX,
    OWNER_MAX,
    ROLE_MAX,
    TokenInputError,
    check_id,
    check_labels,
    check_name,
    check_permissions,
    check_text,
    lifetime_text,
)
from notifier.tokens.transfer import (
    MAX_ERRORS,
    RECORD_FIELDS,
    ImportDataError,
    ImportRecord,
    RowError,
)

__all__ = [
    "FORMATS",
    "ImportDataError",
    "RowError",
    "detect_format",
    "read_records",
    "read_rows",
]

FORMATS = ("jsonl", "csv", "api-keys")
_HASH = re.compile(r"(?:sha256:)?([0-9a-f]{64})")
_CAMEL = {
    "id": "id",
    "name": "name",
    "hash": "secret_hash",
    "role": "role",
    "permissions": "permissions",
    "owner": "owner",
    "labels": "labels",
    "description": "description",
    "createdAt": "created_at",
    "expiresAt": "expires_at",
    "revokedAt": "revoked_at",
    "lastUsedAt": "last_used_at",
}
_ALLOWED = frozenset({*RECORD_FIELDS, "secret_hash"})
_TIMES = ("created_at", "expires_at", "revoked_at", "last_used_at")


def detect_format(path: Path) -> str:
    """Guess the format from the file name."""
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix == ".json":
        return "api-keys"
    raise ValueError(
        f"cannot tell the format of {path.name!r} from its extension; use --format "
        f"({', '.join(FORMATS)})"
    )


def read_rows(
    stream: TextIO,
    file_format: str,
    *,
    now: datetime | None = None,
    max_lifetime: timedelta | None = None,
) -> Iterator[ImportRecord]:
    """Yield each good row of *stream*, checked; at the end, raise :class:`ImportDataError`.

    JSONL and CSV are read a line at a time (open the file with ``newline=""``), so memory
    does not grow with the file; an api-keys.json document is read whole. The error lists
    the bad rows, and reading stops after :data:`MAX_ERRORS` of them. Whether an id repeats
    is not asked here: the import finds repeats where it stages the rows, and
    :func:`read_records` in memory. Times are held to the limits around *now* (default: the
    wall clock), and expiries to *max_lifetime* (``NOTIFIER_TOKEN_MAX_LIFETIME``) when one is
    given.
    """
    limits = _Limits(now or datetime.now(UTC), max_lifetime)
    readers: dict[str, Callable[[TextIO], Iterator[tuple[int, Any]]]] = {
        "jsonl": _jsonl_rows,
        "csv": _csv_rows,
        "api-keys": _api_key_rows,
    }
    errors: list[RowError] = []
    try:
        for line, raw in readers[file_format](stream):
            if isinstance(raw, RowError):
                errors.append(raw)
            else:
                try:
                    values = _check_row(raw)
                    limits.check(values)
                except _FieldError as error:
                    errors.append(RowError(line, error.field, error.message))
                else:
                    yield ImportRecord(line=line, values=values)
            if len(errors) >= MAX_ERRORS:
                break
    except _FileShapeError as error:
        errors.append(RowError(error.line, None, error.message))
    if errors:
        raise ImportDataError(errors[:MAX_ERRORS])


def read_records(
    text: str,
    file_format: str,
    *,
    now: datetime | None = None,
    max_lifetime: timedelta | None = None,
) -> list[ImportRecord]:
    """Every row of *text*, checked as :func:`read_rows` checks it, and its id not repeated.

    For callers that hold the whole file anyway; ``tokens import`` streams through
    :func:`read_rows`. Raises :class:`ImportDataError` listing the bad rows.
    """
    records: list[ImportRecord] = []
    errors: list[RowError] = []
    try:
        records.extend(
            read_rows(
                io.StringIO(text, newline=""), file_format, now=now, max_lifetime=max_lifetime
            )
        )
    except ImportDataError as error:
        errors = error.errors
    first_line: dict[str, int] = {}
    for record in records:
        token_id = record.values["id"]
        if token_id in first_line:
            errors.append(
                RowError(record.line, "id", f"{token_id!r} repeats line {first_line[token_id]}")
            )
        else:
            first_line[token_id] = record.line
    if errors:
        raise ImportDataError(sorted(errors, key=lambda error: error.line)[:MAX_ERRORS])
    return records


@dataclass(frozen=True, slots=True)
class _Limits:
    """The range a row's times must lie in: the same limits as the CLI's and the API's."""

    now: datetime
    max_lifetime: timedelta | None
    latest: datetime = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "latest", self.now + MAX_LIFETIME)

    def check(self, values: dict[str, Any]) -> None:
        # Aware datetimes compare without converting to UTC, so a time whose offset takes it
        # past year 9999 is refused here rather than overflowing when it is stored.
        latest = self.latest
        for key in _TIMES:
            moment = values.get(key)
            if moment is None:
                continue
            if moment < EARLIEST_TIME:
                raise _FieldError(key, f"{moment.isoformat()} is before 1970")
            if moment > latest:
                raise _FieldError(
                    key, f"{moment.isoformat()} is more than {MAX_LIFETIME_TEXT} from now"
                )
        if self.max_lifetime is None:
            return
        expires_at = values["expires_at"]
        allowed = lifetime_text(self.max_lifetime)
        if expires_at is None:
            raise _FieldError(
                "expires_at",
                f"a token that never expires is refused; tokens live at most {allowed} "
                "(NOTIFIER_TOKEN_MAX_LIFETIME)",
            )
        if expires_at > self.now + self.max_lifetime:
            raise _FieldError(
                "expires_at",
                f"{expires_at.isoformat()} is more than {allowed} from now "
                "(NOTIFIER_TOKEN_MAX_LIFETIME)",
            )


class _FieldError(Exception):
    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class _FileShapeError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


# --- readers: (line, raw dict or RowError) ----------------------------------------------------


def _jsonl_rows(stream: TextIO) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(stream, start=1):
        if not line or line.isspace():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            yield number, RowError(number, None, f"not JSON: {error.msg}")
            continue
        if not isinstance(value, dict):
            yield number, RowError(number, None, "expected a JSON object")
            continue
        yield number, value


def _csv_rows(stream: TextIO) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(stream)
    if reader.fieldnames is None:
        raise _FileShapeError(1, "empty CSV file: expected a header row")
    unknown = [name for name in reader.fieldnames if name not in _ALLOWED]
    if unknown:
        raise _FileShapeError(1, f"unknown column(s) {', '.join(unknown)}")
    for name in ("id", "name", "expires_at"):
        if name not in reader.fieldnames:
            raise _FileShapeError(1, f"missing column {name}")
    for row in reader:
        line = reader.line_num
        if None in row:
            yield line, RowError(line, None, "more cells than header columns")
            continue
        yield line, _from_csv(row)


def _from_csv(row: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, cell in row.items():
        text = (cell or "").strip()
        if key == "permissions":
            values[key] = [part for part in re.split(r"[;\s]+", text) if part]
        elif key == "labels":
            values[key] = _csv_labels(text)
        elif key == "expires_at":
            values[key] = None if text.lower() == "never" else (text or _MISSING)
        else:
            values[key] = text or None
    return values


def _csv_labels(text: str) -> Any:
    labels: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in text.split(";"))):
        key, separator, value = pair.partition("=")
        if not separator:
            return _Bad(f"{pair!r} is not key=value")
        labels[key.strip()] = value.strip()
    return labels


def _api_key_rows(stream: TextIO) -> Iterator[tuple[int, Any]]:
    text = stream.read()  # one JSON document
    decoder = json.JSONDecoder()
    match = re.match(r'\s*\{\s*"keys"\s*:\s*\[|\s*\[', text)
    if match is None:
        raise _FileShapeError(1, 'expected {"keys": [...]} or a JSON array of keys')
    position = match.end()
    while True:
        position = _skip_space(text, position)
        if position >= len(text):
            raise _FileShapeError(_line_at(text, position), "the array is not closed")
        if text[position] == "]":
            return
        line = _line_at(text, position)
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            raise _FileShapeError(_line_at(text, error.pos), f"not JSON: {error.msg}") from None
        if not isinstance(value, dict):
            yield line, RowError(line, None, "expected a JSON object")
        else:
            unknown = sorted(key for key in value if key not in _CAMEL)
            if unknown:
                yield line, RowError(line, unknown[0], "unknown field")
            else:
                yield line, {_CAMEL[key]: item for key, item in value.items()}
        position = _skip_space(text, position)
        if position < len(text) and text[position] == ",":
            position += 1


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _line_at(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


# --- checking one row -------------------------------------------------------------------------


class _Missing:
    """The marker of a field given as an empty CSV cell where a value is required."""


class _Bad:
    """The marker of a CSV labels cell that is not ``key=value;...``, with why."""

    def __init__(self, message: str) -> None:
        self.message = message


_MISSING = _Missing()


def _check_row(raw: dict[str, Any]) -> dict[str, Any]:
    if not _ALLOWED.issuperset(raw):
        unknown = sorted(key for key in raw if key not in _ALLOWED)
        raise _FieldError(unknown[0], "unknown field")
    if "id" not in raw or raw["id"] in (None, ""):
        raise _FieldError("id", "is required")
    if "name" not in raw:
        raise _FieldError("name", "is required")
    if "expires_at" not in raw or isinstance(raw["expires_at"], _Missing):
        raise _FieldError("expires_at", "is required (null or 'never' for no expiry)")
    values: dict[str, Any] = {}
    key = ""
    try:
        for key, value in raw.items():
            values[key] = _CHECKS[key](value)
    except TokenInputError as error:
        raise _FieldError(key, str(error).split(": ", 1)[-1]) from None
    if "created_at" in values and values["created_at"] is None:
        # Every token has a creation time: none given (null, an empty CSV cell) is the same as
        # the field left out, the import's time for a new token and the stored one otherwise.
        del values["created_at"]
    return values


def _permissions(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TokenInputError("permissions: expected a list of strings")
    return list(check_permissions(value))


def _labels(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, _Bad):  # a CSV cell that did not split into pairs
        raise TokenInputError(f"x: {value.message}")
    if not isinstance(value, dict):
        raise TokenInputError("labels: expected an object of key: value")
    return check_labels(value)


def _secret_hash(value: Any) -> str | None:
    if value is None:
        return None
    match = _HASH.fullmatch(_text(value).lower())
    if match is None:
        raise TokenInputError("secret_hash: expected 64 hex characters (sha256:…)")
    return match.group(1)


# Each check is called once per field of every row of a file that may hold millions: they
# test the type inline rather than through _text.


def _id(value: Any) -> str:
    if not isinstance(value, str):
        raise TokenInputError("x: expected a string")
    return check_id(value)


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise TokenInputError("x: expected a string")
    return check_name(value)


def _optional_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TokenInputError("x: expected a string")
    return check_id(value)


def _optional_text(name: str, limit: int, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TokenInputError("x: expected a string")
    return check_text(name, value, limit)


def _optional_time(value: Any) -> datetime | None:
    return None if value is None else _time(value)


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "id": _id,
    "name": _name,
    "role": partial(_optional_text, "role", ROLE_MAX),
    "owner": partial(_optional_text, "owner", OWNER_MAX),
    "description": partial(_optional_text, "description", DESCRIPTION_MAX),
    "permissions": _permissions,
    "labels": _labels,
    "secret_hash": _secret_hash,
    "rotated_from": _optional_id,
    "superseded_by": _optional_id,
    **dict.fromkeys(_TIMES, _optional_time),
}


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TokenInputError("x: expected a string")
    return value


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise TokenInputError("x: expected an ISO 8601 time with a zone")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise TokenInputError(f"x: {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise TokenInputError(f"x: {value!r} has no timezone; add Z or an offset")
    return moment
