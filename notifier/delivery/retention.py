"""Pruning: history older than ``NOTIFIER_RETENTION`` goes, at most once a day.

What goes: resolved or long-unseen UI notifications, delivery state of closed loops, audit
events, and expired snoozes. Open loops and leased rows stay, whatever their age.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy import and_, delete, func, or_, select

from notifier.db.database import Database, upsert
from notifier.db.models import AuditEvent, DeliveryStateRow, Meta, Notification, Snooze

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
    statement = upsert(database.dialect, _meta).values(key=_KEY, value=now.isoformat())
    with database.write() as connection:
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=[_meta.c.key], set_={"value": statement.excluded.value}
            )
        )
    if any(counts.values()):
        log.info("retention.pruned", retention=retention, **counts)
    return counts


def prune(database: Database, now: datetime, retention: timedelta) -> dict[str, int]:
    """Delete what is older than *retention*; return how many rows of each kind went."""
    cutoff = now - retention
    notifications = Notification.__table__
    state = DeliveryStateRow.__table__
    events = AuditEvent.__table__
    snoozes = Snooze.__table__
    last_touched = func.coalesce(state.c.last_attempt_at, state.c.last_sent_at)
    statements = {
        "notifications": delete(notifications).where(
            or_(notifications.c.resolved_at < cutoff, notifications.c.last_seen < cutoff)
        ),
        "delivery_state": delete(state).where(
            and_(
                state.c.next_due_at.is_(None),
                state.c.lease_owner.is_(None),
                last_touched < cutoff,
            )
        ),
        "audit_events": delete(events).where(events.c.at < cutoff),
        "snoozes": delete(snoozes).where(snoozes.c.until < now),
    }
    counts: dict[str, int] = {}
    with database.write() as connection:
        for name, statement in statements.items():
            counts[name] = connection.execute(statement).rowcount
    return counts
