"""The request bodies of the API; answers reuse the resources in :mod:`notifier.resources`.

Request models forbid unknown fields, so a misspelt ``expiry`` is a 422 naming it rather than
a token that silently gets the default lifetime. Durations use the CLI's syntax (``30d``,
``168h``, ``1h30m``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Protocol, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from notifier.core.durations import DurationError, parse_duration
from notifier.core.limits import MAX_DURATION, MAX_LIFETIME_TEXT

# Documented, not enforced by the model: the validator's own message ("not a duration: '3
# days' (examples: ...)") says more than a regular expression would.
DURATION_PATTERN = r"^[+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d|w))+)$"
_DURATION_TEXT = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        examples=["30d", "168h", "1h30m"],
        json_schema_extra={"pattern": DURATION_PATTERN},
    ),
]


def duration(text: str, *, allow_zero: bool = False) -> timedelta:
    """Parse an API duration; raise ValueError saying why it is refused."""
    try:
        value = parse_duration(text)
    except DurationError as error:
        raise ValueError(str(error)) from None
    if value < timedelta(0) or (value == timedelta(0) and not allow_zero):
        raise ValueError(f"{text!r} must be greater than zero" + (" or 0" if allow_zero else ""))
    if value > MAX_DURATION:  # a century keeps every date arithmetic in range
        raise ValueError(f"{text!r} is longer than {MAX_LIFETIME_TEXT}")
    return value


def _lifetime(text: str | None) -> str | None:
    if text is not None:
        duration(text)
    return text


def _grace(text: str | None) -> str | None:
    if text is not None:
        duration(text, allow_zero=True)
    return text


# Checked after the type, as a whole: a refusal is the field's own error, not one per branch
# of the union.
_Ttl = Annotated[_DURATION_TEXT | None, AfterValidator(_lifetime)]
_Grace = Annotated[_DURATION_TEXT | None, AfterValidator(_grace)]


class _Lifetime(Protocol):
    ttl: str | None
    expires_at: datetime | None


_Model = TypeVar("_Model", bound=_Lifetime)


def _ttl_or_expiry(model: _Model) -> _Model:
    if model.ttl is not None and model.expires_at is not None:
        raise ValueError("give ttl or expires_at, not both")
    return model


class TokenCreate(BaseModel):
    """``POST /api/v1/tokens``: a new token.

    Without ``ttl`` or ``expires_at`` it gets the default lifetime (NOTIFIER_TOKEN_DEFAULT_TTL).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        max_length=200, examples=["ci-deploy"], json_schema_extra={"minLength": 1, "pattern": r"\S"}
    )
    role: str | None = Field(None, max_length=100)
    permissions: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list, max_length=100, examples=[["tokens:read"]]
    )
    owner: str | None = Field(None, max_length=200, examples=["ops@example.com"])
    labels: dict[str, Annotated[str, Field(max_length=200)]] = Field(
        default_factory=dict, max_length=100, examples=[{"team": "platform"}]
    )
    description: str | None = Field(None, max_length=2000)
    ttl: _Ttl = None
    expires_at: AwareDatetime | None = None

    _one_lifetime = model_validator(mode="after")(_ttl_or_expiry)


class TokenRotate(BaseModel):
    """``POST /api/v1/tokens/{id}/rotate``: the old token is revoked now, or after ``grace``.

    The new one expires after ``ttl``, at ``expires_at``, or after the old token's lifetime.
    """

    model_config = ConfigDict(extra="forbid")

    grace: _Grace = None
    ttl: _Ttl = None
    expires_at: AwareDatetime | None = None

    _one_lifetime = model_validator(mode="after")(_ttl_or_expiry)
