"""What ``/metrics`` says about a known store: every value, per the README's metric table.

No broker: the recorder writes hand-made samples and the exporter's registry is scraped
the way Prometheus would (the text exposition, parsed back)."""
from __future__ import annotations

import pandas as pd
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from eventscope import schemas
from eventscope.exporter import METRICS, make_server_for, registry_for
from eventscope.recorder import Recorder
from eventscope.store import Store


def _lag_rows(at):
    kafka = dict(sampled_at=at, source="kafka", broker="kafka", group="billing", group_state="Stable", members=2)
    redis = dict(sampled_at=at, source="redis", broker="redis", group="mailer", group_state="n/a", members=1)
    return [
        # one group on two topics: partition lags 3, 7 and 5 (max 7, sum 15; per topic 10 and 5)
        {**kafka, "topic": "orders", "partition": 0, "committed": 97, "end": 100, "lag": 3, "lag_seconds": 4.5},
        {**kafka, "topic": "orders", "partition": 1, "committed": 13, "end": 20, "lag": 7, "lag_seconds": 2.0},
        {**kafka, "topic": "payments", "partition": 0, "committed": 40, "end": 45, "lag": 5, "lag_seconds": 9.25},
        # a partition never committed: no offset, no lag, no seconds reported for it
        {**kafka, "topic": "payments", "partition": 1, "committed": None, "end": 8, "lag": None,
         "lag_seconds": float("nan")},
        {**redis, "topic": "mail:out", "partition": 0, "committed": None, "end": 50, "lag": 6,
         "lag_seconds": 12.0, "pending": 4},
    ]


@pytest.fixture
def scraped(tmp_path):
    """{(metric name, sorted label items): value} of one scrape of a known store."""
    now = pd.Timestamp.now(tz="UTC").floor("s")
    store = Store(tmp_path)
    recorder = Recorder(store)
    older = now - pd.Timedelta(seconds=20)
    # an older sample with other numbers: only the newest sample is reported
    stale = [dict(r, sampled_at=older, lag=(r["lag"] or 0) + 100) for r in _lag_rows(older)]
    recorder.record({"lag": schemas.conform("lag", stale)})
    recorder.record({
        "lag": schemas.conform("lag", _lag_rows(now)),
        "topics": schemas.conform("topics", [
            {"sampled_at": now, "source": "kafka", "broker": "kafka", "topic": "orders", "partition": 0,
             "start": 11, "end": 100},
            {"sampled_at": now, "source": "kafka", "broker": "kafka", "topic": "orders", "partition": 1,
             "start": None, "end": 20},
            {"sampled_at": now, "source": "redis", "broker": "redis", "topic": "mail:out", "partition": 0,
             "start": 3, "end": 50}]),
        "health": schemas.conform("health", [
            {"sampled_at": now, "source": "kafka", "collector": "kafka.offsets", "ok": True, "error": "",
             "duration_ms": 3.0, "rows": 4, "last_success": now},
            {"sampled_at": now, "source": "redis", "collector": "redis.streams", "ok": False, "error": "boom",
             "duration_ms": 3.0, "rows": 0, "last_success": pd.NaT}]),
    })
    text = generate_latest(registry_for(store)).decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values, now


def _one(values, name, **labels):
    return values[(name, tuple(sorted(labels.items())))]


def _named(values, name):
    return {labels: v for (n, labels), v in values.items() if n == name}


def test_group_max_lag_is_the_largest_partition_not_the_sum(scraped):
    values, _ = scraped
    assert _one(values, "kafka_consumergroup_group_max_lag", cluster_name="kafka", group="billing") == 7
    assert _one(values, "kafka_consumergroup_group_sum_lag", cluster_name="kafka", group="billing") == 15
    assert _one(values, "kafka_consumergroup_group_max_lag_seconds", cluster_name="kafka", group="billing") == 9.25


def test_topic_sum_lag_sums_each_topic_apart(scraped):
    values, _ = scraped
    sums = _named(values, "kafka_consumergroup_group_topic_sum_lag")
    assert {dict(k)["topic"]: v for k, v in sums.items()} == {"orders": 10, "payments": 5}


def test_partition_metrics_carry_offsets_lag_and_seconds_of_the_newest_sample(scraped):
    values, _ = scraped
    part = dict(cluster_name="kafka", group="billing", topic="orders", partition="1")
    assert _one(values, "kafka_consumergroup_group_offset", **part) == 13
    assert _one(values, "kafka_consumergroup_group_lag", **part) == 7
    assert _one(values, "kafka_consumergroup_group_lag_seconds", **part) == 2.0
    # the never-committed partition has no offset, lag or seconds series at all
    unknown = ("partition", "1"), ("topic", "payments")
    for name in ("kafka_consumergroup_group_offset", "kafka_consumergroup_group_lag",
                 "kafka_consumergroup_group_lag_seconds"):
        assert not [k for k in _named(values, name) if set(unknown) <= set(k)], name
        assert len(_named(values, name)) == 3  # Kafka partitions only: Redis has its own names


def test_partition_offsets_are_kafka_only_and_skip_unknowns(scraped):
    values, _ = scraped
    latest = _named(values, "kafka_partition_latest_offset")
    assert {dict(k)["partition"]: v for k, v in latest.items()} == {"0": 100, "1": 20}
    earliest = _named(values, "kafka_partition_earliest_offset")
    assert earliest == {(("cluster_name", "kafka"), ("partition", "0"), ("topic", "orders")): 11}


def test_redis_groups_have_their_own_metrics(scraped):
    values, _ = scraped
    labels = dict(source="redis", group="mailer", stream="mail:out")
    assert _one(values, "eventscope_redis_group_lag", **labels) == 6
    assert _one(values, "eventscope_redis_group_lag_seconds", **labels) == 12.0
    assert _one(values, "eventscope_redis_group_pending", **labels) == 4
    assert not [k for k in _named(values, "kafka_consumergroup_group_lag") if ("group", "mailer") in k]


def test_status_health_and_sample_time(scraped):
    values, now = scraped
    statuses = _named(values, "eventscope_consumergroup_status")
    assert statuses and set(statuses.values()) == {1.0}
    assert {dict(k)["group"] for k in statuses} == {"billing", "mailer"}
    assert _one(values, "eventscope_collector_up", source="kafka", collector="kafka.offsets") == 1.0
    assert _one(values, "eventscope_collector_up", source="redis", collector="redis.streams") == 0.0
    assert _one(values, "eventscope_collector_last_success_timestamp_seconds", source="kafka",
                collector="kafka.offsets") == now.timestamp()
    assert not _named(values, "eventscope_collector_last_success_timestamp_seconds").keys() - {
        (("collector", "kafka.offsets"), ("source", "kafka"))}
    assert _one(values, "eventscope_last_sample_timestamp_seconds") == now.timestamp()
    assert _one(values, "eventscope_alerts_firing", severity="critical") == 0
    assert _one(values, "eventscope_alerts_firing", severity="warning") == 0


def test_every_family_has_its_documented_help(tmp_path):
    text = generate_latest(registry_for(Store(tmp_path))).decode()
    helps = {f.name: f.documentation for f in text_string_to_metric_families(text)}
    for name, (doc, _labels) in METRICS.items():
        assert helps[name] == doc


def test_healthz_answers_ok_and_other_paths_serve_metrics(tmp_path):
    import threading
    import urllib.request
    server = make_server_for(Store(tmp_path), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
            assert r.status == 200 and r.read() == b"ok"
            assert r.headers["Content-Type"] == "text/plain; charset=utf-8" and r.headers["Content-Length"] == "2"
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            assert b"# HELP kafka_consumergroup_group_max_lag " in r.read()
    finally:
        server.shutdown()
        server.server_close()


def test_serve_serves_the_store_where_asked_until_stopped(tmp_path, monkeypatch):
    import eventscope.exporter as exporter
    calls = []

    class Server:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            calls.append("closed")

        def serve_forever(self):
            calls.append("serving")

    def fake(store, config, host, port, timeout_s):
        calls.append((store, config, host, port, timeout_s))
        return Server()
    monkeypatch.setattr(exporter, "make_server_for", fake)
    store = Store(tmp_path)
    exporter.serve(store, "cfg", host="0.0.0.0", port=9400, timeout_s=2.5)
    assert calls == [(store, "cfg", "0.0.0.0", 9400, 2.5), "serving", "closed"]
    calls.clear()
    exporter.serve(store)
    assert calls[0] == (store, None, "127.0.0.1", 9308, 10.0)


def test_dlq_and_alert_metrics(tmp_path):
    now = pd.Timestamp.now(tz="UTC").floor("s")
    store = Store(tmp_path)
    recorder = Recorder(store)
    for i, depth in enumerate([10, 40]):  # 30 messages in 3 minutes: 10 a minute
        at = now - pd.Timedelta(minutes=3 * (1 - i))
        recorder.record({"dlq": schemas.conform("dlq", [
            {"sampled_at": at, "source": "kafka", "broker": "kafka", "dlq": "payments.DLT",
             "source_topic": "payments", "depth": depth, "oldest_at": now - pd.Timedelta(seconds=90),
             "reasons": "{}"},
            {"sampled_at": at, "source": "redis", "broker": "redis", "dlq": "mail:dlq", "source_topic": None,
             "depth": 0, "oldest_at": None, "reasons": "{}"}])})
    since = now - pd.Timedelta(minutes=10)
    store.put("alerts_active", schemas.conform("alerts_active", [
        {"rule": "lag_seconds", "metric": "lag_seconds", "subject": "kafka:billing/orders", "state": "firing",
         "severity": "critical", "since": since, "fired_at": since, "value": 400.0, "threshold": 300.0,
         "clear": 48.0, "detail": ""},
        {"rule": "dlq_depth", "metric": "dlq_depth", "subject": "kafka:payments.DLT", "state": "pending",
         "severity": "warning", "since": since, "fired_at": pd.NaT, "value": 40.0, "threshold": 1.0,
         "clear": 0.8, "detail": ""}]))
    values = {}
    for family in text_string_to_metric_families(generate_latest(registry_for(store)).decode()):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    kafka = dict(broker="kafka", dlq="payments.DLT", source_topic="payments")
    assert _one(values, "eventscope_dlq_depth", **kafka) == 40
    assert _one(values, "eventscope_dlq_growth_per_minute", **kafka) == 10.0
    assert _one(values, "eventscope_dlq_oldest_age_seconds", **kafka) >= 90.0
    redis = dict(broker="redis", dlq="mail:dlq", source_topic="")
    assert _one(values, "eventscope_dlq_depth", **redis) == 0
    assert not [k for k in _named(values, "eventscope_dlq_oldest_age_seconds") if ("dlq", "mail:dlq") in k]
    assert _one(values, "eventscope_alert_state", rule="lag_seconds", severity="critical",
                subject="kafka:billing/orders", state="firing") == 1.0
    assert _one(values, "eventscope_alert_state", rule="dlq_depth", severity="warning",
                subject="kafka:payments.DLT", state="pending") == 1.0
    assert _one(values, "eventscope_alerts_firing", severity="critical") == 1.0
    assert _one(values, "eventscope_alerts_firing", severity="warning") == 0.0  # pending is not firing

