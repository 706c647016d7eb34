"""/metrics per source after real passes: up, credentials found, opt-in per-credential expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from notifier.config.settings import load_settings
from notifier.core.model import CredentialKind, WatchedToken
from notifier.delivery.checker import PassReport
from notifier.runtime.daemon import Daemon
from notifier.runtime.metrics import Metrics
from tests.certificates import Chain, fingerprint_of, leaf_pem, write

EXPIRY = "notifier_credential_expiry_timestamp_seconds"


def scrape(daemon: Daemon) -> dict[str, Metric]:
    text = daemon.metrics.exposition(None)[0].decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(family: Metric, **labels: str) -> float:
    (found,) = [s.value for s in family.samples if labels.items() <= s.labels.items()]
    return found


@pytest.fixture
def two_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[str, datetime]:
    """An x509 source with one certificate file, and a vault source nobody answers."""
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=20)
    leaf = Chain().leaf(
        "www.example.org", not_before=expires - timedelta(days=90), not_after=expires
    )
    write(tmp_path / "certs" / "site.pem", leaf_pem(leaf))
    monkeypatch.setenv("NOTIFIER_SOURCES", "store,x509,vault")
    monkeypatch.setenv("NOTIFIER_X509_PATHS", str(tmp_path / "certs"))
    monkeypatch.setenv("NOTIFIER_VAULT_ADDRESS", "http://127.0.0.1:9")
    monkeypatch.setenv("NOTIFIER_VAULT_TOKEN", "s.metrics-test")
    monkeypatch.setenv("NOTIFIER_VAULT_TIMEOUT", "2s")
    return fingerprint_of(leaf_pem(leaf)), expires


class TestSourceMetrics:
    def test_up_and_found_per_source(self, two_sources: tuple[str, datetime]) -> None:
        """Each source says whether the pass read it, and how many credentials it found."""
        daemon = Daemon(load_settings())
        try:
            assert daemon.run_pass() is not None
            parsed = scrape(daemon)
        finally:
            daemon._parts.close()
        up = parsed["notifier_source_up"]
        assert sample(up, source="x509") == 1
        assert sample(up, source="store") == 1
        assert sample(up, source="vault") == 0
        found = parsed["notifier_source_credentials"]
        assert sample(found, source="x509") == 1  # the certificate, though far from expiry
        assert sample(found, source="store") == 0
        assert EXPIRY not in parsed  # the per-credential family only when asked for

    def test_each_credential_when_asked_for(
        self, two_sources: tuple[str, datetime], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """NOTIFIER_METRICS_CREDENTIALS=true: each certificate's expiry as a timestamp."""
        fingerprint, expires = two_sources
        monkeypatch.setenv("NOTIFIER_METRICS_CREDENTIALS", "true")
        daemon = Daemon(load_settings())
        try:
            daemon.run_pass()
            parsed = scrape(daemon)
        finally:
            daemon._parts.close()
        labels = {"source": "x509", "kind": "certificate", "id": fingerprint}
        assert sample(parsed[EXPIRY], **labels, name="www.example.org") == expires.timestamp()


class TestCredentialSeries:
    def test_a_credential_gone_loses_its_series_a_failed_source_keeps_them(self) -> None:
        """Series follow what the last read found; a failed read changes nothing."""
        metrics = Metrics(sinks=["log"], thresholds=[], sources=["x509"], credentials=True)
        expires = datetime(2027, 1, 1, tzinfo=UTC)
        certificate = WatchedToken(
            source="x509",
            token_id="ab" * 32,
            name="www.example.org",
            expires_at=expires,
            credential_kind=CredentialKind.CERTIFICATE,
        )
        metrics.observe_pass(
            PassReport(found={"x509": 1}, credentials={"x509": [certificate]}), finished_at=1.0
        )
        assert sample(scrape_metrics(metrics)[EXPIRY], id="ab" * 32) == expires.timestamp()
        metrics.observe_pass(PassReport(failed_sources=["x509"]), finished_at=2.0)
        assert sample(scrape_metrics(metrics)[EXPIRY], id="ab" * 32) == expires.timestamp()
        assert sample(scrape_metrics(metrics)["notifier_source_up"], source="x509") == 0
        metrics.observe_pass(
            PassReport(found={"x509": 0}, credentials={"x509": []}), finished_at=3.0
        )
        assert not [
            s for f in scrape_metrics(metrics).values() if f.name == EXPIRY for s in f.samples
        ]


def scrape_metrics(metrics: Metrics) -> dict[str, Metric]:
    text = metrics.exposition(None)[0].decode()
    return {family.name: family for family in text_string_to_metric_families(text)}
