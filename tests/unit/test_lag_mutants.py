"""Lag verdicts at the edges a mutation run found unchecked: the window's first instant,
one partition reported twice in one sample, and the columns handed back.

Each case is written from the rulebook in ``analysis.lag``'s docstring, for the batch judge
(``latest_lag``) and the incremental one (``LagJudge``) alike."""
from __future__ import annotations

import pandas as pd

from eventscope import schemas
from eventscope.analysis import lag
from test_lag_rules import RISING, T0, both, frame


def test_a_sample_exactly_a_window_before_the_newest_is_in_the_window():
    # samples at 0, 10, 20 s, lag 5 → 18 → 46: two rises within a 20 s window (0 s included)
    assert both(frame(RISING), window_s=20.0) == "WARN"
    # a window of 19.9 s leaves the sample at 0 s out: one rise is not a trend
    assert both(frame(RISING), window_s=19.9) == "OK"


def test_a_stall_seen_only_from_the_windows_first_instant():
    # moved from 0 s to 10 s, then stood still at 20 s and 30 s: with the sample at 0 s the
    # committed offset stepped forward in the window, and stood still 20 s since
    series = [(10, 15), (12, 20), (12, 25), (12, 30)]
    assert both(frame(series), window_s=30.0, stuck_after_s=25.0) == "WARN"
    # without it (window 29 s) nothing moved forward in the window: stalled
    assert both(frame(series), window_s=29.0, stuck_after_s=25.0) == "STALL"


def _twice(first_committed, last_committed, end=30):
    """One partition reported twice in the same sample: the last report is the newest."""
    rows = frame([(10, 15)])
    again = pd.concat([rows.assign(committed=first_committed, end=end, lag=end - first_committed),
                       rows.assign(committed=last_committed, end=end, lag=end - last_committed)],
                      ignore_index=True)
    again["sampled_at"] = T0 + pd.Timedelta(seconds=10)
    return rows, schemas.conform("lag", again)


def test_a_partition_reported_twice_in_one_sample_counts_once_with_its_last_report():
    first, dup = _twice(first_committed=10, last_committed=20)
    judge = lag.LagJudge()
    judge.add(first)
    taken = judge.add(dup)
    assert len(taken) == 1
    assert taken["committed"].tolist() == [20] and taken["consumed"].tolist() == [10]
    latest = judge.latest()
    assert len(latest) == 1 and latest["committed"].tolist() == [20] and latest["lag"].tolist() == [10]
    batch = lag.latest_lag(pd.concat([first, dup], ignore_index=True))
    assert batch["committed"].tolist() == [20] and batch["lag"].tolist() == [10]


def test_a_duplicate_that_went_back_is_a_rewind_for_both_judges():
    # the last report of the sample has the committed offset below the previous sample's
    first, dup = _twice(first_committed=20, last_committed=5)
    rows = pd.concat([first, dup], ignore_index=True)
    assert lag.latest_lag(rows)["status"].tolist() == ["REWIND"]
    judge = lag.LagJudge()
    judge.add(first)
    judge.add(dup)
    assert judge.latest()["status"].tolist() == ["REWIND"]


def test_the_judge_hands_back_every_column_it_was_given_in_order():
    rows = frame(RISING)
    judge = lag.LagJudge()
    for _, one in rows.groupby("sampled_at", sort=True):
        judge.add(one)
    latest = judge.latest()
    assert list(latest.columns) == [*rows.columns, "status"]
    newest = rows.iloc[-1]
    for column in rows.columns:
        value = latest[column].iloc[0]
        assert (pd.isna(value) and pd.isna(newest[column])) or value == newest[column], column
    assert latest.dtypes.drop("status").to_dict() == rows.dtypes.to_dict()  # each in the dtype it came in


def test_the_default_window_is_five_minutes():
    # README: the status is judged over the last five minutes. Samples 150.25 s apart: the
    # first is 300.5 s before the newest, outside the window, so only one rise is seen
    rows = frame(RISING, every_s=150.25, seconds=[0.0, 1.0, 2.0])
    assert lag.latest_lag(rows)["status"].tolist() == ["OK"]
    judge = lag.LagJudge()
    for _, one in rows.groupby("sampled_at", sort=True):
        judge.add(one)
    assert judge.latest()["status"].tolist() == ["OK"]
    # 150 s apart: the first is exactly five minutes old, inside the window: rising twice
    rows = frame(RISING, every_s=150.0, seconds=[0.0, 1.0, 2.0])
    assert lag.latest_lag(rows)["status"].tolist() == ["WARN"]


def test_the_default_stall_is_a_minute_without_a_commit():
    series = [(10, 15), (12, 20), (12, 25), (12, 30), (12, 35)]  # moved, then still for 3 samples
    assert lag.latest_lag(frame(series, every_s=20))["status"].tolist() == ["STALL"]
    assert lag.latest_lag(frame(series, every_s=19.9))["status"].tolist() == ["WARN"]


def test_the_group_summary_lists_groups_in_name_order():
    parts = [frame([(10, 15), (12, 30)], group=g, broker=b) for b, g in
             (("redis", "a"), ("kafka", "zeta"), ("kafka", "alpha"))]
    latest = lag.latest_lag(pd.concat(parts, ignore_index=True))
    latest = latest.set_index("group").loc[["zeta", "a", "alpha"]].reset_index()  # not in name order
    summary = lag.group_summary(latest)
    assert list(zip(summary["broker"], summary["group"])) == [("kafka", "alpha"), ("kafka", "zeta"),
                                                              ("redis", "a")]


def test_committing_one_message_a_sample_is_moving():
    # committed 10 → 11 → 12 while the lag rises 5 → 6 → 7: slow, but committing (WARN, not STALL)
    assert both(frame([(10, 15), (11, 17), (12, 19)])) == "WARN"
    assert both(frame([(10, 15), (11, 15), (12, 15)])) == "OK"  # catching up one message a sample


def test_a_sample_of_unknown_lag_is_not_a_catch_up():
    # lag 5, 18, unknown, 46, 74: it never reached zero, so every known rise counts
    assert both(frame([(10, 15), (12, 30), (None, 40), (14, 60), (16, 90)])) == "WARN"


def test_an_unknown_committed_offset_is_not_a_commit():
    # committed 10, 12, unknown, 12, 12 every 20 s: the last step forward was at 20 s, so at
    # 80 s the group has stood still for 60 s (the default stuck_after_s): stalled
    series = [(10, 15), (12, 20), (None, 25), (12, 30), (12, 35)]
    assert both(frame(series, every_s=20)) == "STALL"


def test_the_judge_ignores_a_second_report_of_a_sample_time_it_already_took():
    judge = lag.LagJudge()
    rows = frame([(10, 15), (12, 30)])
    judge.add(rows.iloc[[0]])
    judge.add(rows.iloc[[1]])
    again = rows.iloc[[1]].assign(committed=5, lag=25)  # the same sample time, reported again
    assert judge.add(again).empty
    latest = judge.latest()
    assert latest["committed"].tolist() == [12] and latest["status"].tolist() == ["OK"]


def test_a_lag_that_stays_level_is_not_rising():
    # committing, lag 5 → 18 → 18: it did not rise at every sample (docstring: OK, not WARN)
    assert both(frame([(10, 15), (12, 30), (14, 32)])) == "OK"
    assert both(frame([(10, 15), (12, 30), (14, 33)])) == "WARN"  # 5 → 18 → 19: it did


def test_a_step_whose_lag_is_unknown_is_not_a_rise():
    # committed 10 → 12 → 14 → 16, lag 5, 18, unknown (Redis reports null), 46: one known
    # rise (5 → 18) in the run, not two: OK. With the last step known too (46 → 74): WARN
    rows = frame([(10, 15), (12, 30), (14, 60), (16, 62)])
    rows["lag"] = pd.array([5, 18, None, 46], dtype=rows["lag"].dtype)
    assert both(rows) == "OK"
    rows = frame([(10, 15), (12, 30), (14, 60), (16, 62), (18, 92)])
    rows["lag"] = pd.array([5, 18, None, 46, 74], dtype=rows["lag"].dtype)
    assert both(rows) == "WARN"
    # lag 5, 0, unknown, 10, 20: since it was last zero, one known rise (10 → 20); the step
    # into the unknown sample and the one out of it are not rises
    rows = frame([(10, 15), (15, 15), (16, 30), (17, 27), (18, 38)])
    rows["lag"] = pd.array([5, 0, None, 10, 20], dtype=rows["lag"].dtype)
    assert both(rows) == "OK"


def test_consumed_counts_every_message_committed_since_the_previous_sample():
    rows = frame([(10, 15), (11, 15), (11, 16), (14, 20), (13, 20)])  # +1, 0, +3, back 1
    judge = lag.LagJudge()
    consumed = [judge.add(one)["consumed"].tolist()[0] for _, one in rows.groupby("sampled_at", sort=True)]
    assert consumed == [0, 1, 0, 3, 0]


def test_a_source_sampled_earlier_but_added_later_does_not_move_the_window_back():
    # window 10 s. Kafka: partition 2 sampled at 0 s only, partition 0 at 0 s and 12 s; Redis
    # sampled at 5 s, its rows added after Kafka's of 12 s. The newest sample is at 12 s, so
    # the window starts at 2 s: partition 2 is out of it, as latest_lag says over the same rows
    kafka = pd.concat([frame([(10, 15), (12, 20)], every_s=12), frame([(10, 15)], partition=2)],
                      ignore_index=True)
    redis = frame([(3, 4)], broker="redis", group="r")
    redis["sampled_at"] = T0 + pd.Timedelta(seconds=5)
    judge = lag.LagJudge(window_s=10.0)
    for _, one in kafka.groupby("sampled_at", sort=True):
        judge.add(one)
    judge.add(redis)
    latest = judge.latest()
    assert sorted(zip(latest["broker"], latest["partition"])) == [("kafka", 0), ("redis", 0)]
    batch = lag.latest_lag(pd.concat([kafka, redis], ignore_index=True), window_s=10.0)
    assert sorted(zip(batch["broker"], batch["partition"])) == [("kafka", 0), ("redis", 0)]


def test_add_returns_the_rows_it_took_with_their_status_and_consumed_only():
    rows = frame([(10, 15), (12, 30)])
    rows = pd.concat([rows, frame([(4, 4), (4, 9)], partition=1)], ignore_index=True)
    judge = lag.LagJudge()
    taken = [judge.add(one) for _, one in rows.groupby("sampled_at", sort=True)]
    for one in taken:
        assert list(one.columns) == [*rows.columns, "status", "consumed"]
        assert one.index.tolist() == [0, 1]
    assert taken[1]["partition"].tolist() == [0, 1] and taken[1]["consumed"].tolist() == [2, 0]


def test_a_step_from_the_windows_first_instant_is_in_the_window():
    # a step is in the window when its earlier sample is: committed 20 → 10 over a window of
    # exactly the 10 s between the two samples went back
    assert both(frame([(20, 30), (10, 30)]), window_s=10.0) == "REWIND"
    # two samples exactly a window apart are two samples to judge by: committing, OK (not UNKNOWN)
    assert both(frame([(10, 15), (12, 30)]), window_s=10.0) == "OK"
    # lag 18 → 18 → 30 → 46 while committing: the level step from the window's first sample
    # means the lag did not rise at every sample (OK); without that sample it did (WARN)
    series = [(10, 28), (12, 30), (14, 44), (16, 62)]
    assert both(frame(series), window_s=30.0) == "OK"
    assert both(frame(series), window_s=29.0) == "WARN"


def test_the_judge_takes_a_sample_whose_text_column_is_all_missing():
    rows = frame([(10, 15), (12, 30)]).assign(group_state=None)
    rows = schemas.conform("lag", rows)
    judge = lag.LagJudge()
    for _, one in rows.groupby("sampled_at", sort=True):
        judge.add(one)
    latest = judge.latest()
    assert latest["group_state"].isna().all() and latest["status"].tolist() == ["OK"]


def test_add_of_several_samples_returns_every_row_numbered_in_order():
    rows = pd.concat([frame([(10, 15), (12, 30), (14, 60)], partition=p) for p in (0, 1)], ignore_index=True)
    taken = lag.LagJudge().add(rows)
    assert taken.index.tolist() == list(range(6))
    assert taken["sampled_at"].tolist() == sorted(rows["sampled_at"].tolist())
    assert taken["status"].tolist() == ["UNKNOWN", "UNKNOWN", "OK", "OK", "WARN", "WARN"]


def test_in_a_large_sample_each_partition_counts_with_its_last_report():
    # forty partitions, each reported twice in one sample: the second report is the newest
    first = pd.concat([frame([(10, 15)], partition=p) for p in range(40)], ignore_index=True)
    again = pd.concat([first.assign(committed=5, lag=10), first.assign(committed=12, lag=3)], ignore_index=True)
    again["sampled_at"] = T0 + pd.Timedelta(seconds=10)
    judge = lag.LagJudge()
    judge.add(first)
    taken = judge.add(again)
    assert taken["committed"].tolist() == [12] * 40 and taken["consumed"].tolist() == [2] * 40
    assert lag.latest_lag(pd.concat([first, again], ignore_index=True))["committed"].tolist() == [12] * 40


def test_add_of_two_samples_returns_both_and_an_empty_judge_names_its_columns():
    rows = frame([(10, 15), (12, 30)])
    assert lag.LagJudge().add(rows)["committed"].tolist() == [10, 12]
    empty = lag.LagJudge().latest()
    assert empty.empty and list(empty.columns) == [*lag.KEY, "sampled_at", "lag", "committed", "status"]


def test_the_judge_has_the_same_default_stall_and_a_window_exact_to_the_nanosecond():
    series = [(10, 15), (12, 20), (12, 25), (12, 30), (12, 35)]  # moved, then still for 60 s
    judge = lag.LagJudge()
    for _, one in frame(series, every_s=20).groupby("sampled_at", sort=True):
        judge.add(one)
    assert judge.latest()["status"].tolist() == ["STALL"]
    # the first of three rising samples 300 s and 200 ns before the newest: out of the window
    assert both(frame(RISING, every_s=150.0000001, seconds=[0.0, 1.0, 2.0])) == "OK"
