"""The page as files: shipped in the package, self-contained, served with a strict policy."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from tests.web_tier import Web

STATIC = ("index.html", "app.js", "app.css")


def test_the_assets_ship_in_the_package() -> None:
    """index.html, app.js and app.css are package data, read through importlib.resources."""
    folder = resources.files("notifier.web") / "static"
    assert all((folder / name).is_file() for name in STATIC)


@pytest.mark.parametrize("name", STATIC)
def test_nothing_comes_from_elsewhere(name: str) -> None:
    """No asset names another origin: the page works offline and behind a strict CSP."""
    text = (resources.files("notifier.web") / "static" / name).read_text(encoding="utf-8")
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE)


def test_the_page_keeps_the_token_out_of_urls_and_storage_that_lasts() -> None:
    """The script keeps the token in sessionStorage only, never localStorage or a cookie."""
    script = (resources.files("notifier.web") / "static" / "app.js").read_text(encoding="utf-8")
    assert "sessionStorage" in script
    assert "localStorage" not in script
    assert "document.cookie" not in script
    assert "innerHTML" not in script  # server text goes in as text, never as markup


def test_the_page_is_served_with_a_strict_policy(web: Web) -> None:
    """/ and its assets come with a Content-Security-Policy allowing this origin only."""
    client = web.client()
    for path, media in (
        ("/", "text/html"),
        ("/static/app.js", "text/javascript"),
        ("/static/app.css", "text/css"),
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(media)
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/other.js").status_code == 404
