"""Snoozes: silence a token's notices, for every sink or one, until a time or a threshold.

Each snooze and its removal is written to the audit trail.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, or_, select

from notifier import audit
from notifier.core.model import Snooze as SnoozeRule
from notifier.db.database import Database
from notifier.db.models import Snooze
from notifier.delivery.ledger.history import make_due

if TYPE_CHECKING:
    from notifier.resources import SnoozeResource

_snoozes = Snooze.__table__


class Snoozes:
    """The snoozes in force at one pass's ``now``, by (source, token id)."""

    def __init__(self, rules: dict[tuple[str, str], list[tuple[str | None, SnoozeRule]]]) -> None:
        self._rules = rules

    def rule_for(self, source: str, token_id: str, sink: str) -> SnoozeRule | None:
        """The snooze that silences the token for *sink*, if any."""
        if not self._rules:  # most passes: nothing snoozed, and no key to build per token
            return None
        for snoozed_sink, rule in self._rules.get((source, token_id), ()):
            if snoozed_sink is None or snoozed_sink == sink:
                return rule
        return None


def active_snoozes(database: Database, now: datetime) -> Snoozes:
    """The snoozes still in force at *now* (one small query); expired ones are left out."""
    with database.read() as connection:
        rows = connection.execute(
            select(_snoozes).where(or_(_snoozes.c.until.is_(None), _snoozes.c.until > now))
        ).all()
    rules: dict[tuple[str, str], list[tuple[str | None, SnoozeRule]]] = {}
    for row in rows:
        threshold = timedelta(seconds=row.threshold_s) if row.threshold_s is not None else None
        rules.setdefault((row.source, row.token_id), []).append(
            (row.sink, SnoozeRule(until=row.until, threshold=threshold))
        )
    return Snoozes(rules)


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
    from notifier.resources import SnoozeResource  # noqa: PLC0415 - not on the pass's path

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
        audit.Change(connection, now, actor).audit("snooze", token_id, token_name, details)
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
    if sink is not None:
        statement = statement.where(_snoozes.c.sink == sink)
    with database.write() as connection:
        removed = connection.execute(statement).rowcount
        if removed:
            # The pass postponed the token to the snooze's end; make it due again now.
            make_due(connection, source, token_id, sink)
            details = {"source": source, "sink": sink}
            audit.Change(connection, now, actor).audit("unsnooze", token_id, None, details)
    return int(removed)


def list_snoozes(database: Database, *, now: datetime) -> list[SnoozeResource]:
    """Snoozes still in force."""
    from notifier.resources import SnoozeResource  # noqa: PLC0415 - not on the pass's path

    query = select(_snoozes).where((_snoozes.c.until.is_(None)) | (_snoozes.c.until > now))
    with database.read() as connection:
        rows = connection.execute(query.order_by(_snoozes.c.id)).mappings().all()
    return [SnoozeResource.model_validate(row) for row in rows]
