"""The ASGI app: ``/healthz`` (the process is alive and ticking) and ``/readyz`` (it can work).

``/metrics`` (Prometheus) is served without authentication, as exporters are: it holds counts
and timings, never a token's id or name.

Liveness never looks at the database: a daemon that waits correctly for its database must not
be killed by its orchestrator for it. Readiness does.

Given a :class:`notifier.web.api.WebApi`, the app also serves the HTTP API under ``/api/v1``
(:mod:`notifier.web.routes`, behind :class:`notifier.web.middleware.Gate`), its OpenAPI
document at ``/openapi.json``, and the web page at ``/``; see docs/web.md.

``HEAD`` is answered wherever ``GET`` is (:class:`notifier.web.middleware.HeadAsGet`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

import notifier
from notifier.web.middleware import CatchUnexpected, Gate, HeadAsGet, readiness_once

if TYPE_CHECKING:
    from notifier.web.api import WebApi


@dataclass(frozen=True, slots=True)
class Probe:
    """The answer of a health check."""

    ok: bool
    reason: str = ""


# Given the request's Accept header, the metrics' exposition and its content type.
MetricsExposition = Callable[[str | None], tuple[bytes, str]]


def create_app(
    *,
    liveness: Callable[[], Probe],
    readiness: Callable[[], Probe],
    metrics: MetricsExposition | None = None,
    api: WebApi | None = None,
) -> FastAPI:
    """Build the app around the probes (and the metrics, the API) the composition root supplies."""
    app = FastAPI(
        title="notifier",
        version=notifier.__version__,
        description="Warns before API tokens expire; the tokens, their notifications, live.",
        docs_url=None,
        redoc_url=None,
    )

    def answer(probe: Probe) -> JSONResponse:
        body = {"status": "ok"} if probe.ok else {"status": "failing", "reason": probe.reason}
        return JSONResponse(body, status_code=200 if probe.ok else 503)

    @app.get("/healthz", tags=["health"], summary="Liveness: the scheduler is ticking")
    def healthz() -> JSONResponse:
        return answer(liveness())

    @app.get("/readyz", tags=["health"], summary="Readiness: the database answers")
    def readyz() -> JSONResponse:
        return answer(readiness())

    if metrics is not None:
        expose = metrics

        @app.get("/metrics", tags=["metrics"], summary="Prometheus metrics (no authentication)")
        def metrics_endpoint(request: Request) -> Response:
            body, content_type = expose(request.headers.get("accept"))
            return Response(body, media_type=content_type)

    if api is not None:
        _serve_api(app, api, readiness)
    app.add_middleware(HeadAsGet)
    if api is not None:
        app.add_middleware(CatchUnexpected)  # outermost: nothing escapes to be logged twice
    return app


def _serve_api(app: FastAPI, api: WebApi, readiness: Callable[[], Probe]) -> None:
    """Add the API, its error answers, its gate and the page to *app*."""
    from notifier.web import errors, page  # noqa: PLC0415 - only an app with the API needs them
    from notifier.web.routes import api_router  # noqa: PLC0415

    errors.install(app)
    app.include_router(api_router(api))
    page.install(app)
    app.add_middleware(Gate, authenticator=api.authenticator, ready=readiness_once(readiness))
