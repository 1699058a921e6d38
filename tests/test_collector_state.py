"""Collectors forget what no longer exists: per-stream, per-topic and per-reason state of
a cluster where streams, topics and failure messages come and go stays bounded."""
from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pytest
import redis
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from eventscope.collectors.events_common import BOOK_REASONS_KEPT, OTHER_REASONS, DeadLetterBook
from eventscope.collectors.kafka.events import KafkaEventsCollector
from eventscope.collectors.redis.streams import RedisStreamsCollector
from eventscope.collectors.kafka.timelag import OffsetClocks


def test_a_dlq_whose_every_message_has_its_own_reason_keeps_a_bounded_book():
    book = DeadLetterBook()
    for i in range(5 * BOOK_REASONS_KEPT):
        book.count("card declined" if i % 2 else f"unique failure {chr(65 + i % 26)}{i:x}z", f"topic-{i}", None)
    assert len(book.reasons) <= 2 * BOOK_REASONS_KEPT and len(book.source_topics) <= 2 * BOOK_REASONS_KEPT
    assert sum(book.reasons.values()) == 5 * BOOK_REASONS_KEPT, "every dead letter is still counted"
    assert book.reasons["card declined"] == 5 * BOOK_REASONS_KEPT // 2, "the common reason is exact"
    assert book.reasons[OTHER_REASONS] > 0
    row = book.row(None, "kafka", "kafka", "orders.DLT", 10, None)
    assert next(iter(json.loads(row["reasons"]))) == "card declined"


def test_offset_clocks_of_deleted_partitions_go_and_the_others_keep_their_points():
    clocks = OffsetClocks(max_points=4)
    keys = [("t", p) for p in range(6)]
    for step in range(3):
        clocks.record(clocks.rows_of(keys), np.arange(6) * 10 + step, 100.0 + step)
    before = clocks.times_of(clocks.rows_of([("t", 4)]), np.array([41]))
    clocks.retain([("t", 4), ("t", 1), ("gone", 0)])
    assert set(clocks.rows) == {("t", 4), ("t", 1)} and len(clocks.counts) == 2
    assert clocks.times_of(clocks.rows_of([("t", 4)]), np.array([41])).tolist() == before.tolist() == [101.0]


@pytest.mark.broker
def test_redis_state_of_deleted_streams_and_groups_goes(redis_url, redis_client):
    prefix = f"st{uuid.uuid4().hex[:5]}-"
    for name in ("orders", "jobs-1", "jobs-1.dlq"):
        redis_client.xadd(prefix + name, {"envelope": "{}", "error": "boom"})
        redis_client.xgroup_create(prefix + name, "workers", id="0")
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url), pattern=prefix + "*", lookback_s=3600)
    collector.collect()
    assert {prefix + "jobs-1", prefix + "jobs-1.dlq"} <= set(collector.positions)
    assert prefix + "jobs-1.dlq" in collector.books
    assert (prefix + "jobs-1", "workers") in collector.first_unread_cache
    redis_client.delete(prefix + "jobs-1", prefix + "jobs-1.dlq")
    redis_client.xgroup_destroy(prefix + "orders", "workers")
    collector.collect()
    assert set(collector.positions) == {prefix + "orders"}
    assert set(collector.books) == set()
    assert collector.first_unread_cache == {}


@pytest.mark.broker
def test_kafka_events_state_of_deleted_topics_goes(kafka_admin, kafka_bootstrap):
    prefix = f"st{uuid.uuid4().hex[:5]}-"
    topics = [prefix + "orders", prefix + "jobs-1", prefix + "jobs-1.DLT"]
    for fut in kafka_admin.create_topics([NewTopic(t, 2, 1) for t in topics]).values():
        fut.result()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for topic in topics:
        producer.produce(topic, b"{}", headers=[("kafka_dlt-exception-message", b"boom")])
    producer.flush(10)
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + prefix,
                                     dlq_pattern=r"\.DLT$")
    try:
        collector.collect()
        assert len(collector.assigned) == 6 and prefix + "jobs-1.DLT" in collector.books
        for fut in kafka_admin.delete_topics(topics[1:]).values():
            fut.result()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(collector.assigned) > 2:
            collector.collect()
            time.sleep(0.2)
        assert collector.assigned == {(prefix + "orders", 0), (prefix + "orders", 1)}
        assert set(collector._next) <= collector.assigned and set(collector._high) <= collector.assigned
        assert collector.books == {}
        producer.produce(prefix + "orders", b'{"event_type": "After"}', partition=0)
        producer.flush(10)
        deadline = time.monotonic() + 20
        seen = []
        while time.monotonic() < deadline and not seen:  # the rest is still read
            seen = collector.collect()["events"]["event_type"].tolist()
        assert seen == ["After"]
    finally:
        collector.close()
