"""Daemons behind PgBouncer in transaction pooling, the way a replicated deployment runs them.

Transaction pooling hands each transaction to whichever server connection is free: no session
state survives between transactions. notifier keeps none (no session advisory lock, no SET,
no LISTEN), and ``?prepare_threshold=none`` keeps psycopg from preparing statements that
another server connection would not know. One client alone keeps landing on the same server
connection, so the prepared-statement tests use two: one holds a server connection while the
other's next transaction goes to another. Skipped, with the reason, where PgBouncer or
PostgreSQL is not installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from notifier.db import migrate
from notifier.db.database import Database
from notifier.db.models import Token
from tests.acceptance import conftest as acceptance
from tests.acceptance.conftest import RunningDaemon, cli
from tests.receivers import free_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
PREPARE_AFTER = 5  # psycopg's default prepare_threshold: executions before it prepares
env = acceptance.env  # the installed command's fixtures, shared with the acceptance tests
daemon = acceptance.daemon


@pytest.fixture
def pgbouncer(postgres_url: URL) -> Iterator[URL]:
    """PgBouncer in transaction mode on 127.0.0.1 in front of the test's database."""
    if not Path(PGBOUNCER).exists():
        pytest.skip("PgBouncer is not installed (apt-get install pgbouncer)")
    port = free_port()
    # PgBouncer refuses to run as root; as postgres it must reach its files: a directory in
    # /tmp itself, not under pytest's private one.
    tmp_path = Path(tempfile.mkdtemp(prefix="notifier-pgbouncer-"))
    tmp_path.chmod(0o777)
    users = tmp_path / "users.txt"
    users.write_text('"postgres" ""\n')
    config = tmp_path / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        "* = host=127.0.0.1 port=5432\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        f"auth_type = trust\nauth_file = {users}\n"
        "pool_mode = transaction\nunix_socket_dir =\n"
        f"logfile = {tmp_path / 'pgbouncer.log'}\npidfile = {tmp_path / 'pgbouncer.pid'}\n"
        "default_pool_size = 2\nignore_startup_parameters = extra_float_digits,options\n"
    )
    for path in (users, config):
        path.chmod(0o644)
    command = [PGBOUNCER, str(config)]
    if shutil.which("runuser") and Path("/etc/passwd").read_text().count("\npostgres:"):
        command = ["runuser", "-u", "postgres", "--", *command]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            log = tmp_path / "pgbouncer.log"
            if log.exists() and "listening on" in log.read_text():
                break
            if process.poll() is not None:
                pytest.skip(f"PgBouncer did not start: {process.stdout.read()!r}"[:300])  # type: ignore[union-attr]
            subprocess.run(["sleep", "0.05"], check=True)
        yield postgres_url.set(port=port)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
        shutil.rmtree(tmp_path, ignore_errors=True)


def daemon_env(pgbouncer: URL, env: dict[str, str]) -> dict[str, str]:
    """A daemon's environment through PgBouncer (a pass a second), and three tokens to warn of."""
    url = pgbouncer.render_as_string(hide_password=False) + "?prepare_threshold=none"
    through = {
        **env,
        "NOTIFIER_DATABASE_URL": url,
        "NOTIFIER_INTERVAL": "1s",
        "NOTIFIER_BACKOFF_INTERVAL": "0",
        "NOTIFIER_HTTP_ADDRESS": "off",
    }
    for name in ("a", "b", "c"):
        created = cli("tokens", "create", "--name", name, "--ttl", "2d", env=through)
        assert created.returncode == 0, created.stderr
    return through


def test_passes_through_transaction_pooling(
    pgbouncer: URL, env: dict[str, str], daemon: type[RunningDaemon]
) -> None:
    """Pass after pass of a running daemon go through PgBouncer without a session error."""
    through = daemon_env(pgbouncer, env)
    running = daemon(through)
    for _ in range(8):  # well past psycopg's default threshold of 5 executions to prepare
        running.wait_for(r"check\.completed in_window=3 sent=6 failed=0")
        running.lines.clear()
    assert running.stop() == 0
    assert not any("check.failed" in line for line in running.lines)


def pgbouncer_version() -> tuple[int, ...]:
    """PgBouncer's version, from ``pgbouncer --version``."""
    output = subprocess.run(
        [PGBOUNCER, "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"PgBouncer (\d+)\.(\d+)", output)
    assert match is not None, output
    return int(match[1]), int(match[2])


def migrated(url: URL) -> None:
    """Create the schema directly on PostgreSQL."""
    database = Database(url)
    migrate.upgrade(database)
    database.dispose()


def run_on_another_server_connection(url: URL) -> None:
    """Run one query often enough to be prepared, then again while its server is taken.

    Client A runs the query in one transaction after another: PgBouncer keeps giving it the
    same (only) server connection, where psycopg prepares it. Client B then opens a
    transaction, and PgBouncer hands it that last-used server connection; A's next
    transaction gets a second server connection, which has never seen the statement.
    """
    first, second = Database(url), Database(url)
    query = select(Token.__table__.c.id).where(Token.__table__.c.id == "none")
    try:
        for _ in range(PREPARE_AFTER + 2):
            with first.read() as connection:
                connection.execute(query).all()
        with second.read() as holding:
            holding.execute(query).all()
            with first.read() as connection:
                connection.execute(query).all()
    finally:
        first.dispose()
        second.dispose()


class TestPreparedStatements:
    def test_without_the_option_a_prepared_statement_is_missing_on_another_connection(
        self, pgbouncer: URL, postgres_url: URL
    ) -> None:
        """The failure ?prepare_threshold=none prevents: psycopg's prepared statement is gone."""
        if pgbouncer_version() >= (1, 21):
            pytest.skip("PgBouncer 1.21+ can track prepared statements itself")
        migrated(postgres_url)
        with pytest.raises(DBAPIError, match=r"prepared statement .* does not exist"):
            run_on_another_server_connection(pgbouncer)

    def test_with_the_option_every_transaction_runs_on_any_connection(
        self, pgbouncer: URL, postgres_url: URL
    ) -> None:
        """With ?prepare_threshold=none the same sequence runs: nothing is prepared."""
        migrated(postgres_url)
        run_on_another_server_connection(pgbouncer.update_query_dict({"prepare_threshold": "none"}))


def test_two_replicas_share_the_pool(
    pgbouncer: URL, env: dict[str, str], daemon: type[RunningDaemon]
) -> None:
    """Two daemons through two server connections pass after pass without an error."""
    through = daemon_env(pgbouncer, env)
    replicas = [daemon(through), daemon(through)]
    for _ in range(PREPARE_AFTER + 3):
        for running in replicas:
            running.wait_for(r"check\.completed in_window=3 ")
            running.lines.clear()
    for running in replicas:
        assert running.stop() == 0
        assert not any("check.failed" in line for line in running.lines)
