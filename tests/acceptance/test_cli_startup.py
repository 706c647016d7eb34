"""What a command imports before it answers: each command imports only what it needs.

Scripts and probes call ``notifier --version``; it answers from notifier/cli/__init__.py,
before SQLAlchemy, pydantic or structlog are imported. ``check`` and ``tokens list`` on
SQLite import neither the web tier, the scheduler, the templates, the HTTP client, Alembic
(the schema is current), SQLAlchemy's ORM, the PostgreSQL dialect, nor rich (issue #13: a
command imports only what it needs). Timings are benchmarks' business (bench/startup.py,
bench/idle.py); the imports are what can be tested.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy.engine import make_url

from notifier.db import migrate
from notifier.db.database import Database

from .conftest import cli

_HEAVY = ("sqlalchemy", "pydantic", "structlog", "notifier.cli.app", "notifier.config")
_PROBE = """
import sys
from notifier.cli import main
code = main({argv!r})
print("loaded:", ",".join(sorted(m for m in {modules!r} if m in sys.modules)))
sys.exit(code)
"""
# What neither a pass nor a listing needs, on SQLite with a current schema. structlog.dev is
# not among them: `import structlog` imports it, whatever is configured; rich and pygments
# are what it would pull in (in the dev venv, where schemathesis brings rich).
_NOT_FOR_A_SHORT_COMMAND = (
    "alembic",
    "apprise",
    "apscheduler",
    "fastapi",
    "httpx",
    "jinja2",
    "prometheus_client",
    "psycopg",
    "pygments",
    "rich",
    "sqlalchemy.dialects.postgresql",
    "sqlalchemy.orm",
    "uvicorn",
    "yaml",
)
# Of notifier's own parts: a pass builds no token store (nor its pydantic resources), and a
# listing no checker.
_NOT_FOR_A_PASS = ("notifier.resources", "notifier.tokens.lifecycle")
_NOT_FOR_A_LISTING = ("notifier.delivery.checker",)
# What the idle daemon (SQLite, HTTP on, the log and ui sinks) does without.
_NOT_FOR_THE_IDLE_DAEMON = (
    "alembic",
    "apprise",
    "httpx",
    "jinja2",
    "psycopg",
    "pygments",
    "rich",
    "sqlalchemy.dialects.postgresql",
    "sqlalchemy.orm",
    "yaml",
)


def probe(argv: Sequence[str], modules: Sequence[str]) -> str:
    """A script that runs ``notifier *argv*`` and says which of *modules* it had imported."""
    return _PROBE.format(argv=list(argv), modules=tuple(modules))


def loaded(
    argv: Sequence[str], modules: Sequence[str], env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``notifier *argv*`` in a process of its own; which of *modules* it imported."""
    result = subprocess.run(
        [sys.executable, "-c", probe(argv, modules)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=60,
    )
    last = result.stdout.splitlines()[-1] if result.stdout else ""
    assert last.startswith("loaded:"), result.stdout + result.stderr
    return result, [name for name in last.removeprefix("loaded:").strip().split(",") if name]


@pytest.fixture
def current(env: dict[str, str]) -> dict[str, str]:
    """The environment of an empty SQLite database, migrated to the head revision."""
    upgraded = cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    return env


def test_version_answers_before_any_heavy_import() -> None:
    result, heavy = loaded(["--version"], _HEAVY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("notifier ")
    assert heavy == []


def test_anything_else_goes_through_the_whole_command() -> None:
    """The fast path is for --version alone: --help still lists every command."""
    result = subprocess.run(
        [sys.executable, "-m", "notifier", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "tokens" in result.stdout
    assert "serve" in result.stdout


class TestShortCommands:
    def test_check_imports_only_what_a_pass_needs(self, current: dict[str, str]) -> None:
        """A pass on SQLite imports no web tier, scheduler, Alembic, ORM or PostgreSQL dialect."""
        unused = _NOT_FOR_A_SHORT_COMMAND + _NOT_FOR_A_PASS
        result, needless = loaded(["check"], unused, current)
        assert result.returncode == 0, result.stderr
        assert "check.completed" in result.stderr
        assert needless == []

    def test_tokens_list_imports_only_what_a_listing_needs(self, current: dict[str, str]) -> None:
        """`tokens list` on SQLite imports none of them either, nor the checker."""
        unused = _NOT_FOR_A_SHORT_COMMAND + _NOT_FOR_A_LISTING
        result, needless = loaded(["tokens", "list"], unused, current)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("ID  NAME")
        assert needless == []

    def test_a_current_schema_is_checked_without_alembic(self, current: dict[str, str]) -> None:
        """`db upgrade` on a current schema compares one row with the head: no Alembic."""
        result, needless = loaded(["db", "upgrade"], ["alembic"], current)
        assert result.returncode == 0, result.stderr
        assert f"db.current revision={migrate.HEAD}" in result.stderr
        assert needless == []

    def test_an_empty_database_is_migrated_with_alembic(self, env: dict[str, str]) -> None:
        """Where there is something to apply, Alembic is imported and applies it."""
        result, imported = loaded(["db", "upgrade"], ["alembic"], env)
        assert result.returncode == 0, result.stderr
        assert f"db.migrated revision={migrate.HEAD}" in result.stderr
        assert imported == ["alembic"]

    def test_an_older_revision_is_upgraded_by_a_command(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        """A database one revision behind differs from the head: `check` upgrades it first."""
        path = tmp_path / "old.db"
        database = Database(make_url(f"sqlite:///{path}"))
        try:
            with database.write() as connection:
                config = migrate.alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, "0002")
        finally:
            database.dispose()
        older = {**env, "NOTIFIER_DATABASE_URL": f"sqlite:///{path}"}
        result, imported = loaded(["check"], ["alembic"], older)
        assert result.returncode == 0, result.stderr
        assert imported == ["alembic"]
        with sqlite3.connect(path) as connection:
            rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        assert rows == [(migrate.HEAD,)]

    def test_a_postgresql_url_still_loads_its_dialect(self, env: dict[str, str]) -> None:
        """The PostgreSQL dialect stays out only for SQLite: a PostgreSQL URL loads it."""
        unreachable = {**env, "NOTIFIER_DATABASE_URL": "postgresql://notifier@127.0.0.1:1/x"}
        result, imported = loaded(["check"], ["sqlalchemy.dialects.postgresql"], unreachable)
        assert result.returncode == 69, result.stderr
        assert imported == ["sqlalchemy.dialects.postgresql"]


def test_the_idle_daemon_imports_only_what_it_runs(current: dict[str, str], tmp_path: Path) -> None:
    """`notifier run` (SQLite, HTTP on, log and ui sinks) runs without these, and stops on TERM."""
    log = tmp_path / "daemon.log"
    with log.open("wb") as stderr:
        daemon = subprocess.Popen(
            [sys.executable, "-c", probe(["run"], _NOT_FOR_THE_IDLE_DAEMON)],
            env={**current, "NOTIFIER_HTTP_ADDRESS": "127.0.0.1:0"},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while b"check.completed" not in log.read_bytes():
                assert daemon.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            daemon.send_signal(signal.SIGTERM)
            stdout, _ = daemon.communicate(timeout=30)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    assert daemon.returncode == 0, log.read_text()
    assert "http.listening" in log.read_text()
    assert stdout.splitlines()[-1] == "loaded: ", stdout
