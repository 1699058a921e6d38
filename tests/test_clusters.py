"""Named clusters in the query layer and the AsyncAPI servers.

The store holds two Kafka clusters, ``prod-eu`` and ``prod-us``, with the same topics,
groups and dead-letter queue (``test_app.two_cluster_frames``). Each query asked for one
cluster returns exactly the rows of that cluster that the unfiltered query returns, and
asks the store for that cluster only (the filter reaches the file reader). The AsyncAPI
documents have one server per configured source, each channel bound to its cluster's,
and the reference parser accepts them.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest

from eventscope import query as query_module
from eventscope.config import load_config
from eventscope.graph.asyncapi import asyncapi_documents, host, protocol, server_hosts
from eventscope.graph.build import build_graph
from eventscope.query import Queries
from eventscope.store import Store
from eventscope.ui.data import subject_cluster
from test_app import two_cluster_frames, write_two_cluster_store
from test_graph_topology import validate_asyncapi

EU, US = "prod-eu", "prod-us"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return Store(write_two_cluster_store(tmp_path_factory.mktemp("clusters") / "store"))


@pytest.fixture(params=["duckdb", "pyarrow"])
def engine(request):
    return request.param


def _since() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=1)


def _same(filtered: pd.DataFrame, everything: pd.DataFrame, cluster: str, sort: list[str]) -> None:
    """``filtered`` holds exactly ``everything``'s rows of ``cluster``."""
    assert len(filtered) and set(filtered["broker"]) == {cluster}
    want = everything[everything["broker"] == cluster]
    pd.testing.assert_frame_equal(filtered.sort_values(sort).reset_index(drop=True),
                                  want.sort_values(sort).reset_index(drop=True), check_dtype=False)


def test_the_store_names_its_clusters_with_their_kind(store):
    clusters = Queries(store).clusters()
    assert clusters.to_dict("records") == [{"broker": EU, "kind": "kafka"}, {"broker": US, "kind": "kafka"}]


@pytest.mark.parametrize("cluster", [EU, US])
def test_each_query_for_one_cluster_returns_its_rows_of_the_whole(store, engine, cluster):
    q = Queries(store, engine=engine)
    since = _since()
    everything = q.lag_groups()
    assert set(everything["broker"]) == {EU, US}
    _same(q.lag_groups((cluster,)), everything, cluster, ["group", "topic"])
    rows, total = q.lag_page("", (), (cluster,), 0, 50)
    assert total == 3 and set(rows["broker"]) == {cluster}
    _same(q.status_counts((cluster,)), q.status_counts(), cluster, ["status"])
    dlq = q.dlq_summary(brokers=(cluster,))
    assert list(dlq["broker"]) == [cluster] and int(dlq["depth"].iloc[0]) == (12 if cluster == EU else 1)
    _same(dlq.drop(columns=["reasons"]), q.dlq_summary().drop(columns=["reasons"]), cluster, ["dlq"])
    _same(q.dlq_history(since, (cluster,)), q.dlq_history(since), cluster, ["minute", "dlq"])
    _same(q.events(since, ("broker", "topic", "correlation_id"), (cluster,)),
          q.events(since, ("broker", "topic", "correlation_id")), cluster, ["correlation_id", "topic"])
    traces = q.trace_summary(since, 30.0, (cluster,))
    assert len(traces) == 60 and traces["correlation_id"].str.startswith(f"{cluster}-").all()
    history = q.worst_history(since, 5, (cluster,))
    assert len(history) and history["series"].str.startswith(f"{cluster}:").all()
    samples = q.event_samples(since, 3, (cluster,))
    assert len(samples) and set(samples["broker"]) == {cluster}


def test_the_cluster_filter_reaches_the_store(store, monkeypatch):
    """The store is asked for one cluster's rows: nothing is read to be dropped in pandas."""
    asked = []
    get, scan = Store.get, query_module.Scanner.scan

    def spy_get(self, name, columns=None, where=None):
        asked.append(("get", name, dict(where or {})))
        return get(self, name, columns=columns, where=where)

    def spy_scan(self, store_, name, since=None, until=None, columns=None, where=None):
        asked.append(("scan", name, dict(where or {})))
        return scan(self, store_, name, since, until, columns, where)
    monkeypatch.setattr(Store, "get", spy_get)
    monkeypatch.setattr(query_module.Scanner, "scan", spy_scan)
    q = Queries(store)
    q.lag_groups((US,))
    q.status_counts((US,))
    q.dlq_summary(brokers=(US,))
    q.dlq_history(_since(), (US,))
    q.events(_since(), ("broker", "topic"), (US,))
    reads = {(how, name) for how, name, where in asked if where.get("broker") == [US]}
    assert {("get", "lag_groups"), ("scan", "dlq"), ("get", "stuck_latest"), ("scan", "dlq_1m"),
            ("get", "dlq_1m_open"), ("scan", "events")} <= reads
    unfiltered = [(how, name) for how, name, where in asked if "broker" not in where]
    assert unfiltered == [], unfiltered


@pytest.mark.parametrize("subject,cluster", [
    ("prod-eu:analytics/orders", EU), ("prod-us:payments.DLT", US), ("prod-eu/kafka.lag", EU),
    ("kafka:orders:v2/orders", "kafka"), ("redis:stream:a/b:c", "redis")])
def test_an_alert_subject_names_its_cluster(subject, cluster):
    assert subject_cluster(subject) == cluster


SOURCES_TOML = """
[[sources]]
name = "prod-eu"
kind = "kafka"
bootstrap = "eu-kafka-1.internal:9092,eu-kafka-2.internal:9092"

[[sources]]
name = "prod-us"
kind = "kafka"
bootstrap = "us-kafka-1.internal:9093"

[[sources]]
name = "cache"
kind = "redis"
url = "redis://:hunter2@redis.internal:6380/0"
"""


def test_server_hosts_one_per_configured_source(tmp_path):
    path = tmp_path / "eventscope.toml"
    path.write_text(SOURCES_TOML)
    servers = server_hosts(load_config(path, env={}).all_sources())
    assert servers == {
        "prod-eu": {"host": "eu-kafka-1.internal:9092", "protocol": "kafka", "kind": "kafka"},
        "prod-us": {"host": "us-kafka-1.internal:9093", "protocol": "kafka", "kind": "kafka"},
        "cache": {"host": "redis.internal:6380", "protocol": "redis", "kind": "redis"}}
    assert protocol("rabbitmq") == "amqp" and protocol("somebroker") == "somebroker"
    assert host("amqp://user:pw@rabbit.internal:5672/vhost") == "rabbit.internal:5672"
    assert host("user@kafka.internal:9092") == "kafka.internal:9092"


def test_asyncapi_binds_each_channel_to_its_clusters_server_and_validates(tmp_path):
    path = tmp_path / "eventscope.toml"
    path.write_text(SOURCES_TOML)
    servers = server_hosts(load_config(path, env={}).all_sources())
    events = two_cluster_frames()["events"]
    documents = asyncapi_documents(build_graph(events, None), events, servers)
    payment = documents["payment-service"]
    assert set(payment["servers"]) == {EU, US}  # the clusters its channels are on, not the Redis one
    assert payment["servers"][EU] == {"host": "eu-kafka-1.internal:9092", "protocol": "kafka",
                                      "description": "the kafka cluster prod-eu eventscope watched"}
    assert payment["servers"][US]["host"] == "us-kafka-1.internal:9093"
    channels = payment["channels"]
    for cluster in (EU, US):
        for topic in ("orders", "payments"):
            channel = channels[f"{cluster}.{topic}"]
            assert channel["address"] == topic
            assert channel["servers"] == [{"$ref": f"#/servers/{cluster}"}]
            assert channel["description"] == f"Kafka topic `{topic}` on {cluster}"
    assert "hunter2" not in json.dumps(documents)
    reports = validate_asyncapi(documents, tmp_path)
    assert all(not r["errors"] for r in reports), [r for r in reports if r["errors"]]


def test_asyncapi_on_a_recorded_store_says_the_address_is_not_configured():
    events = two_cluster_frames()["events"]
    documents = asyncapi_documents(build_graph(events, None), events, {})
    server = documents["order-service"]["servers"][EU]
    assert server == {"host": "localhost", "protocol": "kafka",
                      "description": "the kafka cluster prod-eu eventscope watched (address not configured)"}
