"""notifier.testing: the shipped test sinks keep the Sink contract, and the policy builder."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notifier.core.model import Notice, NoticeKind, Threshold
from notifier.core.policy import Policy
from notifier.sinks import EVERYTHING, MESSAGE_KINDS, Outcome, Route, Sink
from notifier.testing import FixedClock, FlakySink, RecordingSink, make_policy

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def notice(token_id: str) -> Notice:
    return Notice(
        id=f"n-{token_id}",
        kind=NoticeKind.EXPIRING,
        sink="test",
        source="store",
        token_id=token_id,
        token_name=f"name-{token_id}",
        owner=None,
        expires_at=NOW + DAY,
        days_left=2,
        seconds_left=86_400,
        threshold=None,
    )


A, B, C = notice("a"), notice("b"), notice("c")
SENT = Outcome.sent()
FAILED = Outcome.failed("receiver answered 503")


class TestRecordingSink:
    def test_is_a_sink(self) -> None:
        """It has what the Sink protocol asks: a name, a route, kinds, digest, deliver, close."""
        sink: Sink = RecordingSink()
        assert (sink.name, sink.route, sink.kinds, sink.digest) == (
            "recorder",
            EVERYTHING,
            MESSAGE_KINDS,
            False,
        )

    def test_answers_sent_for_each_notice_in_order(self) -> None:
        """Every notice is accepted, one outcome each, and kept in the order given."""
        sink = RecordingSink()
        assert sink.deliver([A, B]) == [SENT, SENT]
        assert sink.deliver([C]) == [SENT]
        assert sink.received == [A, B, C]
        assert sink.batches == [[A, B], [C]]

    def test_an_empty_batch_answers_nothing(self) -> None:
        """No notices, no outcomes, and the call is still recorded."""
        sink = RecordingSink()
        assert sink.deliver([]) == []
        assert sink.batches == [[]]

    def test_name_route_and_kinds_are_the_callers(self) -> None:
        """What the caller gives is what the pass sees."""
        route = Route(owners=("ops@*",))
        sink = RecordingSink("webhook:ops", route, kinds=frozenset({NoticeKind.EXPIRED}))
        assert (sink.name, sink.route, sink.kinds) == (
            "webhook:ops",
            route,
            frozenset({NoticeKind.EXPIRED}),
        )

    def test_close_is_remembered(self) -> None:
        """A test can see that whoever built the sink closed it."""
        sink = RecordingSink()
        sink.close()
        assert sink.closed


class TestFlakySink:
    def test_fails_everything_until_it_recovers(self) -> None:
        """Without a script every notice fails, transiently, until recover()."""
        sink = FlakySink()
        assert sink.deliver([A, B]) == [FAILED, FAILED]
        assert not FAILED.permanent
        sink.recover()
        assert sink.deliver([A]) == [SENT]
        assert sink.received == [A]
        assert sink.failed == [A, B]
        assert sink.attempts == 3

    def test_permanent_failures_with_their_error(self) -> None:
        """``permanent`` and ``error`` shape each failed outcome."""
        sink = FlakySink(permanent=True, error="webhook answered 404")
        assert sink.deliver([A]) == [Outcome.failed("webhook answered 404", permanent=True)]

    def test_the_first_n_notices_fail(self) -> None:
        """``failures=2`` fails the first two notices offered, across calls, then delivers."""
        sink = FlakySink(failures=2)
        assert sink.deliver([A]) == [FAILED]
        assert sink.deliver([B, C]) == [FAILED, SENT]
        assert sink.deliver([A]) == [SENT]
        assert sink.received == [C, A]
        assert sink.batches == [[A], [B, C], [A]]

    def test_only_the_named_tokens_fail(self) -> None:
        """``tokens`` fails the notices of those token ids and delivers the others."""
        sink = FlakySink(tokens={"b"})
        assert sink.deliver([A, B, C]) == [SENT, FAILED, SENT]
        assert sink.received == [A, C]
        assert sink.failed == [B]

    def test_tokens_and_a_count_together(self) -> None:
        """With both, only the named tokens fail, and only the first *n* times."""
        sink = FlakySink(tokens={"a"}, failures=1)
        assert sink.deliver([B, A, A]) == [SENT, FAILED, SENT]

    def test_recovery_ends_any_script(self) -> None:
        """After recover(), a token the script names is delivered too."""
        sink = FlakySink(tokens={"a"})
        sink.recover()
        assert sink.deliver([A]) == [SENT]

    def test_is_a_sink(self) -> None:
        """It keeps the Sink shape of a recording sink, under its own name."""
        sink: Sink = FlakySink("webhook")
        assert (sink.name, sink.digest) == ("webhook", False)
        assert FlakySink().name == "flaky"

    def test_sinks_are_compared_by_identity(self) -> None:
        """Two sinks with the same contents are two sinks, each usable as a key."""
        first, second = RecordingSink(), RecordingSink()
        assert first != second
        assert len({first, second}) == 2


class TestMakePolicy:
    def test_defaults_are_the_tests_policy(self) -> None:
        """7-day window, 24 h backoff, hourly passes, days; no thresholds; expired notices."""
        assert make_policy() == Policy(
            detection_window=timedelta(hours=168),
            backoff_interval=timedelta(hours=24),
            pass_interval=timedelta(hours=1),
            log_slice=timedelta(days=1),
        )

    @pytest.mark.parametrize(
        ("overrides", "field", "value"),
        [
            ({"backoff_interval": timedelta(0)}, "backoff_interval", timedelta(0)),  # every pass
            ({"detection_window": 30 * DAY}, "detection_window", 30 * DAY),
            ({"notify_expired": False}, "notify_expired", False),
            (
                {"thresholds": (Threshold("7d", duration=7 * DAY),)},
                "thresholds",
                (Threshold("7d", duration=7 * DAY),),
            ),
        ],
    )
    def test_an_override_changes_only_its_field(
        self, overrides: dict[str, Any], field: str, value: Any
    ) -> None:
        """Each keyword replaces its field and leaves the defaults of the others."""
        policy = make_policy(**overrides)
        assert getattr(policy, field) == value
        assert policy == replace(make_policy(), **{field: value})

    def test_an_unknown_field_is_refused(self) -> None:
        """A typo is an error, not a silently ignored keyword."""
        with pytest.raises(TypeError):
            make_policy(backoff=DAY)  # type: ignore[call-arg]  # the typo under test


def test_the_clock_is_the_core_one() -> None:
    """FixedClock comes along, so a test imports its helpers from one place."""
    clock = FixedClock(NOW)
    clock.advance(DAY)
    assert clock.now() == NOW + DAY


def test_importing_it_pulls_in_nothing_heavy() -> None:
    """No pytest, database or HTTP library is imported with notifier.testing."""
    heavy = ["pytest", "sqlalchemy", "httpx", "fastapi", "structlog", "notifier.db"]
    script = (
        "import sys, notifier.testing\n"
        f"print(','.join(name for name in {heavy!r} if name in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
