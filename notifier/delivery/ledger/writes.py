"""The ledger's writes in a pass: claim, postpone, record, release, settle.

Every write is over the version the pass read and, for records and releases, only while
this ledger still holds the lease: the rules of the state are kept here, and nowhere else.

1. **Claim**: a conditional upsert that sets a lease with the database's clock, and
   succeeds only if no live lease is held and the row is still at the version read. Two
   replicas never send the same notice at once; a crashed claim is retried once its lease
   runs out, or at once when its holder is a process of this host that has gone.
2. **Postpone**: rows that are not due now get their next due time, over the version read.
3. **Record** after the send: the outcome, and the lease given back, in one transaction.
4. **Release**: claims not sent (a stop) go back at once, for the next pass to take.

A pass that fails on the database leaves what it could not write; :meth:`Ledger.settle`
writes it at the start of the next one (and when the daemon stops), so a notice sent just
before the database went away is not sent again, and releases the claims left unsent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import (
    Connection,
    Integer,
    and_,
    bindparam,
    literal_column,
    null,
    or_,
    select,
    update,
)

from notifier.db.database import Database, DatabaseUnavailableError, db_now
from notifier.delivery.leases import holder_gone
from notifier.delivery.ledger.codec import (
    CLAIM_KEYS,
    KEY_KEYS,
    POSTPONE_KEYS,
    RECORD_KEYS,
    STATE,
    Item,
    Key,
    claim_row,
    key_of,
    postpone_row,
)

_ANALYZE_AFTER = 500  # new state rows before the planner's statistics are refreshed
# Constants written into the SQL, not bound: an executemany binds every parameter per row.
_ZERO = literal_column("0", Integer())
_ONE = literal_column("1", Integer())

log = structlog.get_logger("notifier.check")


class Ledger:
    """The delivery state of one checker's passes: the one writer of ``delivery_state``."""

    def __init__(self, database: Database, owner: str, lease: timedelta) -> None:
        self._database = database
        self.owner = owner
        self._statements = _Statements(database, owner, lease.total_seconds())
        # What a failed pass left behind, settled by the next one: claims this ledger may
        # hold without having sent them, and outcomes it could not write.
        self._held: set[Key] = set()
        self._unwritten: list[dict[str, Any]] = []
        # Outcomes recorded but not yet written: they go out with the next write (the next
        # batch's claim, milliseconds later) or at flush(), not in a transaction of their own.
        self._deferred: list[dict[str, Any]] = []
        # State rows created since the statistics were last refreshed, and how many rows
        # the table held then (see _refresh_statistics).
        self._new_rows = 0
        self._analyzed_rows = 0

    def settle(self) -> int:
        """Write the outcomes a failed pass could not write, and release the claims it left.

        Both apply only to rows this ledger still holds: a lease that ran out and was taken
        by another replica is that replica's now. Return how many claims were released;
        raise (keeping both for the next try) if the database fails.
        """
        self._unwritten.extend(self._deferred)
        self._deferred = []
        if self._unwritten:
            with self._database.write(durable=False) as connection:
                self._statements.record.execute(connection, self._unwritten)
            log.info("check.settled", recorded=len(self._unwritten))
            self._unwritten = []
        if not self._held:
            return 0
        released = len(self._held)
        self.release(list(self._held))
        log.info("check.released", claims=released, reason="left by a failed pass")
        return released

    def claim(self, sink: str, items: list[Item], now: datetime) -> list[Item]:
        """Take a lease on each item's (token, sink) that no one holds and no one changed.

        One executemany of a conditional upsert; the rows it changed are the ones we hold.
        When it changed them all (a single daemon, or no contention) that is the answer.
        Otherwise the rows of this batch leased to this ledger are read back in the same
        transaction: none of them was ours before the claim, since a pass starts by settling
        what an earlier one left, and a batch holds each (token, sink) once. A live lease of
        an earlier process of this host that is gone is taken over at once.
        """
        if not items:
            return []
        rows = [claim_row(sink, item, now) for item in items]
        try:
            with self._writing() as connection:
                taken = self._statements.claim.execute(connection, rows)
                if taken == len(items):
                    claimed = items
                else:
                    held = self._leased_to_us(connection, sink, items)
                    if len(held) < len(items) and self._take_over(
                        connection,
                        sink,
                        [i for i in items if (i.source, i.candidate.token_id) not in held],
                    ):
                        held = self._leased_to_us(connection, sink, items)
                    claimed = [i for i in items if (i.source, i.candidate.token_id) in held]
        except Exception:
            # The commit may have happened: settle() releases whatever of these we hold.
            self._held.update(item.key(sink) for item in items)
            raise
        self._held.update(item.key(sink) for item in claimed)
        self._refresh_statistics(sum(1 for item in claimed if item.candidate.state is None))
        return claimed

    def postpone(self, sink: str, items: list[Item]) -> None:
        """Store when rows that are not due now will be: each written over the version read."""
        if not items:
            return
        with self._writing() as connection:
            self._statements.postpone.execute(connection, [postpone_row(sink, i) for i in items])
        self._refresh_statistics(sum(1 for item in items if item.candidate.state is None))

    def record(self, records: list[dict[str, Any]], *, defer: bool = False) -> None:
        """Write each outcome and give back its lease, in one short transaction.

        Each record is a :func:`~notifier.delivery.ledger.codec.record_row`. *defer*: the
        pass writes again at once (its next batch's claim), so the outcomes go in that
        transaction instead of one of their own; :meth:`flush` writes them when no write
        follows. Either way they are written after the send, and a failure keeps them for
        :meth:`settle`.
        """
        if not records:
            return
        self._held.difference_update(key_of(record) for record in records)
        self._deferred.extend(records)
        if not defer:
            self.flush()

    def flush(self) -> None:
        """Write the outcomes :meth:`record` deferred."""
        if self._deferred:
            with self._writing():
                pass

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction that first writes the deferred outcomes.

        Like every write of the ledger, it commits without waiting for the disk (on
        PostgreSQL; SQLite's commits never do): a claim or record the server forgets in a
        crash leaves its notice due, or leased until the lease runs out, so it is sent
        again with its notice id, never lost. It spares a flush per transaction of a pass.
        """
        deferred, self._deferred = self._deferred, []
        try:
            with self._database.write(durable=False) as connection:
                if deferred:
                    self._statements.record.execute(connection, deferred)
                yield connection
        except Exception:
            # The commit may have happened; writing an outcome again changes nothing, as
            # the lease it is written under is gone then.
            self._unwritten.extend(deferred)  # settle() writes them on the next pass
            raise

    def release(self, keys: Iterable[Key]) -> None:
        """Give back leases this ledger holds but will not use."""
        keys = list(keys)
        if not keys:
            return
        rows = [dict(zip(KEY_KEYS, key, strict=True)) for key in keys]
        with self._writing() as connection:
            self._statements.release.execute(connection, rows)
        self._held.difference_update(keys)

    def _leased_to_us(
        self, connection: Connection, sink: str, items: list[Item]
    ) -> set[tuple[str, str]]:
        """The (source, token id) of *items* whose row for *sink* this ledger leases."""
        current = STATE.c
        held: set[tuple[str, str]] = set()
        for source in {item.source for item in items}:
            ids = [item.candidate.token_id for item in items if item.source == source]
            rows = connection.execute(
                select(current.token_id).where(
                    current.source == source,
                    current.sink == sink,
                    current.lease_owner == self.owner,
                    current.token_id.in_(ids),
                )
            )
            held.update((source, token_id) for (token_id,) in rows)
        return held

    def _take_over(self, connection: Connection, sink: str, items: list[Item]) -> bool:
        """Lease to this ledger the rows of *items* whose holder is gone from this host.

        Each row only while still at the version this pass read, under the holder that is
        gone: the same conditions as a claim. Return whether any holder was gone.
        """
        current = STATE.c
        gone: dict[str, bool] = {}
        rows: list[dict[str, Any]] = []
        for source in {item.source for item in items}:
            versions = {
                i.candidate.token_id: i.candidate.version for i in items if i.source == source
            }
            leased = connection.execute(
                select(current.token_id, current.lease_owner).where(
                    current.source == source,
                    current.sink == sink,
                    current.lease_owner.is_not(None),
                    current.token_id.in_(list(versions)),
                )
            )
            for token_id, owner in leased:
                if owner not in gone:
                    gone[owner] = holder_gone(owner)
                if gone[owner]:
                    rows.append(
                        {
                            "k_source": source,
                            "k_token_id": token_id,
                            "k_sink": sink,
                            "k_owner": owner,
                            "k_version": versions[token_id],
                        }
                    )
        if not rows:
            return False
        connection.execute(self._statements.take_over, rows)
        log.info(
            "check.taken_over",
            sink=sink,
            claims=len(rows),
            previous=",".join(owner for owner, dead in gone.items() if dead),
            reason="left by a process of this host that has gone",
        )
        return True

    def _refresh_statistics(self, new_rows: int) -> None:
        """Refresh the state and notification tables' statistics once they have grown a lot.

        Where the planner plans by statistics (PostgreSQL), a table that grew from nothing
        (the first pass over a large fleet, a new sink) has none until autovacuum gets to
        it, a minute or more later. Meanwhile the planner takes it for a few rows: each
        record looked up its row by scanning the sink's index instead of the primary key,
        and prepared statements kept that plan, so a first pass over 10,000 tokens took
        15 s, not 2. So whenever this ledger has created more state rows than the table held
        at the last refresh (at least _ANALYZE_AFTER), it refreshes them: a few times in a
        first pass, then rarely. A refresh that fails (no privilege) is logged and the pass
        goes on.
        """
        if not self._database.plans_by_statistics or not new_rows:
            return
        self._new_rows += new_rows
        if self._new_rows < max(_ANALYZE_AFTER, self._analyzed_rows):
            return
        self._new_rows = 0
        try:
            rows = self._database.refresh_statistics(
                [STATE.name, "notifications"], count=STATE.name
            )
        except DatabaseUnavailableError:
            raise
        except Exception as error:  # noqa: BLE001 - statistics help; the pass must not fail
            log.warning("check.analyze_failed", reason=f"{type(error).__name__}: {error}")
            return
        self._analyzed_rows = rows or 0


class _Statements:
    """The pass's writes, built once per ledger.

    Building an upsert (its ``excluded`` columns) costs more than running it for a batch, and
    a statement built once is also compiled once. Each runs as a :class:`BulkStatement`:
    its rows reach the driver without SQLAlchemy's per-row work.
    """

    def __init__(self, database: Database, owner: str, lease_seconds: float) -> None:
        current = STATE.c
        primary_key = [current.source, current.token_id, current.sink]
        live_lease_free = or_(current.lease_until.is_(None), current.lease_until <= db_now())
        claim = database.upsert(STATE).values(
            attempts=_ZERO, lease_owner=owner, lease_until=db_now(lease_seconds)
        )
        claiming = claim.on_conflict_do_update(
            index_elements=primary_key,
            set_={
                "lease_owner": claim.excluded.lease_owner,
                "lease_until": claim.excluded.lease_until,
                "version": current.version + _ONE,
            },
            where=and_(live_lease_free, current.version == claim.excluded.version),
        )
        self.claim = database.bulk(claiming, CLAIM_KEYS)
        postpone = database.upsert(STATE).values(attempts=_ZERO)
        incoming = postpone.excluded
        postponing = postpone.on_conflict_do_update(
            index_elements=primary_key,
            set_={
                "expires_at": incoming.expires_at,
                "next_due_at": incoming.next_due_at,
                "notices_sent": incoming.notices_sent,
                "last_kind": incoming.last_kind,
                "last_threshold_s": incoming.last_threshold_s,
                "last_sent_at": incoming.last_sent_at,
                "version": current.version + _ONE,
            },
            where=and_(live_lease_free, current.version == incoming.version),
        )
        self.postpone = database.bulk(postponing, POSTPONE_KEYS)
        ours = and_(
            current.source == bindparam("k_source"),
            current.token_id == bindparam("k_token_id"),
            current.sink == bindparam("k_sink"),
            current.lease_owner == owner,
        )
        recording = (
            update(STATE)
            .where(ours)
            .values(
                expires_at=bindparam("v_expires_at"),
                next_due_at=bindparam("v_next_due_at"),
                last_sent_at=bindparam("v_last_sent_at"),
                last_notice_id=bindparam("v_last_notice_id"),
                last_kind=bindparam("v_last_kind"),
                last_threshold_s=bindparam("v_last_threshold_s"),
                notices_sent=bindparam("v_notices_sent"),
                attempts=bindparam("v_attempts"),
                last_attempt_at=bindparam("v_last_attempt_at"),
                last_error=bindparam("v_last_error"),
                lease_owner=null(),
                lease_until=null(),
                version=current.version + _ONE,
            )
        )
        self.record = database.bulk(recording, RECORD_KEYS)
        releasing = (
            update(STATE)
            .where(ours)
            .values(lease_owner=null(), lease_until=null(), version=current.version + _ONE)
        )
        self.release = database.bulk(releasing, KEY_KEYS)
        # Rare (a process of this host that has gone left its leases), so a plain statement.
        self.take_over = (
            update(STATE)
            .where(
                current.source == bindparam("k_source"),
                current.token_id == bindparam("k_token_id"),
                current.sink == bindparam("k_sink"),
                current.lease_owner == bindparam("k_owner"),
                current.version == bindparam("k_version"),
            )
            .values(
                lease_owner=owner,
                lease_until=db_now(lease_seconds),
                version=current.version + _ONE,
            )
        )
