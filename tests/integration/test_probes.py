"""The HTTP probes of a daemon that has not started, through the real ASGI app."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from notifier.config.settings import load_settings
from notifier.runtime.daemon import Daemon
from notifier.web.app import create_app


def get(app: FastAPI, path: str) -> httpx.Response:
    async def request() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://notifier") as client:
            return await client.get(path)

    return asyncio.run(request())


def test_liveness_fails_without_a_running_scheduler() -> None:
    """/healthz says failing, with the reason, while the scheduler does not run."""
    daemon = Daemon(load_settings())
    app = create_app(liveness=daemon.liveness, readiness=daemon.readiness)
    response = get(app, "/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "failing", "reason": "the scheduler is not running"}


def test_readiness_waits_for_the_schema() -> None:
    """/readyz fails until the first pass has migrated the database, then succeeds."""
    daemon = Daemon(load_settings())
    app = create_app(liveness=daemon.liveness, readiness=daemon.readiness)
    assert get(app, "/readyz").json()["reason"] == "the schema is not migrated yet"
    assert daemon.run_pass() is not None
    assert get(app, "/readyz").status_code == 200
