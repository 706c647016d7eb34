"""Every watched credential under ``/api/v1/credentials``: the store's tokens and the rest.

What each source found in its last pass (notifier/credentials.py), paged and filtered as
tokens are. Scope tokens:read: these are the credentials the daemon warns about.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from notifier.credentials.listing import KINDS, STATUSES, CredentialFilter, SortName
from notifier.resources import CredentialKindName, CredentialResource, CredentialStatus
from notifier.web.api import WebApi
from notifier.web.auth import TokenReader
from notifier.web.routes.paging import DEFAULT_PAGE, PAGED, Cursor, Limit, paged
from notifier.web.routes.queries import (
    ExpiresAfter,
    ExpiresBefore,
    ExpiringWithin,
    Labels,
    Owner,
    Search,
    list_filters,
)


def _credential_filter(
    *,
    kind: Annotated[
        list[CredentialKindName] | None,
        Query(description="only these kinds (repeatable): token, certificate, lease, access_key"),
    ] = None,
    status: Annotated[
        list[CredentialStatus] | None,
        Query(description="only these statuses (repeatable); default: all of them"),
    ] = None,
    source: Annotated[
        str | None,
        Query(max_length=64, description="only this source: `store`, `vault:prod`, `x509`"),
    ] = None,
    owner: Owner = None,
    label: Labels = None,
    expiring_within: ExpiringWithin = None,
    expires_after: ExpiresAfter = None,
    expires_before: ExpiresBefore = None,
    q: Search = None,
) -> CredentialFilter:
    """The filters of the list, from its query; 422 naming a parameter it refuses."""
    shared = list_filters(label, expiring_within, expires_after, expires_before)
    return CredentialFilter(
        kinds=frozenset(kind) if kind else frozenset(KINDS),
        statuses=frozenset(status) if status else frozenset(STATUSES),
        source=source,
        owner=owner,
        labels=shared.labels,
        expiring_within=shared.expiring_within,
        expires_after=shared.expires_after,
        expires_before=shared.expires_before,
        search=q,
    )


Filters = Annotated[CredentialFilter, Depends(_credential_filter)]
Sort = Annotated[
    SortName, Query(description="expires_at (never-expiring last) or name; -: descending")
]


def credential_routes(api: WebApi) -> APIRouter:
    """The list of every watched credential: scope tokens:read."""
    router = APIRouter(tags=["credentials"])

    @router.get(
        "/credentials",
        summary="Every watched credential, soonest expiry first, a page at a time "
        "(scope tokens:read)",
        description=(
            "The store's tokens (all but the revoked) and what every other source found in "
            "its last pass: kind, source, name, id, expiry and days left. `seen_at` is when "
            "that source was last read; the store's tokens are read as they stand."
        ),
        responses=PAGED,
    )
    def list_credentials(
        *,
        principal: TokenReader,
        request: Request,
        response: Response,
        wanted: Filters,
        sort: Sort = "expires_at",
        limit: Limit = DEFAULT_PAGE,
        cursor: Cursor = None,
    ) -> list[CredentialResource]:
        del principal
        return paged(
            request,
            response,
            lambda: api.credentials.page(
                wanted, now=api.clock.now(), sort=sort, limit=limit, cursor=cursor
            ),
        )

    return router
