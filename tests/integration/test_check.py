"""The check pass against real databases, with the real log and ui sinks.

The test sinks (notifier.testing's, and one that crashes) implement the Sink protocol the way
a channel would; they stand in for remote receivers, not for our code.
"""

from __future__ import annotations

import threading
from collections.abc import MutableMapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.engine import URL
from structlog.testing import capture_logs

from notifier.core.clock import FixedClock
from notifier.core.model import Notice
from notifier.core.policy import Policy
from notifier.db import migrate
from notifier.db.database import Database, db_now
from notifier.db.models import DeliveryStateRow, Meta, Notification, Token
from notifier.delivery.checker import Checker, PassReport
from notifier.delivery.ledger.candidates import closing_query, due_query
from notifier.notifications import changed_since_query, list_notifications
from notifier.sinks import Outcome, Sink
from notifier.sinks.log import LogSink
from notifier.sinks.ui import UiSink
from notifier.testing import FlakySink, RecordingSink, make_policy
from notifier.tokens.lifecycle import TokenStore

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
POLICY = make_policy()
_state = DeliveryStateRow.__table__


class CrashingSink(RecordingSink):
    """A sink with a bug: it raises."""

    def deliver(self, notices: Sequence[Notice]) -> list[Outcome]:
        raise RuntimeError("boom")


def make_checker(
    database: Database,
    clock: FixedClock,
    sinks: Sequence[Sink],
    *,
    policy: Policy = POLICY,
    batch_size: int = 500,
    owner: str = "test-replica",
    stop: threading.Event | None = None,
) -> Checker:
    return Checker(
        database=database,
        sinks=sinks,
        policy=policy,
        clock=clock,
        lease=timedelta(minutes=10),
        batch_size=batch_size,
        owner=owner,
        stop=stop,
    )


def tokens(database: Database, clock: FixedClock) -> TokenStore:
    return TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None)


def warn_lines(events: list[MutableMapping[str, Any]]) -> list[str]:
    return [str(e["message"]) for e in events if e["event"] == "notice.expiring"]


class TestFirstPass:
    def test_notifies_what_is_in_the_window(self, database: Database, clock: FixedClock) -> None:
        """Tokens inside the window are warned about once per sink; others are left alone."""
        store = tokens(database, clock)
        soon = store.create(name="soon", expires_at=clock.now() + DAY * 2)
        edge = store.create(name="edge", expires_at=clock.now() + timedelta(hours=168))
        store.create(name="later", expires_at=clock.now() + DAY * 30)
        store.create(name="forever", expires_at=None)
        revoked = store.create(name="revoked", expires_at=clock.now() + DAY)
        store.revoke(revoked.id)
        ui = UiSink("ui", database, clock, "day")
        checker = make_checker(database, clock, [LogSink("log", "day"), ui])
        with capture_logs() as events:
            report = checker.run()
        assert warn_lines(events) == [
            f"Warn: API Token soon (ID {soon.id}) will expire in less than 3 days.",
            f"Warn: API Token edge (ID {edge.id}) will expire in less than 8 days.",
        ]
        assert report.in_window == 2
        assert report.sent == {"log": 2, "ui": 2}
        assert report.failures == 0
        active = list_notifications(database)
        assert [n.token_name for n in active] == ["soon", "edge"]
        assert active[0].message == warn_lines(events)[0]
        assert active[0].occurrences == 1

    def test_expired_token_is_not_warned(self, database: Database, clock: FixedClock) -> None:
        """A token at or past its expiry is not "expiring"."""
        store = tokens(database, clock)
        store.create(name="gone", expires_at=clock.now() + HOUR)
        clock.advance(HOUR)
        with capture_logs() as events:
            report = make_checker(database, clock, [LogSink("log", "day")]).run()
        assert warn_lines(events) == []
        assert report.in_window == 0


class TestBackoff:
    @pytest.fixture
    def setup(self, database: Database, clock: FixedClock) -> tuple[Checker, RecordingSink]:
        tokens(database, clock).create(name="t", expires_at=clock.now() + DAY * 5)
        sink = RecordingSink()
        checker = make_checker(database, clock, [sink])
        checker.run()
        assert len(sink.received) == 1
        return checker, sink

    def test_second_pass_is_quiet(
        self, setup: tuple[Checker, RecordingSink], clock: FixedClock
    ) -> None:
        """Within the backoff nothing is sent, and the skip is counted."""
        checker, sink = setup
        clock.advance(HOUR)
        report = checker.run()
        assert len(sink.received) == 1
        assert report.skipped_backoff == 1
        assert report.in_window == 1

    def test_elapsed_backoff_notifies_again(
        self, setup: tuple[Checker, RecordingSink], clock: FixedClock
    ) -> None:
        """Once the backoff has passed, the sink hears again, with a new notice id."""
        checker, sink = setup
        clock.advance(timedelta(hours=24))
        checker.run()
        assert len(sink.received) == 2
        assert sink.received[0].id != sink.received[1].id

    def test_a_pass_50ms_early_does_not_slip(
        self, setup: tuple[Checker, RecordingSink], clock: FixedClock
    ) -> None:
        """A pass that fires 50 ms before the backoff ends still notifies."""
        checker, sink = setup
        clock.advance(timedelta(hours=24) - timedelta(milliseconds=50))
        checker.run()
        assert len(sink.received) == 2

    def test_hourly_passes_notify_once_a_day(
        self, setup: tuple[Checker, RecordingSink], clock: FixedClock
    ) -> None:
        """Over two days of hourly passes (each a little early) a token is notified daily."""
        checker, sink = setup
        for _ in range(48):
            clock.advance(HOUR - timedelta(milliseconds=20))
            checker.run()
        assert len(sink.received) == 3  # the first pass, then after ~24h and ~48h

    def test_extended_expiry_resets(
        self, setup: tuple[Checker, RecordingSink], database: Database, clock: FixedClock
    ) -> None:
        """Moving the expiry resets the state: the new expiry is notified at once."""
        checker, sink = setup
        token_id = sink.received[0].token_id
        with database.write() as connection:
            connection.execute(
                update(Token.__table__)
                .where(Token.__table__.c.id == token_id)
                .values(expires_at=clock.now() + DAY * 6)
            )
        clock.advance(HOUR)
        checker.run()
        assert len(sink.received) == 2
        assert sink.received[1].expires_at == clock.now() - HOUR + DAY * 6

    def test_changed_backoff_applies_at_once(
        self, setup: tuple[Checker, RecordingSink], database: Database, clock: FixedClock
    ) -> None:
        """Stored due times follow a configuration change on the next pass."""
        _, sink = setup
        every_pass = make_policy(backoff_interval=timedelta(0))
        clock.advance(HOUR)
        make_checker(database, clock, [sink], policy=every_pass).run()
        assert len(sink.received) == 2


class TestMixedConfigurations:
    """Replicas running different policies on one database (a rolling update)."""

    @staticmethod
    def changes(events: list[MutableMapping[str, Any]]) -> int:
        return sum(1 for event in events if event["event"] == "check.policy_changed")

    @staticmethod
    def replicas(database: Database, clock: FixedClock) -> tuple[Checker, Checker]:
        """A replica on the old policy and one on a new policy (a shorter backoff)."""
        shorter = replace(POLICY, backoff_interval=timedelta(hours=12))
        old = make_checker(database, clock, [RecordingSink()], owner="old")
        new = make_checker(database, clock, [RecordingSink()], policy=shorter, owner="new")
        return old, new

    def test_side_by_side_they_recompute_once_not_every_pass(
        self, database: Database, clock: FixedClock
    ) -> None:
        """An old and a new configuration passing in turn re-due the state once, for the new."""
        tokens(database, clock).create(name="t", expires_at=clock.now() + DAY * 3)
        old, new = self.replicas(database, clock)
        old.run()
        with capture_logs() as events:
            for _ in range(6):
                clock.advance(HOUR)
                new.run()
                old.run()
        assert self.changes(events) == 1

    def test_the_old_configuration_returns_once_the_new_one_stopped(
        self, database: Database, clock: FixedClock
    ) -> None:
        """A rollback recomputes the due times: the replicas of the other policy retired."""
        old, new = self.replicas(database, clock)
        old.run()
        old.retire()
        new.run()
        new.retire()
        back = make_checker(database, clock, [RecordingSink()], owner="old again")
        with capture_logs() as events:
            back.run()
        assert self.changes(events) == 1

    def test_a_replica_that_died_stops_counting_after_three_intervals(
        self, database: Database, clock: FixedClock
    ) -> None:
        """Without retire() (kill -9), the other policy counts as live for 3 intervals."""
        old, new = self.replicas(database, clock)
        old.run()
        new.run()  # a new policy: the due times are recomputed for it
        old.run()  # the old one is known (its own row) and the new one runs: no change
        with capture_logs() as events:
            clock.advance(HOUR * 3)  # "new" died: its last pass is 3 intervals old
            old.run()
            assert self.changes(events) == 0
            clock.advance(timedelta(minutes=1))
            old.run()
        assert self.changes(events) == 1
        with database.read() as connection:
            keys = connection.execute(select(Meta.__table__.c.key)).scalars().all()
        assert sum(key.startswith("replica:") for key in keys) == 1  # the dead one's row went


class TestDelivery:
    def test_a_failing_sink_does_not_block_another(
        self, database: Database, clock: FixedClock
    ) -> None:
        """One sink failing leaves the other's notices and state untouched."""
        tokens(database, clock).create(name="t", expires_at=clock.now() + DAY)
        flaky, steady = FlakySink(), RecordingSink()
        checker = make_checker(database, clock, [flaky, steady])
        with capture_logs() as events:
            report = checker.run()
        assert len(steady.received) == 1
        assert report.failed == {"flaky": 1}
        failed = [e for e in events if e["event"] == "sink.failed"]
        assert failed[0]["sink"] == "flaky"
        assert failed[0]["permanent"] is False

    def test_transient_failure_is_retried_and_delivered_once(
        self, database: Database, clock: FixedClock
    ) -> None:
        """A receiver that fails for three passes gets every notice exactly once after."""
        store = tokens(database, clock)
        for index in range(3):
            store.create(name=f"t{index}", expires_at=clock.now() + DAY * (index + 1))
        flaky, steady = FlakySink(), RecordingSink()
        checker = make_checker(database, clock, [flaky, steady])
        for _ in range(3):
            assert checker.run().failures == 3
            clock.advance(HOUR)
        flaky.recover()
        checker.run()
        for _ in range(5):
            clock.advance(HOUR)
            checker.run()
        assert sorted(n.token_name for n in flaky.received) == ["t0", "t1", "t2"]
        assert len(steady.received) == 3  # the steady sink heard once, unaffected
        with database.read() as connection:
            row = connection.execute(select(_state).where(_state.c.sink == "flaky")).first()
        assert row is not None
        assert row.attempts == 0
        assert row.last_error is None

    def test_failure_is_recorded(self, database: Database, clock: FixedClock) -> None:
        """A failure leaves attempts and the error in the state row, and the lease released."""
        tokens(database, clock).create(name="t", expires_at=clock.now() + DAY)
        make_checker(database, clock, [FlakySink()]).run()
        with database.read() as connection:
            row = connection.execute(select(_state)).one()
        assert row.attempts == 1
        assert row.last_error == "receiver answered 503"
        assert row.last_sent_at is None
        assert row.lease_owner is None

    def test_permanent_failure_waits_a_backoff(self, database: Database, clock: FixedClock) -> None:
        """A permanent failure is not retried on the next pass, only after the backoff."""
        tokens(database, clock).create(name="t", expires_at=clock.now() + DAY * 5)
        sink = FlakySink(permanent=True)
        checker = make_checker(database, clock, [sink])
        checker.run()
        for _ in range(10):
            clock.advance(HOUR)
            checker.run()
        assert sink.attempts == 1
        clock.advance(timedelta(hours=14))
        checker.run()
        assert sink.attempts == 2

    def test_a_crashing_sink_is_contained(self, database: Database, clock: FixedClock) -> None:
        """A sink that raises fails its batch; the pass and the other sinks go on."""
        tokens(database, clock).create(name="t", expires_at=clock.now() + DAY)
        steady = RecordingSink()
        report = make_checker(database, clock, [CrashingSink("crashy"), steady]).run()
        assert report.failed == {"crashy": 1}
        assert len(steady.received) == 1

    def test_success_is_recorded_after_the_send(
        self, database: Database, clock: FixedClock
    ) -> None:
        """While the sink sends, the row is claimed but not yet marked sent."""
        tokens(database, clock).create(name="t", expires_at=clock.now() + DAY)
        seen: list[tuple[object, object]] = []

        class Peeking(RecordingSink):
            def deliver(self, notices: Sequence[Notice]) -> list[Outcome]:
                with database.read() as connection:
                    row = connection.execute(select(_state)).one()
                seen.append((row.last_sent_at, row.lease_owner))
                return super().deliver(notices)

        make_checker(database, clock, [Peeking("peek")]).run()
        assert seen == [(None, "test-replica")]
        with database.read() as connection:
            row = connection.execute(select(_state)).one()
        assert row.last_sent_at == clock.now()
        assert row.lease_owner is None


class TestClaims:
    def test_a_live_lease_blocks_another_replica(
        self, database: Database, clock: FixedClock
    ) -> None:
        """A row leased by another replica is left to it; once the lease lapses it is retried."""
        created = tokens(database, clock).create(name="t", expires_at=clock.now() + DAY)
        with database.write() as connection:
            connection.execute(
                _state.insert().values(
                    source="store",
                    token_id=created.id,
                    sink="recorder",
                    expires_at=created.expires_at,
                    next_due_at=clock.now(),
                    notices_sent=0,
                    attempts=0,
                    lease_owner="other-replica",
                    lease_until=db_now(600),
                )
            )
        sink = RecordingSink()
        report = make_checker(database, clock, [sink]).run()
        assert report.claimed_elsewhere == 1
        assert sink.received == []
        with database.write() as connection:  # the other replica died; its lease ran out
            connection.execute(update(_state).values(lease_until=db_now(-1)))
        make_checker(database, clock, [sink]).run()
        assert len(sink.received) == 1

    def test_two_replicas_deliver_once(self, database: Database, clock: FixedClock) -> None:
        """Two checkers over the same rows send each notice once between them."""
        store = tokens(database, clock)
        for index in range(20):
            store.create(name=f"t{index}", expires_at=clock.now() + DAY)
        sink = RecordingSink()
        first = make_checker(database, clock, [sink], owner="a", batch_size=7)
        second = make_checker(database, clock, [sink], owner="b", batch_size=7)
        threads = [threading.Thread(target=c.run) for c in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        names = sorted(n.token_name for n in sink.received)
        assert names == sorted(f"t{index}" for index in range(20))


class TestPassShape:
    def test_keyset_batches_cover_equal_expiries(
        self, database: Database, clock: FixedClock
    ) -> None:
        """Batches of 2 over tokens sharing one expiry still notify each exactly once."""
        store = tokens(database, clock)
        expiry = clock.now() + DAY
        for index in range(7):
            store.create(name=f"t{index}", expires_at=expiry)
        sink = RecordingSink()
        make_checker(database, clock, [sink], batch_size=2).run()
        assert sorted(n.token_name for n in sink.received) == [f"t{i}" for i in range(7)]

    def test_dry_run_records_nothing(self, database: Database, clock: FixedClock) -> None:
        """--dry-run says what would be sent, sends nothing and writes no state."""
        tokens(database, clock).create(name="t", expires_at=clock.now() + DAY)
        sink = RecordingSink()
        report = make_checker(database, clock, [sink]).run(dry_run=True)
        assert [n.token_name for n in report.would_send] == ["t"]
        assert sink.received == []
        with database.read() as connection:
            assert connection.execute(select(_state)).all() == []
        assert make_checker(database, clock, [sink]).run().sent == {"recorder": 1}

    def test_stop_between_batches_loses_nothing(
        self, database: Database, clock: FixedClock
    ) -> None:
        """A stop request ends the pass after the current batch; the rest waits, still due."""
        store = tokens(database, clock)
        for index in range(6):
            store.create(name=f"t{index}", expires_at=clock.now() + DAY)
        stop = threading.Event()

        class Stopping(RecordingSink):
            def deliver(self, notices: Sequence[Notice]) -> list[Outcome]:
                stop.set()
                return super().deliver(notices)

        sink = Stopping("stopping")
        report: PassReport = make_checker(database, clock, [sink], batch_size=2, stop=stop).run()
        assert report.interrupted
        assert len(sink.received) == 2
        make_checker(database, clock, [sink]).run()
        assert len(sink.received) == 6

    def test_completed_fields(self, database: Database, clock: FixedClock) -> None:
        """The report carries what check.completed logs."""
        tokens(database, clock).create(name="t", expires_at=clock.now() + DAY)
        fields = make_checker(database, clock, [RecordingSink()]).run().fields()
        assert fields["in_window"] == 1
        assert fields["sent"] == 1
        assert fields["failed"] == 0
        assert fields["skipped_backoff"] == 0
        assert fields["duration_ms"] >= 0


class TestUiSink:
    def test_one_notification_per_token_upserted(
        self, database: Database, clock: FixedClock
    ) -> None:
        """Each notice updates the token's one notification and counts occurrences."""
        tokens(database, clock).create(name="t", expires_at=clock.now() + DAY * 3)
        ui = UiSink("ui", database, clock, "day")
        checker = make_checker(database, clock, [ui])
        checker.run()
        first_seen = clock.now()
        clock.advance(timedelta(hours=25))  # 47h left: "less than 2 days"
        checker.run()
        (notification,) = list_notifications(database)
        assert notification.occurrences == 2
        assert notification.first_seen == first_seen
        assert notification.last_seen == clock.now()
        assert notification.message.endswith("in less than 2 days.")
        assert notification.hint.startswith("Create a new token")

    def test_a_new_notice_brings_back_an_acknowledged_one(
        self, database: Database, clock: FixedClock
    ) -> None:
        """An acknowledged notification is hidden until the next notice for its token."""
        tokens(database, clock).create(name="t", expires_at=clock.now() + DAY * 3)
        checker = make_checker(database, clock, [UiSink("ui", database, clock, "day")])
        checker.run()
        with database.write() as connection:
            connection.execute(update(Notification.__table__).values(acknowledged_at=clock.now()))
        assert list_notifications(database) == []
        assert len(list_notifications(database, include_inactive=True)) == 1
        clock.advance(timedelta(hours=24))
        checker.run()
        (notification,) = list_notifications(database)
        assert notification.acknowledged_at is None


def sqlite_plan(database: Database, query: Any) -> list[str]:
    """SQLite's EXPLAIN QUERY PLAN of *query*, one detail per step."""
    compiled = query.compile(database.engine)
    with database.read() as connection:
        plan = connection.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {compiled}", tuple(compiled.params.values())
        ).all()
    return [str(row[-1]) for row in plan]


def postgresql_plan(database: Database, query: Any) -> str:
    """PostgreSQL's EXPLAIN of *query* with its values inlined, as one text."""
    compiled = query.compile(database.engine, compile_kwargs={"literal_binds": True})
    with database.read() as connection:
        return "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {compiled}"))


@pytest.mark.postgres
def test_the_ledger_and_the_heartbeat_commit_without_waiting_for_the_disk(
    postgres_url: URL, clock: FixedClock
) -> None:
    """The pass's own rows need not survive a crash of the server; a sink's writes do.

    A claim or record the server forgets leaves its notice due (or leased until the lease
    runs out), so it is sent again with its notice id: never lost (docs/architecture.md).
    The ui sink's notification is the notice itself, and waits for the disk.
    """
    database = Database(postgres_url)
    migrate.upgrade(database)
    tokens(database, clock).create(name="a", expires_at=clock.now() + DAY)
    checker = make_checker(
        database, clock, [RecordingSink("rec"), UiSink("ui", database, clock, "day")]
    )
    transactions: list[list[str]] = [[]]  # the statements of each, split at its commit

    def committed(*_: Any) -> None:
        transactions.append([])

    def remember(*args: Any) -> None:
        transactions[-1].append(" ".join(str(args[2]).split()))

    event.listen(database.engine, "commit", committed)
    event.listen(database.engine, "before_cursor_execute", remember)
    checker.run()  # a first pass: claims and records
    clock.advance(HOUR)
    checker.run()  # a steady one: the heartbeat
    event.remove(database.engine, "before_cursor_execute", remember)
    event.remove(database.engine, "commit", committed)
    database.dispose()
    relaxed = "SET LOCAL synchronous_commit TO OFF"
    ledger = [
        statements
        for statements in transactions
        if any(
            # a claim, or a record (the policy's re-due at a first pass is not the pass's)
            sql.startswith(("INSERT INTO delivery_state", "UPDATE delivery_state SET expires_at"))
            for sql in statements
        )
    ]
    assert len(ledger) >= 2  # the claims, and the records with them or after
    assert [statements[0] for statements in ledger] == [relaxed] * len(ledger)
    heartbeat = [
        statements
        for statements in transactions
        if statements[:1] == [relaxed] and statements[1].startswith("INSERT INTO meta")
    ]
    assert heartbeat
    notified = [s for s in transactions if any("INTO notifications" in sql for sql in s)]
    assert notified
    assert all(relaxed not in statements for statements in notified)


class TestQueryPlan:
    def test_due_query_walks_the_expiry_index(self, sqlite_url: URL, clock: FixedClock) -> None:
        """On SQLite the due query is an index range scan over expires_at, never a table scan."""
        database = Database(sqlite_url)
        migrate.upgrade(database)
        query = due_query(
            database, "log", clock.now(), timedelta(hours=168), (clock.now(), "x"), 500
        )
        details = sqlite_plan(database, query)
        database.dispose()
        assert any("ix_tokens_expiry_keyset" in line and "expires_at>" in line for line in details)
        assert not any(line.startswith("SCAN t") for line in details), details
        assert not any("TEMP B-TREE" in line for line in details), details  # no sort step

    def test_closing_query_walks_the_open_loops_in_order(
        self, sqlite_url: URL, clock: FixedClock
    ) -> None:
        """The closing query reads the partial index of open loops, in its order: no sort."""
        database = Database(sqlite_url)
        migrate.upgrade(database)
        query = closing_query(
            database,
            "log",
            clock.now(),
            timedelta(hours=168),
            DAY,
            after=(clock.now(), "x"),
            limit=500,
        )
        details = sqlite_plan(database, query)
        database.dispose()
        assert any("ix_delivery_state_open" in line for line in details), details
        assert not any("TEMP B-TREE" in line for line in details), details

    @pytest.mark.postgres
    def test_postgresql_probes_by_primary_key_without_statistics(
        self, postgres_url: URL, clock: FixedClock
    ) -> None:
        """Before any ANALYZE, each state and each open loop's token is one key probe.

        A freshly filled table has no statistics, and PostgreSQL's planner then took the
        sink's index (or a walk of every token) for the join, which made a steady pass over
        1M tokens take seconds.
        """
        database = Database(postgres_url)
        migrate.upgrade(database)
        with database.write() as connection:
            connection.exec_driver_sql(
                "INSERT INTO delivery_state (source, token_id, sink, notices_sent, attempts,"
                " version, last_kind) SELECT 'store', 't' || n, 'log', 1, 0, 1, 'expiring'"
                " FROM generate_series(1, 5000) AS n"
            )
        window = timedelta(hours=168)
        due = postgresql_plan(database, due_query(database, "log", clock.now(), window, None, 500))
        closing = postgresql_plan(
            database,
            closing_query(database, "log", clock.now(), window, DAY, after=None, limit=500),
        )
        database.dispose()
        assert "Index Scan using delivery_state_pkey" in due, due
        assert "Index Scan using tokens_pkey" in closing, closing
        assert "Index Scan using ix_delivery_state_open" in closing, closing
        for plan in (due, closing):
            assert not any(word in plan for word in ("Seq Scan", "Hash", "Merge")), plan

    @pytest.mark.postgres
    def test_postgresql_counts_the_due_first_and_reads_no_page_when_none_is(
        self, postgres_url: URL, clock: FixedClock
    ) -> None:
        """With current statistics a pass counts what is due, and pages only when any is.

        A page's LIMIT led the planner to probe every token's state by key, to the window's
        end when nothing is due; the count is planned for the whole window
        (``due_count_query``). Something due later is still found and sent.
        """
        database = Database(postgres_url)
        migrate.upgrade(database)
        store = tokens(database, clock)
        for index in range(20):
            store.create(name=f"t{index}", expires_at=clock.now() + DAY * 3)
        sink = RecordingSink("one")
        checker = make_checker(database, clock, [sink])
        assert checker.run().sent == {"one": 20}
        with database.write() as connection:
            connection.exec_driver_sql("ANALYZE tokens")
            connection.exec_driver_sql("ANALYZE delivery_state")
        statements: list[str] = []

        def seen(*args: Any) -> None:
            statements.append(" ".join(str(args[2]).split()))

        event.listen(database.engine, "before_cursor_execute", seen)
        steady = checker.run()
        steady_statements, statements[:] = list(statements), []
        store.create(name="later", expires_at=clock.now() + DAY * 2)
        later = checker.run()
        event.remove(database.engine, "before_cursor_execute", seen)
        database.dispose()
        assert steady.sent == {}
        counts = [text for text in steady_statements if text.startswith("SELECT count(*)")]
        assert len(counts) == 1, steady_statements
        assert "NOT (EXISTS (SELECT 1 FROM delivery_state" in counts[0]
        assert not [text for text in steady_statements if ") AS due JOIN tokens" in text]
        assert later.sent == {"one": 1}
        assert [notice.token_name for notice in sink.received[20:]] == ["later"]
        assert [text for text in statements if ") AS due JOIN tokens" in text]

    @pytest.mark.postgres
    def test_a_pass_that_creates_many_states_refreshes_the_statistics(
        self, postgres_url: URL, clock: FixedClock
    ) -> None:
        """After 600 new state rows PostgreSQL knows the table's size: it was analyzed."""
        database = Database(postgres_url)
        migrate.upgrade(database)
        store = tokens(database, clock)
        for index in range(300):
            store.create(name=f"t{index}", expires_at=clock.now() + DAY * 3)
        sinks = [RecordingSink("one"), RecordingSink("two")]
        with capture_logs() as events:
            make_checker(database, clock, sinks).run()
        with database.read() as connection:
            tuples = connection.exec_driver_sql(
                "SELECT reltuples FROM pg_class WHERE oid = 'delivery_state'::regclass"
            ).scalar()
        database.dispose()
        assert tuples == 600
        assert not [e for e in events if e["event"] == "check.analyze_failed"]

    def test_the_live_stream_poll_uses_an_index_per_time(
        self, sqlite_url: URL, clock: FixedClock
    ) -> None:
        """The stream's poll (seen, acknowledged or resolved since) never scans the table."""
        database = Database(sqlite_url)
        migrate.upgrade(database)
        details = sqlite_plan(database, changed_since_query(clock.now()))
        database.dispose()
        for index in ("last_seen", "acknowledged_at", "resolved_at"):
            searched = f"SEARCH notifications USING INDEX ix_notifications_{index} ({index}>?)"
            assert searched in details, details
        assert not any(line.startswith("SCAN notifications") for line in details), details
