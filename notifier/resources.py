"""The JSON shape of each resource, shared by the CLI's ``--json`` and the HTTP API.

Times are RFC 3339 in UTC with a ``Z``; lists are arrays.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer

from notifier.runtime.logs import rfc3339

UtcTime = Annotated[datetime, PlainSerializer(rfc3339, return_type=str)]
TokenStatus = Literal["active", "expiring", "expired", "revoked", "superseded"]


class TokenResource(BaseModel):
    """A token's metadata; never its secret or hash."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    id: str
    name: str
    role: str | None
    permissions: list[str]
    owner: str | None
    labels: dict[str, str]
    description: str | None
    created_at: UtcTime
    expires_at: UtcTime | None  # None: never expires
    revoked_at: UtcTime | None  # in the future while a rotation's grace period runs
    last_used_at: UtcTime | None
    rotated_from: str | None
    superseded_by: str | None
    status: TokenStatus
    days_left: int | None  # the X of "less than X days"; None when it never expires or is over


# notifier.core.model.CredentialKind
CredentialKindName = Literal["token", "certificate", "lease", "access_key"]
CredentialStatus = Literal["active", "expiring", "expired", "superseded"]


class CredentialResource(BaseModel):
    """One watched credential: a store token, or what another source found in its last pass."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    kind: CredentialKindName
    source: str  # "store", "vault:prod", "x509"
    id: str  # never the secret: a token's id, a Vault accessor, a certificate's fingerprint
    name: str
    owner: str | None
    labels: dict[str, str]
    expires_at: UtcTime | None  # None: never expires
    days_left: int | None  # the X of "less than X days"; None when it never expires or is over
    status: CredentialStatus
    first_seen: UtcTime  # a store token's creation; else the pass that first found it
    seen_at: UtcTime | None  # the source's last read; None for the store, which is read live


class ExpiryDay(BaseModel):
    """The tokens that expire on one UTC day (not revoked nor superseded)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    date: str  # YYYY-MM-DD
    expiring: int


class TokenSummary(BaseModel):
    """Counts for a page's summary: by status, and expiries per UTC day."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    now: UtcTime
    by_status: dict[TokenStatus, int]
    total: int
    days: list[ExpiryDay]  # from 30 days ago to 90 days ahead, today included


class CreatedToken(TokenResource):
    """A token just created or rotated: the only time its secret is shown."""

    token: str


class VerifiedToken(BaseModel):
    """What ``tokens verify`` and the API's whoami say about a presented secret."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    valid: bool
    reason: Literal["valid", "invalid", "expired", "revoked"]
    id: str | None = None
    name: str | None = None
    role: str | None = None
    permissions: list[str] | None = None
    expires_at: UtcTime | None = None


class AuditEventResource(BaseModel):
    """One entry of the audit trail."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    id: int
    at: UtcTime
    actor: str
    action: str
    token_id: str | None
    token_name: str | None
    details: dict[str, Any] | None


class NotificationResource(BaseModel):
    """A UI notification about one token."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    id: str
    source: str
    token_id: str
    token_name: str
    level: str
    kind: str
    message: str
    hint: str
    expires_at: UtcTime | None
    days_left: int | None
    first_seen: UtcTime
    last_seen: UtcTime
    occurrences: int
    acknowledged_at: UtcTime | None
    resolved_at: UtcTime | None
    active: bool


class DeliveryResource(BaseModel):
    """What one sink has heard about one token: ``notifier deliveries list``."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    source: str
    token_id: str
    sink: str
    expires_at: UtcTime | None
    last_kind: str | None
    last_sent_at: UtcTime | None
    notices_sent: int
    attempts: int  # failures since the last success
    last_attempt_at: UtcTime | None
    last_error: str | None
    next_due_at: UtcTime | None
    leased: bool


class SnoozeResource(BaseModel):
    """A silence on a token's notices."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    id: int
    source: str
    token_id: str
    sink: str | None  # None: every sink
    until: UtcTime | None  # None: until the token enters a tighter threshold
    created_at: UtcTime
    actor: str
