"""What replicas say of the policy they run, and when a changed policy re-decides the state.

Pure: the rows are read and written by notifier/delivery/coordination.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

LIVE_INTERVALS = 3  # a replica that has not passed for this many of its intervals is gone


@dataclass(frozen=True, slots=True)
class ReplicaPolicy:
    """What a replica said on its last pass: the policy it runs, when, and how often."""

    fingerprint: str
    seen: datetime
    interval: timedelta

    def live(self, now: datetime) -> bool:
        """Whether the replica still passes: seen within a few of its intervals."""
        return now - self.seen <= self.interval * LIVE_INTERVALS

    def render(self) -> str:
        """The ``meta`` value."""
        return json.dumps(
            {
                "policy": self.fingerprint,
                "seen": self.seen.astimezone(UTC).isoformat(),
                "interval_s": self.interval.total_seconds(),
            }
        )

    @classmethod
    def parse(cls, value: str) -> ReplicaPolicy | None:
        """Read a ``meta`` value; None for one that cannot be read (it is dropped)."""
        try:
            fields = json.loads(value)
            return cls(
                fields["policy"],
                datetime.fromisoformat(fields["seen"]),
                timedelta(seconds=float(fields["interval_s"])),
            )
        except (ValueError, TypeError, KeyError):
            return None


def must_redue(
    fingerprint: str,
    current: str | None,
    me: ReplicaPolicy | None,
    others: Sequence[ReplicaPolicy],
    now: datetime,
) -> bool:
    """Whether a pass running *fingerprint* makes every stored due time due again.

    *current* is the policy the stored due times were last recomputed for. They are
    recomputed when this policy differs from it and either no live replica has run this
    policy yet (a new configuration, or one that comes back), or no live replica other than
    this one runs *current* any more (the replicas that applied it have stopped). Replicas
    that keep running different policies side by side leave the due times alone instead of
    recomputing them on every pass.
    """
    if current is None:
        return True  # nothing recorded yet: the first pass on this database
    if current == fingerprint:
        return False
    live = [replica for replica in others if replica.live(now)]
    known = (me is not None and me.live(now) and me.fingerprint == fingerprint) or any(
        replica.fingerprint == fingerprint for replica in live
    )
    still_run = any(replica.fingerprint == current for replica in live)
    return not known or not still_run
