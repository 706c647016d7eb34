"""The notice decision: a pure function of (token, delivery state, snooze, now).

Nothing here reads a clock, a database or the environment. The check pass feeds it what it
read and writes back what it returns, so the rules below are tested as a table.

- **Expiring** means inside the *zone* and not revoked (``revoked_at`` set and ``<= now``),
  nor superseded by a rotation. Without thresholds the zone is the detection window:
  ``now < expires_at <= now + window``. With thresholds (``30d,7d,1d``, ``10%``) the zone is
  the widest threshold that applies to the token; a percentage is of the token's own lifetime
  and reaches no further than the horizon.
- **Days left** is ``X = floor((expires_at - now) / slice) + 1``: "less than X days" is then
  always true and X is never 0.
- **Backoff** is per (token, sink). A sink hears about a token again once ``backoff_interval``
  has passed since the last successful notice, less a tolerance of half the pass interval, so a
  pass that fires a few milliseconds early does not slip a whole interval.
- **Escalation**: entering a tighter threshold notifies at once, whatever the backoff. A token
  first seen inside several thresholds gets one notice, for the tightest.
- **Expiry changed**: the state refers to one ``expires_at``; when the token's differs, the state
  starts afresh. If the new expiry is still in the zone the token is notified at once;
  otherwise an open loop is closed with a *renewed* notice.
- **Expired**: one notice when a token passes its expiry, if a sink had been told it was
  expiring, or if it expired within the last backoff interval, so a first start on an old
  database does not flood with long-dead tokens. It can be switched off.
- **Closing**: a rotated (superseded) token, or one that no longer expires, gets a *renewed*
  notice; a revoked or deleted one gets none, but its UI notification is resolved.
- **Snooze** silences a token until a time, or until it enters a tighter threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from notifier.core.durations import format_duration
from notifier.core.model import (
    SKIPPED,
    CredentialKind,
    Decision,
    DeliveryState,
    Notice,
    NoticeKind,
    Snooze,
    StateKind,
    Threshold,
    WatchedToken,
)
from notifier.core.notices import build_notice
from notifier.core.values import value

# Kinds after which nothing more is said about an expiry.
_TOLD_FINAL = frozenset({StateKind.EXPIRED, StateKind.RESOLVED})


def days_left(expires_at: datetime, now: datetime, slice_length: timedelta) -> int:
    """Return X for "will expire in less than X <slices>": ``floor(left / slice) + 1``."""
    return (expires_at - now) // slice_length + 1


def in_window(
    token: WatchedToken, now: datetime, horizon: timedelta, lookback: timedelta = timedelta(0)
) -> bool:
    """Whether *token* expires in (now - lookback, now + horizon], not revoked nor superseded."""
    if token.expires_at is None or token.superseded or is_revoked(token, now):
        return False
    return now - lookback < token.expires_at <= now + horizon


def is_revoked(token: WatchedToken, now: datetime) -> bool:
    """Revoked at or before *now* (a later revocation is a rotation's grace)."""
    return token.revoked_at is not None and token.revoked_at <= now


@value
class Zone:
    """Where a token stands against the thresholds at one moment."""

    inside: bool
    threshold: Threshold | None = None  # the tightest crossed; None: the detection window
    before_expiry: timedelta | None = None  # that threshold's distance before expiry
    next_before_expiry: timedelta | None = None  # the next tighter one, if any
    entry_before_expiry: timedelta | None = None  # the widest, where the zone begins


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules that turn a token and its delivery state into a notice or none."""

    detection_window: timedelta
    backoff_interval: timedelta
    pass_interval: timedelta
    log_slice: timedelta
    thresholds: tuple[Threshold, ...] = ()
    notify_expired: bool = True

    _horizon: timedelta = field(init=False, repr=False, compare=False)
    _tolerance: timedelta = field(init=False, repr=False, compare=False)
    _in_window: Zone = field(init=False, repr=False, compare=False)
    _before_window: Zone = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Asked for every token of every pass: worked out once.
        fixed = [t.duration for t in self.thresholds if t.duration is not None]
        object.__setattr__(self, "_horizon", max([self.detection_window, *fixed]))
        object.__setattr__(self, "_tolerance", min(self.pass_interval, self.backoff_interval) / 2)
        # Without thresholds a token is in its zone or not: the two zones, made once.
        window = self.detection_window
        object.__setattr__(self, "_in_window", Zone(inside=True, entry_before_expiry=window))
        object.__setattr__(self, "_before_window", Zone(inside=False, entry_before_expiry=window))

    @property
    def horizon(self) -> timedelta:
        """How far ahead a pass reads tokens: the window or the widest fixed threshold."""
        return self._horizon

    @property
    def count_marks(self) -> list[tuple[str, timedelta]]:
        """The distances a pass counts tokens within, for metrics.

        The fixed thresholds, or the detection window when none is configured.
        """
        fixed = [(t.label, t.duration) for t in self.thresholds if t.duration is not None]
        if not fixed:
            return [(format_duration(self.detection_window), self.detection_window)]
        return sorted(fixed, key=lambda mark: mark[1], reverse=True)

    @property
    def lookback(self) -> timedelta:
        """How long after expiry a token never seen valid still gets its expired notice."""
        if not self.notify_expired:
            return timedelta(0)
        return max(self.backoff_interval, self.pass_interval)

    @property
    def tolerance(self) -> timedelta:
        """How early a backoff may be called over: half the pass interval (or the backoff)."""
        return self._tolerance

    @property
    def fingerprint(self) -> str:
        """The parameters stored due times depend on; when it changes, they are recomputed."""
        backoff = int(self.backoff_interval.total_seconds() * 1000)
        tolerance = int(self.tolerance.total_seconds() * 1000)
        thresholds = ",".join(t.label for t in self.thresholds)
        window = int(self.detection_window.total_seconds())
        return (
            f"backoff_ms={backoff};tolerance_ms={tolerance};window_s={window};"
            f"thresholds={thresholds};expired={int(self.notify_expired)}"
        )

    def is_expiring(self, token: WatchedToken, now: datetime) -> bool:
        """Say whether *token* is inside its zone and not revoked at *now*."""
        return self.zone(token, now).inside

    def zone(self, token: WatchedToken, now: datetime) -> Zone:
        """Where *token* stands: inside its zone or not, and which threshold it crossed."""
        if not in_window(token, now, self.horizon) or token.expires_at is None:
            # Still ahead of the horizon: it comes into view when the horizon reaches it.
            ahead = token.expires_at is not None and token.expires_at > now + self.horizon
            return Zone(inside=False, entry_before_expiry=self.horizon if ahead else None)
        left = token.expires_at - now
        if not self.thresholds:
            return self._in_window if left <= self.detection_window else self._before_window
        distances = sorted(
            (
                (distance, threshold)
                for threshold in self.thresholds
                if (distance := threshold.before_expiry(token, self.horizon)) is not None
            ),
            key=lambda pair: pair[0],
        )
        if not distances:
            return Zone(inside=False)
        crossed = [(d, t) for d, t in distances if left <= d]
        entry = distances[-1][0]
        if not crossed:
            return Zone(inside=False, entry_before_expiry=entry)
        distance, threshold = crossed[0]
        tighter = [d for d, _ in distances if d < distance]
        return Zone(
            inside=True,
            threshold=threshold,
            before_expiry=distance,
            next_before_expiry=tighter[-1] if tighter else None,
            entry_before_expiry=entry,
        )

    # --- the decision ---------------------------------------------------------------------

    def decide(  # noqa: PLR0911 - one return per row of the decision table
        self,
        token: WatchedToken | None,
        state: DeliveryState | None,
        sink: str,
        now: datetime,
        *,
        snooze: Snooze | None = None,
        token_key: tuple[str, str] | None = None,
    ) -> Decision:
        """Decide whether *sink* hears about *token* in the pass at *now*.

        *token* is None when it was deleted; *token_key* then names it.
        """
        if token is not None and token.superseded:  # rotated: the successor takes over
            return self._close(token, state, sink, NoticeKind.RENEWED, reason="rotated")
        if token is None or is_revoked(token, now):
            return self._close(token, state, sink, NoticeKind.RESOLVED, token_key=token_key)
        if token.expires_at is None:
            return self._close(token, state, sink, NoticeKind.RENEWED, reason="no_expiry")
        fresh = state is None or state.expires_at != token.expires_at
        if token.expires_at <= now:
            return self._expired(token, state, sink, now, fresh=fresh, snooze=snooze)
        zone = self.zone(token, now)
        if fresh:
            if state is not None and state.is_open and not zone.inside:
                return self._close(token, state, sink, NoticeKind.RENEWED, reason="extended")
            state = DeliveryState(expires_at=token.expires_at)
        assert state is not None  # noqa: S101 - made fresh above
        if not zone.inside:
            return Decision(None, state, self._zone_entry(token, zone))
        if snooze is not None and self._snoozed(snooze, zone, now):
            return Decision(None, state, self._snooze_ends(token, snooze, zone))
        escalates_at = (
            token.expires_at - zone.next_before_expiry
            if zone.next_before_expiry is not None
            else None
        )
        if self._due_now(state, zone, now):
            notice = self._notice(token, state, sink, now, kind=NoticeKind.EXPIRING, zone=zone)
            return Decision(notice, state, now, escalates_at)
        return Decision(None, state, self._next_look(token, state, escalates_at), escalates_at)

    def _due_now(self, state: DeliveryState, zone: Zone, now: datetime) -> bool:
        if not state.is_open or state.last_sent_at is None:
            return True
        if (
            state.last_threshold is not None
            and zone.before_expiry is not None
            and zone.before_expiry < state.last_threshold
        ):
            return True  # escalation: a tighter threshold, whatever the backoff
        return now >= state.last_sent_at + self.backoff_interval - self.tolerance

    def _expired(
        self,
        token: WatchedToken,
        state: DeliveryState | None,
        sink: str,
        now: datetime,
        *,
        fresh: bool,
        snooze: Snooze | None,
    ) -> Decision:
        assert token.expires_at is not None  # noqa: S101 - checked by the caller
        if not fresh and state is not None and state.last_kind in _TOLD_FINAL:
            return Decision(None, state, None)  # told already; nothing more to say
        seen_valid = not fresh and state is not None and state.is_open
        # An access key past its maximum age still works (AWS never expires it): however long
        # ago it became due, it gets its notice, however late the daemon first sees it.
        recent = (
            now - token.expires_at <= self.lookback
            or token.credential_kind is CredentialKind.ACCESS_KEY
        )
        if not self.notify_expired or not (seen_valid or recent):
            return self._close(token, state, sink, NoticeKind.RESOLVED)
        current = state if (state is not None and not fresh) else DeliveryState(token.expires_at)
        if snooze is not None and snooze.until is not None and now < snooze.until:
            return Decision(None, current, snooze.until)
        notice = self._notice(
            token, current, sink, now, kind=NoticeKind.EXPIRED, zone=Zone(inside=False)
        )
        return Decision(notice, current, now)

    def _close(
        self,
        token: WatchedToken | None,
        state: DeliveryState | None,
        sink: str,
        kind: NoticeKind,
        *,
        reason: str | None = None,
        token_key: tuple[str, str] | None = None,
    ) -> Decision:
        """End an open loop: a renewed notice, or a silent resolution."""
        if state is None or not state.is_open:
            return Decision(None, state or DeliveryState(None), None)
        if token is None:
            source, token_id = token_key or ("", "")
            token = WatchedToken(source=source, token_id=token_id, name="", expires_at=None)
        # The id keys on the expiry the loop was about; the token may no longer have one.
        notice = build_notice(token, state, sink, kind, id_expiry=state.expires_at, reason=reason)
        return Decision(notice, state, None)

    def _notice(
        self,
        token: WatchedToken,
        state: DeliveryState,
        sink: str,
        now: datetime,
        *,
        kind: NoticeKind,
        zone: Zone,
    ) -> Notice:
        assert token.expires_at is not None  # noqa: S101 - expiring and expired notices have one
        left = token.expires_at - now
        expiring = kind is NoticeKind.EXPIRING
        return build_notice(
            token,
            state,
            sink,
            kind,
            id_expiry=token.expires_at,
            threshold=zone.before_expiry,
            threshold_label=zone.threshold.label if zone.threshold else None,
            days=days_left(token.expires_at, now, self.log_slice) if expiring else 0,
            seconds=max(int(left.total_seconds()), 0),
        )

    # --- when to look again ---------------------------------------------------------------

    def _zone_entry(self, token: WatchedToken, zone: Zone) -> datetime | None:
        """When a token outside its zone enters it (None: never, as far as we know)."""
        if token.expires_at is None or zone.entry_before_expiry is None:
            return None
        return token.expires_at - zone.entry_before_expiry

    def _next_look(
        self, token: WatchedToken, state: DeliveryState, escalates_at: datetime | None
    ) -> datetime | None:
        """The earliest of backoff end, the next threshold crossing and the expiry itself."""
        assert token.expires_at is not None  # noqa: S101
        candidates = [token.expires_at]
        if state.last_sent_at is not None:
            candidates.append(state.last_sent_at + self.backoff_interval - self.tolerance)
        if escalates_at is not None:
            candidates.append(escalates_at)
        return min(candidates)

    def _snoozed(self, snooze: Snooze, zone: Zone, now: datetime) -> bool:
        if snooze.until is not None:
            return now < snooze.until
        # Until the next threshold: silent while the token stays where it was snoozed.
        return (
            snooze.threshold is None
            or zone.before_expiry is None
            or (zone.before_expiry >= snooze.threshold)
        )

    def _snooze_ends(self, token: WatchedToken, snooze: Snooze, zone: Zone) -> datetime | None:
        assert token.expires_at is not None  # noqa: S101
        if snooze.until is not None:
            return min(snooze.until, token.expires_at)
        if zone.next_before_expiry is not None:
            return token.expires_at - zone.next_before_expiry
        return token.expires_at

    # --- after the sink answered ----------------------------------------------------------

    def delivered(self, decision: Decision, now: datetime) -> Decision:
        """Return the state and next look after the sink accepted the decision's notice."""
        notice = decision.notice
        kind = StateKind.told(notice.kind) if notice else decision.state.last_kind
        # Built whole rather than by dataclasses.replace, which inspects the fields on
        # every call: this runs once per notice sent.
        state = DeliveryState(
            expires_at=decision.state.expires_at,
            last_sent_at=now,
            notices_sent=decision.state.notices_sent + 1,
            attempts=0,
            last_kind=kind,
            last_threshold=notice.threshold if notice else None,
        )
        if notice is None or notice.kind is not NoticeKind.EXPIRING or notice.expires_at is None:
            return Decision(notice, state, None)
        candidates = [notice.expires_at, now + self.backoff_interval - self.tolerance]
        if decision.escalates_at is not None:
            candidates.append(decision.escalates_at)
        return Decision(notice, state, min(candidates), decision.escalates_at)

    def skipped(self, decision: Decision, now: datetime) -> Decision:
        """Return the state of a notice the sink's route left out, or a silent resolution."""
        notice = decision.notice
        if notice is not None and notice.kind in {NoticeKind.RESOLVED, NoticeKind.RENEWED}:
            state = replace(decision.state, last_kind=StateKind.told(notice.kind))
            return Decision(notice, state, None)
        state = replace(decision.state, last_kind=SKIPPED)
        look_again = now + max(self.backoff_interval - self.tolerance, self.pass_interval)
        if notice is not None and notice.expires_at is not None and notice.expires_at > now:
            look_again = min(look_again, notice.expires_at)
        return Decision(notice, state, look_again)

    def failed(self, decision: Decision, now: datetime, *, permanent: bool) -> Decision:
        """Return the state and next look after the sink failed the decision's notice.

        A transient failure is due again on the next pass; a permanent one waits out a
        backoff interval, so a receiver that refuses does not get a retry storm.
        """
        state = replace(decision.state, attempts=decision.state.attempts + 1)
        next_due_at = now + self.backoff_interval - self.tolerance if permanent else now
        return Decision(decision.notice, state, next_due_at)
