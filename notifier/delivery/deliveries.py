"""Reading the delivery state: what each sink heard about each token, and what failed."""

from __future__ import annotations

from sqlalchemy import select

from notifier.db.database import Database
from notifier.db.models import DeliveryStateRow
from notifier.resources import DeliveryResource

_state = DeliveryStateRow.__table__


def list_deliveries(
    database: Database, *, sink: str | None = None, failed_only: bool = False
) -> list[DeliveryResource]:
    """State per (token, sink), failures first, then by token."""
    query = select(_state).order_by(
        _state.c.attempts.desc(), _state.c.source, _state.c.token_id, _state.c.sink
    )
    if sink is not None:
        query = query.where(_state.c.sink == sink)
    if failed_only:
        query = query.where(_state.c.attempts > 0)
    with database.read() as connection:
        rows = connection.execute(query).mappings().all()
    return [
        DeliveryResource(
            source=row["source"],
            token_id=row["token_id"],
            sink=row["sink"],
            expires_at=row["expires_at"],
            last_kind=row["last_kind"],
            last_sent_at=row["last_sent_at"],
            notices_sent=row["notices_sent"],
            attempts=row["attempts"],
            last_attempt_at=row["last_attempt_at"],
            last_error=row["last_error"],
            next_due_at=row["next_due_at"],
            leased=row["lease_owner"] is not None,
        )
        for row in rows
    ]
