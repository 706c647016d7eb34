from datetime import timedelta

import pytest

from notifier.core.durations import (
    DurationError,
    format_duration,
    format_in_one_unit,
    parse_duration,
)


class TestParseDuration:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("1h", timedelta(hours=1)),
            ("90m", timedelta(minutes=90)),
            ("1h30m", timedelta(hours=1, minutes=30)),
            ("10s", timedelta(seconds=10)),
            ("500ms", timedelta(milliseconds=500)),
            ("1.5h", timedelta(hours=1, minutes=30)),
            (".5s", timedelta(milliseconds=500)),
            ("7d", timedelta(days=7)),
            ("2w", timedelta(weeks=2)),
            ("168h", timedelta(days=7)),
            ("8760h", timedelta(days=365)),
            ("1h0m0s", timedelta(hours=1)),  # what Go's Duration.String() prints
            ("250us", timedelta(microseconds=250)),
            ("1500ns", timedelta(microseconds=2)),  # rounded to our resolution
            ("0", timedelta(0)),
            ("-5m", timedelta(minutes=-5)),  # parses; settings refuse it in their own words
            (" 2h ", timedelta(hours=2)),
        ],
    )
    def test_valid(self, text: str, expected: timedelta) -> None:
        """Go's syntax parses, plus d and w."""
        assert parse_duration(text) == expected

    @pytest.mark.parametrize("text", ["", " ", "abc", "1", "10", "1x", "h", "1h 30m", "1..5h"])
    def test_invalid(self, text: str) -> None:
        """A number without a unit, an unknown unit or junk is refused with examples."""
        with pytest.raises(DurationError, match=r"examples|empty"):
            parse_duration(text)


class TestFormatDuration:
    @pytest.mark.parametrize(
        ("duration", "text"),
        [
            (timedelta(hours=1, minutes=30), "1h30m"),
            (timedelta(days=7), "1w"),
            (timedelta(days=1), "1d"),
            (timedelta(milliseconds=500), "500ms"),
            (timedelta(0), "0s"),
            (timedelta(minutes=-5), "-5m"),
        ],
    )
    def test_shortest_form(self, duration: timedelta, text: str) -> None:
        """A duration renders in the shortest form that parses back to it."""
        assert format_duration(duration) == text
        assert parse_duration(text) == duration


class TestFormatInOneUnit:
    @pytest.mark.parametrize(
        ("duration", "text"),
        [
            (timedelta(hours=8760), "365d"),  # not 52w1d
            (timedelta(days=90), "90d"),  # not 12w6d
            (timedelta(days=14), "2w"),
            (timedelta(hours=36), "36h"),
            (timedelta(hours=1, minutes=30), "90m"),
            (timedelta(milliseconds=1500), "1500ms"),
            (timedelta(microseconds=250), "250us"),
            (timedelta(0), "0s"),
            (timedelta(minutes=-5), "-5m"),
        ],
    )
    def test_largest_unit_that_divides(self, duration: timedelta, text: str) -> None:
        """A duration renders as a person writes it: one unit, the largest that divides it."""
        assert format_in_one_unit(duration) == text
        assert parse_duration(text) == duration
