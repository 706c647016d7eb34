"""The tables: tokens and their audit trail, delivery state, UI notifications, shared facts.

Every time is stored in UTC: ``timestamp with time zone`` on PostgreSQL, and on SQLite a
fixed-width ISO text (``YYYY-MM-DD HH:MM:SS.ffffff``), which sorts and compares as time does.
Delivery state has no foreign key to ``tokens``: tokens from other sources live elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

_REMEMBERED_TIMES = 16_384
# A delivery state whose last notice was "expiring": an open loop (model.OPEN). Written as
# literal SQL wherever it is asked, so that the partial index on it applies.
OPEN_LOOP_SQL = (
    "last_kind = 'expiring'"  # distinct times whose SQLite text (or parse) is remembered
)


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


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend; naive values are refused.

    On SQLite the conversion to and from the stored text is done here in one step, and
    remembered per distinct time: a pass writes few distinct times (its ``now``, the expiries
    of its tokens), and SQLAlchemy's own two-step conversion cost more than the row's write.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        """Text on SQLite, where this type converts; timestamptz elsewhere."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SqliteTimeText())
        return dialect.type_descriptor(DateTime(timezone=True))

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        """:meth:`process_bind_param` as one function for SQLite: an import binds millions."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            return sqlite_text(value)

        return process

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


class Base(DeclarativeBase):
    """The declarative base of notifier's tables."""

    __table__: ClassVar[Table]  # every model here maps one plain table

    type_annotation_map = {datetime: UtcDateTime}  # noqa: RUF012 - SQLAlchemy reads a class dict


class Token(Base):
    """A token the daemon issued or imported; only a hash of its secret is kept."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str | None] = mapped_column(String(100))
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
    owner: Mapped[str | None] = mapped_column(String(200))
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    description: Mapped[str | None] = mapped_column(Text)
    # None for a token imported without a hash: watched for expiry, never accepted.
    secret_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]  # in the future while a rotation's grace runs
    last_used_at: Mapped[datetime | None]
    rotated_from: Mapped[str | None] = mapped_column(String(64))
    superseded_by: Mapped[str | None] = mapped_column(String(64))  # set by rotate

    __table_args__ = (
        # The pass walks a range of expires_at in keyset order (expires_at, id); the columns
        # it filters on ride along so the filter needs no table lookup.
        Index("ix_tokens_expiry_keyset", "expires_at", "id", "revoked_at", "superseded_by"),
    )


class AuditEvent(Base):
    """Who did what to which token, and when; kept after the token itself is deleted."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))  # OS user (CLI) or token id (API)
    action: Mapped[str] = mapped_column(String(32))
    token_id: Mapped[str | None] = mapped_column(String(64))
    token_name: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_audit_events_at", "at"),
        Index("ix_audit_events_token", "token_id"),
    )


class DeliveryStateRow(Base):
    """What one sink has heard about one token, and who holds the claim to tell it."""

    __tablename__ = "delivery_state"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    sink: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime | None]  # the expiry the facts below are about
    next_due_at: Mapped[datetime | None]  # earliest time this pair needs a look again
    last_sent_at: Mapped[datetime | None]  # pass time of the last successful notice
    last_notice_id: Mapped[str | None] = mapped_column(String(64))
    # The kind of the last notice recorded: "expiring" while the loop is open; "expired",
    # "renewed" or "resolved" once closed; "skipped" when the sink's route left it out.
    last_kind: Mapped[str | None] = mapped_column(String(16))
    last_threshold_s: Mapped[int | None] = mapped_column(Integer)  # threshold of that notice
    notices_sent: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failures since last success
    last_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None]  # set and compared with the database's clock
    # Bumped by every write: a replica writes only over the version it read.
    version: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        # The pass reads a (token, sink) by its primary key, and no other index may look as
        # good to a planner without statistics (migration 0003). The one other index holds
        # a sink's open loops (last told "expiring"), in token order for the closing
        # query's keyset walk; partial, so only a query that says last_kind = 'expiring'
        # can take it.
        Index(
            "ix_delivery_state_open",
            "source",
            "sink",
            "token_id",
            sqlite_where=text(OPEN_LOOP_SQL),
            postgresql_where=text(OPEN_LOOP_SQL),
        ),
        # The primary key is the main lookup path; SQLite then stores rows in it directly.
        {"sqlite_with_rowid": False},
    )


class Notification(Base):
    """The UI notification of one token: one row per token, upserted by every notice."""

    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    token_id: Mapped[str] = mapped_column(String(255))
    token_name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    hint: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime | None]
    days_left: Mapped[int | None]
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    acknowledged_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ux_notifications_token", "source", "token_id", unique=True),
        # The live stream polls for rows seen, acknowledged or resolved since its cursor.
        Index("ix_notifications_last_seen", "last_seen"),
        Index("ix_notifications_acknowledged_at", "acknowledged_at"),
        Index("ix_notifications_resolved_at", "resolved_at"),
    )


class Meta(Base):
    """Small facts the replicas share, such as the policy behind the stored due times."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Snooze(Base):
    """A token silenced, for every sink or one, until a time or the next threshold."""

    __tablename__ = "snoozes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    token_id: Mapped[str] = mapped_column(String(255))
    sink: Mapped[str | None] = mapped_column(String(64))  # None: every sink
    until: Mapped[datetime | None]  # None: until the token enters a tighter threshold
    threshold_s: Mapped[int | None] = mapped_column(Integer)  # the threshold when snoozed
    created_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))

    __table_args__ = (Index("ix_snoozes_token", "source", "token_id"),)


class SinkLease(Base):
    """Which replica runs a digest sink in this pass, so a recipient gets one digest."""

    __tablename__ = "sink_leases"

    sink: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(100))
    lease_until: Mapped[datetime]  # set and compared with the database's clock
