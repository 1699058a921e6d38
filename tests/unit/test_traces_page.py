"""The Traces page: waterfall, hops, masked headers and payload, and the lists one click away."""
from __future__ import annotations

import json

import pandas as pd

from eventscope import schemas
from eventscope.mask import masked_payload
from eventscope.store import Store
from eventscope.trace_view import waterfall
from test_app import _app, _visit, write_synthetic_store

SCRIPT = "<script>alert(1)</script>"


def _store_with_payloads(root):
    """The synthetic pipeline plus one chain whose payload carries personal data and markup."""
    write_synthetic_store(root)
    now = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=2)
    body = {"event_type": "OrderPlaced", "correlation_id": "pii-1", "source": SCRIPT,
            "data": {"customer_email": "ada@example.com", "note": "call +49 151 2345678 or ada@example.com",
                     "card": "4111 1111 1111 1111", "comment": "**bold** [x](javascript:alert(2)) " + SCRIPT}}
    rows = []
    for step, (topic, dead) in enumerate([("orders", False), ("orders.DLT", True)]):
        at = now + pd.Timedelta(milliseconds=400 * step)
        rows.append({"observed_at": at, "source": "replay", "broker": "kafka", "topic": topic, "partition": 0,
                     "offset": str(step), "at": at, "broker_at": at, "event_type": "OrderPlaced",
                     "event_id": "evt-pii", "service": SCRIPT, "correlation_id": "pii-1",
                     "trace_id": "ab" * 16, "dead_letter": dead, "payload": masked_payload(body),
                     "headers": json.dumps({"x-correlation-id": "pii-1", "x-user-email": "bob@example.com",
                                            "kafka_dlt-original-consumer-group": SCRIPT} if dead else
                                           {"x-correlation-id": "pii-1"}),
                     "dlq_reason": "ValueError: " + SCRIPT if dead else None})
    Store(root).append("events", schemas.conform("events", rows))
    return root


def test_found_trace_shows_waterfall_hops_and_masked_details(monkeypatch, tmp_path):
    at = _visit(_app(monkeypatch, _store_with_payloads(tmp_path / "s")), "pages/traces.py")
    at.text_input(key="trace_id").input("pii-1").run()
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    figure = json.loads(charts[0].proto.spec)
    names = {t.get("name") for t in figure["data"]}
    assert "into a dead-letter queue" in names and "event" in names
    shown = json.dumps(figure)
    assert SCRIPT not in shown and "&lt;script&gt;" in shown  # names reach plotly escaped
    codes = [c.value for c in at.code]
    payload = next(c for c in codes if "customer_email" in c)
    for secret in ("ada@example.com", "4111 1111 1111 1111", "+49 151 2345678"):
        assert secret not in payload
    assert SCRIPT in payload  # shown as code text, never as markup
    headers = [j.value for j in at.json]
    assert headers and all("bob@example.com" not in h for h in headers)
    hops = [d.value for d in at.dataframe if "from_topic" in d.value.columns][0]
    assert hops["dead_letter"].tolist() == [True] and hops["service"].tolist() == [SCRIPT]


def test_slowest_and_failed_lists_are_one_click_away(monkeypatch, tmp_path):
    at = _visit(_app(monkeypatch, write_synthetic_store(tmp_path / "s")), "pages/traces.py")
    tables = {d.key: d.value for d in at.dataframe if d.key}
    assert set(tables) >= {"recent_traces", "slow_traces", "failed_traces"}
    assert set(tables["failed_traces"]["outcome"]) == {"dead_lettered"}
    slow = tables["slow_traces"]
    assert slow["duration_ms"].is_monotonic_decreasing and "in_flight" not in set(slow["outcome"])
    # AppTest cannot click a dataframe row; a click copies the row's ID into the box (``_pick``),
    # which the browser test exercises. Here: the listed ID looks the chain up.
    at.text_input(key="trace_id").input(tables["failed_traces"].iloc[0]["correlation_id"]).run()
    assert not at.exception
    assert any("Died in" in e.value for e in at.error)


def test_waterfall_marks_the_split_and_the_dlq():
    trace = {"correlation_id": "c", "outcome": "dead_lettered", "events": [
        {"at": "2026-11-28T10:00:00Z", "broker": "redis", "topic": "orders", "partition": 0, "offset": "1-0",
         "event_type": "OrderPlaced", "event_id": "e1", "source": "o", "trace_id": None, "dead_letter": False},
        {"at": "2026-11-28T10:01:20Z", "broker": "redis", "topic": "payments", "partition": 0, "offset": "2-0",
         "event_type": "PaymentCharged", "event_id": "e2", "source": "p", "trace_id": None, "dead_letter": False},
        {"at": "2026-11-28T10:01:21Z", "broker": "redis", "topic": "payments.dlq", "partition": 0,
         "offset": "3-0", "event_type": "PaymentCharged", "event_id": "e2", "source": "p", "trace_id": None,
         "dead_letter": True}],
        "hops": [{"from_topic": "orders", "to_topic": "payments", "service": "p", "latency_ms": 80000.0,
                  "from_event_id": "e1", "to_event_id": "e2", "dead_letter": False, "broker_wait_ms": 60000.0,
                  "service_ms": 20000.0, "split": "estimated", "split_error_ms": 2500.0},
                 {"from_topic": "payments", "to_topic": "payments.dlq", "service": "g", "latency_ms": 1000.0,
                  "from_event_id": "e2", "to_event_id": "e2", "dead_letter": True, "broker_wait_ms": None,
                  "service_ms": None, "split": None, "split_error_ms": None}]}
    fig = waterfall(trace)
    bars = {t.name: (t.base[0], t.x[0]) for t in fig.data if t.type == "bar"}
    assert bars["waiting in the broker (estimated)"] == (0.0, 60000.0)
    assert bars["in the service (estimated)"] == (60000.0, 20000.0)
    assert bars["into a dead-letter queue"] == (80000.0, 1000.0)


def _hot_chain(n: int, dead_at: int | None = None) -> pd.DataFrame:
    start = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=30)
    at = start + pd.to_timedelta(range(0, 10 * n, 10), unit="ms")
    return schemas.conform("events", pd.DataFrame({
        "observed_at": at, "at": at, "broker_at": at, "source": "replay", "broker": "kafka",
        "topic": ["orders" if i % 2 else "payments" for i in range(n)] if dead_at is None else
        ["orders.DLT" if i == dead_at else "orders" if i % 2 else "payments" for i in range(n)],
        "partition": 0, "offset": [str(i) for i in range(n)], "event_type": "Tick",
        "event_id": [f"tick-{i}" for i in range(n)], "service": "loop", "correlation_id": "tenant-7",
        "dead_letter": [i == dead_at for i in range(n)]}))


def test_a_hot_id_keeps_its_start_and_end_and_counts_every_event():
    """One correlation ID per tenant, or a retry loop: 30,000 events. Linking hops grows with
    the square of the events (100,000 took minutes), so the document keeps the first and the
    last 1,000 with the hops inside each, and the outcome still sees the dead letter between."""
    from eventscope.analysis import traces
    doc = traces.from_rows(_hot_chain(30_000, dead_at=15_000))
    assert doc["events_total"] == 30_000 and len(doc["events"]) == traces.MAX_EVENTS + 1
    assert [e["event_id"] for e in doc["events"][:2]] == ["tick-0", "tick-1"]
    assert doc["events"][-1]["event_id"] == "tick-29999"
    assert doc["outcome"] == "dead_lettered"
    assert [e["event_id"] for e in doc["events"] if e["dead_letter"]] == ["tick-15000"]  # where it died, kept
    ids = {e["event_id"] for e in doc["events"]}
    assert all(h["from_event_id"] in ids and h["to_event_id"] in ids for h in doc["hops"])
    assert len(doc["hops"]) == traces.MAX_EVENTS - 2  # none across the cut


def test_the_page_says_when_a_trace_is_cut(monkeypatch, tmp_path):
    root = tmp_path / "hot"
    write_synthetic_store(root)
    Store(root).append("events", _hot_chain(5_000, dead_at=2_500))
    at = _visit(_app(monkeypatch, root), "pages/traces.py")
    at.text_input(key="trace_id").input("tenant-7").run()
    assert not at.exception, at.exception
    warned = [w.value for w in at.warning]
    assert any("5,000 events" in w and "first 100" in w for w in warned), warned
    assert any("Died in" in e.value for e in at.error)  # the dead letter between the halves is shown
