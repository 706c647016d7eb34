"""The page over 1,000,000 tokens in headless Chromium: first rows, Next, a search.

The fleet is bulk-inserted by :func:`notifier.testing.fill_tokens` (about half a minute); the
page, the API and the database are the real ones, on the SQLite file the web tier uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from notifier.testing import fill_tokens
from notifier.web.stream import StreamOptions
from tests.acceptance import test_web_browser as in_browser
from tests.web_tier import DAY, Served, Web, WebFactory

# The browser, the tab and its console check are the ones of the other browser tests.
browser = in_browser.browser
console_errors = in_browser.console_errors
page = in_browser.page

FLEET = 1_000_000
# How long the test waits for rows. The goal (first rows within 5 s of signing in) is
# measured by bench/interfaces.py, not asserted here: a shared machine's noise must not fail
# a run. What this run took is printed (pytest -s).
WAIT_MS = 30_000

pytestmark = [in_browser.pytestmark, pytest.mark.scale]

if in_browser.CHROMIUM.exists():
    from playwright.sync_api import Page, expect


def test_a_million_tokens_page_and_search(
    make_web: WebFactory,
    serve_in_thread: Callable[[Web, StreamOptions | None], Served],
    page: Page,
) -> None:
    """Rows after signing in, a next page with none of the first, a search that finds."""
    web = make_web(wall_clock=True)
    now = web.parts.clock.now()
    fill_tokens(web.parts.database, FLEET, now=now)
    needle = web.parts.tokens.create(
        name="needle-in-the-fleet", expires_at=now + 30 * DAY, owner="ops@example.com"
    )
    admin = web.token("*", name="admin", ttl=60 * DAY)
    site = serve_in_thread(web, in_browser.FAST)

    page.set_viewport_size({"width": 1280, "height": 1400})  # the screenshot shows rows too
    page.goto(site.base + "/")
    page.locator("#token-input").fill(admin.token)
    started = time.monotonic()
    page.keyboard.press("Enter")
    rows = page.locator("#tokens-body tr")
    expect(rows).to_have_count(50, timeout=WAIT_MS)
    first_rows_s = time.monotonic() - started
    first = in_browser.row_ids(page)
    expect(page.locator("#counts .total .count-number")).to_have_text(f"{FLEET + 2:,}")
    expect(page.locator("#chart-svg g.day").first).to_be_visible()
    in_browser.shot(page, "million", full_page=False)
    page.locator("#summary-section").screenshot(
        path=str(in_browser.ARTIFACTS / "million-chart.png")
    )

    pager = page.locator("#tokens-pager")
    started = time.monotonic()
    pager.get_by_role("button", name="Next").click()
    expect(pager).to_contain_text("Page 2")
    expect(in_browser.settled(page)).to_have_count(50, timeout=WAIT_MS)
    next_page_s = time.monotonic() - started
    second = in_browser.row_ids(page)
    assert not set(first) & set(second)

    started = time.monotonic()
    page.locator("#filter-q").fill("needle-in")
    expect(rows).to_have_count(1, timeout=WAIT_MS)
    expect(rows).to_have_attribute("data-id", needle.id)
    search_s = time.monotonic() - started
    in_browser.shot(page, "million-search", full_page=False)
    # For the record (pytest -s): what this machine took.
    print(  # noqa: T201
        f"1M tokens: first rows {first_rows_s:.2f} s, next page {next_page_s:.2f} s, "
        f"search {search_s:.2f} s (with the 300 ms typing delay)"
    )
