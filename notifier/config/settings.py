"""Settings from the environment: the only module that reads it.

Each setting has one ``NOTIFIER_`` name, and the StackRox seed's ``ROX_`` name where it had one;
the ``NOTIFIER_`` name wins when both are set. Secrets may also come from ``NAME_FILE`` or from
``$CREDENTIALS_DIRECTORY/<name>`` (systemd's ``LoadCredential=``), where ``<name>`` is the
variable without its ``NOTIFIER_`` prefix, in lower case (``token_pepper``).

Every bad value is a :class:`ConfigError` naming the variable and the value (a secret is named,
never shown; a password inside a URL shows as ``***``); the CLI turns it into exit code 78 so
that systemd's ``RestartPreventExitStatus=78`` stops a crash loop.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    SkipValidation,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from notifier.config.weak_secrets import KEY_ADVICE, is_placeholder, key_weakness
from notifier.core.durations import DurationError, format_in_one_unit, parse_duration
from notifier.core.limits import MAX_LIFETIME_TEXT, duration_in_range
from notifier.core.model import Threshold
from notifier.db.database import prepare_threshold
from notifier.sinks.config import SECRET_SINK_OPTIONS, SINK_OPTIONS, SinkConfig, check_sink
from notifier.sinks.registry import SINK_KINDS, SinkNameError, parse_sink_name
from notifier.sources.config import (
    SECRET_OPTIONS,
    SOURCE_KINDS,
    OptionError,
    SourceConfig,
    check_source,
    parse_source_name,
)

PREFIX = "NOTIFIER_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Inputs that are NOTIFIER_-prefixed but are not settings, so the typo check leaves them alone.
_NOT_SETTINGS = frozenset({"NOTIFIER_TOKEN"})


class ConfigError(Exception):
    """The configuration is invalid; each line names a variable and its value."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class HttpAddress(NamedTuple):
    """Where the HTTP listener binds."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


# --- value parsers: each raises ValueError with the reason an operator needs -------------------


def _duration(value: object) -> object:
    if isinstance(value, str):
        try:
            value = parse_duration(value)
        except DurationError as error:
            raise ValueError(str(error)) from None
    if isinstance(value, timedelta) and not duration_in_range(value):
        # Anything longer overflows the first time a pass adds it to now (year 9999).
        raise ValueError(
            "must not be negative" if value < timedelta(0) else f"longer than {MAX_LIFETIME_TEXT}"
        )
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be greater than zero")
    return value


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("must not be negative")
    return value


def _at_least_one_second(value: timedelta) -> timedelta:
    if value < timedelta(seconds=1):
        raise ValueError("must be at least 1s")
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
NonNegativeDuration = Annotated[Duration, AfterValidator(_not_negative)]
SecondOrMore = Annotated[Duration, AfterValidator(_at_least_one_second)]


def _csv(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(","))
    return value


def _sink_names(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value or value == ("",):
        raise ValueError(f"empty; name at least one sink ({', '.join(SINK_KINDS)})")
    seen: set[str] = set()
    for name in value:
        try:
            parse_sink_name(name)
        except SinkNameError as error:
            raise ValueError(str(error)) from None
        if name in seen:
            raise ValueError(f"sink {name!r} is listed twice")
        seen.add(name)
    return value


def _source_names(value: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not value or value == ("",):
        raise ValueError("empty; name at least one source (store, sql, file)")
    for name in value:
        try:
            parse_source_name(name)
        except OptionError as error:
            raise ValueError(error.message) from None
    if len(set(value)) != len(value):
        raise ValueError("a source is listed twice")
    return value


def _thresholds(value: object) -> object:
    if not isinstance(value, str):
        return value
    thresholds = [
        _threshold(part) for part in (piece.strip() for piece in value.split(",")) if part
    ]
    labels = [threshold.label for threshold in thresholds]
    if len(set(labels)) != len(labels):
        raise ValueError("a threshold is listed twice")
    return tuple(thresholds)


def _threshold(part: str) -> Threshold:
    if part.endswith("%"):
        try:
            percent = float(part[:-1])
        except ValueError:
            raise ValueError(f"{part!r} is not a percentage") from None
        if not 0 < percent < 100:  # noqa: PLR2004
            raise ValueError(f"{part!r}: a percentage must be between 0 and 100")
        return Threshold(label=part, fraction=percent / 100)
    try:
        duration = parse_duration(part)
    except DurationError as error:
        raise ValueError(f"{part!r}: {error}") from None
    if duration <= timedelta(0):
        raise ValueError(f"{part!r} must be greater than zero")
    if not duration_in_range(duration):
        raise ValueError(f"{part!r}: longer than {MAX_LIFETIME_TEXT}")
    return Threshold(label=part, duration=duration)


def _http_address(value: object) -> object:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() == "off":
        return None
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]\s]+):(\d{1,5})", text)
    if match is None:
        raise ValueError("expected HOST:PORT, [IPv6]:PORT or 'off'")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:  # noqa: PLR2004 - the largest TCP port
        raise ValueError(f"port {port} is out of range (0-65535)")
    if match.group(1):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    return HttpAddress(host, port)


def _log_level(value: object) -> object:
    if isinstance(value, str):
        level = value.strip().upper()
        level = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(level, level)
        if level not in LOG_LEVELS:
            raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
        return level
    return value


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


# The databases notifier keeps its own state in, each with the one driver it ships.
_STATE_DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg"}
_SUPPORTED_DATABASES = "supported: sqlite, postgresql"


def _database_url(value: object) -> object:
    # Messages never repeat the URL: _describe shows it once, with its password redacted.
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("expected a database URL")
    text = value.strip()
    if not text:
        raise ValueError("empty; leave it unset for the embedded SQLite default")
    try:
        url = make_url(text)
    except ArgumentError:
        raise ValueError(
            f"not a database URL ({_SUPPORTED_DATABASES}; e.g. "
            "sqlite:////var/lib/notifier/notifier.db or postgresql://user@host/db)"
        ) from None
    except ValueError:  # SQLAlchemy's int() of the port
        raise ValueError(
            f"not a database URL: the port after the host must be a number ({_SUPPORTED_DATABASES})"
        ) from None
    url = normalise_database_url(url)
    _check_state_database(url)
    if url.port is not None and not 0 < url.port < 65536:  # noqa: PLR2004 - the TCP port range
        raise ValueError(f"port {url.port} is out of range (1-65535)")
    if url.get_backend_name() == "sqlite" and not url.database:
        raise ValueError("a SQLite URL needs a file path (in-memory databases are not shared)")
    if "prepare_threshold" in url.query:
        if url.get_backend_name() != "postgresql":
            raise ValueError("prepare_threshold is an option of PostgreSQL URLs (psycopg)")
        prepare_threshold(url.query["prepare_threshold"])  # raises ValueError naming it
    return url.render_as_string(hide_password=False)


def _check_state_database(url: URL) -> None:
    """Refuse a database or driver other than the two notifier keeps its own state in."""
    try:
        url.get_dialect()
    except NoSuchModuleError:
        raise ValueError(
            f"unknown database driver {url.drivername!r} ({_SUPPORTED_DATABASES})"
        ) from None
    backend = url.get_backend_name()
    if backend not in _STATE_DRIVERS:
        raise ValueError(
            f"unsupported database {backend!r} for notifier's own state ({_SUPPORTED_DATABASES}); "
            "to read tokens from such a database, use the sql source and its own URL "
            "(NOTIFIER_SQL_URL)"
        )
    driver = url.get_driver_name()
    if driver != _STATE_DRIVERS[backend]:
        raise ValueError(
            f"driver {driver!r} is not supported: write {backend}:// for the "
            f"{_STATE_DRIVERS[backend]} driver notifier ships ({_SUPPORTED_DATABASES})"
        )


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# A password may sit in the URL's user part, or in a password= pair (a query, a libpq string).
_PASSWORD_PAIR = re.compile(
    r"(?P<key>(?:password|passwd|pwd)\s*=\s*)(?P<value>[^&;\s]*)", re.IGNORECASE
)


def redact_url(text: str) -> str:
    """*text*, a database URL or what was meant as one, with every password in it as ``***``.

    Works on text that does not parse, so that an error can show what was given: whatever
    lies between the first ``:`` after the scheme and the last ``@`` is masked (an unencoded
    ``@`` or ``/`` in a password stays hidden; at worst a little more than the password is),
    and so are ``password=`` pairs.
    """
    scheme, separator, rest = text.partition("://")
    if not separator or not _SCHEME.fullmatch(scheme):
        scheme, separator, rest = "", "", text
    colon = rest.find(":")
    at = rest.rfind("@")
    if 0 <= colon < at:
        rest = f"{rest[: colon + 1]}***{rest[at:]}"
    return _PASSWORD_PAIR.sub(r"\g<key>***", scheme + separator + rest)


def normalise_database_url(url: URL) -> URL:
    """Map the URL spellings operators use onto the drivers we ship (psycopg 3)."""
    if url.drivername in {"postgres", "postgresql"}:
        return url.set(drivername="postgresql+psycopg")
    return url


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(value: object) -> object:
    """Comma-separated CIDRs (a bare address is its own /32 or /128)."""
    if not isinstance(value, str):
        return value
    networks: list[IpNetwork] = []
    for part in (piece.strip() for piece in value.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=True))
        except ValueError as error:
            raise ValueError(f"{part!r} is not a CIDR such as 10.0.0.0/8 or ::1: {error}") from None
    return tuple(networks)


def _token_prefix(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,15}", value):
        raise ValueError("expected 1-16 letters, digits or '_', starting with a letter")
    return value


def _slice_name(value: str) -> str:
    if not re.fullmatch(r"[^\W\d_]{1,32}", value):
        raise ValueError("expected one word of letters (e.g. day, hour)")
    return value


# The keys notifier itself verifies with: held to the entropy floor of weak_secrets.py.
_KEYS = ("token_pepper", "bootstrap_token")
# What leaving each secret unset means, for the message that refuses an empty one.
_UNSET_MEANS = {
    "database_password": "when the URL carries the password or none is needed",
    "token_pepper": "to hash tokens without a pepper (plain SHA-256)",
    "heartbeat_url": "for no heartbeat ping",
    "bootstrap_token": "once a real token exists",
}


def _setting(
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


class Settings(BaseSettings):
    """Everything the daemon and the CLI can be told through the environment."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    database_url: Annotated[str | None, BeforeValidator(_database_url)] = _setting(
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
    database_password: SecretStr | None = _setting(
        "NOTIFIER_DATABASE_PASSWORD",
        default=None,
        secret=True,
        description="Database password, used when the URL carries none.",
    )
    interval: SecondOrMore = _setting(
        "NOTIFIER_INTERVAL",
        "ROX_TOKEN_EXPIRATION_NOTIFIER_INTERVAL",
        default="1h",
        description="How often a check pass runs (at least 1s).",
    )
    backoff_interval: NonNegativeDuration = _setting(
        "NOTIFIER_BACKOFF_INTERVAL",
        "ROX_TOKEN_EXPIRATION_NOTIFIER_BACKOFF_INTERVAL",
        default="24h",
        description=(
            "At most one notice per token per sink per this interval while the token stays in "
            "the window; 0 notifies on every pass."
        ),
    )
    detection_window: PositiveDuration = _setting(
        "NOTIFIER_DETECTION_WINDOW",
        "ROX_TOKEN_EXPIRATION_DETECTION_WINDOW",
        default="168h",
        description="A token is expiring when it expires within this window from now.",
    )
    log_slice: SecondOrMore = _setting(
        "NOTIFIER_LOG_SLICE",
        "ROX_TOKEN_EXPIRATION_LOG_SLICE_DURATION",
        default="24h",
        description='The unit X counts in "will expire in less than X days" (at least 1s).',
    )
    log_slice_name: Annotated[str, AfterValidator(_slice_name)] = _setting(
        "NOTIFIER_LOG_SLICE_NAME",
        "ROX_TOKEN_EXPIRATION_LOG_SLICE_DURATION_NAME",
        default="day",
        description="The word for one slice; the plural adds 's'.",
    )
    sinks: Annotated[
        tuple[str, ...], NoDecode, BeforeValidator(_csv), AfterValidator(_sink_names)
    ] = _setting(
        "NOTIFIER_SINKS",
        default="log,ui",
        description=(
            "Where notices go, comma-separated: "
            + ", ".join(f"{kind} ({summary})" for kind, summary in SINK_KINDS.items())
            + ". Unset: log,ui plus every sink NOTIFIER_CONFIG_FILE defines."
        ),
    )
    thresholds: Annotated[tuple[Threshold, ...], NoDecode, BeforeValidator(_thresholds)] = _setting(
        "NOTIFIER_THRESHOLDS",
        default="",
        description=(
            "Points before expiry that notify, comma-separated: durations (30d,7d,1d) and/or "
            "shares of the token's lifetime (10%). Entering a tighter one notifies at once, "
            "whatever the backoff. Empty: the detection window alone decides."
        ),
        example="30d,7d,1d",
    )
    notify_expired: bool = _setting(
        "NOTIFIER_NOTIFY_EXPIRED",
        default=True,
        description=(
            "One notice when a token passes its expiry (if a sink had been warned, or it "
            "expired within the last backoff interval): true or false."
        ),
    )
    retry_deadline: PositiveDuration = _setting(
        "NOTIFIER_RETRY_DEADLINE",
        default="2m",
        description=(
            "How long a sink retries a transient failure within one pass (exponential "
            "backoff with jitter, Retry-After honoured) before leaving it to the next pass."
        ),
    )
    retry_attempts: int = _setting(
        "NOTIFIER_RETRY_ATTEMPTS",
        default=5,
        description="At most this many attempts per notice within one pass.",
    )
    retention: PositiveDuration = _setting(
        "NOTIFIER_RETENTION",
        default="90d",
        description=(
            "Resolved notifications, closed delivery state and audit events older than this "
            "are pruned."
        ),
    )
    token_sources: Annotated[
        tuple[str, ...] | None, NoDecode, BeforeValidator(_csv), AfterValidator(_source_names)
    ] = _setting(
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
    config_file: Path | None = _setting(
        "NOTIFIER_CONFIG_FILE",
        default=None,
        description=(
            'A TOML file describing sources and sinks ([sources."sql:billing"], '
            '[sinks."webhook:ops"] tables); environment variables override its options.'
        ),
        example="/etc/notifier/notifier.toml",
    )
    log_format: Annotated[Literal["text", "json", "logfmt"], BeforeValidator(_lower)] = _setting(
        "NOTIFIER_LOG_FORMAT",
        default="text",
        description="text (one human line per event), json, or logfmt.",
    )
    log_level: Annotated[str, BeforeValidator(_log_level)] = _setting(
        "NOTIFIER_LOG_LEVEL",
        default="INFO",
        description=(
            "DEBUG, INFO, WARNING, ERROR or CRITICAL. Above WARNING is refused while the log "
            "sink is on: it would swallow the notices."
        ),
    )
    log_file: Path | None = _setting(
        "NOTIFIER_LOG_FILE",
        default=None,
        description=(
            "Also append logs to this file (stderr keeps them too); reopened when rotated away."
        ),
        example="/var/log/notifier/notifier.log",
    )
    # NoDecode: a NamedTuple would otherwise be read as JSON (["x", 1] passed as an address).
    http_address: Annotated[HttpAddress | None, NoDecode, BeforeValidator(_http_address)] = (
        _setting(
            "NOTIFIER_HTTP_ADDRESS",
            default="127.0.0.1:8080",
            description="HOST:PORT of the HTTP listener (/healthz, /readyz, /metrics, the API and "
            "the web page); port 0 picks a free port and logs it; off disables it.",
        )
    )
    token_prefix: Annotated[str, AfterValidator(_token_prefix)] = _setting(
        "NOTIFIER_TOKEN_PREFIX",
        default="ntf_",
        description="The prefix of generated token secrets (prefix + 48 hex characters).",
    )
    token_default_ttl: PositiveDuration = _setting(
        "NOTIFIER_TOKEN_DEFAULT_TTL",
        default="8760h",
        description="Lifetime of a token created without --ttl or --expires-at (one year).",
    )
    token_pepper: SecretStr | None = _setting(
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
    token_max_lifetime: PositiveDuration | None = _setting(
        "NOTIFIER_TOKEN_MAX_LIFETIME",
        default=None,
        description=(
            "The longest lifetime a new or rotated token may have, from the CLI, an import or "
            "the API. Unset: 100 years, the limit for every token. Through the API a token "
            "can never create or rotate one that expires after itself."
        ),
        example="2160h",
    )
    claim_lease: SecondOrMore = _setting(
        "NOTIFIER_CLAIM_LEASE",
        default="10m",
        description=(
            "How long a replica holds a claimed delivery before another may retry it; longer "
            "than a sink's whole retry deadline."
        ),
    )
    batch_size: int = _setting(
        "NOTIFIER_BATCH_SIZE",
        default=500,
        description="Tokens per keyset batch (and per short transaction) in a pass.",
    )
    shutdown_timeout: PositiveDuration = _setting(
        "NOTIFIER_SHUTDOWN_TIMEOUT",
        default="30s",
        description="On SIGTERM, how long a running pass may take to finish before exit.",
    )
    heartbeat_url: SecretStr | None = _setting(
        "NOTIFIER_HEARTBEAT_URL",
        default=None,
        secret=True,
        description=(
            "A dead-man's switch (healthchecks.io style): this http(s) URL is fetched after each "
            "pass that ran with no failed delivery, so that its silence alerts someone. Unset: "
            "no ping. A secret, since whoever knows it can fake the all-clear."
        ),
    )
    api_rate_limit: int = _setting(
        "NOTIFIER_API_RATE_LIMIT",
        default=1000,
        description=(
            "Requests per token per rolling hour the HTTP API accepts before answering 429 "
            "with Retry-After; counted in each process, not shared by replicas. 0: no limit."
        ),
    )
    api_allowed_ips: Annotated[tuple[IpNetwork, ...], NoDecode, BeforeValidator(_networks)] = (
        _setting(
            "NOTIFIER_API_ALLOWED_IPS",
            default="0.0.0.0/0,::/0",
            description=(
                "Client addresses (CIDRs, comma-separated) the HTTP API answers; others get 403. "
                "Health, metrics and the page itself are not restricted."
            ),
        )
    )
    trusted_proxies: Annotated[tuple[IpNetwork, ...], NoDecode, BeforeValidator(_networks)] = (
        _setting(
            "NOTIFIER_TRUSTED_PROXIES",
            default="",
            description=(
                "Proxies (CIDRs, comma-separated) whose X-Forwarded-For names the client for "
                "NOTIFIER_API_ALLOWED_IPS; from any other peer the header is ignored."
            ),
            example="10.0.0.0/8",
        )
    )
    api_last_used_interval: SecondOrMore = _setting(
        "NOTIFIER_API_LAST_USED_INTERVAL",
        default="60s",
        description=(
            "The API keeps tokens' last-use times in memory and writes them in one batched "
            "UPDATE at most this often (and at shutdown), not once per request."
        ),
    )
    api_auth_failure_limit: int = _setting(
        "NOTIFIER_API_AUTH_FAILURE_LIMIT",
        default=20,
        description=(
            "Failed authentications per client address (IPv6: per /64) per rolling minute; past "
            "it the API answers 429 with Retry-After to that address, before any token is "
            "checked, a valid one included. Other addresses are not affected. Behind a proxy, "
            "set NOTIFIER_TRUSTED_PROXIES, or every client shares the proxy's count. 0: no "
            "throttle."
        ),
    )
    api_max_streams_per_token: int = _setting(
        "NOTIFIER_API_MAX_STREAMS_PER_TOKEN",
        default=5,
        description=(
            "Live notification streams one token may hold open at once (each process); one "
            "more is answered 429."
        ),
    )
    http_header_timeout: SecondOrMore = _setting(
        "NOTIFIER_HTTP_HEADER_TIMEOUT",
        default="10s",
        description=(
            "How long a client may take to send a request's headers (however slowly it "
            "trickles them), and how long an idle keep-alive connection stays open, before the "
            "listener closes it; whole seconds, at least 1s."
        ),
    )
    http_max_connections: int = _setting(
        "NOTIFIER_HTTP_MAX_CONNECTIONS",
        default=1000,
        description=(
            "Connections the HTTP listener serves at once; further requests are answered 503 "
            "until some close."
        ),
    )
    bootstrap_token: SecretStr | None = _setting(
        "NOTIFIER_BOOTSTRAP_TOKEN",
        default=None,
        secret=True,
        description=(
            "Bootstrap only: a random key (32 or more characters; openssl rand -hex 32) the "
            "HTTP API accepts with every scope, so a fresh install can create its first token; "
            "a placeholder or a key easy to guess is refused. Each use is logged. Remove it "
            "once a real token exists."
        ),
    )

    # Where systemd and the XDG spec say state lives; read here so nothing else reads os.environ.
    state_directory: Path | None = Field(None, validation_alias="STATE_DIRECTORY")
    xdg_state_home: Path | None = Field(None, validation_alias="XDG_STATE_HOME")
    # What systemd tells a service (sd_notify(3), sd_watchdog_enabled(3), systemd.exec(5)); kept
    # as text: sdnotify.py and logs.py ignore values they cannot use instead of refusing to start.
    notify_socket: str | None = Field(None, validation_alias="NOTIFY_SOCKET")
    watchdog_usec: str | None = Field(None, validation_alias="WATCHDOG_USEC")
    watchdog_pid: str | None = Field(None, validation_alias="WATCHDOG_PID")
    journal_stream: str | None = Field(None, validation_alias="JOURNAL_STREAM")
    # The checked token sources; load_settings() fills this from NOTIFIER_SOURCES, the
    # per-source variables and NOTIFIER_CONFIG_FILE.
    source_configs: SkipValidation[tuple[SourceConfig, ...]] = Field((), exclude=True)
    # The checked sinks, from NOTIFIER_SINKS, the per-sink variables and the config file.
    sink_configs: SkipValidation[tuple[SinkConfig, ...]] = Field((), exclude=True)

    @field_validator("log_file", mode="before")
    @classmethod
    def _log_file_not_empty(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("empty; leave it unset to log to stderr only")
        return value

    @field_validator("heartbeat_url")
    @classmethod
    def _heartbeat_url_is_http(cls, value: SecretStr | None) -> SecretStr | None:
        # The message never repeats the value: the URL is the secret.
        if value is None:
            return None
        scheme, _, rest = value.get_secret_value().strip().partition("://")
        if scheme.lower() not in {"http", "https"} or not rest.split("/", 1)[0]:
            raise ValueError("expected an http:// or https:// URL with a host")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("*", mode="before")
    @classmethod
    def _secret_is_given(cls, value: object, info: ValidationInfo) -> object:
        # An empty NAME= would otherwise turn the secret off (no pepper) while `config show`
        # prints ******** as if one were set; an empty NAME_FILE is refused the same way.
        meta = _meta(cls.model_fields[info.field_name]) if info.field_name else {}
        if not meta.get("secret") or not isinstance(value, str | SecretStr):
            return value
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not text.strip():
            raise ValueError(f"empty; leave it unset {_UNSET_MEANS.get(info.field_name or '', '')}")
        if is_placeholder(text):
            advice = KEY_ADVICE if info.field_name in _KEYS else "put the real value in its place"
            raise ValueError(f"the placeholder from the project's examples; {advice}")
        return value

    @field_validator("bootstrap_token")
    @classmethod
    def _bootstrap_token_is_strong(cls, value: SecretStr | None) -> SecretStr | None:
        # The message never repeats the value: it is a key with every scope.
        if value is None:
            return None
        text = value.get_secret_value().strip()
        if len(text) < 32 or any(char.isspace() for char in text):  # noqa: PLR2004
            raise ValueError("expected 32 or more characters without spaces")
        return SecretStr(text)

    @field_validator(*_KEYS)
    @classmethod
    def _key_is_hard_to_guess(cls, value: SecretStr | None) -> SecretStr | None:
        # The message never repeats the value, nor says how close it came.
        if value is None:
            return None
        weakness = key_weakness(value.get_secret_value())
        if weakness is not None:
            raise ValueError(weakness)
        return value

    @field_validator("api_rate_limit")
    @classmethod
    def _api_rate_limit_range(cls, value: int) -> int:
        if not 0 <= value <= 1_000_000:  # noqa: PLR2004
            raise ValueError("must be between 0 (no limit) and 1000000")
        return value

    @field_validator("api_allowed_ips")
    @classmethod
    def _api_allowed_ips_not_empty(cls, value: tuple[IpNetwork, ...]) -> tuple[IpNetwork, ...]:
        if not value:
            raise ValueError("empty; leave it unset to allow every address")
        return value

    @field_validator("api_auth_failure_limit")
    @classmethod
    def _api_auth_failure_limit_range(cls, value: int) -> int:
        if not 0 <= value <= 1_000_000:  # noqa: PLR2004
            raise ValueError("must be between 0 (no throttle) and 1000000")
        return value

    @field_validator("api_max_streams_per_token")
    @classmethod
    def _api_max_streams_range(cls, value: int) -> int:
        if not 1 <= value <= 1000:  # noqa: PLR2004
            raise ValueError("must be between 1 and 1000")
        return value

    @field_validator("http_max_connections")
    @classmethod
    def _http_max_connections_range(cls, value: int) -> int:
        if not 1 <= value <= 100_000:  # noqa: PLR2004
            raise ValueError("must be between 1 and 100000")
        return value

    @field_validator("retry_attempts")
    @classmethod
    def _retry_attempts_range(cls, value: int) -> int:
        if not 1 <= value <= 100:  # noqa: PLR2004
            raise ValueError("must be between 1 and 100")
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

    @field_validator("batch_size")
    @classmethod
    def _batch_size_range(cls, value: int) -> int:
        if not 1 <= value <= 2000:  # noqa: PLR2004 - keeps a batch upsert under SQLite's 32766 parameters
            raise ValueError("must be between 1 and 2000")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read init values, then the environment, then secret files and credentials."""
        del dotenv_settings, file_secret_settings  # systemd's EnvironmentFile= does that job
        return (init_settings, env_settings, _SecretFilesSource(settings_cls))

    # --- derived values ---------------------------------------------------------------------

    def default_database_path(self) -> Path:
        """The SQLite file used when NOTIFIER_DATABASE_URL is unset."""
        if self.state_directory is not None:
            # systemd may pass several directories separated by ':'; the first is ours.
            return Path(str(self.state_directory).split(":", 1)[0]) / "notifier.db"
        base = self.xdg_state_home or Path.home() / ".local" / "state"
        return base / "notifier" / "notifier.db"

    def shown_database_url(self) -> str:
        """The effective database URL with every password in it redacted, for logs and output."""
        return redact_url(self.effective_database_url().render_as_string(hide_password=True))

    def effective_database_url(self) -> URL:
        """The database URL with the default applied and the password secret filled in."""
        if self.database_url is None:
            url = URL.create("sqlite+pysqlite", database=str(self.default_database_path()))
        else:
            url = make_url(self.database_url)
        if self.database_password is not None and url.password is None:
            url = url.set(password=self.database_password.get_secret_value())
        return url


class _SecretFilesSource(PydanticBaseSettingsSource):
    """Secrets from ``NAME_FILE`` or ``$CREDENTIALS_DIRECTORY/<name>``, below ``NAME`` itself."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: :meth:`__call__` reads every secret at once."""
        del field
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field in self.settings_cls.model_fields.values():
            meta = _meta(field)
            if not meta.get("secret"):
                continue
            origin = secret_origin(meta["env"])
            if origin is not None and origin.path is not None:
                values[meta["env"]] = _read_secret_file(origin, meta["env"])
        return values


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a setting's value came from."""

    variable: str | None  # the environment variable, or None for the default
    path: Path | None = None  # for secrets read from a file
    raw: str | None = None  # the text as given, for error messages (never for secrets)

    def describe(self) -> str:
        """Say where the value came from, for ``config show``."""
        if self.variable is None:
            return "default"
        if self.path is not None:
            return f"{self.variable} ({self.path})"
        return self.variable


def _meta(field: FieldInfo) -> dict[str, Any]:
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def secret_origin(env: str) -> Origin | None:
    """Find a secret's value: ``NAME``, ``NAME_FILE`` or the systemd credential, in that order."""
    direct = os.environ.get(env)
    file_variable = f"{env}_FILE"
    file_path = os.environ.get(file_variable)
    if direct is not None and file_path is not None:
        raise ConfigError([f"{env} and {file_variable} are both set; set only one"])
    if direct is not None:
        return Origin(env)
    if file_path is not None:
        if not file_path.strip():
            raise ConfigError([f"{file_variable}='': empty; name the file holding the secret"])
        return Origin(file_variable, Path(file_path))
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        path = Path(credentials) / env.removeprefix(PREFIX).lower()
        if path.is_file():
            return Origin("$CREDENTIALS_DIRECTORY", path)
    return None


def secret_where(env: str, origin: Origin) -> str:
    """Name where the secret *env* was read, for a message: never its value."""
    if origin.path is None:
        return origin.variable or env
    if origin.variable == "$CREDENTIALS_DIRECTORY":
        return f"{env} ($CREDENTIALS_DIRECTORY/{origin.path.name})"
    return f"{origin.variable}={str(origin.path)!r}"


def _read_secret_file(origin: Origin, env: str) -> str:
    assert origin.path is not None  # noqa: S101 - callers pass file origins only
    where = secret_where(env, origin)
    try:
        text = origin.path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError([f"{where}: cannot read the secret: {reason}"]) from None
    secret = text.removesuffix("\n").removesuffix("\r")
    if not secret.strip():
        raise ConfigError([f"{where}: the file is empty"])
    return secret


def _value_origin(field: FieldInfo) -> Origin:
    meta = _meta(field)
    if not meta:
        return Origin(None)
    for variable in [meta["env"], *meta["aliases"]]:
        if variable in os.environ:
            raw = None if meta["secret"] else os.environ[variable]
            return Origin(variable, raw=raw)
    if meta["secret"]:
        return secret_origin(meta["env"]) or Origin(None)
    return Origin(None)


def origins() -> dict[str, Origin]:
    """Where each setting came from, by field name."""
    return {name: _value_origin(field) for name, field in Settings.model_fields.items()}


def _field_for(location: object) -> str | None:
    for name, field in Settings.model_fields.items():
        meta = _meta(field)
        if location == name or (meta and location in [meta["env"], *meta["aliases"]]):
            return name
    return None


def load_settings() -> Settings:
    """Read and check the settings; raise :class:`ConfigError` naming each bad variable."""
    try:
        settings = Settings()
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
    problems: list[str] = []
    level = settings.log_level
    if "log" in settings.sinks and LOG_LEVELS.index(level) > LOG_LEVELS.index("WARNING"):
        variable = _value_origin(Settings.model_fields["log_level"]).variable
        problems.append(
            f"{variable}={level!r}: above WARNING while the log sink is on, which would "
            "swallow the notices (use WARNING or lower, or drop 'log' from NOTIFIER_SINKS)"
        )
    if settings.retry_deadline >= settings.claim_lease:
        problems.append(
            f"NOTIFIER_RETRY_DEADLINE={shown_duration(settings, 'retry_deadline')!r}: must be "
            f"shorter than NOTIFIER_CLAIM_LEASE ({shown_duration(settings, 'claim_lease')}), or "
            "another replica could take over a delivery still being retried"
        )
    if problems:
        raise ConfigError(problems)
    document = _read_config_file(settings)
    sinks_given = _value_origin(Settings.model_fields["sinks"]).variable is not None
    return settings.model_copy(
        update={
            "source_configs": _load_instances(
                _SOURCES, settings.token_sources, ("store",), document.get("sources", {})
            ),
            "sink_configs": _load_instances(
                _SINKS,
                settings.sinks if sinks_given else None,
                settings.sinks,
                document.get("sinks", {}),
            ),
        }
    )


_CONFIG_TABLES = ("sources", "sinks")


def _read_config_file(settings: Settings) -> dict[str, dict[str, dict[str, Any]]]:
    """Parse NOTIFIER_CONFIG_FILE; only the tables notifier knows are allowed."""
    if settings.config_file is None:
        return {}
    path = settings.config_file
    where = f"NOTIFIER_CONFIG_FILE={str(path)!r}"
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError([f"{where}: cannot read it: {error.strerror}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError([f"{where}: not valid TOML: {error}"]) from None
    unknown = sorted(set(document) - set(_CONFIG_TABLES))
    if unknown:
        raise ConfigError(
            [f"{where}: unknown table or key {unknown[0]!r} (known: {', '.join(_CONFIG_TABLES)})"]
        )
    for table in _CONFIG_TABLES:
        section = document.get(table, {})
        if not isinstance(section, dict) or not all(isinstance(v, dict) for v in section.values()):
            raise ConfigError(
                [f'{where}: [{table}] must hold one table per instance ([{table}."name"])']
            )
    return document


@dataclass(frozen=True, slots=True)
class _Section:
    """A kind of configured instance: token sources, or sinks."""

    table: str  # the config file's table: "sources", "sinks"
    noun: str
    options: Callable[[str], tuple[str, ...]]  # instance name -> its option names
    secrets: frozenset[str]
    check: Callable[[str, dict[str, Any]], Any]


def _source_option_names(name: str) -> tuple[str, ...]:
    kind, _ = parse_source_name(name)
    return SOURCE_KINDS[kind]


def _sink_option_names(name: str) -> tuple[str, ...]:
    kind, _ = parse_sink_name(name)
    return SINK_OPTIONS[kind]


_SOURCES = _Section("sources", "source", _source_option_names, SECRET_OPTIONS, check_source)
_SINKS = _Section("sinks", "sink", _sink_option_names, SECRET_SINK_OPTIONS, check_sink)


def instance_prefix(name: str) -> str:
    """``sql:billing`` -> ``NOTIFIER_SQL_BILLING_``: where an instance's variables start."""
    return "NOTIFIER_" + name.upper().replace(":", "_").replace("-", "_") + "_"


def _load_instances(
    section: _Section,
    explicit: tuple[str, ...] | None,
    default: tuple[str, ...],
    from_file: dict[str, dict[str, Any]],
) -> tuple[Any, ...]:
    """Check every enabled instance of *section*; raise :class:`ConfigError` naming what is wrong.

    The enabled instances are the variable's list when it is set, else the defaults plus every
    instance the config file defines. Options come from the file's ``[table."name"]``, each
    overridden by its ``NOTIFIER_<KIND>[_<LABEL>]_<OPTION>`` variable (secrets also from
    ``_FILE`` or the credentials directory).
    """
    for name in from_file:
        try:
            section.options(name)
        except ValueError as error:
            message = getattr(error, "message", str(error))
            raise ConfigError(
                [f'NOTIFIER_CONFIG_FILE [{section.table}."{name}"]: {message}']
            ) from None
    names = explicit or (*default, *(name for name in from_file if name not in default))
    configs: list[Any] = []
    for name in names:
        options, origin = _instance_options(section, name, from_file.get(name, {}))
        try:
            configs.append(section.check(name, options))
        except OptionError as error:
            if error.option in origin:
                where = origin[error.option]
            elif error.option is not None:
                where = instance_prefix(name) + error.option.upper()
            else:
                where = f"{section.noun} {name!r}"
            raise ConfigError([f"{where}: {error.message}"]) from None
    return tuple(configs)


def _instance_options(
    section: _Section, name: str, from_file: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """An instance's options (file first, then each variable over it) and where each came from."""
    prefix = instance_prefix(name)
    options = dict(from_file)
    origin = {
        option: f'NOTIFIER_CONFIG_FILE [{section.table}."{name}"] {option}' for option in options
    }
    for option in section.options(name):
        variable = prefix + option.upper()
        if option in section.secrets:
            found = secret_origin(variable)
            if found is not None:
                options[option] = (
                    os.environ[variable]
                    if found.path is None
                    else _read_secret_file(found, variable)
                )
                origin[option] = secret_where(variable, found)
        elif variable in os.environ:
            options[option] = os.environ[variable]
            origin[option] = f"{variable}={os.environ[variable]!r}"
    for option in section.secrets & set(options):
        # Every secret, whatever its kind: never empty, never one of our placeholders.
        value = options[option]
        if isinstance(value, str) and not value.strip():
            raise ConfigError([f"{origin[option]}: empty; leave it unset instead"])
        values = value if isinstance(value, list) else [value]
        if any(isinstance(item, str) and is_placeholder(item) for item in values):
            message = "the placeholder from the project's examples; put the real value in its place"
            raise ConfigError([f"{origin[option]}: {message}"])
    return options, origin


def instance_variables(settings: Settings) -> set[str]:
    """The per-instance variables the enabled sources and sinks read, for the typo check."""
    known: set[str] = set()
    for section, configs in (
        (_SOURCES, settings.source_configs),
        (_SINKS, settings.sink_configs),
    ):
        for config in configs:
            prefix = instance_prefix(config.name)
            for option in section.options(config.name):
                known.add(prefix + option.upper())
                if option in section.secrets:
                    known.add(prefix + option.upper() + "_FILE")
    return known


def _describe(error: ValidationError) -> list[str]:
    lines: list[str] = []
    for item in error.errors():
        location = item["loc"][0] if item["loc"] else None
        field_name = _field_for(location)
        message = str(item["msg"]).removeprefix("Value error, ")
        if field_name is None:
            lines.append(f"invalid configuration: {message}")
            continue
        meta = _meta(Settings.model_fields[field_name])
        origin = _value_origin(Settings.model_fields[field_name])
        variable = origin.variable or meta.get("env")
        if origin.raw is not None:
            raw = redact_url(origin.raw) if field_name in _MAY_HOLD_PASSWORDS else origin.raw
            lines.append(f"{variable}={raw!r}: {message}")
        elif origin.variable is None:
            lines.append(f"{variable} (default): {message}")
        elif meta.get("secret"):
            lines.append(f"{secret_where(meta['env'], origin)}: {message}")
        else:
            lines.append(f"{variable}: {message}")
    return lines


# Settings that are not secrets but may carry one (a URL's password): shown redacted.
_MAY_HOLD_PASSWORDS = frozenset({"database_url"})


def presented_token() -> str | None:
    """The secret ``tokens verify`` checks when given through NOTIFIER_TOKEN (not a setting)."""
    value = os.environ.get("NOTIFIER_TOKEN")
    return value.strip() if value and value.strip() else None


def unknown_variables(settings: Settings | None = None) -> list[tuple[str, str | None]]:
    """``NOTIFIER_*`` variables that name no setting, each with the closest known name."""
    known: set[str] = set(_NOT_SETTINGS)
    if settings is not None:
        known |= instance_variables(settings)
    for field in Settings.model_fields.values():
        meta = _meta(field)
        if meta:
            known.add(meta["env"])
            if meta["secret"]:
                known.add(f"{meta['env']}_FILE")
    found: list[tuple[str, str | None]] = []
    for variable in sorted(os.environ):
        if variable.startswith(PREFIX) and variable not in known:
            close = difflib.get_close_matches(variable, sorted(known), n=1)
            found.append((variable, close[0] if close else None))
    return found


@dataclass(frozen=True, slots=True)
class ShownSetting:
    """One line of ``config show``."""

    variable: str
    value: str
    source: str
    secret: bool


def show(settings: Settings) -> list[ShownSetting]:
    """The effective settings, where each came from, secrets redacted."""
    shown: list[ShownSetting] = []
    where = origins()
    for name, field in Settings.model_fields.items():
        meta = _meta(field)
        if not meta:
            continue
        value = getattr(settings, name)
        source = where[name].describe()
        if name == "database_url":
            rendered = settings.shown_database_url()
            if settings.database_url is None:
                source = "default"
        elif name == "token_sources" and settings.source_configs:
            rendered, source = _shown_list(
                [config.name for config in settings.source_configs], ("store",), where[name]
            )
        elif name == "sinks" and settings.sink_configs:
            rendered, source = _shown_list(
                [config.name for config in settings.sink_configs], settings.sinks, where[name]
            )
        elif isinstance(value, timedelta):
            rendered = shown_duration(settings, name)
        else:
            rendered = _render(value)
        shown.append(ShownSetting(meta["env"], rendered, source, bool(meta["secret"])))
    shown.extend(_show_instances(settings))
    return shown


def shown_duration(settings: Settings, name: str) -> str:
    """The duration setting *name* as the operator wrote it: ``8760h`` stays ``8760h``.

    The text as given when it came from a variable, else the default as the model writes it;
    only a value from neither (set in code) is rendered, in the largest unit that divides it.
    """
    field = Settings.model_fields[name]
    value = getattr(settings, name)
    origin = _value_origin(field)
    written = origin.raw if origin.raw is not None else None
    if origin.variable is None and isinstance(field.default, str):
        written = field.default
    if written is not None and _parses_to(written, value):
        return written.strip()
    return format_in_one_unit(value) if isinstance(value, timedelta) else _render(value)


def _parses_to(text: str, value: object) -> bool:
    try:
        return parse_duration(text) == value
    except DurationError:
        return False


def _shown_list(names: list[str], defaults: tuple[str, ...], origin: Origin) -> tuple[str, str]:
    """An instance list as it takes effect, and where it came from (the file may add to it)."""
    source = origin.describe()
    if origin.variable is None and any(name not in defaults for name in names):
        source = "default + NOTIFIER_CONFIG_FILE"
    return ",".join(names), source


def _show_instances(settings: Settings) -> list[ShownSetting]:
    """Each configured option of each source and sink, as its variable, secrets redacted."""
    document = _read_config_file(settings)
    shown: list[ShownSetting] = []
    for section, configs in ((_SOURCES, settings.source_configs), (_SINKS, settings.sink_configs)):
        for config in configs:
            from_file = document.get(section.table, {}).get(config.name, {})
            options, origin = _instance_options(section, config.name, from_file)
            for option in section.options(config.name):
                if option not in options:
                    continue
                secret = option in section.secrets
                value = options[option]
                rendered = "********" if secret else _render_option(value)
                where = origin[option].split("=", 1)[0]
                shown.append(
                    ShownSetting(
                        instance_prefix(config.name) + option.upper(), rendered, where, secret
                    )
                )
    return shown


def _render_option(value: object) -> str:
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict):
        return ",".join(f"{key}={item}" for key, item in value.items())
    return str(value)


def _render(value: object) -> str:
    if isinstance(value, SecretStr):
        return "********"
    if value is None:
        return ""
    if isinstance(value, timedelta):
        return format_in_one_unit(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple) and not isinstance(value, HttpAddress):
        return ",".join(part.label if isinstance(part, Threshold) else str(part) for part in value)
    return str(value)


def example_env() -> str:
    """Render ``config.example.env`` from the settings model."""
    lines = [
        "# notifier configuration: every setting, its default, and what it does.",
        "# Generated by `notifier config example`; a test fails when this file drifts.",
        "# Uncomment a line to change a value. Durations use Go's syntax (1h30m, 500ms) plus d, w.",
        "",
    ]
    for field in Settings.model_fields.values():
        meta = _meta(field)
        if not meta:
            continue
        lines.extend(f"# {line}" for line in _wrap(field.description or "", 96))
        if meta["aliases"]:
            lines.append(f"# Also read as {', '.join(meta['aliases'])} (this name wins).")
        if meta["secret"]:
            credential = meta["env"].removeprefix(PREFIX).lower()
            lines.append(
                f"# Secret: or {meta['env']}_FILE=/path, or $CREDENTIALS_DIRECTORY/{credential}."
            )
        default = field.default
        shown_default = "" if default is None else str(default)
        if default is None and "example" in meta:
            lines.append(f"#{meta['env']}={meta['example']}")
        else:
            lines.append(f"#{meta['env']}={shown_default}")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _wrap(text: str, width: int) -> list[str]:
    words = text.split()
    lines: list[str] = []
    current = ""
    for word in words:
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines
