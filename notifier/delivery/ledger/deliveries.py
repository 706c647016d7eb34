"""Reading the ledger: what each sink heard about each token (``notifier deliveries list``).

Apart from the pass's modules, so that a pass does not load the resources' pydantic models.
"""

from __future__ import annotations

from sqlalchemy import select

from notifier.db.database import Database
from notifier.delivery.ledger.codec import STATE
from notifier.resources import DeliveryResource


def list_deliveries(
    database: Database, *, sink: str | None = None, failed_only: bool = False
) -> list[DeliveryResource]:
    """State per (token, sink), failures first, then by token."""
    query = select(STATE).order_by(
        STATE.c.attempts.desc(), STATE.c.source, STATE.c.token_id, STATE.c.sink
    )
    if sink is not None:
        query = query.where(STATE.c.sink == sink)
    if failed_only:
        query = query.where(STATE.c.attempts > 0)
    with database.read() as connection:
        rows = connection.execute(query).mappings().all()
    return [
        DeliveryResource.model_validate({**row, "leased": row["lease_owner"] is not None})
        for row in rows
    ]
