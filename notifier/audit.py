"""The audit trail: who created, rotated, revoked, deleted or imported which token, and when.

Events are written in the same transaction as the change they describe, so the trail never
claims a change that did not happen, nor misses one that did.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Insert, Select, select

from notifier.db.database import Database
from notifier.db.keyset import Order, page_after, stream_rows
from notifier.db.models import AuditEvent

if TYPE_CHECKING:
    from notifier.resources import AuditEventResource

_events = AuditEvent.__table__


def os_actor() -> str:
    """The actor of a CLI command: the operating-system user running it."""
    try:
        return "user:" + pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid without a passwd entry, as in some containers
        return f"uid:{os.getuid()}"


def record(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Append events (keys: at, actor, action, token_id, token_name, details)."""
    if rows:
        connection.execute(_events.insert(), list(rows))


def insert_events(**constants: Any) -> Insert:
    """An INSERT of events whose fields in *constants* are the same for every row."""
    return _events.insert().values(**constants)


def event(
    *,
    at: datetime,
    actor: str,
    action: str,
    token_id: str | None,
    token_name: str | None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One event row, for :func:`record`."""
    return {
        "at": at,
        "actor": actor,
        "action": action,
        "token_id": token_id,
        "token_name": token_name,
        "details": details,
    }


# Newest first: by id, which grows with each event appended.
EVENT_ORDER = Order("-id", (_events.c.id,), descending=True)


def _listed(token_id: str | None, action: str | None) -> Select[Any]:
    query = select(_events)
    if token_id is not None:
        query = query.where(_events.c.token_id == token_id)
    if action is not None:
        query = query.where(_events.c.action == action)
    return query


def page_events(
    database: Database,
    *,
    token_id: str | None = None,
    action: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[AuditEventResource], str | None]:
    """One page of events, newest first, for one token or action when given; next cursor."""
    from notifier.resources import AuditEventResource  # noqa: PLC0415 - writers need no pydantic

    page = page_after(
        database,
        _listed(token_id, action),
        EVENT_ORDER,
        {"token_id": token_id, "action": action},
        limit=limit,
        cursor=cursor,
    )
    return [AuditEventResource(**row) for row in page.rows], page.next_cursor


def stream_events(
    database: Database,
    *,
    token_id: str | None = None,
    action: str | None = None,
    limit: int | None = None,
) -> Iterator[AuditEventResource]:
    """Every event (at most *limit*), newest first, read a page at a time."""
    from notifier.resources import AuditEventResource  # noqa: PLC0415

    for row in stream_rows(database, _listed(token_id, action), EVENT_ORDER, limit=limit):
        yield AuditEventResource(**row)


def list_events(
    database: Database, *, token_id: str | None = None, limit: int | None = None
) -> list[AuditEventResource]:
    """Events, newest first; for one token when *token_id* is given."""
    return list(stream_events(database, token_id=token_id, limit=limit))


@dataclass(frozen=True, slots=True)
class Change:
    """A change to tokens under way: its write transaction, who makes it and when."""

    connection: Connection
    at: datetime
    actor: str

    def audit(
        self, action: str, token_id: str, name: str | None, details: dict[str, Any] | None = None
    ) -> None:
        """Append the event of *action* on the token *token_id* named *name*."""
        at, actor = self.at, self.actor
        row = event(
            at=at, actor=actor, action=action, token_id=token_id, token_name=name, details=details
        )
        record(self.connection, [row])
