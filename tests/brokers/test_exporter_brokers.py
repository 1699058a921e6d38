"""``/metrics`` of what the collectors read from a real Kafka and Redis.

The Kafka partition series name the member each partition is assigned to (its host and
client ID), as kafka-lag-exporter does; the Redis stream series carry redis_exporter's
names with the values Redis itself reports in XINFO."""
from __future__ import annotations

import time
import uuid

import pandas as pd
import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import NewTopic
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from eventscope.collectors.kafka.offsets import KafkaOffsetsCollector
from eventscope.collectors.redis.streams import RedisStreamsCollector
from eventscope.exporter import registry_for
from eventscope.recorder import Recorder
from eventscope.store import Store


def _scrape(store: Store, config=None) -> dict[str, list]:
    text = generate_latest(registry_for(store, config)).decode()
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def _record(store: Store, frames: dict, kind: str) -> None:
    """What the runner does with a collector's output: each row gets its cluster's kind."""
    for frame in frames.values():
        if "kind" in frame.columns:
            frame["kind"] = pd.array([kind] * len(frame), dtype="string")
    Recorder(store).record(frames)


def test_kafka_partitions_name_their_member(tmp_path, kafka_admin, kafka_bootstrap):
    topic, group = f"members-{uuid.uuid4().hex[:6]}", f"billing-{uuid.uuid4().hex[:6]}"
    kafka_admin.create_topics([NewTopic(topic, 2, 1)])[topic].result()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(10):
        producer.produce(topic, b"x", partition=i % 2)
    producer.flush(10)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group, "client.id": "billing-worker-7",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    read, deadline = 0, time.monotonic() + 30
    while read < 6 and time.monotonic() < deadline:
        if (message := consumer.poll(0.5)) is not None and not message.error():
            read += 1
    consumer.commit(asynchronous=False)
    try:
        frames = KafkaOffsetsCollector(kafka_admin, topics="^" + topic).collect()
    finally:
        consumer.close()
    store = Store(tmp_path)
    _record(store, frames, "kafka")
    lag = [s for s in _scrape(store)["kafka_consumergroup_group_offset"] if s.labels["group"] == group]
    assert sorted(s.labels["partition"] for s in lag) == ["0", "1"]
    for s in lag:
        assert s.labels["client_id"] == "billing-worker-7" and s.labels["member_host"], s.labels
        # the member ID the broker gave the consumer: client id, a dash and a UUID
        assert s.labels["cluster_name"] == "kafka" and s.labels["consumer_id"].startswith("billing-worker-7-")
    assert sum(s.value for s in lag) == read


def test_redis_stream_metrics_say_what_xinfo_says(tmp_path, redis_url):
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    key, empty = f"mail-{uuid.uuid4().hex[:6]}", f"audit-{uuid.uuid4().hex[:6]}"
    for i in range(12):
        r.xadd(key, {"n": str(i)})
    r.xadd(empty, {"n": "0"})
    r.xgroup_create(key, "mailer", id="0")
    r.xreadgroup("mailer", "worker-a", {key: ">"}, count=5)
    r.xreadgroup("mailer", "worker-b", {key: ">"}, count=2)
    r.xack(key, "mailer", r.xpending_range(key, "mailer", "-", "+", 1, consumername="worker-b")[0]["message_id"])
    try:
        frames = RedisStreamsCollector(redis.Redis.from_url(redis_url), streams=[key, empty]).collect()
        info, (group,) = r.xinfo_stream(key), r.xinfo_groups(key)
        consumers = {c["name"]: c for c in r.xinfo_consumers(key, "mailer")}
    finally:
        r.delete(key, empty)
    store = Store(tmp_path)
    _record(store, frames, "redis")
    scraped = _scrape(store)

    def one(name, **labels):
        (value,) = [s.value for s in scraped[name] if labels.items() <= s.labels.items()]
        return value
    stream = dict(cluster_name="redis", db="db0", stream=key)
    assert one("redis_stream_length", **stream) == info["length"] == 12
    assert one("redis_stream_entries_added_total", **stream) == info["entries-added"]
    assert one("redis_stream_groups", **stream) == info["groups"] == 1
    assert one("redis_stream_groups", stream=empty) == 0
    assert one("redis_stream_group_consumers", group="mailer", **stream) == group["consumers"] == 2
    assert one("redis_stream_group_messages_pending", group="mailer", **stream) == group["pending"] == 6
    assert one("redis_stream_group_entries_read", group="mailer", **stream) == group["entries-read"] == 7
    assert one("redis_stream_group_lag", group="mailer", **stream) == group["lag"] == 5
    for name, c in consumers.items():
        assert one("redis_stream_group_consumer_messages_pending", consumer=name, **stream) == c["pending"]
        assert 0 <= one("redis_stream_group_consumer_idle_seconds", consumer=name, **stream) <= c["idle"] / 1000
