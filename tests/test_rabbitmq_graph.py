"""The flow graph with RabbitMQ: exchanges, bindings and dead-letter routes from the
``bindings`` frame, queues as the ``topic``/``dlq`` nodes their lag and DLQ rows make."""
from __future__ import annotations

import json
import subprocess

import pandas as pd

from eventscope import schemas
from eventscope.graph.build import build_graph
from eventscope.graph.export import to_dot, to_json
from eventscope.graph.render import edge_title, levels, to_html
from programs import require_program

T0 = pd.Timestamp("2026-01-01T12:00:00Z")
B = "rabbit-eu"


def _binding(exchange, queue, key="", route="binding", kind="topic", vhost="/", at=T0, broker=B):
    return {"sampled_at": at, "source": broker, "broker": broker, "kind": "rabbitmq", "vhost": vhost,
            "exchange": exchange, "exchange_type": kind, "queue": queue, "routing_key": key, "route": route}


def _frames(at=T0):
    """payments (quorum) reads orders, dead-letters through ``dlx`` (direct, key payments) into
    payments.dlq (classic, 3 held) and payments.audit (stream); shipping reads orders too."""
    bindings = schemas.conform("bindings", [
        _binding("orders", "payments", "order.placed", at=at),
        _binding("orders", "payments", "order.paid", at=at),
        _binding("orders", "shipping", "order.#", at=at),
        _binding("dlx", "payments.dlq", "payments", kind="direct", at=at),
        _binding("dlx", "payments.audit", "payments", kind="direct", at=at),
        _binding("dlx", "payments", "payments", route="dlx", kind="direct", at=at)])
    # each queue and its verdict now, as the store's lag_groups give them
    lag = pd.DataFrame([{"broker": B, "group": q, "topic": q, "lag": ready, "lag_seconds": 0.0 if not ready else 30.0,
                         "status": status} for q, ready, status in (("payments", 0, "OK"), ("shipping", 12, "STOP"))])
    dlq = schemas.conform("dlq", [
        {"sampled_at": at, "source": B, "broker": B, "kind": "rabbitmq", "dlq": name, "source_topic": "payments",
         "depth": depth} for name, depth in (("payments.dlq", 3), ("payments.audit", 3))])
    return bindings, lag, dlq


def test_exchanges_bindings_and_dead_letter_routes():
    bindings, lag, dlq = _frames()
    graph = build_graph(None, None, dlq, groups=lag, bindings=bindings)
    kinds = {n: a["kind"] for n, a in graph.nodes(data=True)}
    assert kinds == {
        f"exchange:{B}:orders": "exchange", f"exchange:{B}:dlx": "exchange",
        f"topic:{B}:payments": "topic", f"topic:{B}:shipping": "topic",
        f"group:{B}:payments": "group", f"group:{B}:shipping": "group",
        f"dlq:{B}:payments.dlq": "dlq", f"dlq:{B}:payments.audit": "dlq"}
    edges = {(a, b): d["kind"] for a, b, d in graph.edges(data=True)}
    assert edges == {
        (f"exchange:{B}:orders", f"topic:{B}:payments"): "binds",
        (f"exchange:{B}:orders", f"topic:{B}:shipping"): "binds",
        (f"exchange:{B}:dlx", f"dlq:{B}:payments.dlq"): "binds",
        (f"exchange:{B}:dlx", f"dlq:{B}:payments.audit"): "binds",
        (f"topic:{B}:payments", f"exchange:{B}:dlx"): "dead_letters_to",
        (f"topic:{B}:payments", f"group:{B}:payments"): "consumes",
        (f"topic:{B}:shipping", f"group:{B}:shipping"): "consumes"}
    # the DLQ is reached through its dead-letter exchange: no second, direct dead_letters edge
    assert graph.edges[f"exchange:{B}:orders", f"topic:{B}:payments"]["routing_key"] == "order.placed, order.paid"
    assert graph.edges[f"exchange:{B}:dlx", f"dlq:{B}:payments.dlq"]["exchange_type"] == "direct"
    assert graph.nodes[f"dlq:{B}:payments.dlq"]["depth"] == 3
    assert graph.nodes[f"dlq:{B}:payments.dlq"]["health"] == "warn"
    assert graph.nodes[f"group:{B}:shipping"]["health"] == "critical"  # STOP: a backlog, no consumer
    assert graph.nodes[f"exchange:{B}:orders"]["broker"] == B


def test_a_dlq_nobody_consumes_is_not_drawn_as_a_group():
    bindings, lag, dlq = _frames()
    own = pd.DataFrame([{"broker": B, "kind": "rabbitmq", "group": "payments.dlq", "topic": "payments.dlq",
                         "lag": 3, "lag_seconds": 60.0, "status": "OK", "members": members}
                        for members in (0,)])
    graph = build_graph(None, None, dlq, groups=pd.concat([lag, own], ignore_index=True), bindings=bindings)
    assert f"group:{B}:payments.dlq" not in graph
    read = own.assign(members=2)  # a reprocessor reads it: then it is a group like any other
    graph = build_graph(None, None, dlq, groups=pd.concat([lag, read], ignore_index=True), bindings=bindings)
    assert graph.edges[f"dlq:{B}:payments.dlq", f"group:{B}:payments.dlq"]["kind"] == "consumes"


def test_without_a_route_a_held_dlq_still_names_its_source():
    _, lag, dlq = _frames()
    graph = build_graph(None, None, dlq, groups=lag)
    assert graph.edges[f"topic:{B}:payments", f"dlq:{B}:payments.dlq"]["kind"] == "dead_letters"


def test_only_the_newest_routing_of_each_cluster_is_drawn():
    old, _, _ = _frames(T0)
    new = schemas.conform("bindings", [_binding("orders", "shipping", "order.#", at=T0 + pd.Timedelta(minutes=1))])
    other = schemas.conform("bindings", [_binding("events", "audit", "#", broker="rabbit-us")])
    graph = build_graph(None, None, None, bindings=pd.concat([old, new, other], ignore_index=True))
    assert {(a, b) for a, b in graph.edges} == {(f"exchange:{B}:orders", f"topic:{B}:shipping"),
                                                 ("exchange:rabbit-us:events", "topic:rabbit-us:audit")}


def test_vhosts_and_the_default_exchange():
    bindings = schemas.conform("bindings", [
        _binding("", "orders", "orders.dlq", route="dlx", kind="direct", vhost="shop"),
        _binding("orders", "orders", "#", vhost="shop")])
    graph = build_graph(None, None, None, bindings=bindings)
    assert set(graph.edges) == {(f"topic:{B}:shop/orders", f"exchange:{B}:shop/(default)"),
                                (f"exchange:{B}:shop/orders", f"topic:{B}:shop/orders")}


def test_kafka_and_redis_ids_are_unchanged_next_to_rabbitmq():
    bindings, lag, dlq = _frames()
    kafka = pd.DataFrame([{"broker": "kafka", "group": "billing", "topic": "orders", "lag": 4, "lag_seconds": 2.0,
                           "status": "OK"}])
    graph = build_graph(None, None, dlq, groups=pd.concat([lag, kafka], ignore_index=True), bindings=bindings)
    assert graph.edges["topic:kafka:orders", "group:kafka:billing"]["kind"] == "consumes"
    assert {a["kind"] for n, a in graph.nodes(data=True) if a["broker"] == "kafka"} == {"topic", "group"}


def test_json_dot_and_html_carry_the_routes():
    bindings, lag, dlq = _frames()
    graph = build_graph(None, None, dlq, groups=lag, bindings=bindings)
    document = json.loads(json.dumps(to_json(graph)))
    edge = next(e for e in document["edges"] if e["kind"] == "binds" and e["target"] == f"topic:{B}:shipping")
    assert (edge["routing_key"], edge["exchange_type"], edge["events"], edge["rate_per_s"]) == ("order.#", "topic", 0, 0.0)
    route = next(e for e in document["edges"] if e["kind"] == "dead_letters_to")
    assert (route["source"], route["target"], route["routing_key"]) == (f"topic:{B}:payments", f"exchange:{B}:dlx", "payments")
    assert "exchange_type" not in route and "routing_key" not in next(e for e in document["edges"] if e["kind"] == "consumes")
    assert {n["kind"] for n in document["nodes"]} == {"exchange", "topic", "group", "dlq"}
    dot = to_dot(graph)
    assert f'"exchange:{B}:dlx" [label="dlx", shape=diamond]' in dot
    require_program("dot")
    assert subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True, check=True).stdout
    html = to_html(graph)
    assert "exchange (RabbitMQ)" in html
    assert edge_title(graph.edges[f"exchange:{B}:orders", f"topic:{B}:shipping"]) == (
        "binds\nexchange type: topic\nrouting key: order.#")


def test_levels_put_an_exchange_before_its_queues_and_a_dead_letter_exchange_after():
    bindings, lag, dlq = _frames()
    level = levels(build_graph(None, None, dlq, groups=lag, bindings=bindings))
    assert level[f"exchange:{B}:orders"] < level[f"topic:{B}:payments"] < level[f"exchange:{B}:dlx"]
    assert level[f"exchange:{B}:dlx"] < level[f"dlq:{B}:payments.dlq"]
    assert level[f"topic:{B}:payments"] < level[f"group:{B}:payments"]
