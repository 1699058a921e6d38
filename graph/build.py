"""Reconstruct the flow graph from observed traffic (pure: frames and a time window in, graph out).

Nodes (attrs ``kind``, ``label``, ``broker``, ``health``):
``service:NAME``, ``topic:BROKER:NAME``, ``group:BROKER:NAME``, ``dlq:BROKER:NAME``, and for
RabbitMQ ``exchange:BROKER:NAME`` (a RabbitMQ queue is a ``topic`` node, or a ``dlq`` node
when it is a DLQ: see :mod:`eventscope.graph.rabbitmq`).
``health`` is ``ok``, ``warn``, ``critical`` or ``unknown`` and drives the colour:

- group: its worst lag ``status`` (``analysis.lag``) over the window, with ``lag`` and
  ``lag_seconds`` of the newest sample;
- dlq: ``critical`` when it grew in the window (``growth`` > 0 or dead letters observed),
  ``warn`` while it holds messages (``depth``), else ``ok``;
- topic: ``warn`` when undecodable messages were observed on it (``undecodable``);
- service: ``ok`` (its ``events`` are what it produced in the window).

Edges (attrs ``kind``, ``events``, ``rate_per_s``):
- ``produces``      service → topic, from the events' ``service`` (envelope ``source`` /
  ``ce_source``);
- ``consumes``      topic → group, from the lag frame (committed offsets / XINFO GROUPS;
  events = committed-offset progress in the window);
- ``dead_letters``  topic → dlq, from dead-lettered events' ``original_topic`` (DLQ headers,
  else the DLQ's name), or from a DLQ that holds messages: its sampled source topic, else
  the one its name gives (``orders.DLT`` → ``orders``);
- ``causes``        topic → topic through a service: within one correlation ID, an event
  that service S produced on topic B, caused by the newest earlier event on a topic A that
  S reads (learned from the traffic and the consumer groups: see
  :mod:`eventscope.analysis.causality`; on a topic several services read, the event just
  before is often a sibling, not the cause). Extra attrs ``service`` (the most frequent
  one), ``p50_latency_ms``, ``p95_latency_ms``.

- ``binds``         exchange → queue (RabbitMQ bindings, attrs ``routing_key``, ``exchange_type``);
- ``dead_letters_to`` queue → exchange (a RabbitMQ queue's dead-letter exchange, from its
  arguments or policy; attr ``routing_key``). A DLQ reached this way gets no extra
  ``dead_letters`` edge from its source queue.

Rates divide by the observed span of each frame inside the window (the events' span for
``produces``/``dead_letters``/``causes``, the lag samples' span for ``consumes``): a store
that only started collecting ten minutes into a one-hour window is not diluted.
"""
from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd

from eventscope.dlq_names import source_topic_from_name
from eventscope import schemas
from eventscope.analysis import causality
from eventscope.analysis import lag as lag_analysis
from eventscope.graph.ids import node_id  # noqa: F401 - part of this module's interface
from eventscope.graph.rabbitmq import bindings_graph_edges

UNDECODABLE = "<undecodable>"
HEALTH = {"OK": "ok", "UNKNOWN": "unknown", "WARN": "warn", "REWIND": "critical",
          "STALL": "critical", "STOP": "critical", "ERR": "critical"}
HEALTH_RANK = {"ok": 0, "unknown": 1, "warn": 2, "critical": 3}
#: the only events columns the graph needs (the frame also carries payloads: never copied)
EVENT_COLUMNS = ["observed_at", "broker", "topic", "at", "broker_at", "event_type", "service",
                 "correlation_id", "dead_letter", "original_topic", "event_id", "causation_id"]




def build_graph(events_df: pd.DataFrame | None, lag_df: pd.DataFrame | None,
                dlq_df: pd.DataFrame | None = None, since: pd.Timestamp | None = None,
                until: pd.Timestamp | None = None, groups: pd.DataFrame | None = None,
                consumed: pd.DataFrame | None = None, spans: dict | None = None,
                bindings: pd.DataFrame | None = None, queues: pd.DataFrame | None = None) -> nx.DiGraph:
    """Build the producer → topic → group graph (plus DLQs and topic → topic causes).

    Only rows inside ``[since, until]`` count (events by event time, lag and DLQ rows by
    sample time); ``None`` leaves that side open.

    The consumer side comes either from raw ``lag_df`` samples, or, as the store keeps it,
    from ``groups`` (``lag_groups`` rows: each group and topic now, with its status) and
    ``consumed`` (``lag_1m`` rows of the window: ``minute``, ``broker``, ``group``,
    ``topic``, ``consumed``).

    ``spans`` (:func:`eventscope.analysis.causality.span_index` of the window's
    OpenTelemetry spans, with a ``parent_span_id`` column in ``events_df``) names causes
    the way a causation ID does.

    ``bindings`` (RabbitMQ's ``bindings`` rows, e.g. ``bindings_latest``) adds exchanges,
    their bindings and the dead-letter routes; ``queues`` (``queues_latest``) marks the DLQ
    queues (``is_dlq``) before any DLQ sample has been rolled up, and gives each queue node
    its ``queue_type`` (classic, quorum, stream)."""
    graph = nx.DiGraph()
    events = _clean_events(events_df, since, until)
    dlq = _in_window(dlq_df, "sampled_at", since, until)
    if groups is None:
        groups, progress, lag_span_s = _consumer_side(_in_window(lag_df, "sampled_at", since, until))
    else:
        consumed = _in_window(consumed, "minute", since, until)
        progress, lag_span_s = _consumed(consumed)
    window_s = _span_seconds(events["observed_at"] if events["observed_at"].notna().any()
                             else events["at"])
    coded = _Coded(events) if not events.empty else None
    dlq_names = _dlq_names(coded, dlq)
    if queues is not None and not queues.empty:
        marked = queues[queues["is_dlq"].fillna(False).to_numpy(dtype=bool)]
        dlq_names |= {(str(b), t) for b, t in zip(marked["broker"], _queue_keys(marked))}
    if coded is not None:
        _add_produces(graph, coded, window_s, dlq_names)
        _add_dead_letters(graph, events, coded, window_s)
        _add_causes(graph, events, coded, window_s, groups, spans)
        _add_topic_counts(graph, coded, dlq_names)
    _add_consumes(graph, groups, progress, lag_span_s, dlq_names)
    _add_routes(graph, bindings, dlq_names)
    _add_queue_types(graph, queues, dlq_names)
    _add_dlq_health(graph, dlq)
    _finish_health(graph)
    return graph


#: what a sample of the events counts, per node kind and edge kind (the consumer side comes
#: from lag samples and DLQ depths from DLQ samples: whole, never scaled)
EVENT_COUNTS = {"service": ("events",), "topic": ("events", "undecodable"), "dlq": ("dead_lettered",)}
EVENT_EDGES = ("produces", "dead_letters", "causes")


def scale_counts(graph: nx.DiGraph, share: float) -> nx.DiGraph:
    """A graph built from ``share`` of the window's correlation IDs, its event counts and
    rates scaled back up to the whole window (``graph.graph["share"]`` says so). Latencies
    are the sample's own."""
    graph.graph["share"] = share
    if share >= 1:
        return graph
    for _, attrs in graph.nodes(data=True):
        for key in EVENT_COUNTS.get(attrs.get("kind"), ()):
            if attrs.get(key) is not None:
                attrs[key] = int(round(attrs[key] / share))
    for _, _, attrs in graph.edges(data=True):
        if attrs.get("kind") in EVENT_EDGES:
            attrs["events"] = int(round(attrs["events"] / share))
            attrs["rate_per_s"] = round(attrs["rate_per_s"] / share, 4)
    return graph


def _in_window(frame: pd.DataFrame | None, column: str, since, until) -> pd.DataFrame | None:
    if frame is None or frame.empty or (since is None and until is None):
        return frame
    keep = pd.Series(True, index=frame.index)
    if since is not None:
        keep &= frame[column] >= pd.Timestamp(since)
    if until is not None:
        keep &= frame[column] <= pd.Timestamp(until)
    return frame[keep.fillna(False).to_numpy()]


def _clean_events(events_df: pd.DataFrame | None, since, until) -> pd.DataFrame:
    if events_df is None or events_df.empty:
        return schemas.empty("events")[EVENT_COLUMNS]
    # the message's span only when given (it names causes together with the spans)
    events = events_df[[c for c in EVENT_COLUMNS + ["parent_span_id"] if c in events_df]]
    missing = {c: pd.Series(False if schemas.EVENTS[c][0] == "bool" else None, index=events.index,
                            dtype=schemas.EVENTS[c][0]) for c in EVENT_COLUMNS if c not in events}
    events = events.assign(**missing) if missing else events
    at = events["at"] if "at" in events else pd.Series(pd.NaT, index=events.index, dtype=schemas.TIME)
    if "broker_at" in events and at.isna().any():
        at = at.fillna(events["broker_at"])
    events = events.assign(at=at, dead_letter=events["dead_letter"].fillna(False).astype(bool))
    return _in_window(events, "at", since, until)


def _dlq_names(coded: "_Coded | None", dlq_df: pd.DataFrame | None) -> set[tuple[str, str]]:
    """(broker, name) of every DLQ: holding dead-lettered events, or sampled as one."""
    names = set()
    if coded is not None and coded.dead.any():
        held = np.bincount(coded.place[coded.dead], minlength=len(coded.places))
        names |= {coded.places[p] for p in np.flatnonzero(held)}
    if dlq_df is not None and not dlq_df.empty:
        names |= set(zip(dlq_df["broker"].astype(str), dlq_df["dlq"].astype(str)))
    return {(str(b), str(t)) for b, t in names}


def _add_node(graph: nx.DiGraph, kind: str, name: str, broker: str | None = None) -> str:
    nid = node_id(kind, name, broker)
    if nid not in graph:
        graph.add_node(nid, kind=kind, label=name, broker=broker)
    return nid


def _topic_node(graph: nx.DiGraph, broker: str, name: str, dlq_names: set) -> str:
    kind = "dlq" if (broker, name) in dlq_names else "topic"
    return _add_node(graph, kind, name, broker)


def _add_edge(graph: nx.DiGraph, source: str, target: str, kind: str, events: int,
              window_s: float, **extra) -> None:
    graph.add_edge(source, target, kind=kind, events=int(events),
                   rate_per_s=round(events / window_s, 4), **extra)


def _named(column: pd.Series) -> pd.Series:
    return (column.notna() & (column != "")).fillna(False).astype(bool)


class _Coded:
    """The events as integer codes, so that counting 1 M rows is array work, not grouping.

    ``place`` numbers each (broker, topic); ``service`` and ``kind`` (event type) are codes
    into ``services`` / ``kinds``; -1 marks a missing value."""

    def __init__(self, events: pd.DataFrame):
        broker, brokers = pd.factorize(events["broker"])
        topic, topics = pd.factorize(events["topic"])
        place, pairs = pd.factorize(broker.astype("int64") * max(len(topics), 1) + topic)
        self.places = [(str(brokers[p // max(len(topics), 1)]), str(topics[p % max(len(topics), 1)]))
                       for p in pairs]
        self.place = place
        self.service, services = pd.factorize(events["service"].replace("", None))
        self.services = [str(s) for s in services]
        self.kind, kinds = pd.factorize(events["event_type"])
        self.undecodable = (events["event_type"] == UNDECODABLE).fillna(False).to_numpy(dtype=bool)
        self.dead = events["dead_letter"].to_numpy(dtype=bool)
        self.at = np.asarray(events["at"].astype(schemas.TIME).dt.tz_localize(None),
                             dtype="datetime64[ns]").view("int64")
        self.timed = events["at"].notna().to_numpy(dtype=bool)

    def counts(self, mask: np.ndarray, *codes: np.ndarray) -> dict[tuple, int]:
        """Rows under ``mask`` counted per combination of ``codes`` (each >= 0 there)."""
        picked = [c[mask].astype("int64") for c in codes]
        if not len(picked[0]):
            return {}
        sizes = [int(c.max()) + 1 for c in picked]
        key = np.zeros(len(picked[0]), dtype="int64")
        for column, size in zip(picked, sizes):
            key = key * size + column
        unique, count = np.unique(key, return_counts=True)
        out = {}
        for value, n in zip(unique.tolist(), count.tolist()):
            parts = []
            for size in reversed(sizes):
                value, part = divmod(value, size)
                parts.append(part)
            out[tuple(reversed(parts))] = n
        return out


def _add_produces(graph, coded: _Coded, window_s, dlq_names) -> None:
    live = ~coded.dead & (coded.service >= 0)
    for (place, service), count in coded.counts(live, coded.place, coded.service).items():
        target = _topic_node(graph, *coded.places[place], dlq_names)
        source = _add_node(graph, "service", coded.services[service])
        _add_edge(graph, source, target, "produces", count, window_s)
        graph.nodes[source]["events"] = graph.nodes[source].get("events", 0) + count


def _add_dead_letters(graph, events, coded: _Coded, window_s) -> None:
    rows = np.flatnonzero(coded.dead)
    if not len(rows):
        return
    origin, origins = pd.factorize(events["original_topic"].iloc[rows].replace("", None))
    held = np.bincount(coded.place[rows], minlength=len(coded.places))
    for place in np.flatnonzero(held):
        target = _add_node(graph, "dlq", coded.places[place][1], coded.places[place][0])
        graph.nodes[target]["dead_lettered"] = int(held[place])
    known = origin >= 0
    for (place, original), count in coded.counts(known, coded.place[rows], origin).items():
        broker, dlq = coded.places[place]
        source = _add_node(graph, "topic", str(origins[original]), broker)
        _add_edge(graph, source, node_id("dlq", dlq, broker), "dead_letters", count, window_s)


def _add_topic_counts(graph, coded: _Coded, dlq_names) -> None:
    """Events seen on each topic, and how many of them could not be decoded."""
    seen = np.bincount(coded.place, minlength=len(coded.places))
    bad = np.bincount(coded.place, weights=coded.undecodable, minlength=len(coded.places))
    for place, (broker, topic) in enumerate(coded.places):
        nid = _topic_node(graph, broker, topic, dlq_names)
        graph.nodes[nid]["events"] = int(seen[place])
        graph.nodes[nid]["undecodable"] = int(bad[place])


def _add_causes(graph, events, coded: _Coded, window_s, groups: pd.DataFrame | None = None,
                spans: dict | None = None) -> None:
    """Topic → topic edges: each event's cause by :mod:`eventscope.analysis.causality` (the
    newest earlier event of its chain on a topic its producer consumes)."""
    usable = np.flatnonzero(~coded.dead & ~coded.undecodable & coded.timed & (coded.service >= 0)
                            & _named(events["correlation_id"]).to_numpy())
    if len(usable) < 2:
        return
    chain = pd.factorize(pd.factorize(events["correlation_id"])[0][usable])[0]
    at_us = coded.at[usable] // 1000
    order = causality.chain_order(chain, at_us, coded.kind[usable])
    place, service = coded.place[usable][order], coded.service[usable][order]
    chain, at_us = chain[order], at_us[order]
    producer = pd.factorize(service.astype("int64") * (int(coded.kind.max()) + 2)
                            + coded.kind[usable][order])[0]
    codes = pd.factorize(service.astype("int64") * (int(coded.kind.max()) + 2) + coded.kind[usable][order])[1]
    reads = causality.service_reads(coded.services, coded.places, groups)
    allowed = {p: reads[int(key) // (int(coded.kind.max()) + 2)] for p, key in enumerate(codes)
               if int(key) // (int(coded.kind.max()) + 2) in reads}
    explicit = None
    if events["causation_id"].notna().any() and events["event_id"].notna().any():
        rows = events.iloc[usable[order]]
        explicit = causality.explicit_causes(chain, rows["event_id"].tolist(), rows["causation_id"].tolist())
    if spans and "parent_span_id" in events.columns:  # the message's own span, from its traceparent
        by_span = causality.span_causes(chain, events["parent_span_id"].iloc[usable[order]].tolist(), spans)
        explicit = by_span if explicit is None else np.where(explicit >= 0, explicit, by_span)
    cause = causality.cause_rows(chain, at_us, place, producer, _topics_read(coded, groups), allowed, explicit)
    pick = np.flatnonzero(cause >= 0)
    if not len(pick):
        return
    pairs = pd.DataFrame({"a": place[cause[pick]], "b": place[pick], "service": service[pick],
                          "latency_ms": (at_us[pick] - at_us[cause[pick]]) / 1000.0})
    # one integer key per (A, B) pair, then per key: count, p50/p95, most frequent service
    pairs["key"] = pairs["a"].astype("int64") * len(coded.places) + pairs["b"]
    grouped = pairs.groupby("key", sort=True)["latency_ms"]
    stats = grouped.quantile([0.5, 0.95]).unstack()
    through = (pairs.groupby(["key", "service"]).size().reset_index(name="n")
               .sort_values(["n", "service"], ascending=[False, True], kind="stable")
               .drop_duplicates("key").set_index("key")["service"].to_dict())
    for key, count in grouped.size().items():
        a, b = divmod(int(key), len(coded.places))
        source = _add_node(graph, "topic", coded.places[a][1], coded.places[a][0])
        target = _add_node(graph, "topic", coded.places[b][1], coded.places[b][0])
        _add_edge(graph, source, target, "causes", count, window_s,
                  service=coded.services[through[key]],
                  p50_latency_ms=round(float(stats.at[key, 0.5]), 3),
                  p95_latency_ms=round(float(stats.at[key, 0.95]), 3))


def _topics_read(coded: _Coded, groups: pd.DataFrame | None) -> np.ndarray | None:
    """Per place: whether a consumer group reads it (None when no group is known on any of
    the events' brokers: then nothing is ruled out)."""
    if groups is None or groups.empty:
        return None
    read = set(zip(groups["broker"].astype(str), groups["topic"].astype(str)))
    watched = {b for b, _ in read}
    if not any(b in watched for b, _ in coded.places):
        return None
    return np.array([(b, t) in read or b not in watched for b, t in coded.places], dtype=bool)


def _consumer_side(lag: pd.DataFrame | None) -> tuple[pd.DataFrame | None, pd.Series, float]:
    """From raw lag samples: (each group and topic now, progress per group and topic, span)."""
    if lag is None or lag.empty:
        return None, pd.Series(dtype="int64"), 1.0
    lag = lag.sort_values("sampled_at", kind="stable")
    groups = lag_analysis.group_summary(lag_analysis.latest_lag(lag))
    return groups, _progress(lag), _span_seconds(lag["sampled_at"])


def _consumed(rows: pd.DataFrame | None) -> tuple[pd.Series, float]:
    """From ``lag_1m`` rows: messages consumed per group and topic, and the minutes' span."""
    if rows is None or rows.empty:
        return pd.Series(dtype="int64"), 1.0
    progress = rows.groupby(["broker", "group", "topic"], observed=True)["consumed"].sum().astype("int64")
    span = (rows["minute"].max() - rows["minute"].min()).total_seconds() + 60.0
    return progress, span


def _add_consumes(graph, groups: pd.DataFrame | None, progress: pd.Series, window_s: float,
                  dlq_names) -> None:
    if groups is None or groups.empty:
        return
    progress = {(str(b), str(g), str(t)): int(n) for (b, g, t), n in progress.items()}  # 6,000 lookups
    for row in groups.itertuples(index=False):
        broker, group, topic = str(row.broker), str(row.group), str(row.topic)
        if _idle_dead_letter_queue(row, dlq_names):
            continue
        source = _topic_node(graph, broker, topic, dlq_names)
        target = _add_node(graph, "group", group, broker)
        _add_edge(graph, source, target, "consumes", progress.get((broker, group, topic), 0), window_s)
        node = graph.nodes[target]
        node["lag"] = _add_nullable(node.get("lag"), row.lag)
        if pd.notna(row.lag_seconds):
            node["lag_seconds"] = max(node.get("lag_seconds") or 0.0, float(row.lag_seconds))
        status = row.status if isinstance(row.status, str) else "UNKNOWN"
        worst = max([node.get("status") or "OK", status], key=lambda s: lag_analysis.SEVERITY.get(s, 0))
        node["status"] = worst
        node["health"] = HEALTH.get(worst, "unknown")


def _add_routes(graph, bindings: pd.DataFrame | None, dlq_names) -> None:
    """RabbitMQ exchanges, ``binds`` and ``dead_letters_to`` edges (:mod:`eventscope.graph.rabbitmq`)."""
    if bindings is None or bindings.empty:
        return
    newest = bindings
    if "sampled_at" in bindings.columns:  # the routing of each cluster's newest sample
        at = bindings.groupby("broker", observed=True)["sampled_at"].transform("max")
        newest = bindings[(bindings["sampled_at"] == at).to_numpy(dtype=bool, na_value=False)]
    for source, target, attrs in bindings_graph_edges(newest, dlq_names):
        for nid in (source, target):
            if nid not in graph:
                kind, broker, name = nid.split(":", 2)  # cluster names hold no colon
                _add_node(graph, kind, name, broker)
        if graph.has_edge(source, target):  # one more binding between the same two: list its key
            data = graph.edges[source, target]
            keys = [k for k in str(data.get("routing_key", "")).split(", ") if k]
            if attrs.get("routing_key") and attrs["routing_key"] not in keys:
                data["routing_key"] = ", ".join(keys + [attrs["routing_key"]])
            continue
        graph.add_edge(source, target, events=0, rate_per_s=0.0, **attrs)


def _queue_keys(queues: pd.DataFrame) -> list[str]:
    """A RabbitMQ queue's name as its lag and DLQ rows give it: ``vhost/name`` outside ``/``."""
    return [str(q) if v == "/" else f"{v}/{q}" for v, q in zip(queues["vhost"], queues["queue"])]


def _add_queue_types(graph, queues: pd.DataFrame | None, dlq_names) -> None:
    if queues is None or queues.empty:
        return
    for broker, key, kind in zip(queues["broker"].astype(str), _queue_keys(queues), queues["type"]):
        nid = node_id("dlq" if (broker, key) in dlq_names else "topic", key, broker)
        if nid in graph:
            graph.nodes[nid]["queue_type"] = None if pd.isna(kind) else str(kind)


def _routed_dead_letters(graph, origin: str, dlq: str) -> bool:
    """Whether ``origin`` dead-letters into ``dlq`` through a RabbitMQ exchange already drawn."""
    return origin in graph and any(
        d.get("kind") == "dead_letters_to" and graph.has_edge(exchange, dlq)
        and graph.edges[exchange, dlq].get("kind") == "binds"
        for _, exchange, d in graph.out_edges(origin, data=True))


def _idle_dead_letter_queue(row, dlq_names) -> bool:
    """A RabbitMQ DLQ's own lag row with no consumer: the queue is not a group anyone runs
    (a queue is its own "group"), so no group node is drawn for it."""
    members = getattr(row, "members", None)
    return (getattr(row, "kind", None) == "rabbitmq" and (str(row.broker), str(row.topic)) in dlq_names
            and (members is None or pd.isna(members) or members == 0))


def _progress(lag: pd.DataFrame) -> pd.Series:
    """Messages consumed over the window per (broker, group, topic): the committed offset's
    forward steps per partition (a rewind restarts the count rather than going negative)."""
    parts = ["broker", "group", "topic", "partition"]
    ordered = lag.sort_values(parts + ["sampled_at"], kind="stable")
    committed = ordered["committed"].astype("Float64")
    steps = committed.groupby([ordered[k] for k in parts], observed=True).diff()
    forward = steps.where(steps > 0, 0).fillna(0)
    return forward.groupby([ordered[k] for k in parts[:3]], observed=True).sum().astype("int64")


def _span_seconds(times: pd.Series) -> float:
    times = times.dropna()
    return 1.0 if len(times) < 2 else max(1.0, (times.max() - times.min()).total_seconds())


def _add_nullable(current, value):
    if value is None or pd.isna(value):
        return current
    return int(value) + (current or 0)


def _add_dlq_health(graph, dlq_df) -> None:
    """Depth and growth of every DLQ sampled in the window; a held DLQ names its source."""
    if dlq_df is None or dlq_df.empty:
        return
    rows = dlq_df.sort_values("sampled_at", kind="stable")
    for (source, broker, name), samples in rows.groupby(["source", "broker", "dlq"], observed=True):
        nid = _add_node(graph, "dlq", str(name), str(broker))
        node = graph.nodes[nid]
        node["depth"] = int(samples["depth"].iloc[-1])
        node["growth"] = int(samples["depth"].iloc[-1] - samples["depth"].iloc[0])
        origin = samples["source_topic"].dropna()
        origin = str(origin.iloc[-1]) if not origin.empty and origin.iloc[-1] else ""
        origin = origin or source_topic_from_name(str(name)) or ""  # `orders.DLT` → `orders`
        held = node["depth"] > 0 or node["growth"] != 0
        if origin and held and not any(d.get("kind") == "dead_letters"
                                       for _, _, d in graph.in_edges(nid, data=True)) \
                and not _routed_dead_letters(graph, node_id("topic", origin, str(broker)), nid):
            source = _add_node(graph, "topic", origin, str(broker))
            graph.add_edge(source, nid, kind="dead_letters", events=0, rate_per_s=0.0)


def _finish_health(graph: nx.DiGraph) -> None:
    for _, node in graph.nodes(data=True):
        kind = node.get("kind")
        if kind == "dlq":
            if node.get("growth", 0) > 0 or node.get("dead_lettered", 0) > 0:
                node["health"] = "critical"
            elif node.get("depth", 0) > 0:
                node["health"] = "warn"
            else:
                node["health"] = "ok"
        elif kind == "topic":
            node["health"] = "warn" if node.get("undecodable", 0) else "ok"
        elif kind == "group":
            node.setdefault("health", "unknown")
        elif kind == "exchange":
            node["health"] = "ok"
        else:
            node.setdefault("health", "ok")
