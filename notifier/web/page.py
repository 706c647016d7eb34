"""The web page at ``/``: static HTML, JavaScript and CSS shipped inside the package.

Nothing comes from a CDN and nothing needs building. The page holds no data of its own: it
asks the API with the token the user pasted, which it keeps in ``sessionStorage`` (gone when
the tab closes, never in a URL or a cookie, so there is no CSRF to defend against). A strict
Content-Security-Policy allows scripts and styles from this origin only.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import Response

_ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


def _read(name: str) -> bytes:
    return (resources.files("notifier.web") / "static" / name).read_bytes()


def install(app: FastAPI) -> None:
    """Serve the page and its assets from *app*."""
    index = _read("index.html")
    assets = {name: (_read(name), media) for name, media in _ASSETS.items()}

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return Response(index, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    def serve(name: str) -> None:
        body, media = assets[name]

        @app.get(f"/static/{name}", include_in_schema=False, name=f"static:{name}")
        def asset() -> Response:
            return Response(body, media_type=media, headers=SECURITY_HEADERS)

    for name in assets:
        serve(name)
