"""Pass cost on SQLite: the Checker against the raw-SQL limit, measured in the same run.

N tokens, about k of them inside the detection window. Three timings, each the median of
--repeat runs, each against its own baseline done with plain ``sqlite3``:

- first pass: every in-window token notified through the ui sink and the log sink (logging to
  a file); baseline: the same keyset query, and per batch of 500 the same state upsert,
  ui upsert and state update, one commit each;
- steady pass: everything in backoff; baseline: the same keyset query returning nothing.

Prints the ratios; the machine is shared and noisy, so only ratios are meaningful.

    python bench/pass_cost.py --tokens 100000 --in-window 0.01
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from sqlalchemy.engine import URL

from notifier import logs
from notifier.check import Checker
from notifier.clock import FixedClock
from notifier.db import migrate
from notifier.db.database import Database
from notifier.policy import Policy
from notifier.sinks.log import LogSink
from notifier.sinks.ui import UiSink

NOW = datetime(2026, 6, 1, tzinfo=UTC)
WINDOW = timedelta(hours=168)
BATCH = 500


def stamp(moment: datetime) -> str:
    """The stored SQLite form of a UTC time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def populate(path: Path, tokens: int, fraction: float) -> int:
    """Insert *tokens* rows, about *fraction* of them inside the window; return that count."""
    database = Database(URL.create("sqlite+pysqlite", database=str(path)))
    migrate.upgrade(database)
    database.dispose()
    step = max(1, round(1 / fraction)) if fraction > 0 else tokens + 1
    rows = []
    inside = 0
    for index in range(tokens):
        if index % step == 0:
            expires = NOW + timedelta(hours=1 + index % 160)
            inside += 1
        else:
            expires = NOW + timedelta(days=30 + index % 300)
        rows.append(
            (f"t{index:09d}", f"token {index}", f"{index:064x}", stamp(NOW), stamp(expires))
        )
    with sqlite3.connect(path) as connection:
        connection.executemany(
            "INSERT INTO tokens (id, name, secret_hash, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            rows,
        )
    return inside


DUE_SQL = """
SELECT t.id, t.name, t.expires_at, t.revoked_at, s.sink, s.expires_at, s.last_sent_at,
       s.notices_sent, s.attempts
FROM tokens t LEFT OUTER JOIN delivery_state s
  ON s.source = 'store' AND s.token_id = t.id AND s.sink = ?
WHERE t.expires_at > ? AND t.expires_at <= ? AND (t.revoked_at IS NULL OR t.revoked_at > ?)
  AND (s.sink IS NULL OR s.next_due_at IS NULL OR s.next_due_at <= ? OR s.expires_at IS NULL
       OR s.expires_at != t.expires_at)
  AND (t.expires_at, t.id) > (?, ?)
ORDER BY t.expires_at, t.id LIMIT ?
"""


def raw_pass(path: Path, *, write: bool) -> None:
    """The limit: the same query (and, for a first pass, the same writes) in plain sqlite3."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    now, horizon = stamp(NOW), stamp(NOW + WINDOW)
    later = stamp(NOW + timedelta(hours=23, minutes=30))
    for sink in ("log", "ui"):
        after = ("", "")
        while True:
            rows = connection.execute(
                DUE_SQL, (sink, now, horizon, now, now, after[0], after[1], BATCH)
            ).fetchall()
            if not rows:
                break
            after = (rows[-1][2], rows[-1][0])
            if write:
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany(
                    "INSERT INTO delivery_state (source, token_id, sink, expires_at, next_due_at,"
                    " notices_sent, attempts, lease_owner, lease_until)"
                    " VALUES ('store', ?, ?, ?, ?, 0, 0, 'raw', ?)"
                    " ON CONFLICT DO UPDATE SET lease_owner = excluded.lease_owner,"
                    " lease_until = excluded.lease_until",
                    [(row[0], sink, row[2], now, later) for row in rows],
                )
                connection.execute("COMMIT")
                if sink == "ui":
                    connection.execute("BEGIN IMMEDIATE")
                    connection.executemany(
                        "INSERT INTO notifications (id, source, token_id, token_name, level,"
                        " kind, message, hint, expires_at, days_left, first_seen, last_seen,"
                        " occurrences) VALUES (?, 'store', ?, ?, 'warning', 'expiring', ?, ?, ?,"
                        " 1, ?, ?, 1) ON CONFLICT (source, token_id) DO UPDATE SET"
                        " last_seen = excluded.last_seen",
                        [
                            (
                                row[0][:12],
                                row[0],
                                row[1],
                                f"Warn: {row[1]}",
                                "hint",
                                row[2],
                                now,
                                now,
                            )
                            for row in rows
                        ],
                    )
                    connection.execute("COMMIT")
                else:
                    for row in rows:
                        logging.getLogger("raw").warning("Warn: API Token %s", row[1])
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany(
                    "UPDATE delivery_state SET expires_at = ?, next_due_at = ?, last_sent_at = ?,"
                    " last_notice_id = ?, notices_sent = 1, attempts = 0, last_attempt_at = ?,"
                    " last_error = NULL, lease_owner = NULL, lease_until = NULL"
                    " WHERE source = 'store' AND token_id = ? AND sink = ?",
                    [(row[2], later, now, "x" * 32, now, row[0], sink) for row in rows],
                )
                connection.execute("COMMIT")
            if len(rows) < BATCH:
                break
    connection.close()


def checker(path: Path) -> tuple[Checker, Database]:
    """A Checker with the log and ui sinks over the database at *path*."""
    database = Database(URL.create("sqlite+pysqlite", database=str(path)))
    clock = FixedClock(NOW)
    policy = Policy(
        detection_window=WINDOW,
        backoff_interval=timedelta(hours=24),
        pass_interval=timedelta(hours=1),
        log_slice=timedelta(days=1),
    )
    sinks = [LogSink("log", "day"), UiSink("ui", database, clock, "day")]
    return (
        Checker(
            database=database,
            sinks=sinks,
            policy=policy,
            clock=clock,
            lease=timedelta(minutes=10),
            batch_size=BATCH,
        ),
        database,
    )


def timed(action: Callable[[], object]) -> float:
    """Seconds *action* took."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(tokens: int, fraction: float, repeat: int) -> None:
    """Print the median timings and their ratios to the raw-SQL limit."""
    results: dict[str, list[float]] = {"first": [], "first_raw": [], "steady": [], "steady_raw": []}
    inside = 0
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as scratch:
            base = Path(scratch)
            log_stream = (base / "stderr.log").open("w", encoding="utf-8")
            logs.configure(log_format="text", level="WARNING", stream=log_stream)
            ours, raw = base / "ours.db", base / "raw.db"
            inside = populate(ours, tokens, fraction)
            populate(raw, tokens, fraction)
            run, database = checker(ours)
            run.run()  # warm the policy fingerprint and caches, then reset the state
            with database.write() as connection:
                connection.exec_driver_sql("DELETE FROM delivery_state")
                connection.exec_driver_sql("DELETE FROM notifications")
            results["first"].append(timed(run.run))
            results["steady"].append(timed(run.run))
            results["first_raw"].append(timed(partial(raw_pass, raw, write=True)))
            results["steady_raw"].append(timed(partial(raw_pass, raw, write=False)))
            database.dispose()
            log_stream.close()
    median = {name: statistics.median(values) for name, values in results.items()}
    print(f"tokens={tokens} in_window={inside} sinks=log,ui repeat={repeat}")
    for name in ("first", "steady"):
        ours, limit = median[name], median[f"{name}_raw"]
        print(
            f"{name:>6} pass: notifier {ours * 1000:8.1f} ms   raw sqlite3 {limit * 1000:8.1f} ms"
            f"   ratio {ours / limit:5.2f}x"
        )


def main() -> None:
    """Parse the arguments and measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--in-window", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    measure(args.tokens, args.in_window, args.repeat)


if __name__ == "__main__":
    main()
