"""The ASGI middleware around the app, outermost first.

- :class:`CatchUnexpected`: an exception that escapes is logged once and answered 500;
- :class:`HeadAsGet`: ``HEAD`` is answered wherever ``GET`` is (FastAPI's routes take only
  the methods they name, so ``HEAD /`` would be 405);
- :class:`Gate`, for an app with the API: every request under ``/api/`` passes it before any
  route sees it, in this order:

  1. the body limit: more than 64 KiB is 413 (and, after the token, a body that is not
     ``application/json`` is 415);
  2. the client address (the peer, or ``X-Forwarded-For`` when the peer is a trusted proxy)
     against ``NOTIFIER_API_ALLOWED_IPS``: 403 (:mod:`notifier.web.access`);
  3. readiness: 503 until the database answers with a current schema;
  4. the failed authentications of the address, the token and its rate limit
     (:class:`notifier.web.auth.Authenticator`): 429, 401, 429.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import structlog
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from notifier.db.database import DatabaseUnavailableError
from notifier.web.access import client_address, throttle_key
from notifier.web.auth import PRINCIPAL_KEY, Authenticator, Principal, presented_secret
from notifier.web.errors import RETRY_UNAVAILABLE_S, ApiProblem, failed, unavailable

log = structlog.get_logger("notifier.web")

MAX_BODY_BYTES = 64 * 1024
API_PREFIX = "/api/"


class CatchUnexpected:
    """ASGI middleware: an exception that escapes the app is logged once and answered 500.

    Starlette's handler for ``Exception`` answers, then raises the exception again for the
    server, and uvicorn logs its traceback too. Here it stops: logged as ``api.failed``, and
    answered with :class:`ApiError` unless the answer had already started (then the
    connection is closed, as uvicorn would).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; catch what it raises."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as error:  # noqa: BLE001 - answered and logged, once
            response = failed(scope.get("method"), scope.get("path"), error)
            if not started:
                await response(scope, receive, send)


class HeadAsGet:
    """ASGI middleware: a HEAD request is answered as its GET would be, without the body.

    The app sees a GET (the same checks, the same status and headers, ``Content-Length``
    included); the first body message ends the answer empty. A stream is therefore cut at
    once: the server then reports the client gone, which ends the stream's generator.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass a GET on for a HEAD, and keep its body back."""
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        done = False

        async def headers_only(message: Message) -> None:
            nonlocal done
            if done:
                return
            if message["type"] == "http.response.body":
                done = True
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


class Gate:
    """ASGI middleware: body limit for every request; address, token and rate for ``/api/``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator,
        ready: Callable[[], str | None],
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self._authenticator = authenticator
        self._access = authenticator.access
        self._ready = ready
        self._max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse the request with an ApiError, or pass it on with its caller attached."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        try:
            receive = self._limit_body(headers, receive)
            if str(scope.get("path", "")).startswith(API_PREFIX):
                scope[PRINCIPAL_KEY] = await self._admit(scope, headers)
                _require_json(headers)
                send = _no_store(send)
        except ApiProblem as problem:
            await problem.response()(scope, receive, send)
            return
        except DatabaseUnavailableError as error:
            await unavailable(scope.get("path"), error)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _limit_body(self, headers: dict[str, str], receive: Receive) -> Receive:
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            raise _too_large(self._max_body)
        limit = self._max_body
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Raised inside the route's body parsing: FastAPI passes an HTTPException
                    # on to the error handlers (any other exception would become a 400).
                    raise StarletteHTTPException(413, _too_large(limit).message)
            return message

        return limited

    async def _admit(self, scope: Scope, headers: dict[str, str]) -> Principal:
        peer = scope.get("client")
        address = client_address(
            peer[0] if peer else None,
            headers.get("x-forwarded-for"),
            self._access.trusted_proxies,
        )
        client = str(address) if address is not None else "unknown"
        path = str(scope.get("path", ""))
        if not self._access.allows(address):
            log.warning("auth.address_refused", client=client, path=path)
            raise ApiProblem(403, "forbidden", f"the API does not answer {client}")
        not_ready = await anyio.to_thread.run_sync(self._ready)
        if not_ready is not None:
            raise ApiProblem(
                503, "unavailable", not_ready, headers={"Retry-After": str(RETRY_UNAVAILABLE_S)}
            )
        key = throttle_key(address)
        # In memory and cheap, so in the event loop: a throttled address costs no thread and
        # no lookup, and never learns whether its guess was right.
        self._authenticator.refuse_throttled(key, client=client, path=path)
        try:
            secret = presented_secret(headers)
        except ApiProblem:
            log.warning("auth.failed", reason="unsupported_scheme", client=client, path=path)
            raise
        return await anyio.to_thread.run_sync(
            lambda: self._authenticator.authenticate(secret, client=client, path=path, key=key)
        )


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name; repeated X-Forwarded-For headers are joined."""
    headers: dict[str, str] = {}
    for raw_key, raw_value in scope.get("headers", []):
        key, value = raw_key.decode("latin-1").lower(), raw_value.decode("latin-1")
        if key == "x-forwarded-for" and key in headers:
            headers[key] = f"{headers[key]}, {value}"
        else:
            headers[key] = value
    return headers


def _require_json(headers: dict[str, str]) -> None:
    """A request that carries a body must say it is JSON: 415 otherwise."""
    length = headers.get("content-length", "")
    has_body = (length.isdigit() and int(length) > 0) or "transfer-encoding" in headers
    media = headers.get("content-type", "").partition(";")[0].strip().lower()
    if has_body and media != "application/json" and not media.endswith("+json"):
        raise ApiProblem(
            415,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json (got "
            + (repr(media) if media else "no Content-Type")
            + ")",
        )


def _too_large(limit: int) -> ApiProblem:
    return ApiProblem(413, "payload_too_large", f"the body is larger than {limit // 1024} KiB")


def _no_store(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if not any(key.lower() == b"cache-control" for key, _ in headers):
                headers.append((b"cache-control", b"no-store"))
            message = {**message, "headers": headers}
        await send(message)

    return sending


def readiness_once(probe: Callable[[], Any]) -> Callable[[], str | None]:
    """Ask *probe* until it first says ok; then stop asking (None: ready, else the reason)."""
    ready = threading.Event()

    def check() -> str | None:
        if ready.is_set():
            return None
        answer = probe()
        if answer.ok:
            ready.set()
            return None
        return f"not ready: {answer.reason}"

    return check
