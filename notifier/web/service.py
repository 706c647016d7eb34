"""``notifier serve``: the web tier alone (API, page, probes), with no scheduler.

It scales apart from the checker: run one ``notifier run`` (or a cron'd ``notifier check``) and
as many ``notifier serve`` as the web needs, on the same database.

- ``/healthz`` answers through the same worker pool as the API and never looks at the
  database: it is 200 whenever the app can answer, and a wedged app (a blocked event loop,
  a worker pool that never frees up) does not answer, which every probe counts as failing.
- ``/readyz`` is 200 once the database answers and its schema is current. Until then a
  background thread migrates, retrying after 5 s and doubling up to 5 min, as ``run`` does.
- SIGTERM and SIGINT stop it: the live streams end, open responses finish (at most 5 s), the
  pending last-use times are written, and it exits 0. SIGHUP reopens ``NOTIFIER_LOG_FILE``.
"""

from __future__ import annotations

import signal
import threading
from datetime import timedelta
from types import FrameType

import structlog

from notifier.config.settings import HttpAddress, Settings
from notifier.core.clock import Clock
from notifier.core.durations import format_duration
from notifier.db import migrate
from notifier.db.database import DatabaseUnavailableError
from notifier.runtime import logs
from notifier.runtime.compose import build
from notifier.web.api import WebApi
from notifier.web.app import Probe, create_app
from notifier.web.server import WebServer, bind

RETRY_FIRST = timedelta(seconds=5)
RETRY_MAX = timedelta(minutes=5)

log = structlog.get_logger("notifier.web")


class WebService:
    """The app under uvicorn, migrations in the background, signals in the main thread."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self._settings = settings
        self._parts = build(settings, clock=clock)
        self._stop = threading.Event()
        self._reopen_logs = threading.Event()
        self._schema_current = threading.Event()
        self._stopping = False
        self.api = WebApi.from_components(self._parts)
        self.app = create_app(liveness=self.liveness, readiness=self.readiness, api=self.api)

    # --- probes -----------------------------------------------------------------------------

    def liveness(self) -> Probe:
        """Alive whenever the app answers; the database is not consulted."""
        if self._stopping:
            return Probe(ok=False, reason="shutting down")
        return Probe(ok=True)

    def readiness(self) -> Probe:
        """Ready when the database answers and its schema is current."""
        try:
            self._parts.database.ping()
        except DatabaseUnavailableError as error:
            return Probe(ok=False, reason=f"database unavailable: {error}")
        if not self._schema_current.is_set():
            return Probe(ok=False, reason="the schema is not migrated yet")
        return Probe(ok=True)

    # --- lifecycle --------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the service to stop; safe from a signal handler (it only sets a flag)."""
        self._stop.set()

    def run(self, address: HttpAddress) -> int:
        """Serve on *address* until asked to stop; return the exit code.

        Raises :class:`notifier.web.server.HttpBindError` when the address cannot be bound.
        """
        sock = bind(address)
        host, port = sock.getsockname()[:2]
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hangup)
        logs.use_journal_priorities(self._settings.journal_stream)
        server = WebServer(self.app, self.api)
        migrator = threading.Thread(target=self._migrate, name="migrate", daemon=True)
        try:
            migrator.start()
            server.start(sock)
            log.info("http.listening", address=str(HttpAddress(host, port)))
            log.info("serve.started", scheduler=False)
            while not self._stop.wait(timeout=1.0):
                if self._reopen_logs.is_set():
                    self._reopen_logs.clear()
                    self._reopen_log_files()
            log.info("serve.stopping")
            self._stopping = True
            server.stop()
            migrator.join(timeout=1)
            self._parts.close()
            log.info("serve.stopped")
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _migrate(self) -> None:
        """Bring the schema up to date, retrying while the database does not answer."""
        delay = RETRY_FIRST
        while not self._stop.is_set():
            try:
                if migrate.upgrade(self._parts.database):
                    log.info("db.migrated", revision=migrate.HEAD)
            except DatabaseUnavailableError as error:
                log.error("db.unavailable", reason=str(error), retry_in=format_duration(delay))
                if self._stop.wait(delay.total_seconds()):
                    return
                delay = min(delay * 2, RETRY_MAX)
                continue
            self._schema_current.set()
            log.info("serve.ready")
            return

    def _reopen_log_files(self) -> None:
        try:
            reopened = logs.reopen_log_files()
        except OSError as error:
            log.error("log.reopen_failed", reason=error.strerror or str(error))
            return
        log.info("log.reopened", files=",".join(reopened) or None)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame
        self._stop.set()  # only a flag: logging from a signal handler can deadlock

    def _on_hangup(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame
        self._reopen_logs.set()
