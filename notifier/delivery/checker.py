"""One check pass: find what is due, decide, claim, deliver, and record after the send.

For each sink and each source, the pass reads the candidates: tokens in the window that are
due for that sink (no state yet, ``next_due_at`` reached, or state about an older expiry),
and the sink's open loops whose token has left the window (expired, renewed, rotated,
revoked, deleted), as the ledger reads them (notifier/delivery/ledger). Each batch:

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

A lease names its process (notifier/delivery/leases.py). One held by an earlier process of
this host that has gone is taken over at once, so a restart never waits out its
predecessor's leases; a lease of another host runs out as usual.

A pass that fails on the database **settles** what it left at the start of the next one (and
when the daemon stops): outcomes it could not write are written then, so a notice sent just
before the database went away is not sent again; claims it holds but did not send are
released. Records and releases apply only while this checker still holds the lease.

A failing sink never blocks another: each has its own state and its own loop. A broken
source is skipped for the pass; a source of many places (x509) that could read only some of
them goes on with those, and is reported failed all the same (``source.failed``, exit 75). A
database error fails the pass; the caller logs ``check.failed`` and lives on.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain
from typing import Any

import structlog

from notifier.core.clock import Clock
from notifier.core.model import Notice, NoticeKind, WatchedToken
from notifier.core.policy import Policy
from notifier.credentials.found import forget_sources, record_found
from notifier.db.database import Database
from notifier.delivery.coordination import Coordination
from notifier.delivery.leases import lease_owner
from notifier.delivery.ledger import (
    Candidate,
    Item,
    Key,
    Ledger,
    View,
    Walks,
    WindowView,
    record_row,
    view,
)
from notifier.delivery.retention import prune_if_due
from notifier.delivery.snoozes import Snoozes, active_snoozes
from notifier.sinks import Outcome, Sink, accepts
from notifier.sources import Inventory, PartlyReadable, SourceError, TokenSource
from notifier.sources.store import StoreSource

_CHUNK_SECONDS = 0.5  # a delivery chunk's target length: how long a stop request waits
_FIRST_CHUNK = 16  # notices in a sink's first chunk, before its pace is known

log = structlog.get_logger("notifier.check")


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
    # Credentials each source read: all of them where it reads everything (Inventory),
    # else those of the window; by source, in the order of the sources.
    found: dict[str, int] = field(default_factory=dict)
    # Every credential an Inventory source read, when the checker collects them (metrics).
    credentials: dict[str, list[WatchedToken]] = field(default_factory=dict)
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
        batch_size: int = 2000,
        owner: str | None = None,
        stop: threading.Event | None = None,
        retention: timedelta | None = None,
        count_within: bool = False,
        collect_credentials: bool = False,
        forget_unlisted: bool = False,
    ) -> None:
        self._database = database
        self._sources = list(sources) if sources is not None else [StoreSource(database)]
        self._sinks = list(sinks)
        self._policy = policy
        self._clock = clock
        self._batch_size = batch_size
        self._owner = owner or lease_owner()
        self._stop = stop or threading.Event()
        self._retention = retention
        self._count_within = count_within
        self._collect_credentials = collect_credentials
        # The daemon's first pass drops what sources no longer configured found.
        self._forget_unlisted = forget_unlisted
        self._ledger = Ledger(database, self._owner, lease)
        self._replicas = Coordination(database, self._owner, lease)
        # Seconds per notice each sink took lately: sizes its next chunk.
        self._pace: dict[str, float] = {}
        # The last walk over each sink's open loops that found nothing to close.
        self._walks = Walks()

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
            self._replicas.sync_policy(self._policy.fingerprint, self._policy.pass_interval, now)
        snoozes = active_snoozes(self._database, now)
        views = self._read_sources(now, report, dry_run=dry_run)
        for sink in self._sinks:
            if self._stop.is_set():
                report.interrupted = True
                break
            self._run_sink(sink, views, snoozes, now, report, dry_run=dry_run)
        if self._retention is not None and not dry_run and not report.interrupted:
            try:
                prune_if_due(self._database, now, self._retention)
            except Exception as error:  # noqa: BLE001 - housekeeping must not fail a pass
                log.warning("retention.failed", reason=f"{type(error).__name__}: {error}")
        report.duration_ms = (time.perf_counter() - started) * 1000
        return report

    def _read_sources(
        self, now: datetime, report: PassReport, *, dry_run: bool
    ) -> list[tuple[str, View]]:
        """Each source's view of the pass; a failing source is reported and left out.

        What each source other than the store read is kept for the list of every watched
        credential (notifier/credentials.py), unless the pass is a dry run.
        """
        views: list[tuple[str, View]] = []
        if self._forget_unlisted and not dry_run:
            self._forget_unlisted = not self._keep_found(
                forget_sources,
                [source.name for source in self._sources if not isinstance(source, StoreSource)],
            )
        for source in self._sources:
            try:
                seen = view(
                    source,
                    self._database,
                    now,
                    self._policy.horizon,
                    self._policy.lookback,
                    self._walks,
                )
            except SourceError as error:
                # One broken source is skipped for this pass; the others go on.
                log.error("source.failed", source=source.name, reason=str(error))
                report.failed_sources.append(source.name)
                continue
            if isinstance(source, PartlyReadable) and (problems := source.problems()):
                # Some places failed, the rest was read: the pass goes on with what was,
                # and reports the source failed (exit 75) so that the failure is seen.
                for problem in problems:
                    log.error("source.failed", source=source.name, reason=problem, partial=True)
                report.failed_sources.append(source.name)
            views.append((source.name, seen))
            report.in_window += seen.in_window
            found = self._found(source, seen, report)
            if found is not None and not dry_run:
                self._keep_found(record_found, source.name, found, now)
            if self._count_within:
                report.within.update(seen.within(self._policy.count_marks))
        return views

    def _found(
        self, source: TokenSource, seen: View, report: PassReport
    ) -> Sequence[WatchedToken] | None:
        """What *source* read this pass (None for the store, which is listed from its table)."""
        if isinstance(source, Inventory):
            found = source.found()
            report.found[source.name] = len(found)
            if self._collect_credentials:
                report.credentials[source.name] = list(found)
            return found
        report.found[source.name] = seen.in_window
        # A source that reads only its window (sql): what it found is that window.
        return seen.tokens if isinstance(seen, WindowView) else None

    def _keep_found(self, write: Callable[..., object], *args: Any) -> bool:
        """Write what the sources found; a failure is logged, never the pass's failure."""
        try:
            write(self._database, *args)
        except Exception as error:  # noqa: BLE001 - the list of credentials is not a delivery
            log.warning("credentials.failed", reason=f"{type(error).__name__}: {error}")
            return False
        return True

    def settle(self) -> int:
        """Write what a failed pass could not write, and release the claims it left.

        See :meth:`Ledger.settle`; return how many claims were released.
        """
        return self._ledger.settle()

    def retire(self) -> None:
        """Say that this checker runs no more passes: its policy no longer counts as live.

        Called when the daemon stops and after a one-off ``notifier check``; a replica that
        dies without it counts as live for three of its intervals.
        """
        self._replicas.retire()

    # --- one sink -----------------------------------------------------------------------------

    def _run_sink(
        self,
        sink: Sink,
        views: list[tuple[str, View]],
        snoozes: Snoozes,
        now: datetime,
        report: PassReport,
        *,
        dry_run: bool,
    ) -> None:
        """Run one sink's share of the pass."""
        if sink.digest and not dry_run and not self._replicas.take_sink_lease(sink.name):
            log.info("sink.skipped", sink=sink.name, reason="another replica runs it this pass")
            return
        pending: list[Item] = []
        notified = 0
        decide = self._policy.decide
        name = sink.name
        try:
            for source, batch in self._batches(sink, views):
                items = [
                    Item(
                        source,
                        candidate,
                        decide(
                            candidate.token,
                            candidate.state,
                            name,
                            now,
                            snooze=snoozes.rule_for(source, candidate.token_id, name),
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
                    self._ledger.postpone(
                        name, [item for item in items if item.decision.notice is None]
                    )
                claimed = self._ledger.claim(name, to_send, now)
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
            self._ledger.flush()
        finally:
            if sink.digest and not dry_run:
                self._replicas.release_sink_lease(name)
        # Every token in the window is either notified now or waiting (backoff, snooze).
        report.skipped_backoff += max(report.in_window - notified, 0)

    def _batches(
        self, sink: Sink, views: list[tuple[str, View]]
    ) -> Iterator[tuple[str, list[Candidate]]]:
        for source, seen in views:
            for batch in chain(
                seen.due_batches(sink.name, self._batch_size),
                seen.closing_batches(sink.name, self._batch_size),
            ):
                yield source, batch

    def _deliver_and_record(
        self, sink: Sink, items: list[Item], now: datetime, report: PassReport
    ) -> None:
        """Deliver claimed *items* in chunks, recording after each; release them on a stop."""
        deliverable: list[Item] = []
        records: list[dict[str, Any]] = []
        for item in items:
            notice = item.decision.notice
            if notice is not None and accepts(sink, notice):
                deliverable.append(item)
            else:  # the sink's route leaves it out: recorded as skipped, never sent
                after = self._policy.skipped(item.decision, now)
                records.append(record_row(sink.name, item, after, now, attempted=False))
        start = 0
        chunked = not sink.digest
        while start < len(deliverable):
            size = self._chunk_size(sink.name) if chunked else len(deliverable)
            chunk = deliverable[start : start + size]
            started = time.perf_counter()
            outcomes = _deliver(sink, [i.decision.notice for i in chunk if i.decision.notice])
            self._pace[sink.name] = (time.perf_counter() - started) / len(chunk)
            unsent = self._tally(sink.name, chunk, outcomes, now, report=report, records=records)
            last = start + len(chunk) >= len(deliverable)
            # After the batch's last chunk the pass writes again at once (the next batch's
            # claim, or the flush at the end of the sink): the outcomes go with that write.
            self._ledger.record(records, defer=last and not unsent)
            records = []
            _log_failures(sink.name, chunk, outcomes)
            if unsent or (start + len(chunk) < len(deliverable) and self._stop.is_set()):
                # Stopping: what was claimed but not sent goes back at once, for the next
                # pass (here or on another replica) to send without waiting out the lease.
                rest = [i.key(sink.name) for i in deliverable[start + len(chunk) :]]
                self._ledger.release(unsent + rest)
                report.released += len(unsent) + len(rest)
                report.interrupted = True
                return
            if not all(outcome.ok for outcome in outcomes):
                # The rest shares one retry deadline, as one call: a receiver that is down
                # costs one deadline per batch, not one per chunk.
                chunked = False
            start += len(chunk)
        self._ledger.record(records)

    def _tally(
        self,
        sink: str,
        chunk: list[Item],
        outcomes: list[Outcome],
        now: datetime,
        *,
        report: PassReport,
        records: list[dict[str, Any]],
    ) -> list[Key]:
        """Count each outcome and add its record; return the keys a stop kept from sending."""
        unsent: list[Key] = []
        for item, outcome in zip(chunk, outcomes, strict=True):
            if outcome.stopped:  # a stop came first: not sent, and not a failure either
                unsent.append(item.key(sink))
                continue
            kind = item.decision.notice.kind.value if item.decision.notice else "none"
            report.notices[sink, kind, "sent" if outcome.ok else "failed"] += 1
            if outcome.ok:
                report.sent[sink] += 1
                after = self._policy.delivered(item.decision, now)
            else:
                report.failed[sink] += 1
                after = self._policy.failed(item.decision, now, permanent=outcome.permanent)
            records.append(
                record_row(
                    sink, item, after, now, attempted=True, sent=outcome.ok, error=outcome.error
                )
            )
        return unsent

    def _chunk_size(self, sink: str) -> int:
        pace = self._pace.get(sink)
        if pace is None:
            return _FIRST_CHUNK  # not measured yet: a small first chunk tells
        return max(1, min(self._batch_size, int(_CHUNK_SECONDS / max(pace, 1e-9))))


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


def _log_failures(sink: str, items: list[Item], outcomes: list[Outcome]) -> None:
    """One ``sink.failed`` line per kind of failure in a batch, not one per token."""
    groups: dict[bool, list[tuple[Item, Outcome]]] = {}
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
