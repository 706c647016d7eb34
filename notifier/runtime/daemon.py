"""The daemon: scheduler, HTTP listener and signals around the parts ``compose.build()`` wires.

``Daemon.run()`` runs a pass at start-up and then every interval on APScheduler, serves the
HTTP listener beside it, and stops on SIGTERM/SIGINT: no new pass starts, and the running one
ends at once, since the stop event reaches the checker and the network sinks (retry waits
wake, a send in flight is abandoned). Claims it did not complete are released, for the next
pass to send at once, and the process exits 0. A pass that still outlives
``NOTIFIER_SHUTDOWN_TIMEOUT`` (a database that hangs) logs ``daemon.shutdown_timeout``, and
the process exits 1.

Under systemd (``Type=notify``) it says ``READY=1`` once the database answered (the first
migration check) and the scheduler runs, feeds the watchdog from the scheduler's heartbeat job
(not from the pass, which may run once an hour), keeps ``STATUS=`` on the last pass, and says
``STOPPING=1`` on the way out. SIGHUP reopens the log file. After each pass it updates the
metrics, and after each successful one it pings ``NOTIFIER_HEARTBEAT_URL``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from types import FrameType

import structlog
import uvicorn
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from notifier.config.settings import HttpAddress, Settings
from notifier.core.clock import Clock
from notifier.core.durations import format_duration
from notifier.db import migrate
from notifier.db.database import DatabaseUnavailableError
from notifier.delivery.checker import PassReport
from notifier.runtime import logs
from notifier.runtime.compose import build
from notifier.runtime.deadman import Heartbeat
from notifier.runtime.metrics import Metrics, PassResult
from notifier.runtime.sdnotify import SystemdNotifier, watchdog_timeout
from notifier.web.api import WebApi
from notifier.web.app import Probe, create_app
from notifier.web.server import WebServer, bind

HEARTBEAT = timedelta(seconds=5)
STALE_AFTER = timedelta(seconds=30)  # /healthz fails when no heartbeat ran for this long
RETRY_FIRST = timedelta(seconds=5)
RETRY_MAX = timedelta(minutes=5)

log = structlog.get_logger("notifier.daemon")


class Daemon:
    """The long-running process: scheduler, HTTP listener, signals."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self._settings = settings
        self._stop = threading.Event()
        # The daemon serves metrics, which count tokens within each threshold.
        self._parts = build(settings, clock=clock, stop=self._stop, count_within=True)
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
        self._reopen_logs = threading.Event()  # set by SIGHUP, acted on by the main loop
        self.last_report: PassReport | None = None
        self._systemd = SystemdNotifier(settings.notify_socket)
        self._watchdog = watchdog_timeout(
            settings.watchdog_usec, settings.watchdog_pid, os.getpid()
        )
        self._ready_sent = False
        self._dead_mans_switch = (
            Heartbeat(settings.heartbeat_url.get_secret_value()) if settings.heartbeat_url else None
        )
        self.metrics = Metrics(
            sinks=[config.name for config in settings.sink_configs],
            thresholds=[label for label, _ in self._parts.policy.count_marks],
            sources=[source.name for source in settings.source_configs],
        )

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
        if self._watchdog is not None:
            # From the scheduler's own job: a wedged scheduler stops this, and systemd restarts.
            self._systemd.notify("WATCHDOG=1")

    def _announce_ready(self) -> None:
        """READY=1, once: the database answered and the scheduler runs."""
        if self._ready_sent or not self._scheduler.running:
            return
        self._ready_sent = True
        self._systemd.notify("READY=1", "STATUS=Ready; the first pass is running")
        log.info("daemon.ready", systemd=self._systemd.enabled)

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
            self._announce_ready()
            report = self._parts.checker.run()
        except DatabaseUnavailableError as error:
            log.error("check.failed", reason=f"database unavailable: {error}")
            self._pass_failed(f"database unavailable: {error}")
            return None
        except Exception as error:
            log.exception("check.failed", reason=f"{type(error).__name__}: {error}")
            self._pass_failed(f"{type(error).__name__}: {error}")
            return None
        finally:
            self._pass_lock.release()
        self._retry_delay = RETRY_FIRST
        self.last_report = report
        log.info("check.completed", **report.fields())
        self._pass_done(report)
        return report

    def _pass_done(self, report: PassReport) -> None:
        """Metrics, systemd status and the dead-man's switch after a pass that ran."""
        finished = datetime.now(UTC)
        result = self.metrics.observe_pass(report, finished_at=finished.timestamp())
        fields = report.fields()
        unreadable = f", unreadable: {fields['failed_sources']}" if report.failed_sources else ""
        self._systemd.status(
            f"Last pass {finished:%Y-%m-%dT%H:%M:%SZ}: {result.value}, "
            f"{fields['in_window']} in the window, {fields['sent']} sent, "
            f"{fields['failed']} failed, {fields['claimed_elsewhere']} claimed elsewhere"
            f"{unreadable}"
        )
        if result is PassResult.OK and self._dead_mans_switch is not None:
            self._dead_mans_switch.ping()

    def _pass_failed(self, reason: str) -> None:
        self.metrics.observe_failure()
        delay = self._schedule_retry()
        retry = f"; retrying in {format_duration(delay)}" if delay is not None else ""
        self._systemd.status(f"Last pass failed: {reason}{retry}")

    def _schedule_retry(self) -> timedelta | None:
        """Retry a failed pass sooner than the interval, backing off to RETRY_MAX."""
        if self._stop.is_set() or not self._scheduler.running:
            return None
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
        return delay

    # --- lifecycle --------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the daemon to stop; safe from a signal handler (it only sets a flag)."""
        self._stop.set()

    def run(self) -> int:
        """Run until asked to stop; return the exit code."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hangup)
        logs.use_journal_priorities(self._settings.journal_stream)
        self._check_watchdog()
        try:
            if self._settings.http_address is not None:
                self._start_http(self._settings.http_address)
            interval = self._settings.interval
            self._scheduler.add_job(
                self._heartbeat,
                IntervalTrigger(seconds=HEARTBEAT.total_seconds()),
                id="heartbeat",
                next_run_time=datetime.now(UTC),  # the watchdog hears from us at once
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
                if self._reopen_logs.is_set():
                    self._reopen_logs.clear()
                    self._reopen_log_files()
            return self._shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        # Nothing but flags here: logging from a signal handler can deadlock.
        self._stop_signal = signum
        self._stop.set()

    def _on_hangup(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame
        self._reopen_logs.set()  # a flag, as above; the main loop reopens within a second

    def _reopen_log_files(self) -> None:
        try:
            reopened = logs.reopen_log_files()
        except OSError as error:
            log.error("log.reopen_failed", reason=error.strerror or str(error))
            return
        log.info("log.reopened", files=",".join(reopened) or None)

    def _check_watchdog(self) -> None:
        """Warn when systemd's WatchdogSec= leaves the heartbeat no slack."""
        if self._watchdog is not None and self._watchdog < HEARTBEAT * 2:
            log.warning(
                "systemd.watchdog_too_short",
                watchdog=self._watchdog,
                heartbeat=HEARTBEAT,
                hint="WatchdogSec=30s gives the 5s heartbeat room",
            )

    def _shutdown(self) -> int:
        log.info("daemon.stopping", signal=self._stop_signal)
        self._systemd.notify("STOPPING=1", "STATUS=Stopping: ending the running pass")
        self._scheduler.shutdown(wait=False)
        timeout = self._settings.shutdown_timeout.total_seconds()
        finished = self._pass_lock.acquire(timeout=timeout)
        if finished:
            self._settle()
            self._pass_lock.release()
        else:
            log.error("daemon.shutdown_timeout", timeout=self._settings.shutdown_timeout)
        self._stop_http()
        self._parts.close()
        self._systemd.close()
        log.info("daemon.stopped")
        return 0 if finished else 1

    def _settle(self) -> None:
        """Leave no claim of ours behind: write what a failed pass could not, release the rest.

        Otherwise another replica would wait out the lease (NOTIFIER_CLAIM_LEASE) before
        sending what this one claimed. With the database still down, the leases run out.
        The replica's policy row goes too: the configuration it ran is no longer live.
        """
        try:
            self._parts.checker.settle()
            self._parts.checker.retire()
        except Exception as error:  # noqa: BLE001 - stopping must not fail on this
            log.warning(
                "check.settle_failed",
                reason=f"{type(error).__name__}: {error}",
                hint="claims are retried once NOTIFIER_CLAIM_LEASE runs out",
            )

    def _start_http(self, address: HttpAddress) -> None:
        sock = bind(address)
        host, port = sock.getsockname()[:2]
        api = WebApi.from_components(self._parts)
        app = create_app(
            liveness=self.liveness,
            readiness=self.readiness,
            metrics=self.metrics.exposition,
            api=api,
        )
        # WebServer: uvicorn without its own X-Forwarded-For handling, ending the live streams
        # on shutdown (notifier/web/server.py).
        self._server = WebServer(app, api)
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
