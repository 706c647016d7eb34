"""The ledger outside a pass: the few changes other parts ask of the state.

Making a token's rows due again (an
unsnooze, a changed policy), forgetting a deleted token, and pruning closed loops. An
unsnooze bumps the rows' version, as the pass's own writes do, so a pass that read a row
before it writes nothing over it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, and_, delete, func, update

from notifier.delivery.ledger.codec import EPOCH, STATE


def make_due(connection: Connection, source: str, token_id: str, sink: str | None) -> None:
    """Make a token's scheduled rows (for one sink, or all) due at the next pass."""
    statement = (
        update(STATE)
        .where(STATE.c.source == source, STATE.c.token_id == token_id)
        .where(STATE.c.next_due_at.is_not(None))
        .values(next_due_at=EPOCH, version=STATE.c.version + 1)
    )
    if sink is not None:
        statement = statement.where(STATE.c.sink == sink)
    connection.execute(statement)


def make_all_due(connection: Connection) -> None:
    """Make every scheduled row due at the next pass, which decides it afresh."""
    connection.execute(
        update(STATE).where(STATE.c.next_due_at.is_not(None)).values(next_due_at=EPOCH)
    )


def forget(connection: Connection, source: str, token_ids: Sequence[str]) -> None:
    """Delete the state of tokens that no longer exist anywhere (a token deleted)."""
    connection.execute(
        delete(STATE).where(STATE.c.source == source, STATE.c.token_id.in_(list(token_ids)))
    )


def prune(connection: Connection, cutoff: datetime) -> dict[str, int]:
    """Delete closed loops last touched before *cutoff*; open loops and leased rows stay.

    Return how many rows went, under the table's name (retention's log field).
    """
    last_touched = func.coalesce(STATE.c.last_attempt_at, STATE.c.last_sent_at)
    gone = connection.execute(
        delete(STATE).where(
            and_(
                STATE.c.next_due_at.is_(None),
                STATE.c.lease_owner.is_(None),
                last_touched < cutoff,
            )
        )
    ).rowcount
    return {STATE.name: gone}
