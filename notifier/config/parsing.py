"""The value parsers of the settings: each raises ValueError with the reason an operator needs.

Durations, thresholds, sink and source lists, listener addresses, log levels, database URLs
and networks; and :class:`ConfigError`, the one error every refused setting becomes.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from typing import Annotated, Literal, NamedTuple

from pydantic import AfterValidator, BeforeValidator
from pydantic_settings import NoDecode

from notifier.config.options import OptionError
from notifier.core.durations import DurationError, parse_duration
from notifier.core.limits import MAX_LIFETIME_TEXT, duration_in_range
from notifier.core.model import Threshold
from notifier.db.urls import state_database_url
from notifier.sinks.registry import SINK_KINDS, SinkNameError, parse_sink_name
from notifier.sources.config import parse_source_name

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


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


def between(low: int, high: int, low_means: str = "") -> AfterValidator:
    """Refuse an integer outside ``low..high``; *low_means* says what the lowest value does."""
    lowest = f"{low} ({low_means})" if low_means else str(low)

    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be between {lowest} and {high}")
        return value

    return AfterValidator(check)


def _split_csv(value: object) -> object:
    """Split comma-separated text into stripped parts."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(","))
    return value


def _check_sink_names(value: tuple[str, ...]) -> tuple[str, ...]:
    """At least one sink, each a known kind, none twice."""
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


def _check_source_names(value: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """At least one source when set, each a known kind, none twice."""
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


def _parse_thresholds(value: object) -> object:
    """Comma-separated thresholds: durations (30d) and shares of the lifetime (10%)."""
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


def _parse_http_address(value: object) -> object:
    """``HOST:PORT``, ``[IPv6]:PORT``, or ``off`` (None)."""
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


def _parse_log_level(value: object) -> object:
    """A level name in any case; WARN and FATAL as their stdlib names."""
    if isinstance(value, str):
        level = value.strip().upper()
        level = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(level, level)
        if level not in LOG_LEVELS:
            raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
        return level
    return value


def _lowercase(value: object) -> object:
    """Text stripped and in lower case."""
    return value.strip().lower() if isinstance(value, str) else value


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


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_networks(value: object) -> object:
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


def _check_token_prefix(value: str) -> str:
    """1-16 letters, digits or ``_``, starting with a letter."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,15}", value):
        raise ValueError("expected 1-16 letters, digits or '_', starting with a letter")
    return value


def _check_slice_name(value: str) -> str:
    """One word of letters."""
    if not re.fullmatch(r"[^\W\d_]{1,32}", value):
        raise ValueError("expected one word of letters (e.g. day, hour)")
    return value


# --- the types of the settings, each with its parser --------------------------------------------
# NoDecode: pydantic-settings would otherwise read a list or a NamedTuple as JSON (["x", 1]).

DatabaseUrl = Annotated[str | None, BeforeValidator(state_database_url)]
SliceName = Annotated[str, AfterValidator(_check_slice_name)]
SinkNames = Annotated[
    tuple[str, ...], NoDecode, BeforeValidator(_split_csv), AfterValidator(_check_sink_names)
]
SourceNames = Annotated[
    tuple[str, ...] | None,
    NoDecode,
    BeforeValidator(_split_csv),
    AfterValidator(_check_source_names),
]
Thresholds = Annotated[tuple[Threshold, ...], NoDecode, BeforeValidator(_parse_thresholds)]
LogFormat = Annotated[Literal["text", "json", "logfmt"], BeforeValidator(_lowercase)]
LogLevel = Annotated[str, BeforeValidator(_parse_log_level)]
ListenAddress = Annotated[HttpAddress | None, NoDecode, BeforeValidator(_parse_http_address)]
TokenPrefix = Annotated[str, AfterValidator(_check_token_prefix)]
Networks = Annotated[tuple[IpNetwork, ...], NoDecode, BeforeValidator(_parse_networks)]
