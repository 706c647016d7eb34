"""Pruning: history older than ``NOTIFIER_RETENTION`` goes, at most once a day.

What goes: resolved or long-unseen UI notifications, delivery state of closed loops, audit
events, and expired snoozes. Open loops and leased rows stay, whatever their age.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, or_, select

from notifier.db.database import Database
from notifier.db.models import AuditEvent, Meta, Notification, Snooze
from notifier.delivery.ledger import history

EVERY = timedelta(days=1)
_KEY = "pruned_at"
_meta = Meta.__table__

log = structlog.get_logger("notifier.retention")


def prune_if_due(database: Database, now: datetime, retention: timedelta) -> dict[str, int] | None:
    """Prune once a day: the first pass after a day has passed does it; None when not due."""
    with database.read() as connection:
        last = connection.execute(select(_meta.c.value).where(_meta.c.key == _KEY)).scalar()
    if last is not None and datetime.fromisoformat(last) > now - EVERY:
        return None
    counts = prune(database, now, retention)
    with database.write() as connection:
        database.put(connection, _meta, key=_KEY, value=now.isoformat())
    if any(counts.values()):
        log.info("retention.pruned", retention=retention, **counts)
    return counts


def prune(database: Database, now: datetime, retention: timedelta) -> dict[str, int]:
    """Delete what is older than *retention*; return how many rows of each kind went."""
    cutoff = now - retention
    notifications = Notification.__table__
    events = AuditEvent.__table__
    snoozes = Snooze.__table__
    with database.write() as connection:
        return {
            "notifications": connection.execute(
                delete(notifications).where(
                    or_(notifications.c.resolved_at < cutoff, notifications.c.last_seen < cutoff)
                )
            ).rowcount,
            **history.prune(connection, cutoff),
            "audit_events": connection.execute(delete(events).where(events.c.at < cutoff)).rowcount,
            "snoozes": connection.execute(delete(snoozes).where(snoozes.c.until < now)).rowcount,
        }
