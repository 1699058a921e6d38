"""What part of the flow graph to draw: filters, focus on one node, and collapsing for big graphs.

Pure functions, graph in, graph out (never mutating the input), so the page only picks
options. Collapsing keeps big systems readable, in this order until the graph fits:
healthy consumer groups become one "N healthy groups" node per topic they read (per
broker if that is still too many); shards of one stream (``orders-0``, ``orders-1``,
``orders:{7}``) become one ``orders-*`` node; nodes of one kind that share a name prefix
(``billing.invoices``, ``billing.refunds``) become one ``billing.*`` node. A group that
is not healthy is never merged: at 3 a.m. it is the node to see. A merged node keeps
``members`` (how many it stands for), the worst ``health`` and summed ``events``; merged
edges sum their ``events`` and rates.
"""
from __future__ import annotations

import fnmatch
import re

import networkx as nx

from eventscope.graph.build import HEALTH_RANK, node_id

_SHARD = re.compile(r"^(?P<stem>.+?)(?P<sep>[-_.:])(?:p|part|partition|shard)?\{?\d+\}?$", re.I)
_PREFIX = re.compile(r"^(?P<stem>[^-_.:]+)(?P<sep>[-_.:])")


def filter_graph(graph: nx.DiGraph, brokers: list[str] | None = None,
                 pattern: str | None = None) -> nx.DiGraph:
    """Nodes on ``brokers`` (services kept when they touch one), and, with ``pattern``, the
    nodes whose name matches it (a glob such as ``pay*``, else a case-insensitive
    substring) together with their direct neighbours, so a match is shown in context."""
    keep = set(graph.nodes)
    if brokers is not None:
        wanted = set(brokers)
        on = {n for n, b in graph.nodes(data="broker") if b in wanted}
        services = {n for n, k in graph.nodes(data="kind") if k == "service"
                    and any(m in on for m in nx.all_neighbors(graph, n))}
        keep = on | services
    if pattern and pattern.strip():
        text = pattern.strip().lower()
        glob = any(c in text for c in "*?[")

        def matches(label) -> bool:
            label = str(label).lower()
            return fnmatch.fnmatchcase(label, text) if glob else text in label

        hits = {n for n in keep if matches(graph.nodes[n].get("label", n))}
        keep &= hits | {m for n in hits for m in nx.all_neighbors(graph, n)}
    return graph.subgraph(keep).copy()


def neighbourhood(graph: nx.DiGraph, center: str, hops: int = 1) -> nx.DiGraph:
    """``center`` and every node within ``hops`` edges of it, in either direction."""
    if center not in graph:
        return nx.DiGraph()
    return nx.ego_graph(graph, center, radius=max(0, int(hops)), undirected=True).copy()


def _merge(graph: nx.DiGraph, mapping: dict[str, tuple[str, str]]) -> nx.DiGraph:
    """Replace each mapped node by the merged node ``(new id, label)`` it maps to."""
    if not mapping:
        return graph.copy()
    out = nx.DiGraph()
    for nid, attrs in graph.nodes(data=True):
        if nid not in mapping:
            out.add_node(nid, **attrs)
            continue
        new, label = mapping[nid]
        if new not in out:
            out.add_node(new, **{**attrs, "label": label, "members": 0, "events": 0,
                                 "lag": None, "depth": None, "status": None, "health": "ok"})
        node = out.nodes[new]
        node["members"] += int(attrs.get("members", 1))
        node["events"] += int(attrs.get("events", 0) or 0)
        if HEALTH_RANK.get(attrs.get("health"), 0) > HEALTH_RANK.get(node.get("health"), 0):
            node["health"] = attrs.get("health")
        for key in ("lag", "depth"):
            if attrs.get(key) is not None:
                node[key] = (node.get(key) or 0) + int(attrs[key])
    for a, b, attrs in graph.edges(data=True):
        na, nb = mapping.get(a, (a,))[0], mapping.get(b, (b,))[0]
        if na == nb:
            continue  # a hop inside one merged node says nothing at this zoom level
        if out.has_edge(na, nb):
            edge = out.edges[na, nb]
            total = edge["events"] + int(attrs.get("events", 0))
            if attrs.get("kind") == "causes" and attrs.get("p95_latency_ms") is not None:
                edge["p95_latency_ms"] = max(edge.get("p95_latency_ms") or 0.0, attrs["p95_latency_ms"])
                if total:  # events-weighted median of medians: a fair summary, not exact
                    edge["p50_latency_ms"] = round(((edge.get("p50_latency_ms") or 0.0) * edge["events"]
                                                    + attrs["p50_latency_ms"] * attrs.get("events", 0))
                                                   / total, 3)
            edge["events"] = total
            edge["rate_per_s"] = round(edge["rate_per_s"] + float(attrs.get("rate_per_s") or 0.0), 4)
        else:
            out.add_edge(na, nb, **attrs)
    return out


def _grouped(graph: nx.DiGraph, stem_of, signature=None) -> dict[str, tuple[str, str]]:
    """Map nodes that share a stem (same kind and broker, and ``signature`` when given; at
    least two) onto one node."""
    buckets: dict[tuple, list[str]] = {}
    for nid, attrs in graph.nodes(data=True):
        found = stem_of(str(attrs.get("label", "")))
        if found and (signature is None or signature(nid) is not None):
            sig = signature(nid) if signature else None
            buckets.setdefault((attrs.get("kind"), attrs.get("broker"), *found, sig), []).append(nid)
    mapping = {}
    for (kind, broker, stem, sep, _), members in buckets.items():
        if len(members) < 2:
            continue
        label = f"{stem}{sep}*"
        new = node_id(kind, label, broker)
        mapping.update({m: (new, label) for m in members})
    return mapping


def collapse_partitions(graph: nx.DiGraph) -> nx.DiGraph:
    """Shards of one topic/stream (``orders-0``, ``orders-1`` …) as one ``orders-*`` node.

    A trailing number alone does not make a shard (``service-12`` and ``step-2`` are
    names): shards are topics or DLQs with the same stem *and* the same producing services
    and consuming groups."""
    def stem(label: str):
        match = _SHARD.match(label)
        return (match["stem"], match["sep"]) if match else None

    def signature(nid: str):
        if graph.nodes[nid].get("kind") not in ("topic", "dlq"):
            return None
        kinds = graph.nodes
        return (frozenset(p for p in graph.predecessors(nid) if kinds[p].get("kind") == "service"),
                frozenset(s for s in graph.successors(nid) if kinds[s].get("kind") == "group"))
    return _merge(graph, _grouped(graph, stem, signature))


def group_by_prefix(graph: nx.DiGraph) -> nx.DiGraph:
    """Nodes of one kind and broker sharing the first name segment as one ``prefix.*`` node
    (consumer groups that are not healthy stay on their own)."""
    def stem(label: str):
        match = _PREFIX.match(label)
        return (match["stem"], match["sep"]) if match else None

    def signature(nid: str):
        attrs = graph.nodes[nid]
        return None if _unwell_group(attrs) else attrs.get("kind")
    return _merge(graph, _grouped(graph, stem, signature))


def _unwell_group(attrs: dict) -> bool:
    return attrs.get("kind") == "group" and attrs.get("health") not in ("ok", None)


def collapse_healthy_groups(graph: nx.DiGraph, per: str = "topic") -> nx.DiGraph:
    """Healthy consumer groups as one node per topic they read first (``per="topic"``) or per
    broker (``per="broker"``); a group that is not healthy is kept as it is."""
    buckets: dict[tuple, list[str]] = {}
    for nid, attrs in graph.nodes(data=True):
        if attrs.get("kind") != "group" or attrs.get("health") != "ok":
            continue
        topics = sorted(graph.nodes[p].get("label", p) for p in graph.predecessors(nid)
                        if graph.nodes[p].get("kind") in ("topic", "dlq"))
        where = topics[0] if per == "topic" and topics else ""
        buckets.setdefault((attrs.get("broker"), where), []).append(nid)
    mapping = {}
    for (broker, where), members in buckets.items():
        if len(members) < 2:
            continue
        count = sum(int(graph.nodes[m].get("members", 1)) for m in members)  # merged ones count theirs
        label = f"{count} healthy groups" + (f" of {where}" if where else "")
        mapping.update({m: (node_id("group", label, broker), label) for m in members})
    return _merge(graph, mapping)


def readable(graph: nx.DiGraph, max_nodes: int = 120) -> tuple[nx.DiGraph, list[str]]:
    """The graph collapsed just enough to stay under ``max_nodes``; the steps that merged
    something."""
    steps = []
    for name, collapse in (("healthy groups merged per topic", lambda g: collapse_healthy_groups(g, "topic")),
                           ("healthy groups merged per broker", lambda g: collapse_healthy_groups(g, "broker")),
                           ("partitions collapsed", collapse_partitions),
                           ("grouped by name prefix", group_by_prefix)):
        if graph.number_of_nodes() <= max_nodes:
            break
        smaller = collapse(graph)
        if smaller.number_of_nodes() < graph.number_of_nodes():
            graph = smaller
            steps.append(name)
    return graph, steps
