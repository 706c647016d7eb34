"""Snoozes: silence a token's notices, for every sink or one, until a time or a threshold.

Each snooze and its removal is written to the audit trail.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update

from notifier import audit
from notifier.db.database import Database
from notifier.db.models import DeliveryStateRow, Snooze
from notifier.resources import SnoozeResource

_snoozes = Snooze.__table__
_state = DeliveryStateRow.__table__
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # due at once


def snooze(
    database: Database,
    *,
    source: str,
    token_id: str,
    token_name: str | None,
    sink: str | None,
    until: datetime | None,
    threshold: timedelta | None,
    now: datetime,
    actor: str,
) -> SnoozeResource:
    """Record a snooze: until *until*, or (when None) until a threshold tighter than *threshold*."""
    if until is None and threshold is None:
        raise ValueError("a snooze needs an end: a time, or the threshold the token is in")
    with database.write() as connection:
        snooze_id = connection.execute(
            _snoozes.insert()
            .values(
                source=source,
                token_id=token_id,
                sink=sink,
                until=until,
                threshold_s=int(threshold.total_seconds()) if threshold is not None else None,
                created_at=now,
                actor=actor,
            )
            .returning(_snoozes.c.id)
        ).scalar_one()
        details = {"source": source, "sink": sink, "until": until.isoformat() if until else None}
        audit.record(
            connection,
            [
                audit.event(
                    at=now,
                    actor=actor,
                    action="snooze",
                    token_id=token_id,
                    token_name=token_name,
                    details=details,
                )
            ],
        )
    return SnoozeResource(
        id=snooze_id,
        source=source,
        token_id=token_id,
        sink=sink,
        until=until,
        created_at=now,
        actor=actor,
    )


def unsnooze(
    database: Database, *, source: str, token_id: str, sink: str | None, now: datetime, actor: str
) -> int:
    """Remove a token's snoozes (for one sink, or all); return how many went."""
    statement = delete(_snoozes).where(_snoozes.c.source == source, _snoozes.c.token_id == token_id)
    # The pass postponed the token to the snooze's end; make it due again now.
    due_again = (
        update(_state)
        .where(_state.c.source == source, _state.c.token_id == token_id)
        .where(_state.c.next_due_at.is_not(None))
        .values(next_due_at=EPOCH, version=_state.c.version + 1)
    )
    if sink is not None:
        statement = statement.where(_snoozes.c.sink == sink)
        due_again = due_again.where(_state.c.sink == sink)
    with database.write() as connection:
        removed = connection.execute(statement).rowcount
        if removed:
            connection.execute(due_again)
        if removed:
            audit.record(
                connection,
                [
                    audit.event(
                        at=now,
                        actor=actor,
                        action="unsnooze",
                        token_id=token_id,
                        token_name=None,
                        details={"source": source, "sink": sink},
                    )
                ],
            )
    return int(removed)


def list_snoozes(database: Database, *, now: datetime) -> list[SnoozeResource]:
    """Snoozes still in force."""
    query = select(_snoozes).where((_snoozes.c.until.is_(None)) | (_snoozes.c.until > now))
    with database.read() as connection:
        rows = connection.execute(query.order_by(_snoozes.c.id)).mappings().all()
    return [
        SnoozeResource(
            id=row["id"],
            source=row["source"],
            token_id=row["token_id"],
            sink=row["sink"],
            until=row["until"],
            created_at=row["created_at"],
            actor=row["actor"],
        )
        for row in rows
    ]
