"""graph/: shape of the reconstructed flow graph, the CLI's JSON/DOT exports, and safe HTML."""
from __future__ import annotations

import json
import re
import subprocess

import pandas as pd
import pytest

from eventscope import schemas
from eventscope.graph.build import build_graph
from eventscope.graph.export import dot_quote, to_dot, to_json
from eventscope.graph.render import drawn, levels, plain_text, to_html
from programs import require_program

T0 = pd.Timestamp("2026-01-01T12:00:00Z")
SCRIPT = "<script>alert(1)</script>"
HREF = "href=javascript:alert(2)"
IMG = '<img src=x onerror="alert(3)">'


def _event(topic, service, cid, ms, kind="Evt", dead=False, original=None, broker="kafka"):
    at = T0 + pd.Timedelta(milliseconds=ms)
    return {"observed_at": at, "source": "test", "broker": broker, "topic": topic,
            "partition": 0, "offset": str(ms), "at": at, "event_type": kind,
            "event_id": f"{cid}-{ms}", "service": service, "correlation_id": cid,
            "dead_letter": dead, "original_topic": original}


def _events(order_service="order-service", payment_service="payment-service"):
    rows = []
    for i in range(10):
        cid, base = f"c{i}", i * 1000
        rows.append(_event("orders", order_service, cid, base, "OrderPlaced"))
        rows.append(_event("payments", payment_service, cid, base + 100 + i, "PaymentAuthorized"))
        if i == 9:
            rows.append(_event("payments.DLT", "shipping-service", cid, base + 300,
                               "PaymentAuthorized", dead=True, original="payments"))
    rows.append(_event("orders", order_service, "", 9500, "OrderPlaced"))  # no correlation ID
    return schemas.conform("events", rows)


def _lag(group="shipping-service", topic="payments"):
    rows = [{"sampled_at": T0 + pd.Timedelta(seconds=s), "source": "test", "broker": "kafka",
             "group": group, "topic": topic, "partition": p, "committed": 10 + s, "end": 20 + s,
             "lag": 10, "lag_seconds": 1.5} for s in (0, 10) for p in (0, 1)]
    return schemas.conform("lag", rows)


def test_graph_shape():
    graph = build_graph(_events(), pd.concat([_lag(), _lag("payment-service", "orders")], ignore_index=True))
    kinds = {n: a["kind"] for n, a in graph.nodes(data=True)}
    assert kinds == {"service:order-service": "service", "service:payment-service": "service",
                     "topic:kafka:orders": "topic", "topic:kafka:payments": "topic",
                     "dlq:kafka:payments.DLT": "dlq", "group:kafka:shipping-service": "group",
                     "group:kafka:payment-service": "group"}
    edges = {(s, t): a for s, t, a in graph.edges(data=True)}
    assert edges["service:order-service", "topic:kafka:orders"]["events"] == 11
    assert edges["service:payment-service", "topic:kafka:payments"]["kind"] == "produces"
    consumes = edges["topic:kafka:payments", "group:kafka:shipping-service"]
    assert (consumes["kind"], consumes["events"], consumes["rate_per_s"]) == ("consumes", 20, 2.0)
    dead = edges["topic:kafka:payments", "dlq:kafka:payments.DLT"]
    assert (dead["kind"], dead["events"]) == ("dead_letters", 1)
    causes = edges["topic:kafka:orders", "topic:kafka:payments"]
    assert causes["kind"] == "causes" and causes["service"] == "payment-service"
    assert causes["events"] == 10
    assert 100 <= causes["p50_latency_ms"] <= causes["p95_latency_ms"] <= 109
    assert ("topic:kafka:payments", "topic:kafka:payments.DLT") not in edges  # DLQ is not a cause
    assert graph.nodes["group:kafka:shipping-service"]["lag"] == 20
    # no consumer group reads `orders` on a broker whose groups are known: it causes nothing
    unread = build_graph(_events(), _lag())
    assert not [e for e in unread.edges(data="kind") if e[2] == "causes"]


def test_empty_frames_give_an_empty_graph():
    assert build_graph(schemas.empty("events"), schemas.empty("lag")).number_of_nodes() == 0
    assert build_graph(None, None, None).number_of_edges() == 0


def test_dlq_frame_adds_depth_and_origin():
    dlq = schemas.conform("dlq", [{"sampled_at": T0, "source": "test", "broker": "redis",
                                   "dlq": "orders:dlq", "source_topic": "orders", "depth": 4}])
    graph = build_graph(None, None, dlq)
    assert graph.nodes["dlq:redis:orders:dlq"]["depth"] == 4
    assert graph.edges["topic:redis:orders", "dlq:redis:orders:dlq"]["kind"] == "dead_letters"


def test_to_json_matches_the_cli_contract():
    document = json.loads(json.dumps(to_json(build_graph(_events(), _lag()))))
    assert set(document) == {"nodes", "edges"}
    for node in document["nodes"]:
        assert {"id", "kind", "label", "broker"} <= set(node)
        assert node["kind"] in {"service", "topic", "group", "dlq"}
        prefix = "service:" if node["kind"] == "service" else f"{node['kind']}:{node['broker']}:"
        assert node["id"] == prefix + node["label"]
    for edge in document["edges"]:
        assert {"source", "target", "kind", "events", "rate_per_s"} <= set(edge)
        assert edge["kind"] in {"produces", "consumes", "dead_letters", "causes"}
        assert isinstance(edge["events"], int) and isinstance(edge["rate_per_s"], float)
        if edge["kind"] == "causes":
            assert {"service", "p50_latency_ms", "p95_latency_ms"} <= set(edge)


def test_dot_quotes_and_escapes_names():
    assert dot_quote('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    dot = to_dot(build_graph(_events(order_service='ev"il\\svc'), _lag(group=SCRIPT)))
    assert dot.startswith("digraph eventscope {") and dot.rstrip().endswith("}")
    assert '"service:ev\\"il\\\\svc"' in dot
    for line in dot.splitlines()[3:-1]:  # every statement: quoted ids only, balanced quotes
        assert re.fullmatch(r'\s*"(?:[^"\\]|\\.)*"( -> "(?:[^"\\]|\\.)*")? \[.*\];', line), line


def test_dot_parses_with_graphviz():
    dot = to_dot(build_graph(_events(order_service=SCRIPT), _lag(group='x";y')))
    rendered = subprocess.run([require_program("dot"), "-Tsvg"], input=dot, text=True, capture_output=True)
    assert rendered.returncode == 0, rendered.stderr
    assert "<svg" in rendered.stdout


def test_hostile_names_never_reach_the_html_unescaped():
    graph = build_graph(_events(order_service=SCRIPT, payment_service=IMG),
                        _lag(group=HREF, topic="payments"))
    page = to_html(graph)
    for hostile in (SCRIPT, IMG, "<script>alert", "<img", "onerror=\"", HREF, "href=javascript"):
        assert hostile not in page
    assert "popup.innerHTML" not in page  # pyvis' innerHTML tooltip mode stayed off
    assert "<h1>" not in page  # no heading at all


def test_html_is_self_contained():
    page = to_html(build_graph(_events(), _lag()))
    assert "vis.Network" in page and "new vis.DataSet" in page
    assert "cdn.jsdelivr.net" not in page and "cdnjs.cloudflare.com/ajax/libs/vis" not in page


def test_plain_text():
    assert plain_text(SCRIPT) == SCRIPT  # shown as text by vis, so not HTML-escaped
    assert not re.search("(?i)href", plain_text("HREF Href href"))
    assert plain_text("href").replace("\u200b", "") == "href"  # still reads the same
    assert plain_text("a\x00b\x1bc\nd") == "abc\nd"
    assert plain_text(None) == ""


def test_levels_follow_the_flow_despite_a_cycle():
    rows = []
    for i in range(10):  # orders → payments → inventory, plus a rare inventory → payments
        cid, base = f"c{i}", i * 1000
        rows += [_event("orders", "order-service", cid, base), _event("payments", "pay", cid, base + 10),
                 _event("inventory", "inv", cid, base + 20)]
        if i < 2:
            rows.append(_event("payments", "pay", cid, base + 30))
    graph = build_graph(schemas.conform("events", rows), None)
    assert graph.has_edge("topic:kafka:inventory", "topic:kafka:payments")  # the cycle is real
    level = levels(graph)
    assert level["topic:kafka:orders"] < level["service:pay"] < level["topic:kafka:payments"]
    assert level["topic:kafka:payments"] < level["topic:kafka:inventory"] <= 5


def test_an_idle_empty_dlq_is_not_drawn():
    dlq = schemas.conform("dlq", [{"sampled_at": T0, "source": "test", "broker": "kafka",
                                   "dlq": "quiet.DLT", "depth": 0}])
    graph = build_graph(_events(), _lag(), dlq)
    assert "dlq:kafka:quiet.DLT" in graph and "dlq:kafka:quiet.DLT" not in drawn(graph)
    assert "quiet.DLT" not in to_html(graph) and "payments.DLT" in to_html(graph)


def test_a_tall_column_wraps_into_columns_side_by_side():
    """120 groups reading one topic: 8 columns of 15 right of the topic, not one column
    11,000 px tall; whatever is right of them moves over, and the canvas holds them all."""
    import networkx as nx  # the graph's own library, only for building one by hand here
    from eventscope.graph.render import LEVEL_GAP, MAX_ROWS, ROW_GAP, canvas_size, positions
    graph = nx.DiGraph()
    graph.add_node("topic:k:orders", kind="topic", label="orders")
    graph.add_node("topic:k:audit", kind="topic", label="audit")
    graph.add_node("service:s", kind="service", label="s")
    graph.add_edge("service:s", "topic:k:orders", kind="produces")
    graph.add_edge("topic:k:orders", "topic:k:audit", kind="causes", events=5)
    for i in range(120):
        graph.add_node(f"group:k:g{i:03d}", kind="group", label=f"g{i:03d}")
        graph.add_edge("topic:k:orders", f"group:k:g{i:03d}", kind="consumes")
    place = positions(graph)
    groups = [place[f"group:k:g{i:03d}"] for i in range(120)]
    xs = sorted({x for x, _ in groups})
    assert len(xs) == 120 // MAX_ROWS == 8
    assert [x - xs[0] for x in xs] == [i * LEVEL_GAP for i in range(8)]
    assert all(sum(1 for x, _ in groups if x == col) == MAX_ROWS for col in xs)
    ys = sorted({y for _, y in groups})
    assert len(ys) == MAX_ROWS and ys[-1] - ys[0] == (MAX_ROWS - 1) * ROW_GAP
    assert len(set(groups)) == 120  # no two nodes on one spot
    topic_x = place["topic:k:orders"][0]
    assert place["service:s"][0] < topic_x < xs[0] == topic_x + LEVEL_GAP
    assert place["topic:k:audit"][0] == xs[-1] + LEVEL_GAP  # the next topic column moved over
    width, height = canvas_size(graph)
    assert width == (place["topic:k:audit"][0] - place["service:s"][0]) + 260
    assert height == min(900, 80 + ROW_GAP * MAX_ROWS)  # the frame caps it; the drawing fits
    # 16 nodes make two columns of 8, not one of 15 and one of 1
    small = nx.DiGraph()
    small.add_node("topic:k:t", kind="topic", label="t")
    for i in range(16):
        small.add_edge("topic:k:t", f"group:k:h{i}", kind="consumes")
        small.nodes[f"group:k:h{i}"].update(kind="group", label=f"h{i}")
    cols = [positions(small)[f"group:k:h{i}"][0] for i in range(16)]
    assert sorted(cols.count(x) for x in set(cols)) == [8, 8]
