"""The API's lists at scale: keyset pages behind Link headers, filters, search, counts.

Against the real app and a real database (SQLite; each backend where the test is about the
query), with a fleet made by notifier.testing.fill_tokens.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from notifier.testing import fill_tokens
from tests.integration.test_web_api import assert_error
from tests.web_tier import ApiClient, Web

V1 = "/api/v1"
_LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


def next_url(response: httpx.Response) -> str | None:
    """The next page's URL from the RFC 8288 Link header, or None on the last page."""
    link = response.headers.get("link")
    if link is None:
        return None
    match = _LINK.match(link)
    assert match, link
    return match["url"]


def every_page(client: ApiClient, url: str) -> tuple[list[dict], list[int]]:  # type: ignore[type-arg]
    """Follow the Link headers from *url*: every item, and each page's size."""
    items: list[dict] = []  # type: ignore[type-arg]
    sizes: list[int] = []
    current: str | None = url
    while current is not None:
        response = client.get(current)
        assert response.status_code == 200, response.text
        page = response.json()
        assert isinstance(page, list)
        items.extend(page)
        sizes.append(len(page))
        current = next_url(response)
    return items, sizes


@pytest.fixture
def fleet(web: Web) -> ApiClient:
    """An admin client over 450 made-up tokens (and the admin's own)."""
    fill_tokens(web.parts.database, 450, now=web.clock.now(), seed=5, owners=4)
    return web.admin()


class TestPages:
    def test_default_page_is_100_and_the_links_reach_every_token_once(
        self, fleet: ApiClient
    ) -> None:
        first = fleet.get(f"{V1}/tokens?status=active&status=expiring&status=expired")
        assert len(first.json()) == 100
        url = next_url(first)
        assert url is not None
        assert url.startswith(f"{V1}/tokens?")
        assert parse_qs(urlsplit(url).query)["status"] == ["active", "expiring", "expired"]
        items, sizes = every_page(fleet, f"{V1}/tokens?all=true&limit=64")
        assert len(items) == 451
        assert len({item["id"] for item in items}) == 451
        assert sizes[:-1] == [64] * (len(sizes) - 1)
        expiries = [item["expires_at"] for item in items if item["expires_at"] is not None]
        assert expiries == sorted(expiries)
        assert all(item["expires_at"] is None for item in items[len(expiries) :])

    @pytest.mark.parametrize("sort", ["name", "-name", "created_at", "-created_at", "-expires_at"])
    def test_each_sort_pages_in_its_order(self, fleet: ApiClient, sort: str) -> None:
        items, _ = every_page(fleet, f"{V1}/tokens?all=true&limit=100&sort={sort}")
        assert len(items) == 451
        column = sort.removeprefix("-")
        keys = [(item[column] is None, item[column] or "", item["id"]) for item in items]
        if sort.startswith("-"):  # descending, "never" is the latest expiry: first
            assert keys == sorted(keys, reverse=True)
        else:
            assert keys == sorted(keys)

    def test_the_last_page_has_no_link(self, fleet: ApiClient) -> None:
        response = fleet.get(f"{V1}/tokens?all=true&limit=1000")
        assert len(response.json()) == 451
        assert "link" not in response.headers

    @pytest.mark.parametrize("limit", ["0", "1001", "-1", "ten"])
    def test_a_limit_out_of_range_is_422(self, fleet: ApiClient, limit: str) -> None:
        assert_error(fleet.get(f"{V1}/tokens?limit={limit}"), 422, "invalid_request", "limit")

    def test_a_cursor_from_another_list_is_400(self, fleet: ApiClient) -> None:
        url = next_url(fleet.get(f"{V1}/tokens?limit=5"))
        assert url is not None
        cursor = parse_qs(urlsplit(url).query)["cursor"][0]
        for other in [f"owner=x&cursor={cursor}", f"sort=name&cursor={cursor}"]:
            body = assert_error(
                fleet.get(f"{V1}/tokens?limit=5&{other}"), 400, "invalid_cursor", "cursor"
            )
            assert "another sort or other filters" in body["message"]
        assert_error(fleet.get(f"{V1}/tokens?cursor=garbage"), 400, "invalid_cursor", "cursor")
        assert_error(
            fleet.get(f"{V1}/notifications?cursor={cursor}"), 400, "invalid_cursor", "cursor"
        )


class TestFilters:
    def test_status_owner_label_and_search(self, fleet: ApiClient) -> None:
        everything, _ = every_page(fleet, f"{V1}/tokens?all=true&limit=1000")
        for status in ["active", "expiring", "expired", "revoked", "superseded"]:
            chosen, _ = every_page(fleet, f"{V1}/tokens?status={status}&limit=1000")
            assert {t["id"] for t in chosen} == {
                t["id"] for t in everything if t["status"] == status
            }
        owner = "owner-2@example.com"
        mine, _ = every_page(fleet, f"{V1}/tokens?all=true&owner={owner}&limit=1000")
        assert mine
        assert {t["id"] for t in mine} == {t["id"] for t in everything if t["owner"] == owner}
        labelled, _ = every_page(
            fleet, f"{V1}/tokens?all=true&label=team=team-7&label=env=dev&limit=1000"
        )
        assert labelled
        assert all(t["labels"] == {"team": "team-7", "env": "dev"} for t in labelled)
        target = everything[17]
        found = fleet.get(f"{V1}/tokens?all=true&q={target['name'].upper()}").json()
        assert [t["id"] for t in found] == [target["id"]]
        by_id = fleet.get(f"{V1}/tokens?all=true&q={target['id'][:8]}").json()
        assert target["id"] in {t["id"] for t in by_id}
        assert fleet.get(f"{V1}/tokens?source=vault").json() == []

    def test_times_and_windows(self, fleet: ApiClient, web: Web) -> None:
        now = web.clock.now()
        after, before = now + timedelta(days=2), now + timedelta(days=12)
        query = f"expires_after={after.isoformat()}&expires_before={before.isoformat()}"
        day, _ = every_page(fleet, f"{V1}/tokens?all=true&{query}".replace("+", "%2B"))
        assert day
        assert all(after <= datetime.fromisoformat(t["expires_at"]) < before for t in day)
        soon, _ = every_page(fleet, f"{V1}/tokens?expiring_within=3d&limit=1000")
        expiring, _ = every_page(fleet, f"{V1}/tokens/expiring?within=3d&limit=7")
        assert [t["id"] for t in soon] == [t["id"] for t in expiring]

    @pytest.mark.parametrize(
        ("query", "field"),
        [
            ("status=gone", "status"),
            ("label=nokey", "label"),
            ("label=k=" + "v" * 600, "label"),
            ("&".join(["label=a=b"] * 21), "label"),
            ("sort=owner", "sort"),
            ("expiring_within=soon", "expiring_within"),
            ("expires_after=2026-01-01T00:00:00", "expires_after"),  # no zone
            ("expires_after=2", "expires_after"),  # not a Unix time either
            ("expires_before=2026-13-01T00:00:00Z", "expires_before"),  # no such month
            ("q=", "q"),
            ("status=active&all=true", "status"),
        ],
    )
    def test_bad_filters_are_422_naming_them(
        self, fleet: ApiClient, query: str, field: str
    ) -> None:
        assert_error(fleet.get(f"{V1}/tokens?{query}"), 422, "invalid_request", field)


class TestSummary:
    def test_counts_by_status_and_day(self, fleet: ApiClient, web: Web) -> None:
        everything, _ = every_page(fleet, f"{V1}/tokens?all=true&limit=1000")
        summary = fleet.get(f"{V1}/tokens/summary").json()
        assert summary["total"] == 451
        for status, count in summary["by_status"].items():
            assert count == sum(t["status"] == status for t in everything)
        days = summary["days"]
        assert len(days) == 121
        today = web.clock.now().date().isoformat()
        assert days[30]["date"] == today
        assert sum(d["expiring"] for d in days) == sum(
            t["status"] != "revoked"
            and t["superseded_by"] is None
            and t["expires_at"] is not None
            and days[0]["date"] <= t["expires_at"][:10] <= days[-1]["date"]
            for t in everything
        )
        narrowed = fleet.get(f"{V1}/tokens/summary?owner=owner-1@example.com").json()
        assert 0 < narrowed["total"] < 451
        assert_error(
            fleet.get(f"{V1}/tokens/summary?status=active"), 422, "invalid_request", "status"
        )


class TestOtherLists:
    def test_audit_pages_newest_first_and_filters(self, web: Web) -> None:
        client = web.admin()
        made = [web.token("tokens:read", name=f"t{n}") for n in range(12)]
        client.delete(f"{V1}/tokens/{made[3].id}")
        events, sizes = every_page(client, f"{V1}/audit?limit=5")
        assert len(events) == 14  # 13 creations (the admin's too), a revocation
        assert sizes == [5, 5, 4]
        assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)
        assert events[0]["action"] == "revoke"
        one = client.get(f"{V1}/audit?token_id={made[3].id}").json()
        assert [e["action"] for e in one] == ["revoke", "create"]
        assert [e["token_id"] for e in client.get(f"{V1}/audit?action=revoke").json()] == [
            made[3].id
        ]
        reader = web.client(web.token("notifications:read"))
        assert_error(reader.get(f"{V1}/audit"), 403, "forbidden")

    def test_notifications_and_deliveries_page(self, web: Web) -> None:
        # Expiries from 60 days ago to 6 days ahead: most in the window or just expired.
        fill_tokens(web.parts.database, 600, now=web.clock.now(), seed=2, horizon=timedelta(days=6))
        web.parts.checker.run()
        client = web.client(web.token("notifications:read"))
        notifications, _ = every_page(client, f"{V1}/notifications?limit=50")
        assert len(notifications) > 50
        assert len({n["id"] for n in notifications}) == len(notifications)
        deliveries, _ = every_page(client, f"{V1}/deliveries?limit=50")
        assert len(deliveries) > 50
        keys = [(d["source"], d["token_id"], d["sink"]) for d in deliveries]
        assert keys == sorted(keys)
        assert len(set(keys)) == len(keys)
        assert client.get(f"{V1}/deliveries?failed=true").json() == []
        assert_error(web.client(web.token("tokens:read")).get(f"{V1}/deliveries"), 403, "forbidden")
