"""The daemon: scheduler, HTTP listener and signals around the parts ``compose.build()`` wires.

``Daemon.run()`` runs a pass at start-up and then every interval on APScheduler, serves the
HTTP listener beside it, and stops on SIGTERM/SIGINT: no new pass starts, the running one
finishes (bounded by ``NOTIFIER_SHUTDOWN_TIMEOUT``), and the process exits 0.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from types import FrameType

import structlog
import uvicorn
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from notifier.check import PassReport
from notifier.clock import Clock
from notifier.compose import build
from notifier.db import migrate
from notifier.db.database import DatabaseUnavailableError
from notifier.settings import HttpAddress, Settings
from notifier.web.app import Probe, create_app

HEARTBEAT = timedelta(seconds=5)
STALE_AFTER = timedelta(seconds=30)  # /healthz fails when no heartbeat ran for this long
RETRY_FIRST = timedelta(seconds=5)
RETRY_MAX = timedelta(minutes=5)

log = structlog.get_logger("notifier.daemon")


class HttpBindError(Exception):
    """The HTTP address cannot be bound (in use, not ours)."""


class Daemon:
    """The long-running process: scheduler, HTTP listener, signals."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self._settings = settings
        self._stop = threading.Event()
        self._parts = build(settings, clock=clock, stop=self._stop)
        self._pass_lock = threading.Lock()
        self._schema_current = False
        self._last_heartbeat = time.monotonic()
        self._retry_delay = RETRY_FIRST
        self._scheduler = BackgroundScheduler(
            timezone=UTC, executors={"default": ThreadPoolExecutor(max_workers=4)}
        )
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self._stop_signal: int | None = None
        self.last_report: PassReport | None = None

    # --- probes -----------------------------------------------------------------------------

    def liveness(self) -> Probe:
        """Alive while the scheduler runs and its heartbeat job keeps ticking."""
        if not self._scheduler.running:
            return Probe(ok=False, reason="the scheduler is not running")
        silent = time.monotonic() - self._last_heartbeat
        if silent > STALE_AFTER.total_seconds():
            return Probe(ok=False, reason=f"the scheduler has not ticked for {silent:.0f}s")
        return Probe(ok=True)

    def readiness(self) -> Probe:
        """Ready when the database answers and its schema is current."""
        try:
            self._parts.database.ping()
        except DatabaseUnavailableError as error:
            return Probe(ok=False, reason=f"database unavailable: {error}")
        if not self._schema_current:
            return Probe(ok=False, reason="the schema is not migrated yet")
        return Probe(ok=True)

    # --- the pass ---------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        self._last_heartbeat = time.monotonic()

    def run_pass(self) -> PassReport | None:
        """Run one pass unless one is running; log its outcome; never raise."""
        if not self._pass_lock.acquire(blocking=False):
            log.info("check.skipped", reason="the previous pass is still running")
            return None
        try:
            if self._stop.is_set():
                return None
            if not self._schema_current:
                if migrate.upgrade(self._parts.database):
                    log.info("db.migrated", revision=migrate.HEAD)
                self._schema_current = True
            report = self._parts.checker.run()
        except DatabaseUnavailableError as error:
            log.error("check.failed", reason=f"database unavailable: {error}")
            self._schedule_retry()
            return None
        except Exception as error:
            log.exception("check.failed", reason=f"{type(error).__name__}: {error}")
            self._schedule_retry()
            return None
        finally:
            self._pass_lock.release()
        self._retry_delay = RETRY_FIRST
        self.last_report = report
        log.info("check.completed", **report.fields())
        return report

    def _schedule_retry(self) -> None:
        """Retry a failed pass sooner than the interval, backing off to RETRY_MAX."""
        if self._stop.is_set() or not self._scheduler.running:
            return
        delay = min(self._retry_delay, self._settings.interval)
        self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)
        self._scheduler.add_job(
            self.run_pass,
            "date",
            run_date=datetime.now(UTC) + delay,
            id="retry",
            replace_existing=True,
            misfire_grace_time=None,
        )
        log.info("check.retry_scheduled", delay=delay)

    # --- lifecycle --------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the daemon to stop; safe from a signal handler (it only sets a flag)."""
        self._stop.set()

    def run(self) -> int:
        """Run until asked to stop; return the exit code."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            if self._settings.http_address is not None:
                self._start_http(self._settings.http_address)
            interval = self._settings.interval
            self._scheduler.add_job(
                self._heartbeat, IntervalTrigger(seconds=HEARTBEAT.total_seconds()), id="heartbeat"
            )
            self._scheduler.add_job(
                self.run_pass,
                IntervalTrigger(seconds=interval.total_seconds()),
                id="check",
                next_run_time=datetime.now(UTC),  # a pass at start-up
                coalesce=True,
                max_instances=1,
                misfire_grace_time=max(1, int(interval.total_seconds() * 0.9)),
            )
            self._scheduler.start()
            log.info(
                "daemon.started",
                interval=interval,
                backoff_interval=self._settings.backoff_interval,
                detection_window=self._settings.detection_window,
                sinks=",".join(self._settings.sinks),
            )
            while not self._stop.wait(timeout=1.0):
                pass
            return self._shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        # Nothing but flags here: logging from a signal handler can deadlock.
        self._stop_signal = signum
        self._stop.set()

    def _shutdown(self) -> int:
        log.info("daemon.stopping", signal=self._stop_signal)
        self._scheduler.shutdown(wait=False)
        timeout = self._settings.shutdown_timeout.total_seconds()
        finished = self._pass_lock.acquire(timeout=timeout)
        if finished:
            self._pass_lock.release()
        else:
            log.error("daemon.shutdown_timeout", timeout=self._settings.shutdown_timeout)
        self._stop_http()
        self._parts.close()
        log.info("daemon.stopped")
        return 0 if finished else 1

    def _start_http(self, address: HttpAddress) -> None:
        sock = _bind(address)
        host, port = sock.getsockname()[:2]
        app = create_app(liveness=self.liveness, readiness=self.readiness)
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._server_thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="http", daemon=True
        )
        self._server_thread.start()
        log.info("http.listening", address=str(HttpAddress(host, port)))

    def _stop_http(self) -> None:
        if self._server is None or self._server_thread is None:
            return
        self._server.should_exit = True
        self._server_thread.join(timeout=5)


def _bind(address: HttpAddress) -> socket.socket:
    """Bind the listening socket ourselves.

    Port 0 is then known before serving, and a taken port fails at start-up.
    """
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
    except OSError as error:
        raise HttpBindError(f"cannot listen on {address}: {error.strerror or error}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
