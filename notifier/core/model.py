"""The domain types: a watched token, its delivery state, a notice, a decision.

Pure data, shared by the policy that decides, the ledger that keeps the state, the sources
that list tokens and the sinks that deliver notices. Nothing here reads a clock, a database
or the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from datetime import datetime, timedelta
from enum import StrEnum

from notifier.core.values import value


class NoticeKind(StrEnum):
    """What a notice says about its token."""

    EXPIRING = "expiring"
    EXPIRED = "expired"
    RENEWED = "renewed"
    RESOLVED = "resolved"  # revoked or deleted: no message, but the UI notification resolves


class CredentialKind(StrEnum):
    """What a watched credential is: the word its warn line uses, and ``kind`` in fields."""

    TOKEN = "token"  # noqa: S105 - a kind's name, not a password. API tokens: the store, sql, file, Vault/OpenBao tokens
    CERTIFICATE = "certificate"  # x509 certificates; the id is the SHA-256 fingerprint
    LEASE = "lease"  # Vault/OpenBao leases (dynamic secrets)
    # AWS IAM access keys: they never expire; "expiry" is their creation plus a maximum age,
    # when they are due for rotation (the line says so, not that AWS expires them).
    ACCESS_KEY = "access_key"

    @property
    def subject(self) -> str:
        """The words the warn line names such a credential with."""
        return _SUBJECTS[self]


_SUBJECTS = {
    CredentialKind.TOKEN: "API Token",
    CredentialKind.CERTIFICATE: "Certificate",
    CredentialKind.LEASE: "Lease",
    CredentialKind.ACCESS_KEY: "Access Key",
}


class StateKind(StrEnum):
    """What a state row last recorded: its last notice's kind, or that the route skipped it."""

    EXPIRING = "expiring"  # the open loop: the sink was told, and nothing has closed it
    EXPIRED = "expired"
    RENEWED = "renewed"
    RESOLVED = "resolved"
    SKIPPED = "skipped"  # the sink's route left the notice out

    @classmethod
    def told(cls, kind: NoticeKind) -> StateKind:
        """The state a notice of *kind* leaves once the sink has it."""
        return _TOLD[kind]

    @classmethod
    def stored(cls, value: str | None) -> StateKind | None:
        """The kind a row stores as text.

        None for none, or for a value this version does not know (written by a later one):
        the row then counts as never told.
        """
        return None if value is None else _STORED.get(value)


_TOLD = {kind: StateKind(kind.value) for kind in NoticeKind}
_STORED = {kind.value: kind for kind in StateKind}
OPEN = StateKind.EXPIRING
SKIPPED = StateKind.SKIPPED


@value
class WatchedToken:
    """A token as a source reports it: what the decision needs and the notice shows."""

    source: str  # "store" for the daemon's own tokens
    token_id: str
    name: str
    expires_at: datetime | None  # None: never expires
    revoked_at: datetime | None = None
    owner: str | None = None
    superseded: bool = False  # rotated, in its grace period: no expiry notices
    created_at: datetime | None = None  # needed for percentage thresholds
    labels: Mapping[str, str] = field(default_factory=dict)
    credential_kind: CredentialKind = CredentialKind.TOKEN

    @property
    def lifetime(self) -> timedelta | None:
        """From creation to expiry, when both are known."""
        if self.created_at is None or self.expires_at is None:
            return None
        return self.expires_at - self.created_at


@value
class Threshold:
    """A point before expiry at which a notice is due: a duration, or a share of the lifetime."""

    label: str  # as configured: "7d", "10%"
    duration: timedelta | None = None
    fraction: float | None = None

    def before_expiry(self, token: WatchedToken, horizon: timedelta) -> timedelta | None:
        """How long before *token*'s expiry this threshold lies (None when unknown)."""
        if self.duration is not None:
            return self.duration
        lifetime = token.lifetime
        if self.fraction is None or lifetime is None or lifetime <= timedelta(0):
            return None
        return min(lifetime * self.fraction, horizon)


@value
class DeliveryState:
    """What one sink has heard about one token, for one expiry."""

    expires_at: datetime | None  # the expiry these facts are about
    last_sent_at: datetime | None = None  # the pass time of the last successful notice
    notices_sent: int = 0  # successful notices for this expiry; numbers the next notice
    attempts: int = 0  # failed attempts since the last success
    last_kind: StateKind | None = None
    last_threshold: timedelta | None = None  # the threshold of the last expiring notice

    @property
    def is_open(self) -> bool:
        """The sink was told the token is expiring, and nothing has closed that yet."""
        return self.last_kind == OPEN


@value
class Snooze:
    """A silence on a token's notices."""

    until: datetime | None  # None: until the token enters a tighter threshold
    threshold: timedelta | None = None  # the threshold it was in when snoozed


@value
class Notice:
    """One message about one token for one sink."""

    id: str  # deterministic: a retry of the same notice reuses it, so receivers can deduplicate
    kind: NoticeKind
    sink: str
    source: str
    token_id: str
    token_name: str
    owner: str | None
    expires_at: datetime | None
    days_left: int  # the X in "less than X days"; 0 for notices about expired tokens
    seconds_left: int
    threshold: timedelta | None  # the threshold crossed (None: the detection window)
    threshold_label: str | None = None  # as configured: "7d", "10%"
    labels: Mapping[str, str] = field(default_factory=dict)
    reason: str | None = None  # for renewed: "rotated", "extended", "no_expiry"
    credential_kind: CredentialKind = CredentialKind.TOKEN


@value
class Decision:
    """What to send now, the state to carry forward, and when to look again."""

    notice: Notice | None
    state: DeliveryState
    next_due_at: datetime | None  # None: nothing scheduled (the loop is closed)
    escalates_at: datetime | None = None  # when the token enters its next tighter threshold
