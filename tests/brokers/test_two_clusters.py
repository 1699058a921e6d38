"""Two Kafka clusters and two Redis servers watched at once, named by ``[[sources]]``.

The same names on every cluster: a topic (stream) ``orders``, a group ``billing`` with a
different lag on each, a DLQ of the same name with different depths and reasons, events
with correlation IDs of their own (and one ID found on both). The real collector runs
through the CLI with a config file; then every way out of the store must keep the four
apart: the stored frames, ``lag/dlq/trace/graph/alerts --json``, graph node IDs, alert
subjects, the exporter's ``/metrics``, and each cluster's reading position across a restart.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import urllib.request

import pandas as pd
import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from eventscope.store import Store

pytestmark = pytest.mark.broker

KAFKA = {  # name -> (messages per partition, billing's committed offsets, DLQ reasons)
    "prod-eu": (20, (15, 15), ["card declined"] * 2),
    "prod-us": (30, (5, 10), ["timeout"] * 5),
}
REDIS = {  # name -> (entries, entries billing read, DLQ reasons)
    "cache-a": (16, 4, ["bad card"]),
    "cache-b": (25, 20, ["no stock"] * 3),
}
LAG = {"prod-eu": 10, "prod-us": 45, "cache-a": 12, "cache-b": 5}
DLQ_NAME = {"prod-eu": "orders.DLT", "prod-us": "orders.DLT", "cache-a": "orders.dlq", "cache-b": "orders.dlq"}
KIND = {"prod-eu": "kafka", "prod-us": "kafka", "cache-a": "redis", "cache-b": "redis"}
# a lag rule whose thresholds put each cluster's billing group in a different place
RULE_WARN, RULE_CRIT = 8, 40


def envelope(cluster: str, i: int, cid: str | None = None) -> bytes:
    return json.dumps({"event_type": "OrderPlaced", "event_id": f"{cluster}-evt-{i}", "source": "order-service",
                       "correlation_id": cid or f"{cluster}-{i}", "data": {"order_id": i}}).encode()


def fill_kafka(bootstrap: str, cluster: str, start: int = 0, count: int | None = None) -> None:
    per_partition, committed, reasons = KAFKA[cluster]
    producer = Producer({"bootstrap.servers": bootstrap})
    if count is None:  # the first fill: topics, records, DLQ, the group's commits
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic("orders", 2, 1), NewTopic("orders.DLT", 1, 1)]).values():
            future.result(timeout=30)
        for i in range(2 * per_partition):
            producer.produce("orders", envelope(cluster, i, "shared-1" if i == 0 else None), partition=i % 2)
        for i, reason in enumerate(reasons):
            producer.produce("orders.DLT", envelope(cluster, 1000 + i),
                             headers=[("kafka_dlt-exception-message", reason.encode()),
                                      ("kafka_dlt-original-topic", b"orders")])
        assert producer.flush(30) == 0
        group = Consumer({"bootstrap.servers": bootstrap, "group.id": "billing", "enable.auto.commit": False})
        group.commit(offsets=[TopicPartition("orders", p, o) for p, o in enumerate(committed)], asynchronous=False)
        group.close()
        return
    for i in range(start, start + count):
        producer.produce("orders", envelope(cluster, i), partition=i % 2)
    assert producer.flush(30) == 0


def fill_redis(url: str, cluster: str, start: int = 0, count: int | None = None) -> None:
    entries, read, reasons = REDIS[cluster]
    client = redis.Redis.from_url(url)
    try:
        if count is None:
            client.delete("orders", "orders.dlq")
            for i in range(entries):
                client.xadd("orders", {"envelope": envelope(cluster, i, "shared-1" if i == 0 else None)})
            client.xgroup_create("orders", "billing", id="0")
            client.xreadgroup("billing", "worker-1", {"orders": ">"}, count=read)
            for i, reason in enumerate(reasons):
                client.xadd("orders.dlq", {"envelope": envelope(cluster, 1000 + i), "error": reason,
                                           "original_stream": "orders"})
            return
        for i in range(start, start + count):
            client.xadd("orders", {"envelope": envelope(cluster, i)})
    finally:
        client.close()


def cli(config: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eventscope", "--config", config, *args],
                          capture_output=True, text=True, timeout=timeout)


def cli_json(config: str, *args: str):
    proc = cli(config, *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def clusters(tmp_path_factory, kafka_bootstrap, kafka_bootstrap2, redis_url, redis_url2):
    """Four sources with the same names inside, collected for a few seconds by the CLI."""
    root = tmp_path_factory.mktemp("two-clusters")
    addresses = {"prod-eu": kafka_bootstrap, "prod-us": kafka_bootstrap2, "cache-a": redis_url, "cache-b": redis_url2}
    for name in KAFKA:
        fill_kafka(addresses[name], name)
    for name in REDIS:
        fill_redis(addresses[name], name)
    members = [audit_member(addresses[name], name) for name in KAFKA]
    config = root / "eventscope.toml"
    # the kinds' sections give every source of the kind its defaults (no address: no source)
    config.write_text(f"""
[kafka]
topics = '^orders(\\.DLT)?$'
[redis]
streams = ["orders", "orders.dlq"]
[collect]
interval_s = 1.0
max_backoff_s = 5.0
[store]
dir = "{root / 'store'}"
[alerts]
for_s = 0
[[alerts.rules]]
metric = "lag"
warning = {RULE_WARN}
critical = {RULE_CRIT}

[[sources]]
name = "prod-eu"
kind = "kafka"
bootstrap = "{kafka_bootstrap}"

[[sources]]
name = "prod-us"
kind = "kafka"
bootstrap = "{kafka_bootstrap2}"

[[sources]]
name = "cache-a"
kind = "redis"
url = "{redis_url}"

[[sources]]
name = "cache-b"
kind = "redis"
url = "{redis_url2}"
""")
    proc = cli(str(config), "collect", "--duration", "4")
    assert proc.returncode == 0, proc.stderr
    for name in addresses:
        assert f"collecting {name} " in proc.stderr
    yield {"config": str(config), "store": Store(root / "store"), "addresses": addresses}
    for member in members:
        member.close()


def audit_member(bootstrap: str, cluster: str) -> Consumer:
    """A live member of group ``audit``, up to date on ``orders``, so each Kafka has members to show."""
    member = Consumer({"bootstrap.servers": bootstrap, "group.id": "audit", "client.id": f"audit-{cluster}",
                       "enable.auto.commit": False})
    member.subscribe(["orders"])
    for _ in range(300):
        member.poll(0.1)
        if member.assignment():
            per_partition = KAFKA[cluster][0]
            member.commit(offsets=[TopicPartition("orders", p, per_partition) for p in (0, 1)], asynchronous=False)
            return member
    pytest.fail(f"the audit member on {cluster} got no assignment")


def by_broker(frame: pd.DataFrame) -> dict:
    return {b: rows for b, rows in frame.groupby("broker", observed=True)}


def test_every_stored_frame_keeps_the_clusters_apart(clusters):
    store = clusters["store"]
    health = store.read("health")
    assert health["ok"].all(), health.loc[~health["ok"], ["source", "collector", "error"]].to_dict("records")
    assert set(health["source"]) == set(KIND)
    for name in ["lag", "dlq", "events", "topics", "consumers", "lag_latest", "lag_groups", "dlq_latest"]:
        frame = store.read(name)
        assert set(frame["broker"]) == set(KIND), name
        assert (frame["source"] == frame["broker"]).all(), name
        for broker, rows in by_broker(frame).items():
            assert set(rows["kind"]) == {KIND[broker]}, (name, broker)

    latest = store.read("lag_latest")
    billing = latest[(latest["group"] == "billing") & (latest["topic"] == "orders")]
    assert billing.groupby("broker", observed=True)["lag"].sum().to_dict() == LAG
    kafka = billing[billing["kind"] == "kafka"].set_index(["broker", "partition"])
    for cluster, (per_partition, committed, _) in KAFKA.items():
        for partition, offset in enumerate(committed):
            assert kafka.loc[(cluster, partition), "committed"] == offset
            assert kafka.loc[(cluster, partition), "end"] == per_partition

    groups = store.read("lag_groups")
    groups = groups[(groups["group"] == "billing") & (groups["topic"] == "orders")]
    assert sorted(groups["broker"]) == sorted(KIND)  # one verdict per cluster, never one merged
    assert groups.set_index("broker")["lag"].to_dict() == LAG

    dlq = store.read("dlq_latest")
    assert len(dlq) == 4
    for broker, rows in by_broker(dlq).items():
        (row,) = rows.to_dict("records")
        reasons = (KAFKA.get(broker) or REDIS.get(broker))[2]
        assert (row["dlq"], row["depth"], row["source_topic"]) == (DLQ_NAME[broker], len(reasons), "orders")
        assert json.loads(row["reasons"]) == {reasons[0]: len(reasons)}

    events = store.read("events")
    for broker, rows in by_broker(events).items():
        live = rows[~rows["dead_letter"]]
        expected = 2 * KAFKA[broker][0] if broker in KAFKA else REDIS[broker][0]
        assert len(live) == expected, broker
        assert set(live["correlation_id"]) == {"shared-1"} | {f"{broker}-{i}" for i in range(1, expected)}
        assert len(rows[rows["dead_letter"]]) == len((KAFKA.get(broker) or REDIS.get(broker))[2])

    topics = store.read("topics_latest")
    orders = topics[topics["topic"] == "orders"]
    kafka_ends = orders[orders["kind"] == "kafka"].groupby("broker", observed=True)["end"].sum().to_dict()
    assert kafka_ends == {name: 2 * per_partition for name, (per_partition, _, _) in KAFKA.items()}
    assert set(orders["broker"]) == set(KIND)
    consumers = store.read("consumers_latest")
    assert set(consumers["broker"]) == set(KIND)
    kafka_members = consumers[consumers["kind"] == "kafka"]
    assert sorted(zip(kafka_members["broker"], kafka_members["consumer"])) == [
        ("prod-eu", "audit-prod-eu"), ("prod-us", "audit-prod-us")]
    redis_consumers = consumers[consumers["kind"] == "redis"].set_index("broker")
    assert redis_consumers.loc["cache-a", "pending"] == 4 and redis_consumers.loc["cache-b", "pending"] == 20


def test_lag_and_dlq_commands_name_each_cluster(clusters):
    rows = cli_json(clusters["config"], "lag")
    billing = [r for r in rows if r["group"] == "billing" and r["topic"] == "orders"]
    totals: dict = {}
    for r in billing:
        assert r["kind"] == KIND[r["broker"]]
        totals[r["broker"]] = totals.get(r["broker"], 0) + r["lag"]
    assert totals == LAG
    assert {r["broker"] for r in rows} == set(KIND) and all("kind" in r for r in rows)

    dlqs = cli_json(clusters["config"], "dlq")
    assert sorted((d["broker"], d["kind"], d["dlq"], d["depth"]) for d in dlqs) == sorted(
        (b, KIND[b], DLQ_NAME[b], len((KAFKA.get(b) or REDIS.get(b))[2])) for b in KIND)


def test_trace_finds_each_cluster_s_own_events(clusters):
    found = cli_json(clusters["config"], "trace", "prod-us-7")
    assert [(e["broker"], e["kind"], e["topic"]) for e in found["events"]] == [("prod-us", "kafka", "orders")]
    found = cli_json(clusters["config"], "trace", "cache-b-3")
    assert [(e["broker"], e["kind"], e["topic"]) for e in found["events"]] == [("cache-b", "redis", "orders")]
    # one ID seen on all four: four events, each on its own cluster
    found = cli_json(clusters["config"], "trace", "shared-1")
    assert sorted((e["broker"], e["kind"]) for e in found["events"]) == sorted(KIND.items())


def test_graph_has_a_node_per_cluster_and_no_edge_between_clusters(clusters):
    graph = cli_json(clusters["config"], "graph")
    ids = {n["id"] for n in graph["nodes"]}
    for broker in KIND:
        assert f"topic:{broker}:orders" in ids, sorted(ids)
        assert f"dlq:{broker}:{DLQ_NAME[broker]}" in ids, sorted(ids)
    assert len([i for i in ids if i.startswith(("topic:", "dlq:"))]) == 8, sorted(ids)

    def cluster_of(node_id: str) -> str | None:
        return node_id.split(":")[1] if node_id.startswith(("topic:", "dlq:", "group:")) else None

    for node in graph["nodes"]:  # each node names its cluster, as its ID does
        if cluster_of(node["id"]) is not None:
            assert node["broker"] == cluster_of(node["id"]), node
    crossing = [e for e in graph["edges"] if len({cluster_of(e["source"]), cluster_of(e["target"])} - {None}) > 1]
    # produces, consumes and dead-letters edges stay inside a cluster; only the one ID seen on
    # every cluster (shared-1) chains them, as its trace does, one event per hop
    assert all(e["kind"] == "causes" and e["events"] == 1 for e in crossing), crossing
    for broker in KIND:
        dlq_id = f"dlq:{broker}:{DLQ_NAME[broker]}"
        assert [(e["source"], e["kind"]) for e in graph["edges"] if e["target"] == dlq_id] == [
            (f"topic:{broker}:orders", "dead_letters")]
        consumed = {e["source"] for e in graph["edges"] if e["target"] == f"group:{broker}:billing"}
        assert consumed == {f"topic:{broker}:orders"}


def test_asyncapi_has_a_server_per_cluster_of_its_own_kind(clusters):
    proc = cli(clusters["config"], "graph", "--format", "asyncapi", "--service", "order-service", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    hosts = {name: address.split("://")[-1].removesuffix("/0") for name, address in clusters["addresses"].items()}
    assert {name: (server["host"], server["protocol"]) for name, server in doc["servers"].items()} == {
        name: (hosts[name], KIND[name]) for name in KIND}
    channels = {key: (c["address"], c["description"], [s["$ref"] for s in c["servers"]])
                for key, c in doc["channels"].items()}
    assert channels == {f"{name}.orders": ("orders", ("Kafka topic" if KIND[name] == "kafka" else "Redis stream")
                                           + f" `orders` on {name}", [f"#/servers/{name}"]) for name in KIND}


def test_alert_subjects_name_the_cluster(clusters):
    alerts = cli_json(clusters["config"], "alerts")
    firing = {(a["rule"], a["subject"]): a["severity"] for a in alerts}
    lag = {subject: severity for (rule, subject), severity in firing.items() if rule == "lag"}
    assert lag == {"prod-eu:billing/orders": "warning", "prod-us:billing/orders": "critical",
                   "cache-a:billing/orders": "warning"}
    dlq = {subject for (rule, subject) in firing if rule == "dlq_depth"}
    assert dlq == {f"{b}:{DLQ_NAME[b]}" for b in KIND}
    for a in alerts:  # the CLI contract: every row names its cluster and kind
        assert a["subject"].split(":")[0] == a["broker"] and a["kind"] == KIND[a["broker"]], a


def metrics(store: Store) -> str:
    from eventscope.exporter import make_server_for
    server = make_server_for(store, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=30) as answer:
            return answer.read().decode()
    finally:
        server.shutdown()
        server.server_close()


def samples(text: str, metric: str) -> dict:
    """``{frozenset(labels): value}`` of one metric."""
    out = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{metric}\{{(.*)\}} (\S+)", line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1)))
            out[labels] = float(match.group(2))
    return out


def test_metrics_label_each_cluster_and_never_sum_them(clusters):
    text = metrics(clusters["store"])
    sum_lag = samples(text, "kafka_consumergroup_group_sum_lag")
    assert {dict(k)["cluster_name"]: v for k, v in sum_lag.items() if dict(k)["group"] == "billing"} == {
        "prod-eu": 10.0, "prod-us": 45.0}
    offsets = samples(text, "kafka_consumergroup_group_offset")
    assert {(dict(k)["cluster_name"], dict(k)["partition"]): v for k, v in offsets.items()
            if dict(k)["group"] == "billing"} == {("prod-eu", "0"): 15, ("prod-eu", "1"): 15,
                                                  ("prod-us", "0"): 5, ("prod-us", "1"): 10}
    latest = samples(text, "kafka_partition_latest_offset")
    assert {(dict(k)["cluster_name"], dict(k)["partition"]): v for k, v in latest.items()
            if dict(k)["topic"] == "orders"} == {("prod-eu", "0"): 20, ("prod-eu", "1"): 20,
                                                 ("prod-us", "0"): 30, ("prod-us", "1"): 30}
    redis_lag = samples(text, "eventscope_redis_group_lag")
    assert {dict(k)["cluster_name"]: v for k, v in redis_lag.items() if dict(k)["group"] == "billing"} == {
        "cache-a": 12.0, "cache-b": 5.0}
    stream_lag = samples(text, "redis_stream_group_lag")  # redis_exporter's name: the same numbers
    assert {dict(k)["cluster_name"]: v for k, v in stream_lag.items() if dict(k)["group"] == "billing"} == {
        "cache-a": 12.0, "cache-b": 5.0}
    assert {dict(k)["db"] for k in stream_lag} == {"db0"}
    depth = samples(text, "eventscope_dlq_depth")
    assert {dict(k)["cluster_name"]: v for k, v in depth.items()} == {
        b: float(len((KAFKA.get(b) or REDIS.get(b))[2])) for b in KIND}
    status = samples(text, "eventscope_consumergroup_status")
    assert sorted(dict(k)["cluster_name"] for k in status if dict(k)["group"] == "billing") == sorted(KIND)
    up = samples(text, "eventscope_collector_up")
    assert {dict(k)["cluster_name"] for k in up} == set(KIND)


def test_a_restart_goes_on_from_each_cluster_s_own_position(clusters):
    store = clusters["store"]
    saved = store.get("reading_state")
    assert set(saved["broker"]) == set(KIND) and (saved["source"] == saved["broker"]).all()
    before = store.read("events")
    added = {"prod-eu": 3, "prod-us": 7, "cache-a": 2, "cache-b": 5}
    for name in KAFKA:
        fill_kafka(clusters["addresses"][name], name, start=500, count=added[name])
    for name in REDIS:
        fill_redis(clusters["addresses"][name], name, start=500, count=added[name])
    proc = cli(clusters["config"], "collect", "--once")
    assert proc.returncode == 0, proc.stderr
    after = store.read("events")
    for broker in KIND:
        old, new = (f[(f["broker"] == broker) & ~f["dead_letter"]] for f in (before, after))
        # exactly what was added since, once: nothing read again, nothing skipped
        assert len(new) == len(old) + added[broker], broker
        assert not new.duplicated(["topic", "partition", "offset"]).any(), broker
        fresh = set(new["correlation_id"]) - set(old["correlation_id"])
        assert fresh == {f"{broker}-{i}" for i in range(500, 500 + added[broker])}, broker
