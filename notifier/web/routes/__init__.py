"""The HTTP API under ``/api/v1``: whoami here, then tokens, notifications, audit, credentials.

Every route runs behind :class:`notifier.web.middleware.Gate` and names its scope with
:func:`notifier.web.auth.requires`. Answers are the resources of :mod:`notifier.resources`,
the same JSON as the CLI's ``--json``; errors are :class:`notifier.web.errors.ApiError`.
Every route refuses a scalar query parameter given twice (:mod:`notifier.web.routes.queries`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from notifier.resources import VerifiedToken
from notifier.web.api import PREFIX, WebApi
from notifier.web.auth import Principal, requires
from notifier.web.errors import ERROR_RESPONSES
from notifier.web.routes.audit import audit_routes
from notifier.web.routes.credentials import credential_routes
from notifier.web.routes.notifications import notification_routes
from notifier.web.routes.queries import SingleValuedQuery
from notifier.web.routes.tokens import token_routes


def api_router(api: WebApi) -> APIRouter:
    """The routes of ``/api/v1``."""
    router = APIRouter(
        prefix=PREFIX, responses=ERROR_RESPONSES, dependencies=[Depends(SingleValuedQuery())]
    )

    @router.get(
        "/auth/whoami",
        tags=["auth"],
        summary="The presented token: id, name, role, scopes and expiry",
    )
    def whoami(
        principal: Annotated[Principal, Depends(requires(None))],
    ) -> VerifiedToken:
        return principal.describe()

    router.include_router(token_routes(api))
    router.include_router(notification_routes(api))
    router.include_router(audit_routes(api))
    router.include_router(credential_routes(api))
    return router
