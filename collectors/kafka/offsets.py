"""Kafka offsets and consumer-group lag.

Per sample: one metadata request, one ``list_offsets`` round for the end offsets of
every partition (and one for the earliest offsets, which only the topics frame needs: it
is answered while the groups are), one ``list_consumer_groups`` (which also gives each
group's state; it is answered while the end offsets are read), ``describe_consumer_groups``
only for groups that have members, and committed offsets for each group (the client API
takes one group per call), with at most ``concurrency`` group requests in flight.
In-flight requests are bounded (200 in flight are as fast as 1,000 on a 1,000-group
cluster), and a group request never reaches its own deadline in librdkafka: librdkafka
2.x aborts the whole process (``rd_kafka_enq_once_del_source_return`` assertion, issue
4605) when a group request's deadline passes while its coordinator lookup is in flight,
which any broker that stalls longer than the deadline (a GC pause, a restart, a network
hiccup) causes; stopping the broker for 7 s with a 5 s deadline did it every time.
Group requests are therefore made with an hour-long deadline
(:data:`GROUP_REQUEST_DEADLINE_S`); a stalled request fails at the socket timeout
instead (``socket.timeout.ms``, ``timeout_s``), which librdkafka handles, and the sample
keeps its own time by waiting for the answers at most ``timeout_s`` (half again for the
last ones). A request still unanswered then is left to finish on its own and counted as
a failed group; while :data:`UNANSWERED_MAX` such requests are outstanding, a sample asks
for no groups and says so, rather than pile more onto a broker that is not answering.
Committed offsets are asked for once the end offsets are in, so each committed offset is
read after the end offset it is compared with. End offsets are shared by every group:
requests grow with groups, never with groups × topics. A group that fails to answer is
skipped for that sample only.

Lag rows are built column by column: the groups' answers go into one array per column,
lag is computed on whole columns, and lag in seconds comes from one table of (end offset,
time) points for all partitions (:class:`~eventscope.collectors.kafka.timelag.OffsetClocks`),
replaced by the exact age of the record at the committed offset where that is read
(:class:`~eventscope.collectors.kafka.record_times.RecordTimes`, budgeted and cached).

Read-only: the AdminClient never joins a group or commits.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Callable

import numpy as np
import pandas as pd
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from eventscope.collectors.events_common import gc_paused
from eventscope.collectors.kafka.config import secret_property
from eventscope.collectors.kafka.record_times import RecordTimes
from eventscope.collectors.kafka.security import ConnectionTrouble, security_settings
from eventscope.collectors.kafka.timelag import OffsetClocks
from eventscope import schemas

log = logging.getLogger("eventscope.kafka")
GROUP_REQUEST_DEADLINE_S = 3600.0  # librdkafka's own deadline for a group request: never reached
SILENT_SAMPLES_MAX = 3  # samples in a row without any group answer before the admin client is replaced
RENEW_EVERY_S = 60.0
UNANSWERED_MAX = 400  # group requests left unanswered by earlier samples before a sample asks for none


def kafka_client_config(cfg, trouble: ConnectionTrouble | None = None) -> dict:
    """librdkafka settings from a KafkaConfig (secrets are passed, never printed): ours, then
    ``properties`` (which may change ours), then the named keys' (a property never sets one
    of those: see :mod:`eventscope.collectors.kafka.config`). With ``trouble``, its
    ``error_cb`` keeps the reason a connection fails."""
    conf = {"bootstrap.servers": cfg.bootstrap, "security.protocol": cfg.security_protocol,
            "socket.timeout.ms": int(cfg.timeout_s * 1000), "client.id": "eventscope",
            "log.connection.close": False,
            # a sample every few seconds needs no reconnect every 100 ms: while a broker is
            # down, the default filled the log with some 35 "Connect ... failed" lines a second
            "reconnect.backoff.ms": 1000}
    conf.update({key: value for key, value in (getattr(cfg, "properties", None) or {}).items()})
    conf.update(security_settings(cfg, trouble))
    if trouble is not None:
        conf["error_cb"] = trouble.error_cb
    return conf


def client_secrets(cfg) -> tuple:
    """Every secret value of a KafkaConfig, to take out of anything shown."""
    values = [s.get() for s in (cfg.sasl_password, cfg.ssl_key_password, cfg.sasl_oauthbearer_client_secret) if s]
    values += [str(v) for k, v in (cfg.properties or {}).items() if secret_property(k)]
    return tuple(v for v in values if v)


class KafkaOffsetsCollector:
    """Topics' offsets and every consumer group's committed offsets and lag."""

    name = "kafka.offsets"
    kind = "kafka"

    def __init__(self, admin: AdminClient, source: str = "kafka", topics: str = r"^(?!__).*",
                 timeout_s: float = 10.0, concurrency: int = 200, probe_conf: dict | None = None,
                 probe_max_lag: int = 5, probe_budget: int = 20, record_times: RecordTimes | None = None,
                 admin_factory: Callable[[], AdminClient] | None = None,
                 trouble: ConnectionTrouble | None = None):
        self.admin = admin
        self.trouble = trouble  # the reason a connection fails (TLS, authentication), for the health line
        # a new admin client when this one stops getting group answers (see _renew_if_stuck)
        self.admin_factory = admin_factory
        self.silent_samples = 0  # samples in a row in which no group request was answered
        self.renewals = 0
        self._renewed_at = float("-inf")
        self.source = self.broker = source
        self.topic_filter = re.compile(topics)
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.clocks = OffsetClocks()
        self.probe = ControlRecordProbe(probe_conf, timeout_s) if probe_conf else None
        self.record_times = record_times  # exact lag seconds from the record at the committed offset
        self.probe_max_lag = probe_max_lag
        self.probe_budget = probe_budget
        self.probes_left = probe_budget
        self.last_seen: dict[tuple[str, str, int], tuple[int, int]] = {}
        self._seen_now: dict[tuple[str, str, int], tuple[int, int]] = {}
        self._probe_until = float("inf")
        self.group_errors = 0
        self.unanswered: list = []  # futures of group requests earlier samples stopped waiting for
        self._deadline = 0.0  # monotonic time the current sample stops waiting for group answers
        # wall seconds of the last sample's steps, in the order they are waited for
        self.phases: dict[str, float] = {}

    def collect(self) -> dict[str, pd.DataFrame]:
        # Thousands of futures, answers and row values, none in a reference cycle: the
        # cyclic garbage collector would only walk them again and again while they pile up.
        try:
            with gc_paused():
                frames = self._collect()
        except KafkaException as exc:
            if self.trouble is None:
                raise
            raise self.trouble.explain(exc, self.admin) from None  # serves the error callbacks first
        if self.trouble is not None:
            self.admin.poll(0)  # serve the error callbacks (they queue until polled), then forget them
            self.trouble.clear()
        return frames

    def _collect(self) -> dict[str, pd.DataFrame]:
        self._renew_if_stuck()  # first: no request of this sample may be left on a dropped client
        now = pd.Timestamp.now(tz="UTC")
        self.phases = {}
        mark = time.perf_counter()
        meta = self.admin.list_topics(timeout=self.timeout_s)
        partitions = [TopicPartition(t.topic, p) for t in meta.topics.values()
                      if self.topic_filter.search(t.topic) and not t.error
                      for p in t.partitions]
        mark = self._lap("metadata", mark)
        # The group listing does not depend on any offset: it is answered meanwhile.
        listing = self.admin.list_consumer_groups(request_timeout=self.timeout_s)
        ends = self._offsets(partitions, OffsetSpec.latest())
        wall = time.time()
        keys = sorted(ends)  # (topic, partition): each topic's partitions together, in order
        end_col = np.fromiter((ends[key] for key in keys), dtype=np.int64, count=len(keys))
        if len(self.clocks.rows) > len(keys) + max(1000, len(keys) // 2):
            self.clocks.retain(keys)  # many partitions deleted since: their clocks go
        clock_rows = self.clocks.rows_of(keys)
        self.clocks.record(clock_rows, end_col, wall)
        # The earliest offsets only fill the topics frame: they are read while the groups answer.
        earliest = request_offsets(self.admin, partitions, OffsetSpec.earliest(), self.timeout_s)
        mark = self._lap("end offsets", mark)
        self.group_errors = 0
        lag, members = self._group_frames(now, wall, listing, keys, end_col, clock_rows, mark)
        if self.group_errors:
            log.warning("%d group request(s) failed; those groups are left out of this sample",
                        self.group_errors)
        mark = time.perf_counter()
        starts = self._checked(offsets_of(earliest, self.timeout_s))
        mark = self._lap("earliest offsets", mark)
        topics = schemas.conform_columns("topics", {
            "sampled_at": now, "source": self.source, "broker": self.broker, "topic": [t for t, _ in keys],
            "partition": pd.Series([p for _, p in keys], dtype="int64"),
            "start": _nullable([starts.get(key) for key in keys]), "end": _nullable(end_col)},
            len(keys)) if keys else schemas.conform("topics", [])
        self._lap("rows and frames", mark)
        return {"topics": topics, "lag": lag, "consumers": members}

    def _lap(self, phase: str, mark: float) -> float:
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - mark
        return now

    def _offsets(self, partitions: list[TopicPartition], spec) -> dict[tuple[str, int], int]:
        return self._checked(list_offsets(self.admin, partitions, spec, self.timeout_s))

    @staticmethod
    def _checked(answer: tuple[dict, list]) -> dict[tuple[str, int], int]:
        out, failed = answer
        if failed and not out:
            raise failed[0][1]
        if failed:
            # A partition without a leader for a moment (new topic, leader election) is
            # left out of this sample instead of failing the whole sample.
            log.warning("%d partition(s) left out of this sample: %s", len(failed), failed[0][1])
        return out

    def _group_frames(self, now, wall: float, listing, keys: list, end_col: np.ndarray,
                      clock_rows: np.ndarray, mark: float) -> tuple[pd.DataFrame, pd.DataFrame]:
        try:  # asked with request_timeout=timeout_s: librdkafka answers by then, or this says so
            listing = listing.result(timeout=self.timeout_s * 1.5)
        except TimeoutError:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "no answer to the group listing")) from None
        states = {g.group_id: _state_name(g) for g in listing.valid}
        group_ids = sorted(states)
        mark = self._lap("group listing", mark)
        if not group_ids:
            return schemas.conform("lag", []), schemas.conform("consumers", [])
        self.unanswered = [f for f in self.unanswered if not f.done()]
        if len(self.unanswered) >= UNANSWERED_MAX:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT,
                                            f"{len(self.unanswered)} group requests of earlier samples are still "
                                            "unanswered: the broker is not answering group requests"))
        self._deadline = time.monotonic() + self.timeout_s
        pending: deque = deque()  # (answers, group, future), in the order asked
        described, committed = {}, {}
        # Only groups with members need describing; the listing already gives every
        # group's state, and an Empty or Dead group has no members to describe.
        self._describe([g for g in group_ids if states[g] not in ("Empty", "Dead")], described, pending)
        self._committed(group_ids, committed, pending)
        mark = self._lap("committed offsets", mark)  # asking: each request leaves as it is made
        while pending and pending[0][0] is described:
            self._wait(pending, len(pending) - 1)
        mark = self._lap("describe", mark)
        self._wait(pending, 0)
        mark = self._lap("committed offsets", mark)
        # the broker listed the groups, yet answered none of them
        self.silent_samples = self.silent_samples + 1 if not described and not committed else 0
        frames = self._lag_frame(now, wall, group_ids, states, described, committed,
                                 keys, end_col, clock_rows)
        self._lap("rows and frames", mark)
        return frames

    def _renew_if_stuck(self) -> None:
        """Replace the admin client when it has stopped getting group answers although the
        broker answers its metadata and group listing: seen after a broker was killed and
        started again under a busy cluster, where the old client's group requests all timed
        out for as long as it lived while a new client's were answered at once. Only with an
        ``admin_factory``, at most once a minute; the old client's requests are dropped with it."""
        stuck = self.silent_samples >= SILENT_SAMPLES_MAX or len(self.unanswered) >= UNANSWERED_MAX
        if not stuck or self.admin_factory is None or time.monotonic() - self._renewed_at < RENEW_EVERY_S:
            return
        log.warning("the Kafka admin client got no answer to any group request for %d samples "
                    "(%d requests outstanding): a new client takes over", self.silent_samples, len(self.unanswered))
        self.admin = self.admin_factory()
        self.unanswered = []
        self.silent_samples = 0
        self.renewals += 1
        self._renewed_at = time.monotonic()

    def _describe(self, group_ids: list[str], described: dict, pending: deque) -> None:
        """Ask for the groups' descriptions, ``concurrency`` groups at a time at most."""
        for i in range(0, len(group_ids), self.concurrency):
            chunk = group_ids[i:i + self.concurrency]
            self._wait(pending, self.concurrency - len(chunk))
            if time.monotonic() > self._deadline:  # the broker stalled: ask no more this sample
                self.group_errors += len(group_ids) - i
                return
            futures = self.admin.describe_consumer_groups(chunk, request_timeout=GROUP_REQUEST_DEADLINE_S)
            pending.extend((described, gid, fut) for gid, fut in futures.items())

    def _committed(self, group_ids: list[str], committed: dict, pending: deque) -> None:
        """Ask for each group's committed offsets, with at most ``concurrency`` requests in flight."""
        for i, gid in enumerate(group_ids):
            self._wait(pending, self.concurrency - 1)
            if time.monotonic() > self._deadline:
                self.group_errors += len(group_ids) - i
                return
            futures = self.admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(gid)], request_timeout=GROUP_REQUEST_DEADLINE_S)
            pending.append((committed, gid, futures[gid]))

    def _wait(self, pending: deque, limit: int) -> None:
        """Take answers, oldest first, until at most ``limit`` requests are left in flight.
        Past the sample's deadline (half again for the last answers) a request is not
        waited for: it finishes on its own, its group is left out of this sample."""
        while len(pending) > max(0, limit):
            answers, gid, fut = pending.popleft()
            try:
                until = self._deadline + (self.timeout_s / 2 if not limit else 0.0)
                answers[gid] = fut.result(timeout=max(0.0, until - time.monotonic()))
            except TimeoutError:
                self.unanswered.append(fut)
                self.group_errors += 1
            except KafkaException:
                # deleted since the listing, coordinator loading, ...: this group is
                # skipped this sample, not the others
                self.group_errors += 1

    def _lag_frame(self, now, wall: float, group_ids: list[str], states: dict, described: dict,
                   committed: dict, keys: list, end_col: np.ndarray, clock_rows: np.ndarray
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The ``lag`` and ``consumers`` frames: one lag row per partition of every topic a
        group has committed on, groups and topics and partitions in order."""
        spans: dict[str, tuple[int, int]] = {}  # topic -> its rows in keys: [first, last + 1)
        for i, (topic, _) in enumerate(keys):
            first = spans.get(topic, (i, i))[0]
            spans[topic] = (first, i + 1)
        partitions = [p for _, p in keys]
        group_col, topic_col, state_col, count_col, offset_col, key_col = [], [], [], [], [], []
        members = []
        for gid in group_ids:
            desc = described.get(gid)
            members.extend(_member_rows(now, self.source, gid, desc))
            answer = committed.get(gid)
            if answer is None:
                continue  # the group vanished or its coordinator did not answer this time
            state = _state_name(desc) or states[gid]
            count = len(desc.members) if desc is not None else (0 if states[gid] in ("Empty", "Dead") else None)
            by_topic: dict[str, dict[int, int]] = {}
            for tp in answer.topic_partitions:
                if tp.error is None:
                    offsets = by_topic.get(tp.topic)
                    if offsets is None:
                        offsets = by_topic[tp.topic] = {}
                    offsets[tp.partition] = tp.offset
            rows = 0
            # every partition of a topic the group commits to, so a partition that
            # has no committed offset yet shows up as unknown instead of vanishing
            for topic in sorted(by_topic.keys() & spans.keys()):
                first, last = spans[topic]
                offsets = by_topic[topic]
                # -1: no committed offset (as is any negative offset the broker reports)
                offset_col.extend([offsets.get(p, -1) for p in partitions[first:last]])
                key_col.extend(range(first, last))
                topic_col.extend([topic] * (last - first))
                rows += last - first
            group_col.extend([gid] * rows)
            state_col.extend([state] * rows)
            count_col.extend([-1 if count is None else count] * rows)  # -1: not known
        n = len(offset_col)
        consumers = schemas.conform("consumers", members)
        if not n:
            return schemas.conform("lag", []), consumers
        key_col = np.array(key_col, dtype=np.intp)
        offset_col = np.array(offset_col, dtype=np.int64)
        end = end_col[key_col]
        known = offset_col >= 0
        # Clamp at zero: the committed offset and the end offset are read at
        # different moments, so a group that commits between the two reads can
        # appear ahead of the log end by a few messages.
        lag = np.maximum(0, end - offset_col)
        view = offset_col.copy()  # the offset lag in seconds is dated from
        self.probes_left = self.probe_budget
        self._probe_until = time.monotonic() + self.timeout_s  # all probes of a sample together
        if self.probe is not None:
            self._seen_now = {}
            for i in np.flatnonzero(known & (lag >= 1) & (lag <= self.probe_max_lag)).tolist():
                if self._only_markers(group_col[i], topic_col[i], partitions[key_col[i]],
                                      int(offset_col[i]), int(end[i])):
                    lag[i] = 0
                    view[i] = end[i]
            if len(self.last_seen) > 2 * len(self._seen_now) + 10_000:
                self.last_seen = self._seen_now  # groups gone, lags caught up: their positions go
        lag_s = self.clocks.lag_seconds(clock_rows[key_col], view, known, end, wall)
        if self.record_times is not None:  # where interpolation cannot date the offset
            weak = known & (view < end) & self.clocks.before_oldest(clock_rows[key_col], view)
            self._exact_seconds(lag_s, weak, view, key_col, keys, wall)
        frame = schemas.conform_columns("lag", {
            "sampled_at": now, "source": self.source, "broker": self.broker, "group": group_col,
            "topic": topic_col, "partition": pd.Series(np.asarray(partitions, dtype=np.int64)[key_col]),
            "committed": _nullable(offset_col, ~known), "end": _nullable(end), "lag": _nullable(lag, ~known),
            "lag_seconds": pd.Series(lag_s), "group_state": state_col,
            "members": _nullable(count_col, np.array(count_col) < 0)}, n)
        return frame, consumers

    def _exact_seconds(self, lag_s: np.ndarray, behind: np.ndarray, view: np.ndarray, key_col: np.ndarray,
                       keys: list, wall: float) -> None:
        """Replace lag seconds, in place, by ``now - timestamp`` of the record at the committed
        offset, for the rows in ``behind``: a committed offset older than the end-offset table
        (a group stalled before eventscope started, or longer than the table reaches), where
        interpolation is unknown or extrapolated. Unknown ones first, then the oldest, within
        the per-sample fetch budget; the cache makes a stalled group free after one fetch."""
        rows = np.flatnonzero(behind)
        if not len(rows):
            return
        order = rows[np.lexsort((-np.nan_to_num(lag_s[rows], nan=0.0), ~np.isnan(lag_s[rows])))]
        wanted = [(*keys[key_col[i]], int(view[i])) for i in order.tolist()]
        stamps = self.record_times.lookup(list(dict.fromkeys(wanted)))
        for i, key in zip(order.tolist(), wanted):
            stamp = stamps.get(key)
            if stamp is not None:
                lag_s[i] = max(0.0, wall - stamp)

    def _only_markers(self, gid: str, topic: str, partition: int, committed: int, end: int) -> bool:
        """True when a small lag is only transaction markers (see :class:`ControlRecordProbe`)."""
        # Transactional topics end with a commit marker that takes an offset but
        # is never delivered; a consumer that committed past its last record
        # stays "1 behind" forever. Nothing readable is left: the lag is 0.
        return self._should_probe(gid, topic, partition, committed, end) \
            and self.probe.only_control(topic, partition, committed, end)

    def _should_probe(self, gid: str, topic: str, partition: int, committed: int, end: int) -> bool:
        """Probe only a small lag frozen across two samples, within the per-sample budget."""
        if self.probe is None:
            return False
        key = (gid, topic, partition)
        frozen = self.last_seen.get(key) == (committed, end)
        self.last_seen[key] = self._seen_now[key] = (committed, end)
        if not frozen:
            return False
        if self.probe.known(topic, partition, committed, end):
            return True
        if self.probes_left <= 0 or time.monotonic() > self._probe_until:
            return False  # report the lag as read; the probe gets to it next sample
        self.probes_left -= 1
        return True

    def close(self) -> None:
        """Close the probe consumer; AdminClient has no close, dropping it frees it."""
        self.admin = None
        if self.probe:
            self.probe.close()
        if self.record_times is not None:
            self.record_times.close()


def _nullable(values, null=None) -> pd.Series:
    """Integers as an ``Int64`` column; ``null`` marks <NA> (else None values are)."""
    if null is None and not isinstance(values, np.ndarray):
        null = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
        values = [0 if v is None else v for v in values]
    data = np.asarray(values, dtype=np.int64)
    mask = np.zeros(len(data), dtype=bool) if null is None else np.asarray(null, dtype=bool)
    return pd.Series(pd.arrays.IntegerArray(data, mask))


def list_offsets(admin: AdminClient, partitions: list, spec, timeout_s: float
                 ) -> tuple[dict[tuple[str, int], int], list]:
    """Offsets of ``partitions`` at ``spec`` (earliest, latest, for a timestamp) in one batched
    admin request: ``({(topic, partition): offset}, [(partition, error), ...])``."""
    return offsets_of(request_offsets(admin, partitions, spec, timeout_s), timeout_s)


def request_offsets(admin: AdminClient, partitions: list, spec, timeout_s: float) -> dict:
    """Send the request of :func:`list_offsets` without waiting: ``{partition: future}``."""
    if not partitions:
        return {}
    return admin.list_offsets({TopicPartition(tp.topic, tp.partition): spec for tp in partitions},
                              request_timeout=timeout_s)


def offsets_of(futures: dict, timeout_s: float) -> tuple[dict[tuple[str, int], int], list]:
    """The answer of :func:`request_offsets`, as :func:`list_offsets` returns it. Waits
    ``timeout_s`` (and half again) at most for all of them: a future librdkafka never
    resolves counts as a failed partition instead of holding the sample for ever."""
    out, failed = {}, []
    until = time.monotonic() + timeout_s * 1.5
    for tp, fut in futures.items():
        try:
            out[(tp.topic, tp.partition)] = fut.result(timeout=max(0.0, until - time.monotonic())).offset
        except KafkaException as exc:
            failed.append((tp, exc))
        except TimeoutError:
            failed.append((tp, KafkaException(KafkaError(KafkaError._TIMED_OUT, "no answer to list_offsets"))))
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
        rows.append({"sampled_at": now, "source": source, "broker": source, "group": gid,
                     "topic": ",".join(sorted(assigned)), "consumer": member.client_id,
                     "member_id": member.member_id, "host": member.host, "assignment": assignment})
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
                                  "fetch.wait.max.ms": 10,
                                  # it reads one message: small answers, a small queue
                                  "max.partition.fetch.bytes": 4096, "fetch.max.bytes": 1_048_576,
                                  "queued.max.messages.kbytes": 1024, "queued.min.messages": 1})
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
