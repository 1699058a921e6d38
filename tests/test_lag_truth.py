"""Lag against ground truth on the real brokers: seconds on a steady stream, STALL and STOP."""
import threading
import time
import uuid

import pandas as pd
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from eventscope.collectors.kafka.offsets import KafkaOffsetsCollector
from eventscope.collectors.redis.streams import RedisStreamsCollector
from eventscope import schemas
from eventscope.analysis.lag import latest_lag
from eventscope.simulator import SimulatorConfig, run_simulation

pytestmark = pytest.mark.broker


def test_kafka_lag_seconds_within_ten_percent_on_a_steady_stream(kafka_admin, kafka_bootstrap):
    topic, group = f"steady-{uuid.uuid4().hex[:6]}", f"steady-{uuid.uuid4().hex[:6]}"
    kafka_admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 0})
    collector = KafkaOffsetsCollector(kafka_admin, topics=f"^{topic}$")
    sent_at = {}  # offset -> produce time (ground truth, from the delivery report)

    def delivered(err, msg):
        if err is None:
            sent_at[msg.offset()] = msg.timestamp()[1] / 1000.0

    for step in range(30):  # 15 s of 20 messages/s, one sample per second
        for _ in range(10):
            producer.produce(topic, b"x", on_delivery=delivered)
            producer.poll(0)
            time.sleep(0.05)
        producer.flush(5)
        if step % 2 == 1:
            collector.collect()
    committed = min(sent_at) + 60  # a consumer 3 s into the stream
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, committed)], asynchronous=False)
    consumer.close()
    row = collector.collect()["lag"].set_index("group").loc[group]
    truth = time.time() - sent_at[committed]
    assert row["lag"] == max(sent_at) + 1 - committed
    assert abs(row["lag_seconds"] - truth) <= 0.10 * truth, (row["lag_seconds"], truth)


def test_stall_and_stop_on_the_real_brokers(kafka_bootstrap, redis_url):
    import redis
    prefix = f"st{uuid.uuid4().hex[:5]}-"
    # The stall starts once analytics has had ~30 orders, so it has committed on all three
    # partitions of orders: a partition it never committed on has no lag to judge and stays
    # UNKNOWN (lag.py), which is right but not what this test is about.
    sim = SimulatorConfig(rate=10, duration=11, seed=5, prefix=prefix, payment_failure_rate=0.0,
                          schedule=[(3.0, {"stall": {"analytics-service"}})])
    from confluent_kafka.admin import AdminClient
    kafka = KafkaOffsetsCollector(AdminClient({"bootstrap.servers": kafka_bootstrap}), topics="^" + prefix)
    rds = RedisStreamsCollector(redis.Redis.from_url(redis_url), pattern=prefix + "*", stuck_idle_s=3)
    frames = []

    def sample():
        for c in (kafka, rds):
            frames.append(c.collect()["lag"])

    done = threading.Event()
    thread = threading.Thread(target=lambda: (run_simulation(sim, kafka_bootstrap=kafka_bootstrap),
                                              done.set()))
    redis_thread = threading.Thread(target=run_simulation, args=(sim,), kwargs={"redis_url": redis_url})
    thread.start()
    redis_thread.start()
    stalled_view = analytics = None
    started = time.monotonic()
    while not done.is_set() and time.monotonic() - started < 120:
        sample()
        time.sleep(0.5)
        lag = schemas.conform("lag", pd.concat(frames, ignore_index=True))
        view = latest_lag(lag, stuck_after_s=3)
        analytics = view[(view["group"] == prefix + "analytics-service") & (view["broker"] == "kafka")]
        if not analytics.empty and (analytics["status"] == "STALL").all() and stalled_view is None:
            stalled_view = view
    thread.join(60)
    redis_thread.join(60)
    assert stalled_view is not None, f"the stalled Kafka consumer never showed as STALL:\n{analytics}"
    for _ in range(8):  # the pipeline has stopped: every consumer left or went idle
        sample()
        time.sleep(0.5)
    view = latest_lag(schemas.conform("lag", pd.concat(frames, ignore_index=True)), stuck_after_s=3)
    analytics = view[view["group"] == prefix + "analytics-service"].set_index("broker")["status"]
    assert set(analytics.loc[["kafka"]]) == {"STOP"}
    assert set(analytics.loc[["redis"]]) == {"STOP"}
    healthy = view[view["group"] == prefix + "payment-service"]
    assert set(healthy["status"]) == {"OK"} and (healthy["lag"] == 0).all()


def test_kafka_lag_seconds_of_a_group_stalled_before_eventscope_started(kafka_admin, kafka_bootstrap):
    """The committed offset is older than anything eventscope sampled: interpolation cannot
    date it, the record at the committed offset can, from the very first sample."""
    from eventscope.collectors.kafka.record_times import RecordTimes
    topic, group = f"stalled-{uuid.uuid4().hex[:6]}", f"stalled-{uuid.uuid4().hex[:6]}"
    kafka_admin.create_topics([NewTopic(topic, 2, 1)])[topic].result()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 0})
    hours_ago = int((time.time() - 3 * 3600) * 1000)
    for i in range(10):  # three hours ago, a second apart, on both partitions
        for p in (0, 1):
            producer.produce(topic, b"old", partition=p, timestamp=hours_ago + i * 1000)
    producer.flush(10)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 10)], asynchronous=False)
    consumer.close()
    for p in (0, 1):
        producer.produce(topic, b"new", partition=p)  # the stream went on without the group
    producer.flush(10)
    conf = {"bootstrap.servers": kafka_bootstrap}
    times = RecordTimes(conf)
    exact = KafkaOffsetsCollector(kafka_admin, topics=f"^{topic}$", record_times=times)
    plain = KafkaOffsetsCollector(kafka_admin, topics=f"^{topic}$")
    try:
        rows = exact.collect()["lag"].set_index("partition")
        truth = time.time() - (hours_ago + 3 * 1000) / 1000.0
        assert list(rows["lag"]) == [8, 1]
        assert abs(rows.loc[0, "lag_seconds"] - truth) <= 1.0, (rows.loc[0, "lag_seconds"], truth)
        # partition 1 waits on the record produced just now
        assert rows.loc[1, "lag_seconds"] <= 30
        assert pd.isna(plain.collect()["lag"].set_index("partition").loc[0, "lag_seconds"])
        # the record at an offset never changes: the next sample reads the cache, not the broker
        again = exact.collect()["lag"].set_index("partition")
        assert times.fetched == 0
        assert abs(again.loc[0, "lag_seconds"] - (time.time() - (hours_ago + 3000) / 1000.0)) <= 1.0
    finally:
        exact.close()
    # read-only: the fetching consumer never joined or committed as a group
    groups = {g.group_id for g in kafka_admin.list_consumer_groups().result().valid}
    assert not any(g.startswith("eventscope-times-") for g in groups)
