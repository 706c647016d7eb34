"""Retention: history older than NOTIFIER_RETENTION is pruned, once a day, open loops kept."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from notifier.core.clock import FixedClock
from notifier.db.database import Database
from notifier.db.models import AuditEvent, Base, DeliveryStateRow, Notification, Snooze
from notifier.delivery.checker import Checker
from notifier.delivery.retention import prune_if_due
from notifier.delivery.snoozes import snooze
from notifier.sinks.log import LogSink
from notifier.sinks.ui import UiSink
from notifier.testing import make_policy
from notifier.tokens.lifecycle import TokenStore
from tests.conftest import sqlite_database

DAY = timedelta(days=1)
POLICY = make_policy()


# Retention, not the backend, is under test here: SQLite only.
database = sqlite_database


def count(database: Database, model: type[Base]) -> int:
    with database.read() as connection:
        query = select(func.count()).select_from(model.__table__)
        return int(connection.execute(query).scalar_one())


def test_old_history_goes_open_loops_stay(database: Database, clock: FixedClock) -> None:
    """After the retention period, closed state, resolved notifications and old audit go."""
    tokens = TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None)
    gone = tokens.create(name="revoked", expires_at=clock.now() + DAY * 2)
    kept = tokens.create(name="still expiring", expires_at=clock.now() + DAY * 200)
    snooze(
        database,
        source="store",
        token_id=kept.id,
        token_name="k",
        sink=None,
        until=clock.now() + DAY,
        threshold=None,
        now=clock.now(),
        actor="user:x",
    )
    checker = Checker(
        database=database,
        sinks=[LogSink("log", "day"), UiSink("ui", database, clock, "day")],
        policy=POLICY,
        clock=clock,
        lease=timedelta(minutes=5),
        retention=DAY * 30,
    )
    checker.run()
    tokens.revoke(gone.id)
    clock.advance(DAY)
    checker.run()  # closes the loop: state "resolved", the notification resolved
    assert count(database, DeliveryStateRow) == 2
    assert count(database, Notification) == 1
    clock.advance(DAY * 160)  # the kept token is 39 days out: no state yet
    assert prune_if_due(database, clock.now(), DAY * 30) is not None
    assert count(database, DeliveryStateRow) == 0
    assert count(database, Notification) == 0
    assert count(database, AuditEvent) == 0
    assert count(database, Snooze) == 0
    clock.advance(DAY * 33)  # 7 days before the kept token expires: a new open loop
    checker.run()
    clock.advance(DAY * 40)
    assert prune_if_due(database, clock.now(), DAY * 30) is not None
    # The token expired during those 40 days without a pass: its loop is still open.
    with database.read() as connection:
        kinds = {row.last_kind for row in connection.execute(select(DeliveryStateRow.__table__))}
    assert kinds == {"expiring"}


def test_pruning_runs_once_a_day(database: Database, clock: FixedClock) -> None:
    """The first pass of a day prunes; the others in that day do not."""
    assert prune_if_due(database, clock.now(), DAY) is not None
    assert prune_if_due(database, clock.now() + timedelta(hours=23), DAY) is None
    assert prune_if_due(database, clock.now() + DAY, DAY) is not None
