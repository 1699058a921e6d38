"""Dead letters written by programs nobody here wrote, on the real Kafka: spring-kafka's
DeadLetterPublishingRecoverer behind a failing listener, and a Kafka Connect standalone
worker whose sink connector dead-letters records its JSON converter cannot read, with
context headers on and off (Connect's default). What eventscope makes of them is checked
against what was sent, not against headers written by hand."""
from __future__ import annotations

import json
import time
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from eventscope.graph.build import build_graph
from eventscope.store import Store
from real_clients import ConnectWorker, collect_until, run_spring

pytestmark = pytest.mark.broker
PREFIX = f"rc{uuid.uuid4().hex[:5]}-"
GOOD = [b'{"order": 1}', b'{"order": 2}', b'{"order": 3}']
NOT_JSON = [b"{not json at all", b"{also: not json"]  # JsonParseException
CUT_SHORT = [b'{"order": [1, 2', b'{"order": {"id": 7']  # JsonEOFException


def _topics(bootstrap: str, *specs: tuple[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, 1) for name, partitions in specs])
    for future in futures.values():
        future.result()


def _send(bootstrap: str, topic: str, values: list[bytes], keys: bool = False) -> dict:
    """Produce ``values``; returns {value: (partition, offset)}."""
    where = {}
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i, value in enumerate(values):
        producer.produce(topic, value, key=str(i).encode() if keys else None,
                         on_delivery=lambda err, msg: where.update({msg.value(): (msg.partition(), msg.offset())}))
    producer.flush(10)
    return where


def _collect(tmp_path, bootstrap: str, redis_url: str, until, extra: dict | None = None) -> Store:
    """Run eventscope's collectors on this test's topics until ``until(store)`` holds."""
    return collect_until({"EVENTSCOPE_KAFKA_BOOTSTRAP": bootstrap, "EVENTSCOPE_KAFKA_TOPICS": "^" + PREFIX,
                          "EVENTSCOPE_STORE": str(tmp_path / "store"), **(extra or {})}, until)


def _dlq(store: Store, name: str):
    rows = store.get("dlq_latest")
    rows = rows[rows["dlq"] == name]
    return None if rows.empty else rows.iloc[0]


def _counted(store: Store, name: str, count: int) -> bool:
    row = _dlq(store, name)
    return row is not None and sum(json.loads(row["reasons"]).values()) >= count


@pytest.fixture(scope="session")
def connect_worker(kafka_bootstrap, tmp_path_factory):
    """One Connect worker per test run, with three sink connectors: DLQ context headers on
    and off, and one whose DLQ only its configuration names."""
    connectors = {"sink-headers": {"topic": PREFIX + "connect-in", "dlq": PREFIX + "connect-in-dlq",
                                   "context_headers": True},
                  "sink-plain": {"topic": PREFIX + "plain-in", "dlq": PREFIX + "sink-errors",
                                 "context_headers": False},
                  "sink-quiet": {"topic": PREFIX + "quiet-in", "dlq": PREFIX + "quiet-failures",
                                 "context_headers": False}}
    _topics(kafka_bootstrap, (PREFIX + "connect-in", 1), (PREFIX + "plain-in", 1), (PREFIX + "quiet-in", 1),
            (PREFIX + "connect-in-dlq", 1), (PREFIX + "sink-errors", 1), (PREFIX + "quiet-failures", 1),
            (PREFIX + "quiet-elsewhere", 1))
    worker = ConnectWorker(kafka_bootstrap, tmp_path_factory.mktemp("connect"), connectors).start()
    yield worker
    worker.stop()


def test_spring_dead_letters_are_filed_under_their_cause(tmp_path, kafka_bootstrap, redis_url):
    topic = PREFIX + "orders"
    dlt = topic + "-dlt"  # spring-kafka 4's default name (".DLT" before 4.0); the default pattern has both
    _topics(kafka_bootstrap, (topic, 3), (dlt, 3))
    values = [b"state:stock missing for order 7", b"state:stock missing for order 8",
              b"npe:stock missing for order 9", b"arg:negative amount", b"fine", b"fine too"]
    sent = _send(kafka_bootstrap, topic, values, keys=True)
    out = run_spring(kafka_bootstrap, topic, PREFIX + "spring-orders", failures=4)
    assert "dead-lettered 4" in out
    store = _collect(tmp_path, kafka_bootstrap, redis_url, lambda s: _counted(s, dlt, 4))
    row = _dlq(store, dlt)
    assert json.loads(row["reasons"]) == {"IllegalStateException: stock missing for order #": 2,
                                          "NullPointerException: stock missing for order #": 1,
                                          "IllegalArgumentException: negative amount": 1}
    assert row["source_topic"] == topic
    dead = store.read("events")
    dead = dead[dead["dead_letter"] & (dead["topic"] == dlt)]
    assert sorted(dead["dlq_class"]) == sorted(["java.lang.IllegalStateException"] * 2
                                               + ["java.lang.NullPointerException", "java.lang.IllegalArgumentException"])
    # each dead letter names the very record that failed: its partition and offset
    originals = {(int(p), int(o)) for p, o in zip(dead["original_partition"], dead["original_offset"])}
    assert originals == {sent[v] for v in values[:4]}


def test_connect_dead_letters_with_context_headers(tmp_path, connect_worker, kafka_bootstrap, redis_url):
    topic, dlq = PREFIX + "connect-in", PREFIX + "connect-in-dlq"
    sent = _send(kafka_bootstrap, topic, GOOD + NOT_JSON + CUT_SHORT)
    store = _collect(tmp_path, kafka_bootstrap, redis_url, lambda s: _counted(s, dlq, 4))
    row = _dlq(store, dlq)
    reasons = json.loads(row["reasons"])
    # Connect's message is one generic sentence for every record; the causes differ
    by_class = {}
    for reason, count in reasons.items():
        by_class[reason.split(":")[0]] = by_class.get(reason.split(":")[0], 0) + count
    assert by_class == {"JsonParseException": 2, "JsonEOFException": 2}, reasons
    assert row["source_topic"] == topic and row["depth"] == 4
    dead = store.read("events")
    dead = dead[dead["dead_letter"] & (dead["topic"] == dlq)]
    assert {(int(p), int(o)) for p, o in zip(dead["original_partition"], dead["original_offset"])} == \
        {sent[v] for v in NOT_JSON + CUT_SHORT}
    headers = json.loads(dead["headers"].iloc[0])
    assert headers["__connect.errors.connector.name"] == "sink-headers"
    assert headers["__connect.errors.stage"] == "VALUE_CONVERTER"


def test_connect_dead_letters_without_headers_find_their_source(tmp_path, connect_worker, kafka_bootstrap,
                                                                redis_url):
    """Context headers off (Connect's default): the DLQ is found through the configuration,
    and its source topic through the record bytes eventscope saw on the source topic."""
    topic, dlq = PREFIX + "plain-in", PREFIX + "sink-errors"
    # bytes of their own: the same bytes on two watched topics would name neither
    _send(kafka_bootstrap, topic, GOOD + [b"{plain: not json", b"{plain too: not json"])
    store = _collect(tmp_path, kafka_bootstrap, redis_url, lambda s: _counted(s, dlq, 2),
                     extra={"EVENTSCOPE_KAFKA_DLQ_TOPICS": dlq})
    row = _dlq(store, dlq)
    assert row["depth"] == 2 and row["source_topic"] == topic
    # no header names a failure: the reason is what eventscope finds wrong with the records itself
    reasons = json.loads(row["reasons"])
    assert sum(reasons.values()) == 2 and all(r.startswith("not JSON") for r in reasons), reasons


def test_connect_dead_letters_found_through_the_worker(tmp_path, connect_worker, kafka_bootstrap, redis_url):
    """No headers, a name no rule knows, bytes that also went to a topic the connector does
    not read: only the connector's configuration (the worker's REST API) says that
    ``quiet-failures`` is a DLQ and that its records came from ``quiet-in``."""
    topic, dlq, other = PREFIX + "quiet-in", PREFIX + "quiet-failures", PREFIX + "quiet-elsewhere"
    bad = [b"{quiet: not json", b"{quiet too: not json"]
    _send(kafka_bootstrap, other, bad)  # the same bytes on a second watched topic name neither
    _send(kafka_bootstrap, topic, GOOD + bad)
    deadline = time.monotonic() + 60
    while _watermark(kafka_bootstrap, dlq) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _watermark(kafka_bootstrap, dlq) == 2, connect_worker.log_tail()

    blind = _collect(tmp_path / "blind", kafka_bootstrap, redis_url, lambda s: not s.get("dlq_latest").empty)
    assert _dlq(blind, dlq) is None  # without the worker nothing tells it apart from any topic

    store = _collect(tmp_path, kafka_bootstrap, redis_url, lambda s: _counted(s, dlq, 2),
                     extra={"EVENTSCOPE_KAFKA_CONNECT_URLS": connect_worker.url})
    row = _dlq(store, dlq)
    assert row is not None and row["depth"] == 2 and row["source_topic"] == topic
    dead = store.read("events")
    dead = dead[dead["topic"] == dlq]
    assert len(dead) == 2 and dead["dead_letter"].all() and set(dead["original_topic"]) == {topic}
    graph = build_graph(store.read("events"), None, store.read("dlq"))
    assert graph.has_edge(f"topic:kafka:{topic}", f"dlq:kafka:{dlq}")
    assert not graph.has_edge(f"topic:kafka:{other}", f"dlq:kafka:{dlq}")
    health = store.read("health")
    assert health[health["collector"] == "kafka.connect"]["ok"].all()


def test_an_unreachable_connect_worker_is_health_not_a_stop(tmp_path, kafka_bootstrap, redis_url):
    """A Connect URL nothing answers on: one line in the health frame naming the worker,
    without its password; events are still collected."""
    from eventscope.localbrokers import free_port
    topic = PREFIX + "unreachable-connect"
    _topics(kafka_bootstrap, (topic, 1))
    _send(kafka_bootstrap, topic, GOOD)
    url = f"http://admin:s3cret@127.0.0.1:{free_port()}"
    store = _collect(tmp_path, kafka_bootstrap, redis_url,
                     lambda s: (s.read("events")["topic"] == topic).sum() >= 3,
                     extra={"EVENTSCOPE_KAFKA_CONNECT_URLS": url})
    health = store.read("health")
    connect = health[health["collector"] == "kafka.connect"]
    assert not connect.empty and not connect["ok"].any()
    error = connect["error"].iloc[-1]
    assert "Kafka Connect not readable at http://127.0.0.1:" in error and "s3cret" not in error, error
    assert (store.read("events")["topic"] == topic).sum() == 3


def _watermark(bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        consumer.close()
