"""Event tailing for traces on the real brokers: lookback, topic/stream globs, sampling by chain."""
from __future__ import annotations

import json
import time
import uuid

import pytest
import redis
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from eventscope.collectors import events_common
from eventscope.collectors.events_common import in_sample
from eventscope.collectors.kafka.events import KafkaEventsCollector
from eventscope.collectors.redis.streams import RedisStreamsCollector

pytestmark = pytest.mark.broker


def envelope(cid: str, i: int) -> bytes:
    return json.dumps({"event_type": "OrderPlaced", "event_id": f"evt_{cid}_{i}", "correlation_id": cid,
                       "source": "order-service", "timestamp": "2026-11-28T10:00:00.000Z", "data": {}}).encode()


def test_kafka_lookback_and_globs(kafka_admin, kafka_bootstrap):
    base = f"lb{uuid.uuid4().hex[:6]}"
    topics = [f"{base}-orders", f"{base}-audit"]
    for fut in kafka_admin.create_topics([NewTopic(t, 1, 1) for t in topics]).values():
        fut.result()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    old_ms = int((time.time() - 3600) * 1000)
    for topic in topics:
        for i in range(5):  # an hour old: before the lookback
            producer.produce(topic, envelope("old", i), timestamp=old_ms + i)
        for i in range(3):
            producer.produce(topic, envelope("new", i))
    producer.flush(10)
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + base,
                                     lookback_s=600, globs=["*-orders"])
    try:
        events = collector.collect()["events"]
    finally:
        collector.close()
    assert set(events["topic"]) == {f"{base}-orders"}  # the glob left the audit topic out
    assert sorted(events["event_id"]) == ["evt_new_0", "evt_new_1", "evt_new_2"]  # the lookback


def test_redis_lookback_and_globs(redis_client):
    old_ms = int((time.time() - 3600) * 1000)
    for stream in ("orders", "audit"):
        for i in range(5):
            redis_client.xadd(stream, {"envelope": envelope("old", i)}, id=f"{old_ms + i}-0")
        for i in range(3):
            redis_client.xadd(stream, {"envelope": envelope("new", i)})
    collector = RedisStreamsCollector(redis_client, lookback_s=600, globs=["ord*"])
    events = collector.collect()["events"]
    assert set(events["topic"]) == {"orders"}
    assert sorted(events["event_id"]) == ["evt_new_0", "evt_new_1", "evt_new_2"]


def masking_counter(monkeypatch) -> list:
    """The correlation ID of every payload the collectors mask (the costly part of a row)."""
    calls = []
    real = events_common.masked_payload

    def counting(body, *args, **kwargs):
        calls.append(body.get("correlation_id") if isinstance(body, dict) else None)
        return real(body, *args, **kwargs)

    monkeypatch.setattr(events_common, "masked_payload", counting)
    return calls


def test_sampling_keeps_whole_chains(redis_client, redis_url, monkeypatch):
    masked = masking_counter(monkeypatch)
    cids = [str(uuid.uuid4()) for _ in range(200)]
    for stream in ("orders", "payments", "shipments"):
        for n, cid in enumerate(cids):
            redis_client.xadd(stream, {"envelope": envelope(cid, n)})
    redis_client.xadd("orders", {"envelope": b"\xff not json"})  # no correlation ID: always kept
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url), sample_ratio=0.25)  # bytes, as in use
    events = collector.collect()["events"]
    per_chain = events.dropna(subset=["correlation_id"]).groupby("correlation_id")["topic"].nunique()
    assert (per_chain == 3).all()  # every kept chain is complete on all three streams
    assert 20 <= len(per_chain) <= 80  # about a quarter of the 200 chains
    assert set(per_chain.index) == {c for c in cids if in_sample(c, 0.25)}  # the same choice everywhere
    assert (events["decode_error"] != "").sum() == 1
    assert len(masked) == len(events)  # the events left out were never masked


def test_kafka_sampling_decides_before_masking_and_counts_every_dead_letter(kafka_admin, kafka_bootstrap,
                                                                            monkeypatch):
    masked = masking_counter(monkeypatch)
    base = f"sm{uuid.uuid4().hex[:6]}"
    topics = [f"{base}-orders", f"{base}-orders.DLT"]
    for fut in kafka_admin.create_topics([NewTopic(t, 1, 1) for t in topics]).values():
        fut.result()
    cids = [str(uuid.uuid4()) for _ in range(200)]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for n, cid in enumerate(cids):
        producer.produce(topics[0], envelope(cid, n))
        producer.produce(topics[1], envelope(cid, n), headers=[("kafka_dlt-exception-fqcn", b"x.DeclinedError")])
    producer.flush(10)
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + base,
                                     lookback_s=600, sample_ratio=0.25)
    try:
        out = collector.collect()
    finally:
        collector.close()
    events, dlq = out["events"], out["dlq"].set_index("dlq")
    kept = {c for c in cids if in_sample(c, 0.25)}
    assert set(events["correlation_id"]) == kept and len(events) == 2 * len(kept)
    assert sorted(masked) == sorted(events["correlation_id"])  # only the kept events were masked
    # the DLQ summary counts every dead letter, sampled or not
    assert json.loads(dlq.loc[topics[1], "reasons"]) == {"DeclinedError": 200}  # the class, short
    assert dlq.loc[topics[1], "source_topic"] == topics[0]
