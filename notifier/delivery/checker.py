"""One check pass: find what is due, decide, claim, deliver, and record after the send.

For each sink and each source, the pass reads the candidates: tokens in the window that are
due for that sink (no state yet, ``next_due_at`` reached, or state about an older expiry),
and the sink's open loops whose token has left the window (expired, renewed, rotated,
revoked, deleted). The store does each in one keyset join; see notifier/sources. Each batch:

1. ``Policy.decide`` (pure) turns each candidate into a notice, or a later ``next_due_at``;
2. the notices are **claimed**: a conditional upsert that sets a lease with the database's
   clock, and succeeds only if no live lease is held and the row is still at the version
   read. Two replicas never send the same notice at once; a crashed claim is retried once its
   lease runs out;
3. the sink delivers the batch, outside any transaction; notices its route leaves out are
   recorded as skipped without reaching it;
4. each outcome is **recorded** after the sink returned: success moves ``next_due_at`` past the
   backoff, a transient failure leaves it due for the next pass, a permanent one waits out a
   backoff. So a failed send is never lost, and at worst repeated (at-least-once).

A digest sink (email) takes every notice of the pass at once, after all batches, so that a
recipient gets one digest; with several replicas, one of them holds the sink's lease for the
pass and the others leave the sink alone.

Other sinks take a claimed batch in **chunks** sized from the sink's measured pace, so that
each takes about half a second (a fast sink gets the whole batch at once): outcomes are
recorded after every chunk, and a stop request (SIGTERM) **releases** the claims not yet
sent, so the next pass (here or on another replica) takes them at once, without waiting out
the lease. The network sinks see the stop too: it ends their retry waits and abandons a
send in flight, and such a notice comes back ``Outcome.interrupted()``, released as well.
A chunk with a failure ends the chunking of its batch, and the rest goes in one call, so a
receiver that is down costs one retry deadline per batch, not one per chunk.

A lease names its process (:func:`lease_owner`). One held by an earlier process of this host
that has gone, stopped or killed before it released what it held, is taken over at once
(:func:`holder_gone`), so a restart never waits out its predecessor's leases; a lease of
another host runs out as usual.

A pass that fails on the database **settles** what it left at the start of the next one (and
when the daemon stops): outcomes it could not write are written then, so a notice sent just
before the database went away is not sent again; claims it holds but did not send are
released. Records and releases apply only while this checker still holds the lease.

A failing sink never blocks another: each has its own state and its own loop. A broken
source is skipped for the pass. A database error fails the pass; the caller logs
``check.failed`` and lives on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import (
    Connection,
    Integer,
    and_,
    bindparam,
    delete,
    literal_column,
    null,
    or_,
    select,
    update,
)

from notifier.core.clock import Clock
from notifier.core.model import Decision, Notice, NoticeKind
from notifier.core.model import Snooze as SnoozeRule
from notifier.core.policy import Policy
from notifier.db.database import Database, DatabaseUnavailableError, db_now, upsert
from notifier.db.models import DeliveryStateRow, Meta, SinkLease, Snooze
from notifier.delivery.retention import prune_if_due
from notifier.sinks import Outcome, Sink, accepts
from notifier.sources import Candidate, Snapshot, SourceError, TokenSource
from notifier.sources.store import StoreSource

_ERROR_LIMIT = 500  # characters of a sink's error kept in the state row
_CHUNK_SECONDS = 0.5  # a delivery chunk's target length: how long a stop request waits
_FIRST_CHUNK = 16  # notices in a sink's first chunk, before its pace is known
# Stored due times set here are due at once: a changed policy re-decides every row.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

log = structlog.get_logger("notifier.check")

_state = DeliveryStateRow.__table__
_meta = Meta.__table__
_snoozes = Snooze.__table__
_sink_leases = SinkLease.__table__
_POLICY_KEY = "policy"
_REPLICA_PREFIX = "replica:"  # + a digest of the checker's lease owner: the policy it runs
_REPLICA_DIGEST = 24
_LIVE_INTERVALS = 3  # a replica that has not passed for this many of its intervals is gone
_STARTTIME = 19  # /proc/<pid>/stat's field 22, counted from field 3
_ANALYZE_AFTER = 500  # new state rows (PostgreSQL) before the tables' statistics are refreshed
# Constants written into the SQL, not bound: an executemany binds every parameter per row.
_ZERO = literal_column("0", Integer())
_ONE = literal_column("1", Integer())


def lease_owner() -> str:
    """Name this process in the leases it takes: host, pid, a nonce, and what places the pid.

    ``host:pid:nonce:scope:start``: the nonce tells apart checkers of one process, ``scope``
    (a digest of the kernel's boot id and the pid namespace) and ``start`` (the process's
    start time, in clock ticks since boot) let a later process on this host tell that this
    one has gone (:func:`holder_gone`).
    """
    pid = os.getpid()
    host = socket.gethostname()[:60]
    return f"{host}:{pid}:{os.urandom(3).hex()}:{_process_scope()}:{_started(pid) or '-'}"


@functools.cache
def _process_scope() -> str:
    """Where a pid names one process: this boot of this kernel, and this pid namespace."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        namespace = str(Path("/proc/self/ns/pid").readlink())
    except OSError:
        return "-"  # not Linux, or /proc hidden: no lease is ever known to be left behind
    return hashlib.sha256(f"{boot}:{namespace}".encode()).hexdigest()[:8]


def _started(pid: int) -> str | None:
    """When process *pid* started, in clock ticks since boot; None when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ", from field 3 on
    return fields[_STARTTIME] if len(fields) > _STARTTIME else None


def holder_gone(owner: str) -> bool:
    """Whether the lease *owner* is a process of this host that no longer runs.

    Only for a process this one can judge: the same host name, kernel boot and pid
    namespace. Then its pid either names no process, or another one (another start time).
    Anything else counts as alive, and its lease runs out as usual: another host, an owner
    written by an older version, a process hidden from this one (``ProtectProc=``).
    """
    parts = owner.rsplit(":", 4)
    if len(parts) != 5:  # noqa: PLR2004 - host:pid:nonce:scope:start
        return False
    host, pid_text, _, scope, start = parts
    if scope in {"-", ""} or scope != _process_scope() or start == "-":
        return False
    if host != socket.gethostname()[:60] or not pid_text.isdigit() or int(pid_text) <= 0:
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, as another user: compare its start time, if we may read it
    except OSError:
        return False
    current = _started(pid)
    return current is not None and current != start


@dataclass
class PassReport:
    """What one pass did; the fields of its ``check.completed`` line."""

    in_window: int = 0
    within: Counter[str] = field(default_factory=Counter)  # tokens within each threshold
    notices: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # sink, kind, outcome
    sent: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    skipped_backoff: int = 0
    claimed_elsewhere: int = 0
    released: int = 0  # claims given back unsent because the pass was asked to stop
    failed_sources: list[str] = field(default_factory=list)
    interrupted: bool = False
    duration_ms: float = 0.0
    would_send: list[Notice] = field(default_factory=list)  # dry runs only

    @property
    def failures(self) -> int:
        """Deliveries that failed in this pass (they will be retried)."""
        return sum(self.failed.values())

    @property
    def degraded(self) -> bool:
        """Some deliveries failed, or a source could not be read: the next pass retries."""
        return self.failures > 0 or bool(self.failed_sources)

    def fields(self) -> dict[str, Any]:
        """The report as log fields."""
        return {
            "in_window": self.in_window,
            "sent": sum(self.sent.values()),
            "failed": self.failures,
            "skipped_backoff": self.skipped_backoff,
            "claimed_elsewhere": self.claimed_elsewhere,
            "released": self.released or None,  # only said when it happened
            "sent_by_sink": dict(self.sent),
            "failed_by_sink": dict(self.failed),
            "failed_sources": ",".join(self.failed_sources) or None,
            "interrupted": self.interrupted or None,  # only said when it happened
            "duration_ms": round(self.duration_ms, 1),
        }


@dataclass(frozen=True, slots=True)
class _Item:
    """A candidate and what the policy decided about it, within one source."""

    source: str
    candidate: Candidate
    decision: Decision


@dataclass(frozen=True, slots=True)
class ReplicaPolicy:
    """What a replica said on its last pass: the policy it runs, when, and how often."""

    fingerprint: str
    seen: datetime
    interval: timedelta

    def live(self, now: datetime) -> bool:
        """Whether the replica still passes: seen within a few of its intervals."""
        return now - self.seen <= self.interval * _LIVE_INTERVALS

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


class Checker:
    """Run check passes over token sources for a set of sinks; one pass at a time."""

    def __init__(
        self,
        *,
        database: Database,
        sinks: Sequence[Sink],
        policy: Policy,
        clock: Clock,
        lease: timedelta,
        sources: Sequence[TokenSource] | None = None,
        batch_size: int = 500,
        owner: str | None = None,
        stop: threading.Event | None = None,
        retention: timedelta | None = None,
        count_within: bool = False,
    ) -> None:
        self._database = database
        self._sources = list(sources) if sources is not None else [StoreSource(database)]
        self._sinks = list(sinks)
        self._policy = policy
        self._clock = clock
        self._lease_seconds = lease.total_seconds()
        self._batch_size = batch_size
        self._owner = owner or lease_owner()
        self._stop = stop or threading.Event()
        self._retention = retention
        self._count_within = count_within
        self._statements = _Statements(database, self._owner, self._lease_seconds)
        digest = hashlib.sha256(self._owner.encode()).hexdigest()[:_REPLICA_DIGEST]
        self._replica_key = _REPLICA_PREFIX + digest
        # Seconds per notice each sink took lately: sizes its next chunk.
        self._pace: dict[str, float] = {}
        # State rows this checker created since the statistics were last refreshed, and
        # how many rows the table held then (PostgreSQL only; see _refresh_statistics).
        self._new_rows = 0
        self._analyzed_rows = 0
        # What a failed pass left behind, settled by the next one: claims this checker may
        # hold without having sent them, and outcomes it could not write.
        self._held: set[tuple[str, str, str]] = set()
        self._unwritten: list[dict[str, Any]] = []

    @property
    def owner(self) -> str:
        """The name this checker's leases carry."""
        return self._owner

    def run(self, *, dry_run: bool = False) -> PassReport:
        """Run one pass at ``clock.now()``; raise if the database fails."""
        started = time.perf_counter()
        now = self._clock.now()
        report = PassReport()
        if not dry_run:
            self.settle()
            self._sync_policy(now)
        snoozes = self._snoozes(now)
        snapshots: list[tuple[str, Snapshot]] = []
        for source in self._sources:
            try:
                snapshot = source.snapshot(now, self._policy.horizon, self._policy.lookback)
            except SourceError as error:
                # One broken source is skipped for this pass; the others go on.
                log.error("source.failed", source=source.name, reason=str(error))
                report.failed_sources.append(source.name)
                continue
            snapshots.append((source.name, snapshot))
            report.in_window += snapshot.in_window
            if self._count_within:
                report.within.update(snapshot.within(self._policy.count_marks))
        for sink in self._sinks:
            if self._stop.is_set():
                report.interrupted = True
                break
            self._run_sink(sink, snapshots, snoozes, now, report, dry_run=dry_run)
        if self._retention is not None and not dry_run and not report.interrupted:
            try:
                prune_if_due(self._database, now, self._retention)
            except Exception as error:  # noqa: BLE001 - housekeeping must not fail a pass
                log.warning("retention.failed", reason=f"{type(error).__name__}: {error}")
        report.duration_ms = (time.perf_counter() - started) * 1000
        return report

    def settle(self) -> int:
        """Write the outcomes a failed pass could not write, and release the claims it left.

        Both apply only to rows this checker still holds: a lease that ran out and was taken
        by another replica is that replica's now. Return how many claims were released;
        raise (keeping both for the next try) if the database fails.
        """
        if self._unwritten:
            with self._database.write() as connection:
                self._statements.record.execute(connection, self._unwritten)
            log.info("check.settled", recorded=len(self._unwritten))
            self._unwritten = []
        if not self._held:
            return 0
        released = len(self._held)
        self._release(list(self._held))
        log.info("check.released", claims=released, reason="left by a failed pass")
        return released

    # --- per pass -----------------------------------------------------------------------------

    def _sync_policy(self, now: datetime) -> None:
        """Make stored due times fit the policy: a changed configuration applies on this pass.

        ``next_due_at`` was computed with the backoff and thresholds of its day. When they
        change, every scheduled row is made due at once; the policy then decides it afresh
        and stores the right time. Replicas whose configurations differ (a rolling update,
        two deployments on one database) would undo each other's change on every pass, so
        each pass also says which policy this replica runs (its ``replica:`` row in
        ``meta``), and :func:`must_redue` re-dues only for a policy no live replica runs yet,
        or when no live replica runs the one in force any more.
        """
        fingerprint = self._policy.fingerprint
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
        mine = ReplicaPolicy(fingerprint, now, self._policy.pass_interval)
        with self._database.write() as connection:
            if redue:
                connection.execute(
                    update(_state)
                    .where(_state.c.next_due_at.is_not(None))
                    .values(next_due_at=EPOCH)
                )
                self._set_meta(connection, _POLICY_KEY, fingerprint)
            self._set_meta(connection, self._replica_key, mine.render())
            if gone:
                connection.execute(delete(_meta).where(_meta.c.key.in_(gone)))
        if redue and current is not None:
            log.info("check.policy_changed", previous=current, current=fingerprint)

    def retire(self) -> None:
        """Say that this checker runs no more passes: its policy no longer counts as live.

        Called when the daemon stops and after a one-off ``notifier check``; a replica that
        dies without it counts as live for three of its intervals.
        """
        with self._database.write() as connection:
            connection.execute(delete(_meta).where(_meta.c.key == self._replica_key))

    def _set_meta(self, connection: Connection, key: str, value: str) -> None:
        statement = upsert(self._database.dialect, _meta).values(key=key, value=value)
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=[_meta.c.key], set_={"value": statement.excluded.value}
            )
        )

    def _snoozes(self, now: datetime) -> dict[tuple[str, str], list[tuple[str | None, SnoozeRule]]]:
        """Active snoozes by (source, token id); expired ones are dropped as we go."""
        with self._database.read() as connection:
            rows = connection.execute(
                select(_snoozes).where(or_(_snoozes.c.until.is_(None), _snoozes.c.until > now))
            ).all()
        active: dict[tuple[str, str], list[tuple[str | None, SnoozeRule]]] = {}
        for row in rows:
            threshold = timedelta(seconds=row.threshold_s) if row.threshold_s is not None else None
            active.setdefault((row.source, row.token_id), []).append(
                (row.sink, SnoozeRule(until=row.until, threshold=threshold))
            )
        return active

    # --- one sink -----------------------------------------------------------------------------

    def _run_sink(
        self,
        sink: Sink,
        snapshots: list[tuple[str, Snapshot]],
        snoozes: dict[tuple[str, str], list[tuple[str | None, SnoozeRule]]],
        now: datetime,
        report: PassReport,
        *,
        dry_run: bool,
    ) -> None:
        """Run one sink's share of the pass."""
        if sink.digest and not dry_run and not self._take_sink_lease(sink.name):
            log.info("sink.skipped", sink=sink.name, reason="another replica runs it this pass")
            return
        pending: list[_Item] = []
        notified = 0
        decide = self._policy.decide
        name = sink.name
        try:
            for source, batch in self._batches(sink, snapshots):
                items = [
                    _Item(
                        source,
                        candidate,
                        decide(
                            candidate.token,
                            candidate.state,
                            name,
                            now,
                            snooze=_snooze_for(snoozes, source, candidate.token_id, name)
                            if snoozes
                            else None,
                            token_key=(source, candidate.token_id),
                        ),
                    )
                    for candidate in batch
                ]
                to_send = [item for item in items if item.decision.notice is not None]
                notified += sum(
                    1
                    for item in to_send
                    if item.decision.notice is not None
                    and item.decision.notice.kind is NoticeKind.EXPIRING
                )
                if dry_run:
                    report.would_send.extend(
                        item.decision.notice
                        for item in to_send
                        if item.decision.notice is not None
                        and accepts(sink, item.decision.notice)
                        and item.decision.notice.kind is not NoticeKind.RESOLVED
                    )
                    continue
                if len(to_send) < len(items):
                    self._postpone(name, [item for item in items if item.decision.notice is None])
                claimed = self._claim(name, to_send, now)
                report.claimed_elsewhere += len(to_send) - len(claimed)
                if sink.digest:
                    pending.extend(claimed)
                elif claimed:
                    self._deliver_and_record(sink, claimed, now, report)
                if self._stop.is_set():
                    report.interrupted = True
                    break
            if pending:
                self._deliver_and_record(sink, pending, now, report)
        finally:
            if sink.digest and not dry_run:
                self._release_sink_lease(name)
        # Every token in the window is either notified now or waiting (backoff, snooze).
        report.skipped_backoff += max(report.in_window - notified, 0)

    def _batches(
        self, sink: Sink, snapshots: list[tuple[str, Snapshot]]
    ) -> Iterator[tuple[str, list[Candidate]]]:
        for source, snapshot in snapshots:
            for batch in chain(
                snapshot.due_batches(sink.name, self._batch_size),
                snapshot.closing_batches(sink.name, self._batch_size),
            ):
                yield source, batch

    def _deliver_and_record(
        self, sink: Sink, items: list[_Item], now: datetime, report: PassReport
    ) -> None:
        """Deliver claimed *items* in chunks, recording after each; release them on a stop."""
        deliverable: list[_Item] = []
        records: list[dict[str, Any]] = []
        for item in items:
            notice = item.decision.notice
            if notice is not None and accepts(sink, notice):
                deliverable.append(item)
            else:  # the sink's route leaves it out: recorded as skipped, never sent
                after = self._policy.skipped(item.decision, now)
                records.append(_record(sink.name, item, after, None, now))
        start = 0
        chunked = not sink.digest
        while start < len(deliverable):
            size = self._chunk_size(sink.name) if chunked else len(deliverable)
            chunk = deliverable[start : start + size]
            started = time.perf_counter()
            outcomes = _deliver(sink, [i.decision.notice for i in chunk if i.decision.notice])
            self._pace[sink.name] = (time.perf_counter() - started) / len(chunk)
            unsent = self._tally(sink.name, chunk, outcomes, now, report=report, records=records)
            if records:
                self._record(records)
            records = []
            _log_failures(sink.name, chunk, outcomes)
            if unsent or (start + len(chunk) < len(deliverable) and self._stop.is_set()):
                # Stopping: what was claimed but not sent goes back at once, for the next
                # pass (here or on another replica) to send without waiting out the lease.
                rest = [
                    (i.source, i.candidate.token_id, sink.name)
                    for i in deliverable[start + len(chunk) :]
                ]
                self._release(unsent + rest)
                report.released += len(unsent) + len(rest)
                report.interrupted = True
                return
            if not all(outcome.ok for outcome in outcomes):
                # The rest shares one retry deadline, as one call: a receiver that is down
                # costs one deadline per batch, not one per chunk.
                chunked = False
            start += len(chunk)
        if records:
            self._record(records)

    def _tally(
        self,
        sink: str,
        chunk: list[_Item],
        outcomes: list[Outcome],
        now: datetime,
        *,
        report: PassReport,
        records: list[dict[str, Any]],
    ) -> list[tuple[str, str, str]]:
        """Count each outcome and add its record; return the keys a stop kept from sending."""
        unsent: list[tuple[str, str, str]] = []
        for item, outcome in zip(chunk, outcomes, strict=True):
            if outcome.stopped:  # a stop came first: not sent, and not a failure either
                unsent.append((item.source, item.candidate.token_id, sink))
                continue
            kind = item.decision.notice.kind.value if item.decision.notice else "none"
            report.notices[sink, kind, "sent" if outcome.ok else "failed"] += 1
            if outcome.ok:
                report.sent[sink] += 1
                after = self._policy.delivered(item.decision, now)
            else:
                report.failed[sink] += 1
                after = self._policy.failed(item.decision, now, permanent=outcome.permanent)
            records.append(_record(sink, item, after, outcome, now))
        return unsent

    def _chunk_size(self, sink: str) -> int:
        pace = self._pace.get(sink)
        if pace is None:
            return _FIRST_CHUNK  # not measured yet: a small first chunk tells
        return max(1, min(self._batch_size, int(_CHUNK_SECONDS / max(pace, 1e-9))))

    # --- writes -------------------------------------------------------------------------------

    def _claim(self, sink: str, items: list[_Item], now: datetime) -> list[_Item]:
        """Take a lease on each item's (token, sink) that no one holds and no one changed.

        One executemany of a conditional upsert; the rows it changed are the ones we hold.
        When it changed them all (a single daemon, or no contention) that is the answer.
        Otherwise the rows of this batch leased to this checker are read back in the same
        transaction: none of them was ours before the claim, since a pass starts by settling
        what an earlier one left, and a batch holds each (token, sink) once. A live lease of
        an earlier process of this host that is gone (stopped, or killed before it could
        release) is taken over at once rather than waited out (:meth:`_take_over`).
        """
        if not items:
            return []
        rows = [
            {
                "source": item.source,
                "token_id": item.candidate.token_id,
                "sink": sink,
                "expires_at": item.decision.state.expires_at,
                "next_due_at": now,
                "notices_sent": item.candidate.state.notices_sent if item.candidate.state else 0,
                "last_kind": item.candidate.state.last_kind if item.candidate.state else None,
                "version": item.candidate.version,
            }
            for item in items
        ]
        try:
            with self._database.write() as connection:
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
            self._held.update((item.source, item.candidate.token_id, sink) for item in items)
            raise
        self._held.update((item.source, item.candidate.token_id, sink) for item in claimed)
        self._refresh_statistics(sum(1 for item in claimed if item.candidate.state is None))
        return claimed

    def _leased_to_us(
        self, connection: Connection, sink: str, items: list[_Item]
    ) -> set[tuple[str, str]]:
        """The (source, token id) of *items* whose row for *sink* this checker leases."""
        current = _state.c
        held: set[tuple[str, str]] = set()
        for source in {item.source for item in items}:
            ids = [item.candidate.token_id for item in items if item.source == source]
            rows = connection.execute(
                select(current.token_id).where(
                    current.source == source,
                    current.sink == sink,
                    current.lease_owner == self._owner,
                    current.token_id.in_(ids),
                )
            )
            held.update((source, token_id) for (token_id,) in rows)
        return held

    def _take_over(self, connection: Connection, sink: str, items: list[_Item]) -> bool:
        """Lease to this checker the rows of *items* whose holder is gone from this host.

        Each row only while still at the version this pass read, under the holder that is
        gone: the same conditions as a claim. Return whether any holder was gone.
        """
        current = _state.c
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

    def _record(self, records: list[dict[str, Any]]) -> None:
        """Write each outcome, and release the lease, in one short transaction."""
        keys = [(r["k_source"], r["k_token_id"], r["k_sink"]) for r in records]
        self._held.difference_update(keys)
        try:
            with self._database.write() as connection:
                self._statements.record.execute(connection, records)
        except Exception:
            self._unwritten.extend(records)  # settle() writes them on the next pass
            raise

    def _release(self, keys: list[tuple[str, str, str]]) -> None:
        """Give back leases this checker holds but will not use."""
        if not keys:
            return
        rows = [
            {"k_source": source, "k_token_id": token, "k_sink": sink}
            for source, token, sink in keys
        ]
        with self._database.write() as connection:
            self._statements.release.execute(connection, rows)
        self._held.difference_update(keys)

    def _postpone(self, sink: str, items: list[_Item]) -> None:
        """Store when rows that are not due now will be: each written over the version read."""
        if not items:
            return
        rows = [
            {
                "source": item.source,
                "token_id": item.candidate.token_id,
                "sink": sink,
                "expires_at": item.decision.state.expires_at,
                "next_due_at": item.decision.next_due_at,
                "notices_sent": item.decision.state.notices_sent,
                "last_kind": item.decision.state.last_kind,
                "last_threshold_s": _seconds(item.decision.state.last_threshold),
                "last_sent_at": item.decision.state.last_sent_at,
                "version": item.candidate.version,
            }
            for item in items
        ]
        with self._database.write() as connection:
            self._statements.postpone.execute(connection, rows)
        self._refresh_statistics(sum(1 for item in items if item.candidate.state is None))

    def _refresh_statistics(self, new_rows: int) -> None:
        """ANALYZE the state and notification tables on PostgreSQL once they have grown a lot.

        PostgreSQL plans by its statistics, and a table that grew from nothing (the first
        pass over a large fleet, a new sink) has none until autovacuum gets to it, a minute
        or more later. Meanwhile the planner takes it for a few rows: each record looked up
        its row by scanning the sink's index instead of the primary key, and prepared
        statements kept that plan, so a first pass over 10,000 tokens took 15 s, not 2. So
        whenever this checker has created more state rows than the table held at the last
        refresh (at least _ANALYZE_AFTER), it refreshes them: a few times in a first pass,
        then rarely. A refresh that fails (no privilege) is logged and the pass goes on.
        """
        if self._database.dialect != "postgresql" or not new_rows:
            return
        self._new_rows += new_rows
        if self._new_rows < max(_ANALYZE_AFTER, self._analyzed_rows):
            return
        self._new_rows = 0
        try:
            with self._database.write() as connection:
                connection.exec_driver_sql("ANALYZE delivery_state, notifications")
                rows = connection.exec_driver_sql(
                    "SELECT reltuples FROM pg_class WHERE oid = 'delivery_state'::regclass"
                ).scalar()
        except DatabaseUnavailableError:
            raise
        except Exception as error:  # noqa: BLE001 - statistics help; the pass must not fail
            log.warning("check.analyze_failed", reason=f"{type(error).__name__}: {error}")
            return
        self._analyzed_rows = int(rows or 0)

    # --- the lease of a digest sink -----------------------------------------------------------

    def _take_sink_lease(self, sink: str) -> bool:
        insert = upsert(self._database.dialect, _sink_leases).values(
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

    def _release_sink_lease(self, sink: str) -> None:
        with self._database.write() as connection:
            connection.execute(
                delete(_sink_leases).where(
                    _sink_leases.c.sink == sink, _sink_leases.c.owner == self._owner
                )
            )


class _Statements:
    """The pass's writes, built once per checker.

    Building an upsert (its ``excluded`` columns) costs more than running it for a batch, and
    a statement built once is also compiled once. Each runs as a :class:`BulkStatement`:
    its rows reach the driver without SQLAlchemy's per-row work.
    """

    def __init__(self, database: Database, owner: str, lease_seconds: float) -> None:
        dialect = database.dialect
        current = _state.c
        live_lease_free = or_(current.lease_until.is_(None), current.lease_until <= db_now())
        claim = upsert(dialect, _state).values(
            attempts=_ZERO, lease_owner=owner, lease_until=db_now(lease_seconds)
        )
        claiming = claim.on_conflict_do_update(
            index_elements=[current.source, current.token_id, current.sink],
            set_={
                "lease_owner": claim.excluded.lease_owner,
                "lease_until": claim.excluded.lease_until,
                "version": current.version + _ONE,
            },
            where=and_(live_lease_free, current.version == claim.excluded.version),
        )
        self.claim = database.bulk(claiming, _CLAIM_KEYS)
        postpone = upsert(dialect, _state).values(attempts=_ZERO)
        incoming = postpone.excluded
        postponing = postpone.on_conflict_do_update(
            index_elements=[current.source, current.token_id, current.sink],
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
        self.postpone = database.bulk(postponing, _POSTPONE_KEYS)
        ours = and_(
            current.source == bindparam("k_source"),
            current.token_id == bindparam("k_token_id"),
            current.sink == bindparam("k_sink"),
            current.lease_owner == owner,
        )
        recording = (
            update(_state)
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
        self.record = database.bulk(recording, _RECORD_KEYS)
        releasing = (
            update(_state)
            .where(ours)
            .values(lease_owner=null(), lease_until=null(), version=current.version + _ONE)
        )
        self.release = database.bulk(releasing, _KEY_KEYS)
        # Rare (a process of this host that has gone left its leases), so a plain statement.
        self.take_over = (
            update(_state)
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


_KEY_KEYS = ("k_source", "k_token_id", "k_sink")
_CLAIM_KEYS = (
    "source",
    "token_id",
    "sink",
    "expires_at",
    "next_due_at",
    "notices_sent",
    "last_kind",
    "version",
)
_RECORD_KEYS = (
    *_KEY_KEYS,
    "v_expires_at",
    "v_next_due_at",
    "v_last_sent_at",
    "v_last_notice_id",
    "v_last_kind",
    "v_last_threshold_s",
    "v_notices_sent",
    "v_attempts",
    "v_last_attempt_at",
    "v_last_error",
)
_POSTPONE_KEYS = (*_CLAIM_KEYS, "last_threshold_s", "last_sent_at")


def _snooze_for(
    snoozes: dict[tuple[str, str], list[tuple[str | None, SnoozeRule]]],
    source: str,
    token_id: str,
    sink: str,
) -> SnoozeRule | None:
    for snoozed_sink, rule in snoozes.get((source, token_id), ()):
        if snoozed_sink is None or snoozed_sink == sink:
            return rule
    return None


def _seconds(value: timedelta | None) -> int | None:
    return None if value is None else int(value.total_seconds())


def _record(
    sink: str, item: _Item, after: Decision, outcome: Outcome | None, now: datetime
) -> dict[str, Any]:
    """The state row after a delivery (*outcome*) or a skip (no outcome)."""
    notice = after.notice
    failed = outcome is not None and not outcome.ok
    return {
        "k_source": item.source,
        "k_token_id": item.candidate.token_id,
        "k_sink": sink,
        "v_expires_at": after.state.expires_at,
        "v_next_due_at": after.next_due_at,
        "v_last_sent_at": after.state.last_sent_at,
        "v_last_notice_id": notice.id if notice and outcome and outcome.ok else None,
        "v_last_kind": after.state.last_kind,
        "v_last_threshold_s": _seconds(after.state.last_threshold),
        "v_notices_sent": after.state.notices_sent,
        "v_attempts": after.state.attempts,
        "v_last_attempt_at": now if outcome is not None else None,
        "v_last_error": (
            (outcome.error or "failed")[:_ERROR_LIMIT] if failed and outcome else None
        ),
    }


def _deliver(sink: Sink, notices: list[Notice]) -> list[Outcome]:
    """Call the sink; a sink that raises or miscounts fails the batch, not the pass."""
    if not notices:
        return []
    try:
        outcomes = sink.deliver(notices)
    except Exception as error:
        log.exception("sink.crashed", sink=sink.name, notices=len(notices))
        return [Outcome.failed(f"{type(error).__name__}: {error}")] * len(notices)
    if len(outcomes) != len(notices):
        message = f"sink returned {len(outcomes)} outcomes for {len(notices)} notices"
        log.error("sink.crashed", sink=sink.name, error=message)
        return [Outcome.failed(message)] * len(notices)
    return outcomes


def _log_failures(sink: str, items: list[_Item], outcomes: list[Outcome]) -> None:
    """One ``sink.failed`` line per kind of failure in a batch, not one per token."""
    groups: dict[bool, list[tuple[_Item, Outcome]]] = {}
    for item, outcome in zip(items, outcomes, strict=True):
        if not outcome.ok and not outcome.stopped:
            groups.setdefault(outcome.permanent, []).append((item, outcome))
    for permanent, failures in groups.items():
        first_item, first_outcome = failures[0]
        log.warning(
            "sink.failed",
            sink=sink,
            permanent=permanent,
            failed=len(failures),
            token_id=first_item.candidate.token_id,
            error=first_outcome.error,
            retry="after the backoff interval" if permanent else "next pass",
        )
