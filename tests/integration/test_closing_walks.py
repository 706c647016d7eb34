"""Open loops are closed whether or not a pass walks every one of them.

A pass walks a sink's open loops only when tokens changed since its last walk that found
nothing, or a scheduled revocation came (notifier/delivery/ledger/candidates.py, migration
0004); otherwise it reads only the loops that left the window by time. These tests keep a
checker across passes, so that its memory of the last walk is in play, and change tokens
through the store and through an operator's own SQL, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update

from notifier.core.clock import FixedClock
from notifier.core.model import NoticeKind
from notifier.db.database import Database
from notifier.db.models import DeliveryStateRow, Meta, Token
from notifier.delivery.checker import Checker
from notifier.delivery.ledger.candidates import CHANGES, Walks, expired_loops_query
from notifier.testing import FlakySink, RecordingSink, make_policy
from notifier.tokens.lifecycle import TokenStore

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
POLICY = make_policy()
_state = DeliveryStateRow.__table__
_tokens = Token.__table__
_meta = Meta.__table__


def checker(database: Database, clock: FixedClock, sink: RecordingSink, **policy: Any) -> Checker:
    return Checker(
        database=database,
        sinks=[sink],
        policy=make_policy(**policy) if policy else POLICY,
        clock=clock,
        lease=timedelta(minutes=10),
        owner="test-replica",
    )


def store(database: Database, clock: FixedClock) -> TokenStore:
    return TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None)


def changes(database: Database) -> int:
    with database.read() as connection:
        value = connection.execute(select(_meta.c.value).where(_meta.c.key == CHANGES)).scalar_one()
    return int(value)


def last_kind(database: Database, token_id: str, sink: str) -> str | None:
    with database.read() as connection:
        return connection.execute(
            select(_state.c.last_kind).where(_state.c.token_id == token_id, _state.c.sink == sink)
        ).scalar()


@pytest.fixture
def statements(database: Database) -> Iterator[list[str]]:
    """The SQL the database runs, from now on."""
    seen: list[str] = []

    def remember(*args: Any) -> None:
        seen.append(" ".join(str(args[2]).split()))

    event.listen(database.engine, "before_cursor_execute", remember)
    yield seen
    event.remove(database.engine, "before_cursor_execute", remember)


def walks(statements: list[str]) -> list[str]:
    """The statements that walk every open loop (not only those that left by time)."""
    return [
        s
        for s in statements
        if "delivery_state.last_kind = 'expiring'" in s and "delivery_state.expires_at <=" not in s
    ]


class TestTheCount:
    def test_changes_that_can_close_a_loop_are_counted(
        self, database: Database, clock: FixedClock
    ) -> None:
        tokens = store(database, clock)
        token = tokens.create(name="a", expires_at=clock.now() + DAY * 3)
        other = tokens.create(name="b", expires_at=clock.now() + DAY * 3)
        start = changes(database)
        with database.write() as connection:
            connection.execute(update(_tokens).where(_tokens.c.id == token.id).values(name="x"))
            connection.execute(update(_tokens).values(last_used_at=clock.now()))
        assert changes(database) == start  # a name, a use: no loop can close
        with database.write() as connection:
            connection.execute(
                update(_tokens)
                .where(_tokens.c.id == token.id)
                .values(expires_at=clock.now() + DAY * 90)
            )
        assert changes(database) == start + 1
        tokens.revoke(token.id)
        assert changes(database) == start + 2
        tokens.rotate(other.id)
        after_rotation = changes(database)
        assert after_rotation > start + 2
        tokens.delete(token.id)
        assert changes(database) > after_rotation

    def test_setting_a_value_to_itself_is_not_a_change(
        self, database: Database, clock: FixedClock
    ) -> None:
        """An import that rewrites the same rows must not make every pass walk."""
        token = store(database, clock).create(name="a", expires_at=clock.now() + DAY)
        start = changes(database)
        with database.write() as connection:
            connection.execute(
                update(_tokens)
                .where(_tokens.c.id == token.id)
                .values(expires_at=token.expires_at, revoked_at=None, superseded_by=None)
            )
        assert changes(database) == start


class TestAfterARememberedWalk:
    def open_loop(
        self, database: Database, clock: FixedClock, sink: RecordingSink, **policy: Any
    ) -> tuple[Checker, str]:
        """A token told "expiring", and a steady pass whose walk found nothing to close."""
        token = store(database, clock).create(name="a", expires_at=clock.now() + DAY * 3)
        pass_ = checker(database, clock, sink, **policy)
        pass_.run()
        assert last_kind(database, token.id, sink.name) == "expiring"
        clock.advance(HOUR)
        pass_.run()
        return pass_, token.id

    def test_a_steady_pass_does_not_walk_every_loop(
        self, database: Database, clock: FixedClock, statements: list[str]
    ) -> None:
        pass_, _ = self.open_loop(database, clock, RecordingSink("rec"))
        statements.clear()
        clock.advance(HOUR)
        pass_.run()
        assert walks(statements) == []
        assert any("delivery_state.expires_at <=" in s for s in statements)  # by time only

    def test_a_revocation_closes_the_loop(self, database: Database, clock: FixedClock) -> None:
        pass_, token_id = self.open_loop(database, clock, RecordingSink("rec"))
        store(database, clock).revoke(token_id)
        clock.advance(HOUR)
        pass_.run()
        assert last_kind(database, token_id, "rec") == "resolved"

    def test_an_operators_own_update_renews(self, database: Database, clock: FixedClock) -> None:
        """The count is kept by triggers: an UPDATE that did not go through notifier counts."""
        sink = RecordingSink("rec")
        pass_, token_id = self.open_loop(database, clock, sink)
        with database.write() as connection:
            connection.execute(
                update(_tokens)
                .where(_tokens.c.id == token_id)
                .values(expires_at=clock.now() + DAY * 365)
            )
        clock.advance(HOUR)
        pass_.run()
        assert [n.kind for n in sink.received][-1] is NoticeKind.RENEWED
        assert last_kind(database, token_id, "rec") == "renewed"

    def test_a_deleted_token_closes_its_loop(self, database: Database, clock: FixedClock) -> None:
        pass_, token_id = self.open_loop(database, clock, RecordingSink("rec"))
        with database.write() as connection:
            connection.execute(_tokens.delete().where(_tokens.c.id == token_id))
        clock.advance(HOUR)
        pass_.run()
        assert last_kind(database, token_id, "rec") == "resolved"

    def test_a_scheduled_revocation_closes_the_loop_without_a_change(
        self, database: Database, clock: FixedClock
    ) -> None:
        """A revocation set for later takes the token out of the window when it comes."""
        token = store(database, clock).create(name="a", expires_at=clock.now() + DAY * 3)
        with database.write() as connection:
            connection.execute(
                update(_tokens)
                .where(_tokens.c.id == token.id)
                .values(revoked_at=clock.now() + HOUR * 2)
            )
        pass_ = checker(database, clock, RecordingSink("rec"))
        pass_.run()
        clock.advance(HOUR)
        pass_.run()  # its walk finds nothing: the revocation is still ahead
        assert last_kind(database, token.id, "rec") == "expiring"
        counted = changes(database)
        clock.advance(HOUR * 2)
        pass_.run()
        assert changes(database) == counted  # nothing changed: the time came
        assert last_kind(database, token.id, "rec") == "resolved"

    def test_a_revocation_scheduled_after_the_walk_is_seen_too(
        self, database: Database, clock: FixedClock
    ) -> None:
        """A token inserted with a later revocation (an import) after the walk: no change."""
        pass_, _ = self.open_loop(database, clock, RecordingSink("rec"))
        with database.write() as connection:
            connection.execute(
                _tokens.insert().values(
                    id="imported",
                    name="imported",
                    permissions=[],
                    labels={},
                    created_at=clock.now(),
                    expires_at=clock.now() + DAY * 2,
                    revoked_at=clock.now() + HOUR * 3,
                )
            )
        counted = changes(database)
        clock.advance(HOUR)
        pass_.run()
        assert last_kind(database, "imported", "rec") == "expiring"
        clock.advance(HOUR * 3)
        pass_.run()
        assert changes(database) == counted
        assert last_kind(database, "imported", "rec") == "resolved"

    def test_a_loop_that_left_the_window_by_time_closes(
        self, database: Database, clock: FixedClock
    ) -> None:
        """Without expired notices the window ends at now: an expiry takes the token out."""
        token = store(database, clock).create(name="a", expires_at=clock.now() + HOUR * 2)
        sink = RecordingSink("rec")
        pass_ = checker(database, clock, sink, notify_expired=False)
        pass_.run()
        clock.advance(HOUR)
        pass_.run()
        clock.advance(HOUR * 2)
        pass_.run()
        assert last_kind(database, token.id, "rec") == "resolved"

    def test_a_failed_close_is_walked_again(self, database: Database, clock: FixedClock) -> None:
        """A walk that found loops to close is not remembered: the next pass walks again."""
        sink = FlakySink("flaky")
        sink.recover()
        pass_, token_id = self.open_loop(database, clock, sink)
        with database.write() as connection:
            connection.execute(
                update(_tokens)
                .where(_tokens.c.id == token_id)
                .values(expires_at=clock.now() + DAY * 365)
            )
        sink.failing = True
        clock.advance(HOUR)
        pass_.run()
        assert [n.kind for n in sink.failed] == [NoticeKind.RENEWED]
        sink.recover()
        clock.advance(HOUR)
        pass_.run()
        assert [n.kind for n in sink.received][-1] is NoticeKind.RENEWED
        assert last_kind(database, token_id, "flaky") == "renewed"


def test_the_loops_that_left_by_time_are_one_range_scan(
    sqlite_database: Database, clock: FixedClock
) -> None:
    """SQLite reads them from the open loops' expiry index, in its order: no sort, no scan."""
    query = expired_loops_query(
        sqlite_database, "log", clock.now(), after=(clock.now(), "x"), limit=500
    )
    compiled = query.compile(sqlite_database.engine)
    with sqlite_database.read() as connection:
        plan = connection.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {compiled}", tuple(compiled.params.values())
        ).all()
    details = [str(row[-1]) for row in plan]
    assert any("ix_delivery_state_open" in line for line in details), details
    assert not any("TEMP B-TREE" in line or line.startswith("SCAN") for line in details), details


class TestWalks:
    """The memory alone: when a walk that found nothing still holds."""

    NOW = datetime.fromisoformat("2026-01-01T00:00:00+00:00")

    def remembered(self, revocation: datetime | None = None) -> Walks:
        walks = Walks()
        walks.found_nothing("store", "log", 7, DAY, HOUR, revocation)
        return walks

    def test_it_holds_while_nothing_changed(self) -> None:
        assert self.remembered().holds("store", "log", 7, DAY, HOUR, self.NOW)

    @pytest.mark.parametrize(
        ("changes", "horizon", "lookback"),
        [(8, DAY, HOUR), (None, DAY, HOUR), (7, DAY * 2, HOUR), (7, DAY, HOUR * 2)],
    )
    def test_a_change_or_another_window_ends_it(
        self, changes: int | None, horizon: timedelta, lookback: timedelta
    ) -> None:
        assert not self.remembered().holds("store", "log", changes, horizon, lookback, self.NOW)

    def test_another_sink_or_source_has_its_own(self) -> None:
        walks = self.remembered()
        assert not walks.holds("store", "ui", 7, DAY, HOUR, self.NOW)
        assert not walks.holds("sql", "log", 7, DAY, HOUR, self.NOW)

    def test_a_revocation_seen_later_ends_it_when_it_comes(self) -> None:
        walks = self.remembered()
        walks.saw("store", self.NOW + HOUR)
        assert walks.holds("store", "log", 7, DAY, HOUR, self.NOW)
        assert not walks.holds("store", "log", 7, DAY, HOUR, self.NOW + HOUR)

    def test_an_unknown_count_is_never_remembered(self) -> None:
        walks = Walks()
        walks.found_nothing("store", "log", None, DAY, HOUR, None)
        assert not walks.holds("store", "log", None, DAY, HOUR, self.NOW)

    def test_a_walk_that_found_loops_is_forgotten(self) -> None:
        walks = self.remembered()
        walks.forget("store", "log")
        assert not walks.holds("store", "log", 7, DAY, HOUR, self.NOW)
