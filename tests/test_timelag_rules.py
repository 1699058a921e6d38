"""Lag in seconds from (end offset, time) points, by example, for the per-partition clock and
the column-wise table alike (``collectors.kafka.timelag``: interpolation, flat stretches, a
truncated topic, extrapolation before the oldest point, the bound on points)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from eventscope.collectors.kafka.timelag import OffsetClock, OffsetClocks


class Both:
    """One partition's points kept by an OffsetClock and by an OffsetClocks row."""

    def __init__(self, max_points=120):
        self.clock = OffsetClock(max_points)
        self.table = OffsetClocks(max_points)
        self.table.rows_of(["other"])  # the partition is not row 0
        self.row = self.table.rows_of([("t", 0)])

    def record(self, end, at):
        self.clock.record(end, at)
        self.table.record(self.row, np.array([end]), at)
        return self

    def time_of(self, offset):
        one = self.clock.time_of(offset)
        many = self.table.times_of(self.row, np.array([offset]))[0]
        assert (one is None and math.isnan(many)) or one == many
        return one

    def lag_seconds(self, committed, end, now):
        one = self.clock.lag_seconds(committed, end, now)
        known = np.array([committed is not None])
        many = self.table.lag_seconds(self.row, np.array([committed or 0]), known, np.array([end]), now)[0]
        assert (math.isnan(one) and math.isnan(many)) or one == many
        return one


def test_interpolates_between_the_points_around_the_offset():
    c = Both().record(100, 0.0).record(200, 10.0).record(400, 30.0)
    assert c.time_of(150) == 5.0 and c.time_of(100) == 0.0 and c.time_of(300) == 20.0
    assert c.lag_seconds(150, 400, now=40.0) == 35.0
    assert c.lag_seconds(399, 400, now=40.0) == pytest.approx(10.1)


def test_caught_up_is_zero_and_no_commit_is_unknown():
    c = Both().record(100, 0.0).record(200, 10.0)
    assert c.time_of(200) is None and c.time_of(250) is None
    assert c.lag_seconds(200, 200, now=50.0) == 0.0 and c.lag_seconds(300, 200, now=50.0) == 0.0
    assert math.isnan(c.lag_seconds(None, 200, now=50.0))


def test_a_flat_stretch_keeps_its_first_point():
    c = Both().record(100, 0.0).record(100, 5.0).record(100, 8.0).record(200, 10.0)
    assert c.time_of(150) == 5.0  # between (100, 0) and (200, 10), not (100, 8)
    assert c.clock.points[0] == (100, 0.0) and len(c.clock.points) == 2


def test_a_truncated_topic_starts_over():
    c = Both().record(100, 0.0).record(200, 10.0).record(50, 20.0)
    assert list(c.clock.points) == [(50, 20.0)]
    assert c.time_of(20) is None  # one point: nothing to interpolate or extrapolate with
    c.record(150, 30.0)
    assert c.time_of(100) == 25.0


def test_extrapolates_before_the_oldest_point_at_the_oldest_rate():
    c = Both().record(100, 10.0).record(200, 20.0).record(1200, 30.0)
    assert c.time_of(50) == 5.0  # 10 messages/s, the first segment's rate
    assert c.lag_seconds(50, 1200, now=35.0) == 30.0
    same_time = Both().record(100, 10.0).record(200, 10.0)  # no rate to go by
    assert same_time.time_of(50) is None and math.isnan(same_time.lag_seconds(50, 200, now=20.0))


def test_one_point_says_unknown_for_an_older_offset():
    c = Both().record(100, 10.0)
    assert c.time_of(50) is None
    assert math.isnan(c.lag_seconds(50, 100, now=20.0))
    assert Both().time_of(0) is None  # no point at all


def test_a_clock_ahead_of_now_gives_zero_not_negative():
    c = Both().record(100, 0.0).record(200, 100.0)
    assert c.lag_seconds(150, 200, now=10.0) == 0.0


def test_points_are_bounded_and_the_oldest_goes():
    c = Both(max_points=3)
    for i, end in enumerate([100, 200, 300, 400]):
        c.record(end, 10.0 * i)
    assert list(c.clock.points) == [(200, 10.0), (300, 20.0), (400, 30.0)]
    assert c.table.counts[c.row[0]] == 3
    assert c.time_of(150) == 5.0  # extrapolated from (200, 10)-(300, 20) now


def test_rows_are_stable_and_before_oldest_says_when_time_is_a_guess():
    table = OffsetClocks()
    rows = table.rows_of(["a", "b", "c"])
    assert rows.tolist() == [0, 1, 2] and table.rows_of(["c", "a", "d"]).tolist() == [2, 0, 3]
    assert len(table.counts) >= 4 and table.offsets.shape[1] == 120
    table.record(np.array([0, 1]), np.array([100, 100]), 0.0)
    table.record(np.array([0]), np.array([200]), 10.0)
    assert table.before_oldest(np.array([0, 0, 0, 1, 2]), np.array([50, 100, 150, 150, 0])).tolist() == \
        [True, False, False, True, True]  # the oldest point itself is known, not extrapolated


def test_many_rows_at_once_match_one_clock_each():
    table = OffsetClocks()
    rows = table.rows_of(list(range(5)))
    clocks = [OffsetClock() for _ in range(5)]
    for step in range(6):
        ends = np.array([100 + 10 * step * (r + 1) if r != 3 else 100 for r in range(5)])
        if step == 4:
            ends[4] = 5  # truncated
        table.record(rows, ends, 5.0 * step)
        for r, clock in enumerate(clocks):
            clock.record(int(ends[r]), 5.0 * step)
    committed = np.array([105, 150, 100, 50, 1])
    ends = np.array([c.points[-1][0] for c in clocks])
    got = table.lag_seconds(rows, committed, np.array([True, True, True, True, False]), ends, now=40.0)
    want = [clocks[r].lag_seconds(int(committed[r]) if r != 4 else None, int(ends[r]), 40.0) for r in range(5)]
    assert np.allclose(got, want, equal_nan=True)
    assert got[0] == 37.5 and got[2] > 0 and math.isnan(got[4])  # 105 was the end at 2.5 s


def test_truncation_after_a_single_point_starts_over_too():
    c = Both().record(100, 0.0).record(50, 10.0).record(150, 20.0)
    assert list(c.clock.points) == [(50, 10.0), (150, 20.0)]
    assert c.time_of(100) == 15.0
