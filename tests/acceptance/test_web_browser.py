"""The page in a real headless Chromium: sign in, the banner, acknowledge, create, revoke, live.

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
    from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright


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


def call(site: Served, secret: str, method: str, path: str) -> Any:
    """The API over the socket (Playwright's sync API owns this thread's event loop)."""
    response = httpx.request(
        method, site.base + path, headers={"Authorization": f"Bearer {secret}"}, timeout=5
    )
    assert response.status_code == 200, response.text
    return response.json()


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
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
