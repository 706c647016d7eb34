"""The composition root: the one place that builds and wires the parts from the settings.

The CLI, the daemon and the web tier all start here; nothing below reads the environment or
picks its own collaborators.

- :func:`build`: the parts every command uses (database, policy, sources, sinks, checker,
  token store), each built when a command first uses it;
- :func:`web_api`: the HTTP API over them, with the access rules and limits of the settings;
- :func:`build_daemon` and :func:`build_serve`: what ``notifier run`` and ``notifier serve``
  add (the API when they listen, metrics, the dead-man's switch, sd_notify), handed to the
  service shell (:mod:`notifier.runtime.service`).

The web tier, metrics and sd_notify are imported only when built, so that short CLI commands
do not import FastAPI, uvicorn or prometheus-client; likewise the checker and the sinks
(``tokens list`` builds neither) and the token store (``check`` has no use for it).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from notifier.config.settings import Settings
from notifier.core.clock import Clock, SystemClock
from notifier.core.policy import Policy
from notifier.db.database import Database
from notifier.sinks import Sink
from notifier.sinks.registry import Retry, SinkContext, build_sink
from notifier.sources import TokenSource
from notifier.sources.aws import AwsSource, AwsSourceConfig
from notifier.sources.config import SourceConfig, StoreSourceConfig
from notifier.sources.file import FileSource, FileSourceConfig
from notifier.sources.github import GitHubSource, GitHubSourceConfig
from notifier.sources.gitlab import GitLabSource, GitLabSourceConfig
from notifier.sources.sql import SqlSource, SqlSourceConfig
from notifier.sources.stackrox import StackRoxSource, StackRoxSourceConfig
from notifier.sources.store import StoreSource
from notifier.sources.vault import VaultSource, VaultSourceConfig
from notifier.sources.x509 import X509Source, X509SourceConfig

if TYPE_CHECKING:
    from notifier.credentials.listing import CredentialLists
    from notifier.delivery.checker import Checker
    from notifier.runtime.deadman import Heartbeat
    from notifier.runtime.metrics import Metrics
    from notifier.runtime.sdnotify import SystemdNotifier
    from notifier.tokens.lifecycle import TokenStore
    from notifier.web.api import WebApi
    from notifier.web.app import MetricsExposition, Probe
    from notifier.web.server import WebServer
    from notifier.web.stream import StreamOptions


class Components:
    """Everything a command needs, wired from the settings; each part built when first used.

    The database, clock and policy come at once. The sources, the sinks, the checker and
    the token store are built, and their modules imported, the first time a command asks
    for them, so a command pays for what it uses (issue #13). ``run`` and ``serve`` ask
    for every part they serve before they start (:func:`build_daemon`, :func:`build_serve`).
    """

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        database: Database,
        policy: Policy,
        *,
        stop: threading.Event | None = None,
        count_within: bool = False,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.database = database
        self.policy = policy
        self._stop = stop
        self._count_within = count_within

    @cached_property
    def sources(self) -> list[TokenSource]:
        """The configured token sources (none configured: the checker reads the store)."""
        return [build_source(config, self.database) for config in self.settings.source_configs]

    @cached_property
    def sinks(self) -> list[Sink]:
        """The configured sinks, in their order."""
        settings = self.settings
        retry = Retry(deadline=settings.retry_deadline, attempts=settings.retry_attempts)
        return [
            build_sink(
                config.name,
                SinkContext(
                    database=self.database,
                    clock=self.clock,
                    slice_name=settings.log_slice_name,
                    route=config.route,
                    options=config.options,
                    retry=retry,
                    window=settings.detection_window,
                    stop=self._stop,
                ),
            )
            for config in settings.sink_configs
        ]

    @cached_property
    def checker(self) -> Checker:
        """One pass over the sources and the sinks."""
        from notifier.delivery.checker import Checker  # noqa: PLC0415 - see the class

        settings = self.settings
        return Checker(
            database=self.database,
            sources=self.sources or None,
            sinks=self.sinks,
            policy=self.policy,
            clock=self.clock,
            lease=settings.claim_lease,
            batch_size=settings.batch_size,
            stop=self._stop,
            retention=settings.retention,
            count_within=self._count_within,
            # Only a process that serves metrics (the daemon) shows each credential.
            collect_credentials=self._count_within and settings.metrics_credentials,
            # The daemon's sources are the configured ones: what others found is dropped.
            forget_unlisted=self._count_within,
        )

    @cached_property
    def credentials(self) -> CredentialLists:
        """Every watched credential: the store's tokens (when it is a source) and the rest."""
        from notifier.credentials.listing import CredentialLists  # noqa: PLC0415 - see the class

        configs = self.settings.source_configs
        store = not configs or any(isinstance(config, StoreSourceConfig) for config in configs)
        return CredentialLists(self.database, self.policy, store=store)

    @cached_property
    def tokens(self) -> TokenStore:
        """The token store: create, list, rotate, verify our own tokens."""
        from notifier.tokens.lifecycle import TokenStore  # noqa: PLC0415 - see the class

        settings = self.settings
        pepper = settings.token_pepper.get_secret_value() if settings.token_pepper else None
        return TokenStore(
            self.database,
            self.clock,
            self.policy,
            prefix=settings.token_prefix,
            pepper=pepper,
            max_lifetime=settings.token_max_lifetime,
        )

    def build_every_part(self) -> Components:
        """Build every part now, as a service does before it starts; return the parts.

        A part that cannot be built then stops the start-up, as it always did, rather than
        the first pass in the scheduler's thread.
        """
        for part in ("sources", "sinks", "checker", "tokens"):
            getattr(self, part)
        return self

    def close(self) -> None:
        """Release the sinks and sources that were built, and the connection pool."""
        for sink in self.__dict__.get("sinks", ()):
            sink.close()
        for source in self.__dict__.get("sources", ()):
            source.close()
        self.database.dispose()


def build(
    settings: Settings,
    *,
    clock: Clock | None = None,
    stop: threading.Event | None = None,
    count_within: bool = False,
) -> Components:
    """Wire the parts together; nothing connects to the database yet."""
    clock = clock or SystemClock()
    database = Database(settings.effective_database_url())
    policy = Policy(
        detection_window=settings.detection_window,
        backoff_interval=settings.backoff_interval,
        pass_interval=settings.interval,
        log_slice=settings.log_slice,
        thresholds=settings.thresholds,
        notify_expired=settings.notify_expired,
    )
    return Components(settings, clock, database, policy, stop=stop, count_within=count_within)


# Each source kind's checked configuration -> the source it builds.
_SOURCES: dict[type[Any], Callable[[Any], TokenSource]] = {
    SqlSourceConfig: SqlSource,
    FileSourceConfig: FileSource,
    VaultSourceConfig: VaultSource,
    X509SourceConfig: X509Source,
    StackRoxSourceConfig: StackRoxSource,
    GitHubSourceConfig: GitHubSource,
    GitLabSourceConfig: GitLabSource,
    AwsSourceConfig: AwsSource,
}


def build_source(config: SourceConfig, database: Database) -> TokenSource:
    """The token source a checked configuration describes."""
    if isinstance(config, StoreSourceConfig):
        return StoreSource(database)
    return _SOURCES[type(config)](config)


def web_api(
    parts: Components,
    *,
    stream: StreamOptions | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> WebApi:
    """The HTTP API over *parts*, with the access rules and limits of their settings."""
    from notifier.web.access import Access  # noqa: PLC0415 - the web tier, only when served
    from notifier.web.api import WebApi  # noqa: PLC0415
    from notifier.web.auth import Authenticator  # noqa: PLC0415
    from notifier.web.lastused import LastUse  # noqa: PLC0415
    from notifier.web.ratelimit import FailureThrottle, RateLimiter  # noqa: PLC0415
    from notifier.web.server import ListenerLimits  # noqa: PLC0415
    from notifier.web.stream import StreamOptions, StreamSlots  # noqa: PLC0415

    settings = parts.settings
    bootstrap = settings.bootstrap_token
    access = Access(
        allowed=settings.api_allowed_ips,
        trusted_proxies=settings.trusted_proxies,
        bootstrap_token=bootstrap.get_secret_value() if bootstrap is not None else None,
    )
    authenticator = Authenticator(
        parts.tokens,
        parts.clock,
        access,
        RateLimiter(settings.api_rate_limit, monotonic=monotonic),
        LastUse(parts.tokens, settings.api_last_used_interval, monotonic=monotonic),
        throttle=FailureThrottle(settings.api_auth_failure_limit, monotonic=monotonic),
    )
    return WebApi(
        database=parts.database,
        authenticator=authenticator,
        credentials=parts.credentials,
        default_ttl=settings.token_default_ttl,
        detection_window=settings.detection_window,
        stream=stream or StreamOptions(),
        streams=StreamSlots(settings.api_max_streams_per_token),
        listener=ListenerLimits(
            header_timeout=settings.http_header_timeout,
            max_connections=settings.http_max_connections,
        ),
    )


@dataclass(kw_only=True)
class Service:
    """What a long-running command runs on: the parts, its stop, and the API it serves."""

    parts: Components
    stop: threading.Event  # set by SIGTERM/SIGINT; reaches the pass and the network sinks
    api: WebApi | None  # None when NOTIFIER_HTTP_ADDRESS is off
    exposition: MetricsExposition | None = None  # /metrics, when the process has metrics

    def web_server(
        self, *, liveness: Callable[[], Probe], readiness: Callable[[], Probe]
    ) -> WebServer | None:
        """The app under uvicorn, around the shell's probes; None when nothing is served."""
        if self.api is None:
            return None
        from notifier.web.app import create_app  # noqa: PLC0415
        from notifier.web.server import WebServer  # noqa: PLC0415

        app = create_app(
            liveness=liveness, readiness=readiness, metrics=self.exposition, api=self.api
        )
        # WebServer: uvicorn without its own X-Forwarded-For handling, ending the live streams
        # on shutdown (notifier/web/server.py).
        return WebServer(app, self.api)

    def close(self) -> None:
        """Release the parts."""
        self.parts.close()


@dataclass(kw_only=True)
class DaemonService(Service):
    """``notifier run``: the service, plus what tells the world about its passes."""

    metrics: Metrics
    systemd: SystemdNotifier
    watchdog: timedelta | None  # systemd's WatchdogSec=, when it watches this process
    heartbeat: Heartbeat | None  # NOTIFIER_HEARTBEAT_URL, pinged after each successful pass

    def close(self) -> None:
        """Release the parts, then the systemd socket."""
        super().close()
        self.systemd.close()


def build_daemon(settings: Settings, *, clock: Clock | None = None) -> DaemonService:
    """``notifier run``: every part, the API when it listens, metrics, heartbeat, sd_notify."""
    from notifier.runtime.metrics import Metrics  # noqa: PLC0415
    from notifier.runtime.sdnotify import SystemdNotifier, watchdog_timeout  # noqa: PLC0415

    stop = threading.Event()
    # The daemon serves metrics, which count tokens within each threshold.
    parts = build(settings, clock=clock, stop=stop, count_within=True).build_every_part()
    metrics = Metrics(
        sinks=[config.name for config in settings.sink_configs],
        thresholds=[label for label, _ in parts.policy.count_marks],
        sources=[source.name for source in settings.source_configs],
        credentials=settings.metrics_credentials,
    )
    heartbeat = None
    if settings.heartbeat_url:
        # httpx only for a daemon that pings: the idle daemon without it is 3 MiB smaller.
        from notifier.runtime.deadman import Heartbeat  # noqa: PLC0415

        heartbeat = Heartbeat(settings.heartbeat_url.get_secret_value())
    return DaemonService(
        parts=parts,
        stop=stop,
        api=web_api(parts) if settings.http_address is not None else None,
        exposition=metrics.exposition,
        metrics=metrics,
        systemd=SystemdNotifier(settings.notify_socket),
        watchdog=watchdog_timeout(settings.watchdog_usec, settings.watchdog_pid, os.getpid()),
        heartbeat=heartbeat,
    )


def build_serve(settings: Settings, *, clock: Clock | None = None) -> Service:
    """``notifier serve``: the parts and the API, without the scheduler's extras."""
    parts = build(settings, clock=clock).build_every_part()
    return Service(parts=parts, stop=threading.Event(), api=web_api(parts))
