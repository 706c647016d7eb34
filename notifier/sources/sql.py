"""The ``sql`` source: a table of tokens in another database, read-only.

Identifiers (schema, table, columns) come from configuration, so they are never spliced into
SQL text: they become SQLAlchemy ``table()``/``column()`` objects that the dialect quotes.
The connection is set read-only where the database allows it, and only SELECTs are issued.

Timestamps may be timezone-aware (converted to UTC), naive (read in the configured zone,
UTC by default), ISO 8601 text, or epoch seconds. The query asks for a window one day wider
than needed on each side, in the column's own terms, so that it can use an index whatever
the storage; the exact window is then applied to the converted times.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    Integer,
    Numeric,
    String,
    column,
    inspect,
    select,
    table,
    tuple_,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from notifier.config.options import KindOptions, OptionError, option_timezone
from notifier.core.model import WatchedToken
from notifier.core.policy import in_window
from notifier.db.external import read_only_engine
from notifier.db.urls import external_database_url
from notifier.sources import SourceError

# The options of a sql source; the URL may carry a password (_FILE and credentials apply).
OPTIONS = KindOptions(("url", "table", "schema", "columns", "timezone"), secrets=frozenset({"url"}))
COLUMN_ROLES = ("id", "name", "expires_at", "revoked_at", "revoked", "owner", "created_at")
REQUIRED_COLUMNS = ("id", "name", "expires_at")
_IDENTIFIER_MAX = 128
_PORT_END = 65536  # one past the largest TCP port


@dataclass(frozen=True, slots=True)
class SqlSourceConfig:
    """A table in another database, read-only, with its columns mapped onto ours."""

    name: str
    url: URL
    table: str
    schema: str | None
    columns: Mapping[str, str]  # our role (id, name, expires_at, ...) -> their column
    timezone: ZoneInfo  # for naive timestamps


def check_options(name: str, options: Mapping[str, Any]) -> SqlSourceConfig:
    """Check the options of the sql source *name*."""
    timezone = option_timezone(options.get("timezone"))
    return SqlSourceConfig(
        name=name,
        url=_url(options.get("url")),
        table=_identifier("table", options.get("table"), required=True) or "",
        schema=_identifier("schema", options.get("schema"), required=False),
        columns=_columns(options.get("columns")),
        timezone=timezone,
    )


def _url(value: object) -> URL:
    if not isinstance(value, str) or not value.strip():
        raise OptionError("url", "is required: the SQLAlchemy URL of the database to read")
    try:
        return external_database_url(value.strip())
    except ValueError as error:
        raise OptionError("url", str(error)) from None


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


_WIDEN = timedelta(days=1)
_FETCH = 1000

log = structlog.get_logger("notifier.sources")


class SqlSource:
    """Tokens from a table in another database."""

    def __init__(self, config: SqlSourceConfig) -> None:
        self.name = config.name
        self._config = config
        self._engine: Engine | None = None
        # how each mapped column stores its value: "datetime", "aware", "number" or "text"
        self._kinds: dict[str, str] | None = None

    def window(self, now: datetime, horizon: timedelta, lookback: timedelta) -> list[WatchedToken]:
        """Read the tokens in the window; raise :class:`SourceError` if the table cannot."""
        with _as_source_error():
            return self._read(now, horizon, lookback)

    def by_ids(self, token_ids: Sequence[str]) -> dict[str, WatchedToken]:
        """The tokens with these ids, wherever they expire (to close loops about them)."""
        columns = self._config.columns
        source_table = self._table()
        found: dict[str, WatchedToken] = {}
        with _as_source_error(), self._engine_for().connect() as connection:
            self._column_kinds(connection)
            identifier = source_table.c[columns["id"]]
            query = select(*(source_table.c[name].label(role) for role, name in columns.items()))
            for start in range(0, len(token_ids), _FETCH):
                chunk = token_ids[start : start + _FETCH]
                for row in connection.execute(query.where(identifier.in_(chunk))).mappings():
                    token = self._token(row)
                    found[token.token_id] = token
        return found

    def close(self) -> None:
        """Close the pool."""
        if self._engine is not None:
            self._engine.dispose()

    # --- reading ------------------------------------------------------------------------------

    def _engine_for(self) -> Engine:
        if self._engine is None:
            self._engine = read_only_engine(self._config.url)
        return self._engine

    def _table(self) -> Any:
        return table(
            self._config.table,
            *(column(name) for name in self._config.columns.values()),
            schema=self._config.schema,
        )

    def _read(self, now: datetime, horizon: timedelta, lookback: timedelta) -> list[WatchedToken]:
        columns = self._config.columns
        source_table = self._table()
        with self._engine_for().connect() as connection:
            kinds = self._column_kinds(connection)
            expires = source_table.c[columns["expires_at"]]
            identifier = source_table.c[columns["id"]]
            low = self._bound(now - lookback - _WIDEN, kinds["expires_at"])
            high = self._bound(now + horizon + _WIDEN, kinds["expires_at"])
            query = (
                select(*(source_table.c[name].label(role) for role, name in columns.items()))
                .where(expires > low, expires <= high)
                .order_by(expires, identifier)
                .limit(_FETCH)
            )
            tokens: list[WatchedToken] = []
            after: tuple[Any, Any] | None = None
            while True:
                page = query if after is None else query.where(tuple_(expires, identifier) > after)
                rows = connection.execute(page).mappings().all()
                for row in rows:
                    token = self._token(row)
                    if in_window(token, now, horizon, lookback):
                        tokens.append(token)
                if len(rows) < _FETCH:
                    return tokens
                after = (rows[-1]["expires_at"], rows[-1]["id"])

    def _column_kinds(self, connection: Connection) -> dict[str, str]:
        """Check the mapped columns exist, and learn how each time column is stored."""
        if self._kinds is not None:
            return self._kinds
        inspector = inspect(connection)
        if not inspector.has_table(self._config.table, schema=self._config.schema):
            where = self._config.table
            if self._config.schema:
                where = f"{self._config.schema}.{where}"
            raise SourceError(f"table {where!r} does not exist")
        described = {
            info["name"]: info["type"]
            for info in inspector.get_columns(self._config.table, schema=self._config.schema)
        }
        kinds: dict[str, str] = {}
        for role, name in self._config.columns.items():
            if name not in described:
                raise SourceError(
                    f"column {name!r} (mapped as {role}) is not in table "
                    f"{self._config.table!r}; it has: {', '.join(sorted(described))}"
                )
            kinds[role] = _kind(described[name])
        self._kinds = kinds
        return kinds

    def _bound(self, moment: datetime, kind: str) -> Any:
        """*moment* in the terms of the column it is compared with."""
        if kind == "aware":
            return moment
        if kind == "number":
            return int(moment.timestamp())
        local = moment.astimezone(self._config.timezone).replace(tzinfo=None)
        if kind == "text":
            return local.strftime("%Y-%m-%d %H:%M:%S")
        return local

    def _token(self, row: Any) -> WatchedToken:
        revoked_at = self._time(row.get("revoked_at"), "revoked_at")
        if row.get("revoked"):
            revoked_at = datetime.min.replace(tzinfo=UTC)
        token_id = row["id"]
        return WatchedToken(
            source=self.name,
            token_id=str(token_id),
            name=str(row["name"]) if row["name"] is not None else str(token_id),
            expires_at=self._time(row["expires_at"], "expires_at"),
            revoked_at=revoked_at,
            owner=str(row["owner"]) if row.get("owner") is not None else None,
            created_at=self._time(row.get("created_at"), "created_at"),
        )

    def _time(self, value: Any, role: str) -> datetime | None:
        """A stored time as aware UTC: naive ones are read in the configured zone."""
        if value is None:
            return None
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, tz=UTC)
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError:
                raise ValueError(f"{role}: {value!r} is not a time") from None
        if not isinstance(value, datetime):
            raise TypeError(f"{role}: {type(value).__name__} is not a time")
        moment: datetime = value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self._config.timezone)
        return moment.astimezone(UTC)


@contextmanager
def _as_source_error() -> Iterator[None]:
    """Turn what reading another system can raise into a SourceError with a short reason."""
    try:
        yield
    except SourceError:
        raise
    except SQLAlchemyError as error:
        original = getattr(error, "orig", None)
        reason = str(original or error).strip().splitlines()
        raise SourceError(reason[0] if reason else type(error).__name__) from None
    except (ValueError, TypeError) as error:
        raise SourceError(str(error)) from None


def _kind(column_type: Any) -> str:
    if isinstance(column_type, DateTime):
        return "aware" if column_type.timezone else "datetime"
    if isinstance(column_type, (Integer, Numeric)):
        return "number"
    if isinstance(column_type, String):
        return "text"
    return "datetime"
