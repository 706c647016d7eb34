"""Moving tokens in and out: the upsert of an import, and the export it round-trips with.

Reading the files (JSONL, CSV, api-keys.json) is :mod:`notifier.tokens.importer`'s; this module
writes what it read, and reads what export writes. Export is JSONL of exactly
:data:`RECORD_FIELDS`, the shape import accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, bindparam, select, update

from notifier import audit
from notifier.db.database import BulkStatement, Database
from notifier.db.models import Token
from notifier.tokens.views import iso

_IMPORT_CHUNK = 500
# Fields an import may set, in export order; export writes exactly these.
RECORD_FIELDS = (
    "id",
    "name",
    "role",
    "permissions",
    "owner",
    "labels",
    "description",
    "created_at",
    "expires_at",
    "revoked_at",
    "last_used_at",
    "rotated_from",
    "superseded_by",
)

log = structlog.get_logger("notifier.tokens")
_tokens = Token.__table__
_TOKEN_COLUMNS = tuple(column.key for column in _tokens.columns)
# What a new token has where an import row says nothing (created_at: the import's time).
_NEW_TOKEN: dict[str, Any] = {
    "role": None,
    "permissions": [],
    "owner": None,
    "labels": {},
    "description": None,
    "secret_hash": None,
    "revoked_at": None,
    "last_used_at": None,
    "rotated_from": None,
    "superseded_by": None,
}


@dataclass(frozen=True, slots=True)
class ImportRecord:
    """One row of an import: the fields it carries (absent ones keep their stored value)."""

    line: int
    values: dict[str, Any]


@dataclass
class ImportReport:
    """What an import did."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    ids: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Import:
    """One import under way: its time, its actor, its report and its bulk statements."""

    now: datetime
    actor: str
    report: ImportReport
    insert: BulkStatement
    created: BulkStatement

    def chunk(self, connection: Connection, chunk: Sequence[ImportRecord]) -> None:
        """Write one chunk of records: inserts, grouped updates, and their events."""
        report = self.report
        ids = [record.values["id"] for record in chunk]
        existing = {
            row["id"]: row
            for row in connection.execute(select(_tokens).where(_tokens.c.id.in_(ids))).mappings()
        }
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        defaults = {**_NEW_TOKEN, "created_at": self.now}
        for record in chunk:
            values = record.values
            token_id = values["id"]
            stored = existing.get(token_id)
            if stored is None:
                inserts.append({**defaults, **values})
                continue
            changed = {key: value for key, value in values.items() if stored[key] != value}
            if not changed:
                report.unchanged += 1
                continue
            updates.append(
                {"k_id": token_id, **{f"v_{key}": value for key, value in changed.items()}}
            )
            report.updated += 1
            events.append(
                audit.event(
                    at=self.now,
                    actor=self.actor,
                    action="import",
                    token_id=token_id,
                    token_name=values.get("name", stored["name"]),
                    details={"changed": sorted(changed)},
                )
            )
        self.insert.execute(connection, inserts)
        self.created.execute(
            connection, [{"token_id": row["id"], "token_name": row["name"]} for row in inserts]
        )
        report.created += len(inserts)
        _update_grouped(connection, updates)
        audit.record(connection, events)
        report.ids.extend(ids)


def import_records(
    database: Database,
    records: Sequence[ImportRecord],
    *,
    now: datetime,
    actor: str,
    progress: Callable[[int], object] | None = None,
    before_commit: Callable[[], object] | None = None,
) -> ImportReport:
    """Upsert *records* by id in one transaction: all of them, or nothing.

    Fields a record does not carry keep their stored value (or the default for a new token).
    A record equal to what is stored changes nothing, so importing twice is the same as
    importing once. *progress* hears how many records each chunk wrote; *before_commit* is
    called once every row is written, just before the commit (the CLI holds signals back
    from there, to say truthfully whether the import happened).
    """
    run = _Import(
        now=now,
        actor=actor,
        report=ImportReport(),
        # New tokens and their "created" events are most of a large import: both go to the
        # driver as bulk statements, the event's constant fields converted once.
        insert=database.bulk(_tokens.insert(), _TOKEN_COLUMNS),
        created=database.bulk(
            audit.insert_events(at=now, actor=actor, action="import", details={"created": True}),
            ("token_id", "token_name"),
        ),
    )
    with database.write() as connection:
        for start in range(0, len(records), _IMPORT_CHUNK):
            chunk = records[start : start + _IMPORT_CHUNK]
            run.chunk(connection, chunk)
            if progress is not None:
                progress(len(chunk))
        if before_commit is not None:
            before_commit()
    report = run.report
    log.info(
        "token.imported",
        created=report.created,
        updated=report.updated,
        unchanged=report.unchanged,
    )
    return report


def _update_grouped(connection: Connection, updates: Sequence[dict[str, Any]]) -> None:
    """Rows that change the same columns share one executemany."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in updates:
        groups.setdefault(tuple(sorted(key for key in row if key != "k_id")), []).append(row)
    for keys, rows in groups.items():
        statement = (
            update(_tokens)
            .where(_tokens.c.id == bindparam("k_id"))
            .values({key[2:]: bindparam(key) for key in keys})
        )
        connection.execute(statement, rows)


def export_records(database: Database) -> Iterator[dict[str, Any]]:
    """Every token's metadata, in the shape :func:`import_records` accepts; no hashes."""
    with database.read() as connection:
        rows = connection.execute(select(_tokens).order_by(_tokens.c.id)).mappings().all()
    for row in rows:
        yield {
            key: iso(row[key]) if isinstance(row[key], datetime) else row[key]
            for key in RECORD_FIELDS
        }
