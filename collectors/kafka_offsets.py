"""Kafka offsets and consumer-group lag.

Per sample: one metadata request, one ``list_offsets`` round for the end offsets of
every partition (and one for the earliest offsets), one ``list_consumer_groups``
(which also gives each group's state), ``describe_consumer_groups`` only for groups
that have members, and committed offsets for each group with at most
``concurrency`` requests in flight (the client API takes one group per call). End
offsets are shared by every group: requests grow with groups, never with
groups × topics. A group that fails to answer is skipped for that sample only.

Read-only: the AdminClient never joins a group or commits.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from concurrent.futures import Future

import pandas as pd
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from eventscope.collectors.timelag import OffsetClock
from eventscope import schemas

log = logging.getLogger("eventscope.kafka")


def kafka_client_config(cfg) -> dict:
    """librdkafka settings from a KafkaConfig (the secret is passed, never printed)."""
    conf = {"bootstrap.servers": cfg.bootstrap, "security.protocol": cfg.security_protocol,
            "socket.timeout.ms": int(cfg.timeout_s * 1000), "client.id": "eventscope",
            "log.connection.close": False}
    if cfg.sasl_mechanism:
        conf["sasl.mechanism"] = cfg.sasl_mechanism
    if cfg.sasl_username:
        conf["sasl.username"] = cfg.sasl_username
    if cfg.sasl_password:
        conf["sasl.password"] = cfg.sasl_password.get()
    return conf


class KafkaOffsetsCollector:
    """Topics' offsets and every consumer group's committed offsets and lag."""

    name = "kafka.offsets"

    def __init__(self, admin: AdminClient, source: str = "kafka", topics: str = r"^(?!__).*",
                 timeout_s: float = 10.0, concurrency: int = 16, probe_conf: dict | None = None,
                 probe_max_lag: int = 5, probe_budget: int = 20):
        self.admin = admin
        self.source = source
        self.topic_filter = re.compile(topics)
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.clocks: dict[tuple[str, int], OffsetClock] = {}
        self.probe = ControlRecordProbe(probe_conf, timeout_s) if probe_conf else None
        self.probe_max_lag = probe_max_lag
        self.probe_budget = probe_budget
        self.probes_left = probe_budget
        self.last_seen: dict[tuple[str, str, int], tuple[int, int]] = {}
        self.group_errors = 0

    def collect(self) -> dict[str, pd.DataFrame]:
        now = pd.Timestamp.now(tz="UTC")
        meta = self.admin.list_topics(timeout=self.timeout_s)
        partitions = [TopicPartition(t.topic, p) for t in meta.topics.values()
                      if self.topic_filter.search(t.topic) and not t.error
                      for p in t.partitions]
        ends = self._offsets(partitions, OffsetSpec.latest())
        starts = self._offsets(partitions, OffsetSpec.earliest())
        wall = time.time()
        for key, end in ends.items():
            self.clocks.setdefault(key, OffsetClock()).record(end, wall)
        topics = [{"sampled_at": now, "source": self.source, "broker": "kafka", "topic": t,
                   "partition": p, "start": starts.get((t, p)), "end": e}
                  for (t, p), e in sorted(ends.items())]
        self.group_errors = 0
        lag_rows, member_rows = self._group_rows(now, wall, ends)
        if self.group_errors:
            log.warning("%d group request(s) failed; those groups are left out of this sample",
                        self.group_errors)
        return {"topics": schemas.conform("topics", topics), "lag": schemas.conform("lag", lag_rows),
                "consumers": schemas.conform("consumers", member_rows)}

    def _offsets(self, partitions: list[TopicPartition], spec) -> dict[tuple[str, int], int]:
        out, failed = list_offsets(self.admin, partitions, spec, self.timeout_s)
        if failed and not out:
            raise failed[0][1]
        if failed:
            # A partition without a leader for a moment (new topic, leader election) is
            # left out of this sample instead of failing the whole sample.
            log.warning("%d partition(s) left out of this sample: %s", len(failed), failed[0][1])
        return out

    def _group_rows(self, now, wall: float, ends: dict) -> tuple[list[dict], list[dict]]:
        listing = self.admin.list_consumer_groups(request_timeout=self.timeout_s).result()
        states = {g.group_id: _state_name(g) for g in listing.valid}
        group_ids = sorted(states)
        if not group_ids:
            return [], []
        # Only groups with members need describing; the listing already gives every
        # group's state, and an Empty or Dead group has no members to describe.
        described = self._describe([g for g in group_ids if states[g] not in ("Empty", "Dead")])
        committed = self._committed(group_ids)
        by_topic: dict[str, list[int]] = {}
        for topic, partition in ends:
            by_topic.setdefault(topic, []).append(partition)
        self.probes_left = self.probe_budget
        rows, members = [], []
        for gid in group_ids:
            desc = described.get(gid)
            members.extend(_member_rows(now, self.source, gid, desc))
            state = _state_name(desc) or states[gid]
            count = len(desc.members) if desc is not None else (0 if states[gid] in ("Empty", "Dead") else None)
            offsets = committed.get(gid)
            if offsets is None:
                continue  # the group vanished or its coordinator did not answer this time
            # every partition of a topic the group commits to, so a partition that
            # has no committed offset yet shows up as unknown instead of vanishing
            for topic in sorted({t for t, _ in offsets} & by_topic.keys()):
                for partition in sorted(by_topic[topic]):
                    rows.append(self._lag_row(now, wall, gid, topic, partition,
                                              offsets.get((topic, partition)), ends[(topic, partition)],
                                              state, count))
        return rows, members

    def _describe(self, group_ids: list[str]) -> dict:
        """Describe groups, ``concurrency`` at a time; a group that fails is left out."""
        out = {}
        for i in range(0, len(group_ids), self.concurrency):
            chunk = group_ids[i:i + self.concurrency]
            for gid, fut in self.admin.describe_consumer_groups(chunk, request_timeout=self.timeout_s).items():
                try:
                    out[gid] = fut.result()
                except KafkaException:
                    self.group_errors += 1  # deleted since the listing, or coordinator loading
        return out

    def _lag_row(self, now, wall, gid, topic, partition, offset, end, state, members) -> dict:
        known = offset is not None and offset >= 0
        committed = offset if known else None
        # Clamp at zero: the committed offset and the end offset are read at
        # different moments, so a group that commits between the two reads can
        # appear ahead of the log end by a few messages.
        lag = max(0, end - committed) if known else None
        if lag and lag <= self.probe_max_lag and self._should_probe(gid, topic, partition, committed, end) \
                and self.probe.only_control(topic, partition, committed, end):
            # Transactional topics end with a commit marker that takes an offset but
            # is never delivered; a consumer that committed past its last record
            # stays "1 behind" forever. Nothing readable is left: the lag is 0.
            lag = 0
            committed_view = end
        else:
            committed_view = committed
        clock = self.clocks.get((topic, partition))
        lag_s = clock.lag_seconds(committed_view, end, wall) if clock else float("nan")
        return {"sampled_at": now, "source": self.source, "broker": "kafka", "group": gid,
                "topic": topic, "partition": partition, "committed": committed, "end": end,
                "lag": lag, "lag_seconds": lag_s, "group_state": state, "members": members}

    def _should_probe(self, gid: str, topic: str, partition: int, committed: int, end: int) -> bool:
        """Probe only a small lag frozen across two samples, within the per-sample budget."""
        if self.probe is None:
            return False
        key = (gid, topic, partition)
        frozen = self.last_seen.get(key) == (committed, end)
        self.last_seen[key] = (committed, end)
        if not frozen:
            return False
        if self.probe.known(topic, partition, committed, end):
            return True
        if self.probes_left <= 0:
            return False  # report the lag as read; the probe gets to it next sample
        self.probes_left -= 1
        return True

    def _committed(self, group_ids: list[str]) -> dict[str, dict[tuple[str, int], int]]:
        """Committed offsets per group, at most ``concurrency`` requests in flight."""
        out: dict[str, dict] = {}
        pending: list[tuple[str, Future]] = []

        def drain(limit: int) -> None:
            while len(pending) > limit:
                gid, fut = pending.pop(0)
                try:
                    result = fut.result()
                except KafkaException:
                    self.group_errors += 1  # this group is skipped this sample, not the others
                    continue
                out[gid] = {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions
                            if tp.error is None}

        for gid in group_ids:
            futs = self.admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(gid)], request_timeout=self.timeout_s)
            pending.append((gid, futs[gid]))
            drain(self.concurrency - 1)
        drain(0)
        return out

    def close(self) -> None:
        """Close the probe consumer; AdminClient has no close, dropping it frees it."""
        self.admin = None
        if self.probe:
            self.probe.close()


def list_offsets(admin: AdminClient, partitions: list, spec, timeout_s: float
                 ) -> tuple[dict[tuple[str, int], int], list]:
    """Offsets of ``partitions`` at ``spec`` (earliest, latest, for a timestamp) in one batched
    admin request: ``({(topic, partition): offset}, [(partition, error), ...])``."""
    if not partitions:
        return {}, []
    futures = admin.list_offsets({TopicPartition(tp.topic, tp.partition): spec for tp in partitions},
                                 request_timeout=timeout_s)
    out, failed = {}, []
    for tp, fut in futures.items():
        try:
            out[(tp.topic, tp.partition)] = fut.result().offset
        except KafkaException as exc:
            failed.append((tp, exc))
    return out, failed


def _state_name(desc) -> str | None:
    if desc is None:
        return None
    state = getattr(desc, "state", None)
    name = getattr(state, "name", None) or str(state)
    return name.title() if name else None


def _member_rows(now, source: str, gid: str, desc) -> list[dict]:
    """One ``consumers`` row per group member: client id, host, assigned partitions."""
    rows = []
    for member in getattr(desc, "members", None) or []:
        assigned: dict[str, list[int]] = {}
        tps = getattr(getattr(member, "assignment", None), "topic_partitions", None) or []
        for tp in tps:
            assigned.setdefault(tp.topic, []).append(tp.partition)
        assignment = " ".join(f"{t}:{','.join(map(str, sorted(ps)))}" for t, ps in sorted(assigned.items()))
        rows.append({"sampled_at": now, "source": source, "broker": "kafka", "group": gid,
                     "topic": ",".join(sorted(assigned)), "consumer": member.client_id,
                     "host": member.host, "assignment": assignment})
    return rows


class ControlRecordProbe:
    """Tells whether offsets [committed, end) of a partition hold only control records.

    Reads at most one message with ``isolation.level=read_committed`` from an
    assigned (never subscribed, never committing) consumer. Answers are cached per
    (partition, committed, end), so a frozen "lag 1" costs one fetch, not one per sample.
    """

    def __init__(self, conf: dict, timeout_s: float):
        self.conf = dict(conf, **{"group.id": f"eventscope-probe-{uuid.uuid4().hex}",
                                  "enable.auto.commit": False, "enable.auto.offset.store": False,
                                  "enable.partition.eof": True, "isolation.level": "read_committed",
                                  # answer fast: a probe at the log end must not wait for new data
                                  "fetch.wait.max.ms": 10})
        self.timeout_s = timeout_s
        self.consumer = None
        self.cache: dict[tuple[str, int, int, int], bool] = {}

    def known(self, topic: str, partition: int, committed: int, end: int) -> bool:
        """True when the answer for this position is cached (costs no fetch)."""
        return (topic, partition, committed, end) in self.cache

    def only_control(self, topic: str, partition: int, committed: int, end: int) -> bool:
        """True when no deliverable record sits between ``committed`` and ``end``."""
        key = (topic, partition, committed, end)
        if key not in self.cache:
            if len(self.cache) > 10_000:
                self.cache.clear()
            self.cache[key] = self._probe(topic, partition, committed, end)
        return self.cache[key]

    def _probe(self, topic: str, partition: int, committed: int, end: int) -> bool:
        if self.consumer is None:
            self.consumer = Consumer(self.conf)
        self.consumer.assign([TopicPartition(topic, partition, committed)])
        deadline = time.monotonic() + self.timeout_s
        try:
            while time.monotonic() < deadline:
                msg = self.consumer.poll(0.2)
                if msg is None:
                    continue
                if msg.error() is None:
                    return msg.offset() >= end  # a real record below end: real lag
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    return True
                return False
            return False  # no answer in time: keep the reported lag
        finally:
            self.consumer.unassign()

    def close(self) -> None:
        """Close the consumer (no group to leave, nothing to commit)."""
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
