"""What each source other than the store found in its last pass: the ``credentials`` table.

The checker calls :func:`record_found` after reading each source; only what changed is
written. This module is imported by every pass, so it imports nothing of the lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update

from notifier.core.model import WatchedToken
from notifier.db.database import Database
from notifier.db.models import Credential, Meta

FOUND = Credential.__table__
_meta = Meta.__table__
_READ_AT = "found:"  # meta key prefix: when each source was last read
_WRITE_BATCH = 500
_REFRESH_AFTER = 1000  # rows added or dropped past which the planner's statistics are refreshed
_NAME = FOUND.c.name.type.length or 255  # type: ignore[attr-defined]


def _found_row(token: WatchedToken) -> dict[str, Any]:
    return {
        "kind": token.credential_kind.value,
        "name": token.name[:_NAME],
        "owner": token.owner,
        "labels": dict(token.labels),
        "created_at": token.created_at,
        "expires_at": token.expires_at,
    }


def record_found(
    database: Database, source: str, credentials: Sequence[WatchedToken], now: datetime
) -> int:
    """Bring *source*'s rows to *credentials*, read by the pass at *now*; return rows written.

    Only the rows that changed are written: those new (``first_seen`` *now*), changed, or
    gone. A credential listed twice counts once, the last; a revoked one is left out.
    """
    wanted = {
        token.token_id: _found_row(token)
        for token in credentials
        if token.revoked_at is None or token.revoked_at > now  # a revoked one is not watched
    }
    c = FOUND.c
    fields = [c.id, c.kind, c.name, c.owner, c.labels, c.created_at, c.expires_at]
    wanted_fields = [column.name for column in fields[1:]]
    with database.read() as connection:
        held = {
            row["id"]: {name: row[name] for name in wanted_fields}
            for row in connection.execute(select(*fields).where(c.source == source)).mappings()
        }
    added = [key for key in wanted if key not in held]
    changed = [key for key in wanted if key in held and held[key] != wanted[key]]
    gone = [key for key in held if key not in wanted]
    with database.write() as connection:
        for start in range(0, len(added), _WRITE_BATCH):
            connection.execute(
                FOUND.insert(),
                [
                    {"source": source, "id": key, "first_seen": now, **wanted[key]}
                    for key in added[start : start + _WRITE_BATCH]
                ],
            )
        for key in changed:
            connection.execute(
                update(FOUND).where(c.source == source, c.id == key).values(**wanted[key])
            )
        for start in range(0, len(gone), _WRITE_BATCH):
            connection.execute(
                delete(FOUND).where(
                    c.source == source, c.id.in_(gone[start : start + _WRITE_BATCH])
                )
            )
        database.put(connection, _meta, key=_READ_AT + source, value=now.isoformat())
    if len(added) + len(gone) >= _REFRESH_AFTER:  # PostgreSQL plans by the table's statistics
        database.refresh_statistics([FOUND.name], count=FOUND.name)
    return len(added) + len(changed) + len(gone)


def forget_sources(database: Database, keep: Sequence[str]) -> int:
    """Drop what sources no longer configured found (all but *keep*); return rows dropped."""
    with database.write() as connection:
        dropped = connection.execute(delete(FOUND).where(FOUND.c.source.not_in(keep))).rowcount
        connection.execute(
            delete(_meta).where(
                _meta.c.key.startswith(_READ_AT),
                _meta.c.key.not_in([_READ_AT + name for name in keep]),
            )
        )
    return int(dropped or 0)


def read_times(database: Database) -> dict[str, datetime]:
    """When each source was last read, by source name."""
    with database.read() as connection:
        rows = connection.execute(
            select(_meta.c.key, _meta.c.value).where(_meta.c.key.startswith(_READ_AT))
        )
        return {key.removeprefix(_READ_AT): datetime.fromisoformat(value) for key, value in rows}
