"""Render the flow graph as one self-contained HTML page with pyvis (vis-network).

Safety: this HTML goes into ``st.iframe``, which runs scripts with same-origin access
to the dashboard, and node names come from watched traffic (a service may be called
``<script>``). So every label and title is HTML-escaped, the substring ``href`` never
reaches a title (pyvis would otherwise switch to a popup that sets ``innerHTML``),
``Network(heading=...)`` is never used, and vis is inlined (``cdn_resources="in_line"``:
the only mode that works offline). The template's empty headings and its Bootstrap
CDN tags are removed: no third-party requests leave the dashboard.
"""
from __future__ import annotations

import html
import math
import re

import networkx as nx
from pyvis.network import Network

#: kind -> (fill, border); light fills keep the dark label text readable
COLORS = {"service": ("#D6E4F5", "#4C78A8"), "topic": ("#D9F0D3", "#54A24B"),
          "group": ("#FDE3C8", "#F58518"), "dlq": ("#F9D0D0", "#E45756")}
SHAPES = {"service": "box", "topic": "ellipse", "group": "box", "dlq": "ellipse"}
EDGE_COLORS = {"produces": "#4C78A8", "consumes": "#F58518", "dead_letters": "#E45756",
               "causes": "#9E9E9E"}
STATUS_BORDER = {"ERR": "#D62728", "STOP": "#D62728", "STALL": "#D62728", "REWIND": "#D62728",
                 "WARN": "#E6A700"}
LEVEL_GAP, ROW_GAP = 175, 85  # px between columns, and per node in the busiest column
FIT_WIDTH = 1100  # px a wide dashboard page gives the frame; wider drawings scroll sideways
# fit() would blow a small graph up past 100 %; cap it (static script, no data in it)
_NO_ZOOM_IN = ('<script>network.once("afterDrawing", function () {'
               " if (network.getScale() > 1) { network.moveTo({scale: 1}); } });</script>")
_EMPTY_HEADING = re.compile(r"<center>\s*<h1>\s*</h1>\s*</center>")
_CDN_TAGS = re.compile(r"<link[^>]*cdn\.jsdelivr\.net[^>]*/>"
                       r"|<script[^>]*cdn\.jsdelivr\.net[^>]*>\s*</script>", re.S)


def safe_text(value) -> str:
    """HTML-escape ``value`` and break every ``href`` with a zero-width space."""
    text = html.escape("" if value is None else str(value), quote=True)
    return re.sub(r"(?i)h(?=ref)", "h\u200b", text)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def node_title(attrs: dict) -> str:
    """Plain-text tooltip of one node (escaped by the caller)."""
    lines = [f"{attrs.get('kind')}: {attrs.get('label')}"]
    if attrs.get("broker"):
        lines.append(f"broker: {attrs['broker']}")
    if attrs.get("lag") is not None:
        lines.append(f"lag: {attrs['lag']} messages")
    if attrs.get("lag_seconds") is not None:
        lines.append(f"lag: {attrs['lag_seconds']:.1f} s behind")
    if attrs.get("status"):
        lines.append(f"status: {attrs['status']}")
    if attrs.get("depth") is not None:
        lines.append(f"depth: {attrs['depth']} messages")
    return "\n".join(lines)


def edge_title(attrs: dict) -> str:
    """Plain-text tooltip of one edge (escaped by the caller)."""
    lines = [f"{attrs.get('kind')}: {attrs.get('events', 0)} events, {attrs.get('rate_per_s', 0):g}/s"]
    if attrs.get("kind") == "causes":
        lines.append(f"through service {attrs.get('service')}")
        if attrs.get("p50_latency_ms") is not None:
            lines.append(f"latency p50 {attrs['p50_latency_ms']:.0f} ms, "
                         f"p95 {attrs.get('p95_latency_ms') or 0:.0f} ms")
    return "\n".join(lines)


def levels(graph: nx.DiGraph) -> dict[str, int]:
    """Left-to-right columns that follow the flow.

    Topic columns are ordered by ``causes`` depth; a producer sits just left of its topic,
    a group or DLQ just right of it, so an app that consumes ``orders`` and produces
    ``payments`` lands between the two. Real flows have cycles (a compensation step sends
    events back upstream), so depth is taken on an acyclic backbone: ``causes`` edges are
    kept heaviest first, skipping any that would close a cycle.
    """
    topics = [n for n, k in graph.nodes(data="kind") if k == "topic"]
    backbone = nx.DiGraph()
    backbone.add_nodes_from(topics)
    causes = [(a, b, d.get("events", 0)) for a, b, d in graph.edges(data=True)
              if d.get("kind") == "causes" and a in backbone and b in backbone]
    for a, b, _ in sorted(causes, key=lambda e: (-e[2], e[0], e[1])):
        if not nx.has_path(backbone, b, a):
            backbone.add_edge(a, b)
    depth = dict.fromkeys(topics, 0)
    for node in nx.topological_sort(backbone):
        for nxt in backbone.successors(node):
            depth[nxt] = max(depth[nxt], depth[node] + 1)
    level = {t: 2 * d + 1 for t, d in depth.items()}
    for nid, attrs in graph.nodes(data=True):
        kind = attrs.get("kind")
        if kind == "service":
            produced = [level[t] for t in graph.successors(nid) if t in level]
            level[nid] = min(produced) - 1 if produced else 0
        elif kind in ("group", "dlq"):
            fed = [level[t] for t in graph.predecessors(nid) if t in level] or _named_after(
                graph, attrs, level)
            level[nid] = max(fed) + 1 if fed else 2
    return level


def _named_after(graph: nx.DiGraph, attrs: dict, level: dict[str, int]) -> list[int]:
    """Column of the topic an unconnected DLQ is named after (``payments.DLT`` → ``payments``)."""
    if attrs.get("kind") != "dlq":
        return []
    name = str(attrs.get("label", ""))
    return [level[t] for t in level if graph.nodes[t].get("broker") == attrs.get("broker")
            and name.startswith(str(graph.nodes[t].get("label"))) and
            name[len(str(graph.nodes[t].get("label"))):][:1] in (".", "-", ":", "_")]


def node_label(attrs: dict, show_broker: bool = False) -> str:
    """Short visible label; groups add lag and status, DLQs their depth; the broker when
    several are drawn (a Kafka ``orders`` and a Redis ``orders`` must not look alike)."""
    lines = [_short(str(attrs.get("label", "")))]
    if show_broker and attrs.get("broker"):
        lines.append(f"({attrs['broker']})")
    if attrs.get("kind") == "group" and (attrs.get("lag") or attrs.get("status") not in (None, "OK")):
        lines.append(" · ".join(x for x in (f"{attrs.get('lag') or 0} behind",
                                             attrs.get("status")) if x))
    if attrs.get("kind") == "dlq" and attrs.get("depth") is not None:
        lines.append(f"{attrs['depth']} held")
    return "\n".join(lines)


def edge_label(attrs: dict) -> str:
    """Short visible edge label: the rate (``causes`` edges keep theirs in the tooltip)."""
    rate = float(attrs.get("rate_per_s") or 0.0)
    return f"{rate:.2g}/s" if rate and attrs.get("kind") != "causes" else ""


def drawn(graph: nx.DiGraph) -> nx.DiGraph:
    """The part worth drawing: an empty DLQ with no traffic is dropped (the Dead letters
    page still lists it); everything else stays."""
    idle = [n for n, a in graph.nodes(data=True) if a.get("kind") == "dlq"
            and not a.get("depth") and graph.degree(n) == 0]
    return graph.subgraph(n for n in graph.nodes if n not in set(idle))


def _width(rate: float, max_rate: float) -> float:
    if max_rate <= 0:
        return 1.5
    return round(1.0 + 7.0 * math.sqrt(max(rate, 0.0) / max_rate), 2)


def _options() -> dict:
    return {
        "layout": {"hierarchical": {"enabled": True, "direction": "LR", "sortMethod": "directed",
                                    "levelSeparation": LEVEL_GAP, "nodeSpacing": 75,
                                    "shakeTowards": "roots"}},
        "physics": {"enabled": False},
        "interaction": {"hover": True, "tooltipDelay": 120, "zoomView": False},
        "nodes": {"font": {"size": 16, "face": "sans-serif"}, "borderWidth": 2},
        "edges": {"font": {"size": 11, "color": "#555555", "strokeWidth": 3, "align": "top"},
                  "arrows": {"to": {"enabled": True, "scaleFactor": 0.6}},
                  "smooth": {"enabled": True, "type": "cubicBezier", "roundness": 0.4}},
    }


def canvas_size(graph: nx.DiGraph) -> tuple[int, int]:
    """Pixels (width, height) the drawing needs at 100 % zoom (height kept within 300..1000)."""
    columns = list(levels(drawn(graph)).values()) or [0]
    busiest = max(columns.count(c) for c in set(columns))
    return (max(columns) - min(columns)) * LEVEL_GAP + 260, max(300, min(1000, 100 + ROW_GAP * busiest))


def to_html(graph: nx.DiGraph) -> str:
    """The graph as a standalone HTML page (vis-network inlined; no heading).

    Drawn at most at 100 % zoom: a drawing wider than ``FIT_WIDTH`` gets a canvas of its
    own width (the frame scrolls sideways) rather than shrinking to unreadable labels, and
    the mouse wheel scrolls instead of zooming, so the page around it stays scrollable.
    """
    graph = drawn(graph)
    width, height = canvas_size(graph)
    show_broker = len({b for _, b in graph.nodes(data="broker") if b}) > 1
    net = Network(height=f"{height}px", width="100%" if width <= FIT_WIDTH else f"{width}px",
                  directed=True,
                  cdn_resources="in_line", bgcolor="#ffffff", font_color="#222222")
    level = levels(graph)
    for nid in sorted(graph.nodes):
        attrs = graph.nodes[nid]
        kind = attrs.get("kind", "topic")
        fill, border = COLORS.get(kind, ("#EEEEEE", "#999999"))
        color = {"background": fill, "border": STATUS_BORDER.get(attrs.get("status"), border),
                 "highlight": {"background": fill, "border": "#222222"}}
        net.add_node(safe_text(nid), label=safe_text(node_label(attrs, show_broker)),
                     title=safe_text(node_title(attrs)), color=color,
                     shape=SHAPES.get(kind, "dot"), level=level.get(nid, 1),
                     borderWidth=4 if attrs.get("status") in STATUS_BORDER else 2)
    rates = [float(a.get("rate_per_s") or 0.0) for _, _, a in graph.edges(data=True)]
    max_rate = max(rates, default=0.0)
    for source, target, attrs in sorted(graph.edges(data=True), key=lambda e: (e[0], e[1])):
        kind = attrs.get("kind")
        net.add_edge(safe_text(source), safe_text(target), title=safe_text(edge_title(attrs)),
                     label=safe_text(edge_label(attrs)),
                     width=1.5 if kind == "causes" else _width(float(attrs.get("rate_per_s") or 0.0),
                                                               max_rate),
                     color=EDGE_COLORS.get(kind, "#999999"),
                     dashes=kind in ("causes", "dead_letters"))
    net.options = _options()
    page = net.generate_html(notebook=False)
    page = _CDN_TAGS.sub("", _EMPTY_HEADING.sub("", page))
    return page.replace("</body>", _NO_ZOOM_IN + "</body>", 1)
