"""Import cost: ``notifier tokens import`` of N tokens against a raw ``executemany``.

The file is JSONL from bench/generate.py. Each repeat imports it into a fresh, migrated
SQLite database twice:

- **notifier**: the command itself, in a process of its own (parse, validate every field,
  upsert by id in chunks, one audit event per token, one transaction);
- **raw**: plain ``sqlite3`` in this process: ``json.loads`` per line, then one
  ``executemany`` for the tokens and one for the audit events, in one transaction: the same
  rows. ``raw_tokens_only`` leaves the audit events out.

    python bench/import_cost.py --tokens 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from generate import write_jsonl

NOTIFIER = Path(sys.executable).parent / "notifier"


def fresh(path: Path) -> None:
    """A migrated, empty database at *path*."""
    env = {"NOTIFIER_DATABASE_URL": f"sqlite:///{path}", "HOME": str(path.parent)}
    subprocess.run([str(NOTIFIER), "db", "upgrade"], env=env, check=True, capture_output=True)


def ours(database: Path, source: Path) -> float:
    """Seconds ``notifier tokens import`` took, process start included."""
    env = {"NOTIFIER_DATABASE_URL": f"sqlite:///{database}", "HOME": str(database.parent)}
    started = time.perf_counter()
    subprocess.run(
        [str(NOTIFIER), "tokens", "import", str(source)], env=env, check=True, capture_output=True
    )
    return time.perf_counter() - started


def stamp(text: str) -> str:
    """An RFC 3339 time as SQLite stores it."""
    moment = datetime.fromisoformat(text).astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def raw(database: Path, source: Path, *, audit: bool) -> float:
    """Seconds the same rows took through plain sqlite3."""
    started = time.perf_counter()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    tokens = []
    events = []
    with source.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            tokens.append(
                (
                    record["id"],
                    record["name"],
                    record["owner"],
                    stamp(record["created_at"]),
                    stamp(record["expires_at"]),
                )
            )
            if audit:
                events.append((now, "bench", "import", record["id"], record["name"]))
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("BEGIN IMMEDIATE")
    connection.executemany(
        "INSERT INTO tokens (id, name, permissions, owner, labels, created_at, expires_at)"
        " VALUES (?, ?, '[]', ?, '{}', ?, ?)",
        tokens,
    )
    connection.executemany(
        "INSERT INTO audit_events (at, actor, action, token_id, token_name, details)"
        " VALUES (?, ?, ?, ?, ?, '{\"created\": true}')",
        events,
    )
    connection.execute("COMMIT")
    connection.close()
    return time.perf_counter() - started


def main() -> None:
    """Measure and print the medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    seconds: dict[str, list[float]] = {"notifier": [], "raw": [], "raw_tokens_only": []}
    with tempfile.TemporaryDirectory(prefix="notifier-import-") as scratch:
        base = Path(scratch)
        source = base / "tokens.jsonl"
        write_jsonl(source, options.tokens, options.tokens // 100)
        for index in range(options.repeat):
            for name in ("notifier", "raw", "raw_tokens_only"):
                database = base / f"{name}{index}.db"
                fresh(database)
                if name == "notifier":
                    seconds[name].append(ours(database, source))
                else:
                    seconds[name].append(raw(database, source, audit=name == "raw"))
                database.unlink()
    median = {name: statistics.median(values) for name, values in seconds.items()}
    result = {
        "tokens": options.tokens,
        "repeat": options.repeat,
        "median_s": {name: round(value, 2) for name, value in median.items()},
        "ratio": round(median["notifier"] / median["raw"], 2),
        "ratio_tokens_only": round(median["notifier"] / median["raw_tokens_only"], 2),
        "seconds": seconds,
    }
    for name, value in median.items():
        sys.stdout.write(f"{name:>16}: {value:7.1f} s\n")
    sys.stdout.write(
        f"ratio {result['ratio']:.2f}x (raw with audit events), "
        f"{result['ratio_tokens_only']:.2f}x (tokens only)\n"
    )
    if options.json is not None:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
