import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from notifier.core.messages import escape, one_line, sentence
from notifier.core.model import CredentialKind, Notice, NoticeKind


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


FINGERPRINT = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def certificate(days: int = 3, kind: NoticeKind = NoticeKind.EXPIRING) -> Notice:
    return replace(
        notice(name="www.example.org", token_id=FINGERPRINT, days=days),
        kind=kind,
        source="x509",
        credential_kind=CredentialKind.CERTIFICATE,
    )


class TestCredentialKinds:
    def test_certificate_line(self) -> None:
        """A certificate's warn line names a Certificate and shows its fingerprint's start."""
        assert (
            sentence(certificate(days=3), "day")
            == "Warn: Certificate www.example.org (ID 9f86d081884c7d65) will expire in less than"
            " 3 days."
        )

    def test_certificate_expired(self) -> None:
        """An expired certificate keeps the kind's word and the short id."""
        assert (
            sentence(certificate(kind=NoticeKind.EXPIRED), "day")
            == "Warn: Certificate www.example.org (ID 9f86d081884c7d65) has expired."
        )

    def test_certificate_replaced(self) -> None:
        """A certificate replaced where it was found reads as replaced, not rotated."""
        replaced = replace(certificate(kind=NoticeKind.RENEWED), reason="rotated")
        assert sentence(replaced, "day") == (
            "Info: Certificate www.example.org (ID 9f86d081884c7d65) was replaced by another"
            " certificate where it was found."
        )

    def test_access_key_lines_say_rotation_not_expiry(self) -> None:
        """AWS never expires a key: its line says it is due for rotation, then past its age."""
        key = replace(
            notice(name="deploy-bot/AKIAEXAMPLE", token_id="AKIAEXAMPLE"),
            source="aws",
            credential_kind=CredentialKind.ACCESS_KEY,
        )
        assert sentence(key, "day") == (
            "Warn: Access Key deploy-bot/AKIAEXAMPLE (ID AKIAEXAMPLE) is due for rotation in"
            " less than 3 days."
        )
        assert sentence(replace(key, kind=NoticeKind.EXPIRED), "day") == (
            "Warn: Access Key deploy-bot/AKIAEXAMPLE (ID AKIAEXAMPLE) is past its maximum age"
            " and due for rotation."
        )

    def test_token_kinds_keep_the_documented_line(self) -> None:
        """A token from any source (store, vault) reads 'API Token' with its whole id."""
        vault = replace(notice(token_id="99FZvjx2ZS87mQNQfJUhi0aq"), source="vault:prod")
        assert (
            sentence(vault, "day")
            == "Warn: API Token ci-deploy (ID 99FZvjx2ZS87mQNQfJUhi0aq) will expire in less than"
            " 3 days."
        )

    def test_lease_line(self) -> None:
        """A Vault lease reads 'Lease', with its whole lease id."""
        lease = replace(
            notice(name="database/creds/ro", token_id="database/creds/ro/x1"),
            credential_kind=CredentialKind.LEASE,
        )
        assert sentence(lease, "day").startswith("Warn: Lease database/creds/ro (ID database/")


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


CHANNELS = Path(__file__).resolve().parents[2] / "docs" / "channels.md"


def documented_lines() -> dict[str, list[str]]:
    """The log lines docs/channels.md shows for each notice kind (its "Kinds" table)."""
    section = CHANNELS.read_text(encoding="utf-8").split("### Kinds", 1)[1].split("###", 1)[0]
    lines: dict[str, list[str]] = {}
    for kind, line in re.findall(r"^\| `(\w+)` \|[^\n]*\| `([^`]+)` \|$", section, re.MULTILINE):
        lines.setdefault(kind, []).append(line)
    return lines


def filled(template: str) -> str:
    """A documented line with the placeholders of notice() put in."""
    return (
        template.replace("<name>", "ci-deploy")
        .replace("<id>", "abc123")
        .replace("<X>", "3")
        .replace("<date>", "2027-02-01")
    )


class TestDocumentedLines:
    @pytest.mark.parametrize(
        ("kind", "reason", "expires_at"),
        [
            (NoticeKind.EXPIRING, None, datetime(2026, 1, 3, tzinfo=UTC)),  # 3 days left
            (NoticeKind.EXPIRED, None, datetime(2026, 1, 3, tzinfo=UTC)),
            (NoticeKind.RENEWED, "extended", datetime(2027, 2, 1, tzinfo=UTC)),  # moved out
            (NoticeKind.RENEWED, "no_expiry", None),
            (NoticeKind.RENEWED, "rotated", datetime(2026, 1, 3, tzinfo=UTC)),  # superseded
        ],
    )
    def test_each_notice_reads_as_docs_channels_shows(
        self, kind: NoticeKind, reason: str | None, expires_at: datetime | None
    ) -> None:
        """The sentence of each kind and reason is one of the lines docs/channels.md shows."""
        built = sentence(replace(notice(), kind=kind, reason=reason, expires_at=expires_at), "day")
        assert built in [filled(line) for line in documented_lines()[kind.value]]

    def test_every_documented_line_is_built(self) -> None:
        """Each line the docs show for renewed notices is one the code emits: none is stale."""
        built = {
            sentence(
                replace(notice(), kind=NoticeKind.RENEWED, reason=reason, expires_at=at), "day"
            )
            for reason, at in [
                ("extended", datetime(2027, 2, 1, tzinfo=UTC)),
                ("no_expiry", None),
                ("rotated", datetime(2026, 1, 3, tzinfo=UTC)),
            ]
        }
        assert {filled(line) for line in documented_lines()["renewed"]} == built


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
