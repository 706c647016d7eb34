"""Generate N tokens, about k of them inside the detection window, in a notifier database.

The other tokens are spread over four years around ``NOW`` but outside the window and the
look-back (long expired, or expiring in months), as in a large fleet where most tokens are
far from their expiry. Rows go in by the fastest path each backend has (``COPY`` on
PostgreSQL, one ``executemany`` on SQLite), with the expiry index built afterwards.

    python bench/generate.py sqlite:////tmp/n.db --tokens 1000000 --in-window 10000
    python bench/generate.py postgresql://postgres@127.0.0.1/bench --tokens 10000000
    python bench/generate.py --jsonl /tmp/tokens.jsonl --tokens 1000000   # for `tokens import`
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import URL, make_url

# The pass time the benchmarks freeze; far enough from today that nothing else matters.
NOW = datetime(2026, 6, 1, tzinfo=UTC)
WINDOW = timedelta(hours=168)
LOOKBACK = timedelta(hours=24)  # the policy's look-back with the default 24h backoff
SPREAD = timedelta(days=730)  # the other tokens expire within two years either side of NOW
INDEX = "ix_tokens_expiry_keyset"
INDEX_COLUMNS = "expires_at, id, revoked_at, superseded_by"
COLUMNS = (
    "id",
    "name",
    "permissions",
    "labels",
    "owner",
    "created_at",
    "expires_at",
)


def stamp(moment: datetime) -> str:
    """The stored SQLite form of a UTC time (fixed width, sorts as time does)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def expiries(tokens: int, in_window: int, seed: int = 6) -> Iterator[tuple[int, datetime]]:
    """Yield (index, expires_at): *in_window* of them inside (NOW, NOW + WINDOW].

    Window tokens are evenly spread over the indexes, so every id range holds some.
    """
    rng = random.Random(seed)
    step = tokens / in_window if in_window else float("inf")
    next_inside = 0.0
    outside_span = SPREAD * 2 - WINDOW - LOOKBACK
    for index in range(tokens):
        if index >= next_inside and in_window:
            next_inside += step
            yield index, NOW + timedelta(seconds=rng.uniform(60, WINDOW.total_seconds()))
            continue
        offset = timedelta(seconds=rng.uniform(0, outside_span.total_seconds()))
        moment = NOW - SPREAD + offset
        if moment > NOW - LOOKBACK:  # skip over the look-back and the window
            moment += WINDOW + LOOKBACK
        yield index, moment


def token_id(index: int) -> str:
    """Generated ids: fixed width, so they sort as the index does."""
    return f"tk{index:010d}"


def _rows(tokens: int, in_window: int) -> Iterator[tuple[str, ...]]:
    created = stamp(NOW - timedelta(days=800))
    for index, expires in expiries(tokens, in_window):
        yield (
            token_id(index),
            f"svc-{index % 9973}-token-{index}",
            "[]",
            "{}",
            f"team-{index % 97}@example.com",
            created,
            stamp(expires),
        )


def generate(url: URL, tokens: int, in_window: int) -> float:
    """Fill a fresh, migrated database at *url*; return the seconds it took."""
    from notifier.db import migrate  # noqa: PLC0415 - the raw benchmark runs without notifier
    from notifier.db.database import Database  # noqa: PLC0415

    started = time.perf_counter()
    database = Database(url)
    migrate.upgrade(database)
    database.dispose()
    if url.get_backend_name() == "sqlite":
        _fill_sqlite(str(url.database), tokens, in_window)
    else:
        _fill_postgresql(url, tokens, in_window)
    return time.perf_counter() - started


def _fill_sqlite(path: str, tokens: int, in_window: int) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("BEGIN")
    connection.execute(f"DROP INDEX {INDEX}")
    connection.executemany(
        f"INSERT INTO tokens ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
        _rows(tokens, in_window),
    )
    connection.execute(f"CREATE INDEX {INDEX} ON tokens ({INDEX_COLUMNS})")
    connection.execute("COMMIT")
    connection.execute("ANALYZE")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def psycopg_conninfo(url: URL) -> str:
    """A libpq connection string for a SQLAlchemy PostgreSQL URL."""
    parts = {
        "host": url.host or "127.0.0.1",
        "port": str(url.port or 5432),
        "user": url.username or "postgres",
        "dbname": url.database or "postgres",
    }
    if url.password:
        parts["password"] = str(url.password)
    return " ".join(f"{key}={value}" for key, value in parts.items())


def _fill_postgresql(url: URL, tokens: int, in_window: int) -> None:
    import psycopg  # noqa: PLC0415 - only for PostgreSQL

    with psycopg.connect(psycopg_conninfo(url)) as connection:
        connection.execute(f"DROP INDEX {INDEX}")
        with connection.cursor() as cursor:
            copy_sql = f"COPY tokens ({', '.join(COLUMNS)}) FROM STDIN"
            with cursor.copy(copy_sql) as copy:
                for row in _rows(tokens, in_window):
                    copy.write_row(row)
        connection.execute(f"CREATE INDEX {INDEX} ON tokens ({INDEX_COLUMNS})")
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE tokens")


# The PostgreSQL server the benchmarks use: the local one, or another cluster started for a
# comparison (bench/sweep.sh's note on shared_buffers).
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))


def create_postgresql_database(name: str, admin: str = "127.0.0.1") -> URL:
    """Create (or re-create) database *name* on the local server; return its URL."""
    import psycopg  # noqa: PLC0415

    with psycopg.connect(
        f"host={admin} port={PG_PORT} user=postgres dbname=postgres", autocommit=True
    ) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return make_url(f"postgresql+psycopg://postgres@{admin}:{PG_PORT}/{name}")


def drop_postgresql_database(name: str, admin: str = "127.0.0.1") -> None:
    """Drop database *name* on the local server."""
    import psycopg  # noqa: PLC0415

    with psycopg.connect(
        f"host={admin} port={PG_PORT} user=postgres dbname=postgres", autocommit=True
    ) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def write_jsonl(path: Path, tokens: int, in_window: int) -> None:
    """Write the tokens as JSONL in the shape ``notifier tokens import`` reads."""
    with path.open("w", encoding="utf-8") as out:
        for row in _rows(tokens, in_window):
            record = {
                "id": row[0],
                "name": row[1],
                "owner": row[4],
                "created_at": row[5].replace(" ", "T") + "Z",
                "expires_at": row[6].replace(" ", "T") + "Z",
            }
            out.write(json.dumps(record, separators=(",", ":")) + "\n")


def in_window_count(tokens: int, value: float) -> int:
    """``--in-window`` as a count: below 1 it is a fraction of the tokens."""
    return round(tokens * value) if value < 1 else int(value)


def main() -> None:
    """Parse the arguments and generate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", help="database URL (sqlite:///... or postgresql://...)")
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument(
        "--in-window",
        type=float,
        default=0.01,
        help="tokens inside the window: a count, or a fraction when below 1 (default 0.01)",
    )
    parser.add_argument("--jsonl", type=Path, help="write an import file instead")
    args = parser.parse_args()
    inside = in_window_count(args.tokens, args.in_window)
    if args.jsonl is not None:
        write_jsonl(args.jsonl, args.tokens, inside)
        return
    if args.url is None:
        parser.error("give a database URL or --jsonl")
    from notifier.config.settings import normalise_database_url  # noqa: PLC0415

    url = normalise_database_url(make_url(args.url))
    seconds = generate(url, args.tokens, inside)
    sys.stdout.write(f"{args.tokens} tokens, {inside} in the window, in {seconds:.1f}s\n")


if __name__ == "__main__":
    main()
