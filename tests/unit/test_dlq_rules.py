"""DLQ summaries by example (``analysis.dlq``): growth over the window, age, reasons biggest
first, the reprocessing lag and pre-DLQ pressure, the charts' series and the CLI rows."""
from __future__ import annotations

import json

import pandas as pd

from eventscope import schemas
from eventscope.analysis import dlq

T0 = pd.Timestamp("2026-11-28T10:00:00Z")


def samples(depths, every_s=60, name="payments.DLT", broker="kafka", source_topic="payments", oldest=None,
            reasons=None, unread=None):
    return schemas.conform("dlq", [
        {"sampled_at": T0 + pd.Timedelta(seconds=every_s * i), "source": broker, "broker": broker, "dlq": name,
         "source_topic": source_topic, "depth": d, "oldest_at": oldest,
         "reasons": json.dumps(reasons if reasons is not None else {}),
         "unread": unread} for i, d in enumerate(depths)])


def test_growth_is_per_minute_over_the_window_only():
    # 10 minutes of samples; the 5-minute window sees depth 50 → 100 over 5 minutes
    rows = samples([0, 0, 0, 0, 0, 50, 60, 70, 80, 90, 100])
    out = dlq.summary(rows, window_s=300.0)
    assert out.loc[0, "growth_per_min"] == 10.0 and out.loc[0, "depth"] == 100
    assert dlq.summary(rows, window_s=600.0).loc[0, "growth_per_min"] == 10.0  # 0 → 100 in 10 min
    shrinking = dlq.summary(samples([30, 20, 10]))
    assert shrinking.loc[0, "growth_per_min"] == -10.0


def test_growth_rounds_to_hundredths_and_is_zero_for_one_sample():
    assert dlq.summary(samples([0, 1, 2], every_s=90)).loc[0, "growth_per_min"] == 0.67
    assert dlq.summary(samples([7])).loc[0, "growth_per_min"] == 0.0


def test_age_of_the_oldest_message_from_now_never_negative():
    rows = samples([1, 1], oldest=T0 - pd.Timedelta(seconds=30.04))
    assert dlq.summary(rows, now=T0 + pd.Timedelta(seconds=60)).loc[0, "oldest_age_seconds"] == 90.0
    # without `now`: as of the newest sample
    assert dlq.summary(rows).loc[0, "oldest_age_seconds"] == 90.0
    future = samples([1], oldest=T0 + pd.Timedelta(minutes=5))  # a clock ahead of ours
    assert dlq.summary(future, now=T0).loc[0, "oldest_age_seconds"] == 0.0
    assert pd.isna(dlq.summary(samples([0])).loc[0, "oldest_age_seconds"])


def test_queues_sorted_deepest_first_then_by_name():
    rows = pd.concat([samples([3], name="b.DLT"), samples([9], name="c.DLT"), samples([3], name="a.DLT")])
    out = dlq.summary(rows)
    assert out["dlq"].tolist() == ["c.DLT", "a.DLT", "b.DLT"]
    assert list(out.columns) == dlq.COLUMNS
    assert out["depth"].dtype == "int64"


def test_unread_defaults_to_zero():
    assert dlq.summary(samples([5], unread=2)).loc[0, "unread"] == 2
    assert dlq.summary(samples([5])).loc[0, "unread"] == 0
    no_column = samples([5]).drop(columns=["unread"])
    assert dlq.summary(no_column).loc[0, "unread"] == 0


def test_unprocessed_is_the_largest_group_lag_on_the_dlq_now():
    def lag(at_s, group, partition, value, topic="payments.DLT", broker="kafka"):
        return {"sampled_at": T0 + pd.Timedelta(seconds=at_s), "source": broker, "broker": broker,
                "group": group, "topic": topic, "partition": partition, "committed": 0, "end": value,
                "lag": value, "lag_seconds": 1.0, "members": 1, "group_state": "Stable"}
    lag_rows = schemas.conform("lag", [
        lag(0, "old-sample", 0, 999),  # an older sample does not count
        lag(60, "reprocess", 0, 4), lag(60, "reprocess", 1, 3), lag(60, "audit", 0, 5),
        lag(60, "elsewhere", 0, 500, topic="orders"), lag(60, "redis-one", 0, 700, broker="redis")])
    out = dlq.summary(samples([7]), lag=lag_rows)
    assert out.loc[0, "unprocessed"] == 7  # reprocess: 4 + 3 behind, more than audit's 5
    assert dlq.summary(samples([7]), lag=lag_rows.iloc[0:0]).loc[0, "unprocessed"] is None
    unknown = lag_rows.assign(lag=pd.array([None] * len(lag_rows), dtype="Int64"))
    assert dlq.summary(samples([7]), lag=unknown).loc[0, "unprocessed"] is None
    nobody = lag_rows[lag_rows["topic"] != "payments.DLT"]
    assert dlq.summary(samples([7]), lag=nobody).loc[0, "unprocessed"] is None


def test_pre_dlq_pressure_counts_stuck_redis_entries_of_the_source_stream():
    stuck = pd.DataFrame({"sampled_at": [T0, T0 + pd.Timedelta(seconds=60)] * 3, "broker": "redis",
                          "topic": ["payments", "payments", "payments", "orders", "payments", "payments"]})
    redis = samples([2], broker="redis", name="payments:dlq")
    assert dlq.summary(redis, stuck=stuck).loc[0, "pre_dlq_pressure"] == 2  # the newest sample's two
    assert dlq.summary(redis, stuck=stuck.iloc[0:0]).loc[0, "pre_dlq_pressure"] == 0
    # another Redis server's stuck entries on a stream of the same name are not this DLQ's
    assert dlq.summary(redis, stuck=stuck.assign(broker="cache-eu")).loc[0, "pre_dlq_pressure"] == 0
    assert dlq.summary(redis).loc[0, "pre_dlq_pressure"] is None
    assert dlq.summary(samples([2]), stuck=stuck).loc[0, "pre_dlq_pressure"] is None  # Kafka: no PEL
    no_source = samples([2], broker="redis", name="x:dlq", source_topic=None)
    assert dlq.summary(no_source, stuck=stuck).loc[0, "pre_dlq_pressure"] is None


def test_reasons_parse_biggest_first():
    assert dlq.parse_reasons(json.dumps({"a": 1, "b": 5, "c": 3})) == [
        {"reason": "b", "count": 5}, {"reason": "c", "count": 3}, {"reason": "a", "count": 1}]
    assert dlq.parse_reasons(None) == [] and dlq.parse_reasons("") == [] and dlq.parse_reasons(float("nan")) == []
    assert dlq.parse_reasons("{broken") == [{"reason": "unreadable reasons record", "count": 0}]


def _dead(rows):
    base = {"observed_at": T0, "source": "kafka", "broker": "kafka", "topic": "payments.DLT", "partition": 0,
            "event_type": "PaymentCharged", "dead_letter": True}
    return schemas.conform("events", [dict(base, **r) for r in rows])


def test_reasons_over_time_by_minute_of_arrival():
    events = _dead([
        {"offset": "0", "at": T0, "broker_at": T0 + pd.Timedelta(seconds=70), "dlq_reason": "boom"},
        {"offset": "1", "at": T0 + pd.Timedelta(seconds=10), "dlq_reason": "boom"},
        {"offset": "2", "at": T0 + pd.Timedelta(seconds=20), "decode_error": "not JSON"},
        {"offset": "3", "at": T0 + pd.Timedelta(seconds=30), "decode_error": ""},
        {"offset": "4", "at": T0, "dlq_reason": "elsewhere", "topic": "orders.DLT"},
        {"offset": "5", "at": T0, "dlq_reason": "not dead", "dead_letter": False},
        {"offset": "6", "at": T0, "dlq_reason": "redis", "broker": "redis"},
    ])
    out = dlq.reasons_over_time(events, "kafka", "payments.DLT")
    got = {(r.minute, r.reason): r.count for r in out.itertuples()}
    assert got == {(T0, "boom"): 1, (T0 + pd.Timedelta(minutes=1), "boom"): 1, (T0, "not JSON"): 1,
                   (T0, "unknown"): 1}
    empty = dlq.reasons_over_time(events, "kafka", "nothing.DLT")
    assert empty.empty and list(empty.columns) == ["minute", "reason", "count"]


def test_recent_messages_newest_first_once_each():
    events = _dead([
        {"offset": "0", "at": T0, "dlq_reason": "first"},
        {"offset": "1", "at": T0 + pd.Timedelta(seconds=1), "broker_at": T0 + pd.Timedelta(seconds=9),
         "dlq_reason": "second"},
        {"offset": "2", "at": T0 + pd.Timedelta(seconds=5), "dlq_reason": "third"},
        {"offset": "2", "at": T0 + pd.Timedelta(seconds=5), "dlq_reason": "third, read again"},
        {"offset": "3", "at": T0 + pd.Timedelta(seconds=99), "dlq_reason": "other", "topic": "x.DLT"},
    ])
    out = dlq.recent_messages(events, "kafka", "payments.DLT")
    assert out["reason"].tolist() == ["second", "third, read again", "first"]
    assert out["at"].tolist() == [T0 + pd.Timedelta(seconds=9), T0 + pd.Timedelta(seconds=5), T0]
    assert list(out.columns) == dlq.RECENT
    assert dlq.recent_messages(events, "kafka", "payments.DLT", limit=1)["reason"].tolist() == ["second"]
    none = dlq.recent_messages(events, "redis", "payments.DLT")
    assert none.empty and list(none.columns) == dlq.RECENT


def test_to_rows_is_the_cli_contract():
    lag_rows = schemas.conform("lag", [{"sampled_at": T0, "source": "kafka", "broker": "kafka", "group": "re",
                                        "topic": "payments.DLT", "partition": 0, "committed": 1, "end": 4,
                                        "lag": 3, "lag_seconds": 1.0, "members": 1, "group_state": "Stable"}])
    out = dlq.summary(samples([4, 6], oldest=T0, reasons={"boom": 6}, unread=1), lag=lag_rows)
    assert dlq.to_rows(out) == [{"broker": "kafka", "kind": "kafka", "dlq": "payments.DLT", "source_topic": "payments", "depth": 6,
                                 "growth_per_min": 2.0, "oldest_age_seconds": 60.0,
                                 "reasons": [{"reason": "boom", "count": 6}], "unread": 1, "unprocessed": 3,
                                 "pre_dlq_pressure": None}]
    bare = dlq.to_rows(dlq.summary(samples([0], source_topic=None)))[0]
    assert bare["source_topic"] is None and bare["oldest_age_seconds"] is None and bare["unprocessed"] is None
    assert dlq.summary(schemas.conform("dlq", [])).empty
    assert list(dlq.summary(schemas.conform("dlq", [])).columns) == dlq.COLUMNS


def test_to_rows_says_none_where_one_queue_of_several_has_no_value():
    lag_rows = schemas.conform("lag", [{"sampled_at": T0, "source": "redis", "broker": "redis", "group": "re",
                                        "topic": "a:dlq", "partition": 0, "committed": 1, "end": 4,
                                        "lag": 3, "lag_seconds": 1.0, "members": 1, "group_state": "n/a"}])
    stuck = pd.DataFrame({"sampled_at": [T0], "broker": "redis", "topic": ["a"]})
    rows = pd.concat([samples([5], broker="redis", name="a:dlq", source_topic="a"),
                      samples([4], broker="redis", name="b:dlq", source_topic=None)])
    out = {r["dlq"]: r for r in dlq.to_rows(dlq.summary(rows, lag=lag_rows, stuck=stuck))}
    assert (out["a:dlq"]["unprocessed"], out["a:dlq"]["pre_dlq_pressure"]) == (3, 1)
    assert (out["b:dlq"]["unprocessed"], out["b:dlq"]["pre_dlq_pressure"]) == (None, None)


def test_a_rabbitmq_dlq_backlog_is_unprocessed_only_while_a_consumer_reads_it():
    # a RabbitMQ queue is its own "group": with no consumer its backlog waits, nobody is behind on it
    def queue(members, value, kind="rabbitmq", group="payments.dlq"):
        return {"sampled_at": T0, "source": "mq", "broker": "kafka", "kind": kind, "group": group,
                "topic": "payments.DLT", "partition": 0, "committed": 0, "end": value, "lag": value,
                "lag_seconds": 1.0, "members": members, "group_state": "n/a"}
    read = schemas.conform("lag", [queue(1, 6)])
    assert dlq.summary(samples([7]), lag=read).loc[0, "unprocessed"] == 6
    idle = schemas.conform("lag", [queue(0, 6)])
    assert dlq.summary(samples([7]), lag=idle).loc[0, "unprocessed"] is None
    unknown_members = schemas.conform("lag", [queue(None, 6)])
    assert dlq.summary(samples([7]), lag=unknown_members).loc[0, "unprocessed"] is None
    # a Kafka group without members is still behind on the DLQ: it reads again when it restarts
    kafka_idle = schemas.conform("lag", [queue(0, 4, kind="kafka", group="reprocess"), queue(0, 6)])
    assert dlq.summary(samples([7]), lag=kafka_idle).loc[0, "unprocessed"] == 4
