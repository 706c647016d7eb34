"""What a token may hold, checked in one place for the CLI, imports and the HTTP API.

Each refusal is a :class:`TokenInputError` whose message starts with the field's name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Required, TypedDict, Unpack

from notifier.core.durations import format_duration
from notifier.core.limits import EARLIEST_TIME, MAX_LIFETIME, MAX_LIFETIME_TEXT

NAME_MAX = 200
ROLE_MAX = 100
OWNER_MAX = 200
DESCRIPTION_MAX = 2000
PERMISSION_MAX = 100
LABEL_VALUE_MAX = 200
ID_MAX = 64
ALL_PERMISSIONS = "*"
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}")
_PERMISSION = re.compile(r"[^\s]{1,100}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}")


class TokenInputError(ValueError):
    """A token field was refused; the message names the field and says why."""

    @property
    def field(self) -> str:
        """The refused field: the message up to its first ``:`` (``expires_at``)."""
        return str(self).split(":", 1)[0]

    @property
    def reason(self) -> str:
        """The message without the field's name in front."""
        return str(self).split(": ", 1)[-1]


@dataclass(frozen=True, slots=True)
class TokenFields:
    """The fields a caller sets when creating a token."""

    name: str
    expires_at: datetime | None  # None: never expires, only when explicitly asked for
    role: str | None = None
    permissions: tuple[str, ...] = ()
    owner: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    description: str | None = None


def _has_controls(text: str) -> bool:
    if text.isprintable():
        return False  # the common case: no control, format or separator character at all
    return any(unicodedata.category(char) in {"Cc", "Cf", "Zl", "Zp"} for char in text)


def check_text(name: str, value: str | None, limit: int, *, required: bool = False) -> str | None:
    """Strip *value*, refuse control characters and over-long text; None stays None."""
    if value is None:
        if required:
            raise TokenInputError(f"{name}: is required")
        return None
    text = value.strip()
    if not text:
        if required:
            raise TokenInputError(f"{name}: must not be empty")
        return None
    if len(text) > limit:
        raise TokenInputError(f"{name}: longer than {limit} characters")
    if _has_controls(text):
        raise TokenInputError(f"{name}: must not contain control or format characters")
    return text


def check_name(value: str | None) -> str:
    """A token's name: 1-200 printable characters; need not be unique."""
    name = check_text("name", value, NAME_MAX, required=True)
    assert name is not None  # noqa: S101 - required=True
    return name


def check_id(value: str) -> str:
    """An imported token's id: 1-64 letters, digits and ``_.:-``, starting alphanumeric."""
    if not _ID.fullmatch(value):
        raise TokenInputError(
            "id: expected 1-64 letters, digits, '_', '.', ':' or '-', starting with a letter "
            "or digit"
        )
    return value


def check_permissions(values: Iterable[str]) -> tuple[str, ...]:
    """Free-form permission strings without spaces; ``*`` means all. Duplicates collapse."""
    seen: dict[str, None] = {}
    for value in values:
        permission = value.strip()
        if not _PERMISSION.fullmatch(permission) or _has_controls(permission):
            raise TokenInputError(
                f"permissions: {value!r} is not a permission (1-{PERMISSION_MAX} characters, "
                "no spaces)"
            )
        seen[permission] = None
    return tuple(seen)


def check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Labels: keys of letters, digits and ``_.-/``; values of printable text."""
    checked: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY.fullmatch(key):
            raise TokenInputError(
                f"labels: {key!r} is not a label key (letters, digits, '_', '.', '-', '/')"
            )
        if not isinstance(value, str):
            raise TokenInputError(f"labels: the value of {key!r} must be text")
        text = check_text(f"labels.{key}", value, LABEL_VALUE_MAX)
        checked[key] = text or ""
    return checked


def parse_label(text: str) -> tuple[str, str]:
    """Split ``key=value`` as given to ``--label``."""
    key, separator, value = text.partition("=")
    if not separator:
        raise TokenInputError(f"labels: {text!r} is not key=value")
    ((checked_key, checked_value),) = check_labels({key.strip(): value}).items()
    return checked_key, checked_value


def lifetime_text(value: timedelta) -> str:
    """A lifetime for a message: ``90d`` rather than ``12w6d``; Go's form below a day."""
    if value.days and not value.seconds and not value.microseconds:
        return f"{value.days}d"
    return format_duration(value)


class ExpiryBounds(TypedDict, total=False):
    """What bounds an expiry: *now*, and the optional limits of :func:`check_expiry`."""

    now: Required[datetime]
    max_lifetime: timedelta | None
    not_after: datetime | None


def check_fields(fields: TokenFields, **bounds: Unpack[ExpiryBounds]) -> TokenFields:
    """Return *fields* normalised, or raise :class:`TokenInputError` naming the first bad one.

    The expiry must lie in the future and within :data:`~notifier.core.limits.MAX_LIFETIME` of
    *now*, and within *max_lifetime* (``NOTIFIER_TOKEN_MAX_LIFETIME``) when one is set. A token
    that creates or rotates another passes its own expiry as *not_after*: nothing it makes may
    outlive it, and a caller that never expires puts no bound here.
    """
    expires_at = fields.expires_at
    max_lifetime, not_after = bounds.get("max_lifetime"), bounds.get("not_after")
    if expires_at is not None:
        check_expiry(expires_at, **bounds)
    elif max_lifetime is not None:
        raise TokenInputError(
            f"expires_at: is required; tokens live at most {lifetime_text(max_lifetime)} "
            "(NOTIFIER_TOKEN_MAX_LIFETIME)"
        )
    elif not_after is not None:
        raise TokenInputError(
            f"expires_at: is required; a token cannot make one that outlives its own expiry "
            f"({not_after.isoformat()})"
        )
    return TokenFields(
        name=check_name(fields.name),
        expires_at=expires_at,
        role=check_text("role", fields.role, ROLE_MAX),
        permissions=check_permissions(fields.permissions),
        owner=check_text("owner", fields.owner, OWNER_MAX),
        labels=check_labels(fields.labels),
        description=check_text("description", fields.description, DESCRIPTION_MAX),
    )


def check_expiry(
    expires_at: datetime,
    *,
    now: datetime,
    max_lifetime: timedelta | None = None,
    not_after: datetime | None = None,
) -> datetime:
    """Refuse an expiry that is naive, past, beyond the limits, or after *not_after*.

    Aware datetimes compare without converting, so a value near year 9999 with a negative
    offset is refused here instead of overflowing later; the message therefore never converts
    it either.
    """
    if expires_at.tzinfo is None:
        raise TokenInputError("expires_at: needs a timezone (e.g. Z or +02:00)")
    if expires_at < EARLIEST_TIME or expires_at <= now:
        raise TokenInputError(f"expires_at: {expires_at.isoformat()} is not in the future")
    if expires_at > now + MAX_LIFETIME:
        raise TokenInputError(
            f"expires_at: {expires_at.isoformat()} is more than {MAX_LIFETIME_TEXT} away"
        )
    if max_lifetime is not None and expires_at > now + max_lifetime:
        raise TokenInputError(
            f"expires_at: {expires_at.isoformat()} is more than {lifetime_text(max_lifetime)} "
            "away (NOTIFIER_TOKEN_MAX_LIFETIME)"
        )
    if not_after is not None and expires_at > not_after:
        raise TokenInputError(
            f"expires_at: {expires_at.isoformat()} is after the expiry of the token making it "
            f"({not_after.isoformat()}); a token cannot make one that outlives itself"
        )
    return expires_at


def rotated_expiry(
    now: datetime,
    *,
    expires_at: datetime | None,
    ttl: timedelta | None,
    old_lifetime: timedelta | None,
) -> datetime | None:
    """A rotated token's new expiry: *expires_at*, or after *ttl*, or after the old lifetime.

    *old_lifetime* is the rotated token's own (expiry less creation), None if it never expired.
    """
    if expires_at is None and ttl is not None:
        if not timedelta(0) < ttl <= MAX_LIFETIME:
            raise TokenInputError(f"ttl: must be positive and at most {MAX_LIFETIME_TEXT}")
        return now + ttl
    if expires_at is None and old_lifetime is not None:
        if old_lifetime > MAX_LIFETIME:
            raise TokenInputError(
                f"expires_at: the token's own lifetime is more than {MAX_LIFETIME_TEXT}, "
                "too long to carry over to the new one"
            )
        return now + old_lifetime
    return expires_at
