"""The example alert rules and Grafana dashboard: valid PromQL over metrics notifier exposes."""

from __future__ import annotations

import json
import re
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from notifier.runtime.metrics import Metrics
from tests.deploy import DEPLOY

RULES = DEPLOY / "prometheus" / "notifier.rules.yaml"
DASHBOARD = DEPLOY / "grafana" / "notifier-dashboard.json"
# Series Prometheus adds to every target itself.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# Grafana variables, replaced by what Grafana would put there before PromQL sees the query.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$instance": ".*"}


@pytest.fixture(scope="module")
def exposed() -> set[str]:
    """Every sample name a notifier scrape holds (the series exist from start-up, at 0)."""
    metrics = Metrics(sinks=["log", "ui"], thresholds=["1w"])
    text = metrics.exposition(None)[0].decode()
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    } | SYNTHETIC


def selectors(expression: str) -> set[str]:
    """The metric names an expression reads, from its parsed syntax tree."""
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expression), visit)
    return names


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            match = re.fullmatch(r"label_values\((\w+),\s*\w+\)", query["query"])
            assert match, query
            queries.append(match.group(1))
    return queries


def grafana_to_promql(query: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        query = query.replace(variable, value)
    assert "$" not in query, f"unknown Grafana variable in {query}"
    return query


class TestAlertRules:
    def test_every_rule_is_complete(self) -> None:
        """Each alert has an expression, a duration, a severity and a summary."""
        assert rules()
        for rule in rules():
            assert re.fullmatch(r"Notifier[A-Z]\w+", rule["alert"])
            assert re.fullmatch(r"\d+[smh]", rule["for"])
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert rule["annotations"]["summary"]

    @pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
    def test_expression_parses_and_reads_exposed_metrics(
        self, rule: dict[str, Any], exposed: set[str]
    ) -> None:
        """The expression is valid PromQL and every metric it reads is one notifier exposes."""
        names = selectors(rule["expr"])
        assert names
        assert names <= exposed, names - exposed


class TestDashboard:
    def test_panels_are_well_formed(self) -> None:
        """Unique panel ids, a title and at least one query each, on the chosen data source."""
        dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids))
        for panel in dashboard["panels"]:
            assert panel["title"]
            assert panel["targets"]
            assert panel["datasource"]["uid"] == "${datasource}"

    @pytest.mark.parametrize("query", dashboard_queries())
    def test_query_parses_and_reads_exposed_metrics(self, query: str, exposed: set[str]) -> None:
        """Every query is valid PromQL over metrics notifier exposes."""
        names = selectors(grafana_to_promql(query))
        assert names
        assert names <= exposed, names - exposed
