"""/metrics after real passes, read with prometheus-client's parsers."""

from __future__ import annotations

import asyncio
import re
import signal
from collections import Counter
from collections.abc import Iterable

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from notifier import cli as notifier_cli
from notifier.config.settings import load_settings
from notifier.delivery.checker import PassReport
from notifier.runtime.daemon import Daemon
from notifier.runtime.metrics import Metrics, PassResult, pass_result
from notifier.web.app import create_app

from .conftest import RunningDaemon, cli

# Every label a notifier metric may carry; each has a bound set by the configuration.
BOUNDED_LABELS = {"sink", "source", "kind", "outcome", "threshold", "result", "le", "version"}
WARN = r"Warn: API Token ci-deploy \(ID \w+\) will expire in less than 3 days\."


def families(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(family: Metric, name: str, **labels: str) -> float:
    """The value of the sample called *name* whose labels include *labels*."""
    matches = [
        sample.value
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]
    assert len(matches) == 1, (name, labels, family.samples)
    return matches[0]


def scrape(app: object, accept: str | None = None) -> httpx.Response:
    async def request() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://notifier") as client:
            headers = {"Accept": accept} if accept else {}
            return await client.get("/metrics", headers=headers)

    return asyncio.run(request())


def notifier_samples(parsed: Iterable[Metric]) -> list[tuple[str, dict[str, str]]]:
    return [
        (sample.name, sample.labels)
        for family in parsed
        if family.name.startswith("notifier_")
        for sample in family.samples
    ]


@pytest.fixture
def daemon_in_process() -> Daemon:
    """A daemon on the test's SQLite file, not started: tests call its pass directly."""
    return Daemon(load_settings())


class TestAfterAPass:
    def test_counts_after_one_pass(self, daemon_in_process: Daemon) -> None:
        """One token in the window, notified to log and ui: the scrape says exactly that."""
        assert notifier_cli.main(["tokens", "create", "--name", "ci-deploy", "--ttl", "3d"]) == 0
        assert daemon_in_process.run_pass() is not None
        app = create_app(
            liveness=daemon_in_process.liveness,
            readiness=daemon_in_process.readiness,
            metrics=daemon_in_process.metrics.exposition,
        )
        response = scrape(app)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        parsed = families(response.text)
        assert value(parsed["notifier_tokens_in_window"], "notifier_tokens_in_window") == 1
        notices = parsed["notifier_notices"]
        for sink in ("log", "ui"):
            sent = {"sink": sink, "kind": "expiring", "outcome": "sent"}
            assert value(notices, "notifier_notices_total", **sent) == 1
            failed = {"sink": sink, "kind": "expiring", "outcome": "failed"}
            assert value(notices, "notifier_notices_total", **failed) == 0
            expired = {"sink": sink, "kind": "expired", "outcome": "sent"}
            assert value(notices, "notifier_notices_total", **expired) == 0
            assert (
                value(parsed["notifier_sink_failures"], "notifier_sink_failures_total", sink=sink)
                == 0
            )
        passes = parsed["notifier_passes"]
        assert value(passes, "notifier_passes_total", result="ok") == 1
        assert value(passes, "notifier_passes_total", result="failed") == 0
        duration = parsed["notifier_pass_duration_seconds"]
        assert duration.type == "histogram"
        assert value(duration, "notifier_pass_duration_seconds_count") == 1
        last = parsed["notifier_last_successful_pass_timestamp_seconds"]
        assert value(last, "notifier_last_successful_pass_timestamp_seconds") > 0
        assert "notifier_build_info" in parsed
        daemon_in_process._parts.close()

    def test_no_label_names_a_token(self, daemon_in_process: Daemon) -> None:
        """However many tokens there are, no series carries a token's id or name."""
        for name in ("alpha", "beta", "gamma"):
            assert notifier_cli.main(["tokens", "create", "--name", name, "--ttl", "2d"]) == 0
        daemon_in_process.run_pass()
        text = daemon_in_process.metrics.exposition(None)[0].decode()
        samples = notifier_samples(text_string_to_metric_families(text))
        assert samples
        for _, labels in samples:
            assert set(labels) <= BOUNDED_LABELS
            assert not {"alpha", "beta", "gamma"} & set(labels.values())
        daemon_in_process._parts.close()

    def test_a_failed_pass_is_counted_and_sets_no_success(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A pass without its database counts as failed and leaves the last success at 0."""
        monkeypatch.setenv("NOTIFIER_DATABASE_URL", "postgresql://notifier@127.0.0.1:1/notifier")
        daemon = Daemon(load_settings())
        assert daemon.run_pass() is None
        parsed = families(daemon.metrics.exposition(None)[0].decode())
        assert value(parsed["notifier_passes"], "notifier_passes_total", result="failed") == 1
        last = parsed["notifier_last_successful_pass_timestamp_seconds"]
        assert value(last, "notifier_last_successful_pass_timestamp_seconds") == 0
        daemon._parts.close()

    def test_openmetrics_on_request(self, daemon_in_process: Daemon) -> None:
        """A scraper that asks for OpenMetrics gets it, and it parses as such."""
        daemon_in_process.run_pass()
        app = create_app(
            liveness=daemon_in_process.liveness,
            readiness=daemon_in_process.readiness,
            metrics=daemon_in_process.metrics.exposition,
        )
        response = scrape(app, accept="application/openmetrics-text; version=1.0.0")
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        parsed = openmetrics_families(response.text)  # type: ignore[no-untyped-call]
        names = {family.name for family in parsed}
        assert {"notifier_passes", "notifier_pass_duration_seconds"} <= names
        daemon_in_process._parts.close()

    def test_without_metrics_there_is_no_endpoint(self, daemon_in_process: Daemon) -> None:
        """create_app keeps its old signature: without metrics, /metrics is not served."""
        app = create_app(liveness=daemon_in_process.liveness, readiness=daemon_in_process.readiness)
        assert scrape(app).status_code == 404


class TestMetricsFromReports:
    @pytest.mark.parametrize(
        ("report", "expected"),
        [
            (PassReport(), PassResult.OK),
            (PassReport(sent=Counter({"log": 2})), PassResult.OK),
            (PassReport(failed=Counter({"webhook": 1})), PassResult.DEGRADED),
            (PassReport(failed_sources=["sql:billing"]), PassResult.DEGRADED),
            (PassReport(interrupted=True), PassResult.INTERRUPTED),
            # interrupted wins: the failures are retried anyway
            (PassReport(interrupted=True, failed=Counter({"log": 1})), PassResult.INTERRUPTED),
        ],
    )
    def test_pass_result(self, report: PassReport, expected: PassResult) -> None:
        """A pass is ok only when it ran to the end, read every source, delivered everything."""
        assert pass_result(report) is expected

    def test_failures_count_by_sink_and_keep_the_last_success(self) -> None:
        """A pass with failed deliveries counts them per sink and is not a success."""
        metrics = Metrics(sinks=["log", "webhook"], thresholds=[])
        ok = PassReport(
            in_window=3,
            sent=Counter({"log": 3, "webhook": 3}),
            notices=Counter({("log", "expiring", "sent"): 3, ("webhook", "expiring", "sent"): 3}),
            duration_ms=12,
        )
        metrics.observe_pass(ok, finished_at=1000.0)
        failing = PassReport(
            in_window=3,
            sent=Counter({"log": 1}),
            failed=Counter({"webhook": 1}),
            notices=Counter({("log", "expired", "sent"): 1, ("webhook", "expired", "failed"): 1}),
            duration_ms=9,
        )
        assert metrics.observe_pass(failing, finished_at=2000.0) is PassResult.DEGRADED
        parsed = families(metrics.exposition(None)[0].decode())
        notices = parsed["notifier_notices"]
        webhook = {"sink": "webhook"}
        assert (
            value(notices, "notifier_notices_total", **webhook, kind="expiring", outcome="sent")
            == 3
        )
        assert (
            value(notices, "notifier_notices_total", **webhook, kind="expired", outcome="failed")
            == 1
        )
        assert (
            value(notices, "notifier_notices_total", sink="log", kind="expiring", outcome="sent")
            == 3
        )
        assert (
            value(notices, "notifier_notices_total", sink="log", kind="expired", outcome="sent")
            == 1
        )
        failures = parsed["notifier_sink_failures"]
        assert value(failures, "notifier_sink_failures_total", sink="webhook") == 1
        assert value(failures, "notifier_sink_failures_total", sink="log") == 0
        last = parsed["notifier_last_successful_pass_timestamp_seconds"]
        assert value(last, "notifier_last_successful_pass_timestamp_seconds") == 1000.0
        results = parsed["notifier_passes"]
        assert value(results, "notifier_passes_total", result="degraded") == 1

    def test_an_unreadable_source_is_counted(self) -> None:
        """A source that could not be read counts once per pass, and the pass is degraded."""
        metrics = Metrics(sinks=["log"], thresholds=[], sources=["store", "sql:billing"])
        report = PassReport(failed_sources=["sql:billing"])
        assert metrics.observe_pass(report, finished_at=1.0) is PassResult.DEGRADED
        parsed = families(metrics.exposition(None)[0].decode())
        failures = parsed["notifier_source_failures"]
        assert value(failures, "notifier_source_failures_total", source="sql:billing") == 1
        assert value(failures, "notifier_source_failures_total", source="store") == 0


class TestNotifierRun:
    def test_scrape_a_running_daemon(
        self, env: dict[str, str], daemon: type[RunningDaemon]
    ) -> None:
        """A real `notifier run` serves /metrics without credentials, with the pass counted."""
        cli("tokens", "create", "--name", "ci-deploy", "--ttl", "3d", env=env)
        running = daemon({**env, "NOTIFIER_HTTP_ADDRESS": "127.0.0.1:0"})
        port = running.port
        running.wait_for(WARN)
        running.wait_for(r"check\.completed in_window=1 sent=2")
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert response.status_code == 200
        parsed = families(response.text)
        assert value(parsed["notifier_passes"], "notifier_passes_total", result="ok") == 1
        sent = {"sink": "log", "kind": "expiring", "outcome": "sent"}
        assert value(parsed["notifier_notices"], "notifier_notices_total", **sent) == 1
        assert value(parsed["notifier_tokens_in_window"], "notifier_tokens_in_window") == 1
        # The client's process metrics come along (the unit keeps /proc/stat readable for them).
        assert "process_resident_memory_bytes" in parsed
        assert not re.search(r"ci-deploy", response.text)
        assert running.stop(signal.SIGTERM) == 0
