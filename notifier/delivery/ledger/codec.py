"""The delivery state's one row codec: its key, its columns, and the rows a pass writes.

A row is the state of one (source, token id, sink): what the sink was last told about the
token, when it is next due, how many attempts failed, and who leases it. ``version`` grows
by one on every write, and a pass writes only over the version it read (optimistic
concurrency); ``lease_owner``/``lease_until`` (the database's clock) keep two replicas from
sending the same notice at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, literal_column
from sqlalchemy.sql.elements import ColumnElement

from notifier.core.model import OPEN, Decision, DeliveryState, StateKind, WatchedToken
from notifier.core.values import value
from notifier.db.models import DeliveryStateRow

STATE = DeliveryStateRow.__table__
# A stored due time set here is due at once: a changed policy or an unsnooze re-decides.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ERROR_LIMIT = 500  # characters of a sink's error kept in the row

Key = tuple[str, str, str]  # (source, token id, sink): the primary key

# The state columns a due or closing query reads, labelled apart from the token's.
COLUMNS = (
    STATE.c.token_id.label("state_token_id"),
    STATE.c.sink,
    STATE.c.expires_at.label("state_expires_at"),
    STATE.c.last_sent_at,
    STATE.c.notices_sent,
    STATE.c.attempts,
    STATE.c.last_kind,
    STATE.c.last_threshold_s,
    STATE.c.version,
)


@value
class Candidate:
    """A (token, sink) pair a pass must look at."""

    token_id: str
    token: WatchedToken | None  # None: the source no longer has it
    state: DeliveryState | None  # None: the sink has never heard of it
    version: int = 0  # of the state row as read; writes succeed only over this version


@value
class Item:
    """A candidate of one source and what the policy decided about it."""

    source: str
    candidate: Candidate
    decision: Decision

    def key(self, sink: str) -> Key:
        """The state row's key for *sink*."""
        return (self.source, self.candidate.token_id, sink)


def is_open_loop() -> ColumnElement[bool]:
    """State rows last told "expiring", with the value in the SQL as the partial index has it.

    A bound parameter would not do: a planner cannot tell that ``last_kind = $1`` implies the
    index's ``last_kind = 'expiring'`` (PostgreSQL's generic plans, SQLite's prepare).
    """
    return STATE.c.last_kind == literal_column(f"'{OPEN}'", String())


def decode(  # noqa: PLR0917 - one argument per column, in the order of COLUMNS
    expires_at: datetime | None,
    last_sent_at: datetime | None,
    notices_sent: int,
    attempts: int,
    last_kind: str | None,  # as stored
    last_threshold_s: int | None,
) -> DeliveryState:
    """The policy's view of a row's columns."""
    return DeliveryState(
        expires_at=expires_at,
        last_sent_at=last_sent_at,
        notices_sent=notices_sent,
        attempts=attempts,
        last_kind=StateKind.stored(last_kind),
        last_threshold=timedelta(seconds=last_threshold_s)
        if last_threshold_s is not None
        else None,
    )


def seconds(value: timedelta | None) -> int | None:
    """A threshold as the row stores it."""
    return None if value is None else int(value.total_seconds())


def claim_row(sink: str, item: Item, now: datetime) -> dict[str, Any]:
    """The row a claim inserts when the sink has none yet, and the version it claims over."""
    state = item.candidate.state
    return {
        "source": item.source,
        "token_id": item.candidate.token_id,
        "sink": sink,
        "expires_at": item.decision.state.expires_at,
        "next_due_at": now,
        "notices_sent": state.notices_sent if state else 0,
        "last_kind": state.last_kind if state else None,
        "version": item.candidate.version,
    }


def postpone_row(sink: str, item: Item) -> dict[str, Any]:
    """The row of a candidate that is not due now: the state kept and when it will be."""
    state = item.decision.state
    return {
        "source": item.source,
        "token_id": item.candidate.token_id,
        "sink": sink,
        "expires_at": state.expires_at,
        "next_due_at": item.decision.next_due_at,
        "notices_sent": state.notices_sent,
        "last_kind": state.last_kind,
        "last_threshold_s": seconds(state.last_threshold),
        "last_sent_at": state.last_sent_at,
        "version": item.candidate.version,
    }


def record_row(
    sink: str,
    item: Item,
    after: Decision,
    now: datetime,
    *,
    attempted: bool,
    sent: bool = False,
    error: str | None = None,
) -> dict[str, Any]:
    """The row after a delivery (*attempted*: *sent*, or failed with *error*) or a skip."""
    notice = after.notice
    return {
        "k_source": item.source,
        "k_token_id": item.candidate.token_id,
        "k_sink": sink,
        "v_expires_at": after.state.expires_at,
        "v_next_due_at": after.next_due_at,
        "v_last_sent_at": after.state.last_sent_at,
        "v_last_notice_id": notice.id if notice and sent else None,
        "v_last_kind": after.state.last_kind,
        "v_last_threshold_s": seconds(after.state.last_threshold),
        "v_notices_sent": after.state.notices_sent,
        "v_attempts": after.state.attempts,
        "v_last_attempt_at": now if attempted else None,
        "v_last_error": (error or "failed")[:ERROR_LIMIT] if attempted and not sent else None,
    }


def key_of(record: dict[str, Any]) -> Key:
    """The key a record row is written under."""
    return (record["k_source"], record["k_token_id"], record["k_sink"])


KEY_KEYS = ("k_source", "k_token_id", "k_sink")
CLAIM_KEYS = (
    "source",
    "token_id",
    "sink",
    "expires_at",
    "next_due_at",
    "notices_sent",
    "last_kind",
    "version",
)
RECORD_KEYS = (
    *KEY_KEYS,
    "v_expires_at",
    "v_next_due_at",
    "v_last_sent_at",
    "v_last_notice_id",
    "v_last_kind",
    "v_last_threshold_s",
    "v_notices_sent",
    "v_attempts",
    "v_last_attempt_at",
    "v_last_error",
)
POSTPONE_KEYS = (*CLAIM_KEYS, "last_threshold_s", "last_sent_at")
