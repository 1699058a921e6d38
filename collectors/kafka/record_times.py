"""Exact Kafka lag in seconds: the timestamp of the record at a group's committed offset.

Interpolating end-offset samples (:mod:`eventscope.collectors.kafka.timelag`) only knows the
offsets it watched move: a group that stalled before eventscope started has a committed
offset older than any sample, and its lag in seconds stays unknown or extrapolated, for
the group that matters most. The record at the committed offset is the oldest message
the group has not processed; its timestamp is when it was produced (``CreateTime``) or
appended (``LogAppendTime``), so ``now - timestamp`` is the lag in seconds, exact from
the first sample.

Reading it costs a fetch, so it is done only where interpolation is weak (a committed
offset older than the collector's table of end offsets), and:

- the consumer is *assigned* partitions at explicit offsets, never subscribes or commits
  (its ``group.id`` is a random one librdkafka insists on and no broker ever hears of);
- an answer is cached per (topic, partition, offset): the record at an offset never
  changes, so a stalled group costs one fetch, not one per sample;
- the first sample fetches at most ``first_budget`` positions within ``first_time_budget_s``
  (2,000 in 1 s), every later one ``budget`` within ``time_budget_s`` (50 in 0.1 s), oldest
  unknown first; the rest keep the interpolated value and get their turn next sample;
- prefetching is capped (a few kB per partition), so a fetch holds one record batch,
  not megabytes of a backlog.

A committed offset whose record is gone (retention, compaction) reads the oldest record
still there: a lower bound, since the group has not processed it either. A committed
offset at the log end has no record: lag 0, never fetched.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict

from confluent_kafka import Consumer, KafkaError, TopicPartition

log = logging.getLogger("eventscope.kafka")


class RecordTimes:
    """Timestamps (epoch seconds) of the records at given (topic, partition, offset)."""

    def __init__(self, conf: dict, budget: int = 50, time_budget_s: float = 0.1,
                 first_budget: int = 2000, first_time_budget_s: float = 1.0, max_cached: int = 20_000):
        self.conf = dict(conf, **{"group.id": f"eventscope-times-{uuid.uuid4().hex}",
                                  "enable.auto.commit": False, "enable.auto.offset.store": False,
                                  "enable.partition.eof": True, "auto.offset.reset": "earliest",
                                  "fetch.wait.max.ms": 10, "max.partition.fetch.bytes": 4096,
                                  "fetch.max.bytes": 1_048_576, "queued.max.messages.kbytes": 1024,
                                  "queued.min.messages": 1})
        # the first sample may spend more: a group that stalled before eventscope started is
        # the one to date at once; later samples only add what moved, a little at a time
        self.budget, self.time_budget_s = first_budget, first_time_budget_s
        self.steady = (budget, time_budget_s)
        self.max_cached = max_cached
        self.cache: OrderedDict[tuple[str, int, int], float | None] = OrderedDict()
        self.consumer: Consumer | None = None
        self.fetched = 0  # positions fetched by the last call (for the health row and tests)

    def cached(self, key: tuple[str, int, int]) -> float | None:
        """The cached timestamp of ``key`` (None when unknown or not cached)."""
        return self.cache.get(key)

    def lookup(self, wanted: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], float]:
        """Timestamps of ``wanted`` positions (most important first): cached ones, then up to
        ``budget`` fetched now. Positions without an answer are left out."""
        out = {}
        missing = []
        for key in wanted:
            if key in self.cache:
                stamp = self.cache[key]
                self.cache.move_to_end(key)
                if stamp is not None:
                    out[key] = stamp
            elif len(missing) < self.budget:
                missing.append(key)
        self.fetched = 0
        if missing:
            for key, stamp in self._fetch(missing).items():
                self._remember(key, stamp)
                if stamp is not None:
                    out[key] = stamp
        self.budget, self.time_budget_s = self.steady
        return out

    def _remember(self, key, stamp) -> None:
        self.cache[key] = stamp
        if len(self.cache) > self.max_cached:
            self.cache.popitem(last=False)

    def _fetch(self, keys: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], float | None]:
        """One record per position. A partition is assigned at one offset at a time, so
        positions sharing a partition (two groups at different offsets) take rounds."""
        if self.consumer is None:
            self.consumer = Consumer(self.conf)
        answers: dict[tuple[str, int, int], float | None] = {}
        deadline = time.monotonic() + self.time_budget_s
        todo = list(keys)
        while todo and time.monotonic() < deadline:
            round_, later, seen = [], [], set()
            for key in todo:
                (later if key[:2] in seen else round_).append(key)
                seen.add(key[:2])
            answers.update(self._fetch_round(round_, deadline))
            todo = later
        return answers

    def _fetch_round(self, keys: list, deadline: float) -> dict:
        by_partition = {key[:2]: key for key in keys}
        answers: dict = {}
        consumer = self.consumer
        consumer.assign([TopicPartition(t, p, o) for t, p, o in keys])
        try:
            while by_partition and time.monotonic() < deadline:
                for msg in consumer.consume(num_messages=max(1, len(by_partition)), timeout=0.05):
                    key = by_partition.get((msg.topic(), msg.partition()))
                    if key is None:
                        continue  # a later record of a partition already answered
                    error = msg.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            answers[key] = None  # nothing at or after the offset: caught up
                            del by_partition[key[:2]]
                        continue
                    kind, stamp_ms = msg.timestamp()
                    answers[key] = stamp_ms / 1000.0 if stamp_ms and stamp_ms > 0 else None
                    del by_partition[key[:2]]
                    consumer.pause([TopicPartition(msg.topic(), msg.partition())])
        finally:
            consumer.unassign()
        self.fetched += len(answers)
        return answers

    def close(self) -> None:
        """Close the consumer (no group to leave, nothing to commit)."""
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
