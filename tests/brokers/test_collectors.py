"""Collectors against the real Redis 7 and Kafka 4 brokers; read-only is proven here."""
import json
import uuid

import pandas as pd
import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from eventscope.collectors.kafka.events import KafkaEventsCollector
from eventscope.collectors.kafka.offsets import KafkaOffsetsCollector
from eventscope.collectors.redis.streams import RedisStreamsCollector

pytestmark = pytest.mark.broker
TP = "00-" + "c" * 32 + "-" + "d" * 16 + "-01"


def envelope(i, cid="corr-1", source="order-service"):
    return json.dumps({"event_type": "OrderPlaced", "schema_version": 2, "event_id": f"evt_{i}",
                       "timestamp": "2026-11-28T10:00:00.000Z", "source": source,
                       "correlation_id": cid, "data": {"order_id": i}})


@pytest.fixture
def kafka_setup(kafka_admin, kafka_bootstrap):
    """Fresh topics with 40 messages, a DLQ, and a group that consumed 15 and committed."""
    orders, dlq, group = (f"orders-{uuid.uuid4().hex[:6]}", None, f"g-{uuid.uuid4().hex[:6]}")
    dlq = orders + ".DLT"
    for fut in kafka_admin.create_topics([NewTopic(orders, 2, 1), NewTopic(dlq, 1, 1)]).values():
        fut.result()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(40):
        producer.produce(orders, envelope(i).encode(), partition=i % 2,
                         headers=[("traceparent", TP.encode())])
    producer.produce(dlq, b"\x00\xffnot json", headers=[("kafka_dlt-exception-message", b"card declined"),
                                                         ("kafka_dlt-original-topic", orders.encode())])
    producer.produce(orders, b"<script>alert(1)</script>", partition=0)
    producer.flush(10)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(orders, 0, 15)], asynchronous=False)
    consumer.close()
    return {"orders": orders, "dlq": dlq, "group": group}


def test_kafka_offsets_lag_and_unknown_partitions(kafka_admin, kafka_setup):
    out = KafkaOffsetsCollector(kafka_admin, topics="^" + kafka_setup["orders"]).collect()
    lag = out["lag"][out["lag"]["group"] == kafka_setup["group"]].sort_values("partition")
    assert list(lag["partition"]) == [0, 1]
    p0, p1 = lag.iloc[0], lag.iloc[1]
    assert (p0["committed"], p0["end"], p0["lag"]) == (15, 21, 6)
    assert pd.isna(p1["committed"]) and pd.isna(p1["lag"])  # no commit: unknown, not a huge number
    assert p0["group_state"] == "Empty" and p0["members"] == 0
    topics = out["topics"][out["topics"]["topic"] == kafka_setup["orders"]].set_index("partition")
    assert topics.loc[0, "end"] == 21 and topics.loc[1, "end"] == 20


def test_kafka_events_and_dlq(kafka_bootstrap, kafka_setup):
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap},
                                     topics=f"^{kafka_setup['orders']}", dlq_pattern=r"\.DLT$")
    try:
        out = collector.collect()
    finally:
        collector.close()
    events = out["events"]
    assert len(events) == 42
    good = events[events["event_type"] == "OrderPlaced"]
    assert len(good) == 40 and set(good["correlation_id"]) == {"corr-1"}
    assert set(good["trace_id"]) == {"c" * 32}
    bad = events[events["event_type"] == "<undecodable>"]
    assert len(bad) == 2 and bad["decode_error"].str.len().gt(0).all()
    dead = events[events["dead_letter"]]
    assert list(dead["dlq_reason"]) == ["card declined"]
    dlq = out["dlq"].iloc[0]
    assert (dlq["dlq"], dlq["depth"], dlq["source_topic"]) == (kafka_setup["dlq"], 1, kafka_setup["orders"])
    assert json.loads(dlq["reasons"]) == {"card declined": 1}


def group_offsets(admin, group):
    from confluent_kafka import ConsumerGroupTopicPartitions
    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
    return sorted((tp.topic, tp.partition, tp.offset) for tp in res.topic_partitions)


def test_kafka_collection_is_read_only(kafka_admin, kafka_bootstrap, kafka_setup):
    groups_before = {g.group_id for g in kafka_admin.list_consumer_groups().result().valid}
    offsets_before = group_offsets(kafka_admin, kafka_setup["group"])
    topics_before = set(kafka_admin.list_topics(timeout=10).topics)
    events = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap})
    offsets = KafkaOffsetsCollector(kafka_admin)
    for _ in range(3):
        events.collect()
        offsets.collect()
    events.close()
    assert {g.group_id for g in kafka_admin.list_consumer_groups().result().valid} == groups_before
    assert group_offsets(kafka_admin, kafka_setup["group"]) == offsets_before
    assert set(kafka_admin.list_topics(timeout=10).topics) == topics_before


@pytest.fixture
def redis_setup(redis_client):
    r = redis_client
    for i in range(30):
        r.xadd("orders", {"envelope": envelope(i), "traceparent": TP})
    r.xadd("orders", {"envelope": "{truncated", "traceparent": "garbage"})
    r.xgroup_create("orders", "payment-service", id="0")
    r.xgroup_create("orders", "late-joiner", id="$")
    r.xreadgroup("payment-service", "worker-1", {"orders": ">"}, count=12)
    r.xadd("orders.dlq", {"envelope": envelope(99), "error": "card declined", "original_stream": "orders"})
    r.set("not-a-stream", "x")
    return r


def test_redis_streams_lag_events_dlq(redis_url, redis_setup):
    import redis
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url))
    out = collector.collect()
    lag = out["lag"].set_index("group")
    assert (lag.loc["payment-service", "committed"], lag.loc["payment-service", "lag"]) == (12, 19)
    assert lag.loc["payment-service", "pending"] == 12 and lag.loc["payment-service", "members"] == 1
    assert lag.loc["payment-service", "lag_seconds"] >= 0
    assert lag.loc["late-joiner", "lag"] == 0 or pd.isna(lag.loc["late-joiner", "lag"])
    assert set(out["topics"]["topic"]) == {"orders", "orders.dlq"}
    events = out["events"]
    assert len(events) == 32
    assert (events["event_type"] == "<undecodable>").sum() == 1
    dlq = out["dlq"].iloc[0]
    assert (dlq["dlq"], dlq["depth"], dlq["source_topic"]) == ("orders.dlq", 1, "orders")
    assert json.loads(dlq["reasons"]) == {"card declined": 1}
    redis_setup.xadd("orders", {"envelope": envelope(100)})
    again = collector.collect()
    assert len(again["events"]) == 1  # only what is new since the last sample


def test_redis_collection_is_read_only(redis_url, redis_setup):
    import redis
    r = redis_setup

    def state():
        groups = r.xinfo_groups("orders")
        pending = r.xpending_range("orders", "payment-service", min="-", max="+", count=100)
        return groups, [(p["message_id"], p["consumer"], p["times_delivered"]) for p in pending], \
            r.xinfo_consumers("orders", "payment-service")[0]["pending"], sorted(r.keys())

    before = state()
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url))
    for _ in range(3):
        collector.collect()
    assert state() == before


def test_redis_consumers_and_stuck_entries(redis_url, redis_setup):
    import redis
    r = redis_setup
    # deliver the same pending entries twice more (XCLAIM bumps the delivery count): 3 deliveries
    pending = r.xpending_range("orders", "payment-service", min="-", max="+", count=2)
    ids = [p["message_id"] for p in pending]
    for _ in range(2):
        r.xclaim("orders", "payment-service", "worker-2", min_idle_time=0, message_ids=ids)
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url), stuck_min_deliveries=3,
                                      stuck_idle_s=3600)
    out = collector.collect()
    stuck = out["stuck"]
    assert sorted(stuck["entry_id"]) == sorted(ids)
    assert set(stuck["deliveries"]) == {3} and set(stuck["consumer"]) == {"worker-2"}
    consumers = out["consumers"].set_index("consumer")
    assert consumers.loc["worker-1", "pending"] == 10 and consumers.loc["worker-2", "pending"] == 2
    assert (consumers["group"] == "payment-service").all()


def test_kafka_members_with_client_id_host_and_assignment(kafka_admin, kafka_bootstrap, kafka_setup):
    import time
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": kafka_setup["group"] + "-live",
                         "client.id": "billing-worker-7", "auto.offset.reset": "earliest"})
    consumer.subscribe([kafka_setup["orders"]])
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.5)
    try:
        out = KafkaOffsetsCollector(kafka_admin, topics="^" + kafka_setup["orders"]).collect()
    finally:
        consumer.close()
    members = out["consumers"][out["consumers"]["group"] == kafka_setup["group"] + "-live"]
    assert list(members["consumer"]) == ["billing-worker-7"]
    assert members.iloc[0]["assignment"] == f"{kafka_setup['orders']}:0,1"
    assert members.iloc[0]["host"] and members.iloc[0]["member_id"].startswith("billing-worker-7-")


def test_transaction_markers_do_not_leave_a_lag_of_one(kafka_admin, kafka_bootstrap):
    topic, group = f"tx-{uuid.uuid4().hex[:6]}", f"tx-reader-{uuid.uuid4().hex[:6]}"
    kafka_admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"tx-{topic}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, f"m{i}".encode())
    producer.commit_transaction(30)  # offsets 0-4 are records, offset 5 is the commit marker
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)  # "last record + 1"
    consumer.close()
    plain = KafkaOffsetsCollector(kafka_admin, topics=f"^{topic}$").collect()["lag"]
    assert plain[plain["group"] == group].iloc[0]["lag"] == 1  # what a naive reading reports
    probed = KafkaOffsetsCollector(kafka_admin, topics=f"^{topic}$",
                                   probe_conf={"bootstrap.servers": kafka_bootstrap})
    first = probed.collect()["lag"].set_index("group").loc[group]
    assert first["lag"] == 1  # one sample cannot tell a frozen marker from a slow consumer
    row = probed.collect()["lag"].set_index("group").loc[group]
    assert (row["committed"], row["end"], row["lag"]) == (5, 6, 0)
    # a real unread record is still lag
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
    consumer.close()
    rows = [probed.collect()["lag"].set_index("group").loc[group] for _ in range(2)]
    probed.close()
    assert [r["lag"] for r in rows] == [3, 3]
    assert group_offsets(kafka_admin, group) == [(topic, 0, 3)]  # the probe committed nothing


def test_redis_lag_seconds_is_the_age_of_the_oldest_undelivered_entry(redis_url, redis_client):
    import time

    import redis
    r = redis_client
    old_ms = int(time.time() * 1000) - 42_000
    r.xadd("clock", {"envelope": "{}"}, id=f"{old_ms}-0")
    r.xadd("clock", {"envelope": "{}"})
    r.xgroup_create("clock", "reader", id="0")
    r.xgroup_create("clock", "late", id="$")  # Redis reports no lag for it until it reads
    row = RedisStreamsCollector(redis.Redis.from_url(redis_url)).collect()["lag"].set_index("group")
    assert row.loc["reader", "lag"] == 2
    assert 41.5 <= row.loc["reader", "lag_seconds"] <= 45
    assert row.loc["late", "lag"] == 0 and row.loc["late", "lag_seconds"] == 0.0


class _CountingConsumer:
    """The collector's consumer, counting ``consume`` calls (everything else passes through)."""

    def __init__(self, consumer):
        self._consumer, self.consumes = consumer, 0

    def consume(self, *args, **kwargs):
        self.consumes += 1
        return self._consumer.consume(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._consumer, name)


def test_kafka_events_runs_read_to_the_known_end_then_stop(kafka_admin, kafka_bootstrap):
    """Each run reads what the client knows is there and stops: every message exactly once over
    the runs, including a transaction whose commit marker is never delivered as a message, and
    a run with nothing new does not even poll."""
    topic = f"tail-{uuid.uuid4().hex[:6]}"
    for fut in kafka_admin.create_topics([NewTopic(topic, 3, 1)]).values():
        fut.result()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(300):
        producer.produce(topic, envelope(i).encode(), partition=i % 3)
    producer.flush(10)
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics=f"^{topic}$")
    seen = []
    try:
        first = collector.collect()["events"]
        assert len(first) == 300  # new partitions: waited for until they reported their end
        seen += list(first["event_id"])
        txn = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"t-{topic}"})
        txn.init_transactions(10)
        txn.begin_transaction()
        for i in range(300, 450):
            txn.produce(topic, envelope(i).encode(), partition=i % 3)
        txn.commit_transaction(10)
        for _ in range(40):  # the new messages arrive with the next fetches
            seen += list(collector.collect()["events"]["event_id"])
            if len(seen) >= 450:
                break
        assert sorted(seen) == sorted(f"evt_{i}" for i in range(450))  # all, none twice
        for _ in range(3):  # settle: the client learns the end offsets past the commit markers
            assert collector.collect()["events"].empty
        collector.consumer = counting = _CountingConsumer(collector.consumer)
        assert collector.collect()["events"].empty and counting.consumes == 0
    finally:
        collector.close()


def test_times_no_timestamp_can_hold_are_unknown_not_a_crash(redis_url, redis_client, kafka_admin, kafka_bootstrap):
    """A Redis entry ID set by hand to the largest one Redis takes, and a Kafka record whose
    producer set a CreateTime far beyond the year 2262: the events are read, their broker time is
    unknown (NaT), and every other event of the pass keeps its time."""
    import redis
    stream = f"far-{uuid.uuid4().hex[:6]}"
    redis_client.xadd(stream, {"envelope": envelope(1)}, id="1795000000000-0")
    redis_client.xadd(stream, {"envelope": envelope(2)}, id="18446744073709551615-0")
    out = RedisStreamsCollector(redis.Redis.from_url(redis_url), pattern=stream).collect()
    events = out["events"].set_index("offset")
    assert list(events.index) == ["1795000000000-0", "18446744073709551615-0"]
    assert events.loc["1795000000000-0", "broker_at"] == pd.Timestamp(1795000000000, unit="ms", tz="UTC")
    assert pd.isna(events.loc["18446744073709551615-0", "broker_at"])
    assert (events["decode_error"] == "").all() and len(out["lag"]) == 0

    topic = f"far-{uuid.uuid4().hex[:6]}"  # a topic that takes any CreateTime (Kafka 4 refuses > 1 h ahead)
    new = NewTopic(topic, 1, 1, config={"message.timestamp.after.max.ms": str(2**63 - 1)})
    for fut in kafka_admin.create_topics([new]).values():
        fut.result()
    producer, errors = Producer({"bootstrap.servers": kafka_bootstrap}), []
    for i, ts in ((3, 2**62), (4, 1795000000000)):
        producer.produce(topic, envelope(i).encode(), timestamp=ts, on_delivery=lambda err, _: errors.append(err))
    producer.flush(10)
    assert errors == [None, None]
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics=f"^{topic}$")
    try:
        events = collector.collect()["events"].set_index("offset")
    finally:
        collector.close()
    assert pd.isna(events.loc["0", "broker_at"])
    assert events.loc["1", "broker_at"] == pd.Timestamp(1795000000000, unit="ms", tz="UTC")
    assert list(events["event_id"]) == ["evt_3", "evt_4"]


def test_many_busy_streams_share_one_budget_per_sample(redis_client, redis_url):
    """2,000 streams with news must not make one sample read 50 entries of each: the streams
    take turns within max_events, and over enough samples every entry is read exactly once."""
    for s in range(30):
        for i in range(12):
            redis_client.xadd(f"busy:{s:02d}", {"envelope": json.dumps({"event_id": f"e{s}-{i}"})})
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url), max_events=100)
    seen = []
    for _ in range(20):
        events = collector.collect()["events"]
        assert len(events) <= 100, len(events)
        seen += list(events["event_id"])
    assert sorted(seen) == sorted(f"e{s}-{i}" for s in range(30) for i in range(12))


@pytest.mark.broker
def test_a_redis_key_that_is_not_utf8_is_watched_not_fatal(redis_url):
    """Redis keys are bytes: one that is not UTF-8 is shown escaped and read like any other,
    and the streams beside it are not lost."""
    client = redis.Redis.from_url(redis_url)
    prefix = f"utf{uuid.uuid4().hex[:5]}-"
    odd, plain = (prefix + "bad-").encode() + b"\xff\xfe-key", prefix + "plain"
    for key in (odd, plain):
        client.xadd(key, {"envelope": json.dumps({"event_type": "OrderPlaced", "correlation_id": "c1"})})
        client.xgroup_create(key, "workers", id="0")
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url), pattern=prefix + "*", lookback_s=3600)
    frames = collector.collect()
    shown = prefix + "bad-\\xff\\xfe-key"
    assert set(frames["lag"]["topic"]) == {shown, plain}
    assert set(frames["events"]["topic"]) == {shown, plain}
    assert frames["lag"].set_index("topic").loc[shown, "lag"] == 1


def test_a_refused_redis_command_fails_the_sample_and_says_which(redis_url, redis_client):
    """An ACL user without XPENDING (or any command the collector needs) gets a failed sample
    that names the command, not a sample with every health row ok and the pending entries
    silently missing; a stream deleted in the middle of a sample is still just skipped."""
    prefix = f"acl{uuid.uuid4().hex[:5]}-"
    redis_client.xadd(prefix + "orders", {"envelope": "{}"})
    redis_client.xgroup_create(prefix + "orders", "workers", id="0")
    redis_client.xreadgroup("workers", "w1", {prefix + "orders": ">"})  # one pending entry
    user = f"nopending{uuid.uuid4().hex[:5]}"
    redis_client.execute_command("ACL", "SETUSER", user, "reset", "on", ">pw", "~*", "-@all", "+@read",
                                 "-xpending")
    limited = redis.Redis.from_url(redis_url.replace("redis://", f"redis://{user}:pw@", 1))
    try:
        with pytest.raises(redis.exceptions.NoPermissionError, match="(?i)xpending"):
            RedisStreamsCollector(limited, pattern=prefix + "*").collect()
    finally:
        limited.close()
        redis_client.execute_command("ACL", "DELUSER", user)

    class DeletesMidSample(redis.Redis):
        """Deletes the stream as soon as the collector has listed it."""
        def scan_iter(self, *args, **kwargs):
            keys = list(super().scan_iter(*args, **kwargs))
            redis_client.delete(prefix + "gone")
            return iter(keys)
    redis_client.xadd(prefix + "gone", {"envelope": "{}"})
    frames = RedisStreamsCollector(DeletesMidSample.from_url(redis_url), pattern=prefix + "*").collect()
    assert set(frames["lag"]["topic"]) == {prefix + "orders"}
