"""Token sources against real databases and files: SQLite, PostgreSQL, MariaDB, JSON, YAML."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    inspect,
)
from sqlalchemy.engine import URL
from structlog.testing import capture_logs

from notifier.core.clock import FixedClock
from notifier.db.database import Database
from notifier.delivery.checker import Checker
from notifier.sources import SourceError
from notifier.sources.file import FileSource, FileSourceConfig
from notifier.sources.sql import SqlSource, SqlSourceConfig
from notifier.sources.store import StoreSource
from notifier.testing import RecordingSink, make_policy
from notifier.tokens.lifecycle import TokenStore
from tests.conftest import sqlite_database

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
POLICY = make_policy()
COLUMNS = {
    "id": "key_id",
    "name": "label",
    "expires_at": "valid_until",
    "revoked_at": "revoked_on",
    "owner": "contact",
}


def make_table(url: URL, *, aware: bool, rows: list[dict[str, Any]]) -> None:
    """Create the other system's api_keys table and fill it."""
    metadata = MetaData()
    table = Table(
        "api_keys",
        metadata,
        Column("key_id", String(64), primary_key=True),
        Column("label", String(200)),
        Column("valid_until", DateTime(timezone=aware)),
        Column("revoked_on", DateTime(timezone=aware), nullable=True),
        Column("contact", String(200), nullable=True),
        Column("is_revoked", Boolean, nullable=False, default=False),
    )
    engine = create_engine(url)
    metadata.create_all(engine)
    defaults = {"revoked_on": None, "contact": None, "is_revoked": False}
    if rows:
        with engine.begin() as connection:
            connection.execute(insert(table), [{**defaults, **row} for row in rows])
    engine.dispose()


def naive(moment: datetime, zone: str = "UTC") -> datetime:
    return moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def sql_source(
    url: URL,
    *,
    columns: dict[str, str] | None = None,
    zone: str = "UTC",
    table: str = "api_keys",
    name: str = "sql:billing",
) -> SqlSource:
    config = SqlSourceConfig(
        name=name,
        url=url,
        table=table,
        schema=None,
        columns=columns or COLUMNS,
        timezone=ZoneInfo(zone),
    )
    source = SqlSource(config)
    _OPEN.append(source)
    return source


_OPEN: list[SqlSource] = []


@pytest.fixture(autouse=True)
def close_sources() -> Iterator[None]:
    """Close the pools the test's sources opened, before their databases are dropped."""
    yield
    while _OPEN:
        _OPEN.pop().close()


def checker(
    database: Database, clock: FixedClock, sources: list[Any], sink: RecordingSink
) -> Checker:
    return Checker(
        database=database,
        sources=sources,
        sinks=[sink],
        policy=POLICY,
        clock=clock,
        lease=timedelta(minutes=5),
    )


# Our own database: SQLite here; the other system's varies (the store runs on both).
database = sqlite_database


@pytest.fixture
def other_sqlite(tmp_path: Path) -> URL:
    return URL.create("sqlite+pysqlite", database=str(tmp_path / "other.db"))


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def other_url(request: pytest.FixtureRequest) -> URL:
    """The other system's database: a second SQLite file, PostgreSQL or MariaDB."""
    fixture = {"sqlite": "other_sqlite", "postgresql": "postgres_url", "mariadb": "mariadb_url"}
    url: URL = request.getfixturevalue(fixture[request.param])
    return url


class TestSqlSource:
    def test_naive_timestamps_are_utc_by_default(
        self, other_url: URL, database: Database, clock: FixedClock
    ) -> None:
        """Naive times are read as UTC; revoked and far-off rows stay out of the window."""
        make_table(
            other_url,
            aware=False,
            rows=[
                {
                    "key_id": "k1",
                    "label": "billing-ci",
                    "valid_until": naive(NOW + DAY * 2),
                    "contact": "billing@x",
                },
                {
                    "key_id": "k2",
                    "label": "old",
                    "valid_until": naive(NOW + DAY),
                    "revoked_on": naive(NOW - DAY),
                },
                {"key_id": "k3", "label": "far", "valid_until": naive(NOW + DAY * 60)},
                {"key_id": "k4", "label": "gone", "valid_until": naive(NOW - DAY)},
            ],
        )
        sink = RecordingSink()
        report = checker(database, clock, [sql_source(other_url)], sink).run()
        (notice,) = sink.received
        assert (notice.source, notice.token_id, notice.token_name) == (
            "sql:billing",
            "k1",
            "billing-ci",
        )
        assert notice.owner == "billing@x"
        assert notice.expires_at == NOW + DAY * 2
        assert notice.days_left == 3
        assert report.in_window == 1

    def test_naive_timestamps_in_a_configured_zone(
        self, other_url: URL, database: Database, clock: FixedClock
    ) -> None:
        """With a zone configured, a naive 12:00 in Berlin (winter) is 11:00 UTC."""
        make_table(
            other_url,
            aware=False,
            rows=[
                {
                    "key_id": "k1",
                    "label": "x",
                    "valid_until": naive(datetime(2026, 1, 3, 11, 0, tzinfo=UTC), "Europe/Berlin"),
                }
            ],
        )
        sink = RecordingSink()
        source = sql_source(other_url, zone="Europe/Berlin")
        checker(database, clock, [source], sink).run()
        (notice,) = sink.received
        assert notice.expires_at == datetime(2026, 1, 3, 11, 0, tzinfo=UTC)

    @pytest.mark.postgres
    def test_aware_timestamps(
        self, postgres_url: URL, database: Database, clock: FixedClock
    ) -> None:
        """Timestamptz values are taken as they are, whatever zone is configured."""
        make_table(
            postgres_url,
            aware=True,
            rows=[
                {
                    "key_id": "k1",
                    "label": "x",
                    "valid_until": datetime(2026, 1, 3, 12, 0, tzinfo=ZoneInfo("Asia/Tokyo")),
                }
            ],
        )
        sink = RecordingSink()
        source = sql_source(postgres_url, zone="Europe/Berlin")
        checker(database, clock, [source], sink).run()
        (notice,) = sink.received
        assert notice.expires_at == datetime(2026, 1, 3, 3, 0, tzinfo=UTC)

    def test_revoked_flag(self, other_sqlite: URL, database: Database, clock: FixedClock) -> None:
        """A boolean revoked column can stand in for revoked_at."""
        make_table(
            other_sqlite,
            aware=False,
            rows=[
                {"key_id": "on", "label": "a", "valid_until": naive(NOW + DAY), "is_revoked": True},
                {
                    "key_id": "off",
                    "label": "b",
                    "valid_until": naive(NOW + DAY),
                    "is_revoked": False,
                },
            ],
        )
        columns = {
            "id": "key_id",
            "name": "label",
            "expires_at": "valid_until",
            "revoked": "is_revoked",
        }
        sink = RecordingSink()
        checker(database, clock, [sql_source(other_sqlite, columns=columns)], sink).run()
        assert [n.token_id for n in sink.received] == ["off"]

    def test_backoff_is_kept_per_source(
        self, other_sqlite: URL, database: Database, clock: FixedClock
    ) -> None:
        """A second pass stays quiet for a source's token too; same ids in two sources differ."""
        make_table(
            other_sqlite,
            aware=False,
            rows=[{"key_id": "same", "label": "x", "valid_until": naive(NOW + DAY)}],
        )
        store = TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None)
        from notifier.tokens.importer import read_records  # noqa: PLC0415

        store.import_records(
            read_records(
                '{"id": "same", "name": "ours", "expires_at": "2026-01-02T00:00:00Z"}', "jsonl"
            )
        )
        sink = RecordingSink()
        run = checker(database, clock, [StoreSource(database), sql_source(other_sqlite)], sink)
        run.run()
        assert sorted((n.source, n.token_id) for n in sink.received) == [
            ("sql:billing", "same"),
            ("store", "same"),
        ]
        clock.advance(timedelta(hours=1))
        assert run.run().skipped_backoff == 2
        assert len(sink.received) == 2

    def test_missing_column_is_named_and_other_sources_go_on(
        self, other_sqlite: URL, database: Database, clock: FixedClock
    ) -> None:
        """A mapped column that does not exist fails that source only, with its name."""
        make_table(other_sqlite, aware=False, rows=[])
        TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None).create(
            name="ours", expires_at=NOW + DAY
        )
        columns = {**COLUMNS, "expires_at": "expiry_date"}
        sink = RecordingSink()
        sources = [sql_source(other_sqlite, columns=columns), StoreSource(database)]
        with capture_logs() as events:
            report = checker(database, clock, sources, sink).run()
        (failed,) = [e for e in events if e["event"] == "source.failed"]
        assert failed["source"] == "sql:billing"
        assert "'expiry_date'" in str(failed["reason"])
        assert "valid_until" in str(failed["reason"])  # it says what the table has
        assert report.failed_sources == ["sql:billing"]
        assert report.degraded
        assert [n.token_name for n in sink.received] == ["ours"]

    def test_unreachable_database_is_a_source_error(self, database: Database) -> None:
        """A source database that does not answer fails the source, not the pass."""
        url = URL.create("postgresql+psycopg", username="x", host="127.0.0.1", port=1, database="x")
        with pytest.raises(SourceError):
            sql_source(url).window(NOW, DAY, DAY)

    def test_identifiers_are_quoted_not_spliced(
        self, other_sqlite: URL, database: Database
    ) -> None:
        """A table name carrying SQL is looked up as a name; nothing is executed."""
        make_table(other_sqlite, aware=False, rows=[])
        evil = 'api_keys"; DROP TABLE api_keys; --'
        with pytest.raises(SourceError, match="does not exist"):
            sql_source(other_sqlite, table=evil).window(NOW, DAY, DAY)
        columns = {**COLUMNS, "name": 'label" FROM api_keys; DROP TABLE api_keys; --'}
        with pytest.raises(SourceError, match="is not in table"):
            sql_source(other_sqlite, columns=columns).window(NOW, DAY, DAY)
        engine = create_engine(other_sqlite)
        assert inspect(engine).has_table("api_keys")
        engine.dispose()

    def test_connections_are_read_only(self, other_sqlite: URL, database: Database) -> None:
        """The source's connections refuse writes."""
        make_table(other_sqlite, aware=False, rows=[])
        source = sql_source(other_sqlite)
        source.window(NOW, DAY, DAY)
        with (
            source._engine_for().connect() as connection,
            pytest.raises(Exception, match=r"readonly|read-only|read only"),
        ):
            connection.exec_driver_sql("DELETE FROM api_keys")
        source.close()


class TestFileSource:
    ROWS: ClassVar[list[dict[str, Any]]] = [
        {"id": "p1", "name": "partner", "expires_at": "2026-01-03T00:00:00Z", "owner": "p@x"},
        {"id": "p2", "name": "naive", "expires_at": "2026-01-04T00:00:00"},
        {
            "id": "p3",
            "name": "revoked",
            "expires_at": "2026-01-03T00:00:00Z",
            "revoked_at": "2025-12-01T00:00:00Z",
        },
        {"id": "p4", "name": "far", "expires_at": "2027-01-01T00:00:00Z"},
    ]

    def write(self, path: Path, rows: list[dict[str, Any]]) -> Path:
        if path.suffix == ".jsonl":
            path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
        elif path.suffix == ".json":
            path.write_text(json.dumps({"tokens": rows}))
        else:
            import yaml  # noqa: PLC0415

            path.write_text(yaml.safe_dump(rows))
        return path

    @pytest.mark.parametrize("suffix", [".json", ".jsonl", ".yaml"])
    def test_formats(
        self, tmp_path: Path, suffix: str, database: Database, clock: FixedClock
    ) -> None:
        """JSON, JSONL and YAML files give the same tokens; naive times are UTC."""
        path = self.write(tmp_path / f"tokens{suffix}", self.ROWS)
        source = FileSource(FileSourceConfig("file:partners", path, ZoneInfo("UTC")))
        sink = RecordingSink()
        checker(database, clock, [source], sink).run()
        assert [(n.token_id, n.expires_at) for n in sink.received] == [
            ("p1", datetime(2026, 1, 3, tzinfo=UTC)),
            ("p2", datetime(2026, 1, 4, tzinfo=UTC)),
        ]
        assert sink.received[0].source == "file:partners"

    def test_reread_each_pass(self, tmp_path: Path, database: Database, clock: FixedClock) -> None:
        """A token added to the file is seen by the next pass."""
        path = self.write(tmp_path / "t.jsonl", self.ROWS[:1])
        source = FileSource(FileSourceConfig("file", path, ZoneInfo("UTC")))
        sink = RecordingSink()
        run = checker(database, clock, [source], sink)
        run.run()
        self.write(path, self.ROWS[:2])
        clock.advance(timedelta(minutes=5))
        run.run()
        assert [n.token_id for n in sink.received] == ["p1", "p2"]

    @pytest.mark.parametrize(
        ("rows", "words"),
        [
            ([{"id": "a", "name": "x"}], "token #1: expires_at is missing"),
            ([{"id": "a", "name": "x", "expires_at": "soon"}], "not an ISO 8601 time"),
            ([{"id": "a", "name": "x", "expires_at": None, "expiry": 1}], "unknown field 'expiry'"),
            ([{"id": "a", "name": "x", "expires_at": None}] * 2, "repeats token #1"),
        ],
    )
    def test_bad_rows_name_the_row(
        self, tmp_path: Path, database: Database, rows: list[dict[str, Any]], words: str
    ) -> None:
        """A bad row fails the source with the row and the reason."""
        path = self.write(tmp_path / "t.json", rows)
        source = FileSource(FileSourceConfig("file", path, ZoneInfo("UTC")))
        with pytest.raises(SourceError, match=words):
            source.window(NOW, DAY, DAY)

    def test_missing_file(self, tmp_path: Path, database: Database) -> None:
        """A file that cannot be read is a source error naming the path."""
        source = FileSource(FileSourceConfig("file", tmp_path / "nope.json", ZoneInfo("UTC")))
        with pytest.raises(SourceError, match=r"nope\.json"):
            source.window(NOW, DAY, DAY)
