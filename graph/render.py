"""Render the flow graph as one self-contained HTML page with pyvis (vis-network).

Safety: this HTML goes into ``st.iframe``, which runs scripts with same-origin access
to the dashboard, and node names come from watched traffic (a service may be called
``<script>``). Names therefore only travel as data: pyvis serialises labels and titles
with Jinja's ``tojson`` (``<``, ``>``, ``&`` and quotes become ``\\u003c``-style escapes
inside the script), vis-network draws labels on a canvas and sets a string tooltip with
``innerText``, so ``<script>`` shows as those nine characters and never runs. The two
ways pyvis turns text into markup stay shut: the substring ``href`` never reaches a
title (pyvis would switch to a popup that sets ``innerHTML``), and
``Network(heading=...)`` is never used; the legend is static markup with no data in it.
vis is inlined (``cdn_resources="in_line"``: the only mode that works offline) and the
template's Bootstrap CDN tags are removed: no third-party requests leave the dashboard.

Layout is computed here, not in the browser: columns follow the flow (:func:`levels`),
rows are ordered to reduce crossings, and physics stays off, so even a few hundred nodes
appear at once, in the same place on every refresh.
"""
from __future__ import annotations

import math
import re

import networkx as nx
from pyvis.network import Network

from eventscope.palette import GREY, HEALTH_FILL

#: node outline by kind (shape says it too)
KIND_BORDER = {"service": "#4C78A8", "topic": "#54A24B", "group": "#F58518", "dlq": "#E45756",
               "exchange": "#B279A2"}
SHAPES = {"service": "box", "topic": "database", "group": "ellipse", "dlq": "database", "exchange": "diamond"}
EDGE_COLORS = {"produces": "#4C78A8", "consumes": "#F58518", "dead_letters": "#E45756",
               "causes": GREY, "binds": "#B279A2", "dead_letters_to": "#E45756"}
DASHED = ("causes", "dead_letters", "dead_letters_to")
LEVEL_GAP, ROW_GAP = 190, 96  # px between columns, and between rows of one column
MAX_ROWS = 15  # nodes one column holds before it wraps into columns side by side
FIT_WIDTH = 950  # px a wide dashboard page gives the frame (1440 px screen, sidebar open)
MIN_SCALE = 0.7  # a wider drawing shrinks to fit down to this zoom, then scrolls sideways
BIG = 60  # nodes: past this the drawing fits the frame and the mouse wheel zooms
LEGEND_HEIGHT = 48  # px the legend (two lines on a narrow frame) takes above the drawing
# fit() would blow a small graph up past 100 %; cap it (static script, no data in it)
_NO_ZOOM_IN = ('<script>network.once("afterDrawing", function () {'
               " if (network.getScale() > 1) { network.moveTo({scale: 1}); } });</script>")
_EMPTY_HEADING = re.compile(r"<center>\s*<h1>\s*</h1>\s*</center>")
_CDN_TAGS = re.compile(r"<link[^>]*cdn\.jsdelivr\.net[^>]*/>"
                       r"|<script[^>]*cdn\.jsdelivr\.net[^>]*>\s*</script>", re.S)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _swatch(fill: str, border: str, text: str, radius: str = "3px") -> str:
    return (f'<span style="display:inline-block;width:14px;height:11px;background:{fill};'
            f'border:2px solid {border};border-radius:{radius};vertical-align:middle"></span> {text}')


def _line(color: str, text: str, dashed: bool = False) -> str:
    style = "dashed" if dashed else "solid"
    return (f'<span style="display:inline-block;width:22px;border-top:3px {style} {color};'
            f'vertical-align:middle"></span> {text}')


#: static markup, no data in it: what colours, shapes and lines mean
LEGEND = (
    '<div id="legend" style="font:12px sans-serif;color:#333;padding:6px 4px;'
    'display:flex;flex-wrap:wrap;gap:4px 16px;align-items:center">'
    + "".join(f"<span>{item}</span>" for item in (
        _swatch(HEALTH_FILL["ok"], "#999", "healthy"), _swatch(HEALTH_FILL["warn"], "#999", "warning"),
        _swatch(HEALTH_FILL["critical"], "#999", "failing"),
        _swatch(HEALTH_FILL["unknown"], "#999", "unknown"),
        _swatch("#fff", KIND_BORDER["service"], "service"),
        _swatch("#fff", KIND_BORDER["topic"], "topic / stream", "6px"),
        _swatch("#fff", KIND_BORDER["group"], "consumer group", "50%"),
        _swatch("#fff", KIND_BORDER["dlq"], "dead-letter queue", "6px"),
        _swatch("#fff", KIND_BORDER["exchange"], "exchange (RabbitMQ)", "0"),
        _line(EDGE_COLORS["produces"], "produces"), _line(EDGE_COLORS["consumes"], "consumes"),
        _line(EDGE_COLORS["dead_letters"], "dead letters", True), _line(EDGE_COLORS["binds"], "binds"),
        _line(EDGE_COLORS["causes"], "causes (topic → topic)", True),
        "line width = events per second"))
    + "</div>")


def plain_text(value) -> str:
    """``value`` as text for a label or tooltip: control characters dropped and every
    ``href`` broken by a zero-width space (it would switch pyvis to innerHTML tooltips).
    Not HTML-escaped: vis shows it as text, so ``<b>`` reads ``<b>``, not ``&lt;b&gt;``."""
    text = _CONTROL.sub("", "" if value is None else str(value))
    return re.sub(r"(?i)h(?=ref)", "h\u200b", text)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def node_title(attrs: dict) -> str:
    """Plain-text tooltip of one node (made safe by :func:`plain_text` at the call)."""
    lines = [f"{attrs.get('kind')}: {attrs.get('label')}"]
    if attrs.get("members", 1) > 1:
        lines.append(f"{attrs['members']} merged nodes")
    if attrs.get("broker"):
        lines.append(f"cluster: {attrs['broker']}")
    if attrs.get("queue_type"):
        lines.append(f"RabbitMQ {attrs['queue_type']} queue")
    if attrs.get("health"):
        lines.append(f"health: {attrs['health']}")
    if attrs.get("status"):
        lines.append(f"status: {attrs['status']}")
    if attrs.get("events"):
        lines.append(f"events in window: {attrs['events']}")
    if attrs.get("undecodable"):
        lines.append(f"undecodable: {attrs['undecodable']}")
    if attrs.get("lag") is not None:
        lines.append(f"lag: {attrs['lag']} messages")
    if attrs.get("lag_seconds") is not None:
        lines.append(f"lag: {attrs['lag_seconds']:.1f} s behind")
    if attrs.get("depth") is not None:
        lines.append(f"depth: {attrs['depth']} messages")
    if attrs.get("growth"):
        lines.append(f"growth in window: {attrs['growth']:+d}")
    return "\n".join(lines)


def edge_title(attrs: dict) -> str:
    """Plain-text tooltip of one edge (escaped by the caller)."""
    if attrs.get("kind") in ("binds", "dead_letters_to"):
        lines = [str(attrs.get("kind"))]
        if attrs.get("exchange_type"):
            lines.append(f"exchange type: {attrs['exchange_type']}")
        if attrs.get("routing_key"):
            lines.append(f"routing key: {attrs['routing_key']}")
        return "\n".join(lines)
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
        elif kind == "exchange":  # a dead-letter exchange right of the queues it serves, else left of its queues
            routed = [level[t] for t, _, k in graph.in_edges(nid, data="kind") if k == "dead_letters_to" and t in level]
            bound = [level[t] for t in graph.successors(nid) if t in level]
            level[nid] = max(routed) + 1 if routed else (min(bound) - 1 if bound else 0)
    for nid, attrs in graph.nodes(data=True):
        kind = attrs.get("kind")
        if kind in ("group", "dlq"):
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


def _wrapped(count: int) -> tuple[int, int]:
    """(columns, rows) for a column of ``count`` nodes: one column up to :data:`MAX_ROWS`,
    past that as few side-by-side columns as keep each at most that tall, evenly filled
    (120 groups of one topic are 8 columns of 15, not one column 11,000 px tall)."""
    columns = max(1, math.ceil(count / MAX_ROWS))
    return columns, max(1, math.ceil(count / columns))


def positions(graph: nx.DiGraph) -> dict[str, tuple[int, int]]:
    """Pixel (x, y) per node: columns from :func:`levels`, rows ordered by the mean row of
    each node's neighbours (a few barycenter sweeps), each column centred on y = 0; a column
    of more than :data:`MAX_ROWS` nodes is wrapped into several (see :func:`_wrapped`), and
    the columns right of it move over to make room."""
    level = levels(graph)
    columns: dict[int, list[str]] = {}
    for nid in sorted(graph.nodes):
        columns.setdefault(level.get(nid, 1), []).append(nid)
    order = sorted(columns)
    row = {n: i for col in columns.values() for i, n in enumerate(col)}
    for sweep in range(4):
        for col in (order if sweep % 2 == 0 else reversed(order)):
            def center(n, col=col):
                near = [row[m] for m in nx.all_neighbors(graph, n) if level.get(m, 1) != col]
                return sum(near) / len(near) if near else row[n]
            columns[col].sort(key=lambda n: (center(n), n))
            row.update({n: i for i, n in enumerate(columns[col])})
    out, shift = {}, 0
    for col in order:
        nodes = columns[col]
        wide, rows = _wrapped(len(nodes))
        top = -(min(rows, len(nodes)) - 1) * ROW_GAP / 2
        for i, nid in enumerate(nodes):
            out[nid] = (int((col + shift + i // rows) * LEVEL_GAP), int(top + (i % rows) * ROW_GAP))
        shift += wide - 1
    return out


def _options(big: bool) -> dict:
    return {
        "physics": {"enabled": False},
        "interaction": {"hover": True, "tooltipDelay": 120, "zoomView": big, "dragView": True,
                        "hideEdgesOnDrag": big},
        "nodes": {"font": {"size": 15, "face": "sans-serif", "color": "#222222"}, "borderWidth": 2},
        "edges": {"font": {"size": 11, "color": "#555555", "strokeWidth": 3, "align": "top"},
                  "arrows": {"to": {"enabled": True, "scaleFactor": 0.6}},
                  "smooth": {"enabled": not big, "type": "cubicBezier", "forceDirection": "horizontal",
                             "roundness": 0.4}},
    }


def canvas_size(graph: nx.DiGraph) -> tuple[int, int]:
    """Pixels (width, height) the drawing needs at 100 % zoom (height kept within 300..900),
    wrapped columns included (:func:`positions`); the frame around it needs
    :data:`LEGEND_HEIGHT` more."""
    columns = list(levels(drawn(graph)).values()) or [0]
    counts = {c: columns.count(c) for c in set(columns)}
    shapes = [_wrapped(n) for n in counts.values()]
    return ((max(columns) - min(columns) + sum(wide - 1 for wide, _ in shapes)) * LEVEL_GAP + 260,
            max(300, min(900, 80 + ROW_GAP * max(rows for _, rows in shapes))))


def to_html(graph: nx.DiGraph) -> str:
    """The graph as a standalone HTML page: static legend, then the drawing (vis inlined).

    A small graph is drawn at most at 100 % zoom and shrinks to fit the frame down to
    ``MIN_SCALE``; wider still, it gets a canvas of its own width (the frame scrolls
    sideways) rather than shrinking to unreadable labels, and the mouse wheel scrolls the
    page. Past ``BIG`` nodes the drawing fits the frame and the wheel zooms instead.
    """
    graph = drawn(graph)
    big = graph.number_of_nodes() > BIG
    width, height = canvas_size(graph)
    show_broker = len({b for _, b in graph.nodes(data="broker") if b}) > 1
    fits = big or width * MIN_SCALE <= FIT_WIDTH
    net = Network(height=f"{height}px", width="100%" if fits else f"{width}px",
                  directed=True, cdn_resources="in_line", bgcolor="#ffffff", font_color="#222222")
    place = positions(graph)
    for nid in sorted(graph.nodes):
        attrs = graph.nodes[nid]
        kind = attrs.get("kind", "topic")
        fill = HEALTH_FILL.get(attrs.get("health"), HEALTH_FILL["unknown"])
        border = KIND_BORDER.get(kind, "#999999")
        x, y = place[nid]
        net.add_node(plain_text(nid), label=plain_text(node_label(attrs, show_broker)),
                     title=plain_text(node_title(attrs)), shape=SHAPES.get(kind, "dot"), x=x, y=y,
                     physics=False, borderWidth=3 if attrs.get("health") == "critical" else 2,
                     color={"background": fill, "border": border,
                            "highlight": {"background": fill, "border": "#222222"},
                            "hover": {"background": fill, "border": "#222222"}},
                     shapeProperties={"borderDashes": [4, 3]} if kind == "dlq" else {},
                     # a cylinder's label starts under its top rim
                     **({"margin": {"top": 16, "bottom": 8, "left": 10, "right": 10}}
                        if SHAPES.get(kind) == "database" else {}))
    rates = [float(a.get("rate_per_s") or 0.0) for _, _, a in graph.edges(data=True)]
    max_rate = max(rates, default=0.0)
    for source, target, attrs in sorted(graph.edges(data=True), key=lambda e: (e[0], e[1])):
        kind = attrs.get("kind")
        net.add_edge(plain_text(source), plain_text(target), title=plain_text(edge_title(attrs)),
                     label="" if big else plain_text(edge_label(attrs)),
                     width=1.5 if kind == "causes" else _width(float(attrs.get("rate_per_s") or 0.0),
                                                               max_rate),
                     color=EDGE_COLORS.get(kind, "#999999"),
                     dashes=kind in DASHED,
                     # causes skip a column: arc them so they do not run through the group between
                     **({"smooth": {"enabled": True, "type": "curvedCW", "roundness": 0.25}}
                        if kind == "causes" and not big else {}))
    net.options = _options(big)
    page = net.generate_html(notebook=False)
    page = _CDN_TAGS.sub("", _EMPTY_HEADING.sub("", page))
    page = page.replace('<div class="card" style="width: 100%">', LEGEND + '<div class="card" style="width: 100%">', 1)
    return page.replace("</body>", ("" if big else _NO_ZOOM_IN) + "</body>", 1)
