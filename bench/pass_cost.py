"""Pass cost: the Checker against two baselines, measured in the same run.

N tokens, about k of them inside the detection window (bench/generate.py). For each backend
(SQLite, PostgreSQL) and each (N, k), every repeat runs three worker processes on the same
database, each kind first, second and last in turn:

- **ours**: a :class:`~notifier.delivery.checker.Checker` with the log sink (to a file) and
  the ui sink, as ``notifier check`` builds it; a warm-up pass, then the timed **first pass** (every
  in-window token notified) and the timed **steady pass** (everything in backoff), the median
  of ``STEADY_PASSES`` of them after each first pass;
- **raw**: the limit: the same statements written by hand in plain ``sqlite3`` / ``psycopg``
  in one process, with the same commit granularity (per batch of 2000: a read transaction for
  the due query, a write transaction for the claims with RETURNING, one for the ui upsert, one
  for the outcomes), the same per-pass statements (the policy and replica rows read, this
  replica's row written; snoozes, window count, the count of token changes, and the walk
  over every open loop after a change or else the loops that left by time), and a stdlib
  log line per notice to a file. Its ratio is our overhead over our own design;
- **minimal**: the minimal work of the same job (#13), the baseline the goals are set
  against: for each sink, one query of the due tokens of the window (and the last backoff
  interval, for expired notices) left-joined with their state; a log line per notice (log)
  or an upserted notification (ui); the state rows upserted; one transaction per sink. No
  claims, leases, paging, replica rows, snoozes or closing query: its ratio is what the
  design's promises cost on top of the job (docs/performance.md).

Each worker reports its timings and its peak RSS (``ru_maxrss``): flat peak memory as N grows
shows that nothing is materialised in proportion to the table. The machine is shared and
noisy, so medians of --repeat runs and the ratios are what to read.

    python bench/pass_cost.py --backend sqlite --tokens 1000000 --in-window 10000
    python bench/pass_cost.py --backend postgresql --tokens 10000000 --in-window 10000 \
        --json bench/results/pass_pg_10m.json
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import logging
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from generate import (
    NOW,
    WINDOW,
    create_postgresql_database,
    drop_postgresql_database,
    generate,
    in_window_count,
    psycopg_conninfo,
)
from sqlalchemy.engine import URL, make_url

BATCH = 2000  # NOTIFIER_BATCH_SIZE's default
BACKOFF = timedelta(hours=24)
PASS_INTERVAL = timedelta(hours=1)
LOOKBACK = BACKOFF  # Policy.lookback with expired notices on
NEXT_DUE = NOW + BACKOFF - PASS_INTERVAL / 2  # backoff end, less the tolerance
SINKS = ("log", "ui")
KINDS = ("ours", "raw", "minimal")
LEASE_SECONDS = 600.0
ROUNDS = 3  # timed rounds per worker process
# Steady passes timed after each round's first pass: one costs 20-80 ms, so one alone moves
# with every hiccup of a shared host; a steady pass sends nothing, so the next is the same.
STEADY_PASSES = 5
ANALYZE_AFTER = 500  # as notifier.delivery.checker._ANALYZE_AFTER
FINGERPRINT = "backoff_ms=86400000;tolerance_ms=1800000;window_s=604800;thresholds=;expired=1"


def maxrss_mb() -> float:
    """Peak resident memory of this process, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- ours -------------------------------------------------------------------------------------


def ours(url: URL, log_path: Path) -> dict[str, float]:
    """Warm up, then time a first and a steady pass of the real Checker."""
    from notifier.core.clock import FixedClock  # noqa: PLC0415
    from notifier.core.policy import Policy  # noqa: PLC0415
    from notifier.db.database import Database  # noqa: PLC0415
    from notifier.delivery.checker import Checker  # noqa: PLC0415
    from notifier.runtime import logs  # noqa: PLC0415 - the raw worker must not import notifier
    from notifier.sinks.log import LogSink  # noqa: PLC0415
    from notifier.sinks.ui import UiSink  # noqa: PLC0415

    stream = log_path.open("a", encoding="utf-8")
    logs.configure(log_format="text", level="INFO", stream=stream)
    logging.getLogger("notifier.check").setLevel(logging.WARNING)  # no per-pass chatter
    database = Database(url)
    clock = FixedClock(NOW)
    policy = Policy(
        detection_window=WINDOW,
        backoff_interval=BACKOFF,
        pass_interval=PASS_INTERVAL,
        log_slice=timedelta(days=1),
    )
    checker = Checker(
        database=database,
        sinks=[LogSink("log", "day"), UiSink("ui", database, clock, "day")],
        policy=policy,
        clock=clock,
        lease=timedelta(seconds=LEASE_SECONDS),
        batch_size=BATCH,
    )

    def first() -> int:
        return sum(checker.run().sent.values())

    def steady() -> int:
        return sum(checker.run().sent.values())

    result = rounds(url, first, steady)
    database.dispose()
    stream.close()
    return result


def rounds(url: URL, first: Callable[[], int], steady: Callable[[], int]) -> dict[str, float]:
    """A warm-up, then ROUNDS of (reset, first pass, STEADY_PASSES steady passes): medians.

    The warm-up fills the statement caches and the connection pool, as a daemon has them.
    Every kind starts with its start-up's objects collected and frozen (``gc.freeze``), as
    ``notifier check`` and ``notifier run`` do before their first pass
    (``notifier.runtime.heap.settle``): the baselines get the same collector as notifier.
    """
    gc.collect()
    gc.freeze()
    reset(url)
    first()
    firsts: list[float] = []
    steadies: list[float] = []
    sent = 0
    for _ in range(ROUNDS):
        reset(url)
        started = time.perf_counter()
        sent = first()
        firsts.append(time.perf_counter() - started)
        for _ in range(STEADY_PASSES):
            started = time.perf_counter()
            again = steady()
            steadies.append(time.perf_counter() - started)
            assert again == 0, again  # noqa: S101 - a steady pass sends nothing
    return {
        "first": statistics.median(firsts),
        "steady": statistics.median(steadies),
        "sent": sent,
    }


# --- raw --------------------------------------------------------------------------------------


COUNT_SQL = """
SELECT count(*) FROM tokens
WHERE tokens.expires_at > ? AND tokens.expires_at <= ?
  AND (tokens.revoked_at IS NULL OR tokens.revoked_at > ?) AND tokens.superseded_by IS NULL
"""
COLUMNS_SQL = """
tokens.id, tokens.name, tokens.expires_at, tokens.revoked_at, tokens.owner, tokens.labels,
tokens.created_at, tokens.superseded_by, delivery_state.token_id AS state_token_id,
delivery_state.sink, delivery_state.expires_at AS state_expires_at,
delivery_state.last_sent_at, delivery_state.notices_sent, delivery_state.attempts,
delivery_state.last_kind, delivery_state.last_threshold_s, delivery_state.version
"""
DUE_SQL = f"""
SELECT {COLUMNS_SQL}
FROM tokens LEFT OUTER JOIN delivery_state
  ON delivery_state.source = 'store' AND delivery_state.token_id = tokens.id
 AND delivery_state.sink = ?
WHERE tokens.expires_at > ? AND tokens.expires_at <= ?
  AND (tokens.revoked_at IS NULL OR tokens.revoked_at > ?) AND tokens.superseded_by IS NULL
  AND (delivery_state.sink IS NULL OR delivery_state.next_due_at <= ?
       OR delivery_state.expires_at IS NULL OR delivery_state.expires_at != tokens.expires_at)
  {{after}}
ORDER BY tokens.expires_at, tokens.id LIMIT ?
"""
CLOSING_SQL = f"""
SELECT {COLUMNS_SQL}
FROM delivery_state LEFT OUTER JOIN tokens ON tokens.id = delivery_state.token_id
WHERE delivery_state.source = 'store' AND delivery_state.sink = ?
  AND delivery_state.last_kind = 'expiring'
  AND (tokens.id IS NULL OR tokens.expires_at IS NULL OR NOT (
       tokens.expires_at > ? AND tokens.expires_at <= ?
       AND (tokens.revoked_at IS NULL OR tokens.revoked_at > ?)
       AND tokens.superseded_by IS NULL))
ORDER BY delivery_state.expires_at, delivery_state.token_id LIMIT ?
"""
# The walk over every open loop runs when tokens changed (the count migration 0004's
# triggers keep); otherwise only the loops whose expiry left the window are read.
CHANGES_SQL = "SELECT value FROM meta WHERE key = 'tokens.changes'"
EXPIRED_SQL = f"""
SELECT {COLUMNS_SQL}
FROM delivery_state LEFT OUTER JOIN tokens ON tokens.id = delivery_state.token_id
WHERE delivery_state.source = 'store' AND delivery_state.sink = ?
  AND delivery_state.last_kind = 'expiring' AND delivery_state.expires_at <= ?
ORDER BY delivery_state.expires_at, delivery_state.token_id LIMIT ?
"""
# PostgreSQL: each state row, and each open loop's token, by a LATERAL primary-key probe,
# as notifier's queries do there (sources/store.py: the planner's choice without statistics
# would scan), and the partial index on open loops.
STATE_LATERAL = """
LEFT JOIN LATERAL (SELECT token_id, sink, expires_at, last_sent_at, notices_sent, attempts,
  last_kind, last_threshold_s, version, next_due_at FROM delivery_state
  WHERE delivery_state.source = 'store' AND delivery_state.token_id = tokens.id
    AND delivery_state.sink = ? LIMIT 1) AS s ON true
"""
DUE_SQL_LATERAL = f"""
SELECT tokens.id, tokens.name, tokens.expires_at, tokens.revoked_at, tokens.owner,
  tokens.labels, tokens.created_at, tokens.superseded_by, s.token_id AS state_token_id, s.sink,
  s.expires_at AS state_expires_at, s.last_sent_at, s.notices_sent, s.attempts, s.last_kind,
  s.last_threshold_s, s.version
FROM tokens {STATE_LATERAL}
WHERE tokens.expires_at > ? AND tokens.expires_at <= ?
  AND (tokens.revoked_at IS NULL OR tokens.revoked_at > ?) AND tokens.superseded_by IS NULL
  AND (s.sink IS NULL OR s.next_due_at <= ? OR s.expires_at IS NULL
       OR s.expires_at != tokens.expires_at)
  {{after}}
ORDER BY tokens.expires_at, tokens.id LIMIT ?
"""
CLOSING_SQL_LATERAL = """
SELECT t.id, t.name, t.expires_at, t.revoked_at, t.owner, t.labels, t.created_at,
  t.superseded_by, delivery_state.token_id AS state_token_id, delivery_state.sink,
  delivery_state.expires_at AS state_expires_at, delivery_state.last_sent_at,
  delivery_state.notices_sent, delivery_state.attempts, delivery_state.last_kind,
  delivery_state.last_threshold_s, delivery_state.version
FROM delivery_state LEFT JOIN LATERAL (SELECT * FROM tokens
  WHERE tokens.id = delivery_state.token_id LIMIT 1) AS t ON true
WHERE delivery_state.source = 'store' AND delivery_state.sink = ?
  AND delivery_state.last_kind = 'expiring'
  AND (t.id IS NULL OR t.expires_at IS NULL OR NOT (
       t.expires_at > ? AND t.expires_at <= ?
       AND (t.revoked_at IS NULL OR t.revoked_at > ?) AND t.superseded_by IS NULL))
ORDER BY delivery_state.expires_at, delivery_state.token_id LIMIT ?
"""
CLAIM_SQL = """
INSERT INTO delivery_state (source, token_id, sink, expires_at, next_due_at, notices_sent,
  attempts, last_kind, lease_owner, lease_until, version)
VALUES {values}
ON CONFLICT (source, token_id, sink) DO UPDATE SET lease_owner = excluded.lease_owner,
  lease_until = excluded.lease_until, version = delivery_state.version + 1
WHERE (delivery_state.lease_until IS NULL OR delivery_state.lease_until <= {now})
  AND delivery_state.version = excluded.version
RETURNING source, token_id
"""
UI_SQL = """
INSERT INTO notifications (id, source, token_id, token_name, level, kind, message, hint,
  expires_at, days_left, first_seen, last_seen, occurrences, acknowledged_at, resolved_at)
VALUES (?, 'store', ?, ?, 'warning', 'expiring', ?, ?, ?, ?, ?, ?, 1, NULL, NULL)
ON CONFLICT (source, token_id) DO UPDATE SET token_name = excluded.token_name,
  level = excluded.level, kind = excluded.kind, message = excluded.message,
  hint = excluded.hint, expires_at = excluded.expires_at, days_left = excluded.days_left,
  last_seen = excluded.last_seen,
  first_seen = CASE WHEN notifications.resolved_at IS NOT NULL THEN excluded.first_seen
                    ELSE notifications.first_seen END,
  occurrences = CASE WHEN notifications.resolved_at IS NOT NULL THEN 1
                     ELSE notifications.occurrences + 1 END,
  acknowledged_at = NULL, resolved_at = NULL
"""
RECORD_SQL = """
UPDATE delivery_state SET expires_at = ?, next_due_at = ?, last_sent_at = ?,
  last_notice_id = ?, last_kind = ?, last_threshold_s = ?, notices_sent = ?, attempts = ?,
  last_attempt_at = ?, last_error = ?, lease_owner = NULL, lease_until = NULL,
  version = delivery_state.version + 1
WHERE delivery_state.source = ? AND delivery_state.token_id = ? AND delivery_state.sink = ?
"""


class RawBackend:
    """The few things plain sqlite3 and psycopg spell differently."""

    placeholder = "?"
    db_now = ""
    due_sql = DUE_SQL
    closing_sql = CLOSING_SQL
    expired_sql = EXPIRED_SQL

    def __init__(self, url: URL) -> None:
        self.url = url
        self.walked: Any = None  # the count of token changes at the last walk

    def sql(self, text: str) -> str:
        """The statement in this driver's placeholder style."""
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def time(self, moment: datetime) -> Any:
        """A time as the driver binds it."""
        return moment

    def parse(self, value: Any) -> datetime:
        """A time as the driver returns it."""
        assert isinstance(value, datetime)  # noqa: S101
        return value

    def read(self, statement: str, params: Sequence[Any]) -> list[Any]:
        """Run a query in its own short transaction."""
        raise NotImplementedError

    @contextmanager
    def write(self) -> Iterator[Any]:
        """A short write transaction; yields the cursor."""
        raise NotImplementedError
        yield

    def close(self) -> None:
        """Close the connection."""
        raise NotImplementedError

    def created(self, count: int) -> None:
        """*count* state rows were created (PostgreSQL refreshes its statistics as notifier)."""


class RawSqlite(RawBackend):
    """sqlite3, with the daemon's pragmas and BEGIN IMMEDIATE for writes."""

    db_now = "(strftime('%Y-%m-%d %H:%M:%f', 'now', '+{seconds:.3f} seconds') || '000')"

    def __init__(self, url: URL) -> None:
        super().__init__(url)
        self.connection = sqlite3.connect(str(url.database), isolation_level=None)
        for pragma in ("journal_mode=WAL", "busy_timeout=10000", "synchronous=NORMAL"):
            self.connection.execute(f"PRAGMA {pragma}")

    def time(self, moment: datetime) -> Any:
        """The stored text of a time."""
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def parse(self, value: Any) -> datetime:
        """A stored text as a time."""
        return datetime.fromisoformat(value).replace(tzinfo=UTC)

    def read(self, statement: str, params: Sequence[Any]) -> list[Any]:
        """Run a query between BEGIN and COMMIT."""
        cursor = self.connection.cursor()
        cursor.execute("BEGIN")
        rows = cursor.execute(statement, params).fetchall()
        cursor.execute("COMMIT")
        return rows

    @contextmanager
    def write(self) -> Iterator[Any]:
        """BEGIN IMMEDIATE ... COMMIT, as the daemon writes."""
        cursor = self.connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        yield cursor
        cursor.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


class RawPostgresql(RawBackend):
    """psycopg 3, one connection, a transaction per statement group."""

    placeholder = "%s"
    db_now = "(statement_timestamp() + make_interval(secs => {seconds}))"
    due_sql = DUE_SQL_LATERAL
    closing_sql = CLOSING_SQL_LATERAL

    def __init__(self, url: URL) -> None:
        import psycopg  # noqa: PLC0415

        super().__init__(url)
        self.connection = psycopg.connect(psycopg_conninfo(url))
        self.new_rows = 0
        self.analyzed_rows = 0

    def created(self, count: int) -> None:
        """ANALYZE by notifier's rule: once more rows were created than the table last held."""
        self.new_rows += count
        if self.new_rows < max(ANALYZE_AFTER, self.analyzed_rows):
            return
        self.new_rows = 0
        with self.write() as cursor:
            cursor.execute("ANALYZE delivery_state, notifications")
            cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'delivery_state'::regclass")
            row = cursor.fetchone()
        self.analyzed_rows = int(row[0]) if row else 0

    def read(self, statement: str, params: Sequence[Any]) -> list[Any]:
        """Run a query in its own transaction."""
        with self.connection.cursor() as cursor:
            rows = cursor.execute(statement, params).fetchall()
        self.connection.commit()
        return rows

    @contextmanager
    def write(self) -> Iterator[Any]:
        """A transaction, committed at the end."""
        with self.connection.cursor() as cursor:
            yield cursor
        self.connection.commit()

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


def raw_backend(url: URL) -> RawBackend:
    """The raw driver for *url*."""
    return RawSqlite(url) if url.get_backend_name() == "sqlite" else RawPostgresql(url)


def raw_pass(backend: RawBackend, log: logging.Logger) -> int:
    """One pass by hand; return how many notices it sent."""
    now = NOW
    now_p, horizon_p, from_p = (
        backend.time(now),
        backend.time(now + WINDOW),
        backend.time(now - LOOKBACK),
    )
    owner = f"raw:{os.getpid()}"
    backend.read(
        backend.sql("SELECT key, value FROM meta WHERE key = ? OR key LIKE ?"),
        ["policy", "replica:%"],
    )
    with backend.write() as cursor:  # the policy this replica runs, as every pass says
        cursor.execute(
            backend.sql(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ),
            [f"replica:{owner}", f'{{"policy": "{FINGERPRINT}", "seen": "{now.isoformat()}"}}'],
        )
    backend.read(backend.sql("SELECT * FROM snoozes WHERE until IS NULL OR until > ?"), [now_p])
    backend.read(backend.sql(COUNT_SQL), [now_p, horizon_p, now_p])
    changes = backend.read(backend.sql(CHANGES_SQL), [])
    walk = changes != backend.walked  # tokens changed since the last walk: walk again
    sent = 0
    claim_now = backend.db_now.format(seconds=0.0)
    lease_until = backend.db_now.format(seconds=LEASE_SECONDS)
    for sink in SINKS:
        after: tuple[Any, str] | None = None
        while True:
            clause = "AND (tokens.expires_at, tokens.id) > (?, ?)" if after else ""
            params: list[Any] = [sink, from_p, horizon_p, now_p, now_p]
            params += [after[0], after[1]] if after else []
            rows = backend.read(backend.sql(backend.due_sql.format(after=clause)), [*params, BATCH])
            if not rows:
                break
            sent += raw_batch(backend, log, sink, rows, owner, claim_now, lease_until)
            if len(rows) < BATCH:
                break
            after = (rows[-1][2], rows[-1][0])
        if walk:
            backend.read(backend.sql(backend.closing_sql), [sink, from_p, horizon_p, now_p, BATCH])
        else:
            backend.read(backend.sql(backend.expired_sql), [sink, from_p, BATCH])
    backend.walked = changes
    return sent


def notice_of(backend: RawBackend, row: Any, sink: str) -> tuple[datetime, int, str, str]:
    """A due row's expiry, days left, warn line and notice id, as notifier makes them."""
    expires = backend.parse(row[2])
    days = (expires - NOW) // timedelta(days=1) + 1
    unit = "day" if days == 1 else "days"
    message = f"Warn: API Token {row[1]} (ID {row[0]}) will expire in less than {days} {unit}."
    key = f"store\x1f{row[0]}\x1f{sink}\x1fexpiring\x1f\x1f{expires.isoformat()}\x1f0"
    return expires, days, message, hashlib.sha256(key.encode()).hexdigest()[:32]


def ui_row(row: Any, message: str, days: int, now: Any) -> tuple[Any, ...]:
    """The parameters of UI_SQL for one notice."""
    return (
        hashlib.md5(row[0].encode(), usedforsecurity=False).hexdigest()[:12],
        row[0],
        row[1],
        message,
        "Create a new token and revoke this one before it expires.",
        row[2],
        days,
        now,
        now,
    )


def raw_batch(  # noqa: PLR0917 - the pass's state, passed down as the raw loop has it
    backend: RawBackend,
    log: logging.Logger,
    sink: str,
    rows: list[Any],
    owner: str,
    claim_now: str,
    lease_until: str,
) -> int:
    """Claim, deliver and record one batch of due rows."""
    now_p = backend.time(NOW)
    placeholders = ", ".join(
        f"('store', ?, ?, ?, ?, 0, 0, NULL, ?, {lease_until}, 0)" for _ in rows
    )
    claim_params: list[Any] = []
    for row in rows:
        claim_params += [row[0], sink, row[2], now_p, owner]
    with backend.write() as cursor:
        cursor.execute(
            backend.sql(CLAIM_SQL.format(values=placeholders, now=claim_now)), claim_params
        )
        held = {token for _, token in cursor.fetchall()}
    claimed = [row for row in rows if row[0] in held]
    backend.created(sum(1 for row in claimed if row[8] is None))
    records = []
    notices = []
    for row in claimed:
        expires, days, message, notice_id = notice_of(backend, row, sink)
        notices.append((row, message, days))
        next_due = backend.time(min(expires, NEXT_DUE))
        values = (row[2], next_due, now_p, notice_id, "expiring", None, 1, 0, now_p, None)
        records.append((*values, "store", row[0], sink))
    if sink == "log":
        for _, message, _ in notices:
            log.warning(message)
    else:
        with backend.write() as cursor:
            cursor.executemany(
                backend.sql(UI_SQL),
                [ui_row(row, message, days, now_p) for row, message, days in notices],
            )
    with backend.write() as cursor:
        cursor.executemany(backend.sql(RECORD_SQL), records)
    return len(claimed)


def raw(url: URL, log_path: Path) -> dict[str, float]:
    """Warm up, then time a first and a steady raw pass."""
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log = logging.getLogger("raw")
    log.addHandler(handler)
    log.propagate = False
    backend = raw_backend(url)
    result = rounds(url, partial(raw_pass, backend, log), partial(raw_pass, backend, log))
    backend.close()
    handler.close()
    return result


# --- minimal ----------------------------------------------------------------------------------


# The due query without paging: the whole window at once.
MINIMAL_DUE_SQL = DUE_SQL.partition("  {after}")[0]
MINIMAL_STATE_SQL = """
INSERT INTO delivery_state (source, token_id, sink, expires_at, next_due_at, last_sent_at,
  last_notice_id, last_kind, last_threshold_s, notices_sent, attempts, last_attempt_at,
  last_error, lease_owner, lease_until, version)
VALUES ('store', ?, ?, ?, ?, ?, ?, 'expiring', NULL, ?, 0, ?, NULL, NULL, NULL, 0)
ON CONFLICT (source, token_id, sink) DO UPDATE SET expires_at = excluded.expires_at,
  next_due_at = excluded.next_due_at, last_sent_at = excluded.last_sent_at,
  last_notice_id = excluded.last_notice_id, last_kind = excluded.last_kind,
  last_threshold_s = excluded.last_threshold_s, notices_sent = excluded.notices_sent,
  attempts = 0, last_attempt_at = excluded.last_attempt_at, last_error = NULL,
  version = delivery_state.version + 1
"""


def minimal_pass(backend: RawBackend, log: logging.Logger) -> int:
    """The minimal work of one pass: per sink, one query, the sends, one upsert, one commit.

    What the job needs and nothing the design adds: no claims or leases, no paging, no
    policy or replica rows, no snoozes, no closing query, no window count.
    """
    now_p, horizon_p, from_p = (
        backend.time(NOW),
        backend.time(NOW + WINDOW),
        backend.time(NOW - LOOKBACK),
    )
    sent = 0
    for sink in SINKS:
        rows = backend.read(backend.sql(MINIMAL_DUE_SQL), [sink, from_p, horizon_p, now_p, now_p])
        if not rows:
            continue
        states = []
        notifications = []
        for row in rows:
            expires, days, message, notice_id = notice_of(backend, row, sink)
            if sink == "log":
                log.warning(message)
            else:
                notifications.append(ui_row(row, message, days, now_p))
            next_due = backend.time(min(expires, NEXT_DUE))
            states.append((row[0], sink, row[2], next_due, now_p, notice_id, 1, now_p))
        with backend.write() as cursor:
            if notifications:
                cursor.executemany(backend.sql(UI_SQL), notifications)
            cursor.executemany(backend.sql(MINIMAL_STATE_SQL), states)
        backend.created(len(states))
        sent += len(rows)
    return sent


def minimal(url: URL, log_path: Path) -> dict[str, float]:
    """Warm up, then time a first and a steady minimal pass."""
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log = logging.getLogger("minimal")
    log.addHandler(handler)
    log.propagate = False
    backend = raw_backend(url)
    run = partial(minimal_pass, backend, log)
    result = rounds(url, run, run)
    backend.close()
    handler.close()
    return result


# --- orchestration ----------------------------------------------------------------------------


def reset(url: URL) -> None:
    """Forget every delivery: the next pass is a first pass again."""
    if url.get_backend_name() == "sqlite":
        connection = sqlite3.connect(str(url.database), isolation_level=None)
        connection.execute("PRAGMA busy_timeout=10000")
        connection.execute("DELETE FROM delivery_state")
        connection.execute("DELETE FROM notifications")
        connection.execute("INSERT OR REPLACE INTO meta VALUES ('policy', ?)", [FINGERPRINT])
        connection.close()
        return
    import psycopg  # noqa: PLC0415

    with psycopg.connect(psycopg_conninfo(url), autocommit=True) as connection:
        connection.execute("TRUNCATE delivery_state, notifications")
        connection.execute(
            "INSERT INTO meta VALUES ('policy', %s) ON CONFLICT (key) DO UPDATE"
            " SET value = excluded.value",
            [FINGERPRINT],
        )


def worker(kind: str, url: URL, log_path: Path) -> dict[str, float]:
    """Run one side in this process, and add its peak memory."""
    result = {"ours": ours, "raw": raw, "minimal": minimal}[kind](url, log_path)
    result["maxrss_mb"] = maxrss_mb()
    return result


def run_worker(kind: str, url: URL, log_path: Path) -> dict[str, float]:
    """Run one side in a fresh process (so its peak memory is its own)."""
    output = subprocess.run(
        [
            sys.executable,
            __file__,
            "worker",
            kind,
            url.render_as_string(hide_password=False),
            str(log_path),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


def measure(
    backend: str, tokens: int, inside: int, repeat: int, *, keep: bool = False
) -> dict[str, Any]:
    """Build one database, then run *repeat* rounds of ours and raw; return the medians."""
    with tempfile.TemporaryDirectory(prefix="notifier-bench-") as scratch:
        base = Path(scratch)
        name = f"notifier_bench_{tokens}_{inside}"
        if backend == "sqlite":
            url = URL.create("sqlite+pysqlite", database=str(base / "bench.db"))
        else:
            url = create_postgresql_database(name)
        try:
            generated = generate(url, tokens, inside)
            samples: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
            for index in range(repeat):
                # Each kind runs first, second and last in turn.
                order = KINDS[index % 3 :] + KINDS[: index % 3]
                for kind in order:
                    samples[kind].append(run_worker(kind, url, base / f"{kind}.log"))
                    (base / f"{kind}.log").unlink()
        finally:
            if backend != "sqlite" and not keep:
                drop_postgresql_database(name)
    return summarise(backend, tokens, inside, repeat, generated, samples)


def summarise(  # noqa: PLR0917
    backend: str,
    tokens: int,
    inside: int,
    repeat: int,
    generated: float,
    samples: dict[str, list[dict[str, float]]],
) -> dict[str, Any]:
    """Medians and ratios of the samples."""

    def median(kind: str, key: str) -> float:
        return statistics.median(sample[key] for sample in samples[kind])

    result: dict[str, Any] = {
        "backend": backend,
        "tokens": tokens,
        "in_window": inside,
        "repeat": repeat,
        "generate_s": round(generated, 1),
        "sent": median("ours", "sent"),
        "samples": samples,
    }
    for key in ("first", "steady", "maxrss_mb"):
        result[key] = median("ours", key)
        result[f"{key}_raw"] = median("raw", key)
        result[f"{key}_ratio"] = result[key] / result[f"{key}_raw"]
        result[f"{key}_minimal"] = median("minimal", key)
        result[f"{key}_minimal_ratio"] = result[key] / result[f"{key}_minimal"]
    return result


def report(result: dict[str, Any]) -> str:
    """The result as a few lines."""
    lines = [
        (
            f"{result['backend']}: tokens={result['tokens']} in_window={result['in_window']} "
            f"sent={result['sent']:.0f} repeat={result['repeat']} "
            f"(generated in {result['generate_s']}s)"
        )
    ]
    scales = (("first", "ms", 1000), ("steady", "ms", 1000), ("maxrss_mb", "MiB", 1))
    for key, unit, scale in scales:
        lines.append(
            f"  {key:>9}: notifier {result[key] * scale:8.1f} {unit}"
            f" | raw {result[f'{key}_raw'] * scale:8.1f} {unit} {result[f'{key}_ratio']:5.2f}x"
            f" | minimal {result[f'{key}_minimal'] * scale:8.1f} {unit}"
            f" {result[f'{key}_minimal_ratio']:5.2f}x"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments and measure (or run one worker)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "worker":
        kind, url, log_path = args[1], make_url(args[2]), Path(args[3])
        sys.stdout.write(json.dumps(worker(kind, url, log_path)) + "\n")
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument(
        "--in-window", type=float, default=0.01, help="a count, or a fraction below 1"
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, help="append the result as one JSON line")
    options = parser.parse_args(args)
    inside = in_window_count(options.tokens, options.in_window)
    result = measure(options.backend, options.tokens, inside, options.repeat)
    sys.stdout.write(report(result) + "\n")
    if options.json is not None:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        with options.json.open("a", encoding="utf-8") as out:
            out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
