"""The audit trail under ``/api/v1/audit``: who changed which token, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from notifier.audit import page_events
from notifier.resources import AuditEventResource
from notifier.web.api import WebApi
from notifier.web.auth import TokenReader
from notifier.web.routes.paging import DEFAULT_PAGE, PAGED, Cursor, Limit, paged


def audit_routes(api: WebApi) -> APIRouter:
    """The audit route: scope tokens:read, as the tokens it is about."""
    router = APIRouter(tags=["audit"])

    @router.get(
        "/audit",
        summary="Audit events, newest first, a page at a time (scope tokens:read)",
        responses=PAGED,
    )
    def audit_events(
        *,
        principal: TokenReader,
        request: Request,
        response: Response,
        token_id: Annotated[
            str | None, Query(max_length=255, description="only this token's events")
        ] = None,
        action: Annotated[
            str | None,
            Query(max_length=32, description="only this action: create, revoke, rotate, ..."),
        ] = None,
        limit: Limit = DEFAULT_PAGE,
        cursor: Cursor = None,
    ) -> list[AuditEventResource]:
        del principal
        return paged(
            request,
            response,
            lambda: page_events(
                api.database, token_id=token_id, action=action, limit=limit, cursor=cursor
            ),
        )

    return router
