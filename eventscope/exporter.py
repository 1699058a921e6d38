"""``eventscope exporter``: Prometheus ``/metrics`` served from the store.

A custom prometheus-client Collector reads the recorder's snapshots on every scrape
through the query layer (no broker call: the collector process fills the store). Kafka lag uses
kafka-lag-exporter's metric names and labels where they mean the same, so its
Grafana dashboards work unchanged; everything else is ``eventscope_*``.
``cluster_name`` is the configured source name (``kafka``).
"""
from __future__ import annotations

import socket
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pandas as pd
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer

from eventscope.alerts_view import stored_state
from eventscope.analysis.samples import newest_per_source
from eventscope.query import Queries, ResultCache

EXPORTER_CACHE_BYTES = 32 * 1024 * 1024
#: seconds a connection may stay silent (request unsent, answer unread) before it is dropped
DEFAULT_TIMEOUT_S = 10.0
PARTITION = ["cluster_name", "group", "topic", "partition"]
#: name -> (help, labels); the README lists the same
METRICS = {
    "kafka_consumergroup_group_offset": ("Last committed offset of a group on a partition.", PARTITION),
    "kafka_consumergroup_group_lag": ("Offset lag of a group on a partition.", PARTITION),
    "kafka_consumergroup_group_lag_seconds": ("Time lag of a group on a partition (age of the oldest "
                                              "unconsumed message).", PARTITION),
    "kafka_consumergroup_group_max_lag": ("Highest partition offset lag of a group.", ["cluster_name", "group"]),
    "kafka_consumergroup_group_max_lag_seconds": ("Highest partition time lag of a group.",
                                                  ["cluster_name", "group"]),
    "kafka_consumergroup_group_sum_lag": ("Offset lag of a group summed over its partitions.",
                                          ["cluster_name", "group"]),
    "kafka_consumergroup_group_topic_sum_lag": ("Offset lag of a group summed over one topic's partitions.",
                                                ["cluster_name", "group", "topic"]),
    "kafka_partition_latest_offset": ("Log end offset of a partition.", ["cluster_name", "topic", "partition"]),
    "kafka_partition_earliest_offset": ("Earliest offset of a partition.", ["cluster_name", "topic", "partition"]),
    "eventscope_redis_group_lag": ("Entries of a Redis stream not yet delivered to a group.",
                                   ["source", "group", "stream"]),
    "eventscope_redis_group_lag_seconds": ("Age of a group's oldest undelivered Redis entry.",
                                           ["source", "group", "stream"]),
    "eventscope_redis_group_pending": ("Delivered, unacknowledged entries of a Redis group (PEL).",
                                       ["source", "group", "stream"]),
    "eventscope_consumergroup_status": ("1 for the group's current lag status (OK, WARN, ERR, STALL, STOP, "
                                        "REWIND, UNKNOWN).", ["broker", "group", "topic", "status"]),
    "eventscope_dlq_depth": ("Messages held in a dead-letter queue.", ["broker", "dlq", "source_topic"]),
    "eventscope_dlq_growth_per_minute": ("DLQ depth growth over the last 5 minutes.",
                                         ["broker", "dlq", "source_topic"]),
    "eventscope_dlq_oldest_age_seconds": ("Age of the oldest message in a DLQ.", ["broker", "dlq", "source_topic"]),
    "eventscope_alert_state": ("1 per pending or firing alert (state label).",
                               ["rule", "severity", "subject", "state"]),
    "eventscope_alerts_firing": ("Firing alerts per severity.", ["severity"]),
    "eventscope_collector_up": ("1 when the collector's last run succeeded.", ["source", "collector"]),
    "eventscope_collector_last_success_timestamp_seconds": ("Unix time of the collector's last success.",
                                                            ["source", "collector"]),
    "eventscope_last_sample_timestamp_seconds": ("Unix time of the newest lag sample in the store.", []),
}


class StoreMetrics:
    """prometheus-client Collector over a Store (``collect()`` runs on every scrape)."""

    def __init__(self, store):
        self.store = store
        # snapshots and minutes of rows only; a scrape's answers serve the scrapes until the
        # next sample, so a small cache suffices
        self.queries = Queries(store, ResultCache(EXPORTER_CACHE_BYTES), engine="pyarrow")

    def describe(self):
        return []  # metric families vary with the data; nothing to check at registration

    def collect(self):
        now = pd.Timestamp.now(tz="UTC")
        fam = {name: GaugeMetricFamily(name, doc, labels=labels) for name, (doc, labels) in METRICS.items()}
        # the rows of each source and broker's newest sample: what a scrape reports as now
        latest = newest_per_source(self.queries.lag_partitions(), keys=("source", "broker"))
        if not latest.empty:
            self._lag(fam, latest, self.queries.lag_groups())
            fam["eventscope_last_sample_timestamp_seconds"].add_metric([], latest["sampled_at"].max().timestamp())
        topics = newest_per_source(self.queries.topics(), keys=("source", "broker"))
        if not topics.empty:
            for r in topics[topics["kind"] == "kafka"].itertuples(index=False):
                labels = [r.source, r.topic, str(r.partition)]
                if not pd.isna(r.end):
                    fam["kafka_partition_latest_offset"].add_metric(labels, float(r.end))
                if not pd.isna(r.start):
                    fam["kafka_partition_earliest_offset"].add_metric(labels, float(r.start))
        for r in self.queries.dlq_summary(now=now).itertuples(index=False):
            labels = [r.broker, r.dlq, "" if pd.isna(r.source_topic) else str(r.source_topic)]
            fam["eventscope_dlq_depth"].add_metric(labels, float(r.depth))
            fam["eventscope_dlq_growth_per_minute"].add_metric(labels, float(r.growth_per_min))
            if not pd.isna(r.oldest_age_seconds):
                fam["eventscope_dlq_oldest_age_seconds"].add_metric(labels, float(r.oldest_age_seconds))
        state = stored_state(self.store)
        counts = {"warning": 0, "critical": 0}
        for a in state.values():
            fam["eventscope_alert_state"].add_metric([a.rule, a.severity, a.subject, a.state], 1.0)
            if a.state == "firing":
                counts[a.severity] = counts.get(a.severity, 0) + 1
        for severity, count in counts.items():
            fam["eventscope_alerts_firing"].add_metric([severity], float(count))
        health = self.queries.health(now - pd.Timedelta(seconds=900))
        for (source, collector), runs in health.groupby(["source", "collector"], observed=True):
            last = runs.iloc[-1]
            fam["eventscope_collector_up"].add_metric([source, collector], 1.0 if last["ok"] else 0.0)
            if not pd.isna(last["last_success"]):
                fam["eventscope_collector_last_success_timestamp_seconds"].add_metric(
                    [source, collector], last["last_success"].timestamp())
        yield from fam.values()

    @staticmethod
    def _lag(fam: dict, latest: pd.DataFrame, groups: pd.DataFrame) -> None:
        kafka = latest[latest["kind"] == "kafka"]
        for r in kafka.itertuples(index=False):
            labels = [r.source, r.group, r.topic, str(r.partition)]
            if not pd.isna(r.committed):
                fam["kafka_consumergroup_group_offset"].add_metric(labels, float(r.committed))
            if not pd.isna(r.lag):
                fam["kafka_consumergroup_group_lag"].add_metric(labels, float(r.lag))
            if not pd.isna(r.lag_seconds):
                fam["kafka_consumergroup_group_lag_seconds"].add_metric(labels, float(r.lag_seconds))
        if not kafka.empty:
            per_group = kafka.groupby(["source", "group"], observed=True).agg(
                max_lag=("lag", "max"), max_seconds=("lag_seconds", "max"), sum_lag=("lag", "sum"))
            for (source, group), r in per_group.iterrows():
                if not pd.isna(r["max_lag"]):
                    fam["kafka_consumergroup_group_max_lag"].add_metric([source, group], float(r["max_lag"]))
                    fam["kafka_consumergroup_group_sum_lag"].add_metric([source, group], float(r["sum_lag"]))
                if not pd.isna(r["max_seconds"]):
                    fam["kafka_consumergroup_group_max_lag_seconds"].add_metric([source, group],
                                                                              float(r["max_seconds"]))
            per_topic = kafka.groupby(["source", "group", "topic"], observed=True)["lag"].sum(min_count=1)
            for (source, group, topic), value in per_topic.items():
                if not pd.isna(value):
                    fam["kafka_consumergroup_group_topic_sum_lag"].add_metric([source, group, topic], float(value))
        for r in latest[latest["kind"] == "redis"].itertuples(index=False):
            labels = [r.source, r.group, r.topic]
            if not pd.isna(r.lag):
                fam["eventscope_redis_group_lag"].add_metric(labels, float(r.lag))
            if not pd.isna(r.lag_seconds):
                fam["eventscope_redis_group_lag_seconds"].add_metric(labels, float(r.lag_seconds))
            if not pd.isna(r.pending):
                fam["eventscope_redis_group_pending"].add_metric(labels, float(r.pending))
        for r in groups.itertuples(index=False):
            fam["eventscope_consumergroup_status"].add_metric([r.broker, r.group, r.topic, r.status], 1.0)


def registry_for(store, config=None) -> CollectorRegistry:
    """A registry holding only the store's metrics (``config`` is accepted for symmetry with
    the other entry points; the verdicts were judged when the samples were written)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreMetrics(store))
    return registry


class _Handler(WSGIRequestHandler):
    """One connection: quiet (a line per scrape is noise), and dropped when the client sends
    or reads nothing for ``timeout`` seconds (``StreamRequestHandler.setup`` puts it on the
    socket, so it bounds every read of the request and every write of the answer)."""

    timeout = DEFAULT_TIMEOUT_S

    def handle(self):
        try:
            super().handle()
        except (TimeoutError, ConnectionError):
            self.close_connection = True  # a slow or vanished client: just drop it

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


class _Server(ThreadingWSGIServer):
    """prometheus-client's thread-per-connection WSGI server (daemon threads: a stuck client
    never holds up the process's exit)."""

    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that timed out or went away mid-answer: nothing to report
        super().handle_error(request, client_address)


def _app(registry: CollectorRegistry):
    """``/healthz`` answers ``ok``; every other path is prometheus-client's metrics app
    (which serves the metrics on any path, as it always did)."""
    metrics = make_wsgi_app(registry)

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "2")])
            return [b"ok"]
        return metrics(environ, start_response)
    return app


def make_server_for(store, config=None, host: str = "127.0.0.1", port: int = 9308,
                    timeout_s: float = DEFAULT_TIMEOUT_S):
    """A threaded WSGI server answering ``/metrics`` and ``/healthz`` (port 0 picks a free
    one). Each connection has its own thread, so a slow client delays only itself, and a
    client silent for ``timeout_s`` seconds (half a request held open, or an answer not
    read) is disconnected."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    server_class = type("MetricsServer", (_Server,), {"address_family": family})
    handler_class = type("MetricsHandler", (_Handler,), {"timeout": timeout_s})
    return make_server(host, port, _app(registry_for(store, config)),
                       server_class=server_class, handler_class=handler_class)


def serve(store, config=None, host: str = "127.0.0.1", port: int = 9308,
          timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Serve until interrupted."""
    with make_server_for(store, config, host, port, timeout_s) as server:
        server.serve_forever()
