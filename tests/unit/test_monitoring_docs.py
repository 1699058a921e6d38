"""docs/grafana-dashboard.json and docs/prometheus-alerts.yml ask only for what the exporter serves.

Every PromQL expression of both files is taken apart into the metric names it selects and the
label names it matches, groups by or templates; each must be one the exporter declares (its
METRICS) and that a scrape of a store holding Kafka, Redis, DLQ and collector samples
really holds. The alert file must have Prometheus's rule-file structure, the dashboard
Grafana's."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from eventscope import schemas
from eventscope.exporter import COUNTERS, METRICS, exposed_names, registry_for
from eventscope.recorder import Recorder
from eventscope.store import Store

DOCS = Path(__file__).resolve().parents[2] / "docs"
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
            "offset", "inf", "nan", "atan2"}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
RULE_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
ALERT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _series(name: str) -> str:
    """The METRICS key of a series name (a counter's ``_total`` dropped)."""
    base = name.removesuffix("_total")
    return base if base in COUNTERS else name


def parse_promql(expr: str) -> tuple[set[str], set[str], dict[str, set[str]]]:
    """``(metric names, label names grouped by or joined on, {metric: label names matched})``
    of one PromQL expression (Grafana's ``$variables`` allowed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery selectors: [5m], [$__rate_interval]
    matched: dict[str, set[str]] = {}
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}", text):
        labels = {lm.group(1) for lm in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)", m.group(2))}
        if m.group(1) not in KEYWORDS:
            matched.setdefault(m.group(1), set()).update(labels)
    grouped = set()
    for m in re.finditer(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        grouped |= {g.strip() for g in m.group(2).split(",") if g.strip()}
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables outside selectors
    names = set()
    for m in re.finditer(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)\b(\s*\()?", text):
        word, call = m.group(1), m.group(2)
        if call or word in KEYWORDS or DURATION.match(word):
            continue  # a function, an operator word or a duration
        names.add(word)
    return names, grouped, {k: v for k, v in matched.items()}


def test_the_promql_reader_finds_names_and_labels():
    names, grouped, matched = parse_promql(
        'time() - max by (cluster_name, collector) (rate(foo_total{a="x,}", b!~"$y"}[5m] offset 1h)) > 300 '
        'and on (dlq) bar == bool 1 unless label_replace(baz, "d", "$1", "s", "(.*)")')
    assert names == {"foo_total", "bar", "baz"}
    assert grouped == {"cluster_name", "collector", "dlq"}
    assert matched == {"foo_total": {"a", "b"}}


def _check(expr: str, where: str, scraped: set[str]) -> set[str]:
    """The problems of one expression; returns the labels its result can carry."""
    names, grouped, matched = parse_promql(expr)
    assert names, f"{where}: no metric in {expr!r}"
    exposed = exposed_names()
    carried = set()
    for name in names:
        assert name in exposed, f"{where}: {name} is not a metric the exporter serves"
        assert name in scraped, f"{where}: a scrape of a full store holds no {name}"
        carried |= set(METRICS[_series(name)][1])
    for name, labels in matched.items():
        assert labels <= set(METRICS[_series(name)][1]), f"{where}: {name} has no label {labels - set(METRICS[_series(name)][1])}"
    assert grouped <= carried, f"{where}: grouped by labels none of its metrics has: {grouped - carried}"
    return grouped or carried


@pytest.fixture(scope="module")
def scraped(tmp_path_factory) -> set[str]:
    """Series names of a scrape of a store holding every kind of sample the exporter reads."""
    store = Store(tmp_path_factory.mktemp("store"))
    now = pd.Timestamp.now(tz="UTC").floor("s")
    kafka = dict(sampled_at=now, source="kafka", broker="kafka", group="billing", group_state="Stable", members=1)
    redis = dict(sampled_at=now, source="redis", broker="redis", group="mailer", group_state="n/a", members=1)
    recorder = Recorder(store)
    recorder.record({
        "lag": schemas.conform("lag", [
            {**kafka, "topic": "orders", "partition": 0, "committed": 7, "end": 10, "lag": 3, "lag_seconds": 4.0},
            {**redis, "topic": "mail", "partition": 0, "committed": 4, "end": 9, "lag": 5, "lag_seconds": 2.0,
             "pending": 1}]),
        "topics": schemas.conform("topics", [
            {"sampled_at": now, "source": "kafka", "broker": "kafka", "topic": "orders", "partition": 0,
             "start": 0, "end": 10},
            {"sampled_at": now, "source": "redis", "broker": "redis", "topic": "mail", "partition": 0,
             "start": 9, "end": 9}]),
        "consumers": schemas.conform("consumers", [
            {"sampled_at": now, "source": "redis", "broker": "redis", "kind": "redis", "group": "mailer",
             "topic": "mail", "consumer": "w", "host": "", "assignment": "", "pending": 1, "idle_ms": 5}]),
        "dlq": schemas.conform("dlq", [
            {"sampled_at": now, "source": "kafka", "broker": "kafka", "dlq": "orders.DLT", "source_topic": "orders",
             "depth": 2, "oldest_at": now - pd.Timedelta(minutes=1), "reasons": "{}"}]),
        "health": schemas.conform("health", [
            {"sampled_at": now, "source": "kafka", "collector": "kafka.offsets", "ok": True, "error": "",
             "duration_ms": 1.0, "rows": 1, "last_success": now}]),
    })
    text = generate_latest(registry_for(store)).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_alert_rules_have_prometheus_s_structure_and_ask_for_exported_metrics(scraped):
    doc = yaml.safe_load((DOCS / "prometheus-alerts.yml").read_text())
    assert set(doc) == {"groups"} and isinstance(doc["groups"], list) and doc["groups"]
    group_names, alerts = set(), set()
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules", "labels", "limit"} and group.get("rules"), group
        assert group["name"] not in group_names
        group_names.add(group["name"])
        for rule in group["rules"]:
            where = f"{group['name']}/{rule.get('alert')}"
            assert set(rule) <= RULE_KEYS and {"alert", "expr", "for", "labels", "annotations"} <= set(rule), where
            assert ALERT_NAME.match(rule["alert"]) and rule["alert"] not in alerts, where
            alerts.add(rule["alert"])
            assert isinstance(rule["expr"], str) and DURATION.match(str(rule["for"])), where
            assert rule["labels"].get("severity") in ("warning", "critical"), where
            assert {"summary", "description"} <= set(rule["annotations"]), where
            assert rule["expr"].count("(") == rule["expr"].count(")"), where
            labels = _check(rule["expr"], where, scraped)
            for text in rule["annotations"].values():
                for used in re.findall(r"\$labels\.(\w+)", text):
                    assert used in labels, f"{where}: {{{{ $labels.{used} }}}} is not a label of its result"
    # the four the README promises
    assert {"EventscopeKafkaLagSecondsCritical", "EventscopeDLQGrowing", "EventscopeCollectorStale",
            "EventscopeRedisStreamPendingHigh"} <= alerts


def _panels(panels):
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def test_grafana_dashboard_is_importable_and_asks_for_exported_metrics(scraped):
    doc = json.loads((DOCS / "grafana-dashboard.json").read_text())
    assert doc["title"] and doc["uid"] and isinstance(doc["schemaVersion"], int)
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name, var in variables.items():
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
            assert m, name
            names, _, _ = parse_promql(m.group(1))
            assert names and all(n in scraped for n in names), name
            assert all(m.group(2) in METRICS[_series(n)][1] for n in names), name
    ids, exprs, titles = set(), 0, set()
    for panel in _panels(doc["panels"]):
        assert panel["id"] not in ids and panel["title"], panel
        ids.add(panel["id"])
        titles.add(panel["title"])
        pos = panel["gridPos"]
        assert pos["w"] + pos["x"] <= 24 and pos["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
        for target in panel["targets"]:
            for used in re.findall(r"\$\{?(\w+)", target["expr"]):
                assert used in variables or used.startswith("__"), f"{panel['title']}: ${used} is not defined"
            _check(target["expr"], panel["title"], scraped)
            exprs += 1
    assert exprs >= 10
    # what the dashboard is for: lag per group, time lag, DLQ depth and growth, Redis lag, collectors
    assert {"Offset lag per group", "Time lag per group", "DLQ depth", "DLQ growth", "Stream group lag",
            "Collectors up"} <= titles
