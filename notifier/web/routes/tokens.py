"""The token routes of ``/api/v1``: list, expiring, create, get, revoke and rotate."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from notifier.resources import CreatedToken, TokenResource, TokenStatus, TokenSummary
from notifier.tokens.fields import TokenInputError
from notifier.tokens.lifecycle import TokenNotFoundError, TokenStateError
from notifier.tokens.listing import (
    DEFAULT_STATUSES,
    STATUSES,
    SortName,
    TokenFilter,
)
from notifier.web.api import PREFIX, WebApi
from notifier.web.auth import Principal, TokenReader, TokenWriter
from notifier.web.errors import NOT_FOUND, ApiError, ApiProblem, caller_gone, missing_as_404
from notifier.web.routes.lifetimes import (
    asked_field,
    bounded_lifetime,
    expiry,
    input_problem,
    same_lifetime,
)
from notifier.web.routes.paging import DEFAULT_PAGE, PAGED, Cursor, Limit, paged
from notifier.web.routes.queries import (
    ExpiresAfter,
    ExpiresBefore,
    ExpiringWithin,
    Labels,
    Owner,
    Search,
    list_filters,
    query_duration,
)
from notifier.web.schemas import DURATION_PATTERN, TokenCreate, TokenRotate, duration

_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ApiError, "description": "Revoked or already rotated"}
}
_REVOKED_QUIETLY: dict[int | str, dict[str, Any]] = {
    204: {"description": "Revoked; no record, because the caller lacks tokens:read"}
}
# What a create request passes on to the store as it is; the lifetime is the API's to work out.
_CREATE_FIELDS = {"name", "role", "permissions", "owner", "labels", "description"}
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


def _created(token: CreatedToken) -> JSONResponse:
    """201 with the new token (its secret, this once) and where it lives."""
    return JSONResponse(
        token.model_dump(mode="json"),
        status_code=201,
        headers={"Location": f"{PREFIX}/tokens/{token.id}"},
    )


def token_routes(api: WebApi) -> APIRouter:
    """The token routes; the reads first, so that ``/tokens/expiring`` is not taken for an id."""
    router = APIRouter(tags=["tokens"])
    _add_reads(router, api)
    _add_writes(router, api)
    return router


def _token_filter(
    *,
    status: Annotated[
        list[TokenStatus] | None,
        Query(description="only these statuses (repeatable); default: all but revoked"),
    ] = None,
    owner: Owner = None,
    label: Labels = None,
    source: Annotated[
        str | None,
        Query(max_length=64, description="only this source's tokens: the store's are `store`"),
    ] = None,
    expiring_within: ExpiringWithin = None,
    expires_after: ExpiresAfter = None,
    expires_before: ExpiresBefore = None,
    q: Search = None,
    all_tokens: Annotated[
        bool, Query(alias="all", description="every status: the same as naming each")
    ] = False,
    revoked: Annotated[bool, Query(description="only revoked tokens: status=revoked")] = False,
) -> TokenFilter:
    """The filters of a token list, from its query; 422 naming a parameter it refuses."""
    if sum([all_tokens, revoked, bool(status)]) > 1:
        raise ApiProblem(
            422,
            "invalid_request",
            "all, revoked, status: give one of them",
            field="revoked" if revoked else "status",
        )
    statuses = DEFAULT_STATUSES
    if status:
        statuses = frozenset(status)
    elif all_tokens:
        statuses = frozenset(STATUSES)
    elif revoked:
        statuses = frozenset({"revoked"})
    shared = list_filters(label, expiring_within, expires_after, expires_before)
    return TokenFilter(
        statuses=statuses,
        owner=owner,
        labels=shared.labels,
        source=source,
        expiring_within=shared.expiring_within,
        expires_after=shared.expires_after,
        expires_before=shared.expires_before,
        search=q,
    )


Filters = Annotated[TokenFilter, Depends(_token_filter)]
Sort = Annotated[
    SortName,
    Query(description="expires_at (never-expiring last), name or created_at; -: descending"),
]


def _add_reads(router: APIRouter, api: WebApi) -> None:
    """List, summary, expiring, get: scope tokens:read."""

    @router.get(
        "/tokens",
        summary="Tokens, soonest expiry first, a page at a time (scope tokens:read)",
        responses=PAGED,
    )
    def list_tokens(
        *,
        principal: TokenReader,
        request: Request,
        response: Response,
        wanted: Filters,
        sort: Sort = "expires_at",
        limit: Limit = DEFAULT_PAGE,
        cursor: Cursor = None,
    ) -> list[TokenResource]:
        del principal
        return paged(
            request,
            response,
            lambda: api.tokens.page(wanted, sort=sort, limit=limit, cursor=cursor),
        )

    @router.get(
        "/tokens/summary",
        summary="Counts by status, and expiries per day for 90 days (scope tokens:read)",
        description=(
            "The counts of the tokens the filters keep (every status but those named: "
            "`status` is not taken here), and per UTC day from 30 days ago to 90 days ahead "
            "the tokens not revoked nor superseded that expire on it."
        ),
    )
    def token_summary(principal: TokenReader, wanted: SummaryFilters) -> TokenSummary:
        del principal
        return TokenSummary.model_validate(api.tokens.summary(wanted))

    @router.get(
        "/tokens/expiring",
        summary="Tokens that expire within a time from now (scope tokens:read)",
        responses=PAGED,
    )
    def expiring_tokens(
        *,
        principal: TokenReader,
        request: Request,
        response: Response,
        within: Annotated[
            str | None,
            Query(
                max_length=64,
                description="a duration such as 168h or 30d; default: the detection window",
                json_schema_extra={"pattern": DURATION_PATTERN},
            ),
        ] = None,
        limit: Limit = DEFAULT_PAGE,
        cursor: Cursor = None,
    ) -> list[TokenResource]:
        del principal
        window = query_duration(within, "within") if within is not None else api.detection_window
        wanted = TokenFilter(expiring_within=window)
        return paged(request, response, lambda: api.tokens.page(wanted, limit=limit, cursor=cursor))

    @router.get("/tokens/{token_id}", summary="One token (scope tokens:read)", responses=NOT_FOUND)
    def get_token(
        token_id: str,
        principal: TokenReader,
    ) -> TokenResource:
        del principal
        with missing_as_404(TokenNotFoundError):
            return api.tokens.get(token_id)


def _summary_filter(
    *,
    owner: Annotated[str | None, Query(max_length=200, description="exactly this owner")] = None,
    label: Annotated[
        list[str] | None,
        Query(description="key=value (repeatable: all of them)"),
    ] = None,
    source: Annotated[str | None, Query(max_length=64, description="only this source")] = None,
    q: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="a prefix of the name or of the id"),
    ] = None,
) -> TokenFilter:
    """The filters a summary takes: those of the list but statuses, sort and times."""
    return _token_filter(owner=owner, label=label, source=source, q=q)


SummaryFilters = Annotated[TokenFilter, Depends(_summary_filter)]


def _add_writes(router: APIRouter, api: WebApi) -> None:
    """Create, revoke, rotate: scope tokens:write."""

    @router.post(
        "/tokens",
        summary="Create a token; its secret is in this answer and never again (tokens:write)",
        status_code=201,
        response_model=CreatedToken,
    )
    def create_token(
        body: TokenCreate,
        principal: TokenWriter,
    ) -> JSONResponse:
        return _created(_create(api, body, principal))

    @router.delete(
        "/tokens/{token_id}",
        summary="Revoke a token now; the record stays (scope tokens:write)",
        description=(
            "Answers the revoked token's record (200) when the caller also holds tokens:read, "
            "and 204 without a body when it does not: revoking is open to tokens:write alone, "
            "reading a token's metadata is not."
        ),
        response_model=TokenResource,
        responses={**_REVOKED_QUIETLY, **NOT_FOUND},
    )
    def revoke_token(
        token_id: str,
        principal: TokenWriter,
    ) -> Response:
        with missing_as_404(TokenNotFoundError):
            revoked = api.tokens.revoke(token_id, actor=principal.actor)
        if not principal.grants("tokens:read"):
            return Response(status_code=204)
        return JSONResponse(revoked.model_dump(mode="json"))

    @router.post(
        "/tokens/{token_id}/rotate",
        summary="A new secret with the same name, scopes and owner (scope tokens:write)",
        status_code=201,
        response_model=CreatedToken,
        responses={**NOT_FOUND, **_CONFLICT},
    )
    def rotate_token(
        token_id: str,
        principal: TokenWriter,
        body: TokenRotate | None = None,
    ) -> JSONResponse:
        return _created(_rotate(api, token_id, principal, body or TokenRotate()))


def _refuse_superseded(api: WebApi, principal: Principal, action: str) -> None:
    """A token rotated with a grace period still reads, but makes and rotates nothing."""
    if principal.token_id is None:
        return
    try:
        superseded = api.tokens.get(principal.token_id).superseded_by is not None
    except TokenNotFoundError:  # deleted since the gate admitted it
        raise caller_gone() from None
    if superseded:
        raise ApiProblem(
            403,
            "forbidden",
            f"this token has been rotated and only works until its grace period ends: it "
            f"can still read, but cannot {action} tokens; use the token it was rotated into",
        )


def _create(api: WebApi, body: TokenCreate, principal: Principal) -> CreatedToken:
    """Make the token *body* asks for, within what *principal* holds and outlives."""
    _refuse_superseded(api, principal, "create")
    if not principal.may_grant(body.permissions):
        missing = sorted(set(body.permissions) - principal.scopes)
        raise ApiProblem(
            403,
            "forbidden",
            "a token cannot grant scopes it lacks: " + ", ".join(missing),
            field="permissions",
        )
    now = api.clock.now()
    expires_at = bounded_lifetime(
        principal,
        expiry(now, body.ttl, body.expires_at, api.default_ttl),
        asked=asked_field(body.ttl, body.expires_at),
    )
    try:
        return api.tokens.create(
            **body.model_dump(include=_CREATE_FIELDS),
            expires_at=expires_at,
            actor=principal.actor,
            not_after=principal.expires_at,
        )
    except TokenInputError as error:
        raise input_problem(error, gave_expires_at=body.expires_at is not None) from None


def _rotate(api: WebApi, token_id: str, principal: Principal, request: TokenRotate) -> CreatedToken:
    """Rotate *token_id* as *request* asks, within what *principal* holds and outlives."""
    _refuse_superseded(api, principal, "rotate")
    # Without tokens:read the caller may not read the token, so refusals do not describe it.
    reads = principal.grants("tokens:read")
    with missing_as_404(TokenNotFoundError):
        old = api.tokens.get(token_id)
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
    expires_at = expiry(now, request.ttl, request.expires_at, None)
    if expires_at is None:
        expires_at = same_lifetime(now, old)
    expires_at = bounded_lifetime(
        principal, expires_at, asked=asked_field(request.ttl, request.expires_at)
    )
    try:
        with missing_as_404(TokenNotFoundError):
            return api.tokens.rotate(
                token_id,
                grace=grace,
                expires_at=expires_at,
                actor=principal.actor,
                not_after=principal.expires_at,
            )
    except TokenStateError as error:
        message = str(error) if reads else _CONFLICT_TEXT.format(id=token_id)
        raise ApiProblem(409, "conflict", message) from None
    except TokenInputError as error:
        raise input_problem(error, gave_expires_at=request.expires_at is not None) from None
    except OverflowError:
        raise ApiProblem(
            422,
            "invalid_request",
            "the new expiry is out of range; give ttl or expires_at",
            field="ttl",
        ) from None
