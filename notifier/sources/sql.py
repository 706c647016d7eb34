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

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

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
from sqlalchemy.exc import SQLAlchemyError

from notifier.core.model import WatchedToken
from notifier.core.policy import in_window
from notifier.db.external import read_only_engine
from notifier.sources import SourceError
from notifier.sources.config import SqlSourceConfig

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
