"""Several ``notifier run`` processes on one PostgreSQL: delivery, crashes, outages, start-up.

Every replica here is a process of its own, against the real server at 127.0.0.1:5432 and a
real receiver on 127.0.0.1. Long runs with random kills are in bench/faults.py; these are
the cases, each once.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import URL

from notifier.db import migrate
from tests.acceptance.conftest import cli

from .conftest import WARN, Receiver, Replica, import_tokens, outage, query, replica_env

pytestmark = pytest.mark.postgres

Start = Callable[[dict[str, str]], Replica]


def sent_by(fields: dict[str, str], sink: str) -> int:
    return int(fields.get(f"sent_by_sink.{sink}", "0"))


class TestReplicas:
    def test_three_replicas_deliver_each_notice_once(
        self, tmp_path: Path, postgres_url: URL, replicas: Start
    ) -> None:
        """Three replicas over 5,000 expiring tokens: each (token, sink) is delivered once."""
        with Receiver(gate=3) as receiver:
            env = replica_env(tmp_path, postgres_url, receiver, NOTIFIER_SINKS="log,ui,webhook")
            tokens = import_tokens(tmp_path, env, 5000)
            running = [replicas(env) for _ in range(3)]
            reports = [replica.completed() for replica in running]
            for replica in running:
                assert replica.stop() == 0
        # webhook: one POST per token, and every replica sent some (the gate held each
        # answer until three connections were sending at once)
        assert receiver.by_token == dict.fromkeys(tokens, 1)
        assert receiver.duplicates == 0
        assert len(receiver.connections) >= 3
        assert all(sent_by(report, "webhook") > 0 for report in reports), reports
        # log: one warn line per token across the three processes
        warned = [m.group(1) for r in running for line in r.all_lines() if (m := WARN.search(line))]
        assert sorted(warned) == tokens
        # ui: one notification per token, opened once
        assert query(postgres_url, "SELECT count(*), max(occurrences) FROM notifications") == [
            (5000, 1)
        ]
        for sink in ("log", "ui", "webhook"):
            assert sum(sent_by(report, sink) for report in reports) == 5000
        # state: every pair notified once, no lease left behind
        assert query(
            postgres_url,
            "SELECT sink, count(*), min(notices_sent), max(notices_sent), count(lease_owner)"
            " FROM delivery_state GROUP BY sink ORDER BY sink",
        ) == [("log", 5000, 1, 1, 0), ("ui", 5000, 1, 1, 0), ("webhook", 5000, 1, 1, 0)]

    def test_migrations_run_once_when_replicas_start_together(
        self, tmp_path: Path, postgres_url: URL, replicas: Start
    ) -> None:
        """Three replicas on an empty database: one migrates, the others wait and find it done."""
        env = replica_env(tmp_path, postgres_url)
        running = [replicas(env) for _ in range(3)]
        for replica in running:
            replica.completed()
            assert replica.stop() == 0
        lines = [line for replica in running for line in replica.all_lines()]
        assert sum("db.migrated" in line for line in lines) == 1
        assert not [line for line in lines if "ERROR" in line or "Traceback" in line]
        assert query(postgres_url, "SELECT version_num FROM alembic_version") == [(migrate.HEAD,)]


class TestCrashes:
    def test_killed_replica_claims_are_taken_over_on_its_host(
        self, tmp_path: Path, postgres_url: URL, replicas: Start
    ) -> None:
        """A replica killed (-9) mid-pass: another on its host takes its claims over at once.

        While the first replica runs, the other leaves its claims alone; once it is dead, its
        leases name a process that is gone, and the survivor sends the rest without waiting
        out NOTIFIER_CLAIM_LEASE (10 minutes). No notice is lost, and the duplicates are at
        most the claims the killed replica held; a duplicate carries the notice id of the
        first send, so a receiver can drop it.
        """
        with Receiver(delay=0.04) as receiver:
            # Two POSTs at a time (300 take ~6 s): the survivor's first pass comes while the
            # doomed replica still holds claims, whatever the machine's speed.
            env = replica_env(tmp_path, postgres_url, receiver, NOTIFIER_WEBHOOK_CONCURRENCY="2")
            tokens = import_tokens(tmp_path, env, 300)
            doomed = replicas(env)
            receiver.wait_for(lambda r: r.total >= 20)
            survivor = replicas({**env, "NOTIFIER_INTERVAL": "1s"})
            fields = survivor.completed()  # it finds the claims of a live replica, and leaves them
            assert int(fields["claimed_elsewhere"]) > 0
            assert doomed.process.poll() is None, "the first replica finished too early"
            doomed.process.send_signal(signal.SIGKILL)
            doomed.process.wait(timeout=10)
            ((held,),) = query(
                postgres_url,
                "SELECT count(*) FROM delivery_state WHERE lease_until IS NOT NULL"
                f" AND lease_owner LIKE '%:{doomed.pid}:%'",
            )
            receiver.wait_for(lambda r: len(r.by_token) == len(tokens), timeout=90)
            survivor.completed(len(survivor.lines))  # a pass after the last send recorded it
            assert survivor.stop() == 0
        assert held > 0
        assert any("check.taken_over" in line for line in survivor.all_lines())
        assert sorted(receiver.by_token) == tokens  # nothing lost
        assert receiver.duplicates <= held
        # every second delivery of a token was the same notice (same webhook-id)
        assert sum(receiver.by_token.values()) - len(tokens) == receiver.duplicates
        assert query(
            postgres_url,
            "SELECT count(*), min(notices_sent), max(notices_sent), count(lease_owner)"
            " FROM delivery_state",
        ) == [(300, 1, 1, 0)]

    def test_sigterm_mid_pass_releases_unsent_claims(
        self, tmp_path: Path, postgres_url: URL, replicas: Start
    ) -> None:
        """SIGTERM mid-pass: sends in flight finish and are recorded, the rest is released.

        The process exits 0 within seconds, and another replica sends the rest at once,
        without waiting out the 10-minute lease: every notice arrives exactly once.
        """
        with Receiver(delay=0.03) as receiver:
            # Four POSTs in flight at a time (300 take ~2 s): the stop comes mid-pass, with
            # sends in flight.
            env = replica_env(tmp_path, postgres_url, receiver, NOTIFIER_WEBHOOK_CONCURRENCY="4")
            tokens = import_tokens(tmp_path, env, 300)
            stopping = replicas(env)
            receiver.wait_for(lambda r: r.total >= 20)
            assert stopping.stop(signal.SIGTERM, timeout=10) == 0
            fields = stopping.completed()
            sent_before = receiver.total
            assert fields["interrupted"] == "true"
            assert int(fields["released"]) > 0
            assert int(fields["sent"]) + int(fields["released"]) == len(tokens)
            assert sent_before == int(fields["sent"])
            # what was sent is recorded; nothing is left leased
            assert query(
                postgres_url,
                "SELECT count(*) FILTER (WHERE notices_sent = 1), count(lease_owner)"
                " FROM delivery_state",
            ) == [(sent_before, 0)]
            result = cli("check", env=env)
            assert result.returncode == 0, result.stderr
        assert receiver.by_token == dict.fromkeys(tokens, 1)


class TestOutage:
    def test_database_outage_and_recovery(
        self, tmp_path: Path, postgres_url: URL, replicas: Start
    ) -> None:
        """An outage fails each tick with one line; the first tick after it works.

        Meanwhile the daemon stays up, live but not ready.
        """
        env = replica_env(
            tmp_path, postgres_url, NOTIFIER_HTTP_ADDRESS="127.0.0.1:0", NOTIFIER_INTERVAL="1s"
        )
        import_tokens(tmp_path, env, 3)
        daemon = replicas(env)
        base = f"http://127.0.0.1:{daemon.port}"
        daemon.completed()
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
        with outage(postgres_url):
            down = len(daemon.lines)
            daemon.wait_after(r"check\.failed", down)
            ready = httpx.get(f"{base}/readyz", timeout=10)
            assert ready.status_code == 503
            assert "database unavailable" in ready.text
            assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
            seen = len(daemon.lines)
            daemon.wait_after(r"check\.failed", seen)  # the ticks go on failing, one line each
            assert daemon.process.poll() is None
            up = len(daemon.lines)
        first = daemon.wait_after(r"check\.(completed|failed)", up).group(0)
        assert first == "check.completed"
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
        assert daemon.stop() == 0
        lines = daemon.all_lines()
        failed = [line for line in lines if "check.failed" in line]
        assert len(failed) >= 2
        assert all('reason="database unavailable' in line for line in failed), failed
        # one line per failed tick (and its retry): no traceback, no second error line
        assert len(failed) == sum("check.retry_scheduled" in line for line in lines)
        assert [line for line in lines[down:] if " ERROR " in line] == failed
        assert not [line for line in lines if "Traceback" in line or "crashed" in line]
