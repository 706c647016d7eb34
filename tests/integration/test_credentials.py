"""Every watched credential: what each pass records per source, and the merged, paged list.

On both backends (a SQLite file, PostgreSQL at 127.0.0.1:5432). The store's tokens come from
notifier.testing.fill_tokens or the store; the other sources' findings are real passes over
a JSON file source (notifier/sources/file.py) or written by record_found as a pass does.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from notifier.core.clock import FixedClock
from notifier.core.model import CredentialKind, WatchedToken
from notifier.credentials.found import FOUND, forget_sources, read_times, record_found
from notifier.credentials.listing import STATUSES, CredentialFilter, CredentialLists
from notifier.db.database import Database
from notifier.db.keyset import CursorError
from notifier.db.models import Token
from notifier.delivery.checker import Checker
from notifier.resources import CredentialResource
from notifier.sources import SourceError
from notifier.sources.file import FileSource, FileSourceConfig
from notifier.sources.store import StoreSource
from notifier.testing import RecordingSink, fill_tokens, make_policy
from notifier.tokens.lifecycle import TokenStore
from notifier.tokens.listing import TokenFilter, TokenLists

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
POLICY = make_policy()
TOKENS = Token.__table__


def found(
    source: str,
    token_id: str,
    *,
    days: float | None,
    kind: CredentialKind = CredentialKind.CERTIFICATE,
    name: str | None = None,
    owner: str | None = None,
    labels: dict[str, str] | None = None,
) -> WatchedToken:
    return WatchedToken(
        source=source,
        token_id=token_id,
        name=name or f"{token_id}.example.com",
        expires_at=None if days is None else NOW + timedelta(days=days),
        owner=owner,
        created_at=NOW - 30 * DAY,
        labels=labels or {},
        credential_kind=kind,
    )


def rows(database: Database, source: str) -> dict[str, dict[str, Any]]:
    with database.read() as connection:
        return {
            row["id"]: dict(row)
            for row in connection.execute(select(FOUND).where(FOUND.c.source == source)).mappings()
        }


def every_page(
    lists: CredentialLists, wanted: CredentialFilter, *, sort: str = "expires_at", limit: int = 7
) -> list[CredentialResource]:
    seen: list[CredentialResource] = []
    cursor = None
    while True:
        page, cursor = lists.page(wanted, now=NOW, sort=sort, limit=limit, cursor=cursor)
        assert len(page) <= limit
        seen.extend(page)
        if cursor is None:
            return seen


class TestRecordFound:
    def test_writes_only_what_changed(self, database: Database) -> None:
        """A pass writes the new, the changed and the gone; what stayed is not rewritten."""
        first = [found("x509", f"c{n}", days=n) for n in range(5)]
        assert record_found(database, "x509", first, NOW) == 5
        assert record_found(database, "x509", first, NOW + DAY) == 0  # nothing changed
        later = NOW + 2 * DAY
        second = [
            *first[:3],  # kept
            found("x509", "c3", days=40),  # renewed: a later expiry
            found("x509", "c9", days=9),  # new
        ]  # c4 is gone
        assert record_found(database, "x509", second, later) == 3
        held = rows(database, "x509")
        assert sorted(held) == ["c0", "c1", "c2", "c3", "c9"]
        assert held["c3"]["expires_at"] == NOW + 40 * DAY
        assert held["c3"]["first_seen"] == NOW  # a change keeps when it was first found
        assert held["c9"]["first_seen"] == later
        assert read_times(database)["x509"] == later

    def test_sources_are_kept_apart_and_revoked_left_out(self, database: Database) -> None:
        revoked = WatchedToken(
            source="file:a", token_id="r", name="r", expires_at=NOW + DAY, revoked_at=NOW - DAY
        )
        record_found(database, "file:a", [found("file:a", "same", days=1), revoked], NOW)
        record_found(database, "file:b", [found("file:b", "same", days=2)], NOW)
        assert list(rows(database, "file:a")) == ["same"]
        assert list(rows(database, "file:b")) == ["same"]
        record_found(database, "file:a", [], NOW + DAY)  # file:a found nothing now
        assert rows(database, "file:a") == {}
        assert list(rows(database, "file:b")) == ["same"]

    def test_forget_drops_sources_no_longer_configured(self, database: Database) -> None:
        record_found(database, "vault", [found("vault", "a", days=1)], NOW)
        record_found(database, "x509", [found("x509", "b", days=1)], NOW)
        assert forget_sources(database, ["x509"]) == 1
        assert rows(database, "vault") == {}
        assert list(rows(database, "x509")) == ["b"]
        assert set(read_times(database)) == {"x509"}

    def test_long_names_are_cut_to_the_column(self, database: Database) -> None:
        record_found(database, "x509", [found("x509", "long", days=1, name="n" * 400)], NOW)
        assert len(rows(database, "x509")["long"]["name"]) == 255


def _write_partners(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"tokens": rows}))
    return path


class TestPasses:
    """What a real pass records: a file source (it reads everything) beside the store."""

    def checker(
        self, database: Database, clock: FixedClock, sources: list[Any], **options: Any
    ) -> Checker:
        return Checker(
            database=database,
            sources=sources,
            sinks=[RecordingSink()],
            policy=POLICY,
            clock=clock,
            lease=timedelta(minutes=5),
            **options,
        )

    def test_a_pass_records_every_credential_a_source_read(
        self, tmp_path: Path, database: Database, clock: FixedClock
    ) -> None:
        path = _write_partners(
            tmp_path / "partners.json",
            [
                {"id": "p1", "name": "soon", "expires_at": "2026-01-03T00:00:00Z"},
                {"id": "p2", "name": "far", "expires_at": "2027-06-01T00:00:00Z"},
            ],
        )
        source = FileSource(FileSourceConfig("file:partners", path, ZoneInfo("UTC")))
        store = StoreSource(database)
        self.checker(database, clock, [store, source]).run()
        # Everything the file holds, not only the window's: the list shows all it watches.
        assert sorted(rows(database, "file:partners")) == ["p1", "p2"]
        assert rows(database, "store") == {}  # the store's tokens are listed from tokens

    def test_a_failing_source_keeps_its_last_findings(
        self, tmp_path: Path, database: Database, clock: FixedClock
    ) -> None:
        path = _write_partners(
            tmp_path / "partners.json",
            [{"id": "p1", "name": "soon", "expires_at": "2026-01-03T00:00:00Z"}],
        )
        source = FileSource(FileSourceConfig("file:partners", path, ZoneInfo("UTC")))
        checker = self.checker(database, clock, [source])
        checker.run()
        first_read = read_times(database)["file:partners"]
        path.write_text("{ not json")
        clock.advance(timedelta(hours=1))
        report = checker.run()
        assert report.failed_sources == ["file:partners"]
        assert list(rows(database, "file:partners")) == ["p1"]
        assert read_times(database)["file:partners"] == first_read

    def test_a_dry_run_records_nothing(
        self, tmp_path: Path, database: Database, clock: FixedClock
    ) -> None:
        path = _write_partners(
            tmp_path / "partners.json",
            [{"id": "p1", "name": "soon", "expires_at": "2026-01-03T00:00:00Z"}],
        )
        source = FileSource(FileSourceConfig("file:partners", path, ZoneInfo("UTC")))
        self.checker(database, clock, [source]).run(dry_run=True)
        assert rows(database, "file:partners") == {}

    def test_the_daemon_forgets_sources_it_no_longer_reads(
        self, tmp_path: Path, database: Database, clock: FixedClock
    ) -> None:
        record_found(database, "vault:old", [found("vault:old", "a", days=1)], NOW)
        path = _write_partners(tmp_path / "partners.json", [])
        source = FileSource(FileSourceConfig("file:partners", path, ZoneInfo("UTC")))
        self.checker(database, clock, [source]).run()  # `notifier check`: leaves others be
        assert list(rows(database, "vault:old")) == ["a"]
        self.checker(database, clock, [source], forget_unlisted=True).run()
        assert rows(database, "vault:old") == {}

    def test_a_database_failure_while_recording_is_logged_not_fatal(
        self, tmp_path: Path, database: Database, clock: FixedClock
    ) -> None:
        path = _write_partners(
            tmp_path / "partners.json",
            [{"id": "p1", "name": "soon", "expires_at": "2026-01-03T00:00:00Z"}],
        )
        source = FileSource(FileSourceConfig("file:partners", path, ZoneInfo("UTC")))
        with database.write() as connection:
            connection.execute(FOUND.delete())
            # The table is gone under the pass (an operator's mistake, a half-run restore).
            connection.exec_driver_sql("DROP TABLE credentials")
        sink = RecordingSink()
        checker = Checker(
            database=database,
            sources=[source],
            sinks=[sink],
            policy=POLICY,
            clock=clock,
            lease=timedelta(minutes=5),
        )
        with capture_logs() as logs:
            report = checker.run()
        assert [n.token_id for n in sink.received] == ["p1"]  # the notice still went out
        assert report.failed_sources == []
        assert any(entry["event"] == "credentials.failed" for entry in logs)


@pytest.fixture
def mixed(database: Database) -> Database:
    """Store tokens, and three other sources' findings, with ties in expiry across parts."""
    fill_tokens(database, 120, now=NOW, seed=5, owners=3)
    rng = random.Random(15)  # noqa: S311 - a reproducible fixture, not a secret
    with database.read() as connection:
        store_expiries = [
            row[0]
            for row in connection.execute(
                select(TOKENS.c.expires_at)
                .where(TOKENS.c.expires_at.is_not(None), TOKENS.c.revoked_at.is_(None))
                .limit(5)
            )
        ]
    for source, kind in (
        ("x509", CredentialKind.CERTIFICATE),
        ("vault", CredentialKind.TOKEN),
        ("vault:leases", CredentialKind.LEASE),
    ):
        creds = []
        for n in range(40):
            days = rng.choice([None, rng.uniform(-5, 120)])
            token = found(
                source,
                f"{source[:1]}{n:03d}",
                days=days,
                kind=kind,
                name=rng.choice(["alpha", "Beta", "gamma", "delta"]) + f"-{n}",
                owner=rng.choice(["ops@x", "dev@x", None]),
                labels={"env": rng.choice(["prod", "dev"])},
            )
            if n < len(store_expiries):  # the same expiry as a store token: a tie to break
                token = dataclasses.replace(token, expires_at=store_expiries[n])
            creds.append(token)
        record_found(database, source, creds, NOW)
    return database


def _expected_order(items: list[CredentialResource], sort: str) -> list[tuple[str, str]]:
    column = sort.removeprefix("-")

    def key(item: CredentialResource) -> tuple[Any, ...]:
        if column == "expires_at":
            return (item.expires_at is None, item.expires_at or NOW, item.source, item.id)
        return (item.name, item.source, item.id)

    return [(i.source, i.id) for i in sorted(items, key=key, reverse=sort.startswith("-"))]


class TestList:
    @pytest.mark.parametrize("sort", ["expires_at", "-expires_at", "name", "-name"])
    @pytest.mark.parametrize("limit", [1, 7, 1000])
    def test_pages_hold_every_credential_once_in_order(
        self, mixed: Database, sort: str, limit: int
    ) -> None:
        lists = CredentialLists(mixed, POLICY)
        seen = every_page(lists, CredentialFilter(), sort=sort, limit=limit)
        keys = [(c.source, c.id) for c in seen]
        assert len(keys) == len(set(keys))
        live = TokenLists(mixed, POLICY).stream(TokenFilter(), now=NOW, sort=sort)
        store = [("store", token.id) for token in live]  # every token but the revoked
        assert [key for key in keys if key[0] == "store"] == store
        column, descending = sort.removeprefix("-"), sort.startswith("-")
        order = [FOUND.c[column], FOUND.c.source, FOUND.c.id]
        with mixed.read() as connection:
            query = select(FOUND.c.source, FOUND.c.id).order_by(
                *(c.desc() if descending else c.asc() for c in order)
            )
            if column == "expires_at":  # never-expiring last, or first descending
                query = query.order_by(None).order_by(
                    FOUND.c.expires_at.is_(None).desc()
                    if descending
                    else FOUND.c.expires_at.is_(None).asc(),
                    *(c.desc() if descending else c.asc() for c in order),
                )
            others = [tuple(row) for row in connection.execute(query)]
        assert len(others) == 120
        assert [key for key in keys if key[0] != "store"] == others
        if column == "expires_at":  # times compare alike everywhere: the whole order is known
            assert keys == _expected_order(seen, sort)

    def test_stream_reads_the_same_rows_as_the_pages(self, mixed: Database) -> None:
        lists = CredentialLists(mixed, POLICY)
        pages = every_page(lists, CredentialFilter(), limit=13)
        streamed = list(lists.stream(CredentialFilter(), now=NOW, batch=13))
        assert streamed == pages
        assert list(lists.stream(CredentialFilter(), now=NOW, limit=5)) == pages[:5]

    def test_filters(self, mixed: Database) -> None:
        lists = CredentialLists(mixed, POLICY)
        everything = every_page(lists, CredentialFilter(), limit=1000)

        def check(wanted: CredentialFilter, keep: Any) -> None:
            got = every_page(lists, wanted, limit=11)
            assert [(c.source, c.id) for c in got] == [
                (c.source, c.id) for c in everything if keep(c)
            ]
            assert got, wanted  # each filter keeps something of the fixture

        check(CredentialFilter(kinds=frozenset({"certificate"})), lambda c: c.kind == "certificate")
        check(
            CredentialFilter(kinds=frozenset({"token"})),
            lambda c: c.kind == "token",
        )
        check(CredentialFilter(source="vault"), lambda c: c.source == "vault")
        check(CredentialFilter(source="store"), lambda c: c.source == "store")
        check(CredentialFilter(owner="ops@x"), lambda c: c.owner == "ops@x")
        check(
            CredentialFilter(labels=(("env", "prod"),)),
            lambda c: c.labels.get("env") == "prod",
        )
        check(
            CredentialFilter(expiring_within=10 * DAY),
            lambda c: c.expires_at is not None and NOW < c.expires_at <= NOW + 10 * DAY,
        )
        check(
            CredentialFilter(expires_after=NOW + 30 * DAY, expires_before=NOW + 60 * DAY),
            lambda c: c.expires_at is not None and NOW + 30 * DAY <= c.expires_at < NOW + 60 * DAY,
        )
        check(
            CredentialFilter(search="BETA"),
            lambda c: c.name.lower().startswith("beta") or c.id.startswith("BETA"),
        )
        check(CredentialFilter(search="x00"), lambda c: c.id.startswith("x00"))
        for status in STATUSES:
            if status == "superseded":
                continue  # the fixture rotates nothing
            check(CredentialFilter(statuses=frozenset({status})), lambda c, s=status: c.status == s)

    def test_statuses_and_days_left_as_the_policy_says(self, database: Database) -> None:
        record_found(
            database,
            "x509",
            [
                found("x509", "gone", days=-1),
                found("x509", "soon", days=2.5),
                found("x509", "later", days=89.5),
                found("x509", "never", days=None),
            ],
            NOW,
        )
        lists = CredentialLists(database, POLICY, store=False)
        got = {c.id: c for c in every_page(lists, CredentialFilter())}
        assert {key: (c.status, c.days_left) for key, c in got.items()} == {
            "gone": ("expired", None),
            "soon": ("expiring", 3),  # less than 3 days: the warn line's X
            "later": ("active", 90),
            "never": ("active", None),
        }
        assert all(c.seen_at == NOW and c.first_seen == NOW for c in got.values())
        assert list(got) == ["gone", "soon", "later", "never"]  # never-expiring last

    def test_store_tokens_are_read_live_without_the_revoked(self, database: Database) -> None:
        store = TokenStore(database, FixedClock(NOW), POLICY, prefix="ntf_", pepper=None)
        kept = store.create(name="kept", expires_at=NOW + 3 * DAY)
        gone = store.create(name="gone", expires_at=NOW + 3 * DAY)
        store.revoke(gone.id)
        lists = CredentialLists(database, POLICY)
        got = every_page(lists, CredentialFilter())
        assert [(c.source, c.id, c.kind, c.seen_at) for c in got] == [
            ("store", kept.id, "token", None)
        ]
        # A daemon whose sources leave the store out does not list its tokens as watched.
        assert every_page(CredentialLists(database, POLICY, store=False), CredentialFilter()) == []

    def test_cursors_are_bound_to_their_list(self, mixed: Database) -> None:
        lists = CredentialLists(mixed, POLICY)
        _, cursor = lists.page(CredentialFilter(), now=NOW, limit=5)
        assert cursor is not None
        with pytest.raises(CursorError, match="other filters"):
            lists.page(CredentialFilter(source="x509"), now=NOW, limit=5, cursor=cursor)
        with pytest.raises(CursorError, match="another sort"):
            lists.page(CredentialFilter(), now=NOW, sort="name", limit=5, cursor=cursor)
        name, filters, positions = json.loads(base64.urlsafe_b64decode(cursor + "=="))
        for forged in (
            {"store": positions["store"]},  # a part missing
            {**positions, "found": ["not", "a", "key", "at all"]},
            {**positions, "found": [{"t": "yesterday"}, "x509", "x1"]},
            {**positions, "store": [12, "id"]},
            [1, 2],
        ):
            text = json.dumps([name, filters, forged]).encode()
            bad = base64.urlsafe_b64encode(text).decode().rstrip("=")
            with pytest.raises(CursorError):
                lists.page(CredentialFilter(), now=NOW, limit=5, cursor=bad)
        with pytest.raises(ValueError, match="sort"):
            lists.page(CredentialFilter(), now=NOW, sort="owner")


def test_the_file_source_error_is_a_source_error(tmp_path: Path) -> None:
    """The failing-source test above relies on a broken file failing the source, not the pass."""
    path = tmp_path / "broken.json"
    path.write_text("{ not json")
    source = FileSource(FileSourceConfig("file:x", path, ZoneInfo("UTC")))
    with pytest.raises(SourceError):
        source.window(NOW, DAY, DAY)
