"""What each kind of token source is told, and the checks on it.

A source instance is named ``kind`` or ``kind:label`` (``store``, ``sql``, ``sql:billing``,
``file:partners``). Its options come from ``NOTIFIER_<KIND>[_<LABEL>]_<OPTION>`` variables
or from a ``[sources."kind:label"]`` table of the TOML file at ``NOTIFIER_CONFIG_FILE``;
settings.py gathers them (it alone reads the environment) and these functions check them.
Each refusal is an :class:`OptionError` naming the option, which settings.py turns into a
line naming the variable or the file key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

SOURCE_KINDS: dict[str, tuple[str, ...]] = {
    "store": (),
    "sql": ("url", "table", "schema", "columns", "timezone"),
    "file": ("path", "timezone"),
}
SECRET_OPTIONS = frozenset({"url"})  # may carry a password: _FILE and credentials apply
COLUMN_ROLES = ("id", "name", "expires_at", "revoked_at", "revoked", "owner", "created_at")
REQUIRED_COLUMNS = ("id", "name", "expires_at")
_NAME = re.compile(r"([a-z]+)(?::([a-z0-9][a-z0-9_-]{0,31}))?")
_IDENTIFIER_MAX = 128
_PORT_END = 65536  # one past the largest TCP port


class OptionError(ValueError):
    """An option of a source is missing or wrong."""

    def __init__(self, option: str | None, message: str) -> None:
        super().__init__(message)
        self.option = option
        self.message = message


@dataclass(frozen=True, slots=True)
class SqlSourceConfig:
    """A table in another database, read-only, with its columns mapped onto ours."""

    name: str
    url: URL
    table: str
    schema: str | None
    columns: Mapping[str, str]  # our role (id, name, expires_at, ...) -> their column
    timezone: ZoneInfo  # for naive timestamps


@dataclass(frozen=True, slots=True)
class FileSourceConfig:
    """A JSON, JSONL or YAML file of tokens, re-read on every pass."""

    name: str
    path: Path
    timezone: ZoneInfo


@dataclass(frozen=True, slots=True)
class StoreSourceConfig:
    """The daemon's own tokens table."""

    name: str = "store"
    options: Mapping[str, Any] = field(default_factory=dict)


SourceConfig = StoreSourceConfig | SqlSourceConfig | FileSourceConfig


def parse_source_name(name: str) -> tuple[str, str | None]:
    """Split ``kind[:label]`` and check the kind exists."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise OptionError(None, f"{name!r} is not a source name (kind or kind:label, lowercase)")
    kind, label = match.groups()
    if kind not in SOURCE_KINDS:
        raise OptionError(None, f"unknown source {kind!r} (known: {', '.join(SOURCE_KINDS)})")
    if kind == "store" and label is not None:
        raise OptionError(None, "the store source has no label: there is one store")
    return kind, label


def env_prefix(name: str) -> str:
    """``sql:billing`` -> ``NOTIFIER_SQL_BILLING_``."""
    kind, label = parse_source_name(name)
    parts = [kind] + ([label] if label else [])
    return "NOTIFIER_" + "_".join(part.upper().replace("-", "_") for part in parts) + "_"


def check_source(name: str, options: Mapping[str, Any]) -> SourceConfig:
    """Check the options of the source instance *name*."""
    kind, _ = parse_source_name(name)
    unknown = sorted(set(options) - set(SOURCE_KINDS[kind]))
    if unknown:
        raise OptionError(unknown[0], f"not an option of a {kind} source")
    if kind == "store":
        return StoreSourceConfig()
    timezone = _timezone(options.get("timezone"))
    if kind == "file":
        path = options.get("path")
        if not isinstance(path, str) or not path.strip():
            raise OptionError("path", "is required: the file of tokens to watch")
        return FileSourceConfig(name=name, path=Path(path.strip()), timezone=timezone)
    return SqlSourceConfig(
        name=name,
        url=_url(options.get("url")),
        table=_identifier("table", options.get("table"), required=True) or "",
        schema=_identifier("schema", options.get("schema"), required=False),
        columns=_columns(options.get("columns")),
        timezone=timezone,
    )


def _timezone(value: object) -> ZoneInfo:
    if value is None:
        return ZoneInfo("UTC")
    if not isinstance(value, str) or not value.strip():
        raise OptionError("timezone", "expected an IANA zone name such as UTC or Europe/Berlin")
    try:
        return ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise OptionError("timezone", f"unknown time zone {value!r}") from None


def _url(value: object) -> URL:
    if not isinstance(value, str) or not value.strip():
        raise OptionError("url", "is required: the SQLAlchemy URL of the database to read")
    # Messages never repeat the URL: it may carry a password.
    try:
        url = make_url(value.strip())
    except ArgumentError:
        raise OptionError("url", "not a database URL") from None
    except ValueError:  # SQLAlchemy's int() of the port
        raise OptionError(
            "url", "not a database URL: the port after the host must be a number"
        ) from None
    if url.port is not None and not 0 < url.port < _PORT_END:
        raise OptionError("url", f"port {url.port} is out of range (1-65535)")
    if url.drivername in {"postgres", "postgresql"}:
        url = url.set(drivername="postgresql+psycopg")
    elif url.drivername in {"mysql", "mariadb"}:
        url = url.set(drivername=f"{url.drivername}+pymysql")
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise OptionError("url", f"unknown database driver {url.drivername!r}") from None
    try:
        dialect.import_dbapi()
    except ImportError as error:
        extra = (
            " (pip install pymysql, in notifier's environment)"
            if url.get_backend_name() == "mysql"
            else ""
        )
        raise OptionError(
            "url", f"the driver for {url.drivername!r} is not installed: {error}{extra}"
        ) from None
    return url


def _identifier(option: str, value: object, *, required: bool) -> str | None:
    """A table or schema name: any text without NUL, quoted by SQLAlchemy when used."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise OptionError(option, "is required")
        return None
    if not isinstance(value, str) or "\x00" in value or len(value) > _IDENTIFIER_MAX:
        raise OptionError(option, f"{value!r} is not a table or column name")
    return value.strip()


def _columns(value: object) -> dict[str, str]:
    """The column mapping: ``id=key_id,name=label,...`` or a TOML table."""
    if isinstance(value, str):
        pairs: dict[str, object] = {}
        for part in filter(None, (piece.strip() for piece in value.split(","))):
            role, separator, column = part.partition("=")
            if not separator:
                raise OptionError("columns", f"{part!r} is not role=column")
            pairs[role.strip()] = column.strip()
        value = pairs
    if not isinstance(value, Mapping):
        raise OptionError("columns", "is required: role=column pairs (id, name, expires_at, ...)")
    columns: dict[str, str] = {}
    for role, column in value.items():
        if role not in COLUMN_ROLES:
            raise OptionError(
                "columns", f"unknown role {role!r} (known: {', '.join(COLUMN_ROLES)})"
            )
        checked = _identifier("columns", column, required=True)
        assert checked is not None  # noqa: S101 - required=True
        columns[str(role)] = checked
    missing = [role for role in REQUIRED_COLUMNS if role not in columns]
    if missing:
        raise OptionError("columns", f"no column mapped for {', '.join(missing)}")
    if "revoked" in columns and "revoked_at" in columns:
        raise OptionError("columns", "map revoked (a flag) or revoked_at (a time), not both")
    return columns
