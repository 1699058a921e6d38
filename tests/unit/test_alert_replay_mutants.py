"""What the rules would have done, replayed over the per-minute rollups
(eventscope.analysis.alerts.replay_minutes), by examples written from its docstring: one
step at the end of each minute, on the minute's worst lag and its DLQs' newest depth and
growth per minute; a minute in progress judged at ``now``; ``since`` and ``max_steps``."""
from __future__ import annotations

import pandas as pd
import pytest

from eventscope import schemas
from eventscope.analysis import alerts
from eventscope.analysis.rules import Rule

T0 = pd.Timestamp("2026-11-28T10:00:00Z")
LAG = Rule(name="lag", metric="lag", warning=100.0, for_s=120.0)


def minute(n: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=n)


def lag_1m(worst: list[float], group: str = "g", topic: str = "t") -> pd.DataFrame:
    """One row per minute from T0; the summed lag is far below the worst partition's."""
    return schemas.conform("lag_1m", [
        {"minute": minute(i), "source": "kafka", "broker": "kafka", "kind": "kafka", "group": group,
         "topic": topic, "partitions": 4, "lag": int(w // 10), "lag_max": int(w), "lag_seconds": 1.0,
         "status": "OK", "members": 1, "committed": 0, "consumed": 0, "samples": 12}
        for i, w in enumerate(worst)])


def dlq_1m(depths: dict[float, int], dlq: str = "orders.DLT") -> pd.DataFrame:
    return schemas.conform("dlq_1m", [
        {"minute": minute(m), "source": "kafka", "broker": "kafka", "kind": "kafka", "dlq": dlq,
         "source_topic": "orders", "depth": d, "depth_max": d, "samples": 12} for m, d in depths.items()])


def transitions(history: pd.DataFrame) -> list[tuple]:
    return [(t.subject, t.transition, (t.at - T0).total_seconds() / 60, t.value) for t in history.itertuples()]


def test_one_step_at_the_end_of_each_minute_on_the_worst_partition_lag():
    state, history = alerts.replay_minutes(lag_1m([50, 150, 150, 150, 50, 50]), dlq_1m({}), [LAG])
    # minute 1 ends at 2:00 above the line: pending; held 120 s at 4:00: firing; minute 4 ends below
    assert transitions(history) == [("kafka:g/t", "pending", 2.0, 150.0), ("kafka:g/t", "firing", 4.0, 150.0),
                                    ("kafka:g/t", "resolved", 5.0, 50.0)]
    assert state == {}


def test_a_minute_in_progress_is_judged_at_now_and_an_alert_left_open_is_the_state():
    now = minute(3.5)
    state, history = alerts.replay_minutes(lag_1m([50, 150, 150, 150]), dlq_1m({}), [LAG], now=now)
    assert transitions(history) == [("kafka:g/t", "pending", 2.0, 150.0)]
    # the last minute (3:00-4:00) is still open at 3:30: judged then, 90 s into pending, not firing
    assert list(state) == [("lag", "kafka:g/t")]
    assert state[("lag", "kafka:g/t")].state == "pending"
    state, history = alerts.replay_minutes(lag_1m([50, 150, 150, 150]), dlq_1m({}), [LAG], now=minute(10))
    assert state[("lag", "kafka:g/t")].state == "firing"
    assert transitions(history)[-1] == ("kafka:g/t", "firing", 4.0, 150.0)


def test_since_starts_at_its_minute_and_max_steps_keeps_the_newest_minutes():
    worst = [150, 150, 150, 150, 150, 150]
    _, history = alerts.replay_minutes(lag_1m(worst), dlq_1m({}), [LAG], since=minute(2) + pd.Timedelta(seconds=10))
    assert transitions(history) == [("kafka:g/t", "pending", 3.0, 150.0), ("kafka:g/t", "firing", 5.0, 150.0)]
    _, history = alerts.replay_minutes(lag_1m(worst), dlq_1m({}), [LAG], max_steps=2)
    assert transitions(history) == [("kafka:g/t", "pending", 5.0, 150.0)]
    _, history = alerts.replay_minutes(lag_1m(worst), dlq_1m({}), [LAG], max_steps=3)
    assert transitions(history) == [("kafka:g/t", "pending", 4.0, 150.0), ("kafka:g/t", "firing", 6.0, 150.0)]


def test_nothing_to_replay_is_no_state_and_an_empty_history():
    state, history = alerts.replay_minutes(lag_1m([]), dlq_1m({}), [LAG])
    assert state == {} and history.empty and list(history.columns) == list(alerts.alert_state.TRANSITION_COLUMNS)
    state, history = alerts.replay_minutes(None, None, [LAG])
    assert state == {} and history.empty


def test_dlq_growth_is_per_minute_since_the_dlqs_minute_before():
    growth = alerts._dlq_growth(pd.concat([dlq_1m({0: 10, 1: 30, 4: 45}), dlq_1m({1: 7, 2: 8}, dlq="pay.DLT")],
                                          ignore_index=True))
    assert sorted(growth) == [minute(0), minute(1), minute(2), minute(4)]
    seen = {(m, r.dlq): (r.depth, r.growth_per_min, r.sampled_at) for m, rows in growth.items()
            for r in rows.itertuples()}
    assert seen == {
        (minute(0), "orders.DLT"): (10, 0.0, minute(1)),  # nothing before: no growth
        (minute(1), "orders.DLT"): (30, 20.0, minute(2)),
        (minute(4), "orders.DLT"): (45, 5.0, minute(5)),  # 15 more over the 3 minutes since
        (minute(1), "pay.DLT"): (7, 0.0, minute(2)),  # each DLQ has its own minute before
        (minute(2), "pay.DLT"): (8, 1.0, minute(3)),
    }
    assert alerts._dlq_growth(dlq_1m({0: 10, 3: 11}))[minute(3)]["growth_per_min"].tolist() == [0.33]
    assert alerts._dlq_growth(None) == {} and alerts._dlq_growth(dlq_1m({})) == {}


@pytest.mark.parametrize("metric, threshold, expected", [
    ("dlq_growth_per_min", 10.0, [("kafka:orders.DLT", "pending", 2.0, 20.0), ("kafka:orders.DLT", "cancelled", 5.0, 5.0)]),
    ("dlq_depth", 40.0, [("kafka:orders.DLT", "pending", 5.0, 45.0)]),
])
def test_dlq_rules_step_on_the_minutes_depth_and_growth(metric, threshold, expected):
    rule = Rule(name="dlq", metric=metric, warning=threshold, for_s=60.0)
    _, history = alerts.replay_minutes(lag_1m([]), dlq_1m({0: 10, 1: 30, 4: 45}), [rule])
    assert transitions(history) == expected


def test_the_rule_table_lists_each_observed_subject_under_the_rule_that_takes_it():
    from eventscope.analysis import alert_state

    rules = [Rule(name="lag", metric="lag", warning=1000.0),  # the last rule that matches applies
             Rule(name="orders-lag", metric="lag", match=("orders-*",), warning=500.0, critical=5000.0,
                  for_s=30.0, clear=100.0),
             Rule(name="quiet", metric="lag", match=("audit",)),  # no thresholds: silences audit
             Rule(name="stall", metric="lag_status", critical=("STALL",), for_s=0.0)]
    rows = [("lag", "k:orders-a/t", ("k:orders-a/t", "orders-a", "t", "k"), 800.0, ""),
            ("dlq_depth", "k:y.DLT", ("k:y.DLT", "y.DLT", None, "k"), 3.0, ""),  # no rule: left out, the rest go on
            ("lag", "k:billing/t", ("k:billing/t", "billing", "t", "k"), 20.0, ""),
            ("lag", "k:audit/t", ("k:audit/t", "audit", "t", "k"), 9e9, ""),
            ("lag_status", "k:billing/t", ("k:billing/t", "billing", "t", "k"), 20.0, "STALL"),
            ("dlq_depth", "k:x.DLT", ("k:x.DLT", "x.DLT", None, "k"), 3.0, "")]  # no rule for it: left out
    observations = pd.DataFrame(rows, columns=alert_state.OBSERVATION_COLUMNS)
    state, _ = alert_state.step({}, observations, rules, T0)
    table = alerts.rule_table(rules, observations, state)
    assert list(table.columns) == ["rule", "metric", "subject", "value", "warning", "critical", "clear", "for_s",
                                   "state", "severity"]
    records = table.astype(object).where(table.notna(), None).to_dict("records")
    assert records == [
        {"rule": "orders-lag", "metric": "lag", "subject": "k:orders-a/t", "value": 800.0, "warning": 500.0,
         "critical": 5000.0, "clear": 100.0, "for_s": 30.0, "state": "pending", "severity": "warning"},
        {"rule": "lag", "metric": "lag", "subject": "k:billing/t", "value": 20.0, "warning": 1000.0,
         "critical": None, "clear": 1000.0, "for_s": 60.0, "state": "ok", "severity": None},
        {"rule": "quiet", "metric": "lag", "subject": "k:audit/t", "value": 9e9, "warning": None,
         "critical": None, "clear": None, "for_s": 60.0, "state": "silenced", "severity": None},
        {"rule": "stall", "metric": "lag_status", "subject": "k:billing/t", "value": "STALL", "warning": None,
         "critical": "STALL", "clear": None, "for_s": 0.0, "state": "firing", "severity": "critical"},
    ]
    empty = alerts.rule_table(rules, observations.iloc[:0], {})
    assert empty.empty and list(empty.columns) == list(table.columns)


def test_collector_health_is_replayed_beside_the_minutes():
    stale = Rule(name="stale", metric="collector_stale_s", warning=100.0, for_s=0.0)
    health = schemas.conform("health", [
        {"sampled_at": minute(i), "source": "kafka", "collector": "kafka.offsets", "ok": i == 0,
         "error": "" if i == 0 else "broker down", "duration_ms": 1.0, "rows": 0, "last_success": minute(0)}
        for i in range(5)])
    _, history = alerts.replay_minutes(lag_1m([1, 1, 1, 1, 1]), dlq_1m({}), [stale], health=health)
    # the minute ending at 2:00 is the first 100 s after the last success at 0:00
    assert [(t.subject, t.transition, (t.at - T0).total_seconds() / 60, t.value, t.detail)
            for t in history.itertuples()] == [
        ("kafka/kafka.offsets", "pending", 2.0, 120.0, "broker down"),
        ("kafka/kafka.offsets", "firing", 2.0, 120.0, "broker down")]


def second(n: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=n)


def lag_samples(points: dict[float, float], group: str = "g", topic: str = "t") -> pd.DataFrame:
    """``lag_samples`` rows of one group and topic: {seconds after T0: lag}."""
    return schemas.conform("lag_samples", [
        {"sampled_at": second(s), "source": "kafka", "broker": "kafka", "kind": "kafka", "group": group,
         "topic": topic, "partitions": 2, "lag": int(v), "max_lag": int(v), "lag_seconds": 1.0, "status": "OK",
         "members": 1, "committed": 0, "consumed": 0} for s, v in points.items()])


def seconds_of(history: pd.DataFrame) -> list[tuple]:
    return [(t.subject, t.transition, (t.at - T0).total_seconds(), t.value) for t in history.itertuples()]


def test_samples_are_replayed_one_step_per_sample_time():
    rule = Rule(name="lag", metric="lag", warning=100.0, for_s=20.0)
    state, history = alerts.replay_samples(lag_samples({0: 50, 10: 150, 20: 150, 30: 150, 40: 50}),
                                           schemas.conform("dlq", []), [rule])
    assert seconds_of(history) == [("kafka:g/t", "pending", 10.0, 150.0), ("kafka:g/t", "firing", 30.0, 150.0),
                                   ("kafka:g/t", "resolved", 40.0, 50.0)]
    assert state == {}
    _, history = alerts.replay_samples(lag_samples({0: 50, 10: 150, 20: 150, 30: 150, 40: 50}),
                                       schemas.conform("dlq", []), [rule], since=second(20))
    # from 20 s on: pending then, below the line at 40 s before its 20 s were held (30 s was the last above)
    assert seconds_of(history) == [("kafka:g/t", "pending", 20.0, 150.0), ("kafka:g/t", "cancelled", 40.0, 50.0)]


def test_each_group_stands_as_of_its_newest_sample_at_each_step():
    rule = Rule(name="lag", metric="lag", warning=100.0, for_s=0.0)
    samples = pd.concat([lag_samples({0: 1, 10: 1, 20: 1}, group="a"), lag_samples({5: 150, 15: 10}, group="b")],
                        ignore_index=True)
    state, history = alerts.replay_samples(samples, None, [rule])
    # b's sample at 5 s still stands at 10 s (no transition then); its next sample clears it
    assert seconds_of(history) == [("kafka:b/t", "pending", 5.0, 150.0), ("kafka:b/t", "firing", 5.0, 150.0),
                                   ("kafka:b/t", "resolved", 15.0, 10.0)]


def test_many_sample_times_are_thinned_evenly_keeping_the_first_and_the_newest():
    rule = Rule(name="lag", metric="lag", warning=100.0, for_s=0.0)
    values = {10 * i: (150 if i % 3 == 0 and i % 2 else 50) for i in range(10)}  # high at 30 and 90 s only
    _, history = alerts.replay_samples(lag_samples(values), None, [rule], max_steps=4)  # steps at 0, 30, 60, 90 s
    assert seconds_of(history) == [("kafka:g/t", "pending", 30.0, 150.0), ("kafka:g/t", "firing", 30.0, 150.0),
                                   ("kafka:g/t", "resolved", 60.0, 50.0), ("kafka:g/t", "pending", 90.0, 150.0),
                                   ("kafka:g/t", "firing", 90.0, 150.0)]
    _, every = alerts.replay_samples(lag_samples(values), None, [rule], max_steps=10)
    assert [t[2] for t in seconds_of(every)] == [30.0, 30.0, 40.0, 90.0, 90.0]


def test_dead_letters_and_collector_health_are_replayed_beside_the_samples():
    depth = Rule(name="dlq", metric="dlq_depth", warning=10.0, for_s=0.0)
    stale = Rule(name="stale", metric="collector_stale_s", warning=15.0, for_s=0.0)
    dlq = schemas.conform("dlq", [{"sampled_at": second(s), "source": "kafka", "broker": "kafka", "kind": "kafka",
                                   "dlq": "orders.DLT", "source_topic": "orders", "depth": d}
                                  for s, d in ((0, 5), (10, 20), (20, 30))])
    health = schemas.conform("health", [
        {"sampled_at": second(s), "source": "kafka", "collector": "kafka.offsets", "ok": s == 0,
         "error": "" if s == 0 else "down", "duration_ms": 1.0, "rows": 0, "last_success": second(0)}
        for s in (0, 10, 20)])
    _, history = alerts.replay_samples(lag_samples({0: 1, 10: 1, 20: 1}), dlq, [depth, stale], health=health)
    # the DLQ above 10 at 10 s; the collector's last success 20 s before the step at 20 s
    assert [t[:4] for t in seconds_of(history)] == [
        ("kafka:orders.DLT", "pending", 10.0, 20.0), ("kafka:orders.DLT", "firing", 10.0, 20.0),
        ("kafka/kafka.offsets", "pending", 20.0, 20.0), ("kafka/kafka.offsets", "firing", 20.0, 20.0)]


def test_observations_now_are_one_row_per_metric_and_subject_from_the_recorders_snapshots():
    at = second(300)
    groups = schemas.conform("lag_groups", [
        {"sampled_at": second(295), "source": "kafka", "broker": "kafka", "kind": "kafka", "group": "g",
         "topic": "t", "partitions": 2, "lag": 40, "max_lag": 30, "lag_seconds": 12.5, "status": "WARN",
         "members": 1},
        {"sampled_at": second(295), "source": "redis", "broker": "redis", "kind": "redis", "group": "r",
         "topic": "s", "partitions": 1, "lag": None, "max_lag": None, "lag_seconds": None, "status": None,
         "members": 1},
        {"sampled_at": second(100), "source": "kafka", "broker": "kafka", "kind": "kafka", "group": "old",
         "topic": "t", "partitions": 1, "lag": 1, "max_lag": 1, "lag_seconds": 1.0, "status": "OK",
         "members": 1}])  # 195 s older than its source's newest sample: not observed
    dlq = pd.DataFrame({"broker": ["kafka", "kafka", "redis"], "dlq": ["old.DLT", "t.DLT", "s:dlq"],
                        "source_topic": ["t", None, "s"], "depth": [9, 4, 2], "growth_per_min": [0.0, 1.5, 0.0],
                        "sampled_at": [second(100), second(290), at - pd.Timedelta(seconds=120)]})
    stuck = schemas.conform("stuck_latest", [
        {"sampled_at": second(295), "source": "redis", "broker": "redis", "kind": "redis", "topic": "s",
         "group": "r", "entry_id": f"1-{i}", "consumer": "c", "idle_ms": 1, "deliveries": 3} for i in range(2)])
    health = schemas.conform("health", [
        {"sampled_at": second(290), "source": "kafka", "collector": "kafka.offsets", "ok": False, "error": "down",
         "duration_ms": 1.0, "rows": 0, "last_success": second(200)}])
    rows = alerts.observe_now(groups, dlq, stuck, health, at=at)
    got = [(r.metric, r.subject, r.names, None if pd.isna(r.value) else r.value, r.detail)
           for r in rows.itertuples(index=False)]
    g, r = ("kafka:g/t", "g", "t", "kafka"), ("redis:r/s", "r", "s", "redis")
    assert got == [
        ("lag", "kafka:g/t", g, 40.0, ""), ("lag", "redis:r/s", r, None, ""),
        ("lag_seconds", "kafka:g/t", g, 12.5, ""), ("lag_seconds", "redis:r/s", r, None, ""),
        ("lag_status", "kafka:g/t", g, 40.0, "WARN"), ("lag_status", "redis:r/s", r, None, "UNKNOWN"),
        # a DLQ sampled 120 s ago is still observed, one 200 s ago is not; each the rows it gives
        ("dlq_depth", "kafka:t.DLT", ("kafka:t.DLT", "t.DLT", None, "kafka"), 4.0, ""),
        ("dlq_growth_per_min", "kafka:t.DLT", ("kafka:t.DLT", "t.DLT", None, "kafka"), 1.5, ""),
        ("dlq_depth", "redis:s:dlq", ("redis:s:dlq", "s:dlq", "s", "redis"), 2.0, ""),
        ("dlq_growth_per_min", "redis:s:dlq", ("redis:s:dlq", "s:dlq", "s", "redis"), 0.0, ""),
        ("stuck_entries", "redis:r/s", r, 2.0, ""),
        ("collector_stale_s", "kafka/kafka.offsets", ("kafka/kafka.offsets", "kafka.offsets", "kafka"), 100.0,
         "down"),
    ]
    for wanted in ({"lag_seconds"}, {"lag_status"}, {"dlq_growth_per_min"}, {"stuck_entries", "lag"}):
        only = alerts.observe_now(groups, dlq, stuck, health, at=at, metrics=wanted)
        assert set(only["metric"]) == wanted
        assert len(only) == sum(1 for row in got if row[0] in wanted)
    assert alerts.observe_now(None, None, at=at).empty


def test_a_group_not_sampled_again_still_stands_and_its_alert_can_fire_on_it():
    # b was sampled once, above the line; a later step (a's sample) still sees b's sample and
    # its 5 s are held then
    rule = Rule(name="lag", metric="lag", warning=100.0, for_s=5.0)
    samples = pd.concat([lag_samples({0: 1, 10: 1}, group="a"), lag_samples({5: 150}, group="b")],
                        ignore_index=True)
    _, history = alerts.replay_samples(samples, None, [rule])
    assert seconds_of(history) == [("kafka:b/t", "pending", 5.0, 150.0), ("kafka:b/t", "firing", 10.0, 150.0)]
    # a DLQ rule with no DLQ samples, or no lag samples at all: nothing to observe, nothing fires
    depth = Rule(name="dlq", metric="dlq_depth", warning=1.0, for_s=0.0)
    assert alerts.replay_samples(samples, None, [depth])[1].empty
    dlq = schemas.conform("dlq", [{"sampled_at": second(0), "source": "kafka", "broker": "kafka", "kind": "kafka",
                                   "dlq": "x.DLT", "source_topic": "x", "depth": 3}])
    assert seconds_of(alerts.replay_samples(None, dlq, [depth])[1]) == [
        ("kafka:x.DLT", "pending", 0.0, 3.0), ("kafka:x.DLT", "firing", 0.0, 3.0)]


def test_observations_now_count_no_stuck_entries_as_zero_and_see_health_for_fifteen_minutes():
    now = pd.Timestamp.now(tz="UTC").floor("s")
    groups = schemas.conform("lag_groups", [
        {"sampled_at": now, "source": "redis", "broker": "redis", "kind": "redis", "group": "r", "topic": "s",
         "partitions": 1, "lag": 0, "max_lag": 0, "lag_seconds": 0.0, "status": "OK", "members": 1}])
    health = schemas.conform("health", [
        {"sampled_at": now - pd.Timedelta(seconds=600), "source": "redis", "collector": "redis.streams",
         "ok": True, "error": "", "duration_ms": 1.0, "rows": 1, "last_success": now - pd.Timedelta(seconds=600)}])
    for stuck in (None, schemas.conform("stuck_latest", [])):
        rows = alerts.observe_now(groups, None, stuck, health, metrics={"stuck_entries", "collector_stale_s"})
        values = dict(zip(rows["metric"], rows["value"]))
        assert values["stuck_entries"] == 0.0
        # a health row ten minutes old still says when the collector last succeeded (now: the default)
        assert 600.0 <= values["collector_stale_s"] < 660.0


def test_the_firing_frame_shows_each_firing_alert_with_its_current_value():
    from eventscope.analysis import alert_state

    rules = [Rule(name="lag", metric="lag", warning=100.0, critical=1000.0, for_s=0.0),
             Rule(name="slow", metric="lag_seconds", warning=10.0, for_s=600.0)]
    first = pd.DataFrame([("lag", "k:a/t", ("k:a/t", "a", "t", "k"), 150.0, "d0"),
                          ("lag", "k:b/t", ("k:b/t", "b", "t", "k"), 2000.0, ""),
                          ("lag_seconds", "k:a/t", ("k:a/t", "a", "t", "k"), 50.0, "")],  # pending only
                         columns=alert_state.OBSERVATION_COLUMNS)
    state, _ = alert_state.step({}, first, rules, T0)
    frame = alerts.firing_frame(state)
    assert list(frame.columns) == alerts.FIRING_COLUMNS
    assert frame[["rule", "severity", "subject", "value", "threshold", "metric", "detail"]].values.tolist() == [
        ["lag", "critical", "k:b/t", 2000.0, 1000.0, "lag", ""], ["lag", "warning", "k:a/t", 150.0, 100.0, "lag", "d0"]]
    assert set(frame["since"]) == {"2026-11-28T10:00:00Z"} and set(frame["fired_at"]) == {"2026-11-28T10:00:00Z"}
    assert list(frame["episode"]) == ["lag|k:b/t|2026-11-28T10:00:00Z", "lag|k:a/t|2026-11-28T10:00:00Z"]
    # with the moment's observations: their values and details, an unknown value as None
    now = pd.DataFrame([("lag", "k:a/t", ("k:a/t", "a", "t", "k"), 170.0, "d1"),
                        ("lag", "k:b/t", ("k:b/t", "b", "t", "k"), float("nan"), "")],
                       columns=alert_state.OBSERVATION_COLUMNS)
    current = alerts.firing_frame(state, now)
    assert current[["subject", "value", "detail"]].astype(object).where(current.notna(), None).values.tolist() == [
        ["k:b/t", None, ""], ["k:a/t", 170.0, "d1"]]
    assert alerts.firing_frame(state, now.iloc[:0])["value"].tolist() == [2000.0, 150.0]
    assert alerts.firing_frame({}).empty and list(alerts.firing_frame({}).columns) == alerts.FIRING_COLUMNS


def test_collector_staleness_counts_from_the_last_success_or_from_the_first_run_that_never_succeeded():
    at = second(600)
    health = schemas.conform("health", [
        {"sampled_at": second(100), "source": "kafka", "collector": "kafka.offsets", "ok": False,
         "error": "x" * 300, "duration_ms": 1.0, "rows": 0, "last_success": None},
        {"sampled_at": second(500), "source": "kafka", "collector": "kafka.offsets", "ok": False,
         "error": "x" * 300, "duration_ms": 1.0, "rows": 0, "last_success": None},
        {"sampled_at": second(599.5), "source": "redis", "collector": "redis.streams", "ok": True,
         "error": "", "duration_ms": 1.0, "rows": 5, "last_success": second(599.5)}])
    rows = alerts.observe_now(None, None, None, health, at=at, metrics={"collector_stale_s"})
    got = {r.subject: (r.value, r.detail) for r in rows.itertuples(index=False)}
    assert got == {"kafka/kafka.offsets": (500.0, "x" * 200),  # never succeeded: stale since its first run
                   "redis/redis.streams": (0.5, "")}
