from dataclasses import replace
from datetime import UTC, datetime

import pytest

from notifier.messages import escape, one_line, sentence
from notifier.policy import Notice, NoticeKind


def notice(name: str = "ci-deploy", token_id: str = "abc123", days: int = 3) -> Notice:
    return Notice(
        id="n1",
        kind=NoticeKind.EXPIRING,
        sink="log",
        source="store",
        token_id=token_id,
        token_name=name,
        owner=None,
        expires_at=datetime(2026, 1, 3, tzinfo=UTC),
        days_left=days,
        seconds_left=days * 86400 - 1,
        threshold=None,
    )


class TestSentence:
    def test_documented_format(self) -> None:
        """The warn line is the documented sentence, word for word."""
        assert (
            sentence(notice(days=3), "day")
            == "Warn: API Token ci-deploy (ID abc123) will expire in less than 3 days."
        )

    def test_singular(self) -> None:
        """One slice reads "1 day", not "1 days"."""
        assert sentence(notice(days=1), "day").endswith("in less than 1 day.")

    def test_other_unit(self) -> None:
        """The slice name is configurable and takes an s in the plural."""
        assert sentence(notice(days=5), "hour").endswith("in less than 5 hours.")

    def test_expired_wording(self) -> None:
        """An expired notice has its own sentence."""
        expired_notice = replace(notice(), kind=NoticeKind.EXPIRED)
        assert (
            sentence(expired_notice, "day") == "Warn: API Token ci-deploy (ID abc123) has expired."
        )


class TestEscape:
    @pytest.mark.parametrize(
        ("raw", "escaped"),
        [
            ("plain name", "plain name"),
            ("a\nb", "a\\nb"),  # newline
            ("a\rb", "a\\rb"),  # carriage return
            ("a\tb", "a\\tb"),
            ("a\\nb", "a\\\\nb"),  # a literal backslash-n stays distinguishable
            ("rtl\u202eevil", "rtl\\u202eevil"),  # right-to-left override
            ("zw\u200bsp", "zw\\u200bsp"),  # zero-width space (format character)
            ("ls\u2028ps\u2029", "ls\\u2028ps\\u2029"),  # line/paragraph separators
            ("esc\x1b[31m", "esc\\x1b[31m"),  # terminal escape
            ("nel\x85", "nel\\x85"),  # C1 next-line
            ("café ✓", "café ✓"),  # ordinary Unicode is kept
        ],
    )
    def test_table(self, raw: str, escaped: str) -> None:
        """Everything that could end, forge or disguise a line is escaped."""
        assert escape(raw) == escaped

    def test_forged_line_stays_on_one_line(self) -> None:
        """A name carrying a fake warn line cannot start a line of its own."""
        forged = "x\nWarn: API Token admin (ID 1) will expire in less than 1 day.\u202e"
        line = sentence(notice(name=forged, token_id="id\r\n2"), "day")
        assert "\n" not in line
        assert "\r" not in line
        assert "\u202e" not in line
        assert line.startswith("Warn: API Token x\\nWarn: API Token admin")

    def test_one_line_keeps_backslashes(self) -> None:
        """Text composed from escaped parts is not escaped twice, but still kept on one line."""
        assert one_line("a\\nb") == "a\\nb"
        assert one_line("a\nb") == "a\\nb"
