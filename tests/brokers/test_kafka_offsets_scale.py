"""The Kafka offsets collector's column-wise lag frame equals the row-by-row computation.

``RowByRow`` below is the specification: one dict per (group, topic, partition), lag and the
transactional probe decided row by row, lag in seconds from one ``OffsetClock`` per
partition, then ``schemas.conform``. The collector builds the same frames column-wise,
with one ``OffsetClocks`` table for every partition; both are fed the same answers (a
scripted admin client over several samples, and a real broker's answers) and must give
identical frames.
"""
from __future__ import annotations

import math
import random
import time
import uuid
from concurrent.futures import Future
from types import SimpleNamespace

import numpy as np
import pytest
import pandas as pd
from confluent_kafka import (Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import NewTopic, OffsetSpec

from eventscope import schemas
from eventscope.collectors.kafka import offsets as kafka_offsets
from eventscope.collectors.kafka.offsets import KafkaOffsetsCollector, _member_rows, _state_name
from eventscope.collectors.kafka.timelag import OffsetClock, OffsetClocks


class RowByRow:
    """Lag rows one dict at a time, as the collector computed them before it went column-wise."""

    def __init__(self, probe=None, probe_max_lag: int = 5, probe_budget: int = 20, source: str = "kafka"):
        self.clocks: dict[tuple[str, int], OffsetClock] = {}
        self.probe, self.probe_max_lag, self.probe_budget = probe, probe_max_lag, probe_budget
        self.probes_left = probe_budget
        self.last_seen: dict = {}
        self.source = source

    def frames(self, now, wall, ends: dict, starts: dict, states: dict, described: dict,
               committed: dict) -> dict[str, pd.DataFrame]:
        """``committed``: {group: {(topic, partition): offset}} of the groups that answered."""
        for key, end in ends.items():
            self.clocks.setdefault(key, OffsetClock()).record(end, wall)
        topics = [{"sampled_at": now, "source": self.source, "broker": "kafka", "topic": t, "partition": p,
                   "start": starts.get((t, p)), "end": e} for (t, p), e in sorted(ends.items())]
        by_topic: dict[str, list[int]] = {}
        for topic, partition in ends:
            by_topic.setdefault(topic, []).append(partition)
        self.probes_left = self.probe_budget
        rows, members = [], []
        for gid in sorted(states):
            desc = described.get(gid)
            members.extend(_member_rows(now, self.source, gid, desc))
            state = _state_name(desc) or states[gid]
            count = len(desc.members) if desc is not None else (0 if states[gid] in ("Empty", "Dead") else None)
            offsets = committed.get(gid)
            if offsets is None:
                continue
            for topic in sorted({t for t, _ in offsets} & by_topic.keys()):
                for partition in sorted(by_topic[topic]):
                    rows.append(self.row(now, wall, gid, topic, partition, offsets.get((topic, partition)),
                                         ends[(topic, partition)], state, count))
        return {"topics": schemas.conform("topics", topics), "lag": schemas.conform("lag", rows),
                "consumers": schemas.conform("consumers", members)}

    def row(self, now, wall, gid, topic, partition, offset, end, state, members) -> dict:
        known = offset is not None and offset >= 0
        committed = offset if known else None
        lag = max(0, end - committed) if known else None
        if lag and lag <= self.probe_max_lag and self.should_probe(gid, topic, partition, committed, end) \
                and self.probe.only_control(topic, partition, committed, end):
            lag, view = 0, end
        else:
            view = committed
        lag_s = self.clocks[(topic, partition)].lag_seconds(view, end, wall)
        return {"sampled_at": now, "source": self.source, "broker": "kafka", "group": gid, "topic": topic,
                "partition": partition, "committed": committed, "end": end, "lag": lag, "lag_seconds": lag_s,
                "group_state": state, "members": members}

    def should_probe(self, gid, topic, partition, committed, end) -> bool:
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
            return False
        self.probes_left -= 1
        return True


class ScriptedProbe:
    """A ControlRecordProbe stand-in: partitions of ``marker_topics`` hold only markers."""

    def __init__(self, marker_topics: set[str]):
        self.marker_topics = marker_topics
        self.cache: dict = {}
        self.calls = 0

    def known(self, topic, partition, committed, end) -> bool:
        return (topic, partition, committed, end) in self.cache

    def only_control(self, topic, partition, committed, end) -> bool:
        key = (topic, partition, committed, end)
        if key not in self.cache:
            self.calls += 1
            self.cache[key] = topic in self.marker_topics
        return self.cache[key]


def done(value=None, error: Exception | None = None) -> Future:
    fut = Future()
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)
    return fut


def failure(code=KafkaError.COORDINATOR_NOT_AVAILABLE) -> KafkaException:
    return KafkaException(KafkaError(code))


class ScriptedAdmin:
    """Answers what an AdminClient would, from one sample's script (see ``sample``)."""

    def __init__(self):
        self.script: dict = {}
        self.group_timeouts: list[float] = []  # request_timeout of every group request

    def list_topics(self, timeout=None):
        parts = self.script["partitions"]
        return SimpleNamespace(topics={t: SimpleNamespace(topic=t, error=None, partitions={p: None for p in ps})
                                       for t, ps in parts.items()})

    def list_offsets(self, request: dict, request_timeout=None) -> dict:
        table = self.script["ends"] if request and next(iter(request.values())) is OffsetSpec.latest() \
            else self.script["starts"]
        out = {}
        for tp in request:
            offset = table.get((tp.topic, tp.partition))
            out[tp] = done(error=failure(KafkaError.LEADER_NOT_AVAILABLE)) if offset is None \
                else done(SimpleNamespace(offset=offset))
        return out

    def list_consumer_groups(self, request_timeout=None) -> Future:
        return done(SimpleNamespace(valid=[SimpleNamespace(group_id=g, state=SimpleNamespace(name=s.upper()))
                                           for g, s in self.script["states"].items()], errors=[]))

    def describe_consumer_groups(self, group_ids, request_timeout=None) -> dict:
        described = self.script["described"]
        return {g: done(described[g]) if g in described else done(error=failure()) for g in group_ids}

    def list_consumer_group_offsets(self, request, request_timeout=None) -> dict:
        self.group_timeouts.append(request_timeout)
        gid = request[0].group_id
        answer = self.script["committed"].get(gid)
        if answer is None:
            return {gid: done(error=failure())}
        return {gid: done(SimpleNamespace(topic_partitions=[
            SimpleNamespace(topic=t, partition=p, offset=o, error=e) for t, p, o, e in answer]))}


def member(client_id: str, assigned: list[tuple[str, int]]):
    return SimpleNamespace(client_id=client_id, member_id=f"{client_id}-1", host=f"/10.0.0.{len(client_id)}",
                           assignment=SimpleNamespace(
                               topic_partitions=[TopicPartition(t, p) for t, p in assigned]))


def sample(rng: random.Random, step: int, ends: dict, groups: dict) -> dict:
    """One sample's answers: ends move on, groups commit (or not), some requests fail."""
    for key in ends:
        roll = rng.random()
        if roll < 0.03:
            ends[key] = rng.randrange(0, 5)  # truncated / recreated: the clock starts over
        elif roll < 0.6:
            ends[key] += rng.choice([1, 2, 3, 50, 400])
    committed, states, described = {}, {}, {}
    for gid, topics in groups.items():
        states[gid] = rng.choice(["Stable", "Stable", "Empty", "Dead", "PreparingRebalance"])
        if states[gid] not in ("Empty", "Dead") and rng.random() < 0.9:  # else: describe fails
            described[gid] = SimpleNamespace(
                state=SimpleNamespace(name=states[gid].upper()),
                members=[member(f"{gid}-m{i}", [(topics[0], i)]) for i in range(rng.randrange(0, 3))])
        if rng.random() < 0.05:
            continue  # the group's coordinator does not answer this time
        answer = []
        for topic in topics:
            for p in range(4):
                end = ends.get((topic, p), 10)
                roll = rng.random()
                if roll < 0.1:
                    continue  # never committed on this partition: unknown
                if roll < 0.15:
                    answer.append((topic, p, -1001, None))  # the broker's "no offset"
                elif roll < 0.18:
                    answer.append((topic, p, 7, KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)))
                elif roll < 0.5:
                    answer.append((topic, p, end, None))  # caught up
                elif roll < 0.75 and step % 3:
                    answer.append((topic, p, max(0, end - rng.randrange(1, 6)), None))  # a small lag
                else:
                    answer.append((topic, p, max(0, end - rng.randrange(0, 3000)), None))
        rng.shuffle(answer)
        committed[gid] = answer
    return {"ends": dict(ends), "starts": {k: min(v, 3) for k, v in ends.items()}, "states": states,
            "described": described, "committed": committed}


def test_columnar_frames_match_row_by_row_over_many_samples(monkeypatch):
    rng = random.Random(20241128)
    topics = {f"t{i}": 4 for i in range(6)} | {"tx-markers": 4}
    ends = {(t, p): rng.randrange(0, 5000) for t, n in topics.items() for p in range(n)}
    ends.pop(("t5", 3))  # a partition without a leader: left out of every sample
    groups = {f"g{i:02d}": rng.sample(sorted(topics) + ["filtered-out"], 2) for i in range(40)}
    admin = ScriptedAdmin()
    collector = KafkaOffsetsCollector(admin, concurrency=7, probe_budget=3)
    collector.probe = ScriptedProbe({"tx-markers"})
    reference = RowByRow(probe=ScriptedProbe({"tx-markers"}), probe_budget=3)
    clock = [1_000_000.0]
    monkeypatch.setattr(kafka_offsets.time, "time", lambda: clock[0])
    compared = lagging = probed_zero = 0
    for step in range(40):
        clock[0] += rng.choice([0.0, 0.5, 5.0, 5.0, 5.0, 30.0])
        admin.script = script = sample(rng, step, ends, groups)
        script["partitions"] = {t: list(range(n)) for t, n in topics.items()}
        out = collector.collect()
        now = out["lag"]["sampled_at"].iloc[0] if len(out["lag"]) else out["topics"]["sampled_at"].iloc[0]
        committed = {g: {(t, p): o for t, p, o, e in answer if e is None}
                     for g, answer in script["committed"].items()}
        listed = {g.group_id: _state_name(g) for g in admin.list_consumer_groups().result().valid}
        expected = reference.frames(now, clock[0], script["ends"], script["starts"], listed,
                                    script["described"], committed)
        for name in ("topics", "lag", "consumers"):
            pd.testing.assert_frame_equal(out[name], expected[name], check_exact=True)
        compared += len(out["lag"])
        lagging += int((out["lag"]["lag_seconds"] > 0).sum())
        probed_zero += int(((out["lag"]["topic"] == "tx-markers") & (out["lag"]["lag"] == 0)
                            & (out["lag"]["committed"] < out["lag"]["end"])).sum())
        assert collector.group_errors == sum(g not in script["committed"] for g in groups) + sum(
            g not in script["described"] and script["states"][g] not in ("Empty", "Dead") for g in groups)
    assert compared > 3000 and lagging > 300 and probed_zero > 5  # the cases were really exercised
    assert collector.probe.calls == reference.probe.calls and collector.last_seen == reference.last_seen


def test_group_requests_outlive_the_sample_that_stops_waiting_for_them():
    """librdkafka aborts the process when a group request's own deadline passes while its
    coordinator lookup is in flight (issue 4605; ``test_broker_stall`` does it on a real
    broker): group requests get a deadline librdkafka never reaches, and the sample keeps
    its time by waiting at most its timeout. Requests left unanswered are not asked again
    while too many are outstanding: the sample says the broker is not answering."""
    rng = random.Random(5)
    topics = {"t0": 4, "t1": 4}
    ends = {(t, p): 100 for t, n in topics.items() for p in range(n)}
    groups = {f"g{i:03d}": ["t0", "t1"] for i in range(300)}
    admin = ScriptedAdmin()
    admin.script = sample(rng, 0, ends, groups)
    admin.script["partitions"] = {t: list(range(n)) for t, n in topics.items()}
    collector = KafkaOffsetsCollector(admin, timeout_s=0.2)
    answered = collector.collect()["lag"]
    scripted_failures = collector.group_errors  # the script makes some groups fail
    assert len(admin.group_timeouts) == 300 and set(admin.group_timeouts) == {kafka_offsets.GROUP_REQUEST_DEADLINE_S}

    stalled = Future()  # a broker that stopped answering: nothing ever resolves
    admin.list_consumer_group_offsets = lambda request, request_timeout=None: {request[0].group_id: stalled}
    admin.describe_consumer_groups = lambda ids, request_timeout=None: {g: stalled for g in ids}
    started = time.monotonic()
    frames = collector.collect()
    assert time.monotonic() - started < 0.2 * 2  # its timeout, half again for the last answers
    assert frames["lag"].empty and collector.group_errors >= 300 and collector.unanswered
    while len(collector.unanswered) < kafka_offsets.UNANSWERED_MAX:
        collector.collect()
    with pytest.raises(KafkaException, match="still unanswered"):
        collector.collect()
    stalled.set_result(SimpleNamespace(topic_partitions=[]))  # the broker answers again
    admin.list_consumer_group_offsets = ScriptedAdmin.list_consumer_group_offsets.__get__(admin)
    admin.describe_consumer_groups = ScriptedAdmin.describe_consumer_groups.__get__(admin)
    assert len(collector.collect()["lag"]) == len(answered) and collector.group_errors == scripted_failures
    assert not collector.unanswered


def test_an_admin_client_that_stopped_getting_group_answers_is_replaced():
    """After a broker was killed and started again under a busy cluster, the collector's
    admin client answered metadata and the group listing, yet timed out every group request
    for as long as it lived, while a new client was answered at once (bench/soak.py found
    it). Three samples in a row without a single group answer: a new client takes over."""
    rng = random.Random(3)
    topics = {"t0": 2}
    ends = {("t0", p): 100 for p in range(2)}
    groups = {f"g{i}": ["t0"] for i in range(5)}
    script = sample(rng, 0, ends, groups)
    script["partitions"] = {"t0": [0, 1]}
    stuck = ScriptedAdmin()
    stuck.script = script
    never = Future()
    stuck.list_consumer_group_offsets = lambda request, request_timeout=None: {request[0].group_id: never}
    stuck.describe_consumer_groups = lambda ids, request_timeout=None: {g: never for g in ids}
    fresh = ScriptedAdmin()
    fresh.script = script
    made = []
    collector = KafkaOffsetsCollector(stuck, timeout_s=0.05, admin_factory=lambda: made.append(fresh) or fresh)
    for _ in range(kafka_offsets.SILENT_SAMPLES_MAX):
        assert collector.collect()["lag"].empty
    assert collector.admin is stuck and not made
    lag = collector.collect()["lag"]  # the next sample starts on a new client
    assert made == [fresh] and collector.admin is fresh and collector.renewals == 1
    assert not lag.empty and not collector.unanswered
    without = KafkaOffsetsCollector(stuck, timeout_s=0.05)  # no factory (a client handed in): kept
    for _ in range(kafka_offsets.SILENT_SAMPLES_MAX + 1):
        without.collect()
    assert without.admin is stuck


def test_offset_clocks_answer_as_offset_clock_does():
    rng = random.Random(7)
    for max_points in (2, 3, 8, 120):
        table, clocks = OffsetClocks(max_points), {}
        keys = [("t", p) for p in range(25)]
        ends = {key: rng.randrange(0, 100) for key in keys}
        at = 50.0
        for step in range(200):
            at += rng.choice([0.0, 0.001, 1.0, 5.0, 60.0])
            present = [k for k in keys if rng.random() < 0.9]  # a partition may miss a sample
            for key in present:
                roll = rng.random()
                if roll < 0.02:
                    ends[key] = rng.randrange(0, 10)
                elif roll < 0.7:
                    ends[key] += rng.randrange(1, 40)
                clocks.setdefault(key, OffsetClock(max_points)).record(ends[key], at)
            rows = table.rows_of(present)
            table.record(rows, np.array([ends[k] for k in present], dtype=np.int64), at)
            now = at + rng.choice([0.0, 2.0])
            asked = [(k, rng.randrange(-5, ends[k] + 3)) for k in present for _ in range(3)]
            want = [clocks[k].lag_seconds(None if c < 0 else c, ends[k], now) for k, c in asked]
            got = table.lag_seconds(table.rows_of([k for k, _ in asked]), np.array([c for _, c in asked]),
                                    np.array([c >= 0 for _, c in asked]),
                                    np.array([ends[k] for k, _ in asked]), now)
            assert [w if not math.isnan(w) else "nan" for w in want] == \
                   [g if not math.isnan(g) else "nan" for g in got.tolist()], (max_points, step)
            for key in present:
                r = table.rows[key]
                assert list(zip(table.offsets[r, :table.counts[r]].tolist(),
                                table.times[r, :table.counts[r]].tolist())) == list(clocks[key].points)


def test_frames_on_a_real_broker_match_row_by_row(kafka_admin, kafka_bootstrap):
    """Unknown partitions, a negative offset never stored, a topic outside the filter, a group
    with a live member, a group ahead of nothing: the real answers through both computations."""
    prefix = f"scale-{uuid.uuid4().hex[:6]}-"
    a, b, other = prefix + "a", prefix + "b", f"elsewhere-{uuid.uuid4().hex[:6]}"
    for fut in kafka_admin.create_topics([NewTopic(a, 3, 1), NewTopic(b, 2, 1), NewTopic(other, 1, 1)]).values():
        fut.result()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(30):
        producer.produce(a, b"x", partition=i % 3)
        producer.produce(b, b"y", partition=i % 2)
        producer.produce(other, b"z", partition=0)
    producer.flush(10)
    commits = {prefix + "g-partial": [TopicPartition(a, 0, 4), TopicPartition(a, 2, 10)],
               prefix + "g-both": [TopicPartition(a, 0, 10), TopicPartition(a, 1, 7), TopicPartition(a, 2, 1),
                                   TopicPartition(b, 0, 15), TopicPartition(b, 1, 12)],
               prefix + "g-elsewhere": [TopicPartition(other, 0, 3)],
               prefix + "g-mixed": [TopicPartition(b, 1, 14), TopicPartition(other, 0, 30)]}
    for gid, tps in commits.items():
        kafka_admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(gid, tps)])[gid].result()
    live = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": prefix + "g-live",
                     "client.id": "scale-worker", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    live.subscribe([b])
    deadline = time.monotonic() + 30
    while not live.assignment() and time.monotonic() < deadline:
        live.poll(0.2)
    live.commit(offsets=[TopicPartition(b, 0, 5)], asynchronous=False)
    try:
        collector = KafkaOffsetsCollector(kafka_admin, topics="^" + prefix)
        out = collector.collect()
        # the same answers, asked one by one, through the row-by-row computation
        meta = kafka_admin.list_topics(timeout=10)
        parts = [TopicPartition(t.topic, p) for t in meta.topics.values() if t.topic.startswith(prefix)
                 for p in t.partitions]
        ends = {(tp.topic, tp.partition): f.result().offset for tp, f in kafka_admin.list_offsets(
            {tp: OffsetSpec.latest() for tp in parts}).items()}
        starts = {(tp.topic, tp.partition): f.result().offset for tp, f in kafka_admin.list_offsets(
            {tp: OffsetSpec.earliest() for tp in parts}).items()}
        states = {g.group_id: _state_name(g) for g in kafka_admin.list_consumer_groups().result().valid}
        described = {g: f.result() for g, f in kafka_admin.describe_consumer_groups(
            [g for g in states if states[g] not in ("Empty", "Dead")]).items()}
        committed = {}
        for gid in states:
            res = kafka_admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(gid)])[gid].result()
            committed[gid] = {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions
                              if tp.error is None}
        now = out["topics"]["sampled_at"].iloc[0]
        expected = RowByRow().frames(now, time.time(), ends, starts, states, described, committed)
    finally:
        live.close()
    for name in ("topics", "lag", "consumers"):
        got, want = out[name], expected[name]
        if name != "topics":  # other tests' groups share the broker: compare ours
            got = got[got["group"].str.startswith(prefix)].reset_index(drop=True)
            want = want[want["group"].str.startswith(prefix)].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    lag = out["lag"].set_index(["group", "topic", "partition"])
    assert lag.loc[(prefix + "g-partial", a, 1), "lag"] is pd.NA  # no commit there: unknown
    assert lag.loc[(prefix + "g-both", b, 0), "lag"] == 0 and lag.loc[(prefix + "g-both", a, 2), "lag"] == 9
    assert prefix + "g-elsewhere" not in set(out["lag"]["group"])
    assert set(out["lag"][out["lag"]["group"] == prefix + "g-mixed"]["topic"]) == {b}
    assert list(out["consumers"][out["consumers"]["group"] == prefix + "g-live"]["consumer"]) == ["scale-worker"]
