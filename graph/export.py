"""Export the flow graph: the CLI's JSON document (``{nodes, edges}``) and Graphviz DOT.

JSON fields follow DESIGN.md's CLI contract: node ``{id, kind, label, broker}`` and edge
``{source, target, kind, events, rate_per_s}`` (``causes`` edges add ``service``,
``p50_latency_ms``, ``p95_latency_ms``; RabbitMQ's ``binds`` and ``dead_letters_to`` add
``routing_key``, and ``binds`` ``exchange_type``). Extra fields (a group's ``lag``, a DLQ's
``depth``) are added when known. Output is sorted so that it diffs cleanly.
"""
from __future__ import annotations

import math

import networkx as nx

NODE_EXTRAS = ("lag", "lag_seconds", "depth", "queue_type")
EDGE_FIELDS = ("kind", "events", "rate_per_s")
CAUSE_FIELDS = ("service", "p50_latency_ms", "p95_latency_ms")
ROUTE_FIELDS = ("routing_key", "exchange_type")  # RabbitMQ's binds and dead_letters_to edges


def _plain(value):
    """NaN → None, numpy scalars → Python numbers, so ``json.dumps`` accepts the result."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def to_json(graph: nx.DiGraph) -> dict:
    """The graph as ``{"nodes": [...], "edges": [...]}`` (JSON-serializable)."""
    nodes = []
    for nid in sorted(graph.nodes):
        attrs = graph.nodes[nid]
        node = {"id": nid, "kind": attrs.get("kind"), "label": attrs.get("label"),
                "broker": attrs.get("broker")}
        node.update({k: _plain(attrs[k]) for k in NODE_EXTRAS if k in attrs})
        nodes.append(node)
    edges = []
    for source, target in sorted(graph.edges):
        attrs = graph.edges[source, target]
        edge = {"source": source, "target": target}
        edge.update({k: _plain(attrs.get(k)) for k in EDGE_FIELDS})
        if attrs.get("kind") == "causes":
            edge.update({k: _plain(attrs.get(k)) for k in CAUSE_FIELDS})
        edge.update({k: _plain(attrs[k]) for k in ROUTE_FIELDS if k in attrs})
        edges.append(edge)
    return {"nodes": nodes, "edges": edges}


def dot_quote(text) -> str:
    """A DOT double-quoted string: backslashes and quotes escaped, newlines as ``\\n``."""
    text = "" if text is None else str(text)
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    text = text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")
    return f'"{text}"'


SHAPES = {"service": "box", "topic": "cds", "group": "ellipse", "dlq": "octagon", "exchange": "diamond"}


def to_dot(graph: nx.DiGraph) -> str:
    """The graph as a Graphviz ``digraph`` with every name quoted and escaped."""
    lines = ["digraph eventscope {", "  rankdir=LR;", "  node [fontname=\"Helvetica\"];"]
    for nid in sorted(graph.nodes):
        attrs = graph.nodes[nid]
        shape = SHAPES.get(attrs.get("kind"), "ellipse")
        lines.append(f"  {dot_quote(nid)} [label={dot_quote(attrs.get('label'))}, shape={shape}];")
    for source, target in sorted(graph.edges):
        attrs = graph.edges[source, target]
        label = f"{attrs.get('kind')} {attrs.get('rate_per_s', 0):g}/s"
        if attrs.get("kind") == "causes":
            label += f" via {attrs.get('service')}"
        if attrs.get("routing_key"):
            label += f" key {attrs['routing_key']}"
        style = ", style=dashed" if attrs.get("kind") in ("causes", "dead_letters", "dead_letters_to") else ""
        lines.append(f"  {dot_quote(source)} -> {dot_quote(target)} [label={dot_quote(label)}{style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
