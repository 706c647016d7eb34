"""Fault injection: replicas killed, stopped and cut off at random, against a counting receiver.

R ``notifier run`` replicas (1s interval, 3s claim lease) share one PostgreSQL database and a
webhook receiver on 127.0.0.1 that counts every POST by notice id and token id. Each round
adds fresh expiring tokens, then injects faults at random moments while the replicas deliver:

- **kill**: ``kill -9`` a random replica, count the claims it died holding, restart it;
- **term**: SIGTERM a random replica, check it exits 0, count what it left leased, restart it;
- **outage**: the database refuses connections and drops the open ones for 1-3 s.

At the end the faults stop, the replicas drain, and the script counts: notices lost (tokens
never received), duplicates (POSTs beyond the first of a notice id), and the bound the
design promises: duplicates <= the sends that may have been in flight at a fault, counted
as the claims dead replicas held when they died, plus the claims held when an outage began
(a send finished then cannot be recorded until the database is back; if its lease runs out
first, another replica sends it again). The counts go to stdout and, with --json, to a file.

    python bench/faults.py --replicas 3 --rounds 20 --tokens 300 --json bench/results/faults.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
from generate import create_postgresql_database, drop_postgresql_database

NOTIFIER = Path(sys.executable).parent / "notifier"
DATABASE = "notifier_faults"
ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
CONNINFO = f"host=127.0.0.1 port=5432 user=postgres dbname={DATABASE} connect_timeout=3"


class Receiver:
    """Counts webhook POSTs by notice id and token id; answers after *delay* seconds."""

    def __init__(self, delay: float) -> None:
        self.by_notice: Counter[str] = Counter()
        self.by_token: Counter[str] = Counter()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with receiver.lock:
                    receiver.by_notice[self.headers["webhook-id"]] += 1
                    receiver.by_token[body["token"]["id"]] += 1
                time.sleep(delay)
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                del format, args

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                del request, client_address  # a killed replica resets its connection: expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@dataclass
class Replica:
    """One ``notifier run`` process, restarted after each fault that ends it."""

    index: int
    env: dict[str, str]
    log_dir: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        """This start's log file."""
        return self.log_dir / f"replica{self.index}.{self.starts}.log"

    def started(self) -> bool:
        """Whether this start got as far as its signal handlers (``daemon.started``)."""
        return b"daemon.started" in self.log_path.read_bytes()

    def start(self) -> None:
        """Start (again), logging to a file of its own."""
        self.starts += 1
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [str(NOTIFIER), "run"], env=self.env, stdout=subprocess.DEVNULL, stderr=log
        )
        log.close()

    @property
    def pid(self) -> int:
        """The running process's pid."""
        assert self.process is not None  # noqa: S101
        return self.process.pid


@dataclass
class Counts:
    """What happened, and what came of it."""

    replicas: int = 0
    rounds: int = 0
    tokens: int = 0
    kills: int = 0
    terms: int = 0
    term_exit_codes: dict[str, int] = field(default_factory=dict)
    term_seconds_max: float = 0.0
    outages: int = 0
    outage_seconds: float = 0.0
    held_at_death: int = 0  # claims dead replicas held: the sends that may be in flight
    # Claims held when an outage began: sends that may be in flight, or sent and not yet
    # recorded, when the database went away. Their leases may run out before the record
    # can be written, and another replica then sends them again.
    held_at_outage: int = 0
    posts: int = 0
    received_tokens: int = 0
    lost: int = 0
    duplicates: int = 0
    tokens_with_two_ids: int = 0  # a duplicate with a new notice id could not be deduplicated
    passes_completed: int = 0
    passes_failed: int = 0
    settled_lines: int = 0
    released_lines: int = 0
    seconds: float = 0.0

    @property
    def bound_holds(self) -> bool:
        """Duplicates within the sends in flight, and nothing lost."""
        return self.lost == 0 and self.duplicates <= self.held_at_death + self.held_at_outage


def db(statement: str, params: Any = None, conninfo: str = CONNINFO) -> list[tuple[Any, ...]]:
    """Run one statement; return its rows."""
    with psycopg.connect(conninfo, autocommit=True) as connection:
        cursor = connection.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def add_tokens(round_number: int, count: int) -> None:
    """Insert *count* fresh tokens expiring in about three days."""
    expiry = datetime.now(UTC) + timedelta(days=3)
    rows = [
        (f"r{round_number:03d}t{index:05d}", f"svc-{round_number}-{index}", expiry)
        for index in range(count)
    ]
    with psycopg.connect(CONNINFO) as connection, connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO tokens (id, name, permissions, labels, created_at, expires_at)"
            " VALUES (%s, %s, '[]', '{}', now(), %s)",
            rows,
        )


def held_by(pid: int) -> int:
    """Claims still leased by the (dead) process *pid*."""
    ((count,),) = db(
        "SELECT count(*) FROM delivery_state WHERE lease_until IS NOT NULL AND lease_owner LIKE %s",
        [f"%:{pid}:%"],
    )
    return int(count)


def outage(seconds: float) -> int:
    """Refuse connections and drop the open ones for *seconds*; return the claims held then."""
    ((held,),) = db("SELECT count(*) FROM delivery_state WHERE lease_until IS NOT NULL")
    db(f'ALTER DATABASE "{DATABASE}" ALLOW_CONNECTIONS false', conninfo=ADMIN)
    db(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        f" WHERE datname = '{DATABASE}' AND pid <> pg_backend_pid()",
        conninfo=ADMIN,
    )
    time.sleep(seconds)
    db(f'ALTER DATABASE "{DATABASE}" ALLOW_CONNECTIONS true', conninfo=ADMIN)
    return int(held)


def inject(fault: str, replica: Replica, counts: Counts, rng: random.Random) -> None:
    """One fault, then the replica (if ended) starts again."""
    assert replica.process is not None  # noqa: S101
    if fault == "outage":
        seconds = rng.uniform(1, 3)
        counts.held_at_outage += outage(seconds)
        counts.outages += 1
        counts.outage_seconds += seconds
        return
    if fault == "kill":
        replica.process.send_signal(signal.SIGKILL)
        replica.process.wait()
        counts.kills += 1
    else:
        # A process still importing has no handler yet: SIGTERM would simply end it. An
        # operator's stop comes after start-up; wait for it.
        while not replica.started():
            time.sleep(0.05)
        started = time.monotonic()
        replica.process.send_signal(signal.SIGTERM)
        code = replica.process.wait(timeout=60)
        counts.terms += 1
        counts.term_exit_codes[str(code)] = counts.term_exit_codes.get(str(code), 0) + 1
        counts.term_seconds_max = max(counts.term_seconds_max, time.monotonic() - started)
    counts.held_at_death += held_by(replica.pid)
    time.sleep(rng.uniform(0, 1))
    replica.start()


def drain(receiver: Receiver, expected: int, timeout: float) -> None:
    """Wait until every token arrived and no claim is left leased."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with receiver.lock:
            arrived = len(receiver.by_token)
        ((leased,),) = db("SELECT count(*) FROM delivery_state WHERE lease_owner IS NOT NULL")
        if arrived >= expected and leased == 0:
            return
        time.sleep(0.5)


def drive(
    fleet: list[Replica],
    options: argparse.Namespace,
    counts: Counts,
    rng: random.Random,
    receiver: Receiver,
) -> None:
    """Start the fleet, run the rounds of faults, drain, and stop the fleet."""
    for replica in fleet:
        replica.start()
    for number in range(options.rounds):
        add_tokens(number, options.tokens)
        counts.tokens += options.tokens
        for _ in range(options.faults):
            time.sleep(rng.uniform(0.1, 1.5))
            fault = rng.choice(("kill", "kill", "term", "outage"))
            inject(fault, rng.choice(fleet), counts, rng)
        sys.stderr.write(f"round {number + 1}/{options.rounds}: {asdict(counts)}\n")
    drain(receiver, counts.tokens, timeout=120)
    for replica in fleet:
        assert replica.process is not None  # noqa: S101
        replica.process.send_signal(signal.SIGTERM)
        code = str(replica.process.wait(timeout=60))
        counts.term_exit_codes[code] = counts.term_exit_codes.get(code, 0) + 1


def run(options: argparse.Namespace) -> Counts:
    """Set up, inject faults round after round, drain, and count."""
    rng = random.Random(options.seed)
    counts = Counts(replicas=options.replicas, rounds=options.rounds)
    create_postgresql_database(DATABASE)
    receiver = Receiver(options.delay)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="notifier-faults-") as scratch:
        log_dir = Path(scratch)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": scratch,
            "NOTIFIER_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{DATABASE}",
            "NOTIFIER_SINKS": "webhook",
            "NOTIFIER_WEBHOOK_URL": receiver.url,
            "NOTIFIER_INTERVAL": "1s",
            "NOTIFIER_CLAIM_LEASE": "3s",
            "NOTIFIER_RETRY_DEADLINE": "2s",
            "NOTIFIER_HTTP_ADDRESS": "off",
            "NOTIFIER_RETENTION": "3650d",
        }
        subprocess.run([str(NOTIFIER), "db", "upgrade"], env=env, check=True, capture_output=True)
        fleet = [Replica(index, env, log_dir) for index in range(options.replicas)]
        try:
            drive(fleet, options, counts, rng, receiver)
        finally:
            for replica in fleet:  # whatever happened, leave no replica running
                if replica.process is not None and replica.process.poll() is None:
                    replica.process.kill()
                    replica.process.wait()
        for path in log_dir.glob("*.log"):
            text = path.read_text(encoding="utf-8", errors="replace")
            counts.passes_completed += text.count("check.completed")
            counts.passes_failed += text.count("check.failed")
            counts.settled_lines += text.count("check.settled")
            counts.released_lines += text.count("check.released")
    counts.seconds = round(time.monotonic() - started, 1)
    with receiver.lock:
        counts.posts = sum(receiver.by_notice.values())
        counts.received_tokens = len(receiver.by_token)
        counts.duplicates = counts.posts - len(receiver.by_notice)
        counts.tokens_with_two_ids = counts.posts - counts.received_tokens - counts.duplicates
    counts.lost = counts.tokens - counts.received_tokens
    receiver.server.shutdown()
    drop_postgresql_database(DATABASE)
    return counts


def main() -> None:
    """Parse the arguments, run, and print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=300, help="new tokens per round")
    parser.add_argument("--faults", type=int, default=3, help="faults per round")
    parser.add_argument("--delay", type=float, default=0.005, help="receiver's answer time")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    counts = run(options)
    settings = {**vars(options), "json": str(options.json)}
    result = {**asdict(counts), "bound_holds": counts.bound_holds, "options": settings}
    text = json.dumps(result, indent=2, default=str)
    sys.stdout.write(text + "\n")
    if options.json is not None:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(text + "\n", encoding="utf-8")
    sys.exit(0 if counts.bound_holds else 1)


if __name__ == "__main__":
    main()
