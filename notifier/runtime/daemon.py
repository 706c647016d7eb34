"""The daemon: the scheduler's passes, as the role ``notifier run`` plays in the service shell.

The parts come from ``compose.build_daemon()``; signals, SIGHUP, the listener and the way out
are the shell's (:mod:`notifier.runtime.service`). ``Daemon.run()`` runs a pass at start-up
and then every interval on APScheduler, serves the HTTP listener beside it, and stops on
SIGTERM/SIGINT: no new pass starts, and the running one ends at once, since the stop event
reaches the checker and the network sinks (retry waits wake, a send in flight is abandoned).
Claims it did not complete are released, for the next pass to send at once, and the process
exits 0. A pass that still outlives
``NOTIFIER_SHUTDOWN_TIMEOUT`` (a database that hangs) logs ``daemon.shutdown_timeout``, and
the process exits 1.

Under systemd (``Type=notify``) it says ``READY=1`` once the database answered (the first
migration check) and the scheduler runs, feeds the watchdog from the scheduler's heartbeat job
(not from the pass, which may run once an hour), keeps ``STATUS=`` on the last pass, and says
``STOPPING=1`` on the way out. SIGHUP reopens the log file. After each pass it updates the
metrics, and after each successful one it pings ``NOTIFIER_HEARTBEAT_URL``.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from notifier.config.settings import Settings
from notifier.core.clock import Clock
from notifier.core.durations import format_duration
from notifier.db.database import DatabaseUnavailableError
from notifier.delivery.checker import PassReport
from notifier.runtime.compose import build_daemon
from notifier.runtime.metrics import PassResult
from notifier.runtime.service import Backoff, Shell
from notifier.web.app import Probe

HEARTBEAT = timedelta(seconds=5)
STALE_AFTER = timedelta(seconds=30)  # /healthz fails when no heartbeat ran for this long

log = structlog.get_logger("notifier.daemon")


class Daemon:
    """The scheduler's passes, their retries, probes, metrics and sd_notify: ``notifier run``."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self._settings = settings
        service = build_daemon(settings, clock=clock)
        self._parts = service.parts
        self._stop = service.stop
        self._shell = Shell(service, self)
        self._pass_lock = threading.Lock()
        self._last_heartbeat = time.monotonic()
        self._retries = Backoff()
        self._scheduler = BackgroundScheduler(
            timezone=UTC, executors={"default": ThreadPoolExecutor(max_workers=4)}
        )
        self.last_report: PassReport | None = None
        self._systemd = service.systemd
        self._watchdog = service.watchdog
        self._ready_sent = False
        self._dead_mans_switch = service.heartbeat
        self.metrics = service.metrics

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
        return self._shell.readiness()

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
            self._shell.schema.upgrade()
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
        self._retries.reset()
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
        """Retry a failed pass sooner than the interval, backing off as the shell does."""
        if self._stop.is_set() or not self._scheduler.running:
            return None
        delay = self._retries.next(cap=self._settings.interval)
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
        self._check_watchdog()
        return self._shell.run()

    def start(self) -> None:
        """Start the scheduler: the heartbeat job, and a pass now and every interval."""
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

    def _check_watchdog(self) -> None:
        """Warn when systemd's WatchdogSec= leaves the heartbeat no slack."""
        if self._watchdog is not None and self._watchdog < HEARTBEAT * 2:
            log.warning(
                "systemd.watchdog_too_short",
                watchdog=self._watchdog,
                heartbeat=HEARTBEAT,
                hint="WatchdogSec=30s gives the 5s heartbeat room",
            )

    def stop(self, signum: int | None) -> bool:
        """Stop the scheduler and wait for the running pass; False if it outlived the timeout."""
        log.info("daemon.stopping", signal=signum)
        self._systemd.notify("STOPPING=1", "STATUS=Stopping: ending the running pass")
        self._scheduler.shutdown(wait=False)
        timeout = self._settings.shutdown_timeout.total_seconds()
        finished = self._pass_lock.acquire(timeout=timeout)
        if finished:
            self._settle()
            self._pass_lock.release()
        else:
            log.error("daemon.shutdown_timeout", timeout=self._settings.shutdown_timeout)
        return finished

    def stopped(self) -> None:
        """The listener, the parts and the systemd socket are closed."""
        log.info("daemon.stopped")

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
