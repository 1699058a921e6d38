"""Flow graph and event catalog: the pure helpers behind the pages, and the pages in AppTest."""
from __future__ import annotations

import json

import networkx as nx
import pandas as pd
import pytest

from eventscope import schemas
from eventscope.graph.asyncapi import applications, asyncapi_documents, component_key
from eventscope.graph.build import build_graph
from eventscope.graph.catalog import event_catalog
from eventscope.graph.infer import correlation_location, message_shapes, pointer
from eventscope.graph.view import collapse_partitions, filter_graph, group_by_prefix, neighbourhood, readable
from test_app import HOSTILE, _app, _visit, write_synthetic_store

T0 = pd.Timestamp("2026-01-01T12:00:00Z")


def _event(topic, service, cid, ms, kind="Evt", broker="kafka", payload=None, headers=None,
           version="1", dead=False, original=None):
    at = T0 + pd.Timedelta(milliseconds=ms)
    return {"observed_at": at, "source": broker, "broker": broker, "topic": topic, "partition": 0,
            "offset": str(ms), "at": at, "event_type": kind, "event_id": f"{cid}-{ms}",
            "service": service, "correlation_id": cid, "dead_letter": dead, "original_topic": original,
            "schema_version": version, "payload": payload, "headers": headers}


# -- build: window, ties, health -------------------------------------------------
def test_window_limits_counts_and_rates():
    rows = [_event("orders", "shop", f"c{i}", i * 1000, "OrderPlaced") for i in range(20)]
    events = schemas.conform("events", rows)
    whole = build_graph(events, None)
    assert whole.edges["service:shop", "topic:kafka:orders"]["events"] == 20
    half = build_graph(events, None, since=T0 + pd.Timedelta(seconds=10))
    edge = half.edges["service:shop", "topic:kafka:orders"]
    assert edge["events"] == 10 and edge["rate_per_s"] == pytest.approx(10 / 9, abs=1e-3)
    assert build_graph(events, None, until=T0 - pd.Timedelta(seconds=1)).number_of_nodes() == 0


def test_equal_timestamps_do_not_reverse_a_hop():
    rows = []
    for i in range(30):  # orders -> payments; in a third of the chains both share one millisecond
        cid, base = f"c{i}", i * 1000
        rows.append(_event("payments", "pay", cid, base + (0 if i % 3 == 0 else 7), "Paid"))
        rows.append(_event("orders", "shop", cid, base, "OrderPlaced"))  # stored after its child
    graph = build_graph(schemas.conform("events", rows), None)
    assert graph.edges["topic:kafka:orders", "topic:kafka:payments"]["events"] == 30
    assert not graph.has_edge("topic:kafka:payments", "topic:kafka:orders")


def test_health_of_groups_and_dlqs():
    lag = []
    for s in range(0, 301, 30):
        for group, committed in (("fast", 10 * s), ("stuck", 100)):
            lag.append({"sampled_at": T0 + pd.Timedelta(seconds=s), "source": "k", "broker": "kafka",
                        "group": group, "topic": "orders", "partition": 0, "committed": committed,
                        "end": 10 * s + (0 if group == "fast" else 50), "members": 1,
                        "lag": 0 if group == "fast" else 10 * s + 50 - 100, "lag_seconds": 0.0})
    dlq = [{"sampled_at": T0 + pd.Timedelta(seconds=s), "source": "k", "broker": "kafka",
            "dlq": name, "source_topic": "orders" if name == "orders.DLT" else None, "depth": depth}
           for s in (0, 300) for name, depth in (("orders.DLT", 3 + s // 100), ("old.DLT", 5),
                                                 ("quiet.DLT", 0))]
    graph = build_graph(None, schemas.conform("lag", lag), schemas.conform("dlq", dlq))
    assert graph.nodes["group:kafka:fast"]["health"] == "ok"
    assert graph.nodes["group:kafka:stuck"]["status"] == "STALL"
    assert graph.nodes["group:kafka:stuck"]["health"] == "critical"
    assert graph.nodes["dlq:kafka:orders.DLT"]["health"] == "critical"  # growing
    assert graph.nodes["dlq:kafka:old.DLT"]["health"] == "warn"  # holds messages, not growing
    assert graph.nodes["dlq:kafka:quiet.DLT"]["health"] == "ok"
    assert graph.edges["topic:kafka:orders", "dlq:kafka:orders.DLT"]["kind"] == "dead_letters"
    assert graph.in_degree("dlq:kafka:quiet.DLT") == 0  # an empty DLQ invents no edge
    assert graph.edges["topic:kafka:old", "dlq:kafka:old.DLT"]["kind"] == "dead_letters"  # by name
    assert graph.edges["topic:kafka:orders", "group:kafka:fast"]["events"] == 3000


def test_frames_with_fewer_columns_still_build():
    rows = schemas.conform("events", [_event("orders", "shop", "c", 0, "OrderPlaced")])
    graph = build_graph(rows[["broker", "topic", "service", "event_type", "at"]], None)
    assert graph.edges["service:shop", "topic:kafka:orders"]["events"] == 1


# -- view: filters, focus, collapsing --------------------------------------------
def _chain_graph():
    rows = []
    for i in range(5):
        cid = f"c{i}"
        rows += [_event("orders", "shop", cid, i * 100), _event("payments", "pay", cid, i * 100 + 5),
                 _event("orders", "shop", "r" + cid, i * 100, broker="redis"),
                 _event("mail", "mailer", "r" + cid, i * 100 + 9, broker="redis")]
    return build_graph(schemas.conform("events", rows), None)


def test_filter_by_broker_and_name():
    graph = _chain_graph()
    redis = filter_graph(graph, ["redis"])
    assert set(redis) == {"topic:redis:orders", "topic:redis:mail", "service:shop", "service:mailer"}
    assert set(filter_graph(graph, None, "pay*")) == {"service:pay", "topic:kafka:payments",
                                                       "topic:kafka:orders"}  # match + neighbours
    assert set(filter_graph(graph, ["kafka"], "MAIL")) == set()
    assert filter_graph(graph, None, "") .number_of_nodes() == graph.number_of_nodes()


def test_focus_neighbourhood():
    graph = _chain_graph()
    assert set(neighbourhood(graph, "topic:kafka:payments", 1)) == {
        "topic:kafka:payments", "service:pay", "topic:kafka:orders"}
    assert "service:shop" in neighbourhood(graph, "topic:kafka:payments", 2)
    assert neighbourhood(graph, "nope", 2).number_of_nodes() == 0


def test_collapse_partitions_and_prefixes():
    rows = []
    for shard in range(4):
        for i in range(3):
            rows.append(_event(f"orders-{shard}", "shop", f"c{shard}-{i}", i, broker="redis"))
    rows += [_event("billing.invoices", "billing", "b", 1), _event("billing.refunds", "billing", "b2", 2),
             _event("orders", "shop", "x", 3)]
    graph = build_graph(schemas.conform("events", rows), None)
    shards = collapse_partitions(graph)
    merged = shards.nodes["topic:redis:orders-*"]
    assert merged["members"] == 4 and merged["events"] == 12
    assert shards.edges["service:shop", "topic:redis:orders-*"]["events"] == 12
    assert "topic:kafka:orders" in shards  # no shard number: left alone
    numbered = build_graph(schemas.conform("events", [_event("step-1", "a", "n1", 0),
                                                      _event("step-2", "b", "n2", 0)]), None)
    assert set(collapse_partitions(numbered)) == set(numbered)  # other producers: not shards
    prefixed = group_by_prefix(graph)
    assert prefixed.nodes["topic:kafka:billing.*"]["members"] == 2
    small, steps = readable(graph, max_nodes=100)
    assert steps == [] and nx.utils.graphs_equal(small, graph)
    _, steps = readable(graph, max_nodes=3)
    assert steps == ["partitions collapsed", "grouped by name prefix"]


def test_a_thousand_groups_stay_readable_and_the_unhealthy_ones_stay_visible():
    """1,000 groups on 100 topics: healthy groups merge into one node per topic and then per
    broker; every group in trouble keeps its own node, however far collapsing goes."""
    now = pd.Timestamp.now(tz="UTC")
    rows = []
    for i in range(1000):
        sick = i % 250 == 7  # four groups in trouble
        for s in range(3):
            committed = 100 if sick else 100 + 10 * s
            rows.append({"sampled_at": now + pd.Timedelta(seconds=10 * s), "source": "kafka",
                         "broker": "kafka", "group": f"billing.group-{i:04d}", "topic": f"topic-{i % 100:03d}",
                         "partition": 0, "committed": committed, "end": 100 + 10 * s + (50 if sick else 0),
                         "lag": 10 * s + 50 if sick else 0, "members": 1})
    graph = build_graph(None, schemas.conform("lag", rows))
    unhealthy = {n for n, a in graph.nodes(data=True) if a["kind"] == "group" and a["health"] != "ok"}
    assert len(unhealthy) == 4 and graph.number_of_nodes() == 1100
    small, steps = readable(graph, max_nodes=120)
    assert small.number_of_nodes() <= 120, steps
    assert unhealthy <= set(small), "a group in trouble was merged away"
    assert steps[:2] == ["healthy groups merged per topic", "healthy groups merged per broker"]
    merged = [a for n, a in small.nodes(data=True) if a["kind"] == "group" and n not in unhealthy]
    assert sum(a["members"] for a in merged) == 996 and {a["health"] for a in merged} == {"ok"}
    assert [a["label"] for a in merged] == ["996 healthy groups"]


# -- schemas, catalog, AsyncAPI ownership (offline) -----------------------------
def test_pointer_and_correlation_location():
    assert pointer(["a/b", "c~d"]) == "/a~1b/c~0d"
    assert correlation_location({"correlation_id": "x"}, {}, "x") == "$message.payload#/correlation_id"
    assert correlation_location({"metadata": {"correlationId": "x"}}, None, "x") == \
        "$message.payload#/metadata/correlationId"
    assert correlation_location({"data": {}}, {"x-correlation-id": "x"}, "x") == \
        "$message.header#/x-correlation-id"
    assert correlation_location({"data": {}}, {}, "x") is None


def test_message_shapes_use_genson_on_a_bounded_sample():
    rows = [_event("orders", "shop", f"c{i}", i, "OrderPlaced",
                   payload=json.dumps({"correlation_id": f"c{i}", "data": {"n": i, "tag": "a" if i % 2 else None}}),
                   headers=json.dumps({"ce_type": "OrderPlaced"}))
            for i in range(50)]
    rows.append(_event("orders", "shop", "bad", 99, "OrderPlaced", payload="{not json"))
    shapes = message_shapes(schemas.conform("events", rows), per_type=10)
    shape = shapes[("OrderPlaced", "1")]
    assert shape["sampled"] == 10 and shape["correlation_id"] == "$message.payload#/correlation_id"
    data = shape["payload"]["properties"]["data"]["properties"]
    assert data["n"]["type"] == "integer" and set(data["tag"]["type"]) == {"string", "null"}
    assert "$schema" not in shape["payload"]
    assert shape["headers"]["properties"]["ce_type"]["type"] == "string"


def test_catalog_rows():
    rows = [_event("orders", "shop", "c1", 0, "OrderPlaced", version="1"),
            _event("orders", "shop", "c2", 1000, "OrderPlaced", version="2"),
            _event("orders.DLT", "shop", "c2", 2000, "OrderPlaced", dead=True, original="orders"),
            _event("orders", "shop", "c3", 4000, "<undecodable>")]
    lag = schemas.conform("lag", [{"sampled_at": T0, "source": "k", "broker": "kafka", "group": "pay",
                                   "topic": "orders", "partition": 0, "committed": 1, "end": 1, "lag": 0}])
    events = schemas.conform("events", rows)
    table = event_catalog(events, build_graph(events, lag))
    assert list(table["event_type"]) == ["OrderPlaced"]
    row = table.iloc[0]
    assert row["schema_versions"] == ["1", "2"] and row["producers"] == ["shop"]
    assert row["topics"] == ["kafka:orders"] and row["consumers"] == ["kafka:pay"]
    assert (row["events"], row["dead_lettered"]) == (2, 1)
    assert row["rate_per_s"] == 0.5 and row["last_seen"] == T0 + pd.Timedelta(seconds=2)
    assert event_catalog(None).empty


def test_applications_attribute_groups_to_services():
    rows, lag = [], []
    for i in range(6):
        cid = f"c{i}"
        rows += [_event("p-orders", "shop", cid, i * 100), _event("p-payments", "payment-service", cid, i * 100 + 5)]
        if i % 2:
            rows.append(_event("p-payments", "payment-service", cid, i * 100 + 20))  # a second step
    for group, topic in (("p-payment-service", "p-orders"), ("p-mailer", "p-payments"),
                         ("p-audit", "p-orders")):
        lag.append({"sampled_at": T0, "source": "k", "broker": "kafka", "group": group, "topic": topic,
                    "partition": 0, "committed": 1, "end": 1, "lag": 0})
    graph = build_graph(schemas.conform("events", rows), schemas.conform("lag", lag))
    apps = applications(graph)
    assert set(apps) == {"shop", "payment-service", "p-mailer", "p-audit"}
    assert apps["payment-service"]["groups"] == ["group:kafka:p-payment-service"]  # by name
    assert apps["payment-service"]["receives"] == ["topic:kafka:p-orders"]
    assert apps["p-mailer"]["service"] is None and apps["p-mailer"]["sends"] == []
    docs = asyncapi_documents(graph, schemas.conform("events", rows))
    assert set(docs["shop"]["channels"]) == {"kafka.p-orders"}
    assert component_key("<script>x") == "_script_x"


def test_hostile_names_reach_asyncapi_as_data():
    rows = [_event("orders", HOSTILE, "c", 0, HOSTILE, payload=json.dumps({"correlation_id": "c"}))]
    events = schemas.conform("events", rows)
    docs = asyncapi_documents(build_graph(events, None), events)
    doc = docs[HOSTILE]
    assert doc["info"]["title"] == HOSTILE
    (message,) = doc["components"]["messages"].values()
    assert message["name"] == HOSTILE and list(doc["components"]["messages"]) == ["_script_alert_1___script_.v1"]


# -- the pages in AppTest ----------------------------------------------------------
@pytest.fixture
def populated(tmp_path):
    return write_synthetic_store(tmp_path / "store")


def _caption(at, prefix):
    return next(c.value for c in at.caption if c.value.split(" ", 1)[0].isdigit() and prefix in c.value)


def test_flow_graph_focus_filters_and_window(monkeypatch, populated):
    at = _visit(_app(monkeypatch, populated), "pages/flow_graph.py")
    assert _caption(at, "nodes drawn") == "10 of 10 nodes drawn"
    assert len(at.get("iframe")) == 1 or any(type(e).__name__ == "UnknownElement" for e in at.main)
    at.selectbox(key="graph_focus").set_value("analytics · group · kafka").run()
    assert not at.exception and _caption(at, "nodes drawn") == "2 of 10 nodes drawn"
    at.number_input(key="graph_hops").set_value(2).run()
    assert _caption(at, "nodes drawn") == "5 of 10 nodes drawn"  # + order-service, payment-service group, payments
    at.selectbox(key="graph_focus").set_value(None).run()
    at.text_input(key="graph_pattern").input("ship*").run()
    edges = at.dataframe[0].value
    assert set(edges["kind"]) <= {"produces", "consumes", "causes"} and len(edges) >= 2
    assert all("ship" in s or "ship" in t for s, t in zip(edges["source"], edges["target"]))
    at.text_input(key="graph_pattern").input("").run()
    at.selectbox(key="graph_window").set_value("last 15 minutes").run()
    assert not at.exception
    assert _caption(at, "nodes drawn") == "10 of 10 nodes drawn"
    names = at.selectbox(key="graph_asyncapi_service").options
    assert names[0] == "every service" and "payment-service" in names


def test_catalog_page(monkeypatch, populated):
    at = _visit(_app(monkeypatch, populated), "pages/catalog.py")
    table = at.dataframe[0].value
    assert list(table["event_type"]) == ["OrderPlaced", "PaymentAuthorized", "OrderShipped"]
    assert table.set_index("event_type").loc["OrderPlaced", "consumers"] == "kafka:analytics, kafka:payment-service"
    at.selectbox(key="catalog_type").set_value("PaymentAuthorized").run()
    texts = [t.value for t in at.text]
    assert "Event type: PaymentAuthorized" in texts
    assert "Correlation ID: $message.payload#/correlation_id" in texts
    assert at.json and "order_id" in json.dumps(at.json[0].value)
    fields = at.dataframe[1].value
    assert {"data.order_id": "string", "data.amount": "number"}.items() <= dict(
        zip(fields["field"], fields["type"])).items()


def test_catalog_shows_hostile_names_as_text(monkeypatch, tmp_path):
    at = _visit(_app(monkeypatch, write_synthetic_store(tmp_path / "h", hostile=True)), "pages/catalog.py")
    assert HOSTILE in at.dataframe[0].value["producers"].tolist()
    at.selectbox(key="catalog_type").set_value("PaymentAuthorized").run()
    assert HOSTILE in [t.value for t in at.text]  # st.text: shown literally, never markup
    # a schema version from a payload is a label's text, not Markdown (no image fetched)
    labels = [e.label for e in at.expander]
    assert labels and all("![" not in label for label in labels)
    assert any("\\!\\[pixel\\]\\(http" in label for label in labels), labels


def test_schema_fields_flatten_nested_objects_and_arrays():
    from genson import SchemaBuilder

    from eventscope.graph.infer import schema_fields
    builder = SchemaBuilder()
    builder.add_object({"id": 1, "data": {"items": [{"sku": "a"}], "note": None}})
    builder.add_object({"id": "x", "data": {"items": []}})
    rows = {r["field"]: (r["type"], r["required"]) for r in schema_fields(builder.to_schema())}
    assert rows["id"] == ("integer | string", True)
    assert rows["data.items[].sku"] == ("string", True)
    assert rows["data.note"] == ("null", False)
    assert schema_fields(None) == []


def test_the_flow_graph_page_keeps_no_copy_of_its_drawing(monkeypatch, populated):
    """``st.iframe`` runs the drawing's HTML through ``urllib.parse.urlsplit``, whose cache
    (Python 3.11: the last 128 calls) would keep every drawing a dashboard ever served: ~400 MB
    on a big cluster. After the page, no cached answer holds a document."""
    import gc

    at = _visit(_app(monkeypatch, populated), "pages/flow_graph.py")
    at.selectbox(key="graph_window").set_value("last 15 minutes").run()
    assert not at.exception
    kept = [o for o in gc.get_objects() if type(o).__name__ == "SplitResult"
            and any(len(part) > 20_000 for part in o)]
    assert not kept, f"{len(kept)} drawings of {[len(o.path) for o in kept]} characters kept"
