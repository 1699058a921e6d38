"""How the Kafka event reader reads dead-letter topics, against the real Kafka (README,
"Dead-letter queues": a DLQ seen for the first time is read from its oldest message, up to
``dlq_read_max`` messages shared by its partitions; past that each partition is read from its
newest share, and the rest is counted as unread, not as reasons, until the retention or the
owner deletes it). A restarted reader goes on from the saved reading state, book included."""
from __future__ import annotations

import json
import os
import time
import uuid

import pandas as pd
import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic, OffsetSpec

from eventscope import schemas
from eventscope.collectors.kafka.connect import ConnectDirectory, connectors_from
from eventscope.collectors.kafka.config import KafkaConfig
from eventscope.collectors.kafka.events import KafkaEventsCollector
from eventscope.collectors.kafka.offsets import client_secrets, kafka_client_config
from eventscope.collectors.kafka.security import ConnectionTrouble, KafkaConnectionError
from eventscope.decode import DecodeConfig, Decoder
from eventscope.secrets import Secret
from conftest import KAFKA_SCRAM_USER

pytestmark = pytest.mark.broker


def _topics(admin, *specs: tuple[str, int]) -> None:
    """Create the topics and wait until each partition has a leader (what a test hides is hidden
    on purpose, not by an election still under way)."""
    for fut in admin.create_topics([NewTopic(name, parts, 1) for name, parts in specs]).values():
        fut.result()
    deadline = time.monotonic() + 30
    for name, parts in specs:
        while True:
            meta = admin.list_topics(name, timeout=10).topics[name]
            if not meta.error and len(meta.partitions) == parts and all(p.leader >= 0 for p in meta.partitions.values()):
                break
            assert time.monotonic() < deadline, f"{name} has no leader for every partition"
            time.sleep(0.1)


def _dead_letters(bootstrap: str, topic: str, counts: dict[int, int], source: str, first: int = 0) -> None:
    """``counts[p]`` Spring-style dead letters into partition ``p``, numbered from ``first``."""
    producer = Producer({"bootstrap.servers": bootstrap})
    n = first
    for partition, count in counts.items():
        for _ in range(count):
            producer.produce(topic, json.dumps({"event_type": "PaymentFailed", "correlation_id": f"c-{n}"}).encode(),
                             partition=partition,
                             headers=[("kafka_dlt-exception-message", f"card declined for order {n}".encode()),
                                      ("kafka_dlt-original-topic", source.encode())])
            n += 1
    producer.flush(10)


def _events(producer: Producer, topic: str, count: int, event_type: str = "OrderPlaced",
            partition: int | None = None, timestamp_ms: int | None = None) -> None:
    """``count`` events ``{"event_type", "n"}`` into ``topic`` (its ``partition`` if given;
    stamped ``timestamp_ms + n`` if given), flushed."""
    where = {} if partition is None else {"partition": partition}
    for n in range(count):
        when = {} if timestamp_ms is None else {"timestamp": timestamp_ms + n}
        producer.produce(topic, json.dumps({"event_type": event_type, "n": n}).encode(), **where, **when)
        if n % 1000 == 999:
            producer.poll(0)  # serve delivery reports: the local queue stays small
    producer.flush(30)


def _read(collector: KafkaEventsCollector, expected: int, timeout_s: float = 30.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Samples until ``expected`` events were read (the first samples may only assign): every
    event read, and the last sample's ``dlq`` frame indexed by DLQ."""
    frames, deadline = [], time.monotonic() + timeout_s
    while True:
        before = pd.Timestamp.now(tz="UTC")
        out = collector.collect()
        stamps = set(out["events"]["observed_at"]) | set(out["dlq"]["sampled_at"])
        assert len(stamps) <= 1 and all(before <= at <= pd.Timestamp.now(tz="UTC") for at in stamps), stamps
        frames.append(out["events"])
        events = pd.concat(frames, ignore_index=True)
        if len(events) >= expected or time.monotonic() > deadline:
            return events, out["dlq"].set_index("dlq")


def _offsets(events: pd.DataFrame, topic: str) -> dict[int, list[int]]:
    mine = events[events["topic"] == topic]
    return {int(p): sorted(int(o) for o in group["offset"]) for p, group in mine.groupby("partition")}


def test_a_big_dlq_first_seen_is_read_from_each_partitions_newest_share_and_the_rest_counted_unread(
        kafka_admin, kafka_bootstrap):
    base = f"kr{uuid.uuid4().hex[:6]}-"
    dlq = base + "payments.DLT"
    _topics(kafka_admin, (dlq, 3))
    _dead_letters(kafka_bootstrap, dlq, {0: 5, 1: 5, 2: 2}, base + "payments")
    # 7 shared by 3 partitions: a share of 3 each (rounded up), so 3 + 3 + 2 read, 2 + 2 + 0 not
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + base,
                                     dlq_pattern=r"\.DLT$", dlq_read_max=7)
    try:
        events, rows = _read(collector, 8)
        assert _offsets(events, dlq) == {0: [2, 3, 4], 1: [2, 3, 4], 2: [0, 1]}
        assert events["dead_letter"].all() and set(events["dlq_reason"]) == {"card declined for order #"}
        row = rows.loc[dlq]
        assert (row["depth"], row["unread"], row["source_topic"]) == (12, 4, base + "payments")
        assert json.loads(row["reasons"]) == {"card declined for order #": 8}
        book = [r for r in collector.reading_state(row["sampled_at"]) if r["topic"] == dlq and r["partition"] == -1]
        assert len(book) == 1 and book[0]["unread"] == 4
        assert json.loads(book[0]["unread_until"]) == {"0": "2", "1": "2"}  # where each partition's reading began

        _dead_letters(kafka_bootstrap, dlq, {0: 1}, base + "payments", first=12)
        events, rows = _read(collector, 1)
        assert _offsets(events, dlq) == {0: [5]}
        assert (rows.loc[dlq, "depth"], rows.loc[dlq, "unread"]) == (13, 4)  # the old four are still held, unread
        assert json.loads(rows.loc[dlq, "reasons"]) == {"card declined for order #": 9}

        # the owner deletes the oldest records: what is gone is no longer unread, nor counted twice
        for fut in kafka_admin.delete_records([TopicPartition(dlq, 0, 3), TopicPartition(dlq, 1, 1)]).values():
            fut.result()
        rows = collector.collect()["dlq"].set_index("dlq")
        assert (rows.loc[dlq, "depth"], rows.loc[dlq, "unread"]) == (3 + 4 + 2, 0 + 1 + 0)

        # a restart goes on from the saved state: nothing read twice, the book and its unread kept
        saved = schemas.conform("reading_state", collector.reading_state(rows.loc[dlq, "sampled_at"]))
    finally:
        collector.close()
    again = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + base,
                                 dlq_pattern=r"\.DLT$", dlq_read_max=7)
    try:
        again.restore(saved)
        _dead_letters(kafka_bootstrap, dlq, {2: 1}, base + "payments", first=13)
        events, rows = _read(again, 1)
        assert _offsets(events, dlq) == {2: [2]}
        assert (rows.loc[dlq, "depth"], rows.loc[dlq, "unread"]) == (10, 1)
        assert json.loads(rows.loc[dlq, "reasons"]) == {"card declined for order #": 10}
    finally:
        again.close()


def test_a_dlq_within_the_first_read_is_read_whole_and_an_empty_one_is_listed(kafka_admin, kafka_bootstrap):
    base = f"kr{uuid.uuid4().hex[:6]}-"
    dlq, empty, plain = base + "orders.DLT", base + "refunds.DLT", base + "payments"  # plain sorts between them
    _topics(kafka_admin, (dlq, 2), (empty, 1), (plain, 1))
    _dead_letters(kafka_bootstrap, dlq, {0: 3}, base + "orders")  # partition 1 stays empty
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + base,
                                     dlq_pattern=r"\.DLT$", dlq_read_max=6)
    try:
        events, rows = _read(collector, 3)
        assert _offsets(events, dlq) == {0: [0, 1, 2]}
        assert list(rows.index) == [dlq, empty]  # in name order, the empty one too
        assert (rows.loc[dlq, "depth"], rows.loc[dlq, "unread"]) == (3, 0)
        assert (rows.loc[empty, "depth"], rows.loc[empty, "unread"], rows.loc[empty, "reasons"]) == (0, 0, "{}")
        assert all(r["partition"] != -1 or r["unread"] == 0 and r["unread_until"] is None
                   for r in collector.reading_state(rows.loc[dlq, "sampled_at"]))

        # an empty partition is read from its beginning once something arrives
        _dead_letters(kafka_bootstrap, dlq, {1: 2}, base + "orders", first=3)
        _dead_letters(kafka_bootstrap, empty, {0: 1}, base + "refunds", first=5)
        events, rows = _read(collector, 3)
        assert _offsets(events, dlq) == {1: [0, 1]} and _offsets(events, empty) == {0: [0]}
        assert (rows.loc[dlq, "depth"], rows.loc[empty, "depth"], rows.loc[empty, "source_topic"]) == (5, 1, base + "refunds")
    finally:
        collector.close()


def test_only_dead_letter_topics_are_capped_and_a_connect_dlq_is_one_by_its_configuration(kafka_admin, kafka_bootstrap):
    base = f"kr{uuid.uuid4().hex[:6]}-"
    orders, sink_dlq, quiet_dlq = base + "orders", base + "sink-errors", base + "sink2-errors"  # no pattern's
    _topics(kafka_admin, (orders, 1), (sink_dlq, 1), (quiet_dlq, 1))
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(6):
        producer.produce(orders, json.dumps({"event_type": "OrderPlaced", "correlation_id": f"o-{i}"}).encode())
        producer.produce(sink_dlq, b"\x00not json at all")  # Connect without context headers: bytes only
    producer.flush(10)
    connect = ConnectDirectory([])
    connect.connectors = {c.dlq: c for c in connectors_from(
        {"sink": {"info": {"config": {"topics.regex": base + "ord.*", "errors.deadletterqueue.topic.name": sink_dlq}}},
         "sink2": {"info": {"config": {"topics": orders, "errors.deadletterqueue.topic.name": quiet_dlq}}}})}
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + base,
                                     dlq_pattern=r"\.DLT$", dlq_read_max=4, connect=connect)
    try:
        assert collector.is_dlq(sink_dlq) and collector.is_dlq(base + "x.DLT") and not collector.is_dlq(orders)
        events, rows = _read(collector, 10)
        assert _offsets(events, orders) == {0: list(range(6))}  # not a DLQ: the whole backlog
        assert _offsets(events, sink_dlq) == {0: [2, 3, 4, 5]}
        assert not events[events["topic"] == orders]["dead_letter"].any()
        assert events[events["topic"] == sink_dlq]["dead_letter"].all()
        assert set(events[events["topic"] == sink_dlq]["original_topic"]) == {orders}  # from the configuration
        assert list(rows.index) == [sink_dlq, quiet_dlq]
        row = rows.loc[sink_dlq]
        assert (row["depth"], row["unread"], row["source_topic"]) == (6, 2, orders)  # the connector's topic
        assert sum(json.loads(row["reasons"]).values()) == 4
        # nothing dead-lettered yet: the source is still the one its connector reads
        assert (rows.loc[quiet_dlq, "depth"], rows.loc[quiet_dlq, "source_topic"]) == (0, orders)
    finally:
        collector.close()


def test_a_dlq_whose_oldest_records_were_deleted_before_the_first_read_counts_only_what_is_held(
        kafka_admin, kafka_bootstrap):
    base = f"kr{uuid.uuid4().hex[:6]}-"
    dlq = base + "payments.DLT"
    _topics(kafka_admin, (dlq, 1))
    _dead_letters(kafka_bootstrap, dlq, {0: 6}, base + "payments")
    for fut in kafka_admin.delete_records([TopicPartition(dlq, 0, 2)]).values():
        fut.result()  # offsets 2..5 held: the share of 3 reads 3..5 and leaves one unread
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + base,
                                     dlq_pattern=r"\.DLT$", dlq_read_max=3, source="prod-kafka")
    try:
        events, rows = _read(collector, 3)
        assert _offsets(events, dlq) == {0: [3, 4, 5]} and set(events["source"]) == {"prod-kafka"}
        assert (rows.loc[dlq, "depth"], rows.loc[dlq, "unread"]) == (4, 1)
        assert (rows.loc[dlq, "source"], rows.loc[dlq, "broker"]) == ("prod-kafka", "prod-kafka")
        now = rows.loc[dlq, "sampled_at"]
        state = collector.reading_state(now)
        assert {(r["saved_at"], r["source"], r["broker"]) for r in state} == {(now, "prod-kafka", "prod-kafka")}
        assert [(r["partition"], r.get("position"), r.get("unread")) for r in state] == [(0, "6", None), (-1, None, 1)]
    finally:
        collector.close()


def test_a_restart_keeps_positions_not_assigned_yet_and_skips_events_stored_after_the_save(kafka_admin, kafka_bootstrap):
    base = f"kr{uuid.uuid4().hex[:6]}-"
    dlq = base + "orders.DLT"
    _topics(kafka_admin, (dlq, 2))
    _dead_letters(kafka_bootstrap, dlq, {0: 2}, base + "orders")  # partition 1 empty: its position is 0
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + base,
                                     dlq_pattern=r"\.DLT$", dlq_read_max=4)
    try:
        _, rows = _read(collector, 2)
        saved = schemas.conform("reading_state", collector.reading_state(rows.loc[dlq, "sampled_at"]))
        assert dict(zip(saved["partition"], saved["position"].fillna("book"))) == {0: "2", 1: "0", -1: "book"}
        # read and stored after the save, then the collector stops before saving again
        _dead_letters(kafka_bootstrap, dlq, {0: 1}, base + "orders", first=2)
        stored, _ = _read(collector, 1)
    finally:
        collector.close()
    assert _offsets(stored, dlq) == {0: [2]}
    # while it was down, more dead letters than a first read's share came into the empty partition
    _dead_letters(kafka_bootstrap, dlq, {1: 5}, base + "orders", first=3)
    again = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + base,
                                 dlq_pattern=r"\.DLT$", dlq_read_max=4)
    try:
        again.restore(saved, stored)
        before = {(r["topic"], r["partition"]): r.get("position") for r in again.reading_state(pd.Timestamp.now(tz="UTC"))}
        assert before == {(dlq, 0): "3", (dlq, 1): "0", (dlq, -1): None}  # restored, none assigned yet
        events, rows = _read(again, 5)
        assert _offsets(events, dlq) == {1: [0, 1, 2, 3, 4]}  # from its saved 0, not a first read's share
        assert (rows.loc[dlq, "depth"], rows.loc[dlq, "unread"]) == (8, 0)
        assert json.loads(rows.loc[dlq, "reasons"]) == {"card declined for order #": 8}  # the stored one counted
    finally:
        again.close()


def test_a_lookback_with_nothing_that_recent_starts_at_the_end(kafka_admin, kafka_bootstrap):
    base = f"kr{uuid.uuid4().hex[:6]}-"
    topic = base + "orders"
    _topics(kafka_admin, (topic, 3))
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    old_ms = int((time.time() - 7200) * 1000)
    for partition, count in ((0, 3), (1, 1)):  # two hours old; partition 2 stays empty
        _events(producer, topic, count, "Old", partition, old_ms)
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + base, lookback_s=600)
    try:
        assert collector.collect()["events"].empty
        for partition in range(3):
            _events(producer, topic, 1, "New", partition)
        events, _ = _read(collector, 3)
        assert _offsets(events, topic) == {0: [3], 1: [1], 2: [0]} and set(events["event_type"]) == {"New"}
    finally:
        collector.close()


def test_a_refused_login_fails_the_sample_with_its_reason_and_without_the_secret(kafka_secure):
    wrong = "wrong-" + uuid.uuid4().hex
    cfg = KafkaConfig(bootstrap=kafka_secure["scram"]["address"], security_protocol="SASL_SSL",
                      sasl_mechanism="SCRAM-SHA-512", sasl_username=KAFKA_SCRAM_USER, sasl_password=Secret(wrong),
                      ssl_ca_location=str(kafka_secure["tls"].ca), timeout_s=1.5)
    trouble = ConnectionTrouble(client_secrets(cfg))
    collector = KafkaEventsCollector(kafka_client_config(cfg, trouble), timeout_s=cfg.timeout_s, trouble=trouble)
    try:
        with pytest.raises(KafkaConnectionError, match="the broker refused the credentials") as failure:
            collector.collect()
    finally:
        collector.close()
    assert wrong not in str(failure.value) and "\n" not in str(failure.value)


@pytest.mark.parametrize("trouble", [None, ConnectionTrouble()], ids=["without", "with"])
def test_an_unreachable_broker_fails_with_the_clients_own_error_when_nothing_explains_it(trouble):
    collector = KafkaEventsCollector({"bootstrap.servers": "127.0.0.1:1", "reconnect.backoff.ms": 1000}, timeout_s=1.0,
                                     trouble=trouble)
    try:
        with pytest.raises(KafkaException, match="(?i)timed out|transport|broker"):
            collector.collect()
    finally:
        collector.close()


def test_a_partition_without_a_leader_for_a_moment_waits_and_its_dlq_is_skipped_not_undercounted(
        kafka_admin, kafka_bootstrap, monkeypatch):
    """Kafka answers ``list_offsets`` without a partition whose leader is being elected; the
    reader must neither stop at it nor count a DLQ without it."""
    base = f"kr{uuid.uuid4().hex[:6]}-"
    dlq, orders, later = base + "orders.DLT", base + "orders", base + "payments.DLT"
    _topics(kafka_admin, (dlq, 2), (orders, 2), (later, 1))
    _dead_letters(kafka_bootstrap, dlq, {0: 2, 1: 3}, orders)
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + base,
                                     dlq_pattern=r"\.DLT$", dlq_read_max=100)
    real, leaderless, refused = collector._offsets, set(), []

    def answer(partitions, spec):  # the end offsets' answer lacks the leaderless partitions
        if refused:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "connection to the broker lost"))
        found = real(partitions, spec)
        return {k: v for k, v in found.items() if k not in leaderless or spec != OffsetSpec.latest()}

    monkeypatch.setattr(collector, "_offsets", answer)
    try:
        leaderless.update({(dlq, 0), (orders, 0)})
        events, rows = _read(collector, 3)
        assert collector.assigned == {(dlq, 1), (orders, 1), (later, 0)}  # the others wait; none after them is skipped
        assert _offsets(events, dlq) == {1: [0, 1, 2]}
        assert list(rows.index) == [later]  # half the DLQ's partitions cannot be counted yet: no row, not 3
        leaderless.clear()
        events, rows = _read(collector, 2)
        assert collector.assigned == {(dlq, 0), (dlq, 1), (orders, 0), (orders, 1), (later, 0)}
        assert _offsets(events, dlq) == {0: [0, 1]} and rows.loc[dlq, "depth"] == 5
        leaderless.add((dlq, 1))  # the DLQ's depth cannot be told this sample: no row rather than 2
        assert list(collector.collect()["dlq"]["dlq"]) == [later]  # the next DLQ's row is still there
        refused.append(True)  # no answer at all: no DLQ row this sample, the events still come
        _dead_letters(kafka_bootstrap, dlq, {0: 1}, orders, first=5)
        events, rows = _read(collector, 1)
        assert _offsets(events, dlq) == {0: [2]} and rows.empty
        refused.clear()
        leaderless.clear()
        assert collector.collect()["dlq"].set_index("dlq").loc[dlq, "depth"] == 6
    finally:
        collector.close()


def test_after_a_failed_store_the_reader_rewinds_to_the_saved_state_and_reads_again(kafka_admin, kafka_bootstrap):
    base = f"kr{uuid.uuid4().hex[:6]}-"
    dlq = base + "orders.DLT"
    _topics(kafka_admin, (dlq, 1))
    _dead_letters(kafka_bootstrap, dlq, {0: 2}, base + "orders")
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + base,
                                     dlq_pattern=r"\.DLT$")
    try:
        _, rows = _read(collector, 2)
        saved = schemas.conform("reading_state", collector.reading_state(rows.loc[dlq, "sampled_at"]))
        _dead_letters(kafka_bootstrap, dlq, {0: 2}, base + "orders", first=2)
        stored, _ = _read(collector, 2)  # stored, but the reading state after them was not
        _dead_letters(kafka_bootstrap, dlq, {0: 1}, base + "orders", first=4)
        lost, _ = _read(collector, 1)  # read, then the store refused them
        assert (_offsets(stored, dlq), _offsets(lost, dlq)) == ({0: [2, 3]}, {0: [4]})
        collector.rewind(saved, stored)
        assert collector.assigned == set()
        events, rows = _read(collector, 1)
        assert _offsets(events, dlq) == {0: [4]}  # read again, from past what the store holds
        assert json.loads(rows.loc[dlq, "reasons"]) == {"card declined for order #": 5}  # each once
    finally:
        collector.close()


@pytest.fixture
def far_time_zone():
    """The process in UTC+05:45, so a sample stamped with the local wall clock shows."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kathmandu"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_a_topic_without_saved_position_or_lookback_starts_backlog_messages_before_its_end(kafka_admin, kafka_bootstrap,
                                                                                         far_time_zone):
    base = f"kr{uuid.uuid4().hex[:6]}-"
    topic = base + "orders"
    _topics(kafka_admin, (topic, 1))
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    _events(producer, topic, 5)
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + base, backlog=3)
    try:
        events, _ = _read(collector, 3)
        assert _offsets(events, topic) == {0: [2, 3, 4]}
    finally:
        collector.close()
    busy = base + "busy"  # the default backlog: 5,000 messages
    _topics(kafka_admin, (busy, 1))
    _events(producer, busy, 5003)
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics=f"^{busy}$")
    try:
        events, _ = _read(collector, 5000)
        read = _offsets(events, busy)[0]
        assert read[0] == 3 and read == list(range(3, 3 + len(read)))
    finally:
        collector.close()


def test_a_lookback_whose_answer_lacks_a_partition_starts_it_at_the_end(kafka_admin, kafka_bootstrap, monkeypatch):
    base = f"kr{uuid.uuid4().hex[:6]}-"
    topic = base + "orders"
    _topics(kafka_admin, (topic, 2))
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for partition in (0, 1):
        _events(producer, topic, 3, "Recent", partition)
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + base, lookback_s=600)
    real = collector._offsets

    def answer(partitions, spec):  # the leader of partition 1 moved as the timestamps were asked for
        found = real(partitions, spec)
        at_time = spec not in (OffsetSpec.earliest(), OffsetSpec.latest())
        return {k: v for k, v in found.items() if not (at_time and k == (topic, 1))}

    monkeypatch.setattr(collector, "_offsets", answer)
    try:
        events, _ = _read(collector, 3)
        assert _offsets(events, topic) == {0: [0, 1, 2]}  # partition 1 from its end: nothing of it read
        _events(producer, topic, 1, "Later", partition=1)
        events, _ = _read(collector, 1)
        assert _offsets(events, topic) == {1: [3]}
    finally:
        collector.close()


def test_a_dlq_record_without_headers_is_traced_to_the_topic_its_bytes_were_read_from_in_an_earlier_sample(
        kafka_admin, kafka_bootstrap):
    base = f"kr{uuid.uuid4().hex[:6]}-"
    orders, dlq = base + "orders", base + "sink-failures"  # a name that names no source
    _topics(kafka_admin, (orders, 1), (dlq, 1))
    record = json.dumps({"event_type": "OrderPlaced", "orderRef": "ord-77"}).encode()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(orders, record)
    producer.flush(10)
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + base, dlq_pattern="-failures$",
                                     decoder=Decoder(DecodeConfig(correlation_id=["orderRef"])), payload_max_chars=40)
    try:
        events, _ = _read(collector, 1)
        assert list(events["correlation_id"]) == ["ord-77"]  # the configured decoder, not the default
        assert len(record) > 40 and list(events["payload"]) == [""]  # longer than the payload kept
        producer.produce(dlq, record)  # the sink failed on it: its byte-for-byte copy, no headers
        producer.flush(10)
        events, rows = _read(collector, 1)
        assert list(events["topic"]) == [dlq] and rows.loc[dlq, "source_topic"] == orders
    finally:
        collector.close()


def test_a_restart_after_the_topic_was_deleted_and_created_again_reads_the_new_one_from_its_start(
        kafka_admin, kafka_bootstrap):
    base = f"kr{uuid.uuid4().hex[:6]}-"
    topic = base + "orders"
    _topics(kafka_admin, (topic, 1))
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    _events(producer, topic, 5, "Before")
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + base)
    try:
        events, _ = _read(collector, 5)
        saved = schemas.conform("reading_state", collector.reading_state(events["observed_at"].iloc[-1]))
    finally:
        collector.close()
    assert dict(zip(saved["topic"], saved["position"])) == {topic: "5"}
    for fut in kafka_admin.delete_topics([topic]).values():
        fut.result()
    deadline = time.monotonic() + 30
    while True:  # the deletion completes in the background
        try:
            _topics(kafka_admin, (topic, 1))
            break
        except KafkaException:
            assert time.monotonic() < deadline, "the topic could not be created again"
            time.sleep(0.5)
    _events(producer, topic, 2, "After")
    again = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + base)
    try:
        again.restore(saved)
        events, _ = _read(again, 2)
        assert _offsets(events, topic) == {0: [0, 1]} and set(events["event_type"]) == {"After"}
    finally:
        again.close()


def test_a_sample_that_stops_short_of_the_end_saves_the_position_after_its_last_message(kafka_admin, kafka_bootstrap):
    base = f"kr{uuid.uuid4().hex[:6]}-"
    topic = base + "orders"
    _topics(kafka_admin, (topic, 1))
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    _events(producer, topic, 1500)
    collector = KafkaEventsCollector({"bootstrap.servers": kafka_bootstrap}, topics="^" + base, max_events=100)
    try:
        events, rows = _read(collector, 100)
        read = _offsets(events, topic)[0]
        assert read[0] == 0 and len(read) < 1500  # more than one sample's worth: not read to the end
        state = collector.reading_state(pd.Timestamp.now(tz="UTC"))
        assert [r["position"] for r in state] == [str(read[-1] + 1)]
    finally:
        collector.close()
