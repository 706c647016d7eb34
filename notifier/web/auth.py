"""Who is calling the API, and with which scopes: the token, its rate, its caller's failures.

:class:`notifier.web.middleware.Gate` admits every request under ``/api/`` before any route
sees it (the body limit, the address, then this module):

1. the failed authentications of the client's address (``NOTIFIER_API_AUTH_FAILURE_LIMIT`` a
   minute): past the limit 429 with ``Retry-After``, before the token is looked at, so a
   throttled address cannot test guesses (see :func:`notifier.web.access.throttle_key`);
2. the token, from ``Authorization: Bearer`` or ``X-API-Key``: the bootstrap key, or a hash
   lookup in the store and a constant-time compare; missing, unknown, expired or revoked is
   401 with ``WWW-Authenticate: Bearer``;
3. the rate limit per token: 429 with ``Retry-After``;
4. the token's last use, noted in memory (see :mod:`notifier.web.lastused`).

Each route then asks for its scope with :func:`requires`: 403 when the token lacks it. Failed
attempts are logged with the token id or a fingerprint of what was presented, never the secret
or a piece of it.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

import structlog
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from notifier.core.clock import Clock
from notifier.resources import VerifiedToken
from notifier.tokens.fields import ALL_PERMISSIONS
from notifier.tokens.lifecycle import TokenStore
from notifier.tokens.secrets import fingerprint
from notifier.web.access import Access
from notifier.web.errors import ApiProblem
from notifier.web.lastused import LastUse
from notifier.web.ratelimit import FailureThrottle, RateLimiter

log = structlog.get_logger("notifier.web")

Scope_ = Literal["tokens:read", "tokens:write", "notifications:read", "notifications:write"]
SCOPES: tuple[Scope_, ...] = (
    "tokens:read",
    "tokens:write",
    "notifications:read",
    "notifications:write",
)
BOOTSTRAP_ACTOR = "bootstrap"
PRINCIPAL_KEY = "notifier.principal"  # where the Gate leaves the caller in the ASGI scope
_CHALLENGE = 'Bearer realm="notifier"'


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: a stored token, or the bootstrap key."""

    token_id: str | None  # None for the bootstrap key
    name: str
    role: str | None
    scopes: frozenset[str]
    expires_at: datetime | None

    @property
    def bootstrap(self) -> bool:
        """Whether this is the bootstrap key rather than a stored token."""
        return self.token_id is None

    @property
    def actor(self) -> str:
        """How the audit trail names this caller: ``token:<id>``, or ``bootstrap``."""
        return BOOTSTRAP_ACTOR if self.token_id is None else f"token:{self.token_id}"

    @property
    def rate_key(self) -> str:
        """What the rate limit counts by."""
        return self.actor

    def grants(self, scope: str) -> bool:
        """Whether the caller holds *scope* (``*`` holds every scope)."""
        return ALL_PERMISSIONS in self.scopes or scope in self.scopes

    def may_grant(self, permissions: Iterable[str]) -> bool:
        """Whether the caller may give a token *permissions*: only what it holds itself."""
        return ALL_PERMISSIONS in self.scopes or set(permissions) <= self.scopes

    def describe(self) -> VerifiedToken:
        """What whoami answers: id, name, role, scopes and expiry; nothing secret."""
        return VerifiedToken(
            valid=True,
            reason="valid",
            id=self.token_id,
            name=self.name,
            role=self.role,
            permissions=sorted(self.scopes),
            expires_at=self.expires_at,
        )


@dataclass
class Authenticator:
    """Turn a presented secret into a :class:`Principal`, or refuse it with 401 or 429."""

    store: TokenStore
    clock: Clock
    access: Access
    limiter: RateLimiter
    last_use: LastUse
    throttle: FailureThrottle = field(default_factory=lambda: FailureThrottle(0), kw_only=True)

    def refuse_throttled(self, key: str, *, client: str, path: str) -> None:
        """Raise 429 when *key* (see :func:`throttle_key`) failed too often this minute."""
        throttled = self.throttle.check(key)
        if throttled is None:
            return
        if throttled.announce:  # once a window, not once per refused guess
            log.warning(
                "auth.throttled",
                client=client,
                key=key,
                path=path,
                limit=self.throttle.limit,
                retry_after=throttled.retry_after,
            )
        raise ApiProblem(
            429,
            "rate_limited",
            f"more than {self.throttle.limit} failed authentications in a minute from this "
            f"address; retry in {throttled.retry_after}s",
            headers={"Retry-After": str(throttled.retry_after)},
        )

    def authenticate(
        self, secret: str | None, *, client: str, path: str, key: str | None = None
    ) -> Principal:
        """Check *secret*; raise :class:`ApiProblem` (401, 429) or return the caller.

        A presented secret that is refused counts against *key* (the client's
        :func:`throttle_key`); a request without any token is no guess and does not.
        """
        if secret is None:
            log.info("auth.failed", reason="missing", client=client, path=path)
            raise _unauthorized(
                "no token: send Authorization: Bearer <token> or X-API-Key: <token>", None
            )
        principal = self._bootstrap(secret, client=client, path=path)
        if principal is None:
            try:
                principal = self._stored(secret, client=client, path=path)
            except ApiProblem:
                self.throttle.fail(key if key is not None else client)
                raise
        wait = self.limiter.acquire(principal.rate_key)
        if wait is not None:
            log.warning(
                "auth.rate_limited",
                token_id=principal.token_id or BOOTSTRAP_ACTOR,
                client=client,
                path=path,
                retry_after=wait,
            )
            raise ApiProblem(
                429,
                "rate_limited",
                f"more than {self.limiter.limit} requests in an hour for this token; "
                f"retry in {wait}s",
                headers={"Retry-After": str(wait)},
            )
        return principal

    def _bootstrap(self, secret: str, *, client: str, path: str) -> Principal | None:
        bootstrap = self.access.bootstrap_token
        if bootstrap is None or not hmac.compare_digest(
            secret.encode("utf-8"), bootstrap.encode("utf-8")
        ):
            return None
        log.warning(
            "auth.bootstrap_used",
            client=client,
            path=path,
            hint="create a token with the scopes you need, then remove NOTIFIER_BOOTSTRAP_TOKEN",
        )
        return Principal(
            token_id=None,
            name="bootstrap",
            role="bootstrap",
            scopes=frozenset({ALL_PERMISSIONS}),
            expires_at=None,
        )

    def _stored(self, secret: str, *, client: str, path: str) -> Principal:
        verified = self.store.verify(secret, quiet=True)  # logged below, with the request
        if not verified.valid or verified.id is None:
            where: dict[str, Any] = (
                {"token_id": verified.id}
                if verified.id is not None
                else {"fingerprint": fingerprint(secret.strip())}
            )
            log.warning("auth.failed", reason=verified.reason, client=client, path=path, **where)
            message = {
                "expired": "the token has expired",
                "revoked": "the token has been revoked",
            }.get(verified.reason, "the token is not valid")
            raise _unauthorized(message, "invalid_token")
        self.last_use.record(verified.id, self.clock.now())
        return Principal(
            token_id=verified.id,
            name=verified.name or "",
            role=verified.role,
            scopes=frozenset(verified.permissions or ()),
            expires_at=verified.expires_at,
        )


def _unauthorized(message: str, error: str | None) -> ApiProblem:
    challenge = _CHALLENGE if error is None else f'{_CHALLENGE}, error="{error}"'
    return ApiProblem(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def presented_secret(headers: dict[str, str]) -> str | None:
    """The token of ``Authorization: Bearer`` (first) or ``X-API-Key``; None when neither."""
    authorization = headers.get("authorization", "").strip()
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            # No Bearer token was presented, so the challenge carries no error code (RFC 6750).
            raise _unauthorized(
                "unsupported Authorization header: send Authorization: Bearer <token>", None
            )
        return credentials.strip()
    api_key = headers.get("x-api-key", "").strip()
    return api_key or None


# already checked the token by the time these run.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <token>")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <token>")


def principal_of(request: Request) -> Principal:
    """The caller the Gate admitted."""
    principal = request.scope.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):  # pragma: no cover - the Gate runs first
        raise _unauthorized("no token", None)
    return principal


def requires(scope: Scope_ | None) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, provided it holds *scope* (None: any valid token)."""

    async def dependency(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_api_key)],
    ) -> Principal:
        del bearer, api_key
        principal = principal_of(request)
        if scope is not None and not principal.grants(scope):
            log.warning(
                "auth.scope_refused",
                token_id=principal.token_id or BOOTSTRAP_ACTOR,
                scope=scope,
                path=request.url.path,
            )
            raise ApiProblem(403, "forbidden", f"the token lacks the scope {scope}")
        return principal

    return dependency


# The callers of each scope, as route parameters.
TokenReader = Annotated[Principal, Depends(requires("tokens:read"))]
TokenWriter = Annotated[Principal, Depends(requires("tokens:write"))]
NotificationReader = Annotated[Principal, Depends(requires("notifications:read"))]
NotificationWriter = Annotated[Principal, Depends(requires("notifications:write"))]
