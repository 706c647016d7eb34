"""The service shell's parts: retry delays, the schema behind readiness, and the layers."""

from __future__ import annotations

import ast
import threading
from datetime import timedelta
from pathlib import Path

from sqlalchemy import URL

import notifier
from notifier.db.database import Database
from notifier.runtime.service import RETRY_FIRST, RETRY_MAX, Backoff, Schema


class TestBackoff:
    def test_doubles_up_to_the_most(self) -> None:
        """Delays go 5 s, 10 s, 20 s ... and stay at 5 min."""
        backoff = Backoff()
        delays = [backoff.next() for _ in range(9)]
        assert delays[:3] == [RETRY_FIRST, RETRY_FIRST * 2, RETRY_FIRST * 4]
        assert delays[-2:] == [RETRY_MAX, RETRY_MAX]

    def test_a_cap_shortens_the_delay_but_not_the_next(self) -> None:
        """A pass interval shorter than the delay bounds it; the doubling goes on."""
        backoff = Backoff()
        assert backoff.next(cap=timedelta(seconds=2)) == timedelta(seconds=2)
        assert backoff.next() == RETRY_FIRST * 2

    def test_reset_starts_again(self) -> None:
        """After a success the next failure waits the first delay."""
        backoff = Backoff()
        backoff.next()
        backoff.next()
        backoff.reset()
        assert backoff.next() == RETRY_FIRST


class TestSchema:
    def test_ready_once_migrated(self, sqlite_url: URL) -> None:
        """Readiness names the missing schema until the upgrade ran."""
        database = Database(sqlite_url)
        try:
            schema = Schema(database)
            assert schema.readiness().reason == "the schema is not migrated yet"
            assert schema.upgrade_until_current(threading.Event())
            assert schema.readiness().ok
        finally:
            database.dispose()

    def test_a_stop_ends_the_retries(self, sqlite_url: URL) -> None:
        """Asked to stop, it does not migrate and says it did not."""
        database = Database(sqlite_url)
        try:
            stop = threading.Event()
            stop.set()
            schema = Schema(database)
            assert not schema.upgrade_until_current(stop)
            assert not schema.current.is_set()
        finally:
            database.dispose()


def test_the_web_tier_is_handed_its_parts() -> None:
    """No module of notifier/web imports the composition root: it builds them, not they it."""
    web = Path(notifier.__file__).parent / "web"
    importing = [
        path.name
        for path in sorted(web.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module == "notifier.runtime.compose"
    ]
    assert importing == []
