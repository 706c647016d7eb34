"""Reading the UI notifications the ``ui`` sink keeps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CompoundSelect, Row, func, select, union, update

from notifier import audit
from notifier.db.database import Database
from notifier.db.models import Notification
from notifier.resources import NotificationResource

_notifications = Notification.__table__


def list_notifications(
    database: Database, *, include_inactive: bool = False
) -> list[NotificationResource]:
    """Return notifications, most urgent first; active ones only unless asked."""
    query = select(_notifications).order_by(
        _notifications.c.expires_at, _notifications.c.token_name, _notifications.c.id
    )
    if not include_inactive:
        query = query.where(
            _notifications.c.resolved_at.is_(None), _notifications.c.acknowledged_at.is_(None)
        )
    with database.read() as connection:
        rows = connection.execute(query).all()
    return [_resource(row) for row in rows]


def _resource(row: Row[*tuple[Any, ...]]) -> NotificationResource:
    return NotificationResource(
        **dict(row._mapping),  # noqa: SLF001 - SQLAlchemy's public row mapping
        active=row.resolved_at is None and row.acknowledged_at is None,
    )


def changed_since(database: Database, since: datetime) -> list[NotificationResource]:
    """Notifications seen, acknowledged or resolved at or after *since*, oldest change first.

    The live stream polls this; the times are those the writers stamped, so the caller looks
    back a little to catch a row committed after a later-stamped one.
    """
    with database.read() as connection:
        rows = connection.execute(changed_since_query(since)).all()
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
        row = connection.execute(
            select(_notifications).where(_notifications.c.id == notification_id)
        ).first()
    if row is None:
        raise NotificationNotFoundError(f"no notification with id {notification_id!r}")
    return _resource(row)


def acknowledge(
    database: Database, notification_id: str, *, now: datetime, actor: str
) -> NotificationResource:
    """Hide a notification until the next notice for its token; audited."""
    with database.write() as connection:
        row = connection.execute(
            select(_notifications).where(_notifications.c.id == notification_id)
        ).first()
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
