"""The incremental lag judge gives exactly what latest_lag gives over every row fed so far."""
from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from eventscope import schemas
from eventscope.analysis import lag

T0 = pd.Timestamp("2026-11-28T10:00:00Z")
PARTITIONS = [("kafka", "kafka", "g1", "t", 0), ("kafka", "kafka", "g1", "t", 1),
              ("kafka", "kafka", "g2", "t", 0), ("redis", "redis", "g3", "s", 0)]

position = st.one_of(st.none(), st.integers(0, 60))
partition_sample = st.tuples(position, st.integers(0, 12), st.one_of(st.none(), st.integers(0, 3)),
                             st.one_of(st.none(), st.floats(0, 80, allow_nan=False)))
sample = st.tuples(st.integers(1, 25),  # seconds since the previous sample
                   st.lists(st.one_of(st.none(), partition_sample), min_size=len(PARTITIONS),
                            max_size=len(PARTITIONS)))


def frame(samples) -> list[pd.DataFrame]:
    """One lag frame per sample; a partition may be absent from a sample (None)."""
    at, frames = T0, []
    for gap, parts in samples:
        at = at + pd.Timedelta(seconds=gap)
        rows = []
        for (source, broker, group, topic, partition), values in zip(PARTITIONS, parts):
            if values is None:
                continue
            committed, behind, members, seconds = values
            end = None if committed is None else committed + behind
            rows.append({"sampled_at": at, "source": source, "broker": broker, "group": group,
                         "topic": topic, "partition": partition, "committed": committed,
                         "end": end if end is not None else behind,
                         "lag": None if committed is None else behind,
                         "lag_seconds": seconds, "members": members, "group_state": "Stable"})
        frames.append(schemas.conform("lag", rows))
    return frames


def same(judged: pd.DataFrame, reference: pd.DataFrame) -> None:
    key = lag.KEY
    a = judged.sort_values(key).reset_index(drop=True)
    b = reference.sort_values(key).reset_index(drop=True)[list(a.columns)]
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


@settings(max_examples=150, deadline=None)
@given(st.lists(sample, min_size=1, max_size=30), st.sampled_from([20.0, 45.0]),
       st.sampled_from([10.0, 30.0]))
def test_judge_equals_latest_lag_after_every_sample(samples, window_s, stuck_after_s):
    judge = lag.LagJudge(window_s=window_s, stuck_after_s=stuck_after_s)
    seen = []
    for one in frame(samples):
        taken = judge.add(one)
        seen.append(one)
        everything = pd.concat(seen, ignore_index=True)
        reference = lag.latest_lag(everything, window_s=window_s, stuck_after_s=stuck_after_s)
        same(judge.latest(), reference)
        # each row is judged as it is added: its status is the one latest_lag gives right then
        now = reference[reference["sampled_at"] == one["sampled_at"].max()] if not one.empty else reference[:0]
        same(taken.drop(columns=["consumed"]), now)


def test_consumed_counts_the_forward_steps_of_the_committed_offset():
    judge = lag.LagJudge(window_s=30.0)
    steps = []
    for committed in (10, 15, 15, 12, 20, None, 25):  # a rewind and an unknown count nothing
        taken = judge.add(frame([(5, [(committed, 0, 1, 0.0), None, None, None])])[0].assign(
            sampled_at=T0 + pd.Timedelta(seconds=5 * len(steps))))
        steps.append(int(taken["consumed"].iloc[0]))
    assert steps == [0, 5, 0, 0, 8, 0, 0]


def test_judge_takes_many_samples_at_once_and_rebuilds_after_a_restart():
    """A replay backfill hands over minutes of samples in one frame; a restarted collector
    rebuilds the judge from the stored window and judges the next sample as before."""
    samples = [(5, [(10 * i, i % 3, 1, 2.0 * i), (4 * i, 5 + i, 1, 30.0), (7, 9, 0, 50.0), (i, 0, 1, 0.0)])
               for i in range(1, 40)]
    frames = frame(samples)
    whole = pd.concat(frames, ignore_index=True)
    at_once = lag.LagJudge(window_s=60.0, stuck_after_s=20.0)
    at_once.add(whole)
    reference = lag.latest_lag(whole, window_s=60.0, stuck_after_s=20.0)
    same(at_once.latest(), reference)
    assert set(reference["status"]) >= {"OK", "STOP", "WARN"}
    restarted = lag.LagJudge(window_s=60.0, stuck_after_s=20.0)
    stored = whole[whole["sampled_at"] >= whole["sampled_at"].max() - pd.Timedelta(seconds=60)]
    restarted.add(stored)
    same(restarted.latest(), reference)
