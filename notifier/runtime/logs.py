"""Logging: structlog for our events, stdlib loggers routed through the same renderers.

Three formats, each one line per event on stderr (and in ``NOTIFIER_LOG_FILE`` if set):

- ``text``: ``<timestamp> <message>`` for events that carry a sentence (the warn line), else
  ``<timestamp> <LEVEL> <event> key=value ...``;
- ``json``: one object per line, with ``event`` (the dotted name) and ``message``;
- ``logfmt``: ``timestamp=... level=... event=... message="..." key=value``.

Every value passes through :func:`notifier.core.messages.escape` (JSON escapes on its own), so
nothing logged, a token name included, can end a line early or forge the next one.

Under systemd, :func:`use_journal_priorities` prefixes each stderr line with its syslog
priority (``<4>`` for a warning), which journald strips and records, so that
``journalctl -p warning`` selects the warn lines. :func:`reopen_log_files` reopens
``NOTIFIER_LOG_FILE`` on SIGHUP.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, TextIO, cast

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from notifier.core.durations import format_duration
from notifier.core.messages import escape, one_line

# Loggers held above even DEBUG: apscheduler and alembic chatter about their housekeeping, and
# httpx logs every request with its URL, and a heartbeat or webhook URL is a secret.
_QUIET = {
    "apscheduler": logging.WARNING,
    "alembic": logging.WARNING,
    "uvicorn.access": 100,
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
}
_FIRST_KEYS = ("timestamp", "level", "event", "message")
_OURS = "notifier"  # the stdlib loggers under this name are ours; so is every structlog event


class _TheirInfoIsDebug(logging.Filter):
    """Other libraries' INFO records are DEBUG here: our stream carries our events.

    uvicorn's ``Started server process``, apprise's ``Notifying 1 service(s)``: their
    housekeeping, not ours, shown only with ``NOTIFIER_LOG_LEVEL=DEBUG``. Their warnings and
    errors pass as they are. Our structlog events, whatever their logger's name, and our own
    stdlib loggers keep their level.
    """

    def __init__(self, level: int) -> None:
        super().__init__()
        self._show_debug = level <= logging.DEBUG

    def filter(self, record: logging.LogRecord) -> bool:
        if not logging.DEBUG < record.levelno < logging.WARNING:
            return True
        if hasattr(record, "_logger"):  # from structlog (ProcessorFormatter.wrap_for_formatter)
            return True
        name = record.name
        if name == _OURS or name.startswith(_OURS + "."):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self._show_debug


def rfc3339(moment: datetime) -> str:
    """Render *moment* as RFC 3339 in UTC with a ``Z`` (``2026-11-23T07:00:00Z``)."""
    if moment.tzinfo is not UTC:  # a parsed "Z" or "+00:00" is UTC itself, and needs no copy
        moment = moment.astimezone(UTC)
    # isoformat writes the fraction only when there is one, as RFC 3339 allows; a third of
    # what strftime costs, and a webhook's body has two of these per notice.
    return moment.isoformat()[:-6] + "Z"  # without "+00:00"


_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> Any:
    """Turn a logged value into something a renderer can print."""
    if type(value) in _PLAIN_TYPES:  # most values: one set lookup instead of four isinstance
        return value
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


def _flatten(key: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for sub_key, sub_value in value.items():
            yield from _flatten(f"{key}.{sub_key}", sub_value)
    else:
        yield key, _plain(value)


def _pairs(event_dict: EventDict) -> Iterator[tuple[str, str]]:
    for key, value in event_dict.items():
        if key in _FIRST_KEYS or value is None:
            continue
        for flat_key, flat_value in _flatten(key, value):
            rendered = _scalar(flat_value)
            yield flat_key, rendered


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


def _quoted(value: str) -> str:
    if value and not any(char in value for char in ' ="'):
        return value
    return '"' + value.replace('"', '\\"') + '"'


def render_text(_: WrappedLogger, __: str, event_dict: EventDict) -> str:
    """``<timestamp> <message>`` for sentences, else ``<timestamp> <LEVEL> <event> k=v``."""
    timestamp = event_dict.get("timestamp", "")
    message = event_dict.get("message")
    if message is not None:
        return f"{timestamp} {one_line(str(message))}".lstrip()
    level = str(event_dict.get("level", "info")).upper()
    event = escape(str(event_dict.get("event", "")))
    fields = " ".join(f"{key}={_quoted(value)}" for key, value in _pairs(event_dict))
    return " ".join(part for part in (timestamp, level, event, fields) if part)


def render_logfmt(_: WrappedLogger, __: str, event_dict: EventDict) -> str:
    """``timestamp=... level=... event=... message="..." key=value``."""
    head = [
        f"{key}={_quoted(one_line(str(_plain(event_dict[key]))))}"
        for key in _FIRST_KEYS
        if event_dict.get(key) is not None
    ]
    tail = [f"{key}={_quoted(value)}" for key, value in _pairs(event_dict)]
    return " ".join(head + tail)


def render_json(_: WrappedLogger, __: str, event_dict: EventDict) -> str:
    """One JSON object; datetimes in RFC 3339, non-ASCII escaped so U+202E cannot hide."""
    ordered = {key: event_dict[key] for key in _FIRST_KEYS if key in event_dict}
    ordered.update({k: v for k, v in event_dict.items() if k not in ordered})
    return json.dumps(ordered, default=lambda value: str(_plain(value)), ensure_ascii=True)


_RENDERERS: dict[str, Processor] = {
    "text": render_text,
    "json": render_json,
    "logfmt": render_logfmt,
}


class _Formatter(structlog.stdlib.ProcessorFormatter):
    """structlog's ProcessorFormatter, rendering structlog's own records in one step.

    For a record from structlog (``wrap_for_formatter``) the event is rendered as it stands:
    the renderers read it and build their own output, so neither the record nor the event
    needs the copies ProcessorFormatter makes for every record, which cost as much as the
    rest of the warn line. Other libraries' records take ProcessorFormatter's whole way.
    """

    def __init__(self, renderer: Processor, pre_chain: list[Processor]) -> None:
        super().__init__(
            foreign_pre_chain=pre_chain,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
        self.renderer = renderer

    def format(self, record: logging.LogRecord) -> str:
        event = record.msg
        if isinstance(event, dict) and hasattr(record, "_logger"):
            return cast("str", self.renderer(None, record.levelname.lower(), event))
        return super().format(record)


def sentences_only() -> bool:
    """Whether every line goes out in the text format, where a sentence is the whole line.

    True when structlog hands its events to logging (as :func:`configure` sets it up) and
    every handler of the root logger renders text: the fields beside a warn line's sentence
    are then printed nowhere, and the log sink need not gather them. False under any other
    configuration (a test's ``capture_logs``, JSON or logfmt on some handler).
    """
    processors = structlog.get_config().get("processors") or []
    if (
        not processors
        or processors[-1] is not structlog.stdlib.ProcessorFormatter.wrap_for_formatter
    ):
        return False
    handlers = logging.getLogger().handlers
    for handler in handlers:
        formatter = handler.formatter
        if isinstance(formatter, _PriorityFormatter):
            formatter = formatter.inner
        if not isinstance(formatter, _Formatter) or formatter.renderer is not render_text:
            return False
    return bool(handlers)


def _lowercase_level(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    level = event_dict.get("level")
    if isinstance(level, str):
        event_dict["level"] = level.lower()
    return event_dict


class LogFileError(Exception):
    """The log file cannot be opened for appending."""


_holding = threading.local()  # .flushes: this thread's records are flushed at the end


class _HeldFlushes(logging.Handler):
    """A handler that leaves out its flush after each record while :func:`one_flush` holds."""

    def flush(self) -> None:
        if getattr(_holding, "flushes", False):
            return
        super().flush()


@contextmanager
def one_flush() -> Iterator[None]:
    """Write this thread's records without a flush after each; flush every handler at the end.

    The log sink's warn lines of a delivery go out in a few writes instead of one each (a
    ``write`` call per line was a twentieth of a first pass over 20,000 notices, with a log
    file). They are all flushed before the delivery returns, so before their outcomes are
    recorded: a crash in between loses no notice, which is then sent again. A flush that
    fails (a full disk) raises once every handler has been flushed, so the delivery fails and
    its notices stay due rather than recorded as written. Other threads' records, and stderr
    (which Python flushes at each line), are as before.
    """
    if getattr(_holding, "flushes", False):
        yield
        return
    _holding.flushes = True
    try:
        yield
    finally:
        _holding.flushes = False
        failed: OSError | None = None
        for handler in logging.getLogger().handlers:
            try:
                handler.flush()
            except OSError as error:
                failed = failed or error
        if failed is not None:
            raise failed


class _StreamHandler(_HeldFlushes, logging.StreamHandler[TextIO]):
    """Write to a stream (stderr, or the one given)."""


class _LogFileHandler(_HeldFlushes, logging.handlers.WatchedFileHandler):
    """Append to a file; reopen it when it is rotated away, or when told to (SIGHUP)."""

    def reopen(self) -> None:
        """Open the path afresh, then close the old stream; keep the old one if that fails."""
        self.acquire()
        try:
            fresh = self._open()  # raises OSError first, so a failure loses no stream
            old, self.stream = self.stream, fresh
            self._statstream()
            if old is not None:
                old.close()
        finally:
            self.release()


def reopen_log_files() -> list[str]:
    """Reopen every log file (on SIGHUP); return their paths. Raises OSError if one fails."""
    reopened: list[str] = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _LogFileHandler):
            handler.reopen()
            reopened.append(handler.baseFilename)
    return reopened


# journald reads a "<N>" prefix on each line as its syslog priority (sd-daemon(3)).
_SYSLOG_PRIORITIES = (
    (logging.CRITICAL, 2),  # crit
    (logging.ERROR, 3),  # err
    (logging.WARNING, 4),  # warning
    (logging.INFO, 6),  # info
)
_DEBUG_PRIORITY = 7


def syslog_priority(level: int) -> int:
    """The syslog priority journald should record for a stdlib *level*."""
    for threshold, priority in _SYSLOG_PRIORITIES:
        if level >= threshold:
            return priority
    return _DEBUG_PRIORITY


def is_journal(stream: TextIO, journal_stream: str | None) -> bool:
    """True when *stream* is connected to the journal.

    systemd sets ``JOURNAL_STREAM`` to ``<device>:<inode>`` of the stream it connected stdout
    and stderr to; a stream with another device or inode (a redirect, a pipe to a container
    runtime) is not the journal, and gets no prefix.
    """
    if not journal_stream:
        return False
    device, _, inode = journal_stream.partition(":")
    try:
        expected = (int(device), int(inode))
        status = os.fstat(stream.fileno())
    except (ValueError, OSError):  # a bad value, or a stream without a descriptor
        return False
    return (status.st_dev, status.st_ino) == expected


class _PriorityFormatter(logging.Formatter):
    """Put ``<N>`` before each line another formatter renders."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return f"<{syslog_priority(record.levelno)}>{self.inner.format(record)}"


def use_journal_priorities(journal_stream: str | None) -> bool:
    """Prefix stderr lines with their syslog priority if stderr is the journal; say if so.

    Call after :func:`configure`; calling it again changes nothing.
    """
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) or not isinstance(
            handler, logging.StreamHandler
        ):
            continue
        if not is_journal(handler.stream, journal_stream):
            continue
        formatter = handler.formatter
        if formatter is not None and not isinstance(formatter, _PriorityFormatter):
            handler.setFormatter(_PriorityFormatter(formatter))
        return True
    return False


def configure(
    *,
    log_format: str = "text",
    level: str = "INFO",
    log_file: Path | None = None,
    stream: TextIO | None = None,
) -> None:
    """Route structlog and stdlib logging to stderr (and *log_file*) in *log_format*."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        _lowercase_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,  # a traceback becomes one escaped field
    ]
    formatter = _Formatter(_RENDERERS[log_format], [structlog.stdlib.add_logger_name, *shared])
    handlers: list[logging.Handler] = [_StreamHandler(stream or sys.stderr)]
    if log_file is not None:
        try:
            # WatchedFileHandler reopens the file when logrotate moves it away.
            handlers.append(_LogFileHandler(log_file, encoding="utf-8"))
        except OSError as error:
            raise LogFileError(f"cannot append to {log_file}: {error.strerror}") from None
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.setLevel(level)
    theirs = _TheirInfoIsDebug(root.level)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(theirs)
        root.addHandler(handler)
    # No renderer prints where a call came from, nor the thread or process: skip collecting
    # them for every record (the logging HOWTO's "Optimization" section). The warn line is
    # a record per notice, and the caller lookup walks the stack each time.
    logging._srcfile = None  # noqa: SLF001 - the documented switch
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for name, quiet_level in _QUIET.items():
        logging.getLogger(name).setLevel(max(quiet_level, logging.getLevelName(level)))
    logging.captureWarnings(capture=True)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        cache_logger_on_first_use=False,
    )
