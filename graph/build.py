"""Reconstruct the flow graph from observed traffic (pure: frames in, graph out).

Nodes (attrs ``kind``, ``label``, ``broker``):
``service:NAME``, ``topic:BROKER:NAME``, ``group:BROKER:NAME``, ``dlq:BROKER:NAME``.
Group nodes also carry ``lag`` / ``lag_seconds`` (latest sample), DLQ nodes ``depth``.

Edges (attrs ``kind``, ``events``, ``rate_per_s``):
- ``produces``      service → topic, from the events' ``service``;
- ``consumes``      topic → group, from the lag frame (events = committed-offset progress);
- ``dead_letters``  topic → dlq, from dead-lettered events' ``original_topic``;
- ``causes``        topic → topic through a service: within one correlation ID, an event in
  topic A directly followed by an event that service S produced into topic B. Extra attrs
  ``service`` (the most frequent one), ``p50_latency_ms``, ``p95_latency_ms``.

Rates divide by one shared window per frame: the span of the events frame for
``produces``/``dead_letters``/``causes``, the span of the lag samples for ``consumes``.
"""
from __future__ import annotations

import networkx as nx
import pandas as pd

from eventscope import schemas

UNDECODABLE = "<undecodable>"


def node_id(kind: str, name: str, broker: str | None = None) -> str:
    """The stable node ID of the CLI contract."""
    return f"service:{name}" if kind == "service" else f"{kind}:{broker}:{name}"


def build_graph(events_df: pd.DataFrame | None, lag_df: pd.DataFrame | None,
                dlq_df: pd.DataFrame | None = None) -> nx.DiGraph:
    """Build the producer → topic → group graph (plus DLQs and topic → topic causes)."""
    graph = nx.DiGraph()
    events = _clean_events(events_df)
    window_s = _window_seconds(events, lag_df)
    dlq_names = _dlq_names(events, dlq_df)
    if not events.empty:
        _add_produces(graph, events, window_s, dlq_names)
        _add_dead_letters(graph, events, window_s)
        _add_causes(graph, events, window_s)
    _add_consumes(graph, lag_df, dlq_names)
    _add_dlq_depths(graph, dlq_df)
    return graph


def _clean_events(events_df: pd.DataFrame | None) -> pd.DataFrame:
    if events_df is None or events_df.empty:
        return schemas.empty("events")
    events = events_df.copy()
    at = events["at"] if "at" in events else pd.Series(pd.NaT, index=events.index)
    if "broker_at" in events:
        at = at.fillna(events["broker_at"])
    events["at"] = at
    events["dead_letter"] = events["dead_letter"].fillna(False).astype(bool)
    return events


def _window_seconds(events: pd.DataFrame, lag_df: pd.DataFrame | None) -> float:
    """Seconds of observation the rates are computed over (at least 1)."""
    times = pd.Series(dtype="datetime64[ns, UTC]")
    if "observed_at" in events and not events.empty:
        times = events["observed_at"].dropna()
    if times.empty and not events.empty:
        times = events["at"].dropna()
    if times.empty and lag_df is not None and not lag_df.empty:
        times = lag_df["sampled_at"].dropna()
    if len(times) < 2:
        return 1.0
    return max(1.0, (times.max() - times.min()).total_seconds())


def _dlq_names(events: pd.DataFrame, dlq_df: pd.DataFrame | None) -> set[tuple[str, str]]:
    names = set()
    if not events.empty:
        dead = events[events["dead_letter"]]
        names |= set(zip(dead["broker"].astype(str), dead["topic"].astype(str)))
    if dlq_df is not None and not dlq_df.empty:
        names |= set(zip(dlq_df["broker"].astype(str), dlq_df["dlq"].astype(str)))
    return names


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


def _add_produces(graph, events, window_s, dlq_names) -> None:
    named = events["service"].notna() & (events["service"] != "")
    live = events[(~events["dead_letter"] & named).fillna(False)]
    for (broker, topic, service), count in live.groupby(
            ["broker", "topic", "service"], observed=True).size().items():
        target = _topic_node(graph, str(broker), str(topic), dlq_names)
        source = _add_node(graph, "service", str(service))
        _add_edge(graph, source, target, "produces", count, window_s)


def _add_dead_letters(graph, events, window_s) -> None:
    dead = events[events["dead_letter"]]
    for (broker, dlq), rows in dead.groupby(["broker", "topic"], observed=True):
        target = _add_node(graph, "dlq", str(dlq), str(broker))
        origins = rows["original_topic"].dropna()
        for original, count in origins[origins != ""].value_counts().items():
            source = _add_node(graph, "topic", str(original), str(broker))
            _add_edge(graph, source, target, "dead_letters", count, window_s)


def _add_causes(graph, events, window_s) -> None:
    usable = events[(~events["dead_letter"] & events["correlation_id"].notna()
                     & (events["correlation_id"] != "") & events["at"].notna()
                     & (events["event_type"].fillna("") != UNDECODABLE)).fillna(False)]
    if usable.empty:
        return
    ordered = usable.sort_values(["correlation_id", "at"], kind="stable")
    same = ordered["correlation_id"].eq(ordered["correlation_id"].shift()).fillna(False).astype(bool)
    pairs = pd.DataFrame({
        "broker_a": ordered["broker"].shift(), "topic_a": ordered["topic"].shift(),
        "broker_b": ordered["broker"], "topic_b": ordered["topic"],
        "service": ordered["service"],
        "latency_ms": (ordered["at"] - ordered["at"].shift()).dt.total_seconds() * 1000.0,
    })[same.to_numpy()]
    moved = (pairs["topic_a"] != pairs["topic_b"]) | (pairs["broker_a"] != pairs["broker_b"])
    pairs = pairs[(moved & pairs["service"].notna() & (pairs["service"] != "")).fillna(False)]
    for (broker_a, topic_a, broker_b, topic_b), rows in pairs.groupby(
            ["broker_a", "topic_a", "broker_b", "topic_b"], observed=True):
        source = _add_node(graph, "topic", str(topic_a), str(broker_a))
        target = _add_node(graph, "topic", str(topic_b), str(broker_b))
        latency = rows["latency_ms"].dropna()
        _add_edge(graph, source, target, "causes", len(rows), window_s,
                  service=str(rows["service"].value_counts().index[0]),
                  p50_latency_ms=_quantile(latency, 0.5), p95_latency_ms=_quantile(latency, 0.95))


def _quantile(values: pd.Series, q: float) -> float | None:
    if values.empty:
        return None
    return round(float(values.quantile(q)), 3)


def _add_consumes(graph, lag_df, dlq_names) -> None:
    if lag_df is None or lag_df.empty:
        return
    lag = lag_df.sort_values("sampled_at", kind="stable")
    window_s = _span_seconds(lag["sampled_at"])
    keys = ["broker", "group", "topic"]
    for (broker, group, topic), rows in lag.groupby(keys, observed=True):
        source = _topic_node(graph, str(broker), str(topic), dlq_names)
        target = _add_node(graph, "group", str(group), str(broker))
        progress = rows.groupby("partition")["committed"].agg(lambda s: _progress(s.dropna()))
        _add_edge(graph, source, target, "consumes", int(progress.sum()), window_s)
        newest = rows[rows["sampled_at"] == rows["sampled_at"].max()]
        node = graph.nodes[target]
        node["lag"] = _add_nullable(node.get("lag"), newest["lag"].dropna().sum()
                                    if newest["lag"].notna().any() else None)
        seconds = newest["lag_seconds"].dropna()
        if not seconds.empty:
            node["lag_seconds"] = max(node.get("lag_seconds") or 0.0, float(seconds.max()))


def _progress(committed: pd.Series) -> int:
    """Messages consumed over the window; a rewind restarts the count rather than going negative."""
    if len(committed) < 2:
        return 0
    steps = committed.astype("int64").diff().dropna()
    return int(steps[steps > 0].sum())


def _span_seconds(times: pd.Series) -> float:
    times = times.dropna()
    return 1.0 if len(times) < 2 else max(1.0, (times.max() - times.min()).total_seconds())


def _add_nullable(current, value):
    if value is None:
        return current
    return int(value) + (current or 0)


def _add_dlq_depths(graph, dlq_df) -> None:
    if dlq_df is None or dlq_df.empty:
        return
    newest = dlq_df[dlq_df["sampled_at"] == dlq_df.groupby("source")["sampled_at"].transform("max")]
    for row in newest.itertuples(index=False):
        nid = _add_node(graph, "dlq", str(row.dlq), str(row.broker))
        graph.nodes[nid]["depth"] = int(row.depth)
        origin = row.source_topic
        if isinstance(origin, str) and origin and not graph.has_edge(
                node_id("topic", origin, str(row.broker)), nid):
            source = _add_node(graph, "topic", origin, str(row.broker))
            graph.add_edge(source, nid, kind="dead_letters", events=0, rate_per_s=0.0)


def mark_group_status(graph: nx.DiGraph, groups: pd.DataFrame, severity: dict[str, int]) -> None:
    """Give each group node the worst ``status`` of its rows in ``groups`` (per-topic verdicts)."""
    for row in groups.itertuples(index=False):
        node = graph.nodes.get(node_id("group", str(row.group), str(row.broker)))
        if node is not None and severity.get(row.status, 0) > severity.get(node.get("status"), -1):
            node["status"] = row.status
