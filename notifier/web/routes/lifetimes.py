"""How long a token made or rotated through the API lives: asked for, defaulted, bounded.

A token cannot outlive the token that made it, nor last more than the century
(:data:`notifier.core.limits.MAX_DURATION`); an expiry the store refuses is a 422 naming the
field the request gave.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from notifier.core.limits import MAX_DURATION, MAX_LIFETIME_TEXT
from notifier.resources import TokenResource
from notifier.runtime.logs import rfc3339
from notifier.tokens.fields import TokenInputError
from notifier.web.auth import Principal
from notifier.web.errors import ApiProblem
from notifier.web.schemas import duration

_FIELD = re.compile(r"([a-z_]+(?:\.[^:\s]+)?): ")


def input_problem(error: TokenInputError, *, gave_expires_at: bool = True) -> ApiProblem:
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


def expiry(
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


def bounded_lifetime(
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


def asked_field(ttl: str | None, expires_at: datetime | None) -> str | None:
    """The field the request gave the expiry in (``expires_at``, ``ttl``); None for neither."""
    if expires_at is not None:
        return "expires_at"
    return "ttl" if ttl is not None else None


def same_lifetime(now: datetime, old: TokenResource) -> datetime | None:
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
