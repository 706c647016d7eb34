"""The HTTP API under ``/api/v1``: tokens, notifications, the live stream, and whoami.

Every route runs behind :class:`notifier.web.auth.Gate` and names its scope with
:func:`notifier.web.auth.requires`. Answers are the resources of :mod:`notifier.resources`,
the same JSON as the CLI's ``--json``; errors are :class:`notifier.web.errors.ApiError`.

A query parameter a route takes once (``active``, ``within``) is refused with 422 when it is
given twice: which of ``?active=garbage&active=true`` counts would otherwise be the framework's
choice, and a filter that reads one and a proxy that checks the other disagree.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi._compat import field_annotation_is_sequence
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute

from notifier.core.clock import Clock
from notifier.core.limits import MAX_DURATION, MAX_LIFETIME_TEXT
from notifier.db.database import Database
from notifier.notifications import NotificationNotFoundError, acknowledge, list_notifications
from notifier.resources import CreatedToken, NotificationResource, TokenResource, VerifiedToken
from notifier.runtime.compose import Components
from notifier.runtime.logs import rfc3339
from notifier.tokens.fields import TokenInputError
from notifier.tokens.lifecycle import TokenNotFoundError, TokenStateError, TokenStore
from notifier.web.auth import Access, Authenticator, Principal, requires
from notifier.web.errors import ERROR_RESPONSES, ApiError, ApiProblem
from notifier.web.lastused import LastUse
from notifier.web.ratelimit import FailureThrottle, RateLimiter
from notifier.web.schemas import (
    DURATION_PATTERN,
    TokenCreate,
    TokenRotate,
    duration,
)
from notifier.web.server import ListenerLimits
from notifier.web.stream import (
    InvalidCursorError,
    NotificationStream,
    SlotStreamingResponse,
    StreamOptions,
    StreamSlots,
    parse_event_id,
)

PREFIX = "/api/v1"
_FIELD = re.compile(r"([a-z_]+(?:\.[^:\s]+)?): ")
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ApiError, "description": "No such id"}
}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ApiError, "description": "Revoked or already rotated"}
}
_REVOKED_QUIETLY: dict[int | str, dict[str, Any]] = {
    204: {"description": "Revoked; no record, because the caller lacks tokens:read"}
}
_STREAM_RETRY_S = 30  # Retry-After for a token that already holds its streams


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
    streams: StreamSlots = field(default_factory=lambda: StreamSlots(5))
    listener: ListenerLimits = field(default_factory=ListenerLimits)

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
            throttle=FailureThrottle(settings.api_auth_failure_limit, monotonic=monotonic),
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
            streams=StreamSlots(settings.api_max_streams_per_token),
            listener=ListenerLimits(
                header_timeout=settings.http_header_timeout,
                max_connections=settings.http_max_connections,
            ),
        )

    def close(self) -> None:
        """End the live streams and write the pending last-use times; the server is stopping."""
        self.closing.set()
        self.authenticator.last_use.flush()


def _input_problem(error: TokenInputError, *, gave_expires_at: bool = True) -> ApiProblem:
    """422 naming the field; an expiry the request did not give is blamed on ``ttl``.

    The store judges the expiry, which the API computed from ``ttl`` (or the default) when
    no ``expires_at`` was sent: the field to change is then ``ttl``.
    """
    message = str(error)
    match = _FIELD.match(message)
    field = match.group(1) if match else None
    if field == "expires_at" and not gave_expires_at:
        field = "ttl"
        message = "ttl: the expiry it gives is refused: " + message.removeprefix("expires_at: ")
    return ApiProblem(422, "invalid_request", message, field=field)


def _caller_gone() -> ApiProblem:
    return ApiProblem(401, "unauthorized", "the token is not valid")


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
                f"expires_at: more than {MAX_LIFETIME_TEXT} ahead",
                field="expires_at",
            )
        return moment
    if ttl is not None:
        return now + duration(ttl)
    return None if default is None else now + default


def _scalar_queries(dependant: Dependant) -> frozenset[str]:
    """The query parameters *dependant* (and what it depends on) takes one value of."""
    names: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        names.update(
            param.alias
            for param in current.query_params
            # The test FastAPI itself uses to read a parameter's one value or its list.
            if not field_annotation_is_sequence(param.field_info.annotation)
        )
        pending.extend(current.dependencies)
    return frozenset(names)


class SingleValuedQuery:
    """A dependency of every route: a scalar query parameter given twice is 422.

    FastAPI keeps the last of repeated values, so ``?active=garbage&active=true`` would
    answer 200 as if the garbage were not there. Which parameters are scalars comes from each
    route's own declaration, looked up once per route.
    """

    def __init__(self) -> None:
        self._scalars: dict[int, frozenset[str]] = {}

    def __call__(self, request: Request) -> None:
        """Raise 422 naming the first scalar parameter the query repeats."""
        route = request.scope.get("route")
        if not isinstance(route, APIRoute):  # pragma: no cover - every API route is one
            return
        names = self._scalars.get(id(route))
        if names is None:
            names = self._scalars.setdefault(id(route), _scalar_queries(route.dependant))
        query = request.query_params
        for name in sorted(names):
            count = len(query.getlist(name))
            if count > 1:
                raise ApiProblem(
                    422,
                    "invalid_request",
                    f"{name}: given {count} times; it takes one value",
                    field=name,
                )


def _bounded_lifetime(
    principal: Principal, expires_at: datetime | None, *, asked: str | None
) -> datetime | None:
    """The new token's expiry, held to the caller's own: a token cannot outlive its maker.

    *asked* names the field the expiry came from (``ttl``, ``expires_at``); an expiry asked
    for past the caller's is 422 naming it. One the request did not ask for (the default
    lifetime, the rotated token's own) is shortened to the caller's expiry instead. The
    bootstrap key and tokens that never expire are bounded by the century alone.
    """
    limit = principal.expires_at
    if limit is None or (expires_at is not None and expires_at <= limit):
        return expires_at
    if asked is None:
        return limit
    own = (
        f"this token's own expiry ({rfc3339(limit)}): a token cannot make one that outlives itself"
    )
    if asked == "expires_at" and expires_at is not None:
        message = f"expires_at: {rfc3339(expires_at)} is after {own}"
    else:
        ends = "never ends" if expires_at is None else f"ends at {rfc3339(expires_at)}"
        message = f"ttl: the lifetime asked for {ends}, after {own}"
    raise ApiProblem(422, "invalid_request", message, field=asked)


def _asked(ttl: str | None, expires_at: datetime | None) -> str | None:
    if expires_at is not None:
        return "expires_at"
    return "ttl" if ttl is not None else None


_CONFLICT_TEXT = "token {id!r} is revoked or was already rotated; it cannot be rotated"


def _conflict(old: TokenResource, now: datetime, *, reads: bool) -> ApiProblem:
    """409 for rotating *old*; it names the successor only to a caller that may read tokens."""
    if not reads:
        return ApiProblem(409, "conflict", _CONFLICT_TEXT.format(id=old.id))
    if old.revoked_at is not None and old.revoked_at <= now:
        return ApiProblem(409, "conflict", f"token {old.id!r} is revoked; create a new one instead")
    return ApiProblem(
        409, "conflict", f"token {old.id!r} was already rotated into {old.superseded_by!r}"
    )


def _same_lifetime(now: datetime, old: TokenResource) -> datetime | None:
    """The expiry a rotation gives by default: the old token's lifetime from *now*."""
    if old.expires_at is None:
        return None
    lifetime = old.expires_at - old.created_at
    if lifetime > MAX_DURATION:
        raise ApiProblem(
            422,
            "invalid_request",
            f"ttl: the token's own lifetime is more than {MAX_LIFETIME_TEXT}; give the new one "
            "a ttl or an expiry",
            field="ttl",
        )
    return now + lifetime


def api_router(api: WebApi) -> APIRouter:  # noqa: C901, PLR0915 - one closure per route
    """The routes of ``/api/v1``."""
    router = APIRouter(
        prefix=PREFIX, responses=ERROR_RESPONSES, dependencies=[Depends(SingleValuedQuery())]
    )

    def refuse_superseded(principal: Principal, action: str) -> None:
        """A token rotated with a grace period still reads, but makes and rotates nothing."""
        if principal.token_id is None:
            return
        try:
            superseded = api.tokens.get(principal.token_id).superseded_by is not None
        except TokenNotFoundError:  # deleted since the gate admitted it
            raise _caller_gone() from None
        if superseded:
            raise ApiProblem(
                403,
                "forbidden",
                f"this token has been rotated and only works until its grace period ends: it "
                f"can still read, but cannot {action} tokens; use the token it was rotated into",
            )

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
        refuse_superseded(principal, "create")
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
        expires_at = _bounded_lifetime(
            principal, expires_at, asked=_asked(body.ttl, body.expires_at)
        )
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
                not_after=principal.expires_at,
            )
        except TokenInputError as error:
            raise _input_problem(error, gave_expires_at=body.expires_at is not None) from None
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
        description=(
            "Answers the revoked token's record (200) when the caller also holds tokens:read, "
            "and 204 without a body when it does not: revoking is open to tokens:write alone, "
            "reading a token's metadata is not."
        ),
        response_model=TokenResource,
        responses={**_REVOKED_QUIETLY, **_NOT_FOUND},
    )
    def revoke_token(
        token_id: str,
        principal: Annotated[Principal, Depends(requires("tokens:write"))],
    ) -> Response:
        try:
            revoked = api.tokens.revoke(token_id, actor=principal.actor)
        except TokenNotFoundError as error:
            raise _not_found(error) from None
        if not principal.grants("tokens:read"):
            return Response(status_code=204)
        return JSONResponse(revoked.model_dump(mode="json"))

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
        refuse_superseded(principal, "rotate")
        # Without tokens:read the caller may not read the token, so refusals do not describe it.
        reads = principal.grants("tokens:read")
        try:
            old = api.tokens.get(token_id)
        except TokenNotFoundError as error:
            raise _not_found(error) from None
        if not principal.may_grant(old.permissions):
            missing = sorted(set(old.permissions) - principal.scopes)
            raise ApiProblem(
                403,
                "forbidden",
                "a token cannot rotate a token with scopes it lacks"
                + (": " + ", ".join(missing) if reads else ""),
            )
        now = api.clock.now()
        if old.superseded_by is not None or (old.revoked_at is not None and old.revoked_at <= now):
            # The store refuses these too (409); said first, so that no other refusal hides it.
            raise _conflict(old, now, reads=reads)
        grace = duration(request.grace, allow_zero=True) if request.grace else timedelta(0)
        expires_at = _expiry(now, request.ttl, request.expires_at, None)
        if expires_at is None:
            expires_at = _same_lifetime(now, old)
        expires_at = _bounded_lifetime(
            principal, expires_at, asked=_asked(request.ttl, request.expires_at)
        )
        try:
            created = api.tokens.rotate(
                token_id,
                grace=grace,
                expires_at=expires_at,
                actor=principal.actor,
                not_after=principal.expires_at,
            )
        except TokenNotFoundError as error:
            raise _not_found(error) from None
        except TokenStateError as error:
            message = str(error) if reads else _CONFLICT_TEXT.format(id=token_id)
            raise ApiProblem(409, "conflict", message) from None
        except TokenInputError as error:
            gave = request.expires_at is not None
            raise _input_problem(error, gave_expires_at=gave) from None
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
        try:
            resume_from = parse_event_id(last_event_id, now=api.clock.now())
        except InvalidCursorError as error:
            raise ApiProblem(
                400, "invalid_cursor", f"last-event-id: {error}", field="last-event-id"
            ) from None
        key = principal.rate_key
        if not api.streams.take(key):
            raise ApiProblem(
                429,
                "rate_limited",
                f"this token already holds {api.streams.limit} open streams "
                f"(NOTIFIER_API_MAX_STREAMS_PER_TOKEN); close one, or retry in "
                f"{_STREAM_RETRY_S}s",
                headers={"Retry-After": str(_STREAM_RETRY_S)},
            )
        try:
            stream = NotificationStream(
                api.database, api.tokens, principal, api.stream, api.closing
            )
            watch = stream.start(resume_from)
        except BaseException:
            api.streams.give_back(key)
            raise
        return SlotStreamingResponse(
            stream.events(watch),
            release=lambda: api.streams.give_back(key),
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
