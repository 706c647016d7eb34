"""How a stored token is shown: its status, its days left, its resource for --json and the API."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import RowMapping

from notifier.core.model import WatchedToken
from notifier.core.policy import Policy, days_left
from notifier.resources import TokenResource, TokenStatus
from notifier.runtime.logs import rfc3339

STORE = "store"  # the source name of the daemon's own tokens


def token_resource(row: RowMapping, now: datetime, policy: Policy) -> TokenResource:
    """The resource of one row of the tokens table, as it stands at *now*."""
    token = WatchedToken(
        source=STORE,
        token_id=row["id"],
        name=row["name"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        owner=row["owner"],
        created_at=row["created_at"],  # a share-of-lifetime threshold needs it, as a pass does
    )
    return TokenResource(
        id=token.token_id,
        name=token.name,
        role=row["role"],
        permissions=list(row["permissions"] or []),
        owner=row["owner"],
        labels=dict(row["labels"] or {}),
        description=row["description"],
        created_at=row["created_at"],
        expires_at=token.expires_at,
        revoked_at=token.revoked_at,
        last_used_at=row["last_used_at"],
        rotated_from=row["rotated_from"],
        superseded_by=row["superseded_by"],
        status=token_status(token, row["superseded_by"], now, policy),
        days_left=(
            days_left(token.expires_at, now, policy.log_slice)
            if token.expires_at is not None and token.expires_at > now
            else None
        ),
    )


def token_status(
    token: WatchedToken, superseded_by: str | None, now: datetime, policy: Policy
) -> TokenStatus:
    """Revoked, expired, superseded (rotated, in its grace period), expiring or active."""
    if token.revoked_at is not None and token.revoked_at <= now:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    if superseded_by is not None:
        return "superseded"
    if policy.is_expiring(token, now):
        return "expiring"
    return "active"


def iso(value: datetime | None) -> str | None:
    """A stored time as export and the audit details write it: RFC 3339 UTC, or None."""
    return None if value is None else rfc3339(value)
