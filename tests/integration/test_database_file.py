"""The embedded SQLite file is private: it holds token hashes and the audit trail."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from notifier.db import migrate
from notifier.db.database import Database


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The common umask 022, under which files are world-readable unless made otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("permissive_umask")
class TestPrivateFile:
    def test_a_new_file_and_its_directories_are_private(self, tmp_path: Path) -> None:
        """The file notifier creates is 0600, each directory it creates for it 0700."""
        path = tmp_path / "state" / "notifier" / "notifier.db"
        database = Database(URL.create("sqlite+pysqlite", database=str(path)))
        migrate.upgrade(database)
        database.dispose()
        assert mode(path) == 0o600
        assert mode(path.parent) == 0o700
        assert mode(path.parent.parent) == 0o700
        # SQLite's journal files take the database file's permissions.
        for suffix in ("-wal", "-shm"):
            companion = path.with_name(path.name + suffix)
            if companion.exists():
                assert mode(companion) == 0o600

    def test_an_existing_file_and_directory_keep_their_permissions(self, tmp_path: Path) -> None:
        """An operator's own choice (a group-readable file for a backup job) is left alone."""
        path = tmp_path / "notifier.db"
        path.touch(mode=0o640)
        path.chmod(0o640)
        tmp_path.chmod(0o750)
        database = Database(URL.create("sqlite+pysqlite", database=str(path)))
        migrate.upgrade(database)
        database.dispose()
        assert mode(path) == 0o640
        assert mode(tmp_path) == 0o750


class TestConnections:
    def test_each_connection_keeps_a_page_cache_of_16_mib(self, tmp_path: Path) -> None:
        """A steady pass over 10,000 tokens reads about 4.6 MiB of pages: all cached.

        SQLite's default of 2 MiB made every due query read each page from the file again
        (docs/performance.md); the cache fills only as pages are read.
        """
        database = Database(URL.create("sqlite+pysqlite", database=str(tmp_path / "n.db")))
        with database.read() as first, database.read() as second:
            sizes = [c.exec_driver_sql("PRAGMA cache_size").scalar() for c in (first, second)]
        database.dispose()
        assert sizes == [-16_384, -16_384]  # negative: KiB, not pages
