"""Reading the UI notifications the ``ui`` sink keeps."""

from __future__ import annotations

from sqlalchemy import select

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
    return [
        NotificationResource(
            **dict(row._mapping),  # noqa: SLF001 - SQLAlchemy's public row mapping
            active=row.resolved_at is None and row.acknowledged_at is None,
        )
        for row in rows
    ]
