"""The web tier under test: the real app over a real database, called through ASGI or a socket.

The fixtures are shared by tests/integration and tests/acceptance; each conftest names them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import URL

from notifier.config.settings import load_settings
from notifier.core.clock import Clock, FixedClock, SystemClock
from notifier.db import migrate
from notifier.resources import CreatedToken
from notifier.runtime.compose import Components, build, web_api
from notifier.web.api import WebApi
from notifier.web.app import Probe, create_app
from notifier.web.server import WebServer, bind
from notifier.web.stream import StreamOptions

DAY = timedelta(days=1)


class Ticker:
    """A monotonic clock the test moves by hand, for the rate limit and the last-use flush."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ApiClient:
    """Requests through httpx's ASGI transport, from a chosen client address."""

    def __init__(self, app: FastAPI, secret: str | None, address: str, header: str) -> None:
        self._app = app
        self._secret = secret
        self._address = address
        self._header = header

    def headers(self) -> dict[str, str]:
        if self._secret is None:
            return {}
        if self._header == "x-api-key":
            return {"X-API-Key": self._secret}
        return {"Authorization": f"Bearer {self._secret}"}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers(), **kwargs.pop("headers", {})}

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self._app, client=(self._address, 50123))
            async with httpx.AsyncClient(transport=transport, base_url="http://notifier") as c:
                return await c.request(method, path, headers=headers, **kwargs)

        return asyncio.run(send())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)


@dataclass
class Web:
    """One process's web tier: the parts, the API, the app, and the clocks the test moves."""

    parts: Components
    api: WebApi
    app: FastAPI
    clock: FixedClock  # what the parts read, unless built with wall_clock=True
    ticker: Ticker
    created: list[CreatedToken] = field(default_factory=list)

    def token(
        self, *permissions: str, ttl: timedelta | None = 30 * DAY, name: str = "caller"
    ) -> CreatedToken:
        """A stored token with *permissions*, created through the store (ttl None: no expiry)."""
        created = self.parts.tokens.create(
            name=name,
            expires_at=self.parts.clock.now() + ttl if ttl is not None else None,
            permissions=permissions,
            owner="ops@example.com",
            labels={"team": "platform"},
        )
        self.created.append(created)
        return created

    def client(
        self,
        secret: str | CreatedToken | None = None,
        *,
        address: str = "127.0.0.1",
        header: str = "bearer",
    ) -> ApiClient:
        """A client presenting *secret* (a token's, or any text) from *address*."""
        text = secret.token if isinstance(secret, CreatedToken) else secret
        return ApiClient(self.app, text, address, header)

    def admin(self, ttl: timedelta | None = 30 * DAY) -> ApiClient:
        """A client with a ``*`` token (expiring in 30 days unless told otherwise)."""
        return self.client(self.token("*", name="admin", ttl=ttl))


WebFactory = Callable[..., Web]


def _url_text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@pytest.fixture
def make_web(
    monkeypatch: pytest.MonkeyPatch, clock: FixedClock, sqlite_url: URL
) -> Iterator[WebFactory]:
    """Build the web tier with extra NOTIFIER_* settings, on SQLite unless *url* is given."""
    built: list[Web] = []

    def factory(url: URL | None = None, *, wall_clock: bool = False, **settings: str) -> Web:
        monkeypatch.setenv("NOTIFIER_DATABASE_URL", _url_text(url or sqlite_url))
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        chosen: Clock = SystemClock() if wall_clock else clock
        parts = build(load_settings(), clock=chosen)
        migrate.upgrade(parts.database)
        ticker = Ticker()
        api = web_api(parts, monotonic=ticker)
        app = create_app(
            liveness=lambda: Probe(ok=True),
            readiness=lambda: Probe(ok=True),
            api=api,
        )
        web = Web(parts=parts, api=api, app=app, clock=clock, ticker=ticker)
        built.append(web)
        return web

    yield factory
    for web in built:
        web.parts.close()


@pytest.fixture
def web(make_web: WebFactory) -> Web:
    """The web tier on a SQLite file, with the default settings."""
    return make_web()


@pytest.fixture
def web_on_each_backend(make_web: WebFactory, database_url: URL) -> Web:
    """The web tier on a SQLite file, then on PostgreSQL."""
    return make_web(database_url)


@dataclass
class Served:
    """The app served by uvicorn on a loopback port, in this process."""

    web: Web
    server: WebServer
    base: str


@pytest.fixture
def serve_in_thread() -> Iterator[Callable[[Web, StreamOptions | None], Served]]:
    """Serve a :class:`Web` on 127.0.0.1 with uvicorn; stopped afterwards."""
    started: list[WebServer] = []

    def start(web: Web, stream: StreamOptions | None = None) -> Served:
        if stream is not None:
            web.api.stream = stream
        from notifier.config.settings import HttpAddress  # noqa: PLC0415

        sock = bind(HttpAddress("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = WebServer(web.app, web.api)
        server.start(sock)
        started.append(server)
        base = f"http://127.0.0.1:{port}"
        _wait_until_answering(base)
        return Served(web=web, server=server, base=base)

    yield start
    for server in started:
        server.stop()


def _wait_until_answering(base: str) -> None:
    """Poll /healthz until the server answers (bounded: it binds before serving)."""
    for _ in range(200):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            threading.Event().wait(0.02)
    raise AssertionError(f"{base} never answered")
