"""Reading the UI notifications the ``ui`` sink keeps."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import CompoundSelect, RowMapping, Select, and_, func, not_, select, union, update

from notifier import audit
from notifier.db.database import Database
from notifier.db.keyset import Order, page_after, stream_rows
from notifier.db.models import Notification
from notifier.resources import NotificationResource

_notifications = Notification.__table__


# Most urgent first: soonest expiry (those that never expire last), then by id.
NOTIFICATION_ORDER = Order(
    "expires_at", (_notifications.c.expires_at, _notifications.c.id), nullable=True
)


def _listed(active: bool | None) -> Select[Any]:
    """Notifications: every one (None), active ones only (True), or only the others."""
    query = select(_notifications)
    if active is None:
        return query
    is_active = and_(
        _notifications.c.resolved_at.is_(None), _notifications.c.acknowledged_at.is_(None)
    )
    return query.where(is_active if active else not_(is_active))


def page_notifications(
    database: Database, *, active: bool | None = None, limit: int = 100, cursor: str | None = None
) -> tuple[list[NotificationResource], str | None]:
    """One page of notifications, most urgent first, and the next page's cursor."""
    page = page_after(
        database,
        _listed(active),
        NOTIFICATION_ORDER,
        {"active": active},
        limit=limit,
        cursor=cursor,
    )
    return [_resource(row) for row in page.rows], page.next_cursor


def stream_notifications(
    database: Database, *, active: bool | None = None, limit: int | None = None
) -> Iterator[NotificationResource]:
    """Every notification (at most *limit*), most urgent first, read a page at a time."""
    for row in stream_rows(database, _listed(active), NOTIFICATION_ORDER, limit=limit):
        yield _resource(row)


def list_notifications(
    database: Database, *, include_inactive: bool = False
) -> list[NotificationResource]:
    """Notifications, most urgent first; active ones only unless asked (small lists)."""
    return list(stream_notifications(database, active=None if include_inactive else True))


def _resource(row: RowMapping) -> NotificationResource:
    return NotificationResource(
        **row, active=row["resolved_at"] is None and row["acknowledged_at"] is None
    )


def changed_since(database: Database, since: datetime) -> list[NotificationResource]:
    """Notifications seen, acknowledged or resolved at or after *since*, oldest change first.

    The live stream polls this; the times are those the writers stamped, so the caller looks
    back a little to catch a row committed after a later-stamped one.
    """
    with database.read() as connection:
        rows = connection.execute(changed_since_query(since)).mappings().all()
    return sorted((_resource(row) for row in rows), key=lambda n: (n.last_seen, n.id))


def changed_since_query(since: datetime) -> CompoundSelect[Any]:
    """The query of :func:`changed_since`: one index range scan per time, then UNION.

    Each time has an index; written as one WHERE with OR, SQLite's planner (no statistics)
    prefers a table scan to three one-sided ranges, on every poll of every open page.
    """
    table = _notifications.c
    return union(
        *(
            select(_notifications).where(column >= since)
            for column in (table.last_seen, table.acknowledged_at, table.resolved_at)
        )
    )


def latest_change(database: Database) -> datetime | None:
    """The latest time any notification was seen, acknowledged or resolved; None when none."""
    table = _notifications.c
    query = select(
        func.max(table.last_seen), func.max(table.acknowledged_at), func.max(table.resolved_at)
    )
    with database.read() as connection:
        row = connection.execute(query).one()
    # MAX() keeps the column's type, so each is an aware UTC datetime (or None).
    return max((stamp for stamp in row if stamp is not None), default=None)


class NotificationNotFoundError(LookupError):
    """No notification has the given id."""


def get_notification(database: Database, notification_id: str) -> NotificationResource:
    """One notification, or raise :class:`NotificationNotFoundError`."""
    with database.read() as connection:
        row = (
            connection.execute(select(_notifications).where(_notifications.c.id == notification_id))
            .mappings()
            .first()
        )
    if row is None:
        raise NotificationNotFoundError(f"no notification with id {notification_id!r}")
    return _resource(row)


def acknowledge(
    database: Database, notification_id: str, *, now: datetime, actor: str
) -> NotificationResource:
    """Hide a notification until the next notice for its token; audited."""
    with database.write() as connection:
        row = (
            connection.execute(select(_notifications).where(_notifications.c.id == notification_id))
            .mappings()
            .first()
        )
        if row is None:
            raise NotificationNotFoundError(f"no notification with id {notification_id!r}")
        if row.acknowledged_at is None:
            connection.execute(
                update(_notifications)
                .where(_notifications.c.id == notification_id)
                .values(acknowledged_at=now)
            )
            details = {"notification_id": notification_id, "source": row.source}
            audit.Change(connection, now, actor).audit("ack", row.token_id, row.token_name, details)
    return get_notification(database, notification_id)
