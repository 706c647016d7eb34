"""One check pass: find what is due, decide, claim, deliver, and record after the send.

For each source and each sink, the pass reads the tokens inside the horizon that are due for
that sink: tokens with no state yet, state whose ``next_due_at`` has come, or state about an
older expiry (the store does this in one keyset join; see notifier/sources). Each batch:

1. ``Policy.decide`` (pure) turns each row into a notice or a later ``next_due_at``;
2. the notices are **claimed**: a conditional upsert that sets a lease with the database's
   clock, and succeeds only if no live lease is held and the row is still due. Two replicas
   never send the same notice at once; a crashed claim is retried once its lease runs out;
3. the sink delivers the batch, outside any transaction;
4. each outcome is **recorded** after the sink returned: success moves ``next_due_at`` past the
   backoff, a transient failure leaves it due for the next pass, a permanent one waits out a
   backoff. So a failed send is never lost, and at worst repeated (at-least-once).

A failing sink never blocks another: each has its own state and its own loop. A database
error fails the pass; the caller logs ``check.failed`` and lives on.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, bindparam, or_, select, update

from notifier.clock import Clock
from notifier.db.database import Database, db_now, upsert
from notifier.db.models import DeliveryStateRow, Meta
from notifier.policy import Decision, Notice, Policy, WatchedToken
from notifier.sinks import Outcome, Sink
from notifier.sources import Snapshot, SourceError, TokenSource
from notifier.sources.store import StoreSource

_ERROR_LIMIT = 500  # characters of a sink's error kept in the state row

log = structlog.get_logger("notifier.check")

_state = DeliveryStateRow.__table__
_meta = Meta.__table__
_POLICY_KEY = "policy"


def lease_owner() -> str:
    """Name this process in the leases it takes: host, pid and a per-start nonce."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{os.urandom(3).hex()}"


@dataclass
class PassReport:
    """What one pass did; the fields of its ``check.completed`` line."""

    in_window: int = 0
    sent: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    skipped_backoff: int = 0
    claimed_elsewhere: int = 0
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
            "sent_by_sink": dict(self.sent),
            "failed_by_sink": dict(self.failed),
            "failed_sources": ",".join(self.failed_sources) or None,
            "interrupted": self.interrupted or None,  # only said when it happened
            "duration_ms": round(self.duration_ms, 1),
        }


class Checker:
    """Run check passes over token sources for a set of sinks."""

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

    def run(self, *, dry_run: bool = False) -> PassReport:
        """Run one pass at ``clock.now()``; raise if the database fails."""
        started = time.perf_counter()
        now = self._clock.now()
        report = PassReport()
        if not dry_run:
            self._sync_policy()
        for source in self._sources:
            try:
                snapshot = source.snapshot(now, self._policy.horizon)
            except SourceError as error:
                # One broken source is skipped for this pass; the others go on.
                log.error("source.failed", source=source.name, reason=str(error))
                report.failed_sources.append(source.name)
                continue
            report.in_window += snapshot.in_window
            for sink in self._sinks:
                # Every token in the window is either notified now or waiting out its backoff.
                notified = self._run_sink(source.name, snapshot, sink, now, report, dry_run=dry_run)
                report.skipped_backoff += max(snapshot.in_window - notified, 0)
                if self._stop.is_set():
                    report.interrupted = True
                    break
            if report.interrupted:
                break
        report.duration_ms = (time.perf_counter() - started) * 1000
        return report

    def _sync_policy(self) -> None:
        """Make stored due times fit the policy: a changed backoff applies on this pass.

        ``next_due_at`` was computed with the backoff of its day. When the configuration
        changes, every stored due time is cleared, which makes those rows due; the policy then
        decides them afresh and stores the right time. One statement, on a change only.
        """
        fingerprint = self._policy.fingerprint
        with self._database.read() as connection:
            stored = connection.execute(
                select(_meta.c.value).where(_meta.c.key == _POLICY_KEY)
            ).scalar()
        if stored == fingerprint:
            return
        with self._database.write() as connection:
            connection.execute(update(_state).values(next_due_at=None))
            statement = upsert(self._database.dialect, _meta).values(
                key=_POLICY_KEY, value=fingerprint
            )
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[_meta.c.key], set_={"value": statement.excluded.value}
                )
            )
        if stored is not None:
            log.info("check.policy_changed", previous=stored, current=fingerprint)

    # --- one sink ---------------------------------------------------------------------------

    def _run_sink(
        self,
        source: str,
        snapshot: Snapshot,
        sink: Sink,
        now: datetime,
        report: PassReport,
        *,
        dry_run: bool,
    ) -> int:
        """Run one (source, sink) share of the pass; return how many notices it decided on."""
        notified = 0
        for batch in snapshot.due_batches(sink.name, self._batch_size):
            decisions = [self._policy.decide(token, st, sink.name, now) for token, st in batch]
            to_send = [decision for decision in decisions if decision.notice is not None]
            not_yet = [
                (token, decision)
                for (token, _), decision in zip(batch, decisions, strict=True)
                if decision.notice is None
            ]
            notified += len(to_send)
            if dry_run:
                report.would_send.extend(d.notice for d in to_send if d.notice is not None)
                continue
            if not_yet:
                self._postpone(sink.name, not_yet)
            if to_send:
                self._send(source, sink, to_send, now, report)
            if self._stop.is_set():
                break
        return notified

    def _send(
        self, source: str, sink: Sink, decisions: list[Decision], now: datetime, report: PassReport
    ) -> None:
        claimed = self._claim(source, sink.name, decisions, now)
        report.claimed_elsewhere += len(decisions) - len(claimed)
        mine = [d for d in decisions if d.notice is not None and d.notice.token_id in claimed]
        if not mine:
            return
        notices = [d.notice for d in mine if d.notice is not None]
        outcomes = _deliver(sink, notices)
        records: list[dict[str, Any]] = []
        for decision, outcome in zip(mine, outcomes, strict=True):
            notice = decision.notice
            assert notice is not None  # noqa: S101 - filtered above
            if outcome.ok:
                report.sent[sink.name] += 1
                after = self._policy.delivered(decision, now)
            else:
                report.failed[sink.name] += 1
                after = self._policy.failed(decision, now, permanent=outcome.permanent)
            records.append(_record(sink.name, notice, after, outcome, now))
        self._record(records)
        _log_failures(sink.name, mine, outcomes)

    def _claim(self, source: str, sink: str, decisions: list[Decision], now: datetime) -> set[str]:
        """Take a lease on each decision's (token, sink) that is still due and not leased.

        One executemany of a single cached statement; SQLAlchemy batches it into multi-row
        VALUES with RETURNING, which lists only the rows inserted or updated: those we hold.
        """
        insert = upsert(self._database.dialect, _state).values(
            source=source,
            sink=sink,
            next_due_at=now,
            notices_sent=0,
            attempts=0,
            lease_owner=self._owner,
            lease_until=db_now(self._lease_seconds),
        )
        current = _state.c
        incoming = insert.excluded
        statement = insert.on_conflict_do_update(
            index_elements=[current.source, current.token_id, current.sink],
            set_={"lease_owner": incoming.lease_owner, "lease_until": incoming.lease_until},
            where=and_(
                or_(current.lease_until.is_(None), current.lease_until <= db_now()),
                or_(
                    current.next_due_at.is_(None),
                    current.next_due_at <= now,
                    current.expires_at.is_(None),
                    current.expires_at != incoming.expires_at,
                ),
            ),
        ).returning(current.token_id)
        rows = [
            {"token_id": d.notice.token_id, "expires_at": d.notice.expires_at}
            for d in decisions
            if d.notice is not None
        ]
        with self._database.write() as connection:
            return set(connection.execute(statement, rows).scalars())

    def _record(self, records: list[dict[str, Any]]) -> None:
        """Write each outcome, and release the lease, in one short transaction."""
        statement = (
            update(_state)
            .where(
                _state.c.source == bindparam("k_source"),
                _state.c.token_id == bindparam("k_token_id"),
                _state.c.sink == bindparam("k_sink"),
            )
            .values(
                expires_at=bindparam("v_expires_at"),
                next_due_at=bindparam("v_next_due_at"),
                last_sent_at=bindparam("v_last_sent_at"),
                last_notice_id=bindparam("v_last_notice_id"),
                notices_sent=bindparam("v_notices_sent"),
                attempts=bindparam("v_attempts"),
                last_attempt_at=bindparam("v_last_attempt_at"),
                last_error=bindparam("v_last_error"),
                lease_owner=None,
                lease_until=None,
            )
        )
        with self._database.write() as connection:
            connection.execute(statement, records)

    def _postpone(self, sink: str, pairs: list[tuple[WatchedToken, Decision]]) -> None:
        """Store the later ``next_due_at`` of rows that turned out not to be due."""
        statement = (
            update(_state)
            .where(
                _state.c.source == bindparam("k_source"),
                _state.c.token_id == bindparam("k_token_id"),
                _state.c.sink == bindparam("k_sink"),
            )
            .values(next_due_at=bindparam("v_next_due_at"))
        )
        rows = [
            {
                "k_source": token.source,
                "k_token_id": token.token_id,
                "k_sink": sink,
                "v_next_due_at": decision.next_due_at,
            }
            for token, decision in pairs
        ]
        with self._database.write() as connection:
            connection.execute(statement, rows)


def _record(
    sink: str, notice: Notice, after: Decision, outcome: Outcome, now: datetime
) -> dict[str, Any]:
    return {
        "k_source": notice.source,
        "k_token_id": notice.token_id,
        "k_sink": sink,
        "v_expires_at": after.state.expires_at,
        "v_next_due_at": after.next_due_at,
        "v_last_sent_at": after.state.last_sent_at,
        "v_last_notice_id": notice.id if outcome.ok else None,
        "v_notices_sent": after.state.notices_sent,
        "v_attempts": after.state.attempts,
        "v_last_attempt_at": now,
        "v_last_error": None if outcome.ok else (outcome.error or "failed")[:_ERROR_LIMIT],
    }


def _deliver(sink: Sink, notices: list[Notice]) -> list[Outcome]:
    """Call the sink; a sink that raises or miscounts fails the batch, not the pass."""
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


def _log_failures(sink: str, decisions: list[Decision], outcomes: list[Outcome]) -> None:
    """One ``sink.failed`` line per kind of failure in a batch, not one per token."""
    groups: dict[bool, list[tuple[Decision, Outcome]]] = {}
    for decision, outcome in zip(decisions, outcomes, strict=True):
        if not outcome.ok:
            groups.setdefault(outcome.permanent, []).append((decision, outcome))
    for permanent, failures in groups.items():
        first_decision, first_outcome = failures[0]
        assert first_decision.notice is not None  # noqa: S101 - only notices are delivered
        log.warning(
            "sink.failed",
            sink=sink,
            permanent=permanent,
            failed=len(failures),
            token_id=first_decision.notice.token_id,
            error=first_outcome.error,
            retry="after the backoff interval" if permanent else "next pass",
        )
