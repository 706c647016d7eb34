"""Lists of tokens in SQL: statuses as the views compute them, keyset pages, search, counts.

On both backends (a SQLite file, PostgreSQL at 127.0.0.1:5432), against tokens written by
the bulk fixture builder (notifier.testing.fill_tokens) or by the store itself.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notifier.core.clock import FixedClock
from notifier.core.model import Threshold
from notifier.db.database import Database
from notifier.db.keyset import CursorError, fingerprint
from notifier.resources import TokenResource
from notifier.testing import fill_tokens, make_policy
from notifier.tokens.lifecycle import TokenStore
from notifier.tokens.listing import (
    STATUSES,
    TokenFilter,
    TokenLists,
    label_filters,
    sort_choices,
    statuses_of,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
EVERY = frozenset(STATUSES)


def _all(
    lists: TokenLists, wanted: TokenFilter, sort: str = "expires_at", limit: int = 7
) -> tuple[list[TokenResource], list[int]]:
    """Every page of *wanted*, followed by cursor, and the pages' sizes."""
    seen: list[TokenResource] = []
    sizes: list[int] = []
    cursor = None
    while True:
        page, cursor = lists.page(wanted, now=NOW, sort=sort, limit=limit, cursor=cursor)
        seen.extend(page)
        sizes.append(len(page))
        if cursor is None:
            return seen, sizes


def _sort_key(sort: str) -> Callable[[TokenResource], tuple[Any, ...]]:
    column = sort.removeprefix("-")

    def key(token: TokenResource) -> tuple[Any, ...]:
        value = getattr(token, column)
        if column == "expires_at":  # never-expiring tokens after every expiry
            return (value is None, value or NOW, token.id)
        return (value, token.id)

    return key


@pytest.fixture
def fleet(database: Database) -> Database:
    fill_tokens(database, 600, now=NOW, seed=3, owners=5)
    return database


class TestStatuses:
    @pytest.mark.parametrize(
        "thresholds",
        [
            (),
            (Threshold("30d", duration=timedelta(days=30)),),
            (Threshold("10%", fraction=0.1), Threshold("2d", duration=timedelta(days=2))),
            (Threshold("25%", fraction=0.25),),
        ],
        ids=["window", "fixed", "share-and-fixed", "share"],
    )
    def test_sql_status_is_the_views_status(
        self, fleet: Database, thresholds: tuple[Threshold, ...]
    ) -> None:
        """Each token's status filter in SQL picks exactly the tokens the views call so."""
        policy = make_policy(thresholds=thresholds)
        lists = TokenLists(fleet, policy)
        everything, _ = _all(lists, TokenFilter(EVERY), limit=1000)
        assert len(everything) == 600
        for status in STATUSES:
            chosen, _ = _all(lists, TokenFilter(frozenset({status})), limit=1000)
            assert {t.id for t in chosen} == {t.id for t in everything if t.status == status}
        assert {t.status for t in everything} >= {"active", "expired", "revoked", "superseded"}
        assert any(t.status == "expiring" for t in everything)


class TestPages:
    @pytest.mark.parametrize("sort", sort_choices())
    def test_pages_cover_the_list_once_in_order(self, fleet: Database, sort: str) -> None:
        """Following each cursor reads every token once, in the sort asked, nulls last."""
        lists = TokenLists(fleet, make_policy())
        seen, sizes = _all(lists, TokenFilter(EVERY), sort=sort, limit=37)
        assert len(seen) == 600
        assert len({t.id for t in seen}) == 600
        assert set(sizes[:-1]) == {37}
        expected = sorted(seen, key=_sort_key(sort), reverse=sort.startswith("-"))
        assert [t.id for t in seen] == [t.id for t in expected]

    def test_a_row_added_meanwhile_moves_no_other(self, database: Database) -> None:
        """Rows added before and after the page's place: no row repeats, none is skipped."""
        clock = FixedClock(NOW)
        store = TokenStore(database, clock, make_policy(), prefix="ntf_", pepper=None)
        made = [
            store.create(name=f"t{n}", expires_at=NOW + timedelta(days=n + 1)) for n in range(10)
        ]
        first, cursor = store.page(TokenFilter(), limit=4)
        store.create(name="earlier", expires_at=NOW + timedelta(hours=1))  # before the cursor
        store.create(name="later", expires_at=NOW + timedelta(days=100))  # after it
        rest: list[TokenResource] = []
        while cursor is not None:
            page, cursor = store.page(TokenFilter(), limit=4, cursor=cursor)
            rest.extend(page)
        names = [t.name for t in first + rest]
        assert names == [t.name for t in made] + ["later"]

    def test_a_cursor_for_other_filters_is_refused(self, fleet: Database) -> None:
        lists = TokenLists(fleet, make_policy())
        _, cursor = lists.page(TokenFilter(), now=NOW, limit=5)
        assert cursor is not None
        with pytest.raises(CursorError, match="another sort or other filters"):
            lists.page(TokenFilter(owner="x"), now=NOW, limit=5, cursor=cursor)
        with pytest.raises(CursorError, match="another sort"):
            lists.page(TokenFilter(), now=NOW, limit=5, sort="name", cursor=cursor)
        for garbage in ["", "abc", "!!!", cursor[:-3], "W10"]:
            with pytest.raises(CursorError):
                lists.page(TokenFilter(), now=NOW, limit=5, cursor=garbage)

    @pytest.mark.parametrize(
        "values",
        [
            ["not a time", "id"],  # a text for a time
            [{"t": "2026-01-01T00:00:00+00:00"}, 5],  # a number for an id
            [{"t": "2026-01-01T00:00:00"}, "id"],  # a time without its zone
            [None, None],  # an id missing
            [{"t": "2026-01-01T00:00:00+00:00"}, "a\x00b"],  # NUL, which PostgreSQL refuses
            [{"t": "2026-01-01T00:00:00+00:00"}, "id", "more"],
        ],
    )
    def test_a_forged_cursor_is_refused_before_it_reaches_the_database(
        self, fleet: Database, values: list[object]
    ) -> None:
        """A cursor made by hand, with the right fingerprint but wrong values, is refused."""
        filters = fingerprint(TokenFilter().described())
        forged = base64.urlsafe_b64encode(json.dumps(["expires_at", filters, values]).encode())
        with pytest.raises(CursorError, match="not a cursor this API made"):
            TokenLists(fleet, make_policy()).page(
                TokenFilter(), now=NOW, limit=5, cursor=forged.decode()
            )

    def test_stream_reads_everything_and_stops_at_its_limit(self, fleet: Database) -> None:
        lists = TokenLists(fleet, make_policy())
        everything = list(lists.stream(TokenFilter(EVERY), now=NOW, batch=50))
        assert len(everything) == 600
        assert len(list(lists.stream(TokenFilter(EVERY), now=NOW, batch=50, limit=123))) == 123


class TestFilters:
    def test_owner_labels_and_times(self, fleet: Database) -> None:
        lists = TokenLists(fleet, make_policy())
        everything, _ = _all(lists, TokenFilter(EVERY), limit=1000)
        owner = everything[0].owner
        mine, _ = _all(lists, TokenFilter(EVERY, owner=owner), limit=1000)
        assert {t.id for t in mine} == {t.id for t in everything if t.owner == owner}
        labelled, _ = _all(
            lists, TokenFilter(EVERY, labels=(("team", "team-3"), ("env", "dev"))), limit=1000
        )
        assert labelled
        assert {t.id for t in labelled} == {
            t.id for t in everything if t.labels == {"team": "team-3", "env": "dev"}
        }
        start, end = NOW + timedelta(days=3), NOW + timedelta(days=4)
        day, _ = _all(lists, TokenFilter(EVERY, expires_after=start, expires_before=end))
        assert {t.id for t in day} == {
            t.id for t in everything if t.expires_at is not None and start <= t.expires_at < end
        }
        soon, _ = _all(lists, TokenFilter(EVERY, expiring_within=timedelta(days=10)))
        assert {t.id for t in soon} == {
            t.id
            for t in everything
            if t.expires_at is not None and NOW < t.expires_at <= NOW + timedelta(days=10)
        }
        assert _all(lists, TokenFilter(EVERY, source="vault"))[0] == []
        assert len(_all(lists, TokenFilter(EVERY, source="store"), limit=1000)[0]) == 600

    def test_search_by_name_prefix_in_any_case_or_id_prefix(self, database: Database) -> None:
        clock = FixedClock(NOW)
        store = TokenStore(database, clock, make_policy(), prefix="ntf_", pepper=None)
        deploy = store.create(name="Deploy-Prod", expires_at=NOW + timedelta(days=3))
        store.create(name="ci-deploy", expires_at=NOW + timedelta(days=3))
        other = store.create(name="backup", expires_at=NOW + timedelta(days=3))

        def found(text: str) -> set[str]:
            return {t.id for t in store.page(TokenFilter(search=text))[0]}

        assert found("deploy") == {deploy.id}
        assert found("DEPLOY-p") == {deploy.id}
        assert found(other.id[:5]) >= {other.id}
        assert found("zzz") == set()
        assert found("%") == set()  # no wildcard: a LIKE would have matched everything

    @pytest.mark.parametrize("sort", ["expires_at", "-name", "created_at"])
    def test_a_broad_search_finds_what_a_narrow_one_does(self, fleet: Database, sort: str) -> None:
        """Past the broad mark a search walks the sort's index: the same tokens, same order."""
        narrow = TokenLists(fleet, make_policy())
        broad = TokenLists(fleet, make_policy(), broad_search=5)
        for text in ["ci", "DEPLOY-", "a"]:
            wanted = TokenFilter(EVERY, search=text)
            expected, _ = _all(narrow, wanted, sort=sort, limit=1000)
            assert len(expected) > 5
            assert _all(broad, wanted, sort=sort, limit=9)[0] == expected
            assert all(t.name.lower().startswith(text.lower()) or t.id.startswith(text)
                       for t in expected)  # fmt: skip

    def test_parsing_what_callers_give(self) -> None:
        assert label_filters(["a=b", "c=d=e"]) == (("a", "b"), ("c", "d=e"))
        with pytest.raises(ValueError, match="not key=value"):
            label_filters(["nokey"])
        with pytest.raises(ValueError, match="not key=value"):
            label_filters(["=v"])
        assert statuses_of(["active", "revoked"]) == {"active", "revoked"}
        with pytest.raises(ValueError, match="'gone' is not one of"):
            statuses_of(["gone"])


class TestSummary:
    def test_counts_are_the_lists_counts(self, fleet: Database) -> None:
        policy = make_policy()
        lists = TokenLists(fleet, policy)
        everything, _ = _all(lists, TokenFilter(EVERY), limit=1000)
        summary = lists.summary(TokenFilter(), now=NOW)
        for status in STATUSES:
            assert summary["by_status"][status] == sum(t.status == status for t in everything)
        assert summary["total"] == 600
        days = summary["days"]
        assert len(days) == 30 + 1 + 90
        assert days[30]["date"] == "2026-12-02"
        for entry in days:
            expected = sum(
                t.status != "revoked"
                and t.superseded_by is None  # rotated: its successor is what expires
                and t.expires_at is not None
                and t.expires_at.date().isoformat() == entry["date"]
                for t in everything
            )
            assert entry["expiring"] == expected, entry

    def test_filters_narrow_the_counts(self, fleet: Database) -> None:
        lists = TokenLists(fleet, make_policy())
        owner = _all(lists, TokenFilter(EVERY), limit=1000)[0][0].owner
        mine = _all(lists, TokenFilter(EVERY, owner=owner), limit=1000)[0]
        assert lists.summary(TokenFilter(owner=owner), now=NOW)["total"] == len(mine)


def test_fill_tokens_makes_the_fleet_it_describes(database: Database) -> None:
    """One in fifty never expires, one in a hundred is revoked, one in two hundred rotated."""
    fill_tokens(database, 1000, now=NOW, seed=9)
    lists = TokenLists(database, make_policy())
    tokens = list(lists.stream(TokenFilter(EVERY), now=NOW))
    assert len({t.id for t in tokens}) == len({t.name for t in tokens}) == 1000
    assert sum(t.expires_at is None for t in tokens) == 20
    assert sum(t.status == "revoked" for t in tokens) == 10
    assert sum(t.superseded_by is not None for t in tokens) == 5
