"""The pass's crash safety in one process: chunks, releases on stop, settling after a failure.

The sinks here stand in for remote receivers (slow, failing, or one that watches the state
while it is called); the database is real, SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import URL

from notifier.core.clock import FixedClock
from notifier.core.model import Notice
from notifier.db import migrate
from notifier.db.database import Database, DatabaseUnavailableError
from notifier.db.models import DeliveryStateRow
from notifier.delivery.checker import Checker
from notifier.sinks import EVERYTHING, MESSAGE_KINDS, Outcome
from notifier.testing import make_policy
from notifier.tokens.lifecycle import TokenStore

from .conftest import outage

DAY = timedelta(days=1)
POLICY = make_policy()
_state = DeliveryStateRow.__table__


class CallSink:
    """A receiver that remembers each call, optionally slow, failing or with a hook."""

    kinds = MESSAGE_KINDS
    digest = False
    route = EVERYTHING

    def __init__(self, name: str = "hook", *, pause: float = 0.0, fail: bool = False) -> None:
        self.name = name
        self.pause = pause
        self.fail = fail
        self.calls: list[list[str]] = []
        self.on_call: list[object] = []  # what the hook saw at each call

    def hook(self, call: int) -> object:
        """Called at the start of every delivery; its result is kept in on_call."""
        del call
        return None

    def deliver(self, notices: Sequence[Notice]) -> list[Outcome]:
        self.on_call.append(self.hook(len(self.calls)))
        self.calls.append([notice.token_id for notice in notices])
        time.sleep(self.pause * len(notices))
        if self.fail:
            return [Outcome.failed("receiver answered 503")] * len(notices)
        return [Outcome.sent()] * len(notices)

    @property
    def received(self) -> list[str]:
        return [token for call in self.calls for token in call]

    def close(self) -> None:
        pass


def checker(
    database: Database,
    clock: FixedClock,
    sink: CallSink,
    *,
    owner: str = "replica-a",
    stop: threading.Event | None = None,
) -> Checker:
    return Checker(
        database=database,
        sinks=[sink],
        policy=POLICY,
        clock=clock,
        lease=timedelta(minutes=10),
        owner=owner,
        stop=stop,
    )


def create_tokens(database: Database, clock: FixedClock, count: int) -> list[str]:
    store = TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None)
    return [
        store.create(
            name=f"t{index:03d}", expires_at=clock.now() + DAY + timedelta(seconds=index)
        ).id
        for index in range(count)
    ]


def state(database: Database) -> list[tuple[str, int, str | None]]:
    """(token id, notices sent, lease owner) of every state row."""
    with database.read() as connection:
        rows = connection.execute(
            select(_state.c.token_id, _state.c.notices_sent, _state.c.lease_owner).order_by(
                _state.c.token_id
            )
        ).all()
    return [(row[0], row[1], row[2]) for row in rows]


class TestChunks:
    def test_a_slow_sink_gets_chunks_recorded_one_by_one(
        self, database: Database, clock: FixedClock
    ) -> None:
        """A slow sink gets its batch in chunks, and each chunk is recorded before the next."""
        ids = create_tokens(database, clock, 24)

        class Watching(CallSink):
            def hook(self, call: int) -> object:
                return sum(sent for _, sent, _ in state(database))

        sink = Watching(pause=0.05)
        checker(database, clock, sink).run()
        assert len(sink.calls) >= 2
        assert sink.received == sorted(ids, key=ids.index)
        # at each call, the notices of the earlier calls were already recorded as sent
        assert sink.on_call == [sum(len(c) for c in sink.calls[:i]) for i in range(len(sink.calls))]

    def test_a_failure_ends_chunking_so_the_rest_shares_one_deadline(
        self, database: Database, clock: FixedClock
    ) -> None:
        """After a chunk with a failure, the rest of the batch goes in one call."""
        create_tokens(database, clock, 40)
        sink = CallSink(pause=0.05, fail=True)
        report = checker(database, clock, sink).run()
        assert [len(call) for call in sink.calls] == [16, 24]
        assert report.failures == 40


class TestStop:
    def test_a_stop_releases_the_claims_not_sent(
        self, database: Database, clock: FixedClock
    ) -> None:
        """A stop request between chunks releases the rest: no lease left, nothing lost."""
        ids = create_tokens(database, clock, 40)
        stop = threading.Event()

        class Stopping(CallSink):
            def hook(self, call: int) -> object:
                stop.set()  # SIGTERM arrives while the first chunk is being sent
                return call

        sink = Stopping()
        report = checker(database, clock, sink, stop=stop).run()
        assert report.interrupted
        assert len(sink.received) == 16  # the chunk in flight finished
        assert report.released == 24
        rows = state(database)
        assert sum(sent for _, sent, _ in rows) == 16
        assert all(owner is None for _, _, owner in rows)  # nothing waits for a lease
        other = CallSink()
        again = checker(database, clock, other, owner="replica-b").run()
        assert again.claimed_elsewhere == 0
        assert sorted(sink.received + other.received) == sorted(ids)


class TestLeaseGuard:
    def test_a_late_record_does_not_overwrite_a_lease_taken_over(
        self, database: Database, clock: FixedClock
    ) -> None:
        """Outcomes are written only over our own lease: a replica that took over keeps it."""
        create_tokens(database, clock, 3)

        class Overtaken(CallSink):
            def hook(self, call: int) -> object:
                # Our lease ran out while we were sending, and replica-b claimed the rows.
                with database.write() as connection:
                    connection.execute(update(_state).values(lease_owner="replica-b"))
                return call

        checker(database, clock, Overtaken()).run()
        assert state(database) == [(token, 0, "replica-b") for token, _, _ in state(database)]


@pytest.mark.postgres
class TestSettle:
    def test_outcomes_lost_to_an_outage_are_written_by_the_next_pass(
        self, postgres_url: URL, clock: FixedClock
    ) -> None:
        """The database fails after the send: the next pass records it instead of resending."""
        database = Database(postgres_url)
        migrate.upgrade(database)
        ids = create_tokens(database, clock, 5)
        restore = threading.Event()

        class CuttingTheLine(CallSink):
            def hook(self, call: int) -> object:
                context = outage(postgres_url)
                context.__enter__()  # the database goes away while we send
                threading.Thread(
                    target=lambda: (restore.wait(30), context.__exit__(None, None, None))
                ).start()
                return call

        sink = CuttingTheLine()
        failing = checker(database, clock, sink)
        with pytest.raises(DatabaseUnavailableError):
            failing.run()
        restore.set()
        deadline = time.monotonic() + 10
        while True:  # wait for the database to take connections again
            try:
                database.ping()
                break
            except DatabaseUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        report = failing.run()
        assert report.sent == {}  # recorded by settle(), not sent again
        assert sink.received == ids
        assert state(database) == [(token, 1, None) for token in sorted(ids)]
        database.dispose()


@pytest.mark.postgres
class TestPgBouncerOption:
    def test_prepare_threshold_none_turns_prepared_statements_off(self, postgres_url: URL) -> None:
        """?prepare_threshold=none reaches psycopg (PgBouncer transaction pooling)."""
        database = Database(postgres_url.update_query_dict({"prepare_threshold": "none"}))
        with database.read() as connection:
            assert connection.connection.driver_connection.prepare_threshold is None  # type: ignore[union-attr]
        database.dispose()

    def test_a_bad_prepare_threshold_names_the_variable(self, postgres_url: URL) -> None:
        """A value that is neither a count nor none is refused, naming the URL variable."""
        with pytest.raises(ValueError, match="NOTIFIER_DATABASE_URL: prepare_threshold"):
            Database(postgres_url.update_query_dict({"prepare_threshold": "sometimes"}))
