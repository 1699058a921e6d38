"""The simulator: envelopes and trace context (no broker), and the order pipeline on
the real Kafka and Redis of tests/conftest.py.

Each broker scenario runs once per module, on both brokers at the same time, under
its own topic/group prefix; the tests then read what it left on the brokers.
"""
from __future__ import annotations

import random
import re
import struct
import threading
import time
import uuid
from collections import defaultdict
from datetime import datetime

import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from eventscope.simulator import SimulatorConfig, run_simulation
from eventscope.simulator import envelope
from eventscope.simulator.config import parse_change
from eventscope.simulator.services import HandlerContext, PaymentDeclinedError, charge_payment, make_order

BROKERS = ["kafka", "redis"]
PIPELINE = ["orders", "payments", "inventory", "shipments"]
CHAIN = ["OrderPlaced", "PaymentCharged", "InventoryReserved", "ShipmentCreated"]
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
EVENT_ID_RE = re.compile(r"^evt_[0-9a-f]{16}$")
RUN = uuid.uuid4().hex[:6]
QUIET = dict(payment_failure_rate=0.0, inventory_failure_rate=0.0, transient_failure_rate=0.0,
             malformed_rate=0.0)


# --- unit tests: envelope and traceparent (no broker) ------------------------------------

def test_traceparent_is_w3c_and_children_keep_the_trace() -> None:
    root = envelope.make_traceparent(envelope.new_trace_id(), envelope.new_span_id())
    assert envelope.TRACEPARENT_RE.match(root) and root.endswith("-01")
    child = envelope.child_traceparent(root)
    grandchild = envelope.child_traceparent(child.encode())
    trace_ids = {envelope.parse_traceparent(tp)[0] for tp in (root, child, grandchild)}
    span_ids = {envelope.parse_traceparent(tp)[1] for tp in (root, child, grandchild)}
    assert len(trace_ids) == 1 and len(span_ids) == 3
    # OpenTelemetry's own propagator reads ours.
    ctx = TraceContextTextMapPropagator().extract({"traceparent": child})
    span = trace.get_current_span(ctx).get_span_context()
    assert span.is_valid and f"{span.trace_id:032x}" == envelope.parse_traceparent(child)[0]
    assert f"{span.span_id:016x}" == envelope.parse_traceparent(child)[1]


@pytest.mark.parametrize("bad", [None, "", "garbage", b"\xff\xfe",
                                 "01-" + "a" * 32 + "-" + "b" * 16 + "-01",   # unknown version
                                 "00-" + "0" * 32 + "-" + "b" * 16 + "-01",   # all-zero trace
                                 "00-" + "A" * 32 + "-" + "b" * 16 + "-01"])  # uppercase hex
def test_invalid_traceparent_starts_a_new_trace(bad) -> None:
    assert envelope.parse_traceparent(bad) is None
    assert envelope.parse_traceparent(envelope.child_traceparent(bad)) is not None


def test_envelope_has_the_design_fields() -> None:
    data = make_order(random.Random(3))
    event = envelope.make_event("OrderPlaced", "order-service", "corr-1", data)
    assert list(event) == list(envelope.ENVELOPE_FIELDS)
    assert event["schema_version"] == 2 and EVENT_ID_RE.match(event["event_id"])
    assert TIMESTAMP_RE.match(event["timestamp"])
    datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    assert {"order_id", "customer_id", "customer_email", "amount", "items"} <= set(data)
    assert "@" in data["customer_email"] and data["amount"] > 0
    assert envelope.decode(envelope.encode(event)) == event


@pytest.mark.parametrize("payload, reason", [
    (b"\xff\xfe{", "not valid UTF-8 JSON"), (b"[1,2]", "not a JSON object"), (None, "empty"),
    (b'{"event_type":"X","event_id":"e","correlation_id":"c","data":"<script>"}', "data"),
    (b'{"event_type":"X","event_id":"e","correlation_id":"c","data":{}}', "order_id"),
])
def test_decode_rejects_malformed_payloads(payload, reason) -> None:
    with pytest.raises(envelope.MalformedMessageError, match=reason):
        envelope.decode(payload)


def test_schedule_parsing_and_backoff() -> None:
    assert parse_change("60:stall=analytics-service") == (60.0, {"stall": {"analytics-service"}})
    assert parse_change("90:payment-failure-rate=0.6;slow=email-service:0.5") == (
        90.0, {"payment_failure_rate": 0.6, "slow": {"email-service": 0.5}})
    with pytest.raises(ValueError):
        parse_change("10:seed=3")
    cfg = SimulatorConfig(backoff_base=0.05, backoff_cap=0.3)
    assert [cfg.backoff(n) for n in (1, 2, 3, 4, 5)] == [0.05, 0.1, 0.2, 0.3, 0.3]


def test_declined_payment_stays_declined_across_retries() -> None:
    cfg = SimulatorConfig(payment_failure_rate=0.5, transient_failure_rate=0.0)
    rng = random.Random(5)
    event = envelope.make_event("OrderPlaced", "order-service", "c", make_order(rng))
    for _ in range(20):
        memo: dict = {}
        outcomes = set()
        for attempt in (1, 2, 3):
            try:
                charge_payment(event, HandlerContext(cfg, rng, attempt, memo))
                outcomes.add("ok")
            except PaymentDeclinedError:
                outcomes.add("declined")
        assert len(outcomes) == 1


# --- helpers for reading what the simulator left on the brokers ----------------------------

def read_kafka(bootstrap: str, topic: str) -> list[dict]:
    """Every message of `topic`, read by assignment (no group join, no commit)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": False})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in meta.partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        out, left = [], {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + 15
        while left and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            out.append({"value": msg.value(), "key": msg.key(), "partition": msg.partition(),
                        "offset": msg.offset(), "headers": dict(msg.headers() or [])})
            if msg.offset() + 1 >= ends[msg.partition()]:
                left.discard(msg.partition())
        assert not left, f"could not read all of {topic}"
        return out
    finally:
        consumer.close()


def read_redis(url: str, stream: str) -> list[dict]:
    client = redis.Redis.from_url(url)
    try:
        return [{"id": i.decode(), "fields": {k.decode(): v for k, v in f.items()}}
                for i, f in client.xrange(stream)]
    finally:
        client.close()


def pipeline_events(broker: str, addr: str, prefix: str) -> list[dict]:
    """Decodable events of all pipeline topics, each with its traceparent and metadata."""
    events = []
    for topic in PIPELINE:
        if broker == "kafka":
            records = [(r["value"], r["headers"].get("traceparent"), r) for r in
                       read_kafka(addr, prefix + topic)]
        else:
            records = [(r["fields"].get("envelope"), r["fields"].get("traceparent"), r) for r in
                       read_redis(addr, prefix + topic)]
        for value, traceparent, raw in records:
            try:
                event = envelope.decode(value)
            except envelope.MalformedMessageError:
                continue
            tp = traceparent.decode() if isinstance(traceparent, bytes) else traceparent
            events.append({"topic": topic, "event": event, "traceparent": tp, "raw": raw})
    return events


def kafka_committed(bootstrap: str, group: str, topic: str) -> tuple[int, int]:
    """(sum of committed offsets, sum of end offsets) of `group` on `topic`."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                       "enable.auto.commit": False})
    try:
        parts = reader.list_topics(topic, timeout=10).topics[topic].partitions
        tps = [TopicPartition(topic, p) for p in parts]
        committed = reader.committed(tps, timeout=10)  # OffsetFetch only: no join, no commit
        ends = [reader.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
        return sum(max(tp.offset, 0) for tp in committed), sum(ends)
    finally:
        reader.close()


def redis_group(url: str, stream: str, group: str) -> dict:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return next(g for g in client.xinfo_groups(stream) if g["name"] == group)
    finally:
        client.close()


def addr_of(broker: str, kafka_bootstrap: str, redis_url: str) -> str:
    return kafka_bootstrap if broker == "kafka" else redis_url


# --- scenarios (module-scoped: each runs once, on both brokers at once) ----------------------

@pytest.fixture(scope="module")
def happy(kafka_bootstrap: str, redis_url: str):
    """Retries that succeed, hostile messages, and analytics-service stalling at t=2.5 s."""
    cfg = SimulatorConfig(rate=8, duration=5, seed=11, prefix=f"t{RUN}h.", drain=5,
                          **{**QUIET, "transient_failure_rate": 0.3, "malformed_rate": 0.25},
                          schedule=[(2.5, {"stall": {"analytics-service"}})])
    return cfg, run_simulation(cfg, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url)


@pytest.fixture(scope="module")
def declined(kafka_bootstrap: str, redis_url: str):
    """Every payment declined; samples the Redis PEL while the run goes on."""
    cfg = SimulatorConfig(rate=8, duration=3, seed=12, prefix=f"t{RUN}d.", backoff_base=0.2,
                          **{**QUIET, "payment_failure_rate": 1.0})
    result, pending_seen = {}, []

    def run():
        result["stats"] = run_simulation(cfg, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url)

    thread = threading.Thread(target=run)
    thread.start()
    client = redis.Redis.from_url(redis_url)
    while thread.is_alive():
        try:
            pending_seen.append(client.xpending(cfg.topic("orders"), cfg.group("payment-service"))
                                ["pending"])
        except redis.ResponseError:
            pass  # group not created yet
        time.sleep(0.1)
    client.close()
    thread.join()
    return cfg, result["stats"], pending_seen


@pytest.fixture(scope="module")
def compensated(kafka_bootstrap: str, redis_url: str):
    """Every inventory reservation fails: the saga refunds every payment."""
    cfg = SimulatorConfig(rate=8, duration=3, seed=13, prefix=f"t{RUN}c.",
                          **{**QUIET, "inventory_failure_rate": 1.0})
    return cfg, run_simulation(cfg, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url)


# --- broker tests ------------------------------------------------------------------------------

@pytest.mark.broker
@pytest.mark.parametrize("broker", BROKERS)
def test_every_order_flows_through_with_one_correlation_and_trace(
        happy, broker, kafka_bootstrap, redis_url) -> None:
    cfg, stats = happy
    mine = stats["by_broker"][broker]
    events = pipeline_events(broker, addr_of(broker, kafka_bootstrap, redis_url), cfg.prefix)
    by_corr = defaultdict(list)
    for e in events:
        by_corr[e["event"]["correlation_id"]].append(e)
    orders = [c for c, evs in by_corr.items() if evs[0]["event"]["event_type"] == "OrderPlaced"]
    assert len(orders) == mine["published"]["OrderPlaced"] >= 20
    for etype in CHAIN:
        assert mine["published"][etype] == len(orders), etype
    assert mine["retries"].get(cfg.group("payment-service"), 0) > 0  # transient failures retried
    for corr in orders:
        evs = sorted(by_corr[corr], key=lambda e: CHAIN.index(e["event"]["event_type"]))
        assert [e["event"]["event_type"] for e in evs] == CHAIN
        assert [e["topic"] for e in evs] == PIPELINE
        assert [e["event"]["source"] for e in evs][1:] == [
            "payment-service", "inventory-service", "shipping-service"]
        parsed = [envelope.parse_traceparent(e["traceparent"]) for e in evs]
        assert all(parsed), [e["traceparent"] for e in evs]
        assert len({p[0] for p in parsed}) == 1 and len({p[1] for p in parsed}) == 4
        assert len({e["event"]["data"]["order_id"] for e in evs}) == 1
        for e in evs:
            ev = e["event"]
            assert list(ev) == list(envelope.ENVELOPE_FIELDS) and ev["schema_version"] == 2
            assert EVENT_ID_RE.match(ev["event_id"]) and TIMESTAMP_RE.match(ev["timestamp"])
            if broker == "kafka":
                headers = e["raw"]["headers"]
                assert headers["x-correlation-id"].decode() == corr
                assert headers["event_type"].decode() == ev["event_type"]
                assert e["raw"]["key"].decode() == ev["data"]["order_id"]
            else:
                assert set(e["raw"]["fields"]) == {"envelope", "traceparent"}
    # The hostile-but-valid order went through like any other.
    sources = {by_corr[c][0]["event"]["source"] for c in orders}
    assert sources == {"order-service", "<script>alert(1)</script>"}


@pytest.mark.broker
@pytest.mark.parametrize("broker", BROKERS)
def test_malformed_messages_reach_the_dlq_without_a_crash(
        happy, broker, kafka_bootstrap, redis_url) -> None:
    cfg, stats = happy
    mine = stats["by_broker"][broker]
    poison = mine["malformed_published"]["not_json"] + mine["malformed_published"]["bad_envelope"]
    assert poison >= 2
    group, orders = cfg.group("payment-service"), cfg.topic("orders")
    if broker == "kafka":
        originals = {(r["partition"], r["offset"]): r for r in read_kafka(kafka_bootstrap, orders)}
        dlq = [r for r in read_kafka(kafka_bootstrap, orders + ".DLT")
               if r["headers"]["kafka_dlt-original-consumer-group"].decode() == group]
        for r in dlq:
            h = r["headers"]
            assert h["kafka_dlt-exception-fqcn"] == b"simulator.envelope.MalformedMessageError"
            assert h["kafka_dlt-original-topic"].decode() == orders
            (partition,) = struct.unpack(">i", h["kafka_dlt-original-partition"])
            (offset,) = struct.unpack(">q", h["kafka_dlt-original-offset"])
            assert r["value"] == originals[(partition, offset)]["value"]
            assert r["partition"] == partition  # same partition, as Spring does
        reasons = [r["headers"]["kafka_dlt-exception-message"].decode() for r in dlq]
    else:
        originals = {r["id"]: r for r in read_redis(redis_url, orders)}
        dlq = [r["fields"] for r in read_redis(redis_url, orders + ".dlq")
               if r["fields"]["group"].decode() == group]
        for f in dlq:
            assert f["original_stream"].decode() == orders and f["attempts"] == b"1"
            assert f["envelope"] == originals[f["original_id"].decode()]["fields"]["envelope"]
            assert f["error"].startswith(b"MalformedMessageError: ")
        reasons = [f["error"].decode().split(": ", 1)[1] for f in dlq]
        assert redis_group(redis_url, orders, group)["pending"] == 0
    assert len(dlq) == poison == mine["dead_lettered_by_group"][group]
    assert set(reasons) == {"payload is not valid UTF-8 JSON",
                            "envelope field data missing or not an object"}


@pytest.mark.broker
@pytest.mark.parametrize("broker", BROKERS)
def test_a_stalled_service_leaves_lag(happy, broker, kafka_bootstrap, redis_url) -> None:
    cfg, _ = happy
    orders = cfg.topic("orders")
    if broker == "kafka":
        committed, end = kafka_committed(kafka_bootstrap, cfg.group("analytics-service"), orders)
        assert 0 < committed < end  # it worked, then stopped
        assert kafka_committed(kafka_bootstrap, cfg.group("payment-service"), orders) == (end, end)
    else:
        stalled = redis_group(redis_url, orders, cfg.group("analytics-service"))
        assert stalled["lag"] > 0 and stalled["entries-read"] > 0
        healthy = redis_group(redis_url, orders, cfg.group("payment-service"))
        assert healthy["lag"] == 0 and healthy["pending"] == 0


@pytest.mark.broker
@pytest.mark.parametrize("broker", BROKERS)
def test_declined_payments_are_retried_then_dead_lettered_and_acked(
        declined, broker, kafka_bootstrap, redis_url) -> None:
    cfg, stats, pending_seen = declined
    mine = stats["by_broker"][broker]
    n = mine["published"]["OrderPlaced"]
    group, orders = cfg.group("payment-service"), cfg.topic("orders")
    assert n >= 10 and set(mine["published"]) == {"OrderPlaced"}
    assert mine["dead_lettered_by_group"] == {group: n}
    assert mine["retries"][group] == n * (cfg.max_attempts - 1)
    if broker == "kafka":
        originals = {(r["partition"], r["offset"]): r for r in read_kafka(kafka_bootstrap, orders)}
        dlq = read_kafka(kafka_bootstrap, orders + ".DLT")
        assert len(dlq) == n
        for r in dlq:
            h = r["headers"]
            assert h["kafka_dlt-exception-fqcn"] == b"simulator.services.PaymentDeclinedError"
            assert h["kafka_dlt-exception-message"].startswith(b"card declined: ")
            assert h["kafka_dlt-original-consumer-group"].decode() == group
            assert len(h["kafka_dlt-original-partition"]) == 4
            assert len(h["kafka_dlt-original-offset"]) == 8
            key = (struct.unpack(">i", h["kafka_dlt-original-partition"])[0],
                   struct.unpack(">q", h["kafka_dlt-original-offset"])[0])
            original = originals[key]
            assert r["value"] == original["value"] and r["key"] == original["key"]
            for name in ("traceparent", "x-correlation-id", "event_type"):  # kept
                assert h[name] == original["headers"][name]
        committed, end = kafka_committed(kafka_bootstrap, group, orders)
        assert committed == end == n
    else:
        dlq = [r["fields"] for r in read_redis(redis_url, orders + ".dlq")]
        assert len(dlq) == n
        originals = {r["id"]: r["fields"] for r in read_redis(redis_url, orders)}
        for f in dlq:
            original = originals[f["original_id"].decode()]
            assert f["envelope"] == original["envelope"]
            assert f["traceparent"] == original["traceparent"]
            assert f["group"].decode() == group and f["attempts"] == str(cfg.max_attempts).encode()
            assert f["error"].startswith(b"PaymentDeclinedError: card declined: ")
        info = redis_group(redis_url, orders, group)
        assert info["pending"] == 0 and info["lag"] == 0
        assert max(pending_seen) > 0  # retried entries waited in the PEL


@pytest.mark.broker
@pytest.mark.parametrize("broker", BROKERS)
def test_inventory_failures_are_compensated_by_refunds(
        compensated, broker, kafka_bootstrap, redis_url) -> None:
    cfg, stats = compensated
    mine = stats["by_broker"][broker]
    n = mine["published"]["OrderPlaced"]
    assert n >= 10
    assert mine["published"] == {"OrderPlaced": n, "PaymentCharged": n,
                                 "InventoryReservationFailed": n, "PaymentRefunded": n}
    assert mine["handled"][cfg.group("email-service")] == n  # refund emails
    events = pipeline_events(broker, addr_of(broker, kafka_bootstrap, redis_url), cfg.prefix)
    refunds = [e for e in events if e["event"]["event_type"] == "PaymentRefunded"]
    by_corr = defaultdict(list)
    for e in events:
        by_corr[e["event"]["correlation_id"]].append(e)
    assert len(refunds) == n
    for refund in refunds:
        assert refund["topic"] == "payments" and refund["event"]["source"] == "payment-service"
        chain = by_corr[refund["event"]["correlation_id"]]
        assert sorted(e["event"]["event_type"] for e in chain) == sorted(
            ["OrderPlaced", "PaymentCharged", "InventoryReservationFailed", "PaymentRefunded"])
        assert len({envelope.parse_traceparent(e["traceparent"])[0] for e in chain}) == 1
