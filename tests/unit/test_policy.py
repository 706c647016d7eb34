from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from notifier.policy import (
    DeliveryState,
    NoticeKind,
    Policy,
    WatchedToken,
    days_left,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
POLICY = Policy(
    detection_window=timedelta(hours=168),
    backoff_interval=timedelta(hours=24),
    pass_interval=timedelta(hours=1),
    log_slice=DAY,
)


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
        assert (decision.notice is not None) is expiring

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
        return DeliveryState(expires_at=NOW + expires_in, last_sent_at=at, notices_sent=1)

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
        assert POLICY.fingerprint == replace(POLICY, detection_window=DAY).fingerprint
