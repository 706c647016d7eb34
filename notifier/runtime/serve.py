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
  Both are the service shell's (:mod:`notifier.runtime.service`).
"""

from __future__ import annotations

import threading

import structlog

from notifier.config.settings import Settings
from notifier.core.clock import Clock
from notifier.runtime.compose import build_serve
from notifier.runtime.service import Shell
from notifier.web.app import Probe

log = structlog.get_logger("notifier.web")


class WebService:
    """The web tier as the role of ``notifier serve``: migrations in the background."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        service = build_serve(settings, clock=clock)
        self._stop = service.stop
        self._shell = Shell(service, self)
        self._stopping = False
        self._migrator = threading.Thread(target=self._migrate, name="migrate", daemon=True)

    def liveness(self) -> Probe:
        """Alive whenever the app answers; the database is not consulted."""
        if self._stopping:
            return Probe(ok=False, reason="shutting down")
        return Probe(ok=True)

    def readiness(self) -> Probe:
        """Ready when the database answers and its schema is current."""
        return self._shell.readiness()

    def request_stop(self) -> None:
        """Ask the service to stop; safe from a signal handler (it only sets a flag)."""
        self._stop.set()

    def run(self) -> int:
        """Serve on NOTIFIER_HTTP_ADDRESS until asked to stop; return the exit code.

        Raises :class:`notifier.web.server.HttpBindError` when the address cannot be bound.
        """
        return self._shell.run()

    def start(self) -> None:
        """Migrate in the background; the listener is up."""
        self._migrator.start()
        log.info("serve.started", scheduler=False)

    def stop(self, signum: int | None) -> bool:
        """Say no longer alive; the shell then ends the streams and open responses."""
        del signum
        log.info("serve.stopping")
        self._stopping = True
        self._migrator.join(timeout=1)
        return True

    def stopped(self) -> None:
        """The listener and the parts are closed."""
        log.info("serve.stopped")

    def _migrate(self) -> None:
        if self._shell.schema.upgrade_until_current(self._stop):
            log.info("serve.ready")
