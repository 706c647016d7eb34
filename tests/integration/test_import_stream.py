"""An import read as a stream: every row staged and checked before anything is written.

The import holds a chunk of rows at a time and stages them in a temporary table; repeated ids
are found there, and the write moves the staged rows, the stored ones diffed page by page.
These tests use files a few chunks and pages long, on both backends.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from notifier import cli
from notifier.audit import list_events
from notifier.core.clock import FixedClock
from notifier.db.database import Database
from notifier.db.models import AuditEvent, Token
from notifier.testing import make_policy
from notifier.tokens.importer import ImportDataError, read_rows
from notifier.tokens.lifecycle import TokenStore
from notifier.tokens.transfer import ImportReport, import_records

ROWS = 1_300  # past two chunks of staged rows (500 each)
PAGE = 5_000  # stored rows diffed at a time
DAY = timedelta(days=1)


def line(index: int, **fields: Any) -> str:
    row = {"id": f"k{index}", "name": f"token {index}", "expires_at": "2030-01-01T00:00:00Z"}
    return json.dumps({**row, **fields})


def rows(lines: list[str]) -> Iterator[Any]:
    """The checked rows of *lines*, read as the CLI reads a file."""
    return read_rows(io.StringIO("\n".join(lines) + "\n", newline=""), "jsonl")


def imported(database: Database, clock: FixedClock, lines: list[str]) -> ImportReport:
    store = TokenStore(database, clock, make_policy(), prefix="ntf_", pepper=None)
    return store.import_records(rows(lines), actor="user:test")


def counts(database: Database) -> tuple[int, int]:
    """How many tokens and audit events the database holds."""
    with database.read() as connection:
        tokens = connection.execute(select(func.count()).select_from(Token.__table__)).scalar()
        events = connection.execute(select(func.count()).select_from(AuditEvent.__table__))
        return int(tokens or 0), int(events.scalar() or 0)


class TestCheckedBeforeWritten:
    def test_a_bad_row_after_many_good_ones_writes_nothing(
        self, database: Database, clock: FixedClock
    ) -> None:
        """The last row is bad, chunks after the first were staged: no token and no event."""
        lines = [line(index) for index in range(ROWS)]
        lines.append(line(ROWS, expires_at="soon"))
        with pytest.raises(ImportDataError) as caught:
            imported(database, clock, lines)
        ((where, field),) = [(error.line, error.field) for error in caught.value.errors]
        assert (where, field) == (ROWS + 1, "expires_at")
        assert counts(database) == (0, 0)

    def test_a_repeat_chunks_apart_names_the_first_line(
        self, database: Database, clock: FixedClock
    ) -> None:
        """An id seen in the first chunk and again in the third is a bad row, as in memory."""
        lines = [line(index) for index in range(ROWS)]
        lines.append(line(0, name="again"))
        with pytest.raises(ImportDataError) as caught:
            imported(database, clock, lines)
        (error,) = caught.value.errors
        assert str(error) == f"line {ROWS + 1}, field id: 'k0' repeats line 1"
        assert counts(database) == (0, 0)

    def test_bad_fields_and_repeats_are_listed_by_line(
        self, database: Database, clock: FixedClock
    ) -> None:
        """The reader's bad rows and the staged repeats come back as one list, in file order."""
        lines = [line(index) for index in range(ROWS)]
        lines[900] = line(900, permissions="all")
        lines[4] = line(1)
        with pytest.raises(ImportDataError) as caught:
            imported(database, clock, lines)
        assert [(error.line, error.field) for error in caught.value.errors] == [
            (5, "id"),
            (901, "permissions"),
        ]
        assert counts(database) == (0, 0)


class TestWrite:
    def test_stored_rows_are_diffed_across_pages(
        self, database: Database, clock: FixedClock
    ) -> None:
        """A file of stored and new ids, longer than a page: each row counted once, right."""
        first = [line(index) for index in range(PAGE + 500)]
        assert imported(database, clock, first).created == PAGE + 500
        changed = dict.fromkeys(range(0, PAGE + 500, 1000), "2031-01-01T00:00:00Z")
        second = [
            line(index, expires_at=changed[index]) if index in changed else line(index)
            for index in range(PAGE + 500)
        ] + [line(index) for index in range(PAGE + 500, PAGE + 510)]
        report = imported(database, clock, second)
        assert (report.created, report.updated, report.unchanged) == (10, 6, PAGE + 494)
        assert counts(database) == (PAGE + 510, PAGE + 500 + 10 + 6)
        (event, created) = list_events(database, token_id="k5000")
        assert (event.details, created.details) == ({"changed": ["expires_at"]}, {"created": True})

    def test_rows_of_different_shapes(self, database: Database, clock: FixedClock) -> None:
        """Rows carrying different fields, mixed, keep theirs; a new token has the defaults."""
        lines = [
            line(0),
            line(1, permissions=["tokens:read"], labels={"team": "a"}, owner="ops@example.com"),
            line(2, created_at="2025-06-01T00:00:00Z", role="ci"),
            line(3),
        ]
        assert imported(database, clock, lines).created == 4
        store = TokenStore(database, clock, make_policy(), prefix="ntf_", pepper=None)
        tokens = {token.id: token for token in store.list()}
        assert (tokens["k0"].permissions, tokens["k0"].labels, tokens["k0"].role) == ([], {}, None)
        assert tokens["k0"].created_at == clock.now()
        assert (tokens["k1"].permissions, tokens["k1"].labels) == (["tokens:read"], {"team": "a"})
        assert tokens["k1"].owner == "ops@example.com"
        assert (tokens["k2"].role, tokens["k2"].created_at.year) == ("ci", 2025)

    def test_a_field_left_out_keeps_its_stored_value(
        self, database: Database, clock: FixedClock
    ) -> None:
        """An update names only what it carries: the owner stays when a later row omits it."""
        imported(database, clock, [line(0, owner="ops@example.com", role="ci")])
        report = imported(database, clock, [line(0, role="cd")])
        assert (report.updated, report.unchanged) == (1, 0)
        (event, _) = list_events(database, token_id="k0")
        assert event.details == {"changed": ["role"]}
        store = TokenStore(database, clock, make_policy(), prefix="ntf_", pepper=None)
        token = store.get("k0")
        assert (token.owner, token.role) == ("ops@example.com", "cd")


class TestReading:
    def test_rows_come_before_the_file_is_read_to_its_end(self, tmp_path: Path) -> None:
        """The JSONL reader reads as it goes, so memory does not grow with the file."""
        path = tmp_path / "big.jsonl"
        path.write_text("".join(line(index) + "\n" for index in range(5_000)))
        with path.open(encoding="utf-8", newline="") as stream:
            first = next(read_rows(stream, "jsonl"))
            position = stream.buffer.raw.tell()  # type: ignore[attr-defined]
        assert first.values["id"] == "k0"
        assert position < path.stat().st_size / 4

    @pytest.mark.usefixtures("clean_environment")
    def test_a_file_that_stops_being_utf8_midway_exits_66(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Bytes that are not UTF-8 after many good rows: exit 66, and nothing was imported."""
        path = tmp_path / "broken.jsonl"
        good = "".join(line(index) + "\n" for index in range(ROWS)).encode()
        path.write_bytes(good + b'{"id": "x", "name": "\xff\xfe"}\n')
        assert cli.main(["tokens", "import", str(path)]) == 66
        assert capsys.readouterr().err.splitlines() == [
            f"notifier: cannot read {path}: not UTF-8 text"
        ]
        assert cli.main(["tokens", "list", "--all", "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == []


@pytest.mark.postgres
def test_a_large_import_refreshes_the_planners_statistics(
    postgres_url: Any, clock: FixedClock
) -> None:
    """Past 10,000 rows the import runs ANALYZE, so the planner knows the table grew.

    Until autovacuum's analyze (a minute or more later), a search or a sort over a table that
    grew from nothing would be planned as over an empty one (issue #15's 1M benchmark: a
    search by name took 4.4 s before, 36 ms after).
    """
    from notifier.db import migrate  # noqa: PLC0415

    database = Database(postgres_url)
    try:
        migrate.upgrade(database)
        imported(database, clock, [line(index) for index in range(9_999)])

        def analyzed() -> float:
            with database.read() as connection:
                return float(
                    connection.exec_driver_sql(
                        "SELECT reltuples FROM pg_class WHERE oid = 'tokens'::regclass"
                    ).scalar_one()
                )

        # Below the threshold: no ANALYZE of ours (autovacuum may come by; it is not asked).
        imported(database, clock, [line(index) for index in range(10_000, 20_000)])
        assert analyzed() == pytest.approx(19_999, rel=0.05)
    finally:
        database.dispose()


def ranged(database: Database, clock: FixedClock, records: Any, **hooks: Any) -> ImportReport:
    """Import *records* with ranges of 500 rows, so that PostgreSQL writes several."""
    return import_records(
        database, records, now=clock.now(), actor="user:test", write_range=RANGE, **hooks
    )


RANGE = 500  # rows staged and written at a time on PostgreSQL, in these tests


class TestWrittenByRanges:
    """PostgreSQL writes a range while the next is checked; all of it commits, or none.

    On SQLite the same calls stage everything and then write (the range does not apply), so
    each case holds there too.
    """

    def test_every_range_is_written_and_counted(
        self, database: Database, clock: FixedClock
    ) -> None:
        stored = 2 * RANGE + 100
        first = [line(index) for index in range(stored)]
        assert ranged(database, clock, rows(first)).created == stored
        # Stored and new mixed over four ranges; every 100th row changed (0, 100, ... 1000).
        second = [
            line(index, role="ci") if index % 100 == 0 else line(index)
            for index in range(4 * RANGE)
        ]
        report = ranged(database, clock, rows(second))
        changed = len(range(0, stored, 100))
        assert (report.created, report.updated, report.unchanged) == (
            4 * RANGE - stored,
            changed,
            stored - changed,
        )
        assert counts(database) == (4 * RANGE, 4 * RANGE + changed)

    @pytest.mark.parametrize(
        ("first", "again"), [(10, 20), (3, 3 * RANGE + 7)], ids=["same range", "ranges apart"]
    )
    def test_a_repeat_rolls_back_the_ranges_written(
        self, database: Database, clock: FixedClock, first: int, again: int
    ) -> None:
        lines = [line(index) for index in range(4 * RANGE)]
        lines[again] = line(first, name="again")
        with pytest.raises(ImportDataError) as caught:
            ranged(database, clock, rows(lines))
        assert [str(error) for error in caught.value.errors] == [
            f"line {again + 1}, field id: 'k{first}' repeats line {first + 1}"
        ]
        assert counts(database) == (0, 0)

    def test_a_bad_row_after_written_ranges_rolls_them_back(
        self, database: Database, clock: FixedClock
    ) -> None:
        """Ranges already written when the reader finds a bad row: none of them stays."""
        lines = [line(index) for index in range(3 * RANGE)]
        lines.append(line(3 * RANGE, expires_at="soon"))
        lines.append(line(3 * RANGE + 1, permissions="all"))
        written: list[int] = []
        with pytest.raises(ImportDataError) as caught:
            ranged(database, clock, rows(lines), progress=written.append)
        assert [(error.line, error.field) for error in caught.value.errors] == [
            (3 * RANGE + 1, "expires_at"),
            (3 * RANGE + 2, "permissions"),
        ]
        if database.dialect == "postgresql":
            assert sum(written) == 3 * RANGE  # written, then rolled back
        assert counts(database) == (0, 0)

    def test_a_repeat_just_before_a_bad_last_row_is_listed_with_it(
        self, database: Database, clock: FixedClock
    ) -> None:
        """Rows read in the chunk the reader's error ends are staged, and their repeats found."""
        lines = [line(index) for index in range(10)]
        lines[2] = line(0, name="again")
        lines.append(line(10, expires_at="soon"))
        with pytest.raises(ImportDataError) as caught:
            ranged(database, clock, rows(lines))
        assert [(error.line, error.field) for error in caught.value.errors] == [
            (3, "id"),
            (11, "expires_at"),
        ]
        assert counts(database) == (0, 0)

    def test_nothing_is_seen_by_another_connection_before_the_commit(
        self, database: Database, clock: FixedClock
    ) -> None:
        seen: list[tuple[int, int]] = []
        lines = [line(index) for index in range(3 * RANGE)]
        ranged(
            database,
            clock,
            rows(lines),
            progress=lambda _: seen.append(counts(database)),
            before_commit=lambda: seen.append(counts(database)),
        )
        assert len(seen) > 1
        assert set(seen) == {(0, 0)}
        assert counts(database) == (3 * RANGE, 3 * RANGE)

    def test_a_file_that_fails_midway_leaves_nothing_and_no_reader(
        self, database: Database, clock: FixedClock
    ) -> None:
        """An error of the reading (here, not UTF-8) is raised as it was; the reader ends."""

        def failing() -> Iterator[Any]:
            yield from rows([line(index) for index in range(2 * RANGE + 10)])
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

        with pytest.raises(UnicodeDecodeError):
            ranged(database, clock, failing())
        assert counts(database) == (0, 0)
        assert not [t for t in threading.enumerate() if t.name == "import-reader"]

    def test_a_failure_of_the_write_stops_the_reader(
        self, database: Database, clock: FixedClock
    ) -> None:
        """The importing thread fails mid-file: the reader stops reading, and nothing stays."""
        taken: list[int] = []

        def endless() -> Iterator[Any]:
            index = 0
            while True:
                taken.append(index)
                yield from rows([line(index)])
                index += 1

        def fail(_: int) -> None:
            raise RuntimeError("the write failed")

        with pytest.raises(RuntimeError, match="the write failed"):
            ranged(database, clock, endless(), staged=fail)
        assert not [t for t in threading.enumerate() if t.name == "import-reader"]
        read = len(taken)
        assert read < 10 * RANGE  # it stopped: the file is endless
        assert counts(database) == (0, 0)


def test_a_creation_time_of_null_is_the_field_left_out(
    database: Database, clock: FixedClock
) -> None:
    """A null created_at (or an empty CSV cell) once failed the write with a traceback."""
    imported(database, clock, [line(0, created_at="2025-06-01T00:00:00Z")])
    report = imported(database, clock, [line(0, created_at=None), line(1, created_at=None)])
    assert (report.created, report.updated, report.unchanged) == (1, 0, 1)
    store = TokenStore(database, clock, make_policy(), prefix="ntf_", pepper=None)
    assert store.get("k0").created_at.year == 2025  # stored: kept
    assert store.get("k1").created_at == clock.now()  # new: the import's time
