"""The first half of the settings: the store, the pass, its sinks and sources, logs, tokens.

:class:`~notifier.config.settings.Settings` adds the daemon's and the web tier's; pydantic
keeps base fields first, so ``config show`` and ``config example`` list them in this order.
Each field's description is what ``config example`` prints beside it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from notifier.config.parsing import (
    DatabaseUrl,
    ListenAddress,
    LogFormat,
    LogLevel,
    NonNegativeDuration,
    PositiveDuration,
    SecondOrMore,
    SinkNames,
    SliceName,
    SourceNames,
    Thresholds,
    TokenPrefix,
    between,
)
from notifier.config.secrets import DatabasePassword, Pepper
from notifier.core.durations import format_in_one_unit
from notifier.sinks.registry import SINK_KINDS


def setting(
    name: str,
    *aliases: str,
    default: Any,
    description: str,
    secret: bool = False,
    example: str | None = None,
) -> Any:
    """Declare a setting read from ``name`` (then ``aliases``)."""
    extra: dict[str, Any] = {"env": name, "aliases": list(aliases), "secret": secret}
    if example is not None:
        extra["example"] = example
    return Field(
        default,
        validation_alias=AliasChoices(name, *aliases),
        description=description,
        json_schema_extra=extra,
        validate_default=True,
    )


class CoreSettings(BaseSettings):
    """The settings of the store, the pass, its sinks and sources, the logs and the tokens."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    database_url: DatabaseUrl = setting(
        "NOTIFIER_DATABASE_URL",
        default=None,
        description=(
            "SQLAlchemy URL of the database. Unset: a SQLite file at "
            "$STATE_DIRECTORY/notifier.db (systemd), else $XDG_STATE_HOME/notifier/notifier.db "
            "(~/.local/state/notifier/notifier.db), created on first use. "
            "postgresql://user@host/db for several replicas. Only sqlite:// and postgresql:// "
            "(psycopg 3) hold notifier's state; the sql source reads other databases."
        ),
        example="sqlite:////var/lib/notifier/notifier.db",
    )
    database_password: DatabasePassword = setting(
        "NOTIFIER_DATABASE_PASSWORD",
        default=None,
        secret=True,
        description="Database password, used when the URL carries none.",
    )
    interval: SecondOrMore = setting(
        "NOTIFIER_INTERVAL",
        "ROX_TOKEN_EXPIRATION_NOTIFIER_INTERVAL",
        default="1h",
        description="How often a check pass runs (at least 1s).",
    )
    backoff_interval: NonNegativeDuration = setting(
        "NOTIFIER_BACKOFF_INTERVAL",
        "ROX_TOKEN_EXPIRATION_NOTIFIER_BACKOFF_INTERVAL",
        default="24h",
        description=(
            "At most one notice per token per sink per this interval while the token stays in "
            "the window; 0 notifies on every pass."
        ),
    )
    detection_window: PositiveDuration = setting(
        "NOTIFIER_DETECTION_WINDOW",
        "ROX_TOKEN_EXPIRATION_DETECTION_WINDOW",
        default="168h",
        description="A token is expiring when it expires within this window from now.",
    )
    log_slice: SecondOrMore = setting(
        "NOTIFIER_LOG_SLICE",
        "ROX_TOKEN_EXPIRATION_LOG_SLICE_DURATION",
        default="24h",
        description='The unit X counts in "will expire in less than X days" (at least 1s).',
    )
    log_slice_name: SliceName = setting(
        "NOTIFIER_LOG_SLICE_NAME",
        "ROX_TOKEN_EXPIRATION_LOG_SLICE_DURATION_NAME",
        default="day",
        description="The word for one slice; the plural adds 's'.",
    )
    sinks: SinkNames = setting(
        "NOTIFIER_SINKS",
        default="log,ui",
        description=(
            "Where notices go, comma-separated: "
            + ", ".join(f"{kind} ({summary})" for kind, summary in SINK_KINDS.items())
            + ". Unset: log,ui plus every sink NOTIFIER_CONFIG_FILE defines."
        ),
    )
    thresholds: Thresholds = setting(
        "NOTIFIER_THRESHOLDS",
        default="",
        description=(
            "Points before expiry that notify, comma-separated: durations (30d,7d,1d) and/or "
            "shares of the token's lifetime (10%). Entering a tighter one notifies at once, "
            "whatever the backoff. Empty: the detection window alone decides."
        ),
        example="30d,7d,1d",
    )
    notify_expired: bool = setting(
        "NOTIFIER_NOTIFY_EXPIRED",
        default=True,
        description=(
            "One notice when a token passes its expiry (if a sink had been warned, or it "
            "expired within the last backoff interval): true or false."
        ),
    )
    retry_deadline: PositiveDuration = setting(
        "NOTIFIER_RETRY_DEADLINE",
        default="2m",
        description=(
            "How long a sink retries a transient failure within one pass (exponential "
            "backoff with jitter, Retry-After honoured) before leaving it to the next pass."
        ),
    )
    retry_attempts: Annotated[int, between(1, 100)] = setting(
        "NOTIFIER_RETRY_ATTEMPTS",
        default=5,
        description="At most this many attempts per notice within one pass.",
    )
    retention: PositiveDuration = setting(
        "NOTIFIER_RETENTION",
        default="90d",
        description=(
            "Resolved notifications, closed delivery state and audit events older than this "
            "are pruned."
        ),
    )
    token_sources: SourceNames = setting(
        "NOTIFIER_SOURCES",
        default=None,
        description=(
            "Where a pass reads tokens, comma-separated: store (the daemon's own), sql or "
            "sql:<label> (a table in another database), file or file:<label> (a JSON, JSONL or "
            "YAML file). Unset: store plus every source NOTIFIER_CONFIG_FILE defines. A source "
            "is configured by NOTIFIER_<KIND>[_<LABEL>]_<OPTION> (e.g. NOTIFIER_SQL_URL, "
            "NOTIFIER_SQL_TABLE, NOTIFIER_SQL_COLUMNS=id=key_id,name=label,expires_at=expires) "
            'or by a [sources."kind:label"] table in the config file; see docs/tokens.md.'
        ),
        example="store,sql:billing",
    )
    config_file: Path | None = setting(
        "NOTIFIER_CONFIG_FILE",
        default=None,
        description=(
            'A TOML file describing sources and sinks ([sources."sql:billing"], '
            '[sinks."webhook:ops"] tables); environment variables override its options.'
        ),
        example="/etc/notifier/notifier.toml",
    )
    log_format: LogFormat = setting(
        "NOTIFIER_LOG_FORMAT",
        default="text",
        description="text (one human line per event), json, or logfmt.",
    )
    log_level: LogLevel = setting(
        "NOTIFIER_LOG_LEVEL",
        default="INFO",
        description=(
            "DEBUG, INFO, WARNING, ERROR or CRITICAL. Above WARNING is refused while the log "
            "sink is on: it would swallow the notices."
        ),
    )
    log_file: Path | None = setting(
        "NOTIFIER_LOG_FILE",
        default=None,
        description=(
            "Also append logs to this file (stderr keeps them too); reopened when rotated away."
        ),
        example="/var/log/notifier/notifier.log",
    )
    http_address: ListenAddress = setting(
        "NOTIFIER_HTTP_ADDRESS",
        default="127.0.0.1:8080",
        description="HOST:PORT of the HTTP listener (/healthz, /readyz, /metrics, the API and "
        "the web page); port 0 picks a free port and logs it; off disables it.",
    )
    token_prefix: TokenPrefix = setting(
        "NOTIFIER_TOKEN_PREFIX",
        default="ntf_",
        description="The prefix of generated token secrets (prefix + 48 hex characters).",
    )
    token_default_ttl: PositiveDuration = setting(
        "NOTIFIER_TOKEN_DEFAULT_TTL",
        default="8760h",
        description="Lifetime of a token created without --ttl or --expires-at (one year).",
    )
    token_pepper: Pepper = setting(
        "NOTIFIER_TOKEN_PEPPER",
        default=None,
        secret=True,
        description=(
            "Optional key for HMAC-SHA-256 token hashes (plain SHA-256 without it). Changing it "
            "invalidates every stored token. Random, 16 bytes or more (openssl rand -hex 32): "
            "a placeholder, or a key too easy to guess (repeats, few different characters), is "
            "refused."
        ),
    )
    token_max_lifetime: PositiveDuration | None = setting(
        "NOTIFIER_TOKEN_MAX_LIFETIME",
        default=None,
        description=(
            "The longest lifetime a new or rotated token may have, from the CLI, an import or "
            "the API. Unset: 100 years, the limit for every token. Through the API a token "
            "can never create or rotate one that expires after itself."
        ),
        example="2160h",
    )

    @field_validator("log_file", mode="before")
    @classmethod
    def _log_file_not_empty(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("empty; leave it unset to log to stderr only")
        return value

    @field_validator("token_max_lifetime")
    @classmethod
    def _max_lifetime_covers_default_ttl(
        cls, value: timedelta | None, info: ValidationInfo
    ) -> timedelta | None:
        default_ttl = info.data.get("token_default_ttl")
        if value is not None and isinstance(default_ttl, timedelta) and default_ttl > value:
            raise ValueError(
                f"shorter than NOTIFIER_TOKEN_DEFAULT_TTL ({format_in_one_unit(default_ttl)}), "
                "the lifetime of a token created without one; lower that as well"
            )
        return value
