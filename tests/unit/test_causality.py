"""``causes`` edges on a fan-out system: several services per topic, a join, and correlation
IDs shared by all the requests of one customer.

The generator below is independent of the rule it checks: it knows which event caused which
because it made them, and scores the edges and the per-event causes the graph and the trace
page draw from the events alone."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from eventscope import schemas
from eventscope.analysis import causality
from eventscope.graph.build import build_graph

T0 = pd.Timestamp("2026-12-01T09:00:00Z")
# (topic, event type read) -> [(service, event type emitted, output topic, latency range in ms)]
FAN_OUT = {
    ("orders", "OrderPlaced"): [("payment-service", "PaymentCharged", "payments", (5, 60)),
                                ("inventory-service", "stock", "inventory", (5, 60)),
                                ("analytics-service", None, None, (0, 0))],
    ("payments", "PaymentCharged"): [("fraud-service", "FraudChecked", "fraud-results", (2, 40))],
    ("inventory", "StockFailed"): [("payment-service", "PaymentRefunded", "payments", (5, 40))],
    ("payments", "PaymentRefunded"): [("email-service", "EmailQueued", "notifications", (5, 30))],
    ("shipments", "ShipmentCreated"): [("email-service", "EmailQueued", "notifications", (5, 30))],
}
STOCK_FAILS = 0.15
# shipping-service waits for both the charge and the reservation of an order
JOIN = ("shipping-service", "ShipmentCreated", "shipments", ("PaymentCharged", "StockReserved"), (10, 80))
TRUE_EDGES = {("orders", "payments"), ("orders", "inventory"), ("payments", "fraud-results"),
              ("payments", "shipments"), ("inventory", "shipments"), ("shipments", "notifications"),
              ("inventory", "payments"), ("payments", "notifications")}
GROUPS = {"orders": ["payment-service", "inventory-service", "analytics-service"],
          "payments": ["fraud-service", "shipping-service", "email-service"],
          "inventory": ["shipping-service", "payment-compensation"],
          "shipments": ["email-service"]}


def fan_out_events(customers: int = 400, orders_each: int = 6, seed: int = 1) -> tuple[pd.DataFrame, dict]:
    """Events of ``customers`` × ``orders_each`` orders (correlation ID = the customer; a
    customer's orders may overlap), and for each event ID the ID of the event that caused it."""
    rng = np.random.default_rng(seed)
    rows, truth = [], {}

    def emit(topic, service, kind, cid, at, cause=None):
        event_id = f"e{len(rows)}"
        rows.append({"observed_at": at, "source": "test", "broker": "kafka", "topic": topic,
                     "partition": 0, "offset": str(len(rows)), "at": at, "event_type": kind,
                     "event_id": event_id, "service": service, "correlation_id": cid,
                     "dead_letter": False, "original_topic": None})
        truth[event_id] = cause
        return event_id, at

    def react(topic, kind, event_id, at, cid, done):
        for service, out_kind, out, (low, high) in FAN_OUT.get((topic, kind), []):
            if out_kind is None:
                continue
            if out_kind == "stock":
                out_kind = "StockFailed" if rng.random() < STOCK_FAILS else "StockReserved"
            later = at + pd.Timedelta(milliseconds=float(rng.uniform(low, high)))
            child = emit(out, service, out_kind, cid, later, event_id)
            done[out_kind] = child
            react(out, out_kind, *child, cid, done)

    for c in range(customers):
        cid = f"customer-{c}"
        start = T0 + pd.Timedelta(seconds=float(rng.uniform(0, 600)))
        for o in range(orders_each):
            at = start + pd.Timedelta(seconds=o * float(rng.uniform(5, 60)))  # orders may overlap
            done = {}
            order = emit("orders", "order-service", "OrderPlaced", cid, at)
            react("orders", "OrderPlaced", *order, cid, done)
            service, kind, out, inputs, (low, high) = JOIN
            if not all(i in done for i in inputs):
                continue  # out of stock: refunded, not shipped
            last = max((done[i] for i in inputs), key=lambda e: e[1])  # shipped once both are in
            ship = emit(out, service, kind, cid, last[1] + pd.Timedelta(milliseconds=float(rng.uniform(low, high))),
                        last[0])
            react(out, kind, *ship, cid, done)
    return schemas.conform("events", rows), truth


def groups_frame() -> pd.DataFrame:
    rows = [{"sampled_at": T0, "source": "test", "broker": "kafka", "group": g, "topic": t, "partitions": 1,
             "lag": 0, "max_lag": 0, "lag_seconds": 0.0, "status": "OK", "members": 1, "group_state": "Stable"}
            for t, groups in GROUPS.items() for g in groups]
    return pd.DataFrame(rows)


def score(graph) -> tuple[float, float, set]:
    drawn = {(graph.nodes[a]["label"], graph.nodes[b]["label"])
             for a, b, kind in graph.edges(data="kind") if kind == "causes"}
    right = drawn & TRUE_EDGES
    return len(right) / max(len(drawn), 1), len(right) / len(TRUE_EDGES), drawn - TRUE_EDGES


def test_the_event_just_before_is_wrong_on_fan_out():
    """The rule this replaces, scored on the same events: why it had to go."""
    events, _ = fan_out_events()
    ordered = events.sort_values(["correlation_id", "at"], kind="stable")
    same = ordered["correlation_id"].to_numpy()[1:] == ordered["correlation_id"].to_numpy()[:-1]
    topics = ordered["topic"].to_numpy()
    drawn = {(a, b) for a, b, s in zip(topics[:-1], topics[1:], same) if s and a != b}
    assert len(drawn & TRUE_EDGES) / len(drawn) < 0.6


def test_causes_edges_hold_on_fan_out():
    """With the consumer groups the lag collector sees (as when eventscope collects)."""
    events, _ = fan_out_events()
    graph = build_graph(events, None, groups=groups_frame(), consumed=schemas.empty("lag_1m"))
    precision, recall, wrong = score(graph)
    print(f"causes edges, consumer groups known: precision {precision:.2f}, recall {recall:.2f}")
    assert recall == 1.0
    assert precision >= 0.95, wrong
    through = {(graph.nodes[a]["label"], graph.nodes[b]["label"]): attrs["service"]
               for a, b, attrs in graph.edges(data=True) if attrs["kind"] == "causes"}
    assert through[("orders", "inventory")] == "inventory-service"
    assert through[("inventory", "shipments")] == "shipping-service"
    assert through[("inventory", "payments")] == "payment-service"


def test_causes_edges_from_traffic_alone():
    """Events without lag samples (an import, a replay of events only): timing alone cannot
    tell that email-service does not read ``fraud-results``, whose events often land just
    before an email; every true edge is still found, and the fan-out ones are right."""
    events, _ = fan_out_events()
    precision, recall, wrong = score(build_graph(events, None))
    print(f"causes edges, traffic alone: precision {precision:.2f}, recall {recall:.2f}, wrong {sorted(wrong)}")
    assert recall == 1.0
    assert wrong <= {("fraud-results", "notifications")}


def test_each_event_gets_its_true_cause():
    """Per event, not only per edge: the cause the rule picks is the one that made it."""
    events, truth = fan_out_events(seed=3)
    ordered = events.sort_values(["correlation_id", "at"], kind="stable").reset_index(drop=True)
    chain = pd.factorize(ordered["correlation_id"])[0]
    place = pd.factorize(ordered["topic"])[0]
    producer = pd.factorize(ordered["service"] + "|" + ordered["event_type"])[0]
    at_us = ordered["at"].astype("int64").to_numpy() // 1000
    cause = causality.cause_rows(chain, at_us, place, producer)
    ids = ordered["event_id"].tolist()
    picked = {ids[i]: (ids[c] if c >= 0 else None) for i, c in enumerate(cause)}
    right = sum(picked[e] == truth[e] for e in ids)
    assert right / len(ids) >= 0.97, right / len(ids)
    roots = [e for e in ids if truth[e] is None]  # every order starts its own request
    assert all(picked[e] is None for e in roots)


def test_few_events_keep_the_event_just_before():
    chain = np.array([0, 0, 0])
    place = np.array([0, 1, 2])
    cause = causality.cause_rows(chain, np.array([0, 10, 20]), place, np.array([0, 1, 2]))
    assert cause.tolist() == [-1, 0, 1]
    assert causality.previous_other_place(np.array([0, 0, 0, 1]), np.array([5, 5, 6, 6])).tolist() == [-1, -1, 1, -1]


def test_trace_hops_follow_the_same_rule():
    """The trace page's hops: each event's cause is the one the generator made it from."""
    from eventscope.analysis import traces
    events, truth = fan_out_events(seed=5)
    consumes = causality.consumed_topics(events, groups_frame())
    assert consumes[("inventory-service", "StockReserved")] == frozenset({("kafka", "orders")})
    assert consumes[("shipping-service", "ShipmentCreated")] == frozenset({("kafka", "payments"),
                                                                           ("kafka", "inventory")})
    assert consumes[("order-service", "OrderPlaced")] == frozenset()  # starts its chains
    checked = wrong = 0
    for cid in [f"customer-{c}" for c in range(0, 400, 7)]:
        found = traces.from_rows(events[events["correlation_id"] == cid], consumes=consumes)
        for hop in found["hops"]:
            checked += 1
            wrong += truth[hop["to_event_id"]] != hop["from_event_id"]
        # every event but the orders has its hop
        assert len(found["hops"]) == sum(truth[e["event_id"]] is not None for e in found["events"])
    assert checked > 1000 and wrong / checked <= 0.03, (wrong, checked)


def test_a_causation_id_in_the_envelope_is_the_cause():
    """When events name their cause (``causation_id`` = the cause's event ID), no timing is
    needed: even the case timing cannot solve (a sibling that always lands first, no
    consumer groups known) comes out right, in the graph and in the trace's hops."""
    from eventscope.analysis import traces
    from eventscope.collectors.events_common import EventBatch
    batch = EventBatch("kafka", "kafka")
    t0 = 1_700_000_000_000
    for c in range(30):
        cid = f"order-{c}"
        envelopes = [("orders", "order-service", "OrderPlaced", f"o{c}", None, 0),
                     ("payments", "payment-service", "PaymentCharged", f"p{c}", f"o{c}", 5),  # always first
                     ("inventory", "inventory-service", "StockReserved", f"i{c}", f"o{c}", 40)]
        for topic, service, kind, eid, cause, ms in envelopes:
            body = {"event_type": kind, "event_id": eid, "correlation_id": cid, "source": service,
                    "metadata": {"causationId": cause} if cause else {}}
            batch.add(topic, 0, str(c), t0 + c * 1000 + ms, json.dumps(body).encode(), {}, False)
    events = batch.frame(pd.Timestamp("2026-12-05T10:00:00Z"))
    assert events["causation_id"].notna().sum() == 60
    edges = {(graph_nodes_label(g, a), graph_nodes_label(g, b)) for g in [build_graph(events, None)]
             for a, b, kind in g.edges(data="kind") if kind == "causes"}
    assert edges == {("orders", "payments"), ("orders", "inventory")}
    hops = traces.from_rows(events[events["correlation_id"] == "order-3"])["hops"]
    assert {(h["from_topic"], h["to_topic"]) for h in hops} == {("orders", "payments"), ("orders", "inventory")}


def graph_nodes_label(graph, node: str) -> str:
    return graph.nodes[node]["label"]
