"""The HTTP API under ``/api/v1``: tokens, notifications, the live stream, and whoami.

Every route runs behind :class:`notifier.web.auth.Gate` and names its scope with
:func:`notifier.web.auth.requires`. Answers are the resources of :mod:`notifier.resources`,
the same JSON as the CLI's ``--json``; errors are :class:`notifier.web.errors.ApiError`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse, StreamingResponse

from notifier.clock import Clock
from notifier.compose import Components
from notifier.db.database import Database
from notifier.notifications import NotificationNotFoundError, acknowledge, list_notifications
from notifier.resources import CreatedToken, NotificationResource, TokenResource, VerifiedToken
from notifier.tokens.fields import TokenInputError
from notifier.tokens.store import TokenNotFoundError, TokenStateError, TokenStore
from notifier.web.auth import Access, Authenticator, Principal, requires
from notifier.web.errors import ERROR_RESPONSES, ApiError, ApiProblem
from notifier.web.lastused import LastUse
from notifier.web.ratelimit import RateLimiter
from notifier.web.schemas import (
    DURATION_PATTERN,
    MAX_DURATION,
    TokenCreate,
    TokenRotate,
    duration,
)
from notifier.web.stream import NotificationStream, StreamOptions, parse_event_id

PREFIX = "/api/v1"
_FIELD = re.compile(r"([a-z_]+(?:\.[^:\s]+)?): ")
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ApiError, "description": "No such id"}
}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ApiError, "description": "Revoked or already rotated"}
}


@dataclass
class WebApi:
    """What the API works with, built once per process from the composition root's parts."""

    tokens: TokenStore
    database: Database
    clock: Clock
    default_ttl: timedelta
    detection_window: timedelta
    access: Access
    authenticator: Authenticator
    stream: StreamOptions = field(default_factory=StreamOptions)
    closing: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def from_components(
        cls,
        parts: Components,
        *,
        stream: StreamOptions | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> WebApi:
        """The API over *parts*, with the access rules and limits of their settings."""
        settings = parts.settings
        bootstrap = settings.bootstrap_token
        access = Access(
            allowed=settings.api_allowed_ips,
            trusted_proxies=settings.trusted_proxies,
            bootstrap_token=bootstrap.get_secret_value() if bootstrap is not None else None,
        )
        authenticator = Authenticator(
            parts.tokens,
            parts.clock,
            access,
            RateLimiter(settings.api_rate_limit, monotonic=monotonic),
            LastUse(parts.tokens, settings.api_last_used_interval, monotonic=monotonic),
        )
        return cls(
            tokens=parts.tokens,
            database=parts.database,
            clock=parts.clock,
            default_ttl=settings.token_default_ttl,
            detection_window=settings.detection_window,
            access=access,
            authenticator=authenticator,
            stream=stream or StreamOptions(),
        )

    def close(self) -> None:
        """End the live streams and write the pending last-use times; the server is stopping."""
        self.closing.set()
        self.authenticator.last_use.flush()


def _input_problem(error: TokenInputError) -> ApiProblem:
    message = str(error)
    match = _FIELD.match(message)
    return ApiProblem(422, "invalid_request", message, field=match.group(1) if match else None)


def _not_found(error: LookupError) -> ApiProblem:
    return ApiProblem(404, "not_found", str(error.args[0]) if error.args else "not found")


def _query_duration(text: str, name: str) -> timedelta:
    try:
        return duration(text)
    except ValueError as error:
        raise ApiProblem(422, "invalid_request", f"{name}: {error}", field=name) from None


def _expiry(
    now: datetime, ttl: str | None, expires_at: datetime | None, default: timedelta | None
) -> datetime | None:
    """The expiry a create or rotate asks for; None leaves the store's default (rotate)."""
    if expires_at is not None:
        try:
            moment = expires_at.astimezone(UTC)
        except OverflowError:
            raise ApiProblem(
                422, "invalid_request", "expires_at: out of range", field="expires_at"
            ) from None
        if moment - now > MAX_DURATION:
            raise ApiProblem(
                422,
                "invalid_request",
                "expires_at: more than 100 years ahead",
                field="expires_at",
            )
        return moment
    if ttl is not None:
        return now + duration(ttl)
    return None if default is None else now + default


def api_router(api: WebApi) -> APIRouter:  # noqa: C901, PLR0915 - one closure per route
    """The routes of ``/api/v1``."""
    router = APIRouter(prefix=PREFIX, responses=ERROR_RESPONSES)

    # --- whoami -----------------------------------------------------------------------------

    @router.get(
        "/auth/whoami",
        tags=["auth"],
        summary="The presented token: id, name, role, scopes and expiry",
        response_model=VerifiedToken,
    )
    def whoami(
        principal: Annotated[Principal, Depends(requires(None))],
    ) -> VerifiedToken:
        return principal.describe()

    # --- tokens -----------------------------------------------------------------------------

    @router.get(
        "/tokens",
        tags=["tokens"],
        summary="Tokens, soonest expiry first (scope tokens:read)",
        response_model=list[TokenResource],
    )
    def list_tokens(
        principal: Annotated[Principal, Depends(requires("tokens:read"))],
        all_tokens: Annotated[bool, Query(alias="all", description="revoked tokens too")] = False,
        revoked: Annotated[bool, Query(description="only revoked tokens")] = False,
    ) -> list[TokenResource]:
        del principal
        if all_tokens and revoked:
            raise ApiProblem(
                422, "invalid_request", "all, revoked: give one or the other", field="revoked"
            )
        return api.tokens.list(include_revoked=all_tokens, only_revoked=revoked)

    @router.get(
        "/tokens/expiring",
        tags=["tokens"],
        summary="Tokens that expire within a time from now (scope tokens:read)",
        response_model=list[TokenResource],
    )
    def expiring_tokens(
        principal: Annotated[Principal, Depends(requires("tokens:read"))],
        within: Annotated[
            str | None,
            Query(
                max_length=64,
                description="a duration such as 168h or 30d; default: the detection window",
                json_schema_extra={"pattern": DURATION_PATTERN},
            ),
        ] = None,
    ) -> list[TokenResource]:
        del principal
        window = _query_duration(within, "within") if within is not None else api.detection_window
        return api.tokens.list(expiring_within=window)

    @router.post(
        "/tokens",
        tags=["tokens"],
        summary="Create a token; its secret is in this answer and never again (tokens:write)",
        status_code=201,
        response_model=CreatedToken,
    )
    def create_token(
        body: TokenCreate,
        principal: Annotated[Principal, Depends(requires("tokens:write"))],
    ) -> JSONResponse:
        if not principal.may_grant(body.permissions):
            missing = sorted(set(body.permissions) - principal.scopes)
            raise ApiProblem(
                403,
                "forbidden",
                "a token cannot grant scopes it lacks: " + ", ".join(missing),
                field="permissions",
            )
        now = api.clock.now()
        expires_at = _expiry(now, body.ttl, body.expires_at, api.default_ttl)
        try:
            created = api.tokens.create(
                name=body.name,
                expires_at=expires_at,
                role=body.role,
                permissions=body.permissions,
                owner=body.owner,
                labels=body.labels,
                description=body.description,
                actor=principal.actor,
            )
        except TokenInputError as error:
            raise _input_problem(error) from None
        return JSONResponse(
            created.model_dump(mode="json"),
            status_code=201,
            headers={"Location": f"{PREFIX}/tokens/{created.id}"},
        )

    @router.get(
        "/tokens/{token_id}",
        tags=["tokens"],
        summary="One token (scope tokens:read)",
        response_model=TokenResource,
        responses=_NOT_FOUND,
    )
    def get_token(
        token_id: str,
        principal: Annotated[Principal, Depends(requires("tokens:read"))],
    ) -> TokenResource:
        del principal
        try:
            return api.tokens.get(token_id)
        except TokenNotFoundError as error:
            raise _not_found(error) from None

    @router.delete(
        "/tokens/{token_id}",
        tags=["tokens"],
        summary="Revoke a token now; the record stays (scope tokens:write)",
        response_model=TokenResource,
        responses=_NOT_FOUND,
    )
    def revoke_token(
        token_id: str,
        principal: Annotated[Principal, Depends(requires("tokens:write"))],
    ) -> TokenResource:
        try:
            return api.tokens.revoke(token_id, actor=principal.actor)
        except TokenNotFoundError as error:
            raise _not_found(error) from None

    @router.post(
        "/tokens/{token_id}/rotate",
        tags=["tokens"],
        summary="A new secret with the same name, scopes and owner (scope tokens:write)",
        status_code=201,
        response_model=CreatedToken,
        responses={**_NOT_FOUND, **_CONFLICT},
    )
    def rotate_token(
        token_id: str,
        principal: Annotated[Principal, Depends(requires("tokens:write"))],
        body: TokenRotate | None = None,
    ) -> JSONResponse:
        request = body or TokenRotate()
        try:
            old = api.tokens.get(token_id)
        except TokenNotFoundError as error:
            raise _not_found(error) from None
        if not principal.may_grant(old.permissions):
            missing = sorted(set(old.permissions) - principal.scopes)
            raise ApiProblem(
                403,
                "forbidden",
                "a token cannot rotate a token with scopes it lacks: " + ", ".join(missing),
            )
        now = api.clock.now()
        grace = duration(request.grace, allow_zero=True) if request.grace else timedelta(0)
        try:
            created = api.tokens.rotate(
                token_id,
                grace=grace,
                expires_at=_expiry(now, request.ttl, request.expires_at, None),
                actor=principal.actor,
            )
        except TokenNotFoundError as error:
            raise _not_found(error) from None
        except TokenStateError as error:
            raise ApiProblem(409, "conflict", str(error)) from None
        except TokenInputError as error:
            raise _input_problem(error) from None
        except OverflowError:
            raise ApiProblem(
                422,
                "invalid_request",
                "the new expiry is out of range; give ttl or expires_at",
                field="ttl",
            ) from None
        return JSONResponse(
            created.model_dump(mode="json"),
            status_code=201,
            headers={"Location": f"{PREFIX}/tokens/{created.id}"},
        )

    # --- notifications ----------------------------------------------------------------------

    @router.get(
        "/notifications",
        tags=["notifications"],
        summary="UI notifications, most urgent first (scope notifications:read)",
        response_model=list[NotificationResource],
    )
    def notifications(
        principal: Annotated[Principal, Depends(requires("notifications:read"))],
        active: Annotated[
            bool | None,
            Query(description="true: only active ones; false: only acknowledged or resolved"),
        ] = None,
    ) -> list[NotificationResource]:
        del principal
        found = list_notifications(api.database, include_inactive=active is not True)
        if active is False:
            return [notification for notification in found if not notification.active]
        return found

    @router.post(
        "/notifications/{notification_id}/ack",
        tags=["notifications"],
        summary="Acknowledge until the next notice (scope notifications:write)",
        response_model=NotificationResource,
        responses=_NOT_FOUND,
    )
    def acknowledge_notification(
        notification_id: str,
        principal: Annotated[Principal, Depends(requires("notifications:write"))],
    ) -> NotificationResource:
        try:
            return acknowledge(
                api.database, notification_id, now=api.clock.now(), actor=principal.actor
            )
        except NotificationNotFoundError as error:
            raise _not_found(error) from None

    @router.get(
        "/notifications/stream",
        tags=["notifications"],
        summary="Server-Sent Events: new and changed notifications (notifications:read)",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "An event stream: ready, then notification events",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        },
    )
    def stream(
        principal: Annotated[Principal, Depends(requires("notifications:read"))],
        last_event_id: Annotated[str | None, Header(max_length=64)] = None,
    ) -> StreamingResponse:
        stream = NotificationStream(api.database, api.tokens, principal, api.stream, api.closing)
        watch = stream.start(parse_event_id(last_event_id))
        return StreamingResponse(
            stream.events(watch),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router


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
