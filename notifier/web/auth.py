"""Who is calling the API, from where, how often, and with which scopes.

Every request under ``/api/`` passes :class:`Gate`, an ASGI middleware, before any route sees
it, in this order:

1. the body limit: more than 64 KiB is 413 (and, after the token, a body that is not
   ``application/json`` is 415);
2. the client address (the peer, or ``X-Forwarded-For`` when the peer is a trusted proxy)
   against ``NOTIFIER_API_ALLOWED_IPS``: 403;
3. the failed authentications of that address (``NOTIFIER_API_AUTH_FAILURE_LIMIT`` a minute):
   past the limit 429 with ``Retry-After``, before the token is looked at, so a throttled
   address cannot test guesses (see :func:`throttle_key`);
4. the token, from ``Authorization: Bearer`` or ``X-API-Key``: the bootstrap key, or a hash
   lookup in the store and a constant-time compare; missing, unknown, expired or revoked is
   401 with ``WWW-Authenticate: Bearer``;
5. the rate limit per token: 429 with ``Retry-After``;
6. the token's last use, noted in memory (see :mod:`notifier.web.lastused`).

Each route then asks for its scope with :func:`requires`: 403 when the token lacks it. Failed
attempts are logged with the token id or a fingerprint of what was presented, never the secret
or a piece of it.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import anyio.to_thread
import structlog
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from notifier.core.clock import Clock
from notifier.db.database import DatabaseUnavailableError
from notifier.resources import VerifiedToken
from notifier.tokens.fields import ALL_PERMISSIONS
from notifier.tokens.lifecycle import TokenStore
from notifier.tokens.secrets import fingerprint
from notifier.web.errors import RETRY_UNAVAILABLE_S, ApiProblem, error_response
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
MAX_BODY_BYTES = 64 * 1024
API_PREFIX = "/api/"
BOOTSTRAP_ACTOR = "bootstrap"
_PRINCIPAL = "notifier.principal"
_CHALLENGE = 'Bearer realm="notifier"'

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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


def parse_address(text: str | None) -> IpAddress | None:
    """An address as a peer or an ``X-Forwarded-For`` hop gives it; None when it is not one.

    IPv4-mapped IPv6 addresses (``::ffff:10.0.0.1``, from dual-stack sockets) become IPv4, so
    that IPv4 CIDRs match them. A port (``10.0.0.1:5000``, ``[::1]:5000``) is dropped.
    """
    if not text:
        return None
    value = text.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def throttle_key(address: IpAddress | None) -> str:
    """What failed authentications are counted by: the address, or its /64 for IPv6.

    One IPv6 host usually holds a whole /64 and can pick a fresh address for every request,
    so counting single IPv6 addresses would throttle nobody.
    """
    if address is None:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _within(address: IpAddress, networks: Sequence[IpNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[IpNetwork]
) -> IpAddress | None:
    """The client's address: the peer, unless the peer is a trusted proxy.

    Through trusted proxies, ``X-Forwarded-For`` is read from the right (the hop the nearest
    proxy added) and the first address that is not itself a trusted proxy is the client. Hops
    to the left of it were written by whoever called that proxy and are not believed.
    """
    address = parse_address(peer)
    if address is None:
        return None
    hops = [hop for hop in (forwarded_for or "").split(",") if hop.strip()]
    while hops and _within(address, trusted):
        hop = parse_address(hops.pop())
        if hop is None:  # a garbled hop: the last proxy we trust is all we know
            break
        address = hop
    return address


@dataclass(frozen=True, slots=True)
class Access:
    """The access rules of the API, from the settings."""

    allowed: tuple[IpNetwork, ...]
    trusted_proxies: tuple[IpNetwork, ...]
    bootstrap_token: str | None

    def allows(self, address: IpAddress | None) -> bool:
        """Whether *address* may use the API; an unknown one only when every address may."""
        if address is None:
            return any(net.prefixlen == 0 for net in self.allowed)
        return _within(address, self.allowed)


class Authenticator:
    """Turn a presented secret into a :class:`Principal`, or refuse it with 401 or 429."""

    def __init__(
        self,
        store: TokenStore,
        clock: Clock,
        access: Access,
        limiter: RateLimiter,
        last_use: LastUse,
        *,
        throttle: FailureThrottle | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._access = access
        self.limiter = limiter
        self.last_use = last_use
        self.throttle = throttle or FailureThrottle(0)

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
        bootstrap = self._access.bootstrap_token
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
        verified = self._store.verify(secret, quiet=True)  # logged below, with the request
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
        self.last_use.record(verified.id, self._clock.now())
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


class Gate:
    """ASGI middleware: body limit for every request; address, token and rate for ``/api/``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        access: Access,
        authenticator: Authenticator,
        ready: Callable[[], str | None],
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self._access = access
        self._authenticator = authenticator
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
                scope[_PRINCIPAL] = await self._admit(scope, headers)
                _require_json(headers)
                send = _no_store(send)
        except ApiProblem as problem:
            await problem.response()(scope, receive, send)
            return
        except DatabaseUnavailableError as error:
            log.error("api.unavailable", path=scope.get("path"), reason=str(error))
            response = error_response(
                503,
                "unavailable",
                "the database does not answer; try again shortly",
                headers={"Retry-After": str(RETRY_UNAVAILABLE_S)},
            )
            await response(scope, receive, send)
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


# Declared so that the OpenAPI document shows both ways of presenting a token; the Gate has
# already checked the token by the time these run.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <token>")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <token>")


def principal_of(request: Request) -> Principal:
    """The caller the Gate admitted."""
    principal = request.scope.get(_PRINCIPAL)
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
