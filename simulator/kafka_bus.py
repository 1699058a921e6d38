"""Kafka implementation of the simulator bus (confluent-kafka, one thread).

Value = envelope JSON bytes, key = order_id, headers `traceparent`,
`x-correlation-id`, `event_type`. One consumer per group, auto-commit off: offsets
are committed by `tick()` after the producer flushed, up to the lowest offset
still in flight per partition (messages being retried stay uncommitted). Dead
letters go to `<topic>.DLT` (same partition, as Spring does) with the original
value, key and headers plus Spring's `kafka_dlt-*` headers.
"""
from __future__ import annotations

import logging
import struct
import time
from collections import defaultdict

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from .bus import Message, exception_fqcn
from .config import KAFKA_DLQ_SUFFIX

log = logging.getLogger(__name__)
COMMIT_INTERVAL = 0.2  # seconds between offset commits
Key = tuple[str, int]  # (topic, partition)


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


class KafkaBus:
    """Simulator bus on Kafka: one producer, one consumer per group."""

    name = "kafka"

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self.producer = Producer({"bootstrap.servers": bootstrap, "client.id": "simulator",
                                  "linger.ms": 5})
        self.consumers: dict[str, Consumer] = {}
        self.partitions: dict[str, int] = {}
        self.delivery_errors = 0
        # Per group and partition: offsets polled but not done, next offset, last committed.
        self._inflight: dict[str, dict[Key, set[int]]] = defaultdict(lambda: defaultdict(set))
        self._next: dict[str, dict[Key, int]] = defaultdict(dict)
        self._committed: dict[str, dict[Key, int]] = defaultdict(dict)
        self._paused: dict[str, set[Key]] = defaultdict(set)
        self._last_commit = 0.0

    # --- setup ---------------------------------------------------------------

    def setup(self, topics: dict[str, int], groups: dict[str, tuple[str, list[str]]]) -> None:
        """Create topics and `.DLT` twins (same partition count), then subscribe groups."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        try:
            admin.list_topics(timeout=10)
        except KafkaException as exc:
            raise ConnectionError(f"no Kafka at {self.bootstrap}: {exc.args[0].str()}") from None
        wanted = [NewTopic(t, n, 1) for t, n in topics.items()]
        wanted += [NewTopic(t + KAFKA_DLQ_SUFFIX, n, 1) for t, n in topics.items()]
        for name, future in admin.create_topics(wanted, operation_timeout=10).items():
            try:
                future.result(timeout=15)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        names = list(topics) + [t + KAFKA_DLQ_SUFFIX for t in topics]
        deadline = time.monotonic() + 30
        while True:  # a created topic reaches the metadata a moment later, on a busy broker
            metadata = admin.list_topics(timeout=10)
            ready = [t for t in names if t in metadata.topics and metadata.topics[t].partitions
                     and all(p.leader >= 0 for p in metadata.topics[t].partitions.values())]
            if len(ready) == len(names):
                break
            if time.monotonic() > deadline:
                raise ConnectionError(f"topics without leaders after 30 s: {sorted(set(names) - set(ready))}")
            time.sleep(0.1)
        for topic in names:
            self.partitions[topic] = len(metadata.topics[topic].partitions)
        for group, (service, group_topics) in groups.items():
            consumer = Consumer({
                "bootstrap.servers": self.bootstrap, "group.id": group, "client.id": service,
                "enable.auto.commit": False, "auto.offset.reset": "earliest",
            })
            consumer.subscribe(list(group_topics), on_assign=self._on_assign(group),
                               on_revoke=self._on_revoke(group))
            self.consumers[group] = consumer

    def _on_assign(self, group: str):
        def on_assign(consumer, partitions):
            self._paused[group].clear()  # a new assignment starts unpaused
        return on_assign

    def _on_revoke(self, group: str):
        def on_revoke(consumer, partitions):
            self._commit(group, asynchronous=False)
            for tp in partitions:
                key = (tp.topic, tp.partition)
                for table in (self._inflight[group], self._next[group], self._committed[group]):
                    table.pop(key, None)
            self._paused[group].clear()
        return on_revoke

    def ready(self) -> bool:
        return all(c.assignment() for c in self.consumers.values())

    # --- produce ---------------------------------------------------------------

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.delivery_errors += 1
            log.warning("kafka delivery to %s failed: %s", msg.topic(), err)

    def publish(self, topic: str, value: bytes, key: str | None = None,
                headers: dict[str, str | bytes] | None = None, partition: int = -1,
                header_list: list[tuple[str, bytes]] | None = None) -> None:
        hdrs = list(header_list or []) + [(k, _bytes(v)) for k, v in (headers or {}).items()]
        for _ in range(50):
            try:
                self.producer.produce(topic, value=value, key=key, headers=hdrs,
                                      partition=partition, on_delivery=self._on_delivery)
                return
            except BufferError:  # local queue full: let deliveries drain
                self.producer.poll(0.1)
        raise BufferError(f"kafka producer queue stays full (topic {topic})")

    # --- consume ---------------------------------------------------------------

    def _track(self, group: str, raw) -> Message | None:
        if raw is None:
            return None
        if raw.error() is not None:
            log.warning("kafka group %s: %s", group, raw.error())
            return None
        key = (raw.topic(), raw.partition())
        self._inflight[group][key].add(raw.offset())
        self._next[group][key] = max(self._next[group].get(key, 0), raw.offset() + 1)
        headers = [(k, v if v is not None else b"") for k, v in (raw.headers() or [])]
        traceparent = next((v.decode("ascii", "replace") for k, v in headers
                            if k == "traceparent"), None)
        ts_type, ts = raw.timestamp()
        return Message(topic=raw.topic(), value=raw.value(), key=raw.key(),
                       traceparent=traceparent, headers=headers, partition=raw.partition(),
                       offset=raw.offset(), timestamp_ms=ts if ts_type else None)

    def poll(self, group: str, max_messages: int) -> list[Message]:
        raws = self.consumers[group].consume(max_messages, timeout=0)
        return [m for m in (self._track(group, raw) for raw in raws) if m is not None]

    def hold(self, group: str) -> list[Message]:
        consumer = self.consumers[group]
        fresh = [tp for tp in consumer.assignment()
                 if (tp.topic, tp.partition) not in self._paused[group]]
        if fresh:
            consumer.pause(fresh)
            self._paused[group].update((tp.topic, tp.partition) for tp in fresh)
        # Keep serving group events (rebalances, max.poll.interval) while paused.
        msg = self._track(group, consumer.poll(0))
        return [msg] if msg is not None else []

    def release(self, group: str) -> None:
        paused = self._paused.pop(group, set())
        if paused:
            self.consumers[group].resume([TopicPartition(t, p) for t, p in paused])

    def ack(self, group: str, msg: Message) -> None:
        self._inflight[group][(msg.topic, msg.partition)].discard(int(msg.offset))

    def dead_letter(self, group: str, msg: Message, exc: BaseException, attempts: int) -> str:
        dlt = msg.topic + KAFKA_DLQ_SUFFIX
        spring = [
            ("kafka_dlt-exception-fqcn", exception_fqcn(exc)),
            ("kafka_dlt-exception-message", str(exc)),
            ("kafka_dlt-original-topic", msg.topic),
            ("kafka_dlt-original-partition", struct.pack(">i", msg.partition)),
            ("kafka_dlt-original-offset", struct.pack(">q", int(msg.offset))),
            ("kafka_dlt-original-consumer-group", group),
            ("kafka_dlt-attempts", str(attempts)),
        ]
        if msg.timestamp_ms is not None:
            spring += [("kafka_dlt-original-timestamp", struct.pack(">q", msg.timestamp_ms)),
                       ("kafka_dlt-original-timestamp-type", "CreateTime")]
        same = msg.partition if msg.partition < self.partitions.get(dlt, 0) else -1
        self.publish(dlt, msg.value, key=msg.key, partition=same,
                     header_list=msg.headers + [(k, _bytes(v)) for k, v in spring])
        self.ack(group, msg)
        return dlt

    # --- commits -----------------------------------------------------------------

    def _commit(self, group: str, asynchronous: bool = True) -> None:
        offsets = []
        for key, nxt in self._next[group].items():
            inflight = self._inflight[group].get(key)
            position = min(inflight) if inflight else nxt
            if position > self._committed[group].get(key, -1):
                offsets.append(TopicPartition(key[0], key[1], position))
                self._committed[group][key] = position
        if offsets:
            try:
                self.consumers[group].commit(offsets=offsets, asynchronous=asynchronous)
            except KafkaException as exc:
                log.warning("kafka commit for %s failed: %s", group, exc)

    def tick(self) -> None:
        self.producer.poll(0)
        now = time.monotonic()
        if now - self._last_commit < COMMIT_INTERVAL:
            return
        self._last_commit = now
        # Commit only what the producer has delivered (at-least-once, in order).
        if self.producer.flush(2.0) == 0:
            for group in self.consumers:
                self._commit(group)

    def close(self) -> None:
        remaining = self.producer.flush(10.0)
        if remaining:
            log.warning("kafka: %d messages undelivered at close", remaining)
        for group, consumer in self.consumers.items():
            if not remaining:
                self._commit(group, asynchronous=False)
            consumer.close()
        self.consumers.clear()  # break callback cycles so the clients go away now
        close = getattr(self.producer, "close", None)
        if close is not None:
            close()
