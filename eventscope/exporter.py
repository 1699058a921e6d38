"""``eventscope exporter``: Prometheus ``/metrics`` served from the store.

A custom prometheus-client Collector reads the recorder's snapshots on every scrape
through the query layer (no broker call: the collector process fills the store). Kafka lag uses
kafka-lag-exporter's metric names and labels, Redis streams redis_exporter's (``redis_stream_*``),
so the dashboards and alert rules written for those exporters work unchanged; everything
else is ``eventscope_*``. Every series names its cluster in ``cluster_name`` (the configured
source's name: ``kafka``, ``redis`` or a ``[[sources]]`` entry's ``name``).
"""
from __future__ import annotations

import socket
import sys
from urllib.parse import parse_qs, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pandas as pd
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer

from eventscope.alerts_view import stored_state
from eventscope.analysis.samples import newest_per_source
from eventscope.query import Queries, ResultCache

EXPORTER_CACHE_BYTES = 32 * 1024 * 1024
#: eventscope's own port: kafka_exporter has 9308, redis_exporter 9121, kafka-lag-exporter 8000,
#: the dashboard 8501; the exporters' 9100-9999 range of Prometheus's port list is full
DEFAULT_PORT = 10087
#: seconds a connection may stay silent (request unsent, answer unread) before it is dropped
DEFAULT_TIMEOUT_S = 10.0
#: ``/healthz`` fails when the newest collector run in the store is older than this
DEFAULT_STALE_AFTER_S = 120.0
CLUSTER = "cluster_name"
# kafka-lag-exporter's labels: the member a partition is assigned to (empty when none is)
PARTITION = [CLUSTER, "group", "topic", "partition", "member_host", "consumer_id", "client_id"]
STREAM = [CLUSTER, "db", "stream"]  # redis_exporter's, plus the cluster
STREAM_GROUP = [*STREAM, "group"]
STREAM_CONSUMER = [*STREAM_GROUP, "consumer"]
EVENTSCOPE_STREAM = [CLUSTER, "group", "stream"]
DLQ = [CLUSTER, "dlq", "source_topic"]
COLLECTOR = [CLUSTER, "collector"]
#: name -> (help, labels); the README lists the same
METRICS = {
    "kafka_consumergroup_group_offset": ("Last committed offset of a group on a partition.", PARTITION),
    "kafka_consumergroup_group_lag": ("Offset lag of a group on a partition.", PARTITION),
    "kafka_consumergroup_group_lag_seconds": ("Time lag of a group on a partition (age of the oldest "
                                              "unconsumed message).", PARTITION),
    "kafka_consumergroup_group_max_lag": ("Highest partition offset lag of a group.",
                                          [CLUSTER, "group", "is_simple_consumer"]),
    "kafka_consumergroup_group_max_lag_seconds": ("Highest partition time lag of a group.",
                                                  [CLUSTER, "group", "is_simple_consumer"]),
    "kafka_consumergroup_group_sum_lag": ("Offset lag of a group summed over its partitions.", [CLUSTER, "group"]),
    "kafka_consumergroup_group_topic_sum_lag": ("Offset lag of a group summed over one topic's partitions.",
                                                [CLUSTER, "group", "topic"]),
    "kafka_partition_latest_offset": ("Log end offset of a partition.", [CLUSTER, "topic", "partition"]),
    "kafka_partition_earliest_offset": ("Earliest offset of a partition.", [CLUSTER, "topic", "partition"]),
    "redis_stream_length": ("Entries held in a Redis stream.", STREAM),
    "redis_stream_entries_added": ("Entries ever added to a Redis stream.", STREAM),
    "redis_stream_groups": ("Consumer groups of a Redis stream.", STREAM),
    "redis_stream_group_consumers": ("Consumers of a Redis stream group.", STREAM_GROUP),
    "redis_stream_group_messages_pending": ("Entries delivered to a Redis stream group and not acknowledged "
                                            "(PEL).", STREAM_GROUP),
    "redis_stream_group_entries_read": ("Entries a Redis stream group has read.", STREAM_GROUP),
    "redis_stream_group_lag": ("Entries of a Redis stream not yet delivered to a group.", STREAM_GROUP),
    "redis_stream_group_consumer_messages_pending": ("Entries delivered to a consumer and not acknowledged.",
                                                     STREAM_CONSUMER),
    "redis_stream_group_consumer_idle_seconds": ("Seconds since a consumer's last interaction.",
                                                 STREAM_CONSUMER),
    "eventscope_redis_group_lag": ("Entries of a Redis stream not yet delivered to a group.", EVENTSCOPE_STREAM),
    "eventscope_redis_group_lag_seconds": ("Age of a group's oldest undelivered Redis entry.", EVENTSCOPE_STREAM),
    "eventscope_redis_group_pending": ("Delivered, unacknowledged entries of a Redis group (PEL).",
                                       EVENTSCOPE_STREAM),
    "eventscope_consumergroup_status": ("1 for the group's current lag status (OK, WARN, ERR, STALL, STOP, "
                                        "REWIND, UNKNOWN).", [CLUSTER, "group", "topic", "status"]),
    "eventscope_dlq_depth": ("Messages held in a dead-letter queue.", DLQ),
    "eventscope_dlq_growth_per_minute": ("DLQ depth growth over the last 5 minutes.", DLQ),
    "eventscope_dlq_oldest_age_seconds": ("Age of the oldest message in a DLQ.", DLQ),
    "eventscope_alert_state": ("1 per pending or firing alert (state label).",
                               ["rule", "severity", "subject", "state"]),
    "eventscope_alerts_firing": ("Firing alerts per severity.", ["severity"]),
    "eventscope_collector_up": ("1 when the collector's last run succeeded.", COLLECTOR),
    "eventscope_collector_last_success_timestamp_seconds": ("Unix time of the collector's last success.",
                                                            COLLECTOR),
    "eventscope_last_sample_timestamp_seconds": ("Unix time of the newest lag sample in the store.", []),
}
#: the families that are counters (the rest are gauges); exposed with a ``_total`` suffix
COUNTERS = {"redis_stream_entries_added"}


def exposed_names() -> set[str]:
    """Every series name a scrape can hold (a counter's with its ``_total``)."""
    return {f"{name}_total" if name in COUNTERS else name for name in METRICS}


def _text(value) -> str:
    return "" if value is None or pd.isna(value) else str(value)


def redis_dbs(config) -> dict[str, str]:
    """redis_exporter's ``db`` label (``db0``) of each configured Redis cluster, from the
    database its URL selects (none: 0, as in Redis; Redis Cluster has only 0)."""
    out = {}
    for source in (config.all_sources() if config is not None else []):
        if source.kind != "redis":
            continue
        url = urlsplit(getattr(source.settings, "url", "") or "")
        number = parse_qs(url.query).get("db", [url.path.strip("/")])[0]  # redis://h/3 or unix:///s?db=3
        out[source.name] = f"db{int(number) if number.isdigit() else 0}"
    return out


def kafka_members(consumers: pd.DataFrame) -> dict[tuple, tuple[str, str, str]]:
    """``(cluster, group, topic, partition) -> (member host, member ID, client id)`` of every assigned
    Kafka partition, from the members' ``assignment`` (``topic:0,1 other:3``)."""
    out: dict[tuple, tuple[str, str, str]] = {}
    if consumers.empty:
        return out
    for r in consumers[consumers["kind"] == "kafka"].itertuples(index=False):
        for part in _text(r.assignment).split():
            topic, _, partitions = part.rpartition(":")
            for p in partitions.split(","):
                if topic and p.strip().isdigit():
                    out[(r.broker, r.group, topic, int(p))] = (_text(r.host), _text(r.member_id), _text(r.consumer))
    return out


class StoreMetrics:
    """prometheus-client Collector over a Store (``collect()`` runs on every scrape)."""

    def __init__(self, store, config=None):
        self.store = store
        self.dbs = redis_dbs(config)
        # snapshots and minutes of rows only; a scrape's answers serve the scrapes until the
        # next sample, so a small cache suffices
        self.queries = Queries(store, ResultCache(EXPORTER_CACHE_BYTES), engine="pyarrow")

    def describe(self):
        return []  # metric families vary with the data; nothing to check at registration

    def collect(self):
        now = pd.Timestamp.now(tz="UTC")
        fam = {name: (CounterMetricFamily if name in COUNTERS else GaugeMetricFamily)(name, doc, labels=labels)
               for name, (doc, labels) in METRICS.items()}
        # the rows of each source and cluster's newest sample: what a scrape reports as now
        latest = newest_per_source(self.queries.lag_partitions(), keys=("source", "broker"))
        consumers = self.queries.consumers()
        if not latest.empty:
            self._kafka_lag(fam, latest[latest["kind"] == "kafka"], kafka_members(consumers))
            for r in self.queries.lag_groups().itertuples(index=False):
                fam["eventscope_consumergroup_status"].add_metric([r.broker, r.group, r.topic, r.status], 1.0)
            fam["eventscope_last_sample_timestamp_seconds"].add_metric([], latest["sampled_at"].max().timestamp())
        topics = newest_per_source(self.queries.topics(), keys=("source", "broker"))
        if not topics.empty:
            for r in topics[topics["kind"] == "kafka"].itertuples(index=False):
                labels = [r.broker, r.topic, str(r.partition)]
                if not pd.isna(r.end):
                    fam["kafka_partition_latest_offset"].add_metric(labels, float(r.end))
                if not pd.isna(r.start):
                    fam["kafka_partition_earliest_offset"].add_metric(labels, float(r.start))
        self._redis(fam, latest, topics, consumers)
        for r in self.queries.dlq_summary(now=now).itertuples(index=False):
            labels = [r.broker, r.dlq, _text(r.source_topic)]
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
        # a collector's source is its cluster (a configured source is one cluster, named alike)
        for (source, collector), runs in health.groupby(["source", "collector"], observed=True):
            last = runs.iloc[-1]
            fam["eventscope_collector_up"].add_metric([source, collector], 1.0 if last["ok"] else 0.0)
            if not pd.isna(last["last_success"]):
                fam["eventscope_collector_last_success_timestamp_seconds"].add_metric(
                    [source, collector], last["last_success"].timestamp())
        yield from fam.values()

    @staticmethod
    def _kafka_lag(fam: dict, kafka: pd.DataFrame, members: dict) -> None:
        for r in kafka.itertuples(index=False):
            # the member the partition is assigned to; none (a stopped group): empty, as
            # kafka-lag-exporter says it
            host, member, client = members.get((r.broker, r.group, r.topic, int(r.partition)), ("", "", ""))
            labels = [r.broker, r.group, r.topic, str(r.partition), host, member, client]
            if not pd.isna(r.committed):
                fam["kafka_consumergroup_group_offset"].add_metric(labels, float(r.committed))
            if not pd.isna(r.lag):
                fam["kafka_consumergroup_group_lag"].add_metric(labels, float(r.lag))
            if not pd.isna(r.lag_seconds):
                fam["kafka_consumergroup_group_lag_seconds"].add_metric(labels, float(r.lag_seconds))
        if kafka.empty:
            return
        per_group = kafka.groupby(["broker", "group"], observed=True).agg(
            max_lag=("lag", "max"), max_seconds=("lag_seconds", "max"), sum_lag=("lag", "sum"))
        for (cluster, group), r in per_group.iterrows():
            # whether a group is a simple (assign()-only) one is not recorded: empty
            if not pd.isna(r["max_lag"]):
                fam["kafka_consumergroup_group_max_lag"].add_metric([cluster, group, ""], float(r["max_lag"]))
                fam["kafka_consumergroup_group_sum_lag"].add_metric([cluster, group], float(r["sum_lag"]))
            if not pd.isna(r["max_seconds"]):
                fam["kafka_consumergroup_group_max_lag_seconds"].add_metric([cluster, group, ""],
                                                                          float(r["max_seconds"]))
        per_topic = kafka.groupby(["broker", "group", "topic"], observed=True)["lag"].sum(min_count=1)
        for (cluster, group, topic), value in per_topic.items():
            if not pd.isna(value):
                fam["kafka_consumergroup_group_topic_sum_lag"].add_metric([cluster, group, topic], float(value))

    def _redis(self, fam: dict, latest: pd.DataFrame, topics: pd.DataFrame, consumers: pd.DataFrame) -> None:
        """redis_exporter's stream metrics and eventscope's own Redis group metrics."""
        groups = latest[latest["kind"] == "redis"] if not latest.empty else latest
        streams = topics[topics["kind"] == "redis"] if not topics.empty else topics
        members = consumers[consumers["kind"] == "redis"] if not consumers.empty else consumers
        per_stream = groups.groupby(["broker", "topic"], observed=True).size() if not groups.empty else {}
        per_group = (members.groupby(["broker", "topic", "group"], observed=True).size()
                     if not members.empty else {})
        for r in streams.itertuples(index=False):
            labels = [r.broker, self.dbs.get(r.broker, "db0"), r.topic]
            if not pd.isna(r.start):
                fam["redis_stream_length"].add_metric(labels, float(r.start))
            if not pd.isna(r.end):
                fam["redis_stream_entries_added"].add_metric(labels, float(r.end))
            fam["redis_stream_groups"].add_metric(labels, float(per_stream.get((r.broker, r.topic), 0)))
        for r in groups.itertuples(index=False):
            labels = [r.broker, self.dbs.get(r.broker, "db0"), r.topic, r.group]
            fam["redis_stream_group_consumers"].add_metric(labels, float(per_group.get((r.broker, r.topic, r.group), 0)))
            own = [r.broker, r.group, r.topic]
            if not pd.isna(r.pending):
                fam["redis_stream_group_messages_pending"].add_metric(labels, float(r.pending))
                fam["eventscope_redis_group_pending"].add_metric(own, float(r.pending))
            if not pd.isna(r.committed):
                fam["redis_stream_group_entries_read"].add_metric(labels, float(r.committed))
            if not pd.isna(r.lag):
                fam["redis_stream_group_lag"].add_metric(labels, float(r.lag))
                fam["eventscope_redis_group_lag"].add_metric(own, float(r.lag))
            if not pd.isna(r.lag_seconds):
                fam["eventscope_redis_group_lag_seconds"].add_metric(own, float(r.lag_seconds))
        for r in members.itertuples(index=False):
            labels = [r.broker, self.dbs.get(r.broker, "db0"), r.topic, r.group, _text(r.consumer)]
            if not pd.isna(r.pending):
                fam["redis_stream_group_consumer_messages_pending"].add_metric(labels, float(r.pending))
            if not pd.isna(r.idle_ms):
                fam["redis_stream_group_consumer_idle_seconds"].add_metric(labels, float(r.idle_ms) / 1000.0)


def registry_for(store, config=None) -> CollectorRegistry:
    """A registry holding only the store's metrics (``config`` names each Redis cluster's
    database; the verdicts were judged when the samples were written)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreMetrics(store, config))
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


def health(store, stale_after_s: float = DEFAULT_STALE_AFTER_S, now: pd.Timestamp | None = None) -> tuple[bool, str]:
    """``/healthz``'s verdict and its one line: healthy when the store can be read and a
    collector ran (successfully or not: ``eventscope_collector_up`` tells which) within
    ``stale_after_s`` seconds, so what ``/metrics`` reports is current."""
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    try:
        newest = store.newest_time("health")
    except Exception as exc:  # noqa: BLE001 - whatever keeps the store from being read is the answer
        return False, f"store unreadable: {type(exc).__name__}: {exc}".splitlines()[0]
    if newest is None:
        return False, "stale: no collector run in the store yet"
    age = (now - newest).total_seconds()
    if age > stale_after_s:
        return False, f"stale: the newest collector run is {age:.0f} s old (limit {stale_after_s:g} s)"
    return True, "ok"


def _app(store, registry: CollectorRegistry, stale_after_s: float):
    """``/healthz`` answers 200 ``ok`` or 503 with the reason (:func:`health`); every other
    path is prometheus-client's metrics app (which serves the metrics on any path)."""
    metrics = make_wsgi_app(registry)

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/healthz":
            ok, line = health(store, stale_after_s)
            body = line.encode()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
            return [body]
        return metrics(environ, start_response)
    return app


def make_server_for(store, config=None, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                    timeout_s: float = DEFAULT_TIMEOUT_S, stale_after_s: float = DEFAULT_STALE_AFTER_S):
    """prometheus-client's threaded WSGI server answering ``/metrics`` and ``/healthz``
    (port 0 picks a free one). Each connection has its own thread, so a slow client delays
    only itself, and a client silent for ``timeout_s`` seconds (half a request held open, or
    an answer not read) is disconnected."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    server_class = type("MetricsServer", (_Server,), {"address_family": family})
    handler_class = type("MetricsHandler", (_Handler,), {"timeout": timeout_s})
    return make_server(host, port, _app(store, registry_for(store, config), stale_after_s),
                       server_class=server_class, handler_class=handler_class)


def serve(store, config=None, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          timeout_s: float = DEFAULT_TIMEOUT_S, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> None:
    """Serve until interrupted."""
    with make_server_for(store, config, host, port, timeout_s, stale_after_s) as server:
        server.serve_forever()
