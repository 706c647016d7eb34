"""Import cost: ``notifier tokens import`` of N tokens against the minimal work, on both backends.

The file is JSONL from bench/generate.py. Each repeat imports it into fresh, migrated databases,
once per case, the order of the cases alternating from one repeat to the next:

- **notifier**: the command itself, in a process of its own (start-up, parse, check every
  field of every row before anything is written, upsert by id, one audit event per token, one
  transaction), on SQLite and on PostgreSQL (``postgresql+psycopg``, the driver notifier
  ships). Its peak memory is its maximum resident set size as GNU time (``/usr/bin/time``)
  reports it. Not ``ru_maxrss`` from ``wait4`` or ``RUSAGE_CHILDREN`` here: Linux starts a
  child's high-water mark at the RSS of the process that forked it, and this one holds the
  raw baselines' rows; ``time`` is a small C program, so its child starts near nothing.
- **raw** (SQLite; the baseline of the SQLite ratio, unchanged since it was first measured):
  plain ``sqlite3`` in this process: ``json.loads`` per line, the stored time text made from
  each RFC 3339 string, then one ``executemany`` for the tokens and one for the audit events,
  in one transaction: the same rows, into the same tables and indexes. It holds every row
  before it writes one; ``raw_streamed`` writes each row as it parses it, which is no faster
  here (19.3 against 16.8 s for 1M rows). Both are shown for reference, with
  ``raw_tokens_only``, which leaves the audit events out.
- **raw** (PostgreSQL; the baseline of the PostgreSQL ratio): what a competent hand-written
  loader does with the same driver, psycopg 3: ``json.loads`` per line and ``COPY`` (the
  fastest path psycopg has, the one bench/generate.py fills tables with), first of the tokens,
  then of their audit events, into the same tables and indexes, in one transaction. The times
  go to the server as their RFC 3339 text, which it parses.

Neither baseline checks anything, upserts, or stages; those are what the ratio prices. To
tell the checks from the rest, each backend also has

- **raw_checked** (reference): its streaming raw loader fed by notifier's own reader instead
  of bare ``json.loads`` (every field of every row checked, as the import checks it), writing
  as it reads. Its ratio to the streaming raw loader (``checks_ratio``) is what the checks
  cost; ``notifier / raw_checked`` (``ratio_to_checked``) what the import adds to them:
  checking every row before writing any (staging, then the write), repeated ids, the upsert,
  process start-up.

The goal (#13): ratio <= 1.5 and notifier's peak RSS <= 200 MiB on both backends.

    python bench/import_cost.py --tokens 1000000 --repeat 3 --json bench/results/import.json
    python bench/import_cost.py --tokens 100000 --backend sqlite   # while iterating
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from generate import (
    create_postgresql_database,
    drop_postgresql_database,
    psycopg_conninfo,
    write_jsonl,
)
from sqlalchemy.engine import URL

from notifier.tokens.importer import read_rows  # imported here, not inside a timed case

NOTIFIER = Path(sys.executable).parent / "notifier"
GNU_TIME = "/usr/bin/time"  # Debian's package "time"
GOAL_RATIO = 1.5
GOAL_PEAK_MIB = 200
CREATED_DETAILS = '{"created": true}'


def notifier(database_url: str, *args: str) -> tuple[float, float]:
    """Run ``notifier *args``; return its seconds (process start included) and peak MiB."""
    env = {
        "NOTIFIER_DATABASE_URL": database_url,
        "HOME": tempfile.gettempdir(),
        "PATH": os.environ.get("PATH", ""),
    }
    with tempfile.NamedTemporaryFile(prefix="notifier-rss-") as peak:
        started = time.perf_counter()
        done = subprocess.run(
            [GNU_TIME, "--format=%M", f"--output={peak.name}", str(NOTIFIER), *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        seconds = time.perf_counter() - started
        kib = Path(peak.name).read_text(encoding="utf-8").split()[-1]
    if done.returncode != 0:
        raise RuntimeError(f"notifier {' '.join(args)} exited {done.returncode}: {done.stderr!r}")
    return seconds, int(kib) / 1024


def stamp(text: str | datetime) -> str:
    """An RFC 3339 time (or one notifier's reader parsed) as SQLite stores it."""
    moment = datetime.fromisoformat(text) if isinstance(text, str) else text
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def fields(lines: TextIO, *, checked: bool) -> Iterator[dict[str, Any]]:
    """Each line's fields: ``json.loads`` alone, or notifier's reader, which checks them."""
    if not checked:
        return map(json.loads, lines)
    return (record.values for record in read_rows(lines, "jsonl"))


def raw_sqlite(
    database: Path, source: Path, *, audit: bool, checked: bool = False, streamed: bool = False
) -> float:
    """Seconds the same rows took through plain sqlite3: every row parsed, then all written.

    *streamed*: each row written as it is parsed, into an executemany that reads a
    generator, only the audit events' (id, name) pairs held until the tokens are in.
    """
    started = time.perf_counter()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    events = []

    def tokens(lines: TextIO) -> Iterator[tuple[str, ...]]:
        for record in fields(lines, checked=checked):
            if audit:
                events.append((now, "bench", "import", record["id"], record["name"]))
            yield (
                record["id"],
                record["name"],
                record["owner"],
                stamp(record["created_at"]),
                stamp(record["expires_at"]),
            )

    with source.open(encoding="utf-8", newline="") as lines:
        rows = tokens(lines) if streamed else list(tokens(lines))
        connection = sqlite3.connect(database, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            "INSERT INTO tokens (id, name, permissions, owner, labels, created_at, expires_at)"
            " VALUES (?, ?, '[]', ?, '{}', ?, ?)",
            rows,
        )
    connection.executemany(
        "INSERT INTO audit_events (at, actor, action, token_id, token_name, details)"
        f" VALUES (?, ?, ?, ?, ?, '{CREATED_DETAILS}')",
        events,
    )
    connection.execute("COMMIT")
    connection.close()
    return time.perf_counter() - started


def raw_postgresql(url: URL, source: Path, *, checked: bool = False) -> float:
    """Seconds the same rows took through psycopg's COPY, in one transaction."""
    import psycopg  # noqa: PLC0415 - only for PostgreSQL

    started = time.perf_counter()
    now = datetime.now(UTC).isoformat()
    events = []
    with psycopg.connect(psycopg_conninfo(url)) as connection, connection.cursor() as cursor:
        with (
            source.open(encoding="utf-8", newline="") as lines,
            cursor.copy(
                "COPY tokens (id, name, permissions, owner, labels, created_at, expires_at)"
                " FROM STDIN"
            ) as copy,
        ):
            for record in fields(lines, checked=checked):
                copy.write_row(
                    (
                        record["id"],
                        record["name"],
                        "[]",
                        record["owner"],
                        "{}",
                        record["created_at"],
                        record["expires_at"],
                    )
                )
                events.append((record["id"], record["name"]))
        with cursor.copy(
            "COPY audit_events (at, actor, action, token_id, token_name, details) FROM STDIN"
        ) as copy:
            for token_id, name in events:
                copy.write_row((now, "bench", "import", token_id, name, CREATED_DETAILS))
        connection.commit()
    return time.perf_counter() - started


class Backend:
    """Fresh databases of one backend, and the cases that import into them."""

    name = ""
    cases: tuple[str, ...] = ()

    def run(self, case: str, source: Path, scratch: Path) -> tuple[float, float | None]:
        """Import *source* into a fresh database by *case*: seconds, and peak MiB if measured."""
        raise NotImplementedError


class Sqlite(Backend):
    """SQLite files in the scratch directory."""

    name = "sqlite"
    cases = ("notifier", "raw", "raw_tokens_only", "raw_streamed", "raw_checked")

    def run(self, case: str, source: Path, scratch: Path) -> tuple[float, float | None]:
        """A fresh file per case, removed afterwards."""
        database = scratch / f"{case}.db"
        url = f"sqlite:///{database}"
        notifier(url, "db", "upgrade")
        try:
            if case == "notifier":
                return notifier(url, "tokens", "import", str(source))
            seconds = raw_sqlite(
                database,
                source,
                audit=case != "raw_tokens_only",
                checked=case == "raw_checked",
                streamed=case in {"raw_streamed", "raw_checked"},
            )
            return seconds, None
        finally:
            for leftover in scratch.glob(f"{case}.db*"):
                leftover.unlink()


class Postgresql(Backend):
    """Databases on the local server (bench/generate.py's), created and dropped per case."""

    name = "postgresql"
    cases = ("notifier", "raw", "raw_checked")

    def run(self, case: str, source: Path, scratch: Path) -> tuple[float, float | None]:
        """A fresh database per case, dropped afterwards."""
        del scratch
        name = f"notifier_import_{secrets.token_hex(4)}"
        url = create_postgresql_database(name)
        try:
            text = url.render_as_string(hide_password=False)
            notifier(text, "db", "upgrade")
            if case == "notifier":
                return notifier(text, "tokens", "import", str(source))
            return raw_postgresql(url, source, checked=case == "raw_checked"), None
        finally:
            drop_postgresql_database(name)


def measure(
    backend: Backend, source: Path, scratch: Path, repeat: int, say: Callable[[str], object]
) -> dict[str, object]:
    """Run every case *repeat* times in alternating order; medians, ratios and peaks."""
    seconds: dict[str, list[float]] = {case: [] for case in backend.cases}
    peaks: list[float] = []
    for index in range(repeat):
        order = backend.cases if index % 2 == 0 else tuple(reversed(backend.cases))
        for case in order:
            elapsed, peak = backend.run(case, source, scratch)
            seconds[case].append(elapsed)
            if peak is not None:
                peaks.append(peak)
            say(f"  {backend.name} #{index + 1} {case}: {elapsed:.1f} s")
    median = {case: statistics.median(values) for case, values in seconds.items()}
    result: dict[str, object] = {
        "median_s": {case: round(value, 2) for case, value in median.items()},
        "ratio": round(median["notifier"] / median["raw"], 2),
    }
    if "raw_tokens_only" in median:
        result["ratio_tokens_only"] = round(median["notifier"] / median["raw_tokens_only"], 2)
    # What the checks cost over the raw loader, and what notifier adds to the checked loader.
    streaming = median.get("raw_streamed", median["raw"])  # PostgreSQL's raw streams
    result["checks_ratio"] = round(median["raw_checked"] / streaming, 2)
    if "raw_streamed" in median:
        result["ratio_streamed"] = round(median["notifier"] / median["raw_streamed"], 2)
    result["ratio_to_checked"] = round(median["notifier"] / median["raw_checked"], 2)
    result["peak_mib"] = round(statistics.median(peaks), 1)
    result["peak_mib_runs"] = [round(peak, 1) for peak in peaks]
    result["seconds"] = seconds
    return result


def main() -> None:
    """Measure, print the medians and the ratios, and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--backend", choices=["sqlite", "postgresql", "both"], default="both", help="default both"
    )
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    backends = [
        backend for backend in (Sqlite(), Postgresql()) if options.backend in {backend.name, "both"}
    ]

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    measured: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="notifier-import-") as directory:
        scratch = Path(directory)
        source = scratch / "tokens.jsonl"
        write_jsonl(source, options.tokens, options.tokens // 100)
        for backend in backends:
            measured[backend.name] = measure(backend, source, scratch, options.repeat, say)
    # SQLite's figures stay at the top level, in the shape earlier results have.
    result: dict[str, object] = {"tokens": options.tokens, "repeat": options.repeat}
    if "sqlite" in measured:
        result.update({"baseline": "sqlite3 executemany", **measured["sqlite"]})
    if "postgresql" in measured:
        result["postgresql"] = {"baseline": "psycopg COPY", **measured["postgresql"]}
    result["goal"] = {"ratio": GOAL_RATIO, "peak_mib": GOAL_PEAK_MIB}
    for name, figures in measured.items():
        median = figures["median_s"]
        assert isinstance(median, dict)  # noqa: S101
        cases = ", ".join(f"{case} {value:.1f} s" for case, value in median.items())
        say(
            f"{name}: {cases}; ratio {figures['ratio']:.2f}x (goal <= {GOAL_RATIO}), "
            f"peak {figures['peak_mib']:.0f} MiB (goal <= {GOAL_PEAK_MIB}); the checks alone "
            f"{figures['checks_ratio']:.2f}x the streaming raw, notifier "
            f"{figures['ratio_to_checked']:.2f}x raw_checked"
        )
    if options.json is not None:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
