"""Coordination between replicas: the policy each one runs, and a digest sink's lease.

Each pass says which policy this replica runs (its ``replica:`` row in ``meta``), and makes
every stored due time due again when :func:`~notifier.core.replicas.must_redue` says so. A
digest sink (email) is run by one replica per pass: the one that holds its lease in
``sink_leases`` (the database's clock), or takes it over from a process of this host that
has gone.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, or_, select, update

from notifier.core.replicas import ReplicaPolicy, must_redue
from notifier.db.database import Database, db_now
from notifier.db.models import Meta, SinkLease
from notifier.delivery.leases import holder_gone
from notifier.delivery.ledger.history import make_all_due

_meta = Meta.__table__
_sink_leases = SinkLease.__table__
_POLICY_KEY = "policy"
_REPLICA_PREFIX = "replica:"  # + a digest of the checker's lease owner: the policy it runs
_REPLICA_DIGEST = 24

log = structlog.get_logger("notifier.check")


class Coordination:
    """One checker's rows among the replicas: its policy, and the digest sinks' leases."""

    def __init__(self, database: Database, owner: str, lease: timedelta) -> None:
        self._database = database
        self._owner = owner
        self._lease_seconds = lease.total_seconds()
        digest = hashlib.sha256(owner.encode()).hexdigest()[:_REPLICA_DIGEST]
        self._replica_key = _REPLICA_PREFIX + digest

    def sync_policy(self, fingerprint: str, interval: timedelta, now: datetime) -> None:
        """Make stored due times fit the policy: a changed configuration applies on this pass.

        ``next_due_at`` was computed with the backoff and thresholds of its day. When they
        change, every scheduled row is made due at once; the policy then decides it afresh
        and stores the right time. Replicas whose configurations differ (a rolling update,
        two deployments on one database) would undo each other's change on every pass, so
        each pass also says which policy this replica runs, and re-dues only for a policy no
        live replica runs yet, or when no live replica runs the one in force any more.
        """
        with self._database.read() as connection:
            rows = connection.execute(
                select(_meta.c.key, _meta.c.value).where(
                    or_(_meta.c.key == _POLICY_KEY, _meta.c.key.startswith(_REPLICA_PREFIX))
                )
            ).all()
        current: str | None = None
        replicas: dict[str, ReplicaPolicy | None] = {}
        for key, value in rows:
            if key == _POLICY_KEY:
                current = value
            else:
                replicas[key] = ReplicaPolicy.parse(value)
        me = replicas.pop(self._replica_key, None)
        others = [replica for replica in replicas.values() if replica is not None]
        redue = must_redue(fingerprint, current, me, others, now)
        gone = [
            key for key, replica in replicas.items() if replica is None or not replica.live(now)
        ]
        mine = ReplicaPolicy(fingerprint, now, interval)
        # Only this replica's heartbeat, most passes: lost in a crash, it is written again.
        with self._database.write(durable=redue or bool(gone)) as connection:
            if redue:
                make_all_due(connection)
                self._database.put(connection, _meta, key=_POLICY_KEY, value=fingerprint)
            self._database.put(connection, _meta, key=self._replica_key, value=mine.render())
            if gone:
                connection.execute(delete(_meta).where(_meta.c.key.in_(gone)))
        if redue and current is not None:
            log.info("check.policy_changed", previous=current, current=fingerprint)

    def retire(self) -> None:
        """Say that this replica runs no more passes: its policy no longer counts as live."""
        with self._database.write() as connection:
            connection.execute(delete(_meta).where(_meta.c.key == self._replica_key))

    def take_sink_lease(self, sink: str) -> bool:
        """Lease *sink* to this checker for a pass; False when another replica holds it."""
        insert = self._database.upsert(_sink_leases).values(
            sink=sink, owner=self._owner, lease_until=db_now(self._lease_seconds)
        )
        current = _sink_leases.c
        statement = insert.on_conflict_do_update(
            index_elements=[current.sink],
            set_={"owner": insert.excluded.owner, "lease_until": insert.excluded.lease_until},
            where=or_(current.lease_until <= db_now(), current.owner == insert.excluded.owner),
        ).returning(current.sink)
        with self._database.write() as connection:
            if connection.execute(statement).first() is not None:
                return True
            holder = connection.execute(select(current.owner).where(current.sink == sink)).scalar()
            if holder is None or not holder_gone(holder):
                return False
            # Its holder has gone from this host: take the lease now, not when it runs out.
            taken = connection.execute(
                update(_sink_leases)
                .where(current.sink == sink, current.owner == holder)
                .values(owner=self._owner, lease_until=db_now(self._lease_seconds))
            )
            return bool(taken.rowcount)

    def release_sink_lease(self, sink: str) -> None:
        """Give the sink's lease back after the pass."""
        with self._database.write() as connection:
            connection.execute(
                delete(_sink_leases).where(
                    _sink_leases.c.sink == sink, _sink_leases.c.owner == self._owner
                )
            )
