"""The service shell ``notifier run`` and ``notifier serve`` share.

:class:`Shell` runs a :class:`Role` (the daemon's scheduler, or the web tier alone) between
the same start and the same way out:

- SIGTERM and SIGINT set the stop flag; SIGHUP sets another, and the main thread reopens
  ``NOTIFIER_LOG_FILE`` within a second (a signal handler only sets flags: logging from one can
  deadlock). The previous handlers are put back on the way out;
- the HTTP listener, when there is one, starts before the role and stops after it;
- the schema (:class:`Schema`): migrated to head, retried while the database does not answer
  (:class:`Backoff`: 5 s, doubling up to 5 min), and the readiness probe both roles answer;
- shutdown: the role ends its work, the listener ends its streams and open responses, the
  parts are released, and the exit code says whether the work ended in time.
"""

from __future__ import annotations

import signal
import threading
from datetime import timedelta
from types import FrameType
from typing import Protocol

import structlog

from notifier.config.settings import HttpAddress
from notifier.core.durations import format_duration
from notifier.db import migrate
from notifier.db.database import Database, DatabaseUnavailableError
from notifier.runtime import heap, logs
from notifier.runtime.compose import Service
from notifier.web.app import Probe
from notifier.web.server import bind

RETRY_FIRST = timedelta(seconds=5)
RETRY_MAX = timedelta(minutes=5)

log = structlog.get_logger("notifier.service")


class Backoff:
    """Retry delays: :data:`RETRY_FIRST`, doubling up to :data:`RETRY_MAX`; reset on success."""

    def __init__(self) -> None:
        self._delay = RETRY_FIRST

    def next(self, cap: timedelta | None = None) -> timedelta:
        """The delay before the next try (at most *cap*); the one after is twice as long."""
        delay = self._delay if cap is None else min(self._delay, cap)
        self._delay = min(self._delay * 2, RETRY_MAX)
        return delay

    def reset(self) -> None:
        """A try succeeded: the next failure waits the first delay again."""
        self._delay = RETRY_FIRST


class Schema:
    """Whether the database's schema is current, the one way to make it so, and readiness."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self.current = threading.Event()

    def upgrade(self) -> None:
        """Migrate to head once; raises DatabaseUnavailableError while the database is down."""
        if self.current.is_set():
            return
        if migrate.upgrade(self._database):
            log.info("db.migrated", revision=migrate.HEAD)
        self.current.set()

    def upgrade_until_current(self, stop: threading.Event) -> bool:
        """Migrate, retrying while the database does not answer; False if stopped first."""
        backoff = Backoff()
        while not stop.is_set():
            try:
                self.upgrade()
            except DatabaseUnavailableError as error:
                delay = backoff.next()
                log.error("db.unavailable", reason=str(error), retry_in=format_duration(delay))
                if stop.wait(delay.total_seconds()):
                    return False
                continue
            return True
        return False

    def readiness(self) -> Probe:
        """Ready when the database answers and its schema is current."""
        try:
            self._database.ping()
        except DatabaseUnavailableError as error:
            return Probe(ok=False, reason=f"database unavailable: {error}")
        if not self.current.is_set():
            return Probe(ok=False, reason="the schema is not migrated yet")
        return Probe(ok=True)


class Role(Protocol):
    """The work a service does inside the shell."""

    def liveness(self) -> Probe:
        """Whether the process is alive, for ``/healthz``."""

    def start(self) -> None:
        """Begin the work; the signals are caught and the listener is up."""

    def stop(self, signum: int | None) -> bool:
        """End the work (*signum*: the signal that asked); False if it did not end in time."""

    def stopped(self) -> None:
        """Everything is released; say so."""


class Shell:
    """Signals, SIGHUP, the schema, the listener and the way out, around a :class:`Role`."""

    def __init__(self, service: Service, role: Role) -> None:
        self._service = service
        self._role = role
        self.schema = Schema(service.parts.database)
        self._reopen_logs = threading.Event()  # set by SIGHUP, acted on by the main loop
        self._stop_signal: int | None = None

    @property
    def stop(self) -> threading.Event:
        """Set to stop; a signal handler sets it too."""
        return self._service.stop

    def readiness(self) -> Probe:
        """Ready when the database answers and its schema is current."""
        return self.schema.readiness()

    def run(self) -> int:
        """Run the role until asked to stop; return the exit code.

        Raises :class:`notifier.web.server.HttpBindError` when the address cannot be bound.
        """
        address = self._service.parts.settings.http_address
        server = self._service.web_server(liveness=self._role.liveness, readiness=self.readiness)
        sock = bind(address) if server is not None and address is not None else None
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hangup)
        logs.use_journal_priorities(self._service.parts.settings.journal_stream)
        try:
            if server is not None and sock is not None:
                server.start(sock)
                host, port = sock.getsockname()[:2]
                log.info("http.listening", address=str(HttpAddress(host, port)))
            heap.settle()  # start-up is over: its objects stay out of the passes' collections
            self._role.start()
            while not self.stop.wait(timeout=1.0):
                if self._reopen_logs.is_set():
                    self._reopen_logs.clear()
                    self._reopen_log_files()
            finished = self._role.stop(self._stop_signal)
            if server is not None:
                server.stop()
            self._service.close()
            self._role.stopped()
            return 0 if finished else 1
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _reopen_log_files(self) -> None:
        try:
            reopened = logs.reopen_log_files()
        except OSError as error:
            log.error("log.reopen_failed", reason=error.strerror or str(error))
            return
        log.info("log.reopened", files=",".join(reopened) or None)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        # Nothing but flags here: logging from a signal handler can deadlock.
        self._stop_signal = signum
        self.stop.set()

    def _on_hangup(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame
        self._reopen_logs.set()  # a flag, as above; the main loop reopens within a second
