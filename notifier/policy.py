"""The notice decision: a pure function of (token, delivery state, now).

Nothing here reads a clock, a database or the environment. The check pass feeds it what it
read and writes back what it returns, so the rules below are tested as a table.

- **Expiring** means ``now < expires_at <= now + detection_window`` and not revoked
  (``revoked_at`` set and ``<= now``), nor superseded by a rotation.
- **Days left** is ``X = floor((expires_at - now) / slice) + 1``: "less than X days" is then
  always true and X is never 0.
- **Backoff** is per (token, sink). A sink hears about a token again once ``backoff_interval``
  has passed since the last successful notice, less a tolerance of half the pass interval, so a
  pass that fires a few milliseconds early does not slip a whole interval.
- **Expiry changed**: the state refers to one ``expires_at``; when the token's differs, the state
  starts afresh and the token is notified at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum


class NoticeKind(StrEnum):
    """What a notice says about its token."""

    EXPIRING = "expiring"
    EXPIRED = "expired"
    RENEWED = "renewed"


@dataclass(frozen=True, slots=True)
class WatchedToken:
    """A token as a source reports it: what the decision needs and the notice shows."""

    source: str  # "store" for the daemon's own tokens
    token_id: str
    name: str
    expires_at: datetime | None  # None: never expires
    revoked_at: datetime | None = None
    owner: str | None = None
    superseded: bool = False  # rotated, in its grace period: no expiry notices


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """What one sink has heard about one token, for one expiry."""

    expires_at: datetime | None  # the expiry these facts are about
    last_sent_at: datetime | None = None  # the pass time of the last successful notice
    notices_sent: int = 0  # successful notices for this expiry; numbers the next notice
    attempts: int = 0  # failed attempts since the last success


@dataclass(frozen=True, slots=True)
class Notice:
    """One message about one token for one sink."""

    id: str  # deterministic: a retry of the same notice reuses it, so receivers can deduplicate
    kind: NoticeKind
    sink: str
    source: str
    token_id: str
    token_name: str
    owner: str | None
    expires_at: datetime
    days_left: int  # the X in "less than X days"
    seconds_left: int
    threshold: timedelta | None


@dataclass(frozen=True, slots=True)
class Decision:
    """What to send now, the state to carry forward, and when to look again."""

    notice: Notice | None
    state: DeliveryState
    next_due_at: datetime | None


def in_window(token: WatchedToken, now: datetime, horizon: timedelta) -> bool:
    """Whether *token* expires in (now, now + horizon] and is neither revoked nor superseded."""
    if token.expires_at is None or token.superseded:
        return False
    if token.revoked_at is not None and token.revoked_at <= now:
        return False
    return now < token.expires_at <= now + horizon


def days_left(expires_at: datetime, now: datetime, slice_length: timedelta) -> int:
    """Return X for "will expire in less than X <slices>": ``floor(left / slice) + 1``."""
    return (expires_at - now) // slice_length + 1


def notice_id(
    *,
    source: str,
    token_id: str,
    sink: str,
    kind: NoticeKind,
    threshold: timedelta | None,
    expires_at: datetime,
    ordinal: int,
) -> str:
    """Hash the notice's identity into a stable id.

    DESIGN.md's key is (source, token id, sink, kind, threshold, expires_at). The ordinal (how
    many notices this sink already received for this expiry) is added so that tomorrow's
    reminder is a new notice for receivers that deduplicate, while a retry of today's, which
    has not been recorded as sent, keeps its id.
    """
    threshold_part = "" if threshold is None else str(int(threshold.total_seconds()))
    key = "\x1f".join(
        [source, token_id, sink, kind.value, threshold_part, expires_at.isoformat(), str(ordinal)]
    )
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules that turn a token and its delivery state into a notice or none."""

    detection_window: timedelta
    backoff_interval: timedelta
    pass_interval: timedelta
    log_slice: timedelta

    @property
    def horizon(self) -> timedelta:
        """How far ahead a pass reads tokens."""
        return self.detection_window

    @property
    def tolerance(self) -> timedelta:
        """How early a backoff may be called over: half the pass interval (or the backoff)."""
        return min(self.pass_interval, self.backoff_interval) / 2

    @property
    def fingerprint(self) -> str:
        """The parameters stored due times depend on; when it changes, they are recomputed."""
        backoff = int(self.backoff_interval.total_seconds() * 1000)
        tolerance = int(self.tolerance.total_seconds() * 1000)
        return f"backoff_ms={backoff};tolerance_ms={tolerance}"

    def is_expiring(self, token: WatchedToken, now: datetime) -> bool:
        """Say whether *token* is inside the detection window and not revoked at *now*."""
        return in_window(token, now, self.detection_window)

    def decide(
        self, token: WatchedToken, state: DeliveryState | None, sink: str, now: datetime
    ) -> Decision:
        """Decide whether *sink* hears about *token* in the pass at *now*."""
        if state is None or state.expires_at != token.expires_at:
            state = DeliveryState(expires_at=token.expires_at)
        if token.expires_at is None or not self.is_expiring(token, now):
            return Decision(None, state, None)
        due_at = self._backoff_ends(state, token.expires_at)
        if due_at is not None and now < due_at:
            return Decision(None, state, due_at)
        notice = Notice(
            id=notice_id(
                source=token.source,
                token_id=token.token_id,
                sink=sink,
                kind=NoticeKind.EXPIRING,
                threshold=None,
                expires_at=token.expires_at,
                ordinal=state.notices_sent,
            ),
            kind=NoticeKind.EXPIRING,
            sink=sink,
            source=token.source,
            token_id=token.token_id,
            token_name=token.name,
            owner=token.owner,
            expires_at=token.expires_at,
            days_left=days_left(token.expires_at, now, self.log_slice),
            seconds_left=int((token.expires_at - now).total_seconds()),
            threshold=None,
        )
        return Decision(notice, state, now)

    def delivered(self, decision: Decision, now: datetime) -> Decision:
        """Return the state and next look after the sink accepted the decision's notice."""
        state = replace(
            decision.state,
            last_sent_at=now,
            notices_sent=decision.state.notices_sent + 1,
            attempts=0,
        )
        expires_at = decision.notice.expires_at if decision.notice else None
        return Decision(decision.notice, state, self._backoff_ends(state, expires_at))

    def failed(self, decision: Decision, now: datetime, *, permanent: bool) -> Decision:
        """Return the state and next look after the sink failed the decision's notice.

        A transient failure is due again on the next pass; a permanent one waits out a
        backoff interval, so a receiver that refuses does not get a retry storm.
        """
        state = replace(decision.state, attempts=decision.state.attempts + 1)
        next_due_at = now + self.backoff_interval - self.tolerance if permanent else now
        return Decision(decision.notice, state, next_due_at)

    def _backoff_ends(self, state: DeliveryState, expires_at: datetime | None) -> datetime | None:
        """When the backoff after the last notice ends, no later than the expiry itself."""
        if state.last_sent_at is None:
            return None
        ends = state.last_sent_at + self.backoff_interval - self.tolerance
        if expires_at is not None:
            ends = min(ends, expires_at)
        return ends
