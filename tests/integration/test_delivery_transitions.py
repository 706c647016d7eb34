"""Thresholds, expired / renewed / revoked transitions, snooze and acknowledge.

Each through passes over real databases with the real log and ui sinks.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from structlog.testing import capture_logs

from notifier.audit import list_events
from notifier.core.clock import FixedClock
from notifier.core.model import Threshold
from notifier.core.policy import Policy
from notifier.db.database import Database
from notifier.db.models import Token
from notifier.delivery.checker import Checker
from notifier.delivery.snoozes import snooze
from notifier.notifications import acknowledge, list_notifications
from notifier.sinks import Sink
from notifier.sinks.log import LogSink
from notifier.sinks.ui import UiSink
from notifier.testing import make_policy
from notifier.tokens.importer import read_records
from notifier.tokens.lifecycle import TokenStore

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
POLICY = make_policy()
THRESHOLDS = replace(
    POLICY,
    thresholds=(
        Threshold("30d", duration=DAY * 30),
        Threshold("3d", duration=DAY * 3),
        Threshold("1d", duration=DAY),
    ),
)


def passes(database: Database, clock: FixedClock, policy: Policy = POLICY) -> Checker:
    sinks: list[Sink] = [LogSink("log", "day"), UiSink("ui", database, clock, "day")]
    return Checker(
        database=database, sinks=sinks, policy=policy, clock=clock, lease=timedelta(minutes=5)
    )


def store(database: Database, clock: FixedClock, policy: Policy = POLICY) -> TokenStore:
    return TokenStore(database, clock, policy, prefix="ntf_", pepper=None)


def lines(events: list[MutableMapping[str, Any]]) -> list[str]:
    return [str(e["message"]) for e in events if str(e["event"]).startswith("notice.")]


class TestThresholds:
    def test_crossing_inside_the_backoff_notifies_at_once(
        self, database: Database, clock: FixedClock
    ) -> None:
        """Two hours after the 30d notice, entering 3d notifies at once, whatever the backoff."""
        created = store(database, clock, THRESHOLDS).create(
            name="t", expires_at=clock.now() + DAY * 3 + HOUR
        )
        run = passes(database, clock, THRESHOLDS)
        with capture_logs() as first:
            run.run()
        clock.advance(HOUR * 2)
        with capture_logs() as second:
            run.run()
        clock.advance(HOUR)
        with capture_logs() as third:
            run.run()
        assert lines(first) == [
            f"Warn: API Token t (ID {created.id}) will expire in less than 4 days."
        ]
        assert lines(second) == [
            f"Warn: API Token t (ID {created.id}) will expire in less than 3 days."
        ]
        assert lines(third) == []  # still 3d, inside the backoff

    def test_the_horizon_is_the_widest_threshold(
        self, database: Database, clock: FixedClock
    ) -> None:
        """A token 20 days out is read and warned about because of the 30d threshold."""
        store(database, clock, THRESHOLDS).create(name="t", expires_at=clock.now() + DAY * 20)
        with capture_logs() as events:
            report = passes(database, clock, THRESHOLDS).run()
        assert len(lines(events)) == 1
        assert report.in_window == 1


class TestExpired:
    def test_warned_token_gets_one_expired_notice(
        self, database: Database, clock: FixedClock
    ) -> None:
        """A token warned about gets exactly one expired notice; its UI notification turns red."""
        created = store(database, clock).create(name="t", expires_at=clock.now() + HOUR * 2)
        run = passes(database, clock)
        run.run()
        clock.advance(HOUR * 3)
        with capture_logs() as events:
            run.run()
            clock.advance(HOUR)
            run.run()
        assert lines(events) == [f"Warn: API Token t (ID {created.id}) has expired."]
        (notification,) = list_notifications(database)
        assert (notification.level, notification.kind) == ("error", "expired")

    def test_no_flood_at_first_start_on_old_data(
        self, database: Database, clock: FixedClock
    ) -> None:
        """On first start, long-dead tokens stay quiet; one that just expired is reported."""
        records = read_records(
            "\n".join(
                [
                    f'{{"id": "dead{i}", "name": "old {i}", "expires_at": '
                    f'"{(clock.now() - DAY * (30 + i)).isoformat()}"}}'
                    for i in range(50)
                ]
                + [
                    (
                        '{"id": "fresh", "name": "just now", "expires_at": '
                        f'"{(clock.now() - HOUR).isoformat()}"}}'
                    )
                ]
            ),
            "jsonl",
        )
        store(database, clock).import_records(records)
        with capture_logs() as events:
            passes(database, clock).run()
        assert lines(events) == ["Warn: API Token just now (ID fresh) has expired."]


class TestClosing:
    def test_renewed_closes_the_loop(self, database: Database, clock: FixedClock) -> None:
        """Extending a warned token out of the window sends a renewed notice and resolves the UI."""
        created = store(database, clock).create(name="t", expires_at=clock.now() + DAY * 2)
        run = passes(database, clock)
        run.run()
        with database.write() as connection:
            connection.execute(update(Token.__table__).values(expires_at=clock.now() + DAY * 365))
        clock.advance(HOUR)
        with capture_logs() as events:
            run.run()
        (line,) = lines(events)
        assert line.startswith(f"Info: API Token t (ID {created.id}) no longer expires soon")
        assert list_notifications(database) == []
        (resolved,) = list_notifications(database, include_inactive=True)
        assert resolved.resolved_at == clock.now()

    def test_revoked_gets_no_notice_and_resolves(
        self, database: Database, clock: FixedClock
    ) -> None:
        """A revoked token gets no more notices, and its UI notification is resolved."""
        tokens = store(database, clock)
        created = tokens.create(name="t", expires_at=clock.now() + DAY * 2)
        run = passes(database, clock)
        run.run()
        tokens.revoke(created.id)
        clock.advance(DAY)
        with capture_logs() as events:
            run.run()
            clock.advance(DAY * 2)
            run.run()
        assert lines(events) == []
        assert list_notifications(database) == []

    def test_rotated_closes_with_renewed(self, database: Database, clock: FixedClock) -> None:
        """Rotation closes the old token's loop; the new token is a token of its own."""
        tokens = store(database, clock)
        old = tokens.create(name="t", expires_at=clock.now() + DAY * 2)
        run = passes(database, clock)
        run.run()
        new = tokens.rotate(old.id, grace=HOUR, ttl=DAY * 3)
        clock.advance(HOUR)
        with capture_logs() as events:
            run.run()
        assert sorted(lines(events)) == sorted(
            [
                (
                    f"Info: API Token t (ID {old.id}) was rotated; "
                    "the old secret is no longer warned about."
                ),
                f"Warn: API Token t (ID {new.id}) will expire in less than 3 days.",
            ]
        )
        assert [n.token_id for n in list_notifications(database)] == [new.id]

    def test_deleted_resolves(self, database: Database, clock: FixedClock) -> None:
        """Deleting a token also removes its notification; nothing is said about it again."""
        tokens = store(database, clock)
        created = tokens.create(name="t", expires_at=clock.now() + DAY * 2)
        run = passes(database, clock)
        run.run()
        tokens.delete(created.id)
        clock.advance(DAY)
        with capture_logs() as events:
            run.run()
        assert lines(events) == []
        assert list_notifications(database, include_inactive=True) == []


class TestSnoozeAndAck:
    def test_snooze_until_a_time(self, database: Database, clock: FixedClock) -> None:
        """A snoozed token is quiet until the snooze ends; then it is due at once."""
        created = store(database, clock).create(name="t", expires_at=clock.now() + DAY * 6)
        snooze(
            database,
            source="store",
            token_id=created.id,
            token_name="t",
            sink=None,
            until=clock.now() + DAY * 2,
            threshold=None,
            now=clock.now(),
            actor="user:x",
        )
        run = passes(database, clock)
        with capture_logs() as quiet:
            for _ in range(47):
                run.run()
                clock.advance(HOUR)
        clock.advance(HOUR)
        with capture_logs() as loud:
            run.run()
        assert lines(quiet) == []
        assert len(lines(loud)) == 1
        assert [e.action for e in list_events(database, token_id=created.id)][:1] == ["snooze"]

    def test_snooze_one_sink(self, database: Database, clock: FixedClock) -> None:
        """A snooze for one sink leaves the others speaking."""
        created = store(database, clock).create(name="t", expires_at=clock.now() + DAY * 3)
        snooze(
            database,
            source="store",
            token_id=created.id,
            token_name="t",
            sink="log",
            until=clock.now() + DAY,
            threshold=None,
            now=clock.now(),
            actor="user:x",
        )
        with capture_logs() as events:
            passes(database, clock).run()
        assert lines(events) == []  # the log sink is snoozed
        assert len(list_notifications(database)) == 1  # the ui sink is not

    def test_acknowledge_hides_until_the_next_notice(
        self, database: Database, clock: FixedClock
    ) -> None:
        """An acknowledged notification is hidden until the token's next notice, and audited."""
        store(database, clock).create(name="t", expires_at=clock.now() + DAY * 5)
        run = passes(database, clock)
        run.run()
        (notification,) = list_notifications(database)
        acknowledge(database, notification.id, now=clock.now(), actor="user:ops")
        assert list_notifications(database) == []
        clock.advance(HOUR * 5)
        run.run()
        assert list_notifications(database) == []  # no new notice yet: still hidden
        clock.advance(DAY)
        run.run()
        (back,) = list_notifications(database)
        assert back.id == notification.id
        assert back.occurrences == 2
        (event,) = [e for e in list_events(database) if e.action == "ack"]
        assert event.actor == "user:ops"
