"""Lag verdicts at their edges (``analysis.lag``'s docstring is the rulebook), for both the
batch judge (``latest_lag``) and the incremental one the collector runs (``LagJudge``), the
group roll-up, the CLI rows, and the Kafka collector's lag arithmetic.

Every case is small and written out by hand: what each status means, where a threshold is
inclusive and where it is not."""
from __future__ import annotations

import math
from concurrent.futures import Future
from types import SimpleNamespace

import pandas as pd
import pytest

from eventscope import schemas
from eventscope.analysis import lag

T0 = pd.Timestamp("2026-11-28T10:00:00Z")


def frame(series, members=1, every_s=10, seconds=None, group="g", partition=0, broker="kafka"):
    """series: (committed, end) per sample, ``every_s`` apart; ``seconds``: lag_seconds per sample."""
    rows = []
    for i, (c, e) in enumerate(series):
        rows.append({"sampled_at": T0 + pd.Timedelta(seconds=every_s * i), "source": broker, "broker": broker,
                     "group": group, "topic": "t", "partition": partition, "committed": c, "end": e,
                     "lag": None if c is None else max(0, e - c),
                     "lag_seconds": (seconds[i] if seconds is not None else 5.0 * i),
                     "members": members, "group_state": "Stable"})
    return schemas.conform("lag", rows)


def both(rows, window_s=300.0, stuck_after_s=60.0):
    """The status by latest_lag and by a LagJudge fed one sample at a time; they must agree."""
    batch = lag.latest_lag(rows, window_s=window_s, stuck_after_s=stuck_after_s)["status"].tolist()
    judge = lag.LagJudge(window_s=window_s, stuck_after_s=stuck_after_s)
    for _, one in rows.groupby("sampled_at", sort=True):
        judge.add(one)
    incremental = judge.latest()["status"].tolist()
    assert batch == incremental
    return batch[0]


RISING = [(10, 15), (12, 30), (14, 60)]  # committing, lag 5 → 18 → 46


def test_rising_lag_is_err_once_the_oldest_message_is_older_than_the_window():
    # lag_seconds 0, 5, 10 (the frame's default): within a 300 s window → WARN
    assert both(frame(RISING)) == "WARN"
    # the oldest unconsumed message waited longer than the window → ERR
    assert both(frame(RISING, seconds=[0.0, 100.0, 301.0])) == "ERR"
    assert both(frame(RISING, seconds=[0.0, 100.0, 300.0])) == "WARN"  # exactly the window: not yet
    assert both(frame(RISING, seconds=[0.0, 100.0, 31.0]), window_s=30.0) == "ERR"


def test_err_needs_a_rising_lag_and_a_known_age():
    not_rising = [(10, 15), (12, 30), (14, 25), (16, 40)]
    assert both(frame(not_rising, seconds=[900.0] * 4)) == "OK"
    assert both(frame(RISING, seconds=[0.0, 0.0, float("nan")])) == "WARN"


def test_err_is_the_worst_status_of_a_group():
    assert lag.SEVERITY["ERR"] > lag.SEVERITY["STALL"] == lag.SEVERITY["STOP"] > lag.SEVERITY["REWIND"]
    assert lag.SEVERITY["REWIND"] > lag.SEVERITY["WARN"] > lag.SEVERITY["UNKNOWN"] > lag.SEVERITY["OK"]
    err = lag.latest_lag(frame(RISING, seconds=[0.0, 0.0, 400.0]))
    stall = lag.latest_lag(frame([(10, 15), (10, 30), (10, 60)], partition=1))
    ok = lag.latest_lag(frame([(10, 10), (20, 20), (30, 30)], partition=2))
    summary = lag.group_summary(pd.concat([stall, err, ok], ignore_index=True))
    assert summary["status"].tolist() == ["ERR"]
    assert summary.loc[0, "partitions"] == 3
    assert summary.loc[0, "lag"] == 46 + 50 + 0
    assert summary.loc[0, "lag_seconds"] == 400.0
    assert "ERR" in lag.STATUSES


def test_statuses_of_the_rulebook():
    assert both(frame([(10, 10), (20, 20), (30, 30)])) == "OK"
    assert both(frame([(10, 15), (10, 30), (10, 60)])) == "STALL"
    assert both(frame([(10, 15), (10, 30), (10, 60)], members=0)) == "STOP"
    assert both(frame([(10, 15), (10, 30), (10, 60)], members=None)) == "STOP"  # members unknown: none seen
    assert both(frame([(30, 40), (10, 40), (12, 40)])) == "REWIND"
    assert both(frame([(None, 15), (None, 30)])) == "UNKNOWN"
    assert both(frame([(10, 15)])) == "UNKNOWN"
    assert both(frame([(10, 10)])) == "OK"
    assert both(frame([(10, 15), (12, 30)])) == "OK"  # one rise is not a trend


def test_rising_is_counted_since_the_lag_was_last_zero():
    # rose twice, caught up, then rose once: not rising twice since the last zero
    assert both(frame([(10, 15), (12, 30), (40, 40), (42, 50)])) == "OK"
    assert both(frame([(10, 15), (12, 30), (40, 40), (42, 50), (44, 70)])) == "WARN"


def test_stuck_after_is_inclusive():
    # the committed offset moved, then stood still: STALL once it stood for stuck_after_s
    series = [(10, 15), (12, 20), (12, 25), (12, 30)]  # moved at 10 s, still at 20 s and 30 s
    assert both(frame(series), stuck_after_s=20.0) == "STALL"
    assert both(frame(series), stuck_after_s=21.0) == "WARN"


def test_only_the_window_is_judged():
    # a rewind long ago is forgotten; a stall older than the window is too
    series = [(30, 40), (10, 40)] + [(10 + 5 * i, 40 + 20 * i) for i in range(1, 5)]
    rows = frame(series, every_s=100)
    assert lag.latest_lag(rows, window_s=1000.0)["status"].iloc[0] == "REWIND"
    assert both(rows, window_s=250.0, stuck_after_s=1000.0) == "WARN"


def test_empty_inputs():
    empty = schemas.conform("lag", [])
    out = lag.latest_lag(empty)
    assert out.empty and "status" in out.columns
    assert lag.group_summary(out).empty
    assert list(lag.group_summary(out).columns) == ["broker", "kind", "group", "topic", "partitions", "lag",
                                                    "lag_seconds", "status", "members"]
    judge = lag.LagJudge()
    assert judge.latest().empty
    taken = judge.add(empty)
    assert taken.empty and {"status", "consumed"} <= set(taken.columns)


def test_group_summary_of_unknown_lag_is_unknown_not_zero():
    rows = lag.latest_lag(frame([(None, 15), (None, 30)]))
    summary = lag.group_summary(rows)
    assert pd.isna(summary.loc[0, "lag"]) and summary.loc[0, "status"] == "UNKNOWN"


def test_lag_history_sums_partitions_and_keeps_the_worst_seconds():
    rows = pd.concat([frame([(10, 15), (12, 30)], seconds=[1.0, 4.0]),
                      frame([(10, 12), (12, 13)], seconds=[3.0, 2.0], partition=1),
                      frame([(0, 100), (0, 100)], group="other")], ignore_index=True)
    history = lag.lag_history(rows, group="g")
    assert history["series"].unique().tolist() == ["kafka:g"]
    assert history["lag"].tolist() == [5 + 2, 18 + 1]
    assert history["lag_seconds"].tolist() == [3.0, 4.0]
    assert set(lag.lag_history(rows)["series"]) == {"kafka:g", "kafka:other"}
    assert list(lag.lag_history(rows.iloc[0:0]).columns) == ["sampled_at", "series", "lag", "lag_seconds"]


def test_to_rows_is_the_cli_contract():
    rows = lag.latest_lag(pd.concat([frame(RISING, seconds=[0.0, 1.0, 2.34567]),
                                     frame([(None, 7)], partition=1, members=None)], ignore_index=True))
    out = lag.to_rows(rows.sort_values("partition"))
    assert out[0] == {"broker": "kafka", "kind": "kafka", "group": "g", "topic": "t", "partition": 0, "committed": 14, "end": 60,
                      "lag": 46, "lag_seconds": 2.346, "status": "WARN", "sampled_at": "2026-11-28T10:00:20Z",
                      "group_state": "Stable", "members": 1}
    assert out[1]["committed"] is None and out[1]["lag"] is None and out[1]["members"] is None
    assert out[1]["status"] == "UNKNOWN" and out[1]["end"] == 7


def test_judge_reports_consumed_and_ignores_old_rows():
    judge = lag.LagJudge()
    first = judge.add(frame([(10, 15)]))
    assert first["consumed"].tolist() == [0]
    second = judge.add(frame([(10, 15), (17, 20)]).iloc[[1]])
    assert second["consumed"].tolist() == [7]
    back = judge.add(frame([(10, 15), (17, 20), (12, 20)]).iloc[[2]])
    assert back["consumed"].tolist() == [0] and back["status"].tolist() == ["REWIND"]
    stale = judge.add(frame([(99, 99)]))  # a row no newer than the partition's newest
    assert stale.empty
    assert judge.latest()["committed"].tolist() == [12]


def test_judge_keeps_column_types():
    rows = frame(RISING)
    judge = lag.LagJudge()
    judge.add(rows)
    latest = judge.latest()
    reference = lag.latest_lag(rows)
    for column in ("sampled_at", "committed", "lag", "lag_seconds", "members", "group_state", "partition"):
        assert latest[column].dtype == reference[column].dtype, column
    assert latest["sampled_at"].iloc[0] == T0 + pd.Timedelta(seconds=20)


# -- the Kafka collector's lag: max(0, end - committed) ---------------------------------------

def _done(value):
    fut = Future()
    fut.set_result(value)
    return fut


class OneGroupAdmin:
    """An AdminClient answering for one topic and one group (the collector's calls only)."""

    def __init__(self, ends: dict[int, int], committed: dict[int, int], described_state="STABLE", members=0):
        self.ends, self.committed = ends, committed
        self.described_state, self.members = described_state, members

    def list_topics(self, timeout=None):
        return SimpleNamespace(topics={"orders": SimpleNamespace(topic="orders", error=None,
                                                                 partitions={p: None for p in self.ends})})

    def list_offsets(self, request, request_timeout=None):
        return {tp: _done(SimpleNamespace(offset=self.ends[tp.partition])) for tp in request}

    def list_consumer_groups(self, request_timeout=None):
        return _done(SimpleNamespace(valid=[SimpleNamespace(group_id="billing",
                                                            state=SimpleNamespace(name="STABLE"))], errors=[]))

    def describe_consumer_groups(self, group_ids, request_timeout=None):
        return {g: _done(SimpleNamespace(state=SimpleNamespace(name=self.described_state),
                                         members=[SimpleNamespace(client_id=f"c{i}", member_id=f"c{i}-1", host="/10.0.0.1",
                                                                  assignment=SimpleNamespace(topic_partitions=[]))
                                                  for i in range(self.members)]))
                for g in group_ids}

    def list_consumer_group_offsets(self, request, request_timeout=None):
        gid = request[0].group_id
        return {gid: _done(SimpleNamespace(topic_partitions=[
            SimpleNamespace(topic="orders", partition=p, offset=o, error=None) for p, o in self.committed.items()]))}


def test_kafka_lag_is_never_negative_and_unknown_without_a_commit():
    from eventscope.collectors.kafka.offsets import KafkaOffsetsCollector
    # partition 0: 40 behind; 1: committed past the end (a truncated or recreated topic); 2: never committed
    admin = OneGroupAdmin(ends={0: 100, 1: 5, 2: 30}, committed={0: 60, 1: 50, 2: -1001})
    out = KafkaOffsetsCollector(admin).collect()
    rows = out["lag"].set_index("partition")
    assert rows.loc[0, "lag"] == 40
    assert rows.loc[1, "lag"] == 0 and rows.loc[1, "committed"] == 50 and rows.loc[1, "end"] == 5
    assert pd.isna(rows.loc[2, "lag"]) and pd.isna(rows.loc[2, "committed"])
    assert (out["lag"]["lag"].dropna() >= 0).all()
    assert out["topics"].set_index("partition")["end"].to_dict() == {0: 100, 1: 5, 2: 30}
    # caught up or ahead: no age; behind: an age that is not negative
    assert rows.loc[1, "lag_seconds"] == 0.0
    assert math.isnan(rows.loc[2, "lag_seconds"]) or rows.loc[2, "lag_seconds"] >= 0


def test_kafka_group_state_and_members_come_from_the_description():
    from eventscope.collectors.kafka.offsets import KafkaOffsetsCollector
    admin = OneGroupAdmin(ends={0: 10}, committed={0: 4}, described_state="PREPARING_REBALANCE", members=2)
    rows = KafkaOffsetsCollector(admin).collect()["lag"]
    assert rows["group_state"].tolist() == ["Preparing_Rebalance"]  # the description is newer than the listing
    assert rows["members"].tolist() == [2]
    assert rows["lag"].tolist() == [6] and rows["committed"].tolist() == [4]


def test_to_rows_says_none_for_every_unknown():
    row = schemas.conform("lag", [{"sampled_at": T0, "source": "kafka", "broker": "kafka", "group": "g",
                                   "topic": "t", "partition": 0, "committed": None, "end": None, "lag": None,
                                   "lag_seconds": float("nan"), "members": None, "group_state": None}])
    out = lag.to_rows(lag.latest_lag(row))[0]
    assert {k: out[k] for k in ("committed", "end", "lag", "lag_seconds", "members", "group_state")} == dict.fromkeys(
        ("committed", "end", "lag", "lag_seconds", "members", "group_state"))
    assert out["status"] == "UNKNOWN"


def test_judge_forgets_partitions_gone_for_a_window_once_most_are():
    judge = lag.LagJudge(window_s=60.0)
    many = schemas.conform("lag", [
        {"sampled_at": T0, "source": "kafka", "broker": "kafka", "group": "g", "topic": f"t{i}", "partition": 0,
         "committed": 1, "end": 2, "lag": 1, "lag_seconds": 1.0, "members": 1, "group_state": "Stable"}
        for i in range(1200)])
    judge.add(many)
    assert len(judge.keys) == 1200
    later = many.iloc[:10].assign(sampled_at=T0 + pd.Timedelta(seconds=30))
    judge.add(later)
    assert len(judge.keys) == 1200  # all still within the window
    edge = many.iloc[[10]].assign(sampled_at=T0 + pd.Timedelta(seconds=1))  # exactly a window before the last
    judge.add(edge)
    last = many.iloc[:10].assign(sampled_at=T0 + pd.Timedelta(seconds=61), committed=2, lag=0)
    judge.add(last)
    assert len(judge.keys) == 11 and len(judge.lag) == 11 and len(judge.committed) == 11
    assert all(len(v) == 11 for v in judge.times.values())
    assert all(len(c) == 11 for c in judge.columns.values())
    latest = judge.latest()
    assert sorted(latest["topic"]) == sorted(f"t{i}" for i in range(11))
    assert latest.set_index("topic").loc["t3", "status"] == "OK" and latest.set_index("topic").loc["t3", "committed"] == 2
    back = many.iloc[[500]].assign(sampled_at=T0 + pd.Timedelta(seconds=70))
    judge.add(back)  # a forgotten partition comes back as new: one sample, behind → UNKNOWN
    assert judge.latest().set_index("topic").loc["t500", "status"] == "UNKNOWN"


class FakeRecordTimes:
    """RecordTimes stand-in: a record's timestamp for each (topic, partition, offset) asked."""

    def __init__(self, stamps):
        self.stamps, self.asked = stamps, []

    def lookup(self, wanted):
        self.asked.append(list(wanted))
        return {k: self.stamps[k] for k in wanted if k in self.stamps}


def test_kafka_lag_seconds_of_an_offset_older_than_the_clock_come_from_its_record(monkeypatch):
    """A group stalled before eventscope started: its committed offset is older than any end
    offset the clock saw, so the seconds come from the record at that offset."""
    from eventscope.collectors.kafka import offsets as kafka_offsets
    from eventscope.collectors.kafka.offsets import KafkaOffsetsCollector
    monkeypatch.setattr(kafka_offsets.time, "time", lambda: 10_000.0)
    # partition 0: stalled at 60 (older than the clock); 1: caught up; 2: never committed
    admin = OneGroupAdmin(ends={0: 100, 1: 50, 2: 30}, committed={0: 60, 1: 50, 2: -1001})
    times = FakeRecordTimes({("orders", 0, 60): 9_000.0, ("orders", 1, 50): 1.0})
    collector = KafkaOffsetsCollector(admin, record_times=times)
    rows = collector.collect()["lag"].set_index("partition")
    assert rows.loc[0, "lag_seconds"] == 1_000.0  # now - the record's timestamp
    assert rows.loc[1, "lag_seconds"] == 0.0  # caught up: nothing asked, nothing waited
    assert math.isnan(rows.loc[2, "lag_seconds"])
    assert times.asked == [[("orders", 0, 60)]]
    future = FakeRecordTimes({("orders", 0, 60): 20_000.0})  # a producer clock ahead of ours
    rows = KafkaOffsetsCollector(OneGroupAdmin(ends={0: 100}, committed={0: 60}),
                                 record_times=future).collect()["lag"]
    assert rows["lag_seconds"].tolist() == [0.0]


def test_a_lag_rising_by_one_message_a_sample_is_rising():
    assert both(frame([(10, 15), (12, 18), (14, 21)])) == "WARN"  # 5 → 6 → 7


def test_latest_lag_adds_only_the_status_column():
    rows = frame(RISING)
    out = lag.latest_lag(rows)
    assert list(out.columns) == [*lag.KEY, *[c for c in rows.columns if c not in lag.KEY], "status"]


def test_a_partition_whose_lag_becomes_known_is_judged_from_then():
    # unknown, unknown, then rising twice: the unknown samples are not "caught up"
    assert both(frame([(None, 5), (None, 9), (10, 15), (12, 30), (14, 60)])) == "WARN"
