"""The checks every kind's options share: the error naming the option, lists, durations, zones.

A source or sink instance is named ``kind`` or ``kind:label``. Its options come from
``NOTIFIER_<KIND>[_<LABEL>]_<OPTION>`` variables or a ``[sources."kind:label"]`` /
``[sinks."kind:label"]`` table of the TOML file at ``NOTIFIER_CONFIG_FILE``; config/instances.py
gathers them, and each kind's module checks its own. Each refusal is an :class:`OptionError`
naming the option, which config/instances.py turns into a line naming the variable or the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from notifier.core.durations import DurationError, parse_duration
from notifier.core.limits import MAX_LIFETIME_TEXT, duration_in_range


class OptionError(ValueError):
    """An option of a source or sink is missing or wrong."""

    def __init__(self, option: str | None, message: str) -> None:
        super().__init__(message)
        self.option = option
        self.message = message


def option_list(option: str, value: object) -> tuple[str, ...]:
    """A comma-separated list (or a TOML array of strings), each entry stripped and non-empty."""
    if value is None:
        return ()
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = [item.strip() for item in value]
    else:
        raise OptionError(option, "expected a comma-separated list")
    if any(not item for item in items):
        raise OptionError(option, "has an empty entry")
    return tuple(items)


def option_duration(option: str, value: object, default: str) -> timedelta:
    """A positive duration within the limits, *default* when unset."""
    text = default if value is None else value
    if not isinstance(text, str):
        raise OptionError(option, "expected a duration such as 10s")
    try:
        duration = parse_duration(text)
    except DurationError as error:
        raise OptionError(option, str(error)) from None
    if duration <= timedelta(0):
        raise OptionError(option, "must be greater than zero")
    if not duration_in_range(duration):
        raise OptionError(option, f"longer than {MAX_LIFETIME_TEXT}")
    return duration


def option_timezone(value: object) -> ZoneInfo:
    """The ``timezone`` option: an IANA zone, UTC when unset."""
    if value is None:
        return ZoneInfo("UTC")
    if not isinstance(value, str) or not value.strip():
        raise OptionError("timezone", "expected an IANA zone name such as UTC or Europe/Berlin")
    try:
        return ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise OptionError("timezone", f"unknown time zone {value!r}") from None


@dataclass(frozen=True, slots=True)
class KindOptions:
    """The options a kind of source or sink takes, and which of them are secrets."""

    names: tuple[str, ...]
    # Secrets may also come from _FILE or $CREDENTIALS_DIRECTORY, and are never shown.
    secrets: frozenset[str] = frozenset()
