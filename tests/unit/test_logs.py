import io
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from notifier.core.model import CredentialKind, Notice, NoticeKind
from notifier.runtime import logs
from notifier.sinks.log import LogSink

FORGED = "evil\nWarn: API Token admin (ID 1) will expire in less than 1 day.\u202e"


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


def notice(name: str = "ci-deploy", days: int = 3) -> Notice:
    return Notice(
        id="0123abcd",
        kind=NoticeKind.EXPIRING,
        sink="log",
        source="store",
        token_id="abc123",
        token_name=name,
        owner=None,
        expires_at=datetime(2026, 1, 3, 12, tzinfo=UTC),
        days_left=days,
        seconds_left=100,
        threshold=None,
    )


def emit(stream: io.StringIO, log_format: str, item: Notice) -> list[str]:
    logs.configure(log_format=log_format, level="INFO", stream=stream)
    LogSink("log", "day").deliver([item])
    return stream.getvalue().splitlines()


class TestText:
    def test_warn_line_is_the_sentence_after_a_timestamp(self, stream: io.StringIO) -> None:
        """In text format the warn line is exactly the documented sentence after a timestamp."""
        (line,) = emit(stream, "text", notice())
        timestamp, sentence = line.split(" ", 1)
        assert sentence == "Warn: API Token ci-deploy (ID abc123) will expire in less than 3 days."
        assert datetime.fromisoformat(timestamp).tzinfo is not None

    def test_injection_through_a_name_stays_one_line(self, stream: io.StringIO) -> None:
        """A newline and U+202E in a name neither start a line nor reach the output raw."""
        lines = emit(stream, "text", notice(name=FORGED))
        assert len(lines) == 1
        assert "\u202e" not in lines[0]
        assert "evil\\nWarn: API Token admin" in lines[0]

    def test_other_events_carry_level_and_fields(self, stream: io.StringIO) -> None:
        """Events without a sentence read `<timestamp> <LEVEL> <event> key=value`."""
        logs.configure(log_format="text", level="INFO", stream=stream)
        structlog.get_logger("t").info("check.completed", in_window=2, reason="a b\nc")
        line = stream.getvalue().rstrip("\n")
        assert line.split(" ", 1)[1] == 'INFO check.completed in_window=2 reason="a b\\nc"'

    def test_stdlib_loggers_are_routed(self, stream: io.StringIO) -> None:
        """Third-party stdlib logging goes through the same renderer, on one line."""
        logs.configure(log_format="text", level="INFO", stream=stream)
        logging.getLogger("uvicorn.error").warning("two\nlines")
        line = stream.getvalue().rstrip("\n")
        assert "\n" not in line
        assert "WARNING two\\nlines logger=uvicorn.error" in line

    def test_third_party_info_is_debug(self, stream: io.StringIO) -> None:
        """Other libraries' INFO lines stay out of our stream; their warnings, and ours, stay in."""
        logs.configure(log_format="text", level="INFO", stream=stream)
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
        logging.getLogger("apprise").info("Notifying 1 service(s) asynchronously.")
        logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
        logging.getLogger("notifier.web").info("ours, through stdlib")
        structlog.get_logger("t").info("check.completed")
        lines = stream.getvalue().splitlines()
        assert not [line for line in lines if "Started server" in line or "Notifying" in line]
        assert [line.split(" ", 1)[1] for line in lines] == [
            "WARNING Invalid HTTP request received. logger=uvicorn.error",
            "INFO ours, through stdlib logger=notifier.web",
            "INFO check.completed",
        ]

    def test_third_party_info_shows_at_debug(self, stream: io.StringIO) -> None:
        """With NOTIFIER_LOG_LEVEL=DEBUG their INFO lines appear, as DEBUG."""
        logs.configure(log_format="text", level="DEBUG", stream=stream)
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
        (line,) = stream.getvalue().splitlines()
        assert line.split(" ", 1)[1] == "DEBUG Started server process [42] logger=uvicorn.error"

    def test_level_filters(self, stream: io.StringIO) -> None:
        """Events below the configured level are dropped; notices at WARNING pass."""
        logs.configure(log_format="text", level="WARNING", stream=stream)
        structlog.get_logger("t").info("check.completed")
        LogSink("log", "day").deliver([notice()])
        assert len(stream.getvalue().splitlines()) == 1


class TestJson:
    def test_sentence_is_the_message_and_fields_ride_beside(self, stream: io.StringIO) -> None:
        """In JSON the sentence is the message; token_id, name, source, expiry, X are fields."""
        (line,) = emit(stream, "json", notice(name=FORGED))
        record = json.loads(line)
        assert record["level"] == "warning"
        assert record["event"] == "notice.expiring"
        assert record["message"].startswith("Warn: API Token evil\\nWarn: API Token admin")
        assert record["token_id"] == "abc123"
        assert record["token_name"] == FORGED  # JSON escaping keeps the raw value safe
        assert record["source"] == "store"
        assert record["kind"] == "token"
        assert record["expires_at"] == "2026-01-03T12:00:00Z"
        assert record["days_left"] == 3
        assert "\u202e" not in line  # ensure_ascii: not even inside a JSON string


class TestLogfmt:
    def test_sentence_is_the_message(self, stream: io.StringIO) -> None:
        """In logfmt the sentence is the quoted message, the token fields key=value."""
        (line,) = emit(stream, "logfmt", notice())
        assert " level=warning event=notice.expiring " in line
        assert (
            'message="Warn: API Token ci-deploy (ID abc123) will expire in less than 3 days."'
            in line
        )
        assert " token_id=abc123 " in line
        assert " days_left=3 " in line
        assert " expires_at=2026-01-03T12:00:00Z " in line

    def test_certificate_says_its_kind(self, stream: io.StringIO) -> None:
        """A certificate's line names a Certificate, with kind=certificate among the fields."""
        fingerprint = "ab" * 32
        certificate = replace(
            notice(name="www.example.org"),
            token_id=fingerprint,
            source="x509",
            credential_kind=CredentialKind.CERTIFICATE,
        )
        (line,) = emit(stream, "logfmt", certificate)
        assert 'message="Warn: Certificate www.example.org (ID abababababababab) will' in line
        assert " kind=certificate " in line
        assert f" token_id={fingerprint} " in line  # the whole fingerprint in the field

    def test_injection_stays_one_line(self, stream: io.StringIO) -> None:
        """A forged name cannot break a logfmt line either."""
        lines = emit(stream, "logfmt", notice(name=FORGED))
        assert len(lines) == 1
        assert "\u202e" not in lines[0]


class TestLogFile:
    def test_appends_and_reopens_after_rotation(self, stream: io.StringIO, tmp_path: Path) -> None:
        """NOTIFIER_LOG_FILE is appended to, and reopened once logrotate moves it away."""
        path = tmp_path / "notifier.log"
        path.write_text("earlier\n")
        logs.configure(log_format="text", level="INFO", stream=stream, log_file=path)
        LogSink("log", "day").deliver([notice(days=3)])
        path.rename(path.with_suffix(".log.1"))
        LogSink("log", "day").deliver([notice(days=2)])
        rotated = path.with_suffix(".log.1").read_text().splitlines()
        assert rotated[0] == "earlier"
        assert rotated[1].endswith("less than 3 days.")
        assert path.read_text().splitlines()[0].endswith("less than 2 days.")

    def test_unwritable_file_is_refused(self) -> None:
        """A log file that cannot be opened stops start-up with the reason."""
        with pytest.raises(logs.LogFileError, match="cannot append"):
            logs.configure(log_file=Path("/proc/nope/notifier.log"))


class CountingStream(io.StringIO):
    """A stream that counts how often it is flushed."""

    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


class FullDisk(io.StringIO):
    """A stream whose flush fails as a full disk's does."""

    def flush(self) -> None:
        raise OSError(28, "No space left on device")


class TestFlushes:
    def test_a_delivery_flushes_once_for_all_its_lines(self, tmp_path: Path) -> None:
        """The log sink's lines of one delivery are all written, with one flush at its end."""
        counting = CountingStream()
        path = tmp_path / "notifier.log"
        logs.configure(log_format="text", level="INFO", stream=counting, log_file=path)
        LogSink("log", "day").deliver([notice(name=f"t{index}") for index in range(50)])
        assert counting.flushes == 1
        assert len(counting.getvalue().splitlines()) == 50
        assert len(path.read_text().splitlines()) == 50  # on disk when deliver returns

    def test_a_flush_that_fails_fails_the_delivery(self, tmp_path: Path) -> None:
        """A full disk at the flush fails the delivery (its notices stay due); others flush."""
        path = tmp_path / "notifier.log"
        logs.configure(log_format="text", level="INFO", stream=FullDisk(), log_file=path)
        with pytest.raises(OSError, match="No space left"):
            LogSink("log", "day").deliver([notice()])
        assert path.read_text().endswith("will expire in less than 3 days.\n")

    def test_other_records_flush_each(self) -> None:
        """Outside a delivery every record is flushed as it is written, as before."""
        counting = CountingStream()
        logs.configure(log_format="text", level="INFO", stream=counting)
        log = structlog.get_logger("notifier.test")
        log.info("one")
        log.info("two")
        assert counting.flushes == 2

    def test_a_failing_delivery_still_flushes_what_it_wrote(self) -> None:
        """A line written before an error is flushed on the way out."""
        counting = CountingStream()
        logs.configure(log_format="text", level="INFO", stream=counting)
        log = structlog.get_logger("notifier.test")

        def deliver() -> None:
            with logs.one_flush():
                log.warning("written")
                raise RuntimeError("the sink broke")

        with pytest.raises(RuntimeError):
            deliver()
        assert counting.flushes == 1
        assert "written" in counting.getvalue()


class TestSentencesOnly:
    """The log sink gathers a notice's fields only where some output prints them."""

    def test_text_everywhere_prints_only_sentences(self, stream: io.StringIO) -> None:
        logs.configure(log_format="text", level="INFO", stream=stream)
        assert logs.sentences_only()

    @pytest.mark.parametrize("log_format", ["json", "logfmt"])
    def test_structured_formats_print_the_fields(
        self, stream: io.StringIO, log_format: str
    ) -> None:
        logs.configure(log_format=log_format, level="INFO", stream=stream)
        assert not logs.sentences_only()

    def test_one_structured_handler_is_enough_to_keep_them(self, stream: io.StringIO) -> None:
        logs.configure(log_format="text", level="INFO", stream=stream)
        extra = logging.StreamHandler(io.StringIO())
        extra.setFormatter(logging.Formatter("%(message)s"))
        logging.getLogger().addHandler(extra)
        assert not logs.sentences_only()

    def test_a_capture_of_events_sees_every_field(self, stream: io.StringIO) -> None:
        """Under structlog's capture (as tests use it) the fields are the point."""
        logs.configure(log_format="text", level="INFO", stream=stream)
        with structlog.testing.capture_logs() as events:
            assert not logs.sentences_only()
            LogSink("log", "day").deliver([notice()])
        assert events[0]["token_id"] == "abc123"
        assert events[0]["notice_id"] == "0123abcd"


class TestRfc3339:
    @pytest.mark.parametrize(
        ("moment", "text"),
        [
            (datetime(2026, 11, 23, 7, 0, tzinfo=UTC), "2026-11-23T07:00:00Z"),  # no fraction
            (datetime(2026, 11, 23, 7, 0, 0, 1, tzinfo=UTC), "2026-11-23T07:00:00.000001Z"),
            (datetime(2026, 11, 23, 7, 0, 5, 250000, tzinfo=UTC), "2026-11-23T07:00:05.250000Z"),
            # another offset: the same instant in UTC
            (datetime.fromisoformat("2026-11-23T09:30:00+02:30"), "2026-11-23T07:00:00Z"),
            (datetime.fromisoformat("2026-12-31T23:59:59-01:00"), "2027-01-01T00:59:59Z"),
        ],
    )
    def test_utc_with_a_z_and_a_fraction_only_when_there_is_one(
        self, moment: datetime, text: str
    ) -> None:
        """A time reads as RFC 3339 in UTC: seconds always, microseconds when not zero."""
        assert logs.rfc3339(moment) == text
