"""Replicas as real processes on the real PostgreSQL, a counting webhook receiver, outages.

Each replica is a ``notifier run`` (or ``notifier check``) process of its own against a fresh
database on 127.0.0.1:5432; the receiver is an HTTP/1.1 server on 127.0.0.1 that counts every
POST by its ``webhook-id`` (the notice id) and token id. An outage is the database refusing
connections and dropping the open ones (``ALLOW_CONNECTIONS false`` and
``pg_terminate_backend``), which is what clients see while PostgreSQL restarts.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import pytest
from sqlalchemy.engine import URL

from tests.acceptance.conftest import BIN, RunningDaemon, cli

WARN = re.compile(r"Warn: API Token \S+ \(ID (\S+)\) will expire in less than \d+ days?\.")


class Receiver:
    """A webhook receiver that counts what it gets: per notice id, and per token id.

    ``delay`` slows every answer (a pass then lasts long enough to be interrupted);
    ``gate`` holds every answer until that many client connections have sent a POST, so
    that the replicas behind them are provably inside their deliveries at the same time.
    """

    def __init__(self, *, delay: float = 0.0, gate: int = 0) -> None:
        self.delay = delay
        self.gate = gate
        self.by_notice: Counter[str] = Counter()
        self.by_token: Counter[str] = Counter()
        self.notice_token: dict[str, str] = {}
        self.connections: set[tuple[str, int]] = set()
        self._opened = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the webhook sink's client uses

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.received(self.client_address, self.headers["webhook-id"], body)
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                del format, args  # quiet: the test reads counts, not an access log

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def received(self, client: tuple[str, int], notice_id: str, body: bytes) -> None:
        """Count one POST, then hold it as the gate and the delay say."""
        token_id = json.loads(body)["token"]["id"]
        with self._lock:
            self.by_notice[notice_id] += 1
            self.by_token[token_id] += 1
            self.notice_token[notice_id] = token_id
            self.connections.add(client)
            if len(self.connections) >= self.gate:
                self._opened.set()
        if self.gate:
            self._opened.wait(timeout=30)
        if self.delay:
            time.sleep(self.delay)

    @property
    def total(self) -> int:
        """Every POST received, duplicates included."""
        with self._lock:
            return sum(self.by_notice.values())

    @property
    def duplicates(self) -> int:
        """POSTs beyond the first of each notice."""
        with self._lock:
            return sum(count - 1 for count in self.by_notice.values())

    def wait_for(self, condition: Callable[[Receiver], bool], timeout: float = 60) -> None:
        """Wait until *condition* holds, or fail with the counts."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition(self):
                return
            time.sleep(0.05)
        raise AssertionError(
            f"receiver: {self.total} POSTs, {len(self.by_token)} tokens after {timeout}s"
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._opened.set()
        self.server.shutdown()
        self.server.server_close()


def replica_env(
    tmp_path: Path, url: URL, receiver: Receiver | None = None, **settings: str
) -> dict[str, str]:
    """The environment of one replica: the shared database, the receiver, *settings*."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "NOTIFIER_DATABASE_URL": url.render_as_string(hide_password=False),
        "NOTIFIER_HTTP_ADDRESS": "off",
        "NOTIFIER_INTERVAL": "1h",
        "NOTIFIER_SINKS": "webhook" if receiver else "log",
        "NOTIFIER_RETENTION": "3650d",
    }
    if receiver is not None:
        env["NOTIFIER_WEBHOOK_URL"] = receiver.url
    env.update(settings)
    return env


def import_tokens(
    tmp_path: Path, env: dict[str, str], count: int, *, expires_in: timedelta = timedelta(days=3)
) -> list[str]:
    """Create *count* tokens expiring in about *expires_in*, through ``tokens import``."""
    expiry = datetime.now(UTC) + expires_in
    ids = [f"tok{index:06d}" for index in range(count)]
    path = tmp_path / "tokens.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for index, token_id in enumerate(ids):
            moment = expiry + timedelta(seconds=index)
            record = {
                "id": token_id,
                "name": f"svc-{index}",
                "expires_at": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            out.write(json.dumps(record) + "\n")
    result = cli("tokens", "import", str(path), env=env)
    assert result.returncode == 0, result.stderr
    return ids


class Replica(RunningDaemon):
    """A ``notifier run`` process; its pid names it in the leases it takes."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_after(self, pattern: str, start: int, timeout: float = 120) -> re.Match[str]:
        """Wait for a stderr line matching *pattern* among the lines from index *start* on."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        index = start
        while True:
            while index < len(self.lines):
                if match := compiled.search(self.lines[index]):
                    return match
                index += 1
            if time.monotonic() > deadline or (
                self.process.poll() is not None and self._queue.empty()
            ):
                tail = "\n".join(self.lines[-30:])
                raise AssertionError(f"no line matched {pattern!r} after line {start}:\n{tail}")
            try:
                self.lines.append(self._queue.get(timeout=0.1))
            except queue.Empty:
                continue

    def completed(self, start: int = 0, timeout: float = 120) -> dict[str, str]:
        """The fields of the first ``check.completed`` line from index *start* on."""
        line = self.wait_after(r"check\.completed.*", start, timeout).group(0)
        return dict(re.findall(r"([a-z_.]+)=(\S+)", line))

    def all_lines(self) -> list[str]:
        """Every stderr line so far (after the process ended: all of them)."""
        self.drain()
        return self.lines


@pytest.fixture
def replicas() -> Iterator[Callable[[dict[str, str]], Replica]]:
    """Start replicas with ``replicas(env)``; any left running are killed afterwards."""
    started: list[Replica] = []

    def start(env: dict[str, str]) -> Replica:
        replica = Replica(env)
        started.append(replica)
        return replica

    yield start
    for replica in started:
        if replica.process.poll() is None:
            replica.process.send_signal(signal.SIGKILL)
        replica.close()


def admin_execute(statement: str) -> list[tuple[Any, ...]]:
    """Run *statement* as the server's superuser, outside any test database."""
    import psycopg  # noqa: PLC0415

    with psycopg.connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3", autocommit=True
    ) as connection:
        cursor = connection.execute(statement)
        return cursor.fetchall() if cursor.description else []


def query(url: URL, statement: str) -> list[tuple[Any, ...]]:
    """Run *statement* on the test database."""
    import psycopg  # noqa: PLC0415

    with psycopg.connect(
        f"host=127.0.0.1 port=5432 user=postgres dbname={url.database} connect_timeout=3",
        autocommit=True,
    ) as connection:
        cursor = connection.execute(statement)
        return cursor.fetchall() if cursor.description else []


@contextmanager
def outage(url: URL) -> Iterator[None]:
    """The database refuses new connections and drops the open ones, until the block ends."""
    name = url.database
    admin_execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    admin_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        f" WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )
    try:
        yield
    finally:
        admin_execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
