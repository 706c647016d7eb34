"""The composition root: the one place that builds and wires the parts from the settings.

The CLI and the daemon both start here; nothing below reads the environment or picks its own
collaborators.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from notifier.config.settings import Settings
from notifier.core.clock import Clock, SystemClock
from notifier.core.policy import Policy
from notifier.db.database import Database
from notifier.delivery.checker import Checker
from notifier.sinks import Sink
from notifier.sinks.registry import Retry, SinkContext, build_sink
from notifier.sources import TokenSource
from notifier.sources.config import SourceConfig
from notifier.sources.file import FileSource, FileSourceConfig
from notifier.sources.sql import SqlSource, SqlSourceConfig
from notifier.sources.store import StoreSource
from notifier.tokens.lifecycle import TokenStore


@dataclass
class Components:
    """Everything a command needs, built once from the settings."""

    settings: Settings
    clock: Clock
    database: Database
    policy: Policy
    sources: list[TokenSource]
    sinks: list[Sink]
    checker: Checker
    tokens: TokenStore

    def close(self) -> None:
        """Release the sinks and the connection pool."""
        for sink in self.sinks:
            sink.close()
        for source in self.sources:
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
    retry = Retry(deadline=settings.retry_deadline, attempts=settings.retry_attempts)
    sinks = [
        build_sink(
            config.name,
            SinkContext(
                database=database,
                clock=clock,
                slice_name=settings.log_slice_name,
                route=config.route,
                options=config.options,
                retry=retry,
                window=settings.detection_window,
                stop=stop,
            ),
        )
        for config in settings.sink_configs
    ]
    sources = [build_source(config, database) for config in settings.source_configs]
    checker = Checker(
        database=database,
        sources=sources or None,
        sinks=sinks,
        policy=policy,
        clock=clock,
        lease=settings.claim_lease,
        batch_size=settings.batch_size,
        stop=stop,
        retention=settings.retention,
        count_within=count_within,
    )
    pepper = settings.token_pepper.get_secret_value() if settings.token_pepper else None
    tokens = TokenStore(
        database,
        clock,
        policy,
        prefix=settings.token_prefix,
        pepper=pepper,
        max_lifetime=settings.token_max_lifetime,
    )
    return Components(settings, clock, database, policy, sources, sinks, checker, tokens)


def build_source(config: SourceConfig, database: Database) -> TokenSource:
    """The token source a checked configuration describes."""
    if isinstance(config, SqlSourceConfig):
        return SqlSource(config)
    if isinstance(config, FileSourceConfig):
        return FileSource(config)
    return StoreSource(database)
