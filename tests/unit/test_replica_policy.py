"""When a pass recomputes every stored due time: must_redue's table, and the meta row.

And the one word the partial index of open loops shares with the policy.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notifier.core.model import OPEN
from notifier.core.replicas import ReplicaPolicy, must_redue
from notifier.db.models import OPEN_LOOP_SQL

NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)
HOUR = timedelta(hours=1)


def seen(fingerprint: str, ago: timedelta = HOUR, interval: timedelta = HOUR) -> ReplicaPolicy:
    return ReplicaPolicy(fingerprint, NOW - ago, interval)


@pytest.mark.parametrize(
    ("current", "me", "others", "expected"),
    [
        (None, None, [], True),  # the first pass on this database
        ("A", None, [], False),  # nothing changed (the checker is A)
        ("B", None, [], True),  # a daemon restarted with a new configuration
        ("B", None, [seen("B")], True),  # a new replica of a rolling update
        ("B", seen("A"), [seen("B")], False),  # an old replica beside a new one: no flapping
        ("B", seen("A"), [seen("B"), seen("A")], False),  # several of each
        ("B", seen("A"), [], True),  # the replicas of B retired: A comes back
        ("B", seen("A"), [seen("B", ago=HOUR * 4)], True),  # B's replica died 4 intervals ago
        ("B", seen("A"), [seen("B", ago=HOUR * 3)], False),  # 3 intervals: still counts
        # B passes every 10 minutes; an hour of silence is 6 of its intervals: gone
        ("B", seen("A"), [seen("B", ago=HOUR, interval=timedelta(minutes=10))], True),
        ("B", seen("A", ago=HOUR * 5), [seen("B")], True),  # this replica was away long
        ("B", None, [seen("A"), seen("B")], False),  # A is known from another replica
    ],
)
def test_must_redue(
    current: str | None, me: ReplicaPolicy | None, others: list[ReplicaPolicy], expected: bool
) -> None:
    """Recompute for a policy no live replica runs yet, or when the one in force has no replica."""
    assert must_redue("A", current, me, others, NOW) is expected


class TestReplicaPolicy:
    def test_round_trips_through_its_meta_value(self) -> None:
        """The row a pass writes reads back as what was written."""
        replica = ReplicaPolicy("backoff_ms=1", NOW, timedelta(minutes=5))
        assert ReplicaPolicy.parse(replica.render()) == replica

    @pytest.mark.parametrize("value", ["", "{}", "[]", '{"policy": "x", "seen": "soon"}'])
    def test_an_unreadable_row_is_none(self, value: str) -> None:
        """A row that cannot be read counts as no replica (and is dropped by the next pass)."""
        assert ReplicaPolicy.parse(value) is None


def test_the_open_loops_index_says_the_policys_open_kind() -> None:
    """The partial index's predicate and the policy's open-loop kind are the same word."""
    assert f"last_kind = '{OPEN}'" == OPEN_LOOP_SQL
