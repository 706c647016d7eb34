"""Durations in Go's syntax (``1h30m``, ``500ms``, ``1.5h``) plus days and weeks.

Go's ``time.ParseDuration`` is what StackRox reads its ``ROX_`` variables with, so operators
moving over keep their values; ``d`` (24h) and ``w`` (7d) are added because token lifetimes are
counted in days. A bare ``0`` is accepted, as in Go; any other number needs a unit.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

_UNIT_MICROSECONDS: dict[str, int] = {
    "ns": 0,  # below our resolution; kept so Go values parse, then rounded
    "us": 1,
    "µs": 1,
    "μs": 1,
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 604_800_000_000,
}
_NANOSECONDS_PER_MICROSECOND = 1000

_COMPONENT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d|w)")
_EXAMPLES = "examples: 1h, 90m, 1h30m, 500ms, 1.5h, 7d, 2w"


class DurationError(ValueError):
    """A string that is not a duration."""


def parse_duration(text: str) -> timedelta:
    """Parse *text* (``1h30m``, ``-5m``, ``0``) into a timedelta.

    Negative values parse; callers that need a positive one say so in their own words.
    """
    value = text.strip()
    if not value:
        raise DurationError(f"empty duration ({_EXAMPLES})")
    sign = 1
    if value[0] in "+-":
        sign = -1 if value[0] == "-" else 1
        value = value[1:]
    if value == "0":
        return timedelta(0)
    position = 0
    micros = Decimal(0)
    while position < len(value):
        match = _COMPONENT.match(value, position)
        if match is None:
            raise DurationError(f"not a duration: {text!r} ({_EXAMPLES})")
        number, unit = match.groups()
        try:
            amount = Decimal(number)
        except InvalidOperation as error:  # pragma: no cover - the regex admits only numbers
            raise DurationError(f"not a duration: {text!r}") from error
        if unit == "ns":
            micros += amount / _NANOSECONDS_PER_MICROSECOND
        else:
            micros += amount * _UNIT_MICROSECONDS[unit]
        position = match.end()
    try:
        return timedelta(microseconds=sign * int(micros.to_integral_value()))
    except OverflowError as error:
        raise DurationError(f"duration out of range: {text!r}") from error


def format_duration(duration: timedelta) -> str:
    """Render *duration* in the shortest Go-style form that parses back to it (``1h30m``)."""
    micros = (duration.days * 86_400 + duration.seconds) * 1_000_000 + duration.microseconds
    if micros == 0:
        return "0s"
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    parts: list[str] = []
    for unit in ("w", "d", "h", "m", "s", "ms", "us"):
        size = _UNIT_MICROSECONDS[unit]
        count, micros = divmod(micros, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)


def format_in_one_unit(duration: timedelta) -> str:
    """Render *duration* in the largest single unit that divides it exactly (``8760h`` -> ``365d``).

    How a person writes a duration (``90d``, ``36h``, ``90m``), where :func:`format_duration`
    gives the shortest mixed form (``12w6d``); both parse back to *duration*.
    """
    micros = (duration.days * 86_400 + duration.seconds) * 1_000_000 + duration.microseconds
    if micros == 0:
        return "0s"
    for unit in ("w", "d", "h", "m", "s", "ms"):
        size = _UNIT_MICROSECONDS[unit]
        if micros % size == 0:
            return f"{micros // size}{unit}"
    return f"{micros}us"
