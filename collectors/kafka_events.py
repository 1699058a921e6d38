"""Kafka events: reads every watched topic without a consumer group.

The consumer is *assigned* partitions at explicit offsets and never subscribes,
commits or stores offsets, so no group is joined or created on the broker (the
``group.id`` librdkafka insists on is a private, random one that never reaches a
coordinator). Positions live in memory: on the first sample each partition starts at
the offset of ``lookback_s`` ago (``offsets_for_times``), or, without a lookback,
``backlog`` messages before its end, so a restart re-reads a bounded tail.

Which topics: the ``topics`` regex and the ``globs`` must both match. With
``sample_ratio`` < 1 only correlation IDs whose stable hash falls in the sample are
kept (:func:`collectors.events_common.in_sample`); dead letters are counted in the
DLQ summary before sampling.

Dead-letter topics (``dlq_pattern``) are read the same way; their rows are marked
``dead_letter`` and summarised into the ``dlq`` frame with depth from watermarks.
"""
from __future__ import annotations

import re
import time
import uuid

import pandas as pd
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from collectors.events_common import DeadLetterBook, event_row, glob_filter, in_sample
from eventscope import schemas
from eventscope.decode import headers_to_dict


class KafkaEventsCollector:
    """Observed events and DLQ summaries from Kafka."""

    name = "kafka.events"

    def __init__(self, client_conf: dict, source: str = "kafka", topics: str = r"^(?!__).*",
                 dlq_pattern: str = r"\.DLT$", max_events: int = 5000, backlog: int = 5000,
                 timeout_s: float = 10.0, budget_s: float = 2.0, lookback_s: float | None = None,
                 globs: list | None = None, sample_ratio: float = 1.0, decoder=None,
                 payload_max_chars: int = 4000):
        conf = dict(client_conf)
        conf.update({"group.id": f"eventscope-observer-{uuid.uuid4().hex}",
                     "enable.auto.commit": False, "enable.auto.offset.store": False,
                     "enable.partition.eof": True, "auto.offset.reset": "earliest"})
        self.consumer = Consumer(conf)
        self.source = source
        self.topic_filter = re.compile(topics)
        self.dlq_filter = re.compile(dlq_pattern)
        self.max_events = max_events
        self.backlog = backlog
        self.timeout_s = timeout_s
        self.budget_s = budget_s
        self.lookback_s = lookback_s
        self.glob = glob_filter(globs)
        self.sample_ratio = sample_ratio
        self.decoder = decoder
        self.payload_max_chars = payload_max_chars
        self.assigned: set[tuple[str, int]] = set()
        self._high: dict[tuple[str, int], int] = {}  # end offset seen when a partition was assigned
        self.books: dict[str, DeadLetterBook] = {}

    def collect(self) -> dict[str, pd.DataFrame]:
        self._assign_new()
        now = pd.Timestamp.now(tz="UTC")
        rows = self._read(now)
        return {"events": schemas.conform("events", rows), "dlq": self._dlq_rows(now)}

    def _assign_new(self) -> None:
        meta = self.consumer.list_topics(timeout=self.timeout_s)
        new = []
        for topic in meta.topics.values():
            if topic.error or not self.topic_filter.search(topic.topic) \
                    or not self.glob.match(topic.topic):
                continue
            for p in topic.partitions:
                if (topic.topic, p) in self.assigned:
                    continue
                try:
                    low, high = self.consumer.get_watermark_offsets(
                        TopicPartition(topic.topic, p), timeout=self.timeout_s)
                except KafkaException:
                    continue  # no leader yet (new topic): assign it on a later sample
                start = max(low, high - self.backlog) if high > 0 else OFFSET_BEGINNING
                new.append(TopicPartition(topic.topic, p, start))
                self._high[(topic.topic, p)] = high
                self.assigned.add((topic.topic, p))
        if new and self.lookback_s is not None:
            new = self._from_lookback(new)
        if new:
            self.consumer.incremental_assign(new)

    def _from_lookback(self, wanted: list) -> list:
        """Start each partition at the first offset at or after ``lookback_s`` ago."""
        since_ms = int((time.time() - self.lookback_s) * 1000)
        try:
            found = self.consumer.offsets_for_times(
                [TopicPartition(tp.topic, tp.partition, since_ms) for tp in wanted], timeout=self.timeout_s)
        except KafkaException:
            return wanted  # keep the bounded tail rather than read nothing
        out = []
        for tp, hit in zip(wanted, found):
            if hit.error is None and hit.offset >= 0:
                out.append(TopicPartition(tp.topic, tp.partition, hit.offset))
            else:
                # nothing that recent: start at the end offset read a moment ago. Not OFFSET_END,
                # which resolves later and would skip what is produced in between.
                high = self._high.get((tp.topic, tp.partition), 0)
                out.append(TopicPartition(tp.topic, tp.partition, high if high > 0 else OFFSET_BEGINNING))
        return out

    def _read(self, now) -> list[dict]:
        rows: list[dict] = []
        deadline = time.monotonic() + self.budget_s
        at_eof: set[tuple[str, int]] = set()
        while len(rows) < self.max_events and time.monotonic() < deadline:
            batch = self.consumer.consume(num_messages=500, timeout=0.2)
            if not batch:
                break
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_eof.add((msg.topic(), msg.partition()))
                    continue
                row = self._row(now, msg)
                if row is not None:
                    rows.append(row)
            if at_eof >= self.assigned:
                break
        return rows

    def _row(self, now, msg) -> dict | None:
        topic = msg.topic()
        _, ts = msg.timestamp()
        broker_at = pd.Timestamp(ts, unit="ms", tz="UTC") if ts and ts > 0 else None
        dead = bool(self.dlq_filter.search(topic))
        row = event_row(now, self.source, "kafka", topic, msg.partition(), str(msg.offset()),
                        msg.value(), headers_to_dict(msg.headers()), broker_at, dead,
                        payload_max_chars=self.payload_max_chars, decoder=self.decoder)
        if row["dead_letter"]:  # by name, or by the headers a DLQ publisher writes
            self.books.setdefault(topic, DeadLetterBook()).add(row)
        return row if in_sample(row["correlation_id"], self.sample_ratio) else None

    def _dlq_rows(self, now) -> pd.DataFrame:
        rows = []
        for topic, p in sorted(self.assigned):
            if not self.dlq_filter.search(topic):
                continue
            self.books.setdefault(topic, DeadLetterBook())
        for topic, book in sorted(self.books.items()):
            depth, oldest, complete = 0, None, True
            for t, p in self.assigned:
                if t != topic:
                    continue
                try:
                    low, high = self.consumer.get_watermark_offsets(
                        TopicPartition(t, p), timeout=self.timeout_s, cached=False)
                except KafkaException:
                    complete = False  # leaderless for a moment: skip rather than under-count
                    break
                depth += max(0, high - low)
            if complete:
                rows.append(book.row(now, self.source, "kafka", topic, depth, oldest))
        return schemas.conform("dlq", rows)

    def close(self) -> None:
        """Close the consumer (it has no group to leave and nothing to commit)."""
        self.consumer.close()
