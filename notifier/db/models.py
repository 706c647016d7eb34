"""The tables: tokens and their audit trail, delivery state, UI notifications, shared facts.

Every time is stored in UTC: ``timestamp with time zone`` on PostgreSQL, and on SQLite a
fixed-width ISO text (``YYYY-MM-DD HH:MM:SS.ffffff``), which sorts and compares as time does.
Delivery state has no foreign key to ``tokens``: tokens from other sources live elsewhere.

The tables are SQLAlchemy Core ``Table`` objects, one class per table holding it as
``__table__`` (``Token.__table__``), with ``Base.metadata`` for Alembic. Nothing maps rows to
objects, so the ORM is not imported: it was a tenth of a short command's start-up (#13).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
    util,
)

_REMEMBERED_TIMES = 16_384
# A delivery state whose last notice was "expiring": an open loop (model.OPEN). Written as
# literal SQL wherever it is asked, so that the partial index on it applies.
OPEN_LOOP_SQL = (
    "last_kind = 'expiring'"  # distinct times whose SQLite text (or parse) is remembered
)


# The expression indexes migration 0005 builds for search, each database its own way (a
# prefix of lower(name), or of the id, compared byte by byte). Alembic cannot compare an
# expression index with a model, so its comparison leaves these out.
SEARCH_SCHEMA = ("ix_tokens_name_folded", "ix_tokens_id_prefix")


def is_modelled(name: str | None) -> bool:
    """Whether the table or index *name* is one of these models' (not search's own)."""
    return name is None or not name.startswith(SEARCH_SCHEMA)


class _SqliteTimeText(String):
    """Text, named DATETIME in SQLite's DDL: our times are stored as fixed-width ISO text."""

    __visit_name__ = "DATETIME"


@lru_cache(maxsize=_REMEMBERED_TIMES)
def sqlite_text(value: datetime) -> str:
    """The stored SQLite form of an aware time: ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC."""
    if value.tzinfo is not UTC:  # a parsed "Z" or "+00:00" is UTC itself, and needs no copy
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]  # without "+00:00"


@lru_cache(maxsize=_REMEMBERED_TIMES)
def _from_sqlite_text(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _to_sqlite(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return sqlite_text(value)


def _from_sqlite(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _from_sqlite_text(value)
    if isinstance(value, datetime):  # pragma: no cover - sqlite3 returns the stored text
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    raise TypeError(f"expected the stored text of a time, got {type(value)!r}")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend; naive values are refused.

    On SQLite the conversion to and from the stored text is done here in one step, and
    remembered per distinct time: a pass writes few distinct times (its ``now``, the expiries
    of its tokens), and SQLAlchemy's own two-step conversion cost more than the row's write.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        """What a value of this type is in Python (a keyset cursor checks its values by it)."""
        return datetime

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        """Text on SQLite, where this type converts; timestamptz elsewhere."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SqliteTimeText())
        return dialect.type_descriptor(DateTime(timezone=True))

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """On SQLite, one function from a time to its text; elsewhere TypeDecorator's way."""
        if dialect.name == "sqlite":
            return _to_sqlite
        return super().bind_processor(dialect)

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        """On SQLite, one function from the text to a time; elsewhere TypeDecorator's way.

        TypeDecorator's own wraps the column's processor and this type's method in two more
        calls per value: a pass reads and writes several times per row.
        """
        if dialect.name == "sqlite":
            return _from_sqlite
        return super().result_processor(dialect, coltype)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        """UTC; on SQLite, the stored text."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        if dialect.name == "sqlite":
            return sqlite_text(value)
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        if dialect.name == "sqlite" and isinstance(value, str):
            return _from_sqlite_text(value)
        if not isinstance(value, datetime):  # pragma: no cover - drivers return datetimes
            raise TypeError(f"expected a datetime from the database, got {type(value)!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class PartialIndex(Index):
    """An index of the rows *where* selects (SQL text), on SQLite and PostgreSQL alike.

    Written as ``postgresql_where=``, the condition makes SQLAlchemy import the PostgreSQL
    dialect when the table is defined, for every command on SQLite too (issue #13). Here a
    dialect's options for the index are made when that dialect first reads them (to compile
    CREATE INDEX, or for Alembic to compare or render it), and the condition goes in then.
    """

    def __init__(self, name: str, *columns: str, where: str) -> None:
        super().__init__(name, *columns)
        self.where_sql = where

    @util.memoized_property
    def dialect_options(self) -> util.PopulateDict[str, Any]:
        """Each dialect's options, made when it first asks; partial where it can be."""
        return util.PopulateDict(self._options_for)

    def _options_for(self, dialect: str) -> Any:
        options = self._kw_reg_for_dialect_cls(dialect)
        if dialect in _PARTIAL_INDEX_DIALECTS:
            options["where"] = text(self.where_sql)
        return options


_PARTIAL_INDEX_DIALECTS = frozenset({"sqlite", "postgresql"})


class Base:
    """What each table's class holds: its ``Table``, in the metadata Alembic compares with."""

    metadata: ClassVar[MetaData] = MetaData()
    __table__: ClassVar[Table]


class Token(Base):
    """A token the daemon issued or imported; only a hash of its secret is kept."""

    __table__ = Table(
        "tokens",
        Base.metadata,
        Column("id", String(64), primary_key=True),
        Column("name", String(200), nullable=False),
        Column("role", String(100)),
        Column("permissions", JSON, nullable=False, default=list),
        Column("owner", String(200)),
        Column("labels", JSON, nullable=False, default=dict),
        Column("description", Text),
        # None for a token imported without a hash: watched for expiry, never accepted.
        Column("secret_hash", String(64), unique=True),
        Column("created_at", UtcDateTime, nullable=False),
        Column("expires_at", UtcDateTime),
        Column("revoked_at", UtcDateTime),  # in the future while a rotation's grace runs
        Column("last_used_at", UtcDateTime),
        Column("rotated_from", String(64)),
        Column("superseded_by", String(64)),  # set by rotate
        # The pass walks a range of expires_at in keyset order (expires_at, id); the columns
        # it filters on ride along so the filter needs no table lookup.
        Index("ix_tokens_expiry_keyset", "expires_at", "id", "revoked_at", "superseded_by"),
        # A list pages in the order it sorts by, after the last row shown (migration 0005).
        Index("ix_tokens_name", "name", "id"),
        Index("ix_tokens_created", "created_at", "id"),
        Index("ix_tokens_owner", "owner", "expires_at", "id"),
        # Search has its own indexes, outside these models (SEARCH_SCHEMA).
    )


class AuditEvent(Base):
    """Who did what to which token, and when; kept after the token itself is deleted."""

    __table__ = Table(
        "audit_events",
        Base.metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("at", UtcDateTime, nullable=False),
        Column("actor", String(200), nullable=False),  # OS user (CLI) or token id (API)
        Column("action", String(32), nullable=False),
        Column("token_id", String(64)),
        Column("token_name", String(200)),
        Column("details", JSON),
        Index("ix_audit_events_at", "at"),
        Index("ix_audit_events_token", "token_id"),
    )


class DeliveryStateRow(Base):
    """What one sink has heard about one token, and who holds the claim to tell it."""

    __table__ = Table(
        "delivery_state",
        Base.metadata,
        Column("source", String(64), primary_key=True),
        Column("token_id", String(255), primary_key=True),
        Column("sink", String(64), primary_key=True),
        Column("expires_at", UtcDateTime),  # the expiry the facts below are about
        Column("next_due_at", UtcDateTime),  # earliest time this pair needs a look again
        Column("last_sent_at", UtcDateTime),  # pass time of the last successful notice
        Column("last_notice_id", String(64)),
        # The kind of the last notice recorded: "expiring" while the loop is open; "expired",
        # "renewed" or "resolved" once closed; "skipped" when the sink's route left it out.
        Column("last_kind", String(16)),
        Column("last_threshold_s", Integer),  # threshold of that notice
        Column("notices_sent", Integer, nullable=False, default=0),
        Column("attempts", Integer, nullable=False, default=0),  # failures since last success
        Column("last_attempt_at", UtcDateTime),
        Column("last_error", Text),
        Column("lease_owner", String(100)),
        Column("lease_until", UtcDateTime),  # set and compared with the database's clock
        # Bumped by every write: a replica writes only over the version it read.
        Column("version", Integer, nullable=False, default=0),
        # The pass reads a (token, sink) by its primary key, and no other index may look as
        # good to a planner without statistics (migration 0003). The one other index holds
        # a sink's open loops (last told "expiring") by expiry: those that left the window
        # by time are one range scan, and the walk over all of them follows it (migration
        # 0004, which also adds the triggers that count changes to tokens). Partial, so
        # only a query that says last_kind = 'expiring' can take it.
        PartialIndex("ix_delivery_state_open", "source", "sink", "expires_at", where=OPEN_LOOP_SQL),
        # The primary key is the main lookup path; SQLite then stores rows in it directly.
        sqlite_with_rowid=False,
    )


class Notification(Base):
    """The UI notification of one token: one row per token, upserted by every notice."""

    __table__ = Table(
        "notifications",
        Base.metadata,
        Column("id", String(32), primary_key=True),
        Column("source", String(64), nullable=False),
        Column("token_id", String(255), nullable=False),
        Column("token_name", String(200), nullable=False),
        Column("level", String(16), nullable=False),
        Column("kind", String(16), nullable=False),
        Column("message", Text, nullable=False),
        Column("hint", Text, nullable=False),
        Column("expires_at", UtcDateTime),
        Column("days_left", Integer),
        Column("first_seen", UtcDateTime, nullable=False),
        Column("last_seen", UtcDateTime, nullable=False),
        Column("occurrences", Integer, nullable=False, default=1),
        Column("acknowledged_at", UtcDateTime),
        Column("resolved_at", UtcDateTime),
        Index("ux_notifications_token", "source", "token_id", unique=True),
        # The live stream polls for rows seen, acknowledged or resolved since its cursor.
        Index("ix_notifications_last_seen", "last_seen"),
        Index("ix_notifications_acknowledged_at", "acknowledged_at"),
        Index("ix_notifications_resolved_at", "resolved_at"),
        Index("ix_notifications_expiry", "expires_at", "id"),  # the list's pages
    )


class Meta(Base):
    """Small facts the replicas share, such as the policy behind the stored due times."""

    __table__ = Table(
        "meta",
        Base.metadata,
        Column("key", String(64), primary_key=True),
        Column("value", Text, nullable=False),
    )


class Snooze(Base):
    """A token silenced, for every sink or one, until a time or the next threshold."""

    __table__ = Table(
        "snoozes",
        Base.metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("source", String(64), nullable=False),
        Column("token_id", String(255), nullable=False),
        Column("sink", String(64)),  # None: every sink
        Column("until", UtcDateTime),  # None: until the token enters a tighter threshold
        Column("threshold_s", Integer),  # the threshold when snoozed
        Column("created_at", UtcDateTime, nullable=False),
        Column("actor", String(200), nullable=False),
        Index("ix_snoozes_token", "source", "token_id"),
    )


class SinkLease(Base):
    """Which replica runs a digest sink in this pass, so a recipient gets one digest."""

    __table__ = Table(
        "sink_leases",
        Base.metadata,
        Column("sink", String(64), primary_key=True),
        Column("owner", String(100), nullable=False),
        Column("lease_until", UtcDateTime, nullable=False),  # set, compared on the DB clock
    )


class Credential(Base):
    """What a source other than the store found in its last pass: one row per credential.

    The store's own tokens are not copied here: a list of every watched credential reads
    them from ``tokens`` (notifier/credentials.py). Each pass brings a source's rows to what
    it read, writing only what changed, and the time of that read in ``meta``; a source that
    fails keeps its last rows and time.
    """

    __table__ = Table(
        "credentials",
        Base.metadata,
        Column("source", String(64), primary_key=True),
        Column("id", String(255), primary_key=True),
        Column("kind", String(16), nullable=False),  # CredentialKind
        Column("name", String(255), nullable=False),
        Column("owner", String(200)),
        Column("labels", JSON, nullable=False, default=dict),
        Column("created_at", UtcDateTime),
        Column("expires_at", UtcDateTime),  # None: never expires
        Column("first_seen", UtcDateTime, nullable=False),  # the pass that first found it
        # The list's pages, in each of its sorts.
        Index("ix_credentials_expiry", "expires_at", "source", "id"),
        Index("ix_credentials_name", "name", "source", "id"),
    )
