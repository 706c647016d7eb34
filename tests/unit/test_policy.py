from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from notifier.core.model import (
    DeliveryState,
    NoticeKind,
    Snooze,
    StateKind,
    Threshold,
    WatchedToken,
)
from notifier.core.policy import days_left
from notifier.testing import make_policy

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
POLICY = make_policy()


def token(expires_in: timedelta | None, *, revoked_at: datetime | None = None) -> WatchedToken:
    return WatchedToken(
        source="store",
        token_id="abc123",
        name="ci-deploy",
        expires_at=None if expires_in is None else NOW + expires_in,
        revoked_at=revoked_at,
    )


class TestDaysLeft:
    @pytest.mark.parametrize(
        ("left", "expected"),
        [
            (timedelta(days=6, hours=23), 7),  # StackRox also says 7 here
            (timedelta(hours=3), 1),  # StackRox says "0 days"
            (timedelta(days=2), 3),  # exactly 2 days: "less than 2 days" would be false
            (timedelta(seconds=1), 1),
            (timedelta(days=2) - timedelta(microseconds=1), 2),
            (timedelta(days=7), 8),  # the edge of the window
        ],
    )
    def test_table(self, left: timedelta, expected: int) -> None:
        """X = floor(left / slice) + 1, so "less than X days" is true and X is never 0."""
        assert days_left(NOW + left, NOW, DAY) == expected
        assert left < expected * DAY

    def test_other_slice(self) -> None:
        """With an hour slice, 90 minutes left reads "less than 2 hours"."""
        assert days_left(NOW + timedelta(minutes=90), NOW, HOUR) == 2


class TestWindow:
    @pytest.mark.parametrize(
        ("expires_in", "expiring"),
        [
            (timedelta(0), False),  # expires_at == now is excluded: it is expired
            (-HOUR, False),
            (timedelta(microseconds=1), True),
            (timedelta(hours=168), True),  # expires_at == now + window is included
            (timedelta(hours=168, microseconds=1), False),
            (None, False),  # never expires
        ],
    )
    def test_edges(self, expires_in: timedelta | None, expiring: bool) -> None:
        """Expiring means now < expires_at <= now + window."""
        assert POLICY.is_expiring(token(expires_in), NOW) is expiring
        decision = POLICY.decide(token(expires_in), None, "log", NOW)
        notice = decision.notice
        assert (notice is not None and notice.kind is NoticeKind.EXPIRING) is expiring

    def test_revoked_is_excluded(self) -> None:
        """A token revoked at or before now gets no notice."""
        decision = POLICY.decide(token(DAY, revoked_at=NOW), None, "log", NOW)
        assert decision.notice is None

    def test_revocation_in_the_future_is_not_yet_revoked(self) -> None:
        """A revocation scheduled later (a rotation's grace) leaves the token expiring now."""
        decision = POLICY.decide(token(DAY, revoked_at=NOW + HOUR), None, "log", NOW)
        assert decision.notice is not None


class TestFirstNotice:
    def test_notice_fields(self) -> None:
        """A token first seen in the window is notified with X, seconds left and a stable id."""
        decision = POLICY.decide(token(timedelta(days=2, hours=5)), None, "log", NOW)
        notice = decision.notice
        assert notice is not None
        assert notice.kind is NoticeKind.EXPIRING
        assert notice.days_left == 3
        assert notice.seconds_left == (2 * 24 + 5) * 3600
        assert notice.sink == "log"
        assert notice.token_name == "ci-deploy"
        again = POLICY.decide(token(timedelta(days=2, hours=5)), None, "log", NOW + HOUR)
        assert again.notice is not None
        assert again.notice.id == notice.id  # a retry keeps the id

    def test_ids_differ_per_sink(self) -> None:
        """Each sink's notice has its own id."""
        log_notice = POLICY.decide(token(DAY), None, "log", NOW).notice
        ui_notice = POLICY.decide(token(DAY), None, "ui", NOW).notice
        assert log_notice is not None
        assert ui_notice is not None
        assert log_notice.id != ui_notice.id


class TestBackoff:
    def sent(self, at: datetime, expires_in: timedelta = timedelta(days=5)) -> DeliveryState:
        return DeliveryState(
            expires_at=NOW + expires_in,
            last_sent_at=at,
            notices_sent=1,
            last_kind=StateKind.EXPIRING,
        )

    @pytest.mark.parametrize(
        ("since_last", "notified"),
        [
            (timedelta(hours=1), False),  # honoured
            (timedelta(hours=23), False),  # still honoured: the pass before the due one
            (timedelta(hours=24), True),  # elapsed
            (timedelta(hours=24) - timedelta(milliseconds=50), True),  # a pass 50 ms early
            (timedelta(hours=23, minutes=31), True),  # within the half-interval tolerance
            (timedelta(hours=23, minutes=29), False),  # outside it
        ],
    )
    def test_table(self, since_last: timedelta, notified: bool) -> None:
        """A sink hears again once the backoff has passed, less half the pass interval."""
        state = self.sent(NOW - since_last)
        decision = POLICY.decide(token(timedelta(days=5)), state, "log", NOW)
        assert (decision.notice is not None) is notified

    def test_not_due_says_when(self) -> None:
        """While in backoff, the decision says when the token is due again."""
        state = self.sent(NOW - HOUR)
        decision = POLICY.decide(token(timedelta(days=5)), state, "log", NOW)
        assert decision.next_due_at == NOW - HOUR + timedelta(hours=24) - timedelta(minutes=30)

    def test_zero_backoff_notifies_every_pass(self) -> None:
        """NOTIFIER_BACKOFF_INTERVAL=0 notifies on every pass."""
        policy = replace(POLICY, backoff_interval=timedelta(0))
        state = self.sent(NOW - timedelta(seconds=1))
        assert policy.decide(token(timedelta(days=5)), state, "log", NOW).notice is not None

    def test_extended_expiry_resets(self) -> None:
        """A token whose expiry changed is notified at once, with fresh state."""
        state = self.sent(NOW - HOUR, expires_in=timedelta(days=2))
        decision = POLICY.decide(token(timedelta(days=5)), state, "log", NOW)
        assert decision.notice is not None
        assert decision.state.notices_sent == 0
        assert decision.state.last_sent_at is None
        assert decision.state.expires_at == NOW + timedelta(days=5)

    def test_extended_out_of_the_window_renews(self) -> None:
        """An expiry moved out of the window closes the open loop with a renewed notice."""
        state = self.sent(NOW - HOUR, expires_in=timedelta(days=2))
        decision = POLICY.decide(token(timedelta(days=90)), state, "log", NOW)
        assert decision.notice is not None
        assert decision.notice.kind is NoticeKind.RENEWED
        assert decision.notice.reason == "extended"
        assert decision.next_due_at is None

    def test_next_reminder_has_a_new_id(self) -> None:
        """After a delivery the next reminder is a new notice for deduplicating receivers."""
        the_token = token(timedelta(days=5))
        first = POLICY.decide(the_token, None, "log", NOW)
        recorded = POLICY.delivered(first, NOW)
        second = POLICY.decide(the_token, recorded.state, "log", NOW + timedelta(hours=24))
        assert first.notice is not None
        assert second.notice is not None
        assert second.notice.id != first.notice.id


class TestOutcomes:
    def test_delivered_moves_the_due_time_past_the_backoff(self) -> None:
        """After success the pair is due again one backoff (less tolerance) later."""
        decision = POLICY.decide(token(timedelta(days=5)), None, "log", NOW)
        after = POLICY.delivered(decision, NOW)
        assert after.state.last_sent_at == NOW
        assert after.state.notices_sent == 1
        assert after.next_due_at == NOW + timedelta(hours=23, minutes=30)

    def test_due_time_never_passes_the_expiry(self) -> None:
        """A token expiring before the backoff ends is due at its expiry."""
        decision = POLICY.decide(token(HOUR), None, "log", NOW)
        assert POLICY.delivered(decision, NOW).next_due_at == NOW + HOUR

    def test_transient_failure_is_due_next_pass(self) -> None:
        """A transient failure leaves the pair due, so the next pass retries it."""
        decision = POLICY.decide(token(DAY), None, "log", NOW)
        after = POLICY.failed(decision, NOW, permanent=False)
        assert after.next_due_at == NOW
        assert after.state.attempts == 1
        assert after.state.last_sent_at is None

    def test_permanent_failure_waits_a_backoff(self) -> None:
        """A permanent failure is retried only after a backoff, never in a storm."""
        decision = POLICY.decide(token(DAY * 3), None, "log", NOW)
        after = POLICY.failed(decision, NOW, permanent=True)
        assert after.next_due_at == NOW + timedelta(hours=23, minutes=30)


class TestFingerprint:
    def test_changes_with_the_backoff(self) -> None:
        """Stored due times depend on the backoff; its change shows in the fingerprint."""
        assert POLICY.fingerprint != replace(POLICY, backoff_interval=HOUR).fingerprint
        assert POLICY.fingerprint != replace(POLICY, detection_window=DAY).fingerprint
        assert POLICY.fingerprint != THRESHOLDS.fingerprint
        assert POLICY.fingerprint == replace(POLICY, log_slice=HOUR).fingerprint


def open_state(
    expires_in: timedelta, sent_ago: timedelta = HOUR, **changes: object
) -> DeliveryState:
    state = DeliveryState(
        expires_at=NOW + expires_in,
        last_sent_at=NOW - sent_ago,
        notices_sent=1,
        last_kind=StateKind.EXPIRING,
    )
    return replace(state, **changes)  # type: ignore[arg-type]


THRESHOLDS = replace(
    POLICY,
    thresholds=(
        Threshold("30d", duration=timedelta(days=30)),
        Threshold("7d", duration=timedelta(days=7)),
        Threshold("1d", duration=timedelta(days=1)),
    ),
)


class TestThresholds:
    def test_horizon_reaches_the_widest(self) -> None:
        """The pass reads up to the widest threshold, beyond a narrower window."""
        assert THRESHOLDS.horizon == timedelta(days=30)

    @pytest.mark.parametrize(
        ("left", "label"),
        [
            (timedelta(days=31), None),  # outside every threshold: quiet
            (timedelta(days=20), "30d"),
            (timedelta(days=5), "7d"),  # first seen inside two: one notice, the tightest
            (timedelta(hours=3), "1d"),
        ],
    )
    def test_first_notice_is_for_the_tightest(self, left: timedelta, label: str | None) -> None:
        """A token first seen inside several thresholds gets one notice, for the tightest."""
        decision = THRESHOLDS.decide(token(left), None, "log", NOW)
        got = decision.notice.threshold_label if decision.notice else None
        assert got == label

    def test_outside_says_when_it_enters(self) -> None:
        """A token before its widest threshold is looked at again when it enters it."""
        decision = THRESHOLDS.decide(token(timedelta(days=40)), None, "log", NOW)
        assert decision.notice is None
        assert decision.next_due_at == NOW + timedelta(days=10)

    def test_crossing_inside_the_backoff_notifies_at_once(self) -> None:
        """Entering a tighter threshold notifies even one hour after the last notice."""
        state = open_state(timedelta(days=7) - HOUR, last_threshold=timedelta(days=30))
        decision = THRESHOLDS.decide(token(timedelta(days=7) - HOUR), state, "log", NOW)
        assert decision.notice is not None
        assert decision.notice.threshold_label == "7d"

    def test_same_threshold_waits_for_the_backoff(self) -> None:
        """Within the same threshold the backoff still applies."""
        state = open_state(timedelta(days=5), last_threshold=timedelta(days=7))
        decision = THRESHOLDS.decide(token(timedelta(days=5)), state, "log", NOW)
        assert decision.notice is None
        assert decision.next_due_at == NOW - HOUR + timedelta(hours=23, minutes=30)

    def test_next_look_is_the_next_crossing_when_sooner(self) -> None:
        """In backoff, the next look is the next threshold crossing if that comes first."""
        state = open_state(timedelta(days=1, hours=2), last_threshold=timedelta(days=7))
        decision = THRESHOLDS.decide(token(timedelta(days=1, hours=2)), state, "log", NOW)
        assert decision.notice is None
        assert decision.next_due_at == NOW + timedelta(hours=2)

    def test_percentage_keeps_short_tokens_quiet(self) -> None:
        """With 10%, a 24-hour token is quiet until 2.4 hours are left."""
        policy = replace(POLICY, thresholds=(Threshold("10%", fraction=0.10),))
        created = NOW - timedelta(hours=20)
        short = WatchedToken("store", "t", "short", NOW + timedelta(hours=4), created_at=created)
        assert policy.decide(short, None, "log", NOW).notice is None
        later = NOW + timedelta(hours=2)
        decision = policy.decide(short, None, "log", later)
        assert decision.notice is not None
        assert decision.notice.threshold == timedelta(hours=2, minutes=24)

    def test_percentage_needs_a_lifetime(self) -> None:
        """Without a creation time a percentage cannot apply; a fixed threshold still does."""
        policy = replace(
            POLICY,
            thresholds=(Threshold("10%", fraction=0.1), Threshold("1d", duration=DAY)),
        )
        decision = policy.decide(token(timedelta(hours=5)), None, "log", NOW)
        assert decision.notice is not None
        assert decision.notice.threshold_label == "1d"


class TestExpired:
    def test_expired_after_a_warning(self) -> None:
        """A token that was warned about gets one expired notice when it passes its expiry."""
        state = open_state(-HOUR, sent_ago=timedelta(days=2))
        decision = POLICY.decide(token(-HOUR), state, "log", NOW)
        assert decision.notice is not None
        assert decision.notice.kind is NoticeKind.EXPIRED
        delivered = POLICY.delivered(decision, NOW)
        assert delivered.state.last_kind == "expired"
        again = POLICY.decide(token(-HOUR), delivered.state, "log", NOW + HOUR)
        assert again.notice is None  # once only

    def test_recently_expired_unseen_token(self) -> None:
        """A token never seen valid that expired within the backoff gets its notice."""
        decision = POLICY.decide(token(-timedelta(hours=20)), None, "log", NOW)
        assert decision.notice is not None
        assert decision.notice.kind is NoticeKind.EXPIRED

    def test_no_flood_on_old_data(self) -> None:
        """A token that died long ago and was never warned about stays quiet."""
        decision = POLICY.decide(token(-timedelta(days=30)), None, "log", NOW)
        assert decision.notice is None

    def test_long_dead_but_warned_token_still_hears(self) -> None:
        """Expired since the daemon last saw it valid: the notice comes, however late."""
        state = open_state(-timedelta(days=30), sent_ago=timedelta(days=31))
        decision = POLICY.decide(token(-timedelta(days=30)), state, "log", NOW)
        assert decision.notice is not None
        assert decision.notice.kind is NoticeKind.EXPIRED

    def test_switched_off(self) -> None:
        """With expired notices off, an open loop resolves silently."""
        policy = replace(POLICY, notify_expired=False)
        state = open_state(-HOUR)
        decision = policy.decide(token(-HOUR), state, "log", NOW)
        assert decision.notice is not None
        assert decision.notice.kind is NoticeKind.RESOLVED


class TestClosing:
    def test_revoked_resolves(self) -> None:
        """Revoking a warned-about token resolves it: no message, the UI closes it."""
        decision = POLICY.decide(token(DAY, revoked_at=NOW), open_state(DAY), "ui", NOW)
        assert decision.notice is not None
        assert decision.notice.kind is NoticeKind.RESOLVED

    def test_deleted_resolves(self) -> None:
        """A deleted token (no longer in its source) resolves its open loop."""
        decision = POLICY.decide(None, open_state(DAY), "ui", NOW, token_key=("store", "gone"))
        assert decision.notice is not None
        assert (decision.notice.kind, decision.notice.token_id) == (NoticeKind.RESOLVED, "gone")

    def test_rotated_renews(self) -> None:
        """A superseded token closes its loop with a renewed notice, reason rotated."""
        rotated = replace(token(DAY), superseded=True)
        decision = POLICY.decide(rotated, open_state(DAY), "log", NOW)
        assert decision.notice is not None
        assert (decision.notice.kind, decision.notice.reason) == (NoticeKind.RENEWED, "rotated")

    def test_nothing_to_close(self) -> None:
        """Without an open loop, a revoked token gets nothing."""
        assert POLICY.decide(token(DAY, revoked_at=NOW), None, "log", NOW).notice is None


class TestSnooze:
    def test_until_a_time(self) -> None:
        """A snoozed token is quiet until the snooze ends, and due then."""
        snooze = Snooze(until=NOW + timedelta(days=2))
        decision = POLICY.decide(token(timedelta(days=5)), None, "log", NOW, snooze=snooze)
        assert decision.notice is None
        assert decision.next_due_at == NOW + timedelta(days=2)
        after = POLICY.decide(
            token(timedelta(days=5)), None, "log", NOW + timedelta(days=2), snooze=snooze
        )
        assert after.notice is not None

    def test_until_the_next_threshold(self) -> None:
        """Snoozed in the 7d threshold, the token is quiet until it enters 1d."""
        snooze = Snooze(until=None, threshold=timedelta(days=7))
        quiet = THRESHOLDS.decide(token(timedelta(days=5)), None, "log", NOW, snooze=snooze)
        assert quiet.notice is None
        assert quiet.next_due_at == NOW + timedelta(days=4)
        loud = THRESHOLDS.decide(token(timedelta(hours=20)), None, "log", NOW, snooze=snooze)
        assert loud.notice is not None
