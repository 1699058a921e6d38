"""What the pages show, read through the query layer (:mod:`eventscope.query`).

Every loader reads only the clusters chosen in the sidebar (:func:`session.chosen`): the
filter goes down to the query layer, which reads the store's files filtered. Results are
cached there per store version; callers treat them as read-only.
"""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from eventscope import alerts_view
from eventscope.analysis import alerts as alert_rules
from eventscope.analysis import traces as trace_analysis
from eventscope.config import Config
from eventscope.graph.asyncapi import applications, asyncapi_documents, server_hosts
from eventscope.graph.build import build_graph, scale_counts
from eventscope.graph.catalog import event_catalog as catalog_table
from eventscope.graph.catalog import event_shapes
from eventscope.graph.infer import SAMPLES as SHAPE_SAMPLES
from eventscope.ui.format import duration, duration_short, safe_text, text_frame
from eventscope.ui.session import WINDOW_S, chosen, clusters, config, queries, since, trace_index


def kind_of() -> dict[str, str]:
    """Cluster name → its kind (``kafka``, ``redis``, ``rabbitmq``), for every cluster in the store."""
    table = clusters()
    return dict(zip(table["broker"], table["kind"]))


def shown_clusters() -> list[str]:
    """The clusters the pages show now: the chosen ones, else every one in the store."""
    return list(chosen()) or list(clusters()["broker"])


def _with_kind(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with the ``kind`` of their cluster (from the store's clusters where a frame has none)."""
    if rows.empty or ("kind" in rows and not rows["kind"].isna().any()):
        return rows
    kinds = kind_of()
    found = rows["broker"].map(lambda b: kinds.get(b, b))
    return rows.assign(kind=rows["kind"].fillna(found) if "kind" in rows else found)


# -- lag ---------------------------------------------------------------------------
LAG_TABLE_COLUMNS = ["status", "broker", "kind", "group", "topic", "partitions", "lag", "max_lag",
                     "lag_seconds", "behind", "members", "group_state"]


def _lag_view(rows: pd.DataFrame) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in LAG_TABLE_COLUMNS})
    return _with_kind(rows).assign(behind=rows["lag_seconds"].map(duration_short))[LAG_TABLE_COLUMNS]


def lag_table() -> pd.DataFrame:
    """Per cluster/group/topic: worst status, total and max partition lag, seconds behind
    (``lag_seconds`` and as words in ``behind``), members; worst first."""
    return _lag_view(queries().lag_groups(chosen()))


def lag_page(search: str = "", statuses: tuple = (), offset: int = 0,
             limit: int = 50) -> tuple[pd.DataFrame, int]:
    """One page of :func:`lag_table` matching the filters, and how many rows match."""
    rows, total = queries().lag_page(search, tuple(statuses), chosen(), offset, limit)
    return _lag_view(rows), total


def status_counts() -> pd.DataFrame:
    """Group-topic rows per cluster and status now."""
    return queries().status_counts(chosen())


def lag_groups() -> pd.DataFrame:
    """Lag per cluster/group/topic with the worst status (worst first)."""
    return queries().lag_groups(chosen())


def lag_partitions(broker: str, group: str) -> pd.DataFrame:
    """The newest lag row per partition of one group, with its ``status``."""
    return queries().lag_partitions(str(broker), str(group))


def group_history(broker: str, group: str, window_s: float = WINDOW_S) -> pd.DataFrame:
    """Lag of one group per minute, one ``series`` per topic (messages and seconds)."""
    history = queries().group_history(str(broker), str(group), since(window_s))
    return history.rename(columns={"topic": "series", "minute": "sampled_at"})


def worst_history(window_s: float = WINDOW_S, limit: int = 5) -> pd.DataFrame:
    """Lag per minute of the worst groups now, one ``series`` per cluster:group."""
    return queries().worst_history(since(window_s), limit, chosen()).rename(columns={"minute": "sampled_at"})


def group_members(broker: str, group: str) -> pd.DataFrame:
    """Members of a group in its newest sample: Kafka client id/host/assignment, Redis
    consumer with pending entries and idle time; empty when none were reported."""
    cols = ["consumer", "host", "assignment", "topic", "pending", "idle_ms"]
    rows = queries().members(str(broker), str(group))
    return rows.sort_values(["consumer", "topic"], kind="stable")[cols].reset_index(drop=True)


def stuck_entries(broker: str, group: str) -> pd.DataFrame:
    """Redis pending entries of a group that look stuck (newest sample), idlest first."""
    cols = ["entry_id", "topic", "consumer", "deliveries", "idle_ms"]
    rows = queries().stuck(str(broker), str(group))
    return rows.sort_values(["idle_ms", "deliveries"], ascending=False, kind="stable")[cols].reset_index(drop=True)


def newest_sample(name: str = "lag") -> pd.Timestamp | None:
    """Time of the newest row of ``name`` in the store (from its manifest; any age)."""
    try:
        newest = queries().store.newest_time(name)
    except (OSError, ValueError, KeyError):
        return None
    return None if newest is None or pd.isna(newest) else pd.Timestamp(newest).tz_convert("UTC")


def stale_after_s(cfg: Config | None = None) -> float:
    """Data older than this is stale: three refreshes or collector intervals, the longer."""
    cfg = cfg or config()
    return 3.0 * max(float(cfg.dashboard.refresh_s), float(cfg.collect.interval_s))


def collector_status() -> pd.DataFrame:
    """Per source/collector: last run, ok, last success, last error and when (health frame)."""
    cols = ["source", "collector", "ok", "last_run", "last_success", "last_error", "last_error_at"]
    newest = newest_sample("health")
    if newest is None:
        return pd.DataFrame(columns=cols)
    health = queries().health(newest - pd.Timedelta(seconds=WINDOW_S))
    rows = []
    for (source, collector), runs in health.groupby(["source", "collector"], observed=True, sort=True):
        last = runs.iloc[-1]
        failed = runs[~runs["ok"] & (runs["error"].fillna("") != "")]
        rows.append({"source": source, "collector": collector, "ok": bool(last["ok"]),
                     "last_run": last["sampled_at"], "last_success": last["last_success"],
                     "last_error": failed["error"].iloc[-1] if not failed.empty else "",
                     "last_error_at": failed["sampled_at"].iloc[-1] if not failed.empty else pd.NaT})
    return pd.DataFrame(rows, columns=cols)


# -- dead letters: overview, one DLQ's reasons over time and recent messages -------
def dlq_summary() -> pd.DataFrame:
    """One row per dead-letter queue (depth, growth, oldest age, reasons) of the chosen clusters."""
    return queries().dlq_summary(brokers=chosen())


DLQ_TABLE_COLUMNS = ["broker", "kind", "dlq", "source_topic", "depth", "growth_per_min", "history",
                     "oldest", "oldest_age_seconds", "reasons", "unread", "unprocessed",
                     "pre_dlq_pressure", "empty"]
DLQ_MESSAGE_COLUMNS = ["at", "partition", "offset", "event_type", "correlation_id",
                       "original_topic", "original_partition", "original_offset", "reason", "dlq_class",
                       "size_bytes", "decode_error",
                       "headers", "preview"]


def dlq_table() -> pd.DataFrame:
    """One row per DLQ: its cluster and kind, depth, growth/min, depth per minute over the
    hour (``history``), oldest age (seconds and words), reasons (list, biggest first),
    ``unprocessed``, ``pre_dlq_pressure`` and ``empty`` (never held a message this hour);
    filling ones first."""
    summary = dlq_summary()
    if summary.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in DLQ_TABLE_COLUMNS})
    out = _with_kind(summary.copy())
    for col in ("unprocessed", "pre_dlq_pressure"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("Int64")
    per_minute = queries().dlq_history(since(), chosen())
    history = {k: [int(v) for v in rows["depth"].tolist()]
               for k, rows in per_minute.groupby(["broker", "dlq"], observed=True)}
    out["history"] = [history.get((b, d), []) for b, d in zip(out["broker"], out["dlq"])]
    out["empty"] = [(int(depth) == 0 and max(h or [0]) == 0 and not reasons)
                    for depth, h, reasons in zip(out["depth"], out["history"], out["reasons"])]
    out["oldest"] = [duration(a) if not e else "—"
                     for a, e in zip(out["oldest_age_seconds"], out["empty"])]
    out["reasons"] = out["reasons"].map(lambda r: [{"reason": safe_text(x["reason"], 300),
                                                    "count": x["count"]} for x in r])
    out = text_frame(out, ["broker", "dlq", "source_topic"])
    # filling queues first (deepest, then fastest growing), empty ones last
    out = out.assign(_g=-out["growth_per_min"].fillna(0)).sort_values(
        ["empty", "depth", "_g", "broker", "dlq"], ascending=[True, False, True, True, True],
        kind="stable")
    return out[DLQ_TABLE_COLUMNS].reset_index(drop=True)


def dlq_reasons_over_time(broker: str, dlq: str) -> pd.DataFrame:
    """Dead letters of one DLQ per minute and reason (``minute, reason, count``)."""
    out = queries().dlq_reasons_over_time(str(broker), str(dlq), since())
    return text_frame(out, ["reason"]) if not out.empty else out


def dlq_messages(broker: str, dlq: str, limit: int = 100) -> pd.DataFrame:
    """The newest dead letters of one DLQ (metadata, reason, masked headers and preview)."""
    out = queries().dlq_messages(str(broker), str(dlq), since(), limit=int(limit))
    if out.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in DLQ_MESSAGE_COLUMNS})
    out = out.reindex(columns=DLQ_MESSAGE_COLUMNS).reset_index(drop=True)
    # the payload preview is masked upstream; masking again here costs little and means an
    # address never reaches the page even from a row written before masking existed
    return text_frame(out, ["offset", "event_type", "correlation_id", "original_topic", "reason",
                            "dlq_class", "decode_error", "headers", "preview"],
                      mask=("headers", "preview", "decode_error", "reason"))


# -- traces ------------------------------------------------------------------------
def trace_summary() -> pd.DataFrame:
    """Per correlation ID of the last hour, of the events on the chosen clusters: first/last
    time, events, duration, outcome (newest first)."""
    return queries().trace_summary(since(), float(config().traces.quiet_s), chosen())


def recent_traces(limit: int = 50) -> pd.DataFrame:
    """The newest correlation IDs with their outcome."""
    return trace_summary().head(limit).reset_index(drop=True)


CAUSALITY_WINDOW_S = 3600.0  # the traffic what each service reads is learned from (the graph's default)
PAGE_TRACE_EVENTS = 200  # events of one trace the page draws: the first and the last 100 of a longer one


def find_trace(some_id: str) -> dict | None:
    """The trace ``some_id`` names (correlation, trace or event ID), or None. The whole
    trace, whichever clusters it crossed: each event names its cluster."""
    cfg = config()
    q = queries()
    index = trace_index()

    def compute():
        rows = index.lookup(some_id)
        if rows.empty:
            return None
        history = q.scan("lag", since=rows["at"].min() - pd.Timedelta(seconds=60),
                         until=rows["at"].max() + pd.Timedelta(seconds=300),
                         where={"topic": sorted(set(rows["topic"].astype(str)))})
        lag = q.lag_partitions(topics=tuple(sorted(set(rows["topic"].astype(str)))))
        return trace_analysis.from_rows(rows, lag=lag, lag_history=history,
                                        quiet_s=float(cfg.traces.quiet_s), details=True,
                                        consumes=q.consumed_topics(since(CAUSALITY_WINDOW_S)),
                                        spans=q.trace_spans(rows["trace_id"], rows["observed_at"].min()),
                                        max_events=PAGE_TRACE_EVENTS)
    return q.cached("find_trace", ("events", "lag_latest", "spans"), (some_id,), compute)


# -- alerts ------------------------------------------------------------------------
def subject_cluster(subject) -> str:
    """The cluster an alert's subject is about: ``prod-eu:orders-svc/orders`` and
    ``prod-eu:orders.DLT`` name it before the colon, a collector's ``prod-eu/kafka.lag``
    before the slash."""
    text = str(subject)
    head, colon, _ = text.partition(":")
    return head if colon and "/" not in head else text.partition("/")[0]


def _on_chosen(frame: pd.DataFrame, column: str = "subject") -> pd.DataFrame:
    wanted = chosen()
    if not wanted or frame.empty or column not in frame:
        return frame
    return frame[frame[column].map(subject_cluster).isin(wanted).to_numpy()].reset_index(drop=True)


ALERT_FRAMES = ("lag_groups", "dlq", "stuck_latest", "health", "alerts", "alerts_active")  # what the views read


def _alert_inputs() -> dict:
    """What every alert view starts from, read once per data version (for every cluster: the
    state machine is the collector's): the observations now, the state, the hour's transitions."""
    cfg = config()
    q = queries()

    def compute():
        observations = q.observations(pd.Timestamp.now(tz="UTC").floor("5s"))
        if alerts_view.evaluated(q.store):
            history = q.store.read("alerts", since=since())
            state = alerts_view.stored_state(q.store)
        else:  # nobody evaluates this store (collector off or an old one): replay the rules
            state, history = alerts_view.fallback(q.store, cfg.alerts, queries=q)
        return {"observations": observations, "state": state, "history": history}
    return q.cached("alert_inputs", ALERT_FRAMES, (repr(cfg.alerts),), compute)


def firing_alerts() -> pd.DataFrame:
    """Alerts firing now about the chosen clusters (rule, severity, subject, value, threshold,
    since, metric, fired_at, ...)."""
    def compute():
        inputs = _alert_inputs()
        return alert_rules.firing_frame(inputs["state"], inputs["observations"])
    firing = queries().cached("alerts_firing", ALERT_FRAMES, (repr(config().alerts),), compute)
    return _on_chosen(firing)


def alert_history() -> pd.DataFrame:
    """Alert transitions (``alerts`` frame) over the last hour, about the chosen clusters."""
    return _on_chosen(_alert_inputs()["history"])


def alert_rules_now() -> pd.DataFrame:
    """Every rule and subject of the chosen clusters: current value against its thresholds,
    and its alert state (only the Alerts page asks: the Overview needs what fires)."""
    cfg = config()

    def compute():
        inputs = _alert_inputs()
        return alert_rules.rule_table(cfg.alerts.all_rules(), inputs["observations"], inputs["state"])
    return _on_chosen(queries().cached("alerts_rules", ALERT_FRAMES, (repr(cfg.alerts),), compute))


def what_if_transitions(rules: list) -> pd.DataFrame:
    """Transitions ``rules`` would have made over the last hour of stored rollups."""
    transitions = alerts_view.what_if(queries().store, rules, config().alerts, window_s=WINDOW_S,
                                      queries=queries())[1]
    return _on_chosen(transitions)


# -- flow graph and event catalog (graph/): built per time window, drawn by the pages --
GRAPH_EVENT_COLUMNS = ("observed_at", "broker", "topic", "at", "broker_at", "event_type", "service",
                       "correlation_id", "dead_letter", "original_topic", "causation_id")


def flow_graph(window_s: float = WINDOW_S):
    """The flow graph (networkx) of the last ``window_s`` seconds of the chosen clusters' traffic."""
    q = queries()
    start = since(window_s)
    brokers = chosen()
    where = {"broker": list(brokers)} if brokers else None

    def compute():
        consumed = q.scan("lag_1m", since=start, columns=["minute", "broker", "group", "topic", "consumed"],
                          where=where)
        dlq = q.scan("dlq_1m", since=start, where=where).rename(columns={"minute": "sampled_at"})
        share = q.events_share(start)  # a big cluster's hour: a share of its correlation IDs
        events = q.events(start, GRAPH_EVENT_COLUMNS, brokers, share)
        extra = ()
        if events["causation_id"].notna().any():  # event IDs only when some event names its cause
            extra += ("event_id",)
        spans = q.span_links(start)
        if spans:  # message spans only when spans were collected
            extra += ("parent_span_id",)
        if extra:
            events = q.events(start, GRAPH_EVENT_COLUMNS + extra, brokers, share)
        return scale_counts(build_graph(events, None, dlq, groups=q.lag_groups(brokers), consumed=consumed,
                                        spans=spans, bindings=q.store.get("bindings_latest", where=where),
                                        queues=q.store.get("queues_latest", where=where)), share)
    return q.cached("flow_graph", ("events", "lag_groups", "lag_1m", "dlq_1m", "spans", "bindings_latest",
                                   "queues_latest"), (start.floor("10s"), brokers), compute)


def asyncapi(window_s: float = WINDOW_S, graph=None) -> tuple[list[str], Callable[[str | None], dict]]:
    """The services that get an AsyncAPI 3.0 document, and a function that builds them (all,
    or one by name) as ``eventscope graph --format asyncapi`` prints them: one server per
    configured cluster, of the chosen clusters' traffic.

    Building reads every event of the window, so it waits for a download to ask for it; the
    function holds what it needs and may run outside the page's script thread. ``graph``: the
    window's flow graph when the caller has it already (a live store changes between two
    reads of one page, so asking again would build it again)."""
    q = queries()
    start = since(window_s)
    brokers = chosen()
    servers = server_hosts(config().all_sources())
    graph = flow_graph(window_s) if graph is None else graph

    def build(service: str | None = None) -> dict:
        docs = q.cached("asyncapi", ("events", "lag_groups", "lag_1m", "dlq_1m"),
                        (start.floor("10s"), brokers, tuple(sorted((k, tuple(v.items())) for k, v in servers.items()))),
                        lambda: asyncapi_documents(graph, q.events(start, None, brokers, q.events_share(start)),
                                                   servers))
        return docs if service is None else {service: docs[service]} if service in docs else {}
    return list(applications(graph)), build


REGISTRY_TTL_S = 60.0
_registered: dict = {}  # (registry, schema ID) -> (fetched at, what the registry said)


def registered_schema(schema_id: int, source: str | None = None) -> dict:
    """What the Schema Registry of ``source`` (or its ``schema_dir``) says of one schema ID
    (:func:`eventscope.registry_client.describe`): asked at most once a minute per ID, 2 s at most
    each time, so a registry that is down slows the catalog once a minute, never each rerun."""
    now = pd.Timestamp.now(tz="UTC")
    registry = config().schema_registry.for_source(source)
    key = (registry.url, registry.schema_dir, schema_id)
    found = _registered.get(key)
    if found is None or (now - found[0]).total_seconds() > REGISTRY_TTL_S:
        from eventscope.registry_client import describe as describe_schema  # ~25 MiB of imports: only when shown
        found = (now, describe_schema(registry, schema_id, timeout_s=2.0))
        _registered[key] = found
        while len(_registered) > 256:
            _registered.pop(next(iter(_registered)))
    return found[1]


CATALOG_EVENT_COLUMNS = ("event_type", "schema_version", "service", "broker", "topic", "dead_letter", "at", "broker_at")


def event_catalog(window_s: float = WINDOW_S) -> tuple[pd.DataFrame, dict]:
    """(one row per event type, inferred shape per (event type, schema version)), of the
    chosen clusters' events."""
    q = queries()
    start = since(window_s)
    brokers = chosen()

    def compute():
        # the table needs a few columns of every event; the shapes only the newest payloads
        share = q.events_share(start)  # the flow graph's share: the same correlation IDs
        events = q.events(start, CATALOG_EVENT_COLUMNS, brokers, share)
        table = catalog_table(events, flow_graph(window_s), share)
        table.attrs["share"] = share  # the page says when counts come from a share
        return table, event_shapes(q.event_samples(start, SHAPE_SAMPLES, brokers))
    return q.cached("catalog", ("events", "lag_groups", "lag_1m", "dlq_1m"), (start.floor("10s"), brokers), compute)
