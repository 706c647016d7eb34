"""Reading the ledger: what each sink heard about each token (``notifier deliveries list``).

Apart from the pass's modules, so that a pass does not load the resources' pydantic models.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import RowMapping, Select, select

from notifier.db.database import Database
from notifier.db.keyset import Order, page_after, stream_rows
from notifier.delivery.ledger.codec import STATE
from notifier.resources import DeliveryResource

# By the state's key: source, token, sink (its primary key's order).
DELIVERY_ORDER = Order("key", (STATE.c.source, STATE.c.token_id, STATE.c.sink))


def _listed(sink: str | None, failed_only: bool) -> Select[Any]:
    query = select(STATE)
    if sink is not None:
        query = query.where(STATE.c.sink == sink)
    if failed_only:
        query = query.where(STATE.c.attempts > 0)
    return query


def _resource(row: RowMapping) -> DeliveryResource:
    return DeliveryResource.model_validate({**row, "leased": row["lease_owner"] is not None})


def page_deliveries(
    database: Database,
    *,
    sink: str | None = None,
    failed_only: bool = False,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[DeliveryResource], str | None]:
    """One page of the state per (token, sink), by token, and the next page's cursor."""
    page = page_after(
        database,
        _listed(sink, failed_only),
        DELIVERY_ORDER,
        {"sink": sink, "failed": failed_only},
        limit=limit,
        cursor=cursor,
    )
    return [_resource(row) for row in page.rows], page.next_cursor


def stream_deliveries(
    database: Database,
    *,
    sink: str | None = None,
    failed_only: bool = False,
    limit: int | None = None,
) -> Iterator[DeliveryResource]:
    """Every (token, sink) state (at most *limit*), by token, read a page at a time."""
    for row in stream_rows(database, _listed(sink, failed_only), DELIVERY_ORDER, limit=limit):
        yield _resource(row)


def list_deliveries(
    database: Database, *, sink: str | None = None, failed_only: bool = False
) -> list[DeliveryResource]:
    """State per (token, sink), by token (small lists)."""
    return list(stream_deliveries(database, sink=sink, failed_only=failed_only))
