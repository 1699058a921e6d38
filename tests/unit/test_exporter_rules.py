"""What ``/metrics`` says about a known store: every value, per the README's metric table.

No broker: the recorder writes hand-made samples and the exporter's registry is scraped
the way Prometheus would (the text exposition, parsed back)."""
from __future__ import annotations

import pandas as pd
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from eventscope import schemas
from eventscope.config import load_config
from eventscope.exporter import METRICS, kafka_members, make_server_for, redis_dbs, registry_for
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
        {**redis, "topic": "mail:out", "partition": 0, "committed": 44, "end": 50, "lag": 6,
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
             "start": 3, "end": 50},
            {"sampled_at": now, "source": "redis", "broker": "redis", "topic": "audit", "partition": 0,
             "start": 7, "end": 9}]),
        "consumers": schemas.conform("consumers", [
            # orders 0 and payments 0 are assigned; orders 1 is the other member's; payments 1 nobody's
            {"sampled_at": now, "source": "kafka", "broker": "kafka", "kind": "kafka", "group": "billing",
             "topic": "orders,payments", "consumer": "billing-1", "member_id": "billing-1-5e0c", "host": "/10.0.0.7",
             "assignment": "orders:0 payments:0"},
            {"sampled_at": now, "source": "kafka", "broker": "kafka", "kind": "kafka", "group": "billing",
             "topic": "orders", "consumer": "billing-2", "member_id": "billing-2-77aa", "host": "/10.0.0.8",
             "assignment": "orders:1"},
            {"sampled_at": now, "source": "redis", "broker": "redis", "kind": "redis", "group": "mailer",
             "topic": "mail:out", "consumer": "worker-a", "host": "", "assignment": "", "pending": 3,
             "idle_ms": 1500},
            {"sampled_at": now, "source": "redis", "broker": "redis", "kind": "redis", "group": "mailer",
             "topic": "mail:out", "consumer": "worker-b", "host": "", "assignment": "", "pending": 1,
             "idle_ms": 250}]),
        "health": schemas.conform("health", [
            {"sampled_at": now, "source": "kafka", "collector": "kafka.offsets", "ok": True, "error": "",
             "duration_ms": 3.0, "rows": 4, "last_success": now},
            {"sampled_at": now, "source": "redis", "collector": "redis.streams", "ok": False, "error": "boom",
             "duration_ms": 3.0, "rows": 0, "last_success": pd.NaT}]),
    })
    text = generate_latest(registry_for(store, load_config(env={"EVENTSCOPE_REDIS_URL": "redis://cache:6379/3"}))).decode()
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
    group = dict(cluster_name="kafka", group="billing")
    assert _one(values, "kafka_consumergroup_group_max_lag", is_simple_consumer="", **group) == 7
    assert _one(values, "kafka_consumergroup_group_sum_lag", **group) == 15
    assert _one(values, "kafka_consumergroup_group_max_lag_seconds", is_simple_consumer="", **group) == 9.25


def test_topic_sum_lag_sums_each_topic_apart(scraped):
    values, _ = scraped
    sums = _named(values, "kafka_consumergroup_group_topic_sum_lag")
    assert {dict(k)["topic"]: v for k, v in sums.items()} == {"orders": 10, "payments": 5}


def test_partition_metrics_carry_offsets_lag_and_seconds_of_the_newest_sample(scraped):
    values, _ = scraped
    part = dict(cluster_name="kafka", group="billing", topic="orders", partition="1",
                member_host="/10.0.0.8", consumer_id="billing-2-77aa", client_id="billing-2")
    assert _one(values, "kafka_consumergroup_group_offset", **part) == 13
    assert _one(values, "kafka_consumergroup_group_lag", **part) == 7
    assert _one(values, "kafka_consumergroup_group_lag_seconds", **part) == 2.0
    # the never-committed partition has no offset, lag or seconds series at all
    unknown = ("partition", "1"), ("topic", "payments")
    for name in ("kafka_consumergroup_group_offset", "kafka_consumergroup_group_lag",
                 "kafka_consumergroup_group_lag_seconds"):
        assert not [k for k in _named(values, name) if set(unknown) <= set(k)], name
        assert len(_named(values, name)) == 3  # Kafka partitions only: Redis has its own names


def test_partition_metrics_name_the_member_each_partition_is_assigned_to(scraped):
    values, _ = scraped
    lag = {(dict(k)["topic"], dict(k)["partition"]): (dict(k)["member_host"], dict(k)["consumer_id"],
                                                     dict(k)["client_id"])
           for k in _named(values, "kafka_consumergroup_group_lag")}
    assert lag == {("orders", "0"): ("/10.0.0.7", "billing-1-5e0c", "billing-1"),
                   ("orders", "1"): ("/10.0.0.8", "billing-2-77aa", "billing-2"),
                   ("payments", "0"): ("/10.0.0.7", "billing-1-5e0c", "billing-1")}
    # kafka-lag-exporter's full label set on every partition series; unassigned: empty
    for name in ("kafka_consumergroup_group_offset", "kafka_consumergroup_group_lag",
                 "kafka_consumergroup_group_lag_seconds"):
        for labels in _named(values, name):
            assert [k for k, _ in labels] == sorted(["cluster_name", "group", "topic", "partition", "member_host",
                                                     "consumer_id", "client_id"])
    assert kafka_members(pd.DataFrame(columns=["kind"])) == {}


def test_a_partition_no_member_holds_has_empty_member_labels(tmp_path):
    now = pd.Timestamp.now(tz="UTC").floor("s")
    store = Store(tmp_path)
    Recorder(store).record({"lag": schemas.conform("lag", _lag_rows(now)[:1])})  # no member rows at all
    text = generate_latest(registry_for(store)).decode()
    (sample,) = [s for f in text_string_to_metric_families(text) if f.name == "kafka_consumergroup_group_lag"
                 for s in f.samples]
    assert sample.labels == {"cluster_name": "kafka", "group": "billing", "topic": "orders", "partition": "0",
                             "member_host": "", "consumer_id": "", "client_id": ""}


def test_partition_offsets_are_kafka_only_and_skip_unknowns(scraped):
    values, _ = scraped
    latest = _named(values, "kafka_partition_latest_offset")
    assert {dict(k)["partition"]: v for k, v in latest.items()} == {"0": 100, "1": 20}
    earliest = _named(values, "kafka_partition_earliest_offset")
    assert earliest == {(("cluster_name", "kafka"), ("partition", "0"), ("topic", "orders")): 11}


def test_redis_streams_have_redis_exporter_names_and_labels(scraped):
    values, _ = scraped
    stream = dict(cluster_name="redis", db="db3", stream="mail:out")  # db: the number the URL selects
    assert _one(values, "redis_stream_length", **stream) == 3
    assert _one(values, "redis_stream_entries_added_total", **stream) == 50
    assert _one(values, "redis_stream_groups", **stream) == 1
    assert _one(values, "redis_stream_groups", cluster_name="redis", db="db3", stream="audit") == 0
    group = dict(stream, group="mailer")
    assert _one(values, "redis_stream_group_consumers", **group) == 2
    assert _one(values, "redis_stream_group_messages_pending", **group) == 4
    assert _one(values, "redis_stream_group_entries_read", **group) == 44
    assert _one(values, "redis_stream_group_lag", **group) == 6
    assert _one(values, "redis_stream_group_consumer_messages_pending", consumer="worker-a", **group) == 3
    assert _one(values, "redis_stream_group_consumer_idle_seconds", consumer="worker-a", **group) == 1.5
    assert _one(values, "redis_stream_group_consumer_idle_seconds", consumer="worker-b", **group) == 0.25
    # Kafka topics are not streams
    assert {dict(k)["stream"] for k in _named(values, "redis_stream_length")} == {"mail:out", "audit"}


def test_cluster_name_is_the_cluster_a_row_came_from_not_the_source(tmp_path):
    now = pd.Timestamp.now(tz="UTC").floor("s")
    store = Store(tmp_path)  # a replay's rows: source "replay", each row's cluster its own
    rows = [dict(r, source="replay", broker="prod-eu", kind="kafka") for r in _lag_rows(now)[:1]]
    Recorder(store).record({"lag": schemas.conform("lag", rows), "dlq": schemas.conform("dlq", [
        {"sampled_at": now, "source": "replay", "broker": "prod-eu", "kind": "kafka", "dlq": "orders.DLT",
         "source_topic": None,
         "depth": 1, "oldest_at": None, "reasons": "{}"}])})
    text = generate_latest(registry_for(store)).decode()
    clusters = {s.labels["cluster_name"] for f in text_string_to_metric_families(text) for s in f.samples
                if "cluster_name" in s.labels}
    assert clusters == {"prod-eu"} and "kafka_consumergroup_group_lag{" in text and "eventscope_dlq_depth{" in text


def test_redis_db_label_follows_each_cluster_s_url():
    cfg = load_config(env={"EVENTSCOPE_REDIS_URL": "redis://cache:6379",
                           "EVENTSCOPE_SOURCES": '[{"name": "jobs", "kind": "redis", "url": "redis://j:6379/12"},'
                                                 ' {"name": "sock", "kind": "redis", "url": "unix:///run/r.sock?db=4"},'
                                                 ' {"name": "k2", "kind": "kafka", "bootstrap": "k:9092"}]'})
    assert redis_dbs(cfg) == {"redis": "db0", "jobs": "db12", "sock": "db4"}
    assert redis_dbs(None) == {}


def test_redis_groups_have_their_own_metrics(scraped):
    values, _ = scraped
    labels = dict(cluster_name="redis", group="mailer", stream="mail:out")
    assert _one(values, "eventscope_redis_group_lag", **labels) == 6
    assert _one(values, "eventscope_redis_group_lag_seconds", **labels) == 12.0
    assert _one(values, "eventscope_redis_group_pending", **labels) == 4
    assert not [k for k in _named(values, "kafka_consumergroup_group_lag") if ("group", "mailer") in k]


def test_status_health_and_sample_time(scraped):
    values, now = scraped
    statuses = _named(values, "eventscope_consumergroup_status")
    assert statuses and set(statuses.values()) == {1.0}
    assert {dict(k)["group"] for k in statuses} == {"billing", "mailer"}
    assert {dict(k)["cluster_name"] for k in statuses} == {"kafka", "redis"}
    assert _one(values, "eventscope_collector_up", cluster_name="kafka", collector="kafka.offsets") == 1.0
    assert _one(values, "eventscope_collector_up", cluster_name="redis", collector="redis.streams") == 0.0
    assert _one(values, "eventscope_collector_last_success_timestamp_seconds", cluster_name="kafka",
                collector="kafka.offsets") == now.timestamp()
    assert not _named(values, "eventscope_collector_last_success_timestamp_seconds").keys() - {
        (("cluster_name", "kafka"), ("collector", "kafka.offsets"))}
    assert _one(values, "eventscope_last_sample_timestamp_seconds") == now.timestamp()
    assert _one(values, "eventscope_alerts_firing", severity="critical") == 0
    assert _one(values, "eventscope_alerts_firing", severity="warning") == 0


def test_every_family_has_its_documented_help(tmp_path):
    text = generate_latest(registry_for(Store(tmp_path))).decode()
    helps = {f.name: f.documentation for f in text_string_to_metric_families(text)}
    for name, (doc, _labels) in METRICS.items():
        assert helps[name] == doc


def test_every_metric_names_its_cluster_in_one_label():
    for name, (_doc, labels) in METRICS.items():
        assert not {"source", "broker"} & set(labels), name
        if not name.startswith("eventscope_alert") and name != "eventscope_last_sample_timestamp_seconds":
            assert labels[0] == "cluster_name", name


def _ran(store, at):
    Recorder(store).record({"health": schemas.conform("health", [
        {"sampled_at": at, "source": "kafka", "collector": "kafka.offsets", "ok": False, "error": "down",
         "duration_ms": 1.0, "rows": 0, "last_success": pd.NaT}])})


def test_healthz_is_ok_while_a_collector_writes_and_503_when_stale(tmp_path):
    import threading
    import urllib.error
    import urllib.request
    store = Store(tmp_path)
    server = make_server_for(store, port=0, stale_after_s=60)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"

    def healthz():
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
                return r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers
    try:
        status, body, headers = healthz()  # nothing collected yet
        assert (status, body) == (503, b"stale: no collector run in the store yet")
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
        assert headers["Content-Length"] == str(len(body))
        _ran(store, pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=90))
        status, body, _ = healthz()
        assert status == 503 and body.startswith(b"stale: the newest collector run is 9") and b"(limit 60 s)" in body
        _ran(store, pd.Timestamp.now(tz="UTC"))  # a failed run is still a run: collector_up says it failed
        status, body, headers = healthz()
        assert (status, body, headers["Content-Length"]) == (200, b"ok", "2")
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            assert b"# HELP kafka_consumergroup_group_max_lag " in r.read()
    finally:
        server.shutdown()
        server.server_close()


def test_health_says_why_in_one_line(tmp_path):
    from eventscope.exporter import health
    store = Store(tmp_path)
    at = pd.Timestamp.now(tz="UTC")
    _ran(store, at)
    assert health(store, 60, now=at + pd.Timedelta(seconds=60)) == (True, "ok")
    assert health(store, 60, now=at + pd.Timedelta(seconds=61)) == (
        False, "stale: the newest collector run is 61 s old (limit 60 s)")

    class Broken:
        def newest_time(self, name):
            raise PermissionError("[Errno 13] Permission denied: 'health/manifest.json'\nmore")
    ok, line = health(Broken())
    assert not ok and line == "store unreadable: PermissionError: [Errno 13] Permission denied: 'health/manifest.json'"


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

    def fake(store, config, host, port, timeout_s, stale_after_s):
        calls.append((store, config, host, port, timeout_s, stale_after_s))
        return Server()
    monkeypatch.setattr(exporter, "make_server_for", fake)
    store = Store(tmp_path)
    exporter.serve(store, "cfg", host="0.0.0.0", port=9400, timeout_s=2.5, stale_after_s=30.0)
    assert calls == [(store, "cfg", "0.0.0.0", 9400, 2.5, 30.0), "serving", "closed"]
    calls.clear()
    exporter.serve(store)
    assert calls[0] == (store, None, "127.0.0.1", 10087, 10.0, 120.0)


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
        {"rule": "lag_seconds", "metric": "lag_seconds", "subject": "kafka:billing/refunds", "state": "firing",
         "severity": "critical", "since": since, "fired_at": since, "value": 350.0, "threshold": 300.0,
         "clear": 48.0, "detail": ""},
        {"rule": "dlq_depth", "metric": "dlq_depth", "subject": "kafka:payments.DLT", "state": "pending",
         "severity": "warning", "since": since, "fired_at": pd.NaT, "value": 40.0, "threshold": 1.0,
         "clear": 0.8, "detail": ""}]))
    values = {}
    for family in text_string_to_metric_families(generate_latest(registry_for(store)).decode()):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    kafka = dict(cluster_name="kafka", dlq="payments.DLT", source_topic="payments")
    assert _one(values, "eventscope_dlq_depth", **kafka) == 40
    assert _one(values, "eventscope_dlq_growth_per_minute", **kafka) == 10.0
    assert _one(values, "eventscope_dlq_oldest_age_seconds", **kafka) >= 90.0
    redis = dict(cluster_name="redis", dlq="mail:dlq", source_topic="")
    assert _one(values, "eventscope_dlq_depth", **redis) == 0
    assert not [k for k in _named(values, "eventscope_dlq_oldest_age_seconds") if ("dlq", "mail:dlq") in k]
    assert _one(values, "eventscope_alert_state", rule="lag_seconds", severity="critical",
                subject="kafka:billing/orders", state="firing") == 1.0
    assert _one(values, "eventscope_alert_state", rule="dlq_depth", severity="warning",
                subject="kafka:payments.DLT", state="pending") == 1.0
    assert _one(values, "eventscope_alerts_firing", severity="critical") == 2.0  # one per subject
    assert _one(values, "eventscope_alerts_firing", severity="warning") == 0.0  # pending is not firing



def test_a_member_assigned_several_partitions_of_a_topic_holds_each():
    consumers = pd.DataFrame([
        {"kind": "kafka", "broker": "prod", "group": "billing", "member_id": "m-1", "consumer": "billing-1",
         "host": "/10.0.0.7", "assignment": "orders:0,1,12 payments:3"},
        {"kind": "kafka", "broker": "prod", "group": "billing", "member_id": "m-2", "consumer": "billing-2",
         "host": "/10.0.0.8", "assignment": ":4 refunds: bad:x"},  # no topic, no partition: nothing held
        {"kind": "redis", "broker": "cache", "group": "g", "member_id": "", "consumer": "w",
         "host": "", "assignment": "orders:0"},  # a Redis consumer is not a Kafka member
    ])
    member = ("/10.0.0.7", "m-1", "billing-1")
    assert kafka_members(consumers) == {("prod", "billing", "orders", 0): member,
                                        ("prod", "billing", "orders", 1): member,
                                        ("prod", "billing", "orders", 12): member,
                                        ("prod", "billing", "payments", 3): member}


def test_a_redis_cluster_the_config_does_not_name_is_db0_and_a_group_without_consumers_has_0(tmp_path):
    """redis_exporter's ``db`` label: the database a configured URL selects, else db0 (Redis's
    default). A group whose consumers all left counts 0 consumers, not a missing series."""
    now = pd.Timestamp.now(tz="UTC").floor("s")
    redis = dict(sampled_at=now, source="jobs", broker="jobs", kind="redis", group_state="n/a", members=0, partition=0)
    Recorder(Store(tmp_path)).record({
        "lag": schemas.conform("lag", [
            {**redis, "group": "idle", "topic": "tasks", "committed": 5, "end": 9, "lag": 4, "lag_seconds": 1.0,
             "pending": 0},
            {**redis, "group": "busy", "topic": "tasks", "committed": 9, "end": 9, "lag": 0, "lag_seconds": 0.0,
             "pending": 1, "members": 1}]),
        "topics": schemas.conform("topics", [
            {"sampled_at": now, "source": "jobs", "broker": "jobs", "kind": "redis", "topic": "tasks",
             "partition": 0, "start": 9, "end": 9}]),
        "consumers": schemas.conform("consumers", [
            {"sampled_at": now, "source": "jobs", "broker": "jobs", "kind": "redis", "group": "busy",
             "topic": "tasks", "consumer": "w1", "host": "", "assignment": "", "pending": 1, "idle_ms": 10}])})
    values = {}
    for family in text_string_to_metric_families(generate_latest(registry_for(Store(tmp_path))).decode()):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    stream = dict(cluster_name="jobs", db="db0", stream="tasks")
    assert _one(values, "redis_stream_length", **stream) == 9
    assert _one(values, "redis_stream_groups", **stream) == 2
    assert _one(values, "redis_stream_group_consumers", group="idle", **stream) == 0
    assert _one(values, "redis_stream_group_consumers", group="busy", **stream) == 1
    assert _one(values, "redis_stream_group_consumer_messages_pending", group="busy", consumer="w1", **stream) == 1
