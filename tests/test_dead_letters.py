"""Dead-letter queues: reasons, masking, detection, and depth against ground truth."""
import json
import threading
import uuid

import pandas as pd
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from eventscope.collectors.kafka.events import KafkaEventsCollector
from eventscope import schemas
from eventscope.analysis import dlq as dlq_analysis
from eventscope.mask import headers_json, preview
from eventscope.simulator import SimulatorConfig, run_simulation


def test_preview_masks_personal_data_and_survives_binary():
    payload = json.dumps({"data": {"customer_email": "ann@example.com", "name": "Ann Lee",
                                   "note": "call bob@corp.io, card 4111 1111 1111 1111", "amount": 12}})
    shown = preview(payload.encode())
    assert "ann@example.com" not in shown and "Ann Lee" not in shown and "bob@corp.io" not in shown
    assert "4111" not in shown and '"amount": 12' in shown
    assert preview(b"\xff\xfe\x00binary").startswith("<9 bytes, not UTF-8")
    assert len(preview(b"x" * 10_000)) <= 300
    assert json.loads(headers_json({"x-user-email": b"a@b.c", "blob": b"\xff\x00"})) == \
        {"x-user-email": "***", "blob": "0xff00"}


@pytest.mark.broker
def test_spring_and_connect_dead_letters_group_by_reason(kafka_admin, kafka_bootstrap):
    run = uuid.uuid4().hex[:6]
    spring, connect = f"payments-{run}.DLT", f"connect-errors-{run}"  # the second has no DLQ-like name
    for fut in kafka_admin.create_topics([NewTopic(spring, 2, 1), NewTopic(connect, 1, 1)]).values():
        fut.result()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(6):
        producer.produce(spring, json.dumps({"event_type": "PaymentCharged", "correlation_id": f"c-{i}",
                                             "data": {"email": f"user{i}@example.com"}}).encode(),
                         partition=i % 2,
                         headers=[("kafka_dlt-exception-fqcn", b"com.acme.PaymentDeclinedException"),
                                  ("kafka_dlt-exception-message", f"card declined for order {1000 + i}".encode()),
                                  ("kafka_dlt-original-topic", f"payments-{run}".encode())])
    for i in range(3):
        producer.produce(connect, b"\x00\x01\x02 not json",
                         headers=[("__connect.errors.topic", b"orders"),
                                  ("__connect.errors.exception.class.name",
                                   b"org.apache.kafka.connect.errors.DataException"),
                                  ("__connect.errors.exception.message", b"Unknown magic byte!")])
    producer.flush(10)
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics=f"{run}",
                                     dlq_pattern=r"\.DLT$")
    try:
        out = collector.collect()
    finally:
        collector.close()
    rows = out["dlq"].set_index("dlq")
    assert rows.loc[spring, "depth"] == 6 and rows.loc[spring, "source_topic"] == f"payments-{run}"
    assert json.loads(rows.loc[spring, "reasons"]) == {"PaymentDeclinedException: card declined for order #": 6}
    assert rows.loc[connect, "depth"] == 3 and rows.loc[connect, "source_topic"] == "orders"
    assert json.loads(rows.loc[connect, "reasons"]) == {"DataException: Unknown magic byte!": 3}
    events = out["events"]
    dead = events[events["topic"] == spring]
    assert dead["dead_letter"].all() and not dead["preview"].str.contains("@example.com").any()
    assert set(dead["dlq_class"]) == {"com.acme.PaymentDeclinedException"}
    recent = dlq_analysis.recent_messages(events, "kafka", spring)
    assert len(recent) == 6 and recent["correlation_id"].notna().all()


def count_messages(bootstrap, topic, partitions):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{uuid.uuid4().hex}",
                         "enable.partition.eof": True, "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen, eof = 0, set()
    while len(eof) < partitions:
        msg = consumer.poll(5)
        assert msg is not None, "counting consumer timed out"
        if msg.error():
            assert msg.error().code() == KafkaError._PARTITION_EOF
            eof.add(msg.partition())
        else:
            seen += 1
    consumer.close()
    return seen


@pytest.mark.broker
def test_simulated_failure_burst_fills_the_dlq_to_the_true_depth(kafka_bootstrap, redis_url):
    import redis
    from eventscope.collectors.redis.streams import RedisStreamsCollector
    prefix = f"dl{uuid.uuid4().hex[:5]}-"
    sim = SimulatorConfig(rate=10, duration=4, seed=9, prefix=prefix, payment_failure_rate=0.5,
                          transient_failure_rate=0.0, malformed_rate=0.0)
    stats = {}
    threads = [threading.Thread(target=lambda: stats.update(kafka=run_simulation(sim, kafka_bootstrap=kafka_bootstrap))),
               threading.Thread(target=lambda: stats.update(redis=run_simulation(sim, redis_url=redis_url)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    dlq_topic = prefix + "orders.DLT"
    kafka = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + prefix,
                                 dlq_pattern=r"\.DLT$")
    try:
        out = kafka.collect()
    finally:
        kafka.close()
    truth = count_messages(kafka_bootstrap, dlq_topic, 3)
    assert truth > 0 and truth == stats["kafka"]["dead_lettered"].get(dlq_topic, truth)
    row = out["dlq"].set_index("dlq").loc[dlq_topic]
    assert row["depth"] == truth and row["source_topic"] == prefix + "orders"
    assert sum(json.loads(row["reasons"]).values()) == truth
    stream = prefix + "orders.dlq"
    client = redis.Redis.from_url(redis_url)
    rds = RedisStreamsCollector(client, pattern=prefix + "*").collect()["dlq"].set_index("dlq").loc[stream]
    assert rds["depth"] == client.xlen(stream) > 0
    assert all(r.startswith("PaymentDeclinedError: card declined") for r in json.loads(rds["reasons"]))


def test_summary_links_reprocessing_lag_and_pre_dlq_pressure():
    t0 = pd.Timestamp("2026-11-28T10:00:00Z")
    dlq = schemas.conform("dlq", [{"sampled_at": t0, "source": "redis", "broker": "redis", "dlq": "orders.dlq",
                                   "source_topic": "orders", "depth": 7, "reasons": "{}"}])
    lag = schemas.conform("lag", [{"sampled_at": t0, "source": "redis", "broker": "redis", "group": "replayer",
                                   "topic": "orders.dlq", "partition": 0, "committed": 3, "end": 7, "lag": 4}])
    stuck = schemas.conform("stuck", [{"sampled_at": t0, "source": "redis", "broker": "redis", "topic": "orders",
                                       "group": "payment-service", "entry_id": f"1-{i}", "consumer": "w",
                                       "idle_ms": 1, "deliveries": 5} for i in range(2)])
    row = dlq_analysis.to_rows(dlq_analysis.summary(dlq, lag=lag, stuck=stuck))[0]
    assert (row["unprocessed"], row["pre_dlq_pressure"]) == (4, 2)


@pytest.mark.broker
def test_hostile_dead_letters_are_counted_not_crashed_on(kafka_admin, kafka_bootstrap):
    topic = f"hostile-{uuid.uuid4().hex[:6]}.DLT"
    kafka_admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 2_000_000})
    producer.produce(topic, b"\xff" * 900_000)  # huge, binary, no headers at all
    producer.produce(topic, b"{}", headers=[("kafka_dlt-exception-message", b"\xff\xfe bad utf8 \xc3"),
                                            ("kafka_dlt-original-topic", b"<script>alert(1)</script>")])
    producer.produce(topic, None)  # tombstone: no payload
    producer.flush(10)
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics=f"^{topic}$",
                                     dlq_pattern=r"\.DLT$")
    try:
        out = collector.collect()
    finally:
        collector.close()
    assert out["dlq"].iloc[0]["depth"] == 3
    events = out["events"]
    assert len(events) == 3 and events["dead_letter"].all()
    assert (events["preview"].str.len() <= 300).all()
    reasons = json.loads(out["dlq"].iloc[0]["reasons"])
    assert sum(reasons.values()) == 3
    assert any("bad utf" in r for r in reasons)  # invalid bytes replaced, digits grouped as #
