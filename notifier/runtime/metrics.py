"""Prometheus metrics of the check passes, served on ``/metrics``.

Every label has a bound fixed by the configuration: ``sink`` (the configured sinks),
``source`` (the configured token sources), ``outcome`` (sent, failed), ``threshold`` (the
configured thresholds) and ``result`` (four values). No label carries a token id or name: their
number has no bound, and each would be a time series of its own.

- ``notifier_tokens_in_window{threshold}`` (gauge): tokens expiring within each fixed
  threshold (or the detection window when none is configured), at the last pass;
- ``notifier_notices_total{sink,kind,outcome}``: notices sent or failed, by kind (expiring,
  expired, renewed, resolved);
- ``notifier_sink_failures_total{sink}``: failed deliveries, by sink;
- ``notifier_source_failures_total{source}``: passes in which a token source could not be read;
- ``notifier_source_up{source}`` (gauge): 1 when the last pass read the source whole, else 0;
- ``notifier_source_credentials{source}`` (gauge): credentials the source read in the last
  pass that read it: all it holds for a source that reads everything (every kind but the store
  and sql), those of the window for the store
  and sql (which are read by the window, not whole);
- ``notifier_credential_expiry_timestamp_seconds{source,kind,id,name}`` (gauge, only with
  NOTIFIER_METRICS_CREDENTIALS=true): each credential's expiry in Unix time, for the sources
  that read everything (every kind but store and sql). Timestamps, not durations, as
  Prometheus advises: the series changes only when the credential does. This one label set
  per credential is the exception to the rule below, which is why it is opt-in (docs/sources.md);
- ``notifier_pass_duration_seconds`` (histogram): how long the passes that ran took;
- ``notifier_passes_total{result}``: passes by result (ok, degraded, interrupted, failed);
- ``notifier_last_successful_pass_timestamp_seconds`` (gauge): end of the last ``ok`` pass;
- ``notifier_build_info{version}`` (gauge): always 1; plus the client's process_* metrics.

A pass is *successful* (``ok``) when it ran to its end, read every source and every delivery
succeeded: what ``notifier check`` reports as exit 0 (``degraded`` is its exit 75). The
heartbeat URL is pinged after exactly those passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from functools import partial

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder

import notifier
from notifier.core.model import NoticeKind
from notifier.delivery.checker import PassReport

# From a steady pass on a small table (milliseconds) to a first pass over a large one (minutes).
PASS_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


# The help text of each series, as /metrics shows it.
_IN_WINDOW = "Tokens expiring within the threshold (and not revoked), at the last pass."
_NOTICES = "Notices handed to a sink, by sink, kind and outcome (sent or failed)."
_SINK_FAILURES = "Deliveries a sink failed; they are retried on a later pass."
_SOURCE_FAILURES = "Passes in which a token source could not be read; the next pass tries again."
_PASSES = "Check passes by result: ok, degraded, interrupted, failed."
_LAST_OK = "When the last pass with no failed delivery ended, in Unix time (0: none yet)."
_SOURCE_UP = "1 when the last pass read the source whole; 0 when it or one of its places failed."
_SOURCE_FOUND = "Credentials the source read in its last pass (the store and sql: the window's)."
_EXPIRY = "A watched credential's expiry, in Unix time (opt-in: NOTIFIER_METRICS_CREDENTIALS)."


class PassResult(StrEnum):
    """How a pass ended, as the ``result`` label says it."""

    OK = "ok"  # ran to its end, read every source, every delivery succeeded
    DEGRADED = "degraded"  # ran; a delivery failed or a source was unreadable (exit 75)
    INTERRUPTED = "interrupted"  # stopped between batches by a shutdown
    FAILED = "failed"  # did not run: the database or the pass itself failed


def pass_result(report: PassReport) -> PassResult:
    """The result of a pass that returned *report*."""
    if report.interrupted:
        return PassResult.INTERRUPTED
    if report.degraded:
        return PassResult.DEGRADED
    return PassResult.OK


class Metrics:
    """The daemon's metrics, in a registry of their own (two daemons in a test do not mix)."""

    def __init__(
        self,
        *,
        sinks: Sequence[str],
        thresholds: Sequence[str],
        sources: Sequence[str] = (),
        registry: CollectorRegistry | None = None,
        credentials: bool = False,
    ) -> None:
        # The *_created series would double the series count for a timestamp nobody graphs;
        # the switch is process-wide, and this process serves no other metrics.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream
        self.registry = registry if registry is not None else CollectorRegistry()
        self._thresholds = list(thresholds)
        gauge = partial(Gauge, registry=self.registry)
        counter = partial(Counter, registry=self.registry)
        self.tokens_in_window = gauge("notifier_tokens_in_window", _IN_WINDOW, ["threshold"])
        self.notices = counter("notifier_notices", _NOTICES, ["sink", "kind", "outcome"])
        self.sink_failures = counter("notifier_sink_failures", _SINK_FAILURES, ["sink"])
        self.source_failures = counter("notifier_source_failures", _SOURCE_FAILURES, ["source"])
        self.source_up = gauge("notifier_source_up", _SOURCE_UP, ["source"])
        self.source_credentials = gauge("notifier_source_credentials", _SOURCE_FOUND, ["source"])
        self.credential_expiry = (
            gauge(
                "notifier_credential_expiry_timestamp_seconds",
                _EXPIRY,
                ["source", "kind", "id", "name"],
            )
            if credentials
            else None
        )
        self._credential_series: set[tuple[str, str, str, str]] = set()
        self._sources = list(sources)
        self.pass_duration = Histogram(
            "notifier_pass_duration_seconds",
            "How long a pass that ran took.",
            buckets=PASS_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.passes = counter("notifier_passes", _PASSES, ["result"])
        self.last_success = gauge("notifier_last_successful_pass_timestamp_seconds", _LAST_OK)
        build_info = gauge(
            "notifier_build_info", "The running notifier's version; always 1.", ["version"]
        )
        build_info.labels(version=notifier.__version__).set(1)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        # Every series exists from the start at 0, so rate() and absent() work before the
        # first notice, and a dashboard shows a flat line rather than "no data".
        for threshold in self._thresholds:
            self.tokens_in_window.labels(threshold=threshold)
        for sink in sinks:
            self.sink_failures.labels(sink=sink)
            for kind in NoticeKind:
                for outcome in ("sent", "failed"):
                    self.notices.labels(sink=sink, kind=kind.value, outcome=outcome)
        for source in sources:
            self.source_failures.labels(source=source)
        for result in PassResult:
            self.passes.labels(result=result.value)

    def observe_pass(self, report: PassReport, *, finished_at: float) -> PassResult:
        """Count a pass that ran; *finished_at* is its end in Unix time."""
        for threshold in self._thresholds:
            self.tokens_in_window.labels(threshold=threshold).set(report.within[threshold])
        for (sink, kind, outcome), count in report.notices.items():
            self.notices.labels(sink=sink, kind=kind, outcome=outcome).inc(count)
        for sink, count in report.failed.items():
            self.sink_failures.labels(sink=sink).inc(count)
        for source in report.failed_sources:
            self.source_failures.labels(source=source).inc()
        self._observe_sources(report)
        self.pass_duration.observe(report.duration_ms / 1000)
        result = pass_result(report)
        self.passes.labels(result=result.value).inc()
        if result is PassResult.OK:
            self.last_success.set(finished_at)
        return result

    def _observe_sources(self, report: PassReport) -> None:
        """Each source's up and count; each credential's expiry when asked for."""
        failed = set(report.failed_sources)
        for source in self._sources:
            read = source in report.found
            if not read and source not in failed:
                continue  # not reached this pass (interrupted): the last values stand
            self.source_up.labels(source=source).set(0 if source in failed else 1)
            if read:
                self.source_credentials.labels(source=source).set(report.found[source])
        if self.credential_expiry is None:
            return
        series: set[tuple[str, str, str, str]] = set()
        for source, credentials in report.credentials.items():
            for credential in credentials:
                if credential.expires_at is None:
                    continue
                key = (
                    source,
                    credential.credential_kind.value,
                    credential.token_id,
                    credential.name,
                )
                series.add(key)
                self.credential_expiry.labels(*key).set(credential.expires_at.timestamp())
        # A credential gone from a source that was read loses its series; a source that
        # failed this pass keeps its credentials' series as they were.
        for key in self._credential_series - series:
            if key[0] in report.credentials:
                self.credential_expiry.remove(*key)
            else:
                series.add(key)
        self._credential_series = series

    def observe_failure(self) -> None:
        """Count a pass that could not run (database unavailable, crash)."""
        self.passes.labels(result=PassResult.FAILED.value).inc()

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics in the format *accept* asks for (Prometheus text or OpenMetrics)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
