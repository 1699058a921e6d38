"""Kafka events: reads every watched topic without a consumer group.

The consumer is *assigned* partitions at explicit offsets and never subscribes,
commits or stores offsets, so no group is joined or created on the broker (the
``group.id`` librdkafka insists on is a private, random one that never reaches a
coordinator). Positions are saved in the store after each run (``reading_state``, with
the DLQ books): a restarted collector goes on from them, so each message is stored once.
A partition with no saved position starts at the offset of ``lookback_s`` ago
(``list_offsets`` for that timestamp), or, without a lookback, ``backlog`` messages before
its end.

Which topics: the ``topics`` regex and the ``globs`` must both match. With
``sample_ratio`` < 1 only correlation IDs whose stable hash falls in the sample are
kept (:func:`eventscope.collectors.events_common.in_sample`); dead letters are counted in the
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
from confluent_kafka.admin import AdminClient, OffsetSpec

from eventscope.collectors.events_common import (DeadLetterBook, EventBatch, RecordOrigins, gc_paused,
                                                 glob_filter, reading_rows, restore_reading)
from eventscope.collectors.kafka.offsets import list_offsets
from eventscope import schemas
from eventscope.decode import headers_to_dict


class KafkaEventsCollector:
    """Observed events and DLQ summaries from Kafka."""

    name = "kafka.events"
    kind = "kafka"

    def __init__(self, client_conf: dict, source: str = "kafka", topics: str = r"^(?!__).*",
                 dlq_pattern: str = r"\.DLT$", max_events: int = 5000, backlog: int = 5000,
                 timeout_s: float = 10.0, budget_s: float = 2.0, lookback_s: float | None = None,
                 globs: list | None = None, sample_ratio: float = 1.0, decoder=None,
                 payload_max_chars: int = 4000, dlq_read_max: int = 10_000, connect=None,
                 trouble=None):
        conf = dict(client_conf)
        conf.update({"group.id": f"eventscope-observer-{uuid.uuid4().hex}",
                     "enable.auto.commit": False, "enable.auto.offset.store": False,
                     "enable.partition.eof": True, "auto.offset.reset": "earliest",
                     # librdkafka prefetches up to 64 MB and 100,000 messages a partition by
                     # default; a run reads at most max_events messages, so a smaller queue
                     # holds what it needs. Both caps: the byte cap counts payloads only, and
                     # each queued message costs ~100 bytes more, which for small messages on
                     # 2,000 partitions is most of the memory (37 MiB of 16 MB of payloads).
                     # A fetch's answer is read into buffers of its size and kept: 1 MiB answers
                     # held 18 MiB less than 4 MiB ones on a 2,000-partition cluster, at the same
                     # 5,000 events a run (a message bigger than that still comes, alone)
                     "queued.max.messages.kbytes": 4096, "queued.min.messages": 1000,
                     "fetch.max.bytes": 1024 * 1024})
        self.consumer = Consumer(conf)
        # metadata and watermarks through an admin client: its own connection, so these small
        # requests never queue behind the consumer's long-polling fetches (up to
        # fetch.wait.max.ms each), and all partitions' offsets go in one batched request
        self.admin = AdminClient(dict(client_conf))
        self.trouble = trouble  # ConnectionTrouble: why a connection fails, for the health line
        self.source = self.broker = source
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
        self._next: dict[tuple[str, int], int] = {}  # next offset to read, per partition read from
        self.books: dict[str, DeadLetterBook] = {}
        self._resume: dict[tuple[str, int], int] = {}  # saved positions not assigned yet
        self._partitions: dict[str, int] = {}  # partitions per topic, from the newest metadata
        self.origins = RecordOrigins()  # a DLQ without headers: its records' bytes name their source
        self.dlq_read_max = dlq_read_max  # a DLQ seen for the first time: read this much of it
        self.connect = connect  # ConnectDirectory: DLQs Kafka Connect is configured with, and their sources

    def is_dlq(self, topic: str) -> bool:
        """A dead-letter topic by its name (``dlq_pattern``) or by a Connect connector's configuration."""
        return bool(self.dlq_filter.search(topic)) or (self.connect is not None and self.connect.is_dlq(topic))

    def _declared(self) -> dict[str, list[str]]:
        """DLQ -> the topics the Connect connector writing it reads."""
        if self.connect is None:
            return {}
        return {dlq: self.connect.sources(dlq, self._partitions) for dlq in self.connect.connectors}

    def collect(self) -> dict[str, pd.DataFrame]:
        try:
            self._assign_new()
        except KafkaException as exc:
            if self.trouble is None:
                raise
            raise self.trouble.explain(exc, self.admin) from None
        finally:
            if self.trouble is not None:
                self.admin.poll(0)  # serve the error callbacks: they queue until polled
        now = pd.Timestamp.now(tz="UTC")
        with gc_paused():  # thousands of small objects per read, none in a cycle
            batch = self._read()
        return {"events": batch.frame(now, self.books), "dlq": self._dlq_rows(now)}

    def _assign_new(self) -> None:
        meta = self.admin.list_topics(timeout=self.timeout_s)
        self._partitions = {t.topic: len(t.partitions) for t in meta.topics.values() if not t.error}
        self._forget_deleted(meta.topics.keys())
        wanted = []
        for topic in meta.topics.values():
            if topic.error or not self.topic_filter.search(topic.topic) \
                    or not self.glob.match(topic.topic):
                continue
            wanted += [TopicPartition(topic.topic, p) for p in topic.partitions
                       if (topic.topic, p) not in self.assigned]
        if not wanted:
            return
        lows = self._offsets(wanted, OffsetSpec.earliest())
        highs = self._offsets(wanted, OffsetSpec.latest())
        new = []
        for tp in wanted:
            key = (tp.topic, tp.partition)
            if key not in lows or key not in highs:
                continue  # no leader yet (new topic): assign it on a later sample
            low, high = lows[key], highs[key]
            start = max(low, high - self.backlog) if high > 0 else OFFSET_BEGINNING
            new.append(TopicPartition(tp.topic, tp.partition, start))
            self._high[key] = high
            self.assigned.add(key)
        if new and self.lookback_s is not None:
            new = self._from_lookback(new)
        # where the store says an earlier run stopped: go on from there (what the retention
        # deleted meanwhile is gone; a position past the end means the topic was recreated)
        new = [TopicPartition(tp.topic, tp.partition,
                              _within(self._resume.pop((tp.topic, tp.partition)), lows[(tp.topic, tp.partition)],
                                      highs[(tp.topic, tp.partition)], tp.offset))
               if (tp.topic, tp.partition) in self._resume
               else self._dlq_start(tp, lows, highs) if self.is_dlq(tp.topic)
               else tp for tp in new]
        for tp in new:  # where reading starts: a run is caught up once it has read to the end
            self._next[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else lows[(tp.topic, tp.partition)]
        if new:
            self.consumer.incremental_assign(new)

    def _forget_deleted(self, existing) -> None:
        """Partitions of topics the cluster no longer has (not merely erroring) are unassigned
        and their state goes: a cluster where topics come and go must not grow this process."""
        existing = set(existing)
        gone = [key for key in self.assigned if key[0] not in existing]
        if gone:
            self.consumer.incremental_unassign([TopicPartition(t, p) for t, p in gone])
            for key in gone:
                self.assigned.discard(key)
                self._high.pop(key, None)
                self._next.pop(key, None)
        for topic in [t for t in self.books if t not in existing]:
            del self.books[topic]
        self._resume = {key: v for key, v in self._resume.items() if key[0] in existing}

    def _dlq_start(self, tp, lows: dict, highs: dict) -> TopicPartition:
        """A DLQ partition seen for the first time is read from its oldest message, so the
        reasons describe all it holds, up to ``dlq_read_max`` messages per DLQ (shared by its
        partitions): past that, from the newest, and the book notes what was left unread."""
        key = (tp.topic, tp.partition)
        low, high = lows[key], highs[key]
        share = -(-self.dlq_read_max // max(1, self._partitions.get(tp.topic, 1)))
        start = max(low, high - share)
        if start > low:
            book = self.books.setdefault(tp.topic, DeadLetterBook())
            book.unread_until[tp.partition] = start
            book.unread += start - low
        return TopicPartition(tp.topic, tp.partition, start if high > 0 else OFFSET_BEGINNING)

    def reading_state(self, now) -> list[dict]:
        """``reading_state`` rows: the next offset of every partition read, and the DLQ books."""
        positions = {key: offset for key, offset in self._next.items() if offset >= 0}
        positions.update({key: offset for key, offset in self._resume.items() if key not in positions})
        return reading_rows(now, self.source, self.broker, positions, self.books)

    def restore(self, rows: pd.DataFrame, events: pd.DataFrame | None = None) -> None:
        """Go on from saved ``reading_state`` rows (and the ``events`` stored after them):
        every partition from its saved position instead of the lookback, each DLQ's book
        with every reason it had counted."""
        positions, books = restore_reading(rows, events, "kafka")
        self._resume = {key: int(offset) for key, offset in positions.items()}
        self.books.update(books)

    def rewind(self, rows: pd.DataFrame, events: pd.DataFrame | None = None) -> None:
        """Back to what the store holds (its last store failed): every partition is assigned
        again from the saved positions, moved past the events stored since, as after a restart."""
        if self.assigned:
            self.consumer.unassign()
        self.assigned.clear()
        self._high.clear()
        self.books = {}
        self.restore(rows, events)

    def _offsets(self, partitions: list, spec) -> dict[tuple[str, int], int]:
        """Offsets at ``spec``; a partition that fails (no leader for a moment) is left out."""
        return list_offsets(self.admin, partitions, spec, self.timeout_s)[0]

    def _from_lookback(self, wanted: list) -> list:
        """Start each partition at the first offset at or after ``lookback_s`` ago."""
        since_ms = int((time.time() - self.lookback_s) * 1000)
        try:
            found = self._offsets(wanted, OffsetSpec.for_timestamp(since_ms))
        except KafkaException:
            return wanted  # keep the bounded tail rather than read nothing
        if not found:
            return wanted
        out = []
        for tp in wanted:
            hit = found.get((tp.topic, tp.partition), -1)
            if hit >= 0:
                out.append(TopicPartition(tp.topic, tp.partition, hit))
            else:
                # nothing that recent: start at the end offset read a moment ago. Not OFFSET_END,
                # which resolves later and would skip what is produced in between.
                high = self._high.get((tp.topic, tp.partition), 0)
                out.append(TopicPartition(tp.topic, tp.partition, high if high > 0 else OFFSET_BEGINNING))
        return out

    def _targets(self) -> dict[tuple[str, int], int]:
        """Per assigned partition, the end offset the client last heard of (from its fetch
        responses; no request): what this run reads up to. Later messages wait for the next run,
        so a run over a busy topic ends when it has caught up instead of chasing new traffic
        until its time budget, which would hold back everything it read so far."""
        targets = {}
        for topic, part in self.assigned:
            try:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, part), cached=True)
            except KafkaException:
                continue
            if high is not None and high >= 0:
                targets[(topic, part)] = high
        return targets

    def _read(self) -> EventBatch:
        """Read up to the end offsets the client knows of (see :meth:`_targets`).

        A partition is done when it has been read to its known end offset, or reported its
        end (``PARTITION_EOF``); one the client has not fetched yet (just assigned) is waited
        for, within ``budget_s``. At most ``max_events`` per run; the rest stays queued."""
        batch = EventBatch(self.source, self.broker, decoder=self.decoder, sample_ratio=self.sample_ratio,
                           origins=self.origins, declared=self._declared(),
                           payload_max_chars=self.payload_max_chars)
        deadline = time.monotonic() + self.budget_s
        targets = self._targets()
        unknown = set(self.assigned) - targets.keys()
        pending = {k for k, high in targets.items() if self._next.get(k, -1) < high}
        dead_letter_topics = {t for t, _ in self.assigned if self.is_dlq(t)}
        if pending:  # the client's position also moves past transaction markers (never delivered)
            try:
                for tp in self.consumer.position([TopicPartition(t, p) for t, p in pending]):
                    key = (tp.topic, tp.partition)
                    if tp.error is None and tp.offset >= 0:
                        self._next[key] = max(self._next.get(key, -1), tp.offset)
            except KafkaException:
                pass
            pending = {k for k in pending if self._next.get(k, -1) < targets[k]}
        while (unknown or pending) and len(batch) < self.max_events and time.monotonic() < deadline:
            # fetched messages wait in the client's queue, so a short wait is enough; an empty
            # answer while only known partitions are behind means the rest arrives with a
            # later fetch, which the next run reads
            fetched = self.consumer.consume(num_messages=500, timeout=0.05)
            if not fetched and not unknown:
                break
            for msg in fetched:
                key = (msg.topic(), msg.partition())
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        # the end, also past transaction markers no message is delivered for
                        self._next[key] = max(self._next.get(key, 0), msg.offset())
                        pending.discard(key)
                        unknown.discard(key)
                    continue
                self._next[key] = msg.offset() + 1
                if key in pending and msg.offset() + 1 >= targets[key]:
                    pending.discard(key)
                _, ts = msg.timestamp()
                batch.add(key[0], key[1], str(msg.offset()), ts if ts and ts > 0 else None, msg.value(),
                          headers_to_dict(msg.headers()), key[0] in dead_letter_topics)
        return batch

    def _dlq_rows(self, now) -> pd.DataFrame:
        rows = []
        for topic, p in sorted(self.assigned):
            if not self.is_dlq(topic):
                continue
            self.books.setdefault(topic, DeadLetterBook())
        declared = self._declared()
        parts = [TopicPartition(t, p) for t, p in sorted(self.assigned) if t in self.books]
        try:
            lows = self._offsets(parts, OffsetSpec.earliest())
            highs = self._offsets(parts, OffsetSpec.latest())
        except KafkaException:
            lows = highs = {}
        for topic, book in sorted(self.books.items()):
            keys = [(t, p) for t, p in self.assigned if t == topic]
            if len(keys) < self._partitions.get(topic, 0) or not all(k in lows and k in highs for k in keys):
                continue  # leaderless for a moment (or not assigned yet for that): skip rather than under-count
            depth = sum(max(0, highs[k] - lows[k]) for k in keys)
            # left unread by the first read and still held (the retention deletes oldest first)
            unread = sum(max(0, int(book.unread_until.get(p, 0)) - lows[(t, p)]) for t, p in keys)
            rows.append(book.row(now, self.source, self.broker, topic, depth, None, unread,
                                 declared=declared.get(topic)))
        return schemas.conform("dlq", rows)

    def close(self) -> None:
        """Close the consumer (it has no group to leave and nothing to commit)."""
        self.consumer.close()
        self.admin = None  # AdminClient has no close: dropping it frees it


def _within(saved: int, low: int, high: int, otherwise: int) -> int:
    """A saved next offset, moved up to the oldest one still kept; past the end (the topic
    was deleted and created again) the start a new partition would get."""
    if saved > high:
        return otherwise
    return max(saved, low)
