"""The UI sink: one notification per token, upserted by each notice, shown until resolved.

A new notice bumps ``occurrences`` and ``last_seen`` and clears an acknowledgement, so an
acknowledged warning comes back when the token is warned about again. A renewed, rotated,
revoked or deleted token resolves its notification.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, case, literal_column, null, update

from notifier.config.options import KindOptions
from notifier.core.clock import Clock
from notifier.core.ids import short_ids
from notifier.core.messages import HINT, sentence
from notifier.core.model import Notice, NoticeKind
from notifier.db.database import BulkStatement, Database
from notifier.db.models import Notification
from notifier.sinks import EVERYTHING, Outcome, Route
from notifier.sinks.config import ROUTE_OPTIONS, route_only
from notifier.sinks.registry import SinkContext

OPTIONS = KindOptions(ROUTE_OPTIONS)  # the route alone
check_options = route_only

_LEVELS = {
    NoticeKind.EXPIRING: "warning",
    NoticeKind.EXPIRED: "error",
    NoticeKind.RENEWED: "info",
    NoticeKind.RESOLVED: "info",
}
_CLOSING = frozenset({NoticeKind.RENEWED, NoticeKind.RESOLVED})
_ONE = literal_column("1", Integer())
_OPENING_KEYS = (
    "id",
    "token_id",
    "source",
    "token_name",
    "level",
    "kind",
    "message",
    "expires_at",
    "days_left",
    "first_seen",
    "last_seen",
)
_RESOLVING_KEYS = ("k_source", "k_token_id", "v_message", "v_kind", "v_now")


class UiSink:
    """Keep the UI notification of each notified token current; resolve it when it is over."""

    kinds = frozenset(NoticeKind)
    digest = False

    def __init__(
        self,
        name: str,
        database: Database,
        clock: Clock,
        slice_name: str,
        route: Route = EVERYTHING,
    ) -> None:
        self.name = name
        self.route = route
        self._database = database
        self._clock = clock
        self._slice_name = slice_name
        self._open, self._resolve = _statements(database)

    def deliver(self, notices: Sequence[Notice]) -> list[Outcome]:
        """Upsert or resolve one notification per notice, in one short transaction."""
        if not notices:
            return []
        now = self._clock.now()
        opening = [n for n in notices if n.kind not in _CLOSING]
        closing = [n for n in notices if n.kind in _CLOSING]
        with self._database.write() as connection:
            if opening:
                self._open.execute(connection, self._opening_rows(opening, now))
            if closing:
                self._resolve.execute(
                    connection,
                    [
                        {
                            "k_source": n.source,
                            "k_token_id": n.token_id,
                            "v_message": sentence(n, self._slice_name),
                            "v_kind": n.kind.value,
                            "v_now": now,
                        }
                        for n in closing
                    ],
                )
        return [Outcome.sent()] * len(notices)

    def _opening_rows(self, notices: Sequence[Notice], now: datetime) -> list[dict[str, Any]]:
        """The rows that open or update the notifications of *notices*."""
        return [
            {
                "id": new_id,
                "token_id": notice.token_id,
                "source": notice.source,
                "token_name": notice.token_name,
                "level": _LEVELS[notice.kind],
                "kind": notice.kind.value,
                "message": sentence(notice, self._slice_name),
                "expires_at": notice.expires_at,
                "days_left": notice.days_left,
                "first_seen": now,
                "last_seen": now,
            }
            for notice, new_id in zip(notices, short_ids(len(notices)), strict=True)
        ]

    def close(self) -> None:
        """Nothing to release: the database belongs to the process."""


def build(name: str, context: SinkContext) -> UiSink:
    """Build the UI sink called *name*."""
    return UiSink(name, context.database, context.clock, context.slice_name, context.route)


def _statements(database: Database) -> tuple[BulkStatement, BulkStatement]:
    """The upsert that opens or updates a notification, and the update that resolves one.

    Built once per sink and run as executemany: building an upsert costs more than running
    it for a batch. Constants are written into the SQL, since an executemany binds every
    parameter once per row.
    """
    table = Notification.__table__
    insert = database.upsert(table).values(
        hint=HINT,
        occurrences=_ONE,
        acknowledged_at=null(),
        resolved_at=null(),
    )
    current = table.c
    incoming = insert.excluded
    reopened = current.resolved_at.is_not(None)
    opening = insert.on_conflict_do_update(
        index_elements=[current.source, current.token_id],
        set_={
            "token_name": incoming.token_name,
            "level": incoming.level,
            "kind": incoming.kind,
            "message": incoming.message,
            "hint": incoming.hint,
            "expires_at": incoming.expires_at,
            "days_left": incoming.days_left,
            "last_seen": incoming.last_seen,
            "first_seen": case((reopened, incoming.first_seen), else_=current.first_seen),
            "occurrences": case((reopened, _ONE), else_=current.occurrences + _ONE),
            "acknowledged_at": null(),
            "resolved_at": null(),
        },
    )
    resolving = (
        update(table)
        .where(
            current.source == bindparam("k_source"),
            current.token_id == bindparam("k_token_id"),
            current.resolved_at.is_(None),
        )
        .values(
            resolved_at=bindparam("v_now"),
            last_seen=bindparam("v_now"),
            message=bindparam("v_message"),
            kind=bindparam("v_kind"),
            level="info",
        )
    )
    return database.bulk(opening, _OPENING_KEYS), database.bulk(resolving, _RESOLVING_KEYS)
