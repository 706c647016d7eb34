"""The page in a real headless Chromium, from signing in to paging through what it lists.

Sign in, the banner, acknowledge, create, revoke, live updates; paging, search, filters, sort,
the counts and the chart, urgency, the warning before revoking the page's own token.

Debian's chromium (apt) driven by Playwright; Playwright's own browser download is not used.
Screenshots go to test-artifacts/web/ for a person to look at.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from notifier.resources import CreatedToken
from notifier.web.stream import StreamOptions
from tests.web_tier import DAY, Served, Web, WebFactory

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAST = StreamOptions(poll=timedelta(milliseconds=250), keepalive=timedelta(seconds=2))

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no /usr/bin/chromium: apt-get install chromium chromium-driver (.ci/run does)",
)

if CHROMIUM.exists():
    from playwright.sync_api import (
        Browser,
        ConsoleMessage,
        Locator,
        Page,
        Request,
        expect,
        sync_playwright,
    )

    # How long an expectation waits for the page before it fails: Playwright's 5 s default
    # was passed once in CI on a loaded machine (a search's rows came later). A wait, not a
    # timing: a page that is right passes as soon as it is.
    expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, launched once for this module."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def site(
    make_web: WebFactory, serve_in_thread: Callable[[Web, StreamOptions | None], Served]
) -> Served:
    """The web tier on the wall clock: a '*' token and a token that expires in 2 days, warned."""
    web = make_web(wall_clock=True)
    web.token(name="ci-deploy", ttl=2 * DAY)
    web.parts.checker.run()
    return serve_in_thread(web, FAST)


@pytest.fixture
def console_errors() -> list[str]:
    """What the tab logged as errors; a test that expects one removes it."""
    return []


@pytest.fixture
def page(browser: Browser, console_errors: list[str]) -> Iterator[Page]:
    """A fresh tab (its own sessionStorage) that fails the test on any console error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors = console_errors

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    tab.on("console", on_console)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert errors == [], errors


@pytest.fixture
def standing(
    make_web: WebFactory, serve_in_thread: Callable[[Web, StreamOptions | None], Served]
) -> Served:
    """The web tier on a clock standing at 2026-01-01T00:00Z; the page follows the server's."""
    return serve_in_thread(make_web(), FAST)


def made(
    web: Web,
    name: str,
    expires_in: timedelta | None,
    *,
    owner: str = "ops@example.com",
    labels: dict[str, str] | None = None,
) -> CreatedToken:
    """A stored token named *name* that expires *expires_in* from the server's now."""
    return web.parts.tokens.create(
        name=name,
        expires_at=None if expires_in is None else web.parts.clock.now() + expires_in,
        owner=owner,
        labels=labels if labels is not None else {"team": "platform"},
    )


def row_ids(page: Page) -> list[str]:
    """The ids of the token rows shown, in order."""
    ids: list[str] = page.locator("#tokens-body tr").evaluate_all(
        "rows => rows.map(row => row.dataset.id)"
    )
    return ids


def row_names(page: Page) -> list[str]:
    """The names in the token rows shown, in order (without the "this session" chip)."""
    names: list[str] = page.locator("#tokens-body tr td:first-child").evaluate_all(
        "cells => cells.map(cell => cell.firstChild.textContent)"
    )
    return names


def settled(page: Page) -> Locator:
    """The token rows, once no page of them is loading."""
    expect(page.locator("#tokens-loading")).to_be_hidden()
    return page.locator("#tokens-body tr")


def only_row(page: Page, token_id: str) -> Locator:
    """The one token row shown, once the table holds just it, which must be *token_id*'s."""
    row = page.locator("#tokens-body tr")
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-id", token_id)
    return row


def call(site: Served, secret: str, method: str, path: str) -> Any:
    """The API over the socket (Playwright's sync API owns this thread's event loop)."""
    response = httpx.request(
        method, site.base + path, headers={"Authorization": f"Bearer {secret}"}, timeout=5
    )
    assert response.status_code == 200, response.text
    return response.json()


def shot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot; *full_page* False keeps to the window (the pinned header on top)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def sign_in(page: Page, base: str, secret: str) -> None:
    """Open the page and sign in with the keyboard alone: focus, type, Enter."""
    page.goto(base + "/")
    expect(page.locator("#token-input")).to_be_focused()
    page.keyboard.type(secret)
    page.keyboard.press("Enter")
    expect(page.locator("#who-name")).to_contain_text("Signed in as admin")


class TestPage:
    def test_the_whole_flow(self, site: Served, page: Page) -> None:
        """Sign in, see the banner, acknowledge it, create a token (secret once), revoke it."""
        web = site.web
        # It creates a 30-day token below, which a token of its own must outlive.
        admin = web.token("*", name="admin", ttl=60 * DAY)
        sign_in(page, site.base, admin.token)
        assert admin.token not in page.url

        banner = page.locator("#banner")
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("1 token needs attention.")
        expect(banner).to_contain_text(
            re.compile(
                r"Most urgent: API Token ci-deploy \(ID \w+\) will expire in less than 2 days"
            )
        )
        expect(page.locator("#notifications li")).to_have_count(1)
        shot(page, "banner")

        page.locator("#banner-ack").focus()
        page.keyboard.press("Enter")
        expect(banner).to_be_hidden()
        expect(page.locator("#notifications-empty")).to_be_visible()
        (notification,) = call(site, admin.token, "GET", "/api/v1/notifications")
        assert notification["acknowledged_at"] is not None

        page.locator("#create summary").click()
        page.locator("#create-name").fill("browser-made")
        page.locator("#create-ttl").fill("30d")
        page.get_by_label("tokens:read", exact=True).check()
        page.locator("#create-owner").fill("web@example.com")
        page.locator("#create-labels").fill("team=web, env=test")
        page.get_by_role("button", name="Create", exact=True).click()
        secret_box = page.locator("#secret-value")
        expect(secret_box).to_have_value(re.compile(r"^ntf_[0-9a-f]{48}$"))
        expect(page.locator("#secret-title")).to_be_focused()
        secret = secret_box.input_value()
        verified = web.parts.tokens.verify(secret)
        assert verified.valid
        assert verified.permissions == ["tokens:read"]
        row = page.locator("#tokens-body tr", has_text="browser-made")
        expect(row).to_contain_text("team=web")
        expect(row).to_contain_text("active")
        shot(page, "secret-once")
        page.get_by_role("button", name="I have stored it").click()
        expect(page.locator("#secret")).to_be_hidden()
        assert secret not in page.content()
        page.reload()  # still signed in (sessionStorage), and the secret is nowhere
        expect(page.locator("#who-name")).to_contain_text("Signed in as admin")
        assert secret not in page.content()

        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name=re.compile(r"^Revoke browser-made")).click()
        expect(page.locator("#tokens-body tr", has_text="browser-made")).to_have_count(0)
        assert web.parts.tokens.get(verified.id or "").status == "revoked"
        shot(page, "after-revoke")

    def test_live_updates_arrive_without_a_reload(self, site: Served, page: Page) -> None:
        """A pass run after sign-in shows its notification and the banner through the stream."""
        web = site.web
        admin = web.token("*", name="admin")
        (warned,) = call(site, admin.token, "GET", "/api/v1/notifications")
        call(site, admin.token, "POST", f"/api/v1/notifications/{warned['id']}/ack")
        sign_in(page, site.base, admin.token)
        expect(page.locator("#live")).to_contain_text("Live")
        expect(page.locator("#banner")).to_be_hidden()
        web.token(name="late-comer", ttl=DAY)
        web.parts.checker.run()
        expect(page.locator("#notifications li", has_text="late-comer")).to_be_visible()
        expect(page.locator("#banner")).to_contain_text("late-comer")

    def test_readable_on_a_phone(self, site: Served, browser: Browser) -> None:
        """At 390 px wide nothing scrolls sideways and the tokens become cards."""
        context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
        page = context.new_page()
        try:
            admin = site.web.token("*", name="admin")
            sign_in(page, site.base, admin.token)
            expect(page.locator("#tokens-body tr")).to_have_count(2)
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0
            assert page.locator("#tokens thead").bounding_box() is not None
            shot(page, "phone")
        finally:
            context.close()

    def test_a_wrong_token_is_refused_on_the_page(
        self, site: Served, page: Page, console_errors: list[str]
    ) -> None:
        """A wrong token shows the server's reason and stores nothing."""
        page.goto(site.base + "/")
        page.locator("#token-input").fill("ntf_" + "0" * 48)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#sign-in-error")).to_contain_text("the token is not valid")
        assert page.evaluate("sessionStorage.length") == 0
        # Chromium reports the 401 itself on the console; that one is expected.
        assert console_errors == [
            "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
        ]
        console_errors.clear()


class TestPagedPage:
    """Server-side paging, search, filters, sort, counts, the chart, urgency, self-revoke."""

    def test_the_tokens_page_forward_and_back_without_overlap(
        self, standing: Served, page: Page
    ) -> None:
        """50 rows a page in expiry order; Next, Next, Previous, Previous come back the same."""
        web = standing.web
        for number in range(120):
            made(web, f"page-{number:03d}", timedelta(days=1, hours=number))
        admin = web.token("*", name="admin", ttl=60 * DAY)
        addresses: list[str] = []
        page.on("request", lambda request: addresses.append(request.url))
        sign_in(page, standing.base, admin.token)
        pager = page.locator("#tokens-pager")
        expect(settled(page)).to_have_count(50)
        first = row_ids(page)
        assert row_names(page) == [f"page-{n:03d}" for n in range(50)]
        expect(pager.get_by_role("button", name="Previous")).to_be_disabled()
        expect(pager).to_contain_text("Page 1")

        pager.get_by_role("button", name="Next").click()
        expect(page.locator("#tokens-body tr").first).to_contain_text("page-050")
        second = row_ids(page)
        assert row_names(page) == [f"page-{n:03d}" for n in range(50, 100)]
        expect(pager).to_contain_text("Page 2")

        pager.get_by_role("button", name="Next").click()
        expect(settled(page)).to_have_count(21)  # page-100 .. page-119, then admin
        third = row_ids(page)
        assert row_names(page)[-1] == "admin"
        expect(pager.get_by_role("button", name="Next")).to_be_disabled()
        assert len({*first, *second, *third}) == 121

        pager.get_by_role("button", name="Previous").click()
        expect(page.locator("#tokens-body tr").first).to_contain_text("page-050")
        assert row_ids(page) == second
        pager.get_by_role("button", name="Previous").click()
        expect(page.locator("#tokens-body tr").first).to_contain_text("page-000")
        assert row_ids(page) == first
        assert admin.token not in page.url
        assert len(addresses) > 5
        assert not [url for url in addresses if admin.token in url]  # the secret: headers only

    def test_search_waits_for_three_characters_and_for_the_typing_to_stop(
        self, standing: Served, page: Page
    ) -> None:
        """Two characters send nothing; typing on sends one search, by name or by id prefix."""
        web = standing.web
        wanted = [made(web, name, timedelta(days=20)) for name in ("Alpha-DB-1", "alpha-db-2")]
        other = made(web, "beta-web", timedelta(days=20))
        admin = web.token("*", name="admin", ttl=60 * DAY)
        searches: list[str] = []

        def seen(request: Request) -> None:
            if "/api/v1/tokens?" in request.url and "q=" in request.url:
                searches.append(request.url)

        page.on("request", seen)
        sign_in(page, standing.base, admin.token)
        expect(settled(page)).to_have_count(4)
        box = page.locator("#filter-q")
        box.focus()
        page.keyboard.type("al")
        expect(page.locator("#filter-q-hint")).to_have_class(re.compile(r"\bwarn\b"))
        page.keyboard.type("pha-d")
        expect(settled(page)).to_have_count(2)
        assert sorted(row_ids(page)) == sorted(t.id for t in wanted)
        assert len(searches) == 1, searches  # the keystrokes came faster than the delay
        assert "q=alpha-d" in searches[0]
        expect(page.locator("#filter-q-hint")).not_to_have_class(re.compile(r"\bwarn\b"))

        box.fill(other.id[:6])
        only_row(page, other.id)

    def test_filters_by_owner_label_source_and_status_revoked_or_superseded(
        self, standing: Served, page: Page
    ) -> None:
        """Each filter narrows the rows; revoked and superseded are reached through status."""
        web = standing.web
        database = made(
            web,
            "db",
            timedelta(days=20),
            owner="dba@example.com",
            labels={"team": "db", "env": "prod"},
        )
        website = made(web, "web", timedelta(days=20), labels={"team": "web", "env": "prod"})
        revoked = made(web, "gone", timedelta(days=20))
        web.parts.tokens.revoke(revoked.id)
        rotated = made(web, "rolling", timedelta(days=20))
        successor = web.parts.tokens.rotate(rotated.id, grace=timedelta(days=3))
        admin = web.token("*", name="admin", ttl=60 * DAY)
        sign_in(page, standing.base, admin.token)
        every = {database.id, website.id, rotated.id, successor.id, admin.id}
        expect(settled(page)).to_have_count(5)  # all but the revoked one
        assert set(row_ids(page)) == every

        page.locator("#filter-owner").fill("dba@example.com")
        page.locator("#filter-owner").press("Enter")
        expect(settled(page)).to_have_count(1)
        assert row_ids(page) == [database.id]
        page.locator("#filter-owner").fill("")
        page.locator("#filter-label").fill("team=web, env=prod")
        page.locator("#filter-label").press("Enter")
        only_row(page, website.id)
        page.locator("#filter-label").fill("")
        page.locator("#filter-source").select_option("store")
        expect(settled(page)).to_have_count(5)

        page.get_by_role("checkbox", name="revoked", exact=True).check()
        expect(only_row(page, revoked.id)).to_contain_text("revoked")
        page.get_by_role("checkbox", name="revoked", exact=True).uncheck()
        page.get_by_role("checkbox", name="superseded", exact=True).check()
        expect(only_row(page, rotated.id)).to_contain_text("superseded")
        page.get_by_role("checkbox", name="revoked", exact=True).check()
        expect(settled(page)).to_have_count(2)
        shot(page, "filtered", full_page=False)

        page.get_by_role("button", name="Clear filters").click()
        expect(settled(page)).to_have_count(5)

    def test_columns_sort_by_name_expiry_and_creation_both_ways(
        self, standing: Served, page: Page
    ) -> None:
        """A column's header sorts by it, a second press reverses; aria-sort says which."""
        web = standing.web
        names = ["kilo", "alpha", "mike", "delta"]
        for index, name in enumerate(names):
            made(web, name, timedelta(days=10 - index))
            web.clock.advance(timedelta(minutes=1))
        admin = web.token("*", name="admin", ttl=60 * DAY)
        sign_in(page, standing.base, admin.token)
        expect(settled(page)).to_have_count(5)
        assert row_names(page) == ["delta", "mike", "alpha", "kilo", "admin"]  # expiry
        header = page.locator("#tokens th[data-sort=name]")
        expect(page.locator("#tokens th[data-sort=expires_at]")).to_have_attribute(
            "aria-sort", "ascending"
        )

        header.get_by_role("button").click()
        expect(header).to_have_attribute("aria-sort", "ascending")
        expect(page.locator("#tokens-body tr").first).to_contain_text("admin")
        assert row_names(page) == ["admin", "alpha", "delta", "kilo", "mike"]
        header.get_by_role("button").click()
        expect(header).to_have_attribute("aria-sort", "descending")
        expect(page.locator("#tokens-body tr").first).to_contain_text("mike")
        assert row_names(page) == ["mike", "kilo", "delta", "alpha", "admin"]
        assert page.locator("#tokens th[data-sort=expires_at]").get_attribute("aria-sort") is None

        created = page.locator("#tokens th[data-sort=created_at]")
        created.get_by_role("button").click()
        expect(page.locator("#tokens-body tr").first).to_contain_text("kilo")
        assert row_names(page) == [*names, "admin"]
        created.get_by_role("button").click()
        expect(page.locator("#tokens-body tr").first).to_contain_text("admin")
        expect(created).to_have_attribute("aria-sort", "descending")

    def test_the_counts_and_a_bar_of_the_chart_filter_the_table(
        self, standing: Served, page: Page
    ) -> None:
        """Counts by status; a future day's bar lists its tokens, a past day's its expired."""
        web = standing.web
        gone = [made(web, f"gone-{n}", timedelta(hours=2 + n)) for n in range(2)]
        web.clock.advance(timedelta(hours=26))  # now 2026-01-02T02:00Z; gone-* expired Jan 1
        third = [made(web, f"day3-{n}", timedelta(days=3, hours=n)) for n in range(3)]
        made(web, "later", timedelta(days=40))
        made(web, "no-end", None)
        web.parts.tokens.revoke(made(web, "revoked", timedelta(days=3)).id)
        admin = web.token("*", name="admin", ttl=60 * DAY)
        sign_in(page, standing.base, admin.token)
        counts = page.locator("#counts")
        expect(counts.locator("[data-status=expired] .count-number")).to_have_text("2")
        expect(counts.locator("[data-status=revoked] .count-number")).to_have_text("1")
        expect(counts.locator("[data-status=expiring] .count-number")).to_have_text("3")
        expect(counts.locator(".total .count-number")).to_have_text("9")

        bar = page.locator("#chart-svg g.day[data-date='2026-01-05']")
        expect(bar).to_have_attribute("data-count", "3")
        expect(bar).to_have_attribute("aria-label", "2026-01-05: 3 tokens expiring")
        expect(page.locator("#chart-svg g.day[data-date='2026-01-01']")).to_have_class(
            re.compile(r"\bpast\b")
        )
        shot(page, "chart")
        bar.click()
        expect(page.locator("#filter-day")).to_contain_text("Expiring on 2026-01-05 (UTC)")
        expect(bar).to_have_attribute("aria-pressed", "true")
        expect(settled(page)).to_have_count(3)
        assert sorted(row_ids(page)) == sorted(t.id for t in third)
        expect(page.get_by_role("checkbox", name="expiring", exact=True)).to_be_checked()
        expect(page.get_by_role("checkbox", name="expired", exact=True)).not_to_be_checked()
        shot(page, "chart-day", full_page=False)

        # One Tab stop for the chart (the chosen bar); the arrows move to the other days.
        expect(page.locator("#chart-svg g.day[tabindex='0']")).to_have_count(1)
        expect(bar).to_have_attribute("tabindex", "0")
        past = page.locator("#chart-svg g.day[data-date='2026-01-01']")
        bar.focus()
        page.keyboard.press("ArrowLeft")
        expect(past).to_be_focused()
        page.keyboard.press("Enter")  # a bar works from the keyboard too
        expect(page.locator("#filter-day")).to_contain_text("2026-01-01")
        expect(settled(page)).to_have_count(2)
        assert sorted(row_ids(page)) == sorted(t.id for t in gone)
        expect(page.get_by_role("checkbox", name="expired", exact=True)).to_be_checked()

        page.get_by_role("button", name="Any expiry").click()
        expect(page.locator("#filter-day")).to_be_hidden()
        expect(settled(page)).to_have_count(8)  # every status but revoked

        counts.locator("[data-status=expired]").click()
        expect(counts.locator("[data-status=expired]")).to_have_attribute("aria-pressed", "true")
        expect(settled(page)).to_have_count(2)

    def test_urgency_reads_under_a_day_under_a_week_or_later(
        self, standing: Served, page: Page
    ) -> None:
        """Each token's urgency is written out, beside its colour, on the server's clock."""
        web = standing.web
        hours = made(web, "in-hours", timedelta(hours=6))
        days = made(web, "in-days", timedelta(days=3))
        weeks = made(web, "in-weeks", timedelta(days=20))
        admin = web.token("*", name="admin", ttl=60 * DAY)
        sign_in(page, standing.base, admin.token)
        for token, words, level in (
            (hours, "under a day", "day"),
            (days, "under a week", "week"),
            (weeks, "later", "later"),
        ):
            badge = page.locator(f"#tokens-body tr[data-id='{token.id}'] .urgency")
            expect(badge).to_have_text(words)
            expect(badge).to_have_class(re.compile(rf"\burgency-{level}\b"))

    def test_urgency_moves_with_time_without_a_reload(self, standing: Served, page: Page) -> None:
        """A token 1 day and 1 minute away reads "under a day" once two minutes have passed."""
        web = standing.web
        near = made(web, "near", DAY + timedelta(minutes=1))
        admin = web.token("*", name="admin", ttl=60 * DAY)
        page.clock.install()  # the page's timers and Date, moved by the test
        sign_in(page, standing.base, admin.token)
        badge = page.locator(f"#tokens-body tr[data-id='{near.id}'] .urgency")
        expect(badge).to_have_text("under a week")
        page.clock.fast_forward("02:00")
        expect(badge).to_have_text("under a day")

    def test_revoking_the_signed_in_token_warns_first(self, standing: Served, page: Page) -> None:
        """The page's own token gets a warning in the page; keeping it revokes nothing."""
        web = standing.web
        admin = web.token("*", name="admin", ttl=60 * DAY)
        other = made(web, "other", timedelta(days=20))
        native: list[str] = []
        page.on("dialog", lambda dialog: native.append(dialog.message))
        sign_in(page, standing.base, admin.token)
        mine = page.locator(f"#tokens-body tr[data-id='{admin.id}']")
        expect(mine).to_contain_text("this session")
        expect(page.locator(f"#tokens-body tr[data-id='{other.id}']")).not_to_contain_text(
            "this session"
        )
        mine.get_by_role("button", name=re.compile("the token this page is signed in with")).click()
        warning = page.locator("#self-revoke")
        expect(warning).to_be_visible()
        expect(warning).to_contain_text(f"admin ({admin.id}) is the token this page is signed in")
        expect(page.locator("#self-revoke-cancel")).to_be_focused()
        shot(page, "self-revoke", full_page=False)
        page.keyboard.press("Escape")
        expect(warning).to_be_hidden()
        assert web.parts.tokens.get(admin.id).status == "active"

        mine.get_by_role("button", name=re.compile("^Revoke admin")).click()
        page.get_by_role("button", name="Revoke and sign out").click()
        expect(page.locator("#sign-in")).to_be_visible()
        expect(page.locator("#sign-in-error")).to_contain_text("you revoked the token")
        assert web.parts.tokens.get(admin.id).status == "revoked"
        assert page.evaluate("sessionStorage.length") == 0
        assert native == []  # no browser confirm on top of the page's own warning

    def test_notifications_and_the_audit_trail_are_paged(
        self, standing: Served, page: Page
    ) -> None:
        """Ten notifications a page and fifty audit events a page, each with Next and back."""
        web = standing.web
        for number in range(15):
            made(web, f"soon-{number:02d}", timedelta(days=1, hours=number))
        for number in range(40):
            made(web, f"quiet-{number:02d}", timedelta(days=30))
        web.parts.checker.run()
        admin = web.token("*", name="admin", ttl=60 * DAY)
        sign_in(page, standing.base, admin.token)
        expect(page.locator("#banner")).to_contain_text("15 tokens need attention.")
        notes = page.locator("#notifications li")
        expect(notes).to_have_count(10)
        expect(notes.first).to_contain_text("soon-00")
        first = notes.evaluate_all("items => items.map(item => item.dataset.id)")
        page.locator("#notifications-pager").get_by_role("button", name="Next").click()
        expect(notes).to_have_count(5)
        expect(notes.first).to_contain_text("soon-10")
        rest = notes.evaluate_all("items => items.map(item => item.dataset.id)")
        assert not set(first) & set(rest)

        page.locator("#audit summary").click()
        events = page.locator("#audit-body tr")
        expect(events).to_have_count(50)
        expect(events.first).to_contain_text("admin")  # newest first: the admin was made last
        expect(events.first).to_contain_text("create")
        page.locator("#audit-pager").get_by_role("button", name="Next").click()
        expect(events).to_have_count(6)  # 15 + 40 + the admin
        expect(events.last).to_contain_text("soon-00")

    def test_the_stream_refreshes_the_visible_page_only(self, site: Served, page: Page) -> None:
        """A notice after sign-in brings its token into the page; unchanged rows stay put."""
        web = site.web
        admin = web.token("*", name="admin", ttl=60 * DAY)
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        sign_in(page, site.base, admin.token)
        expect(page.locator("#live")).to_contain_text("Live")
        expect(settled(page)).to_have_count(2)
        page.locator(f"#tokens-body tr[data-id='{admin.id}']").evaluate("row => { row.kept = 1 }")
        expiring = page.locator("#counts [data-status=expiring] .count-number")
        expect(expiring).to_have_text("1")
        requests.clear()

        late = web.token(name="late-comer", ttl=DAY)
        web.parts.checker.run()
        expect(page.locator(f"#tokens-body tr[data-id='{late.id}']")).to_be_visible()
        expect(expiring).to_have_text("2")
        kept = page.locator(f"#tokens-body tr[data-id='{admin.id}']").evaluate("row => row.kept")
        assert kept == 1  # the same element: not drawn again
        assert not [url for url in requests if "/auth/whoami" in url]
        assert all("cursor=" not in url for url in requests if "/api/v1/tokens?" in url)

    def test_markup_in_a_name_is_shown_as_text(self, standing: Served, page: Page) -> None:
        """A name and a label that look like HTML appear as typed, nowhere as elements."""
        web = standing.web
        name = '<img src=x onerror="window.hacked=1">'
        made(web, name, timedelta(hours=5), labels={"team": "<b>bold</b>"})
        web.parts.checker.run()
        admin = web.token("*", name="admin", ttl=60 * DAY)
        sign_in(page, standing.base, admin.token)
        expect(page.locator("#tokens-body")).to_contain_text(name)
        expect(page.locator("#tokens-body")).to_contain_text("team=<b>bold</b>")
        expect(page.locator("#banner")).to_contain_text(name)
        expect(page.locator("#notifications")).to_contain_text(name)
        page.locator("#audit summary").click()
        expect(page.locator("#audit-body")).to_contain_text(name)
        assert page.locator("main img, #banner img, main b").count() == 0
        assert page.evaluate("window.hacked") is None

    def test_a_refused_filter_is_said_not_shown_as_an_empty_table(
        self, standing: Served, page: Page, console_errors: list[str]
    ) -> None:
        """The server's 422 (more labels than it takes) reaches the page, in words."""
        web = standing.web
        admin = web.token("*", name="admin", ttl=60 * DAY)
        sign_in(page, standing.base, admin.token)
        expect(settled(page)).to_have_count(1)
        page.locator("#filter-label").fill(", ".join(f"k{n}=v" for n in range(501)))
        page.locator("#filter-label").press("Enter")
        expect(page.locator("#tokens-error")).to_contain_text("Could not load the tokens:")
        expect(page.locator("#summary-error")).to_contain_text("Could not load the counts:")
        expect(page.locator("#tokens-loading")).to_be_hidden()
        # Chromium reports each refused request on the console itself; those are expected.
        refused = "Failed to load resource: the server responded with a status of 422"
        assert console_errors
        assert all(error.startswith(refused) for error in console_errors), console_errors
        console_errors.clear()

        page.get_by_role("button", name="Clear filters").click()
        expect(page.locator("#tokens-error")).to_be_empty()
        expect(settled(page)).to_have_count(1)

    @pytest.mark.parametrize(
        ("width", "height", "header_stays"),
        [
            (1280, 600, True),  # a desktop window: the header and the banner stay
            (390, 844, False),  # a phone: only the banner; the header scrolls away
        ],
    )
    def test_the_banner_stays_in_view_while_scrolling(
        self, site: Served, browser: Browser, width: int, height: int, header_stays: bool
    ) -> None:
        """Scrolled to the bottom of the page, the banner is still on screen."""
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        try:
            admin = site.web.token("*", name="admin")
            sign_in(page, site.base, admin.token)
            expect(page.locator("#banner")).to_be_visible()
            page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            page.wait_for_function("window.scrollY > 200")
            banner = page.locator("#banner").bounding_box()
            header = page.locator("header.top").bounding_box()
            assert banner is not None
            assert header is not None
            assert banner["y"] >= 0
            assert banner["y"] + banner["height"] <= height
            assert (header["y"] >= 0) is header_stays, header
        finally:
            context.close()


class TestCredentials:
    def test_every_watched_credential_is_listed_and_filtered(
        self,
        make_web: WebFactory,
        serve_in_thread: Callable[[Web, StreamOptions | None], Served],
        page: Page,
        tmp_path: Path,
    ) -> None:
        """The section lists the store's tokens and the certificates a pass found, by kind."""
        from tests.certificates import Chain  # noqa: PLC0415 - trustme, for this test only

        chain = Chain()
        folder = tmp_path / "certs"
        folder.mkdir()
        web = make_web(NOTIFIER_SOURCES="store,x509", NOTIFIER_X509_PATHS=str(folder))
        now = web.clock.now()
        for name, days in (("edge.example.com", 2.5), ("api.example.com", 50)):
            leaf = chain.leaf(name, not_before=now - DAY, not_after=now + days * DAY)
            (folder / f"{name}.pem").write_bytes(chain.bundle(leaf, with_root=False))
        made(web, "deploy", timedelta(days=10))
        web.parts.checker.run()
        site = serve_in_thread(web, FAST)
        admin = web.token("*", name="admin", ttl=60 * DAY)
        sign_in(page, site.base, admin.token)
        page.locator("#credentials summary").click()
        rows = page.locator("#credentials-body tr")
        expect(rows.first).to_contain_text("edge.example.com")  # soonest first
        expect(rows.first).to_contain_text("certificate")
        expect(rows.first).to_have_class(re.compile("urgent-week"))
        expect(page.locator("#credentials-body")).to_contain_text("deploy")
        expect(page.locator("#credentials-body")).to_contain_text("live")
        page.locator("#credentials-kind").select_option("certificate")
        expect(page.locator("#credentials-body")).not_to_contain_text("deploy")
        expect(page.locator("#credentials-body")).to_contain_text("api.example.com")
        page.locator("#credentials-q").fill("API")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("api.example.com")
        shot(page, "credentials")
