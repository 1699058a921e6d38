"""Pure analysis: lag verdicts, time lag, DLQ summaries, traces and alerts."""
import json
import math

import pandas as pd

from eventscope.collectors.kafka.timelag import OffsetClock
from eventscope import schemas
from eventscope.analysis import alerts, dlq, lag, traces
from eventscope.config import AlertsConfig
from tests import alert_reference

T0 = pd.Timestamp("2026-11-28T10:00:00Z")


def lag_frame(series, members=1, group="g"):
    """series: list of (committed, end) per sample, 10 s apart."""
    rows = [{"sampled_at": T0 + pd.Timedelta(seconds=10 * i), "source": "kafka", "broker": "kafka",
             "group": group, "topic": "t", "partition": 0, "committed": c, "end": e,
             "lag": None if c is None else max(0, e - c), "lag_seconds": 5.0 * i, "members": members}
            for i, (c, e) in enumerate(series)]
    return schemas.conform("lag", rows)


def verdict(series, members=1):
    return lag.latest_lag(lag_frame(series, members))["status"].iloc[0]


def test_lag_verdicts():
    assert verdict([(10, 10), (20, 20), (30, 30)]) == "OK"
    assert verdict([(10, 15), (20, 25), (30, 35)]) == "OK"
    assert verdict([(10, 15), (12, 30), (14, 60)]) == "WARN"
    assert verdict([(10, 15), (10, 30), (10, 60)]) == "STALL"
    assert verdict([(10, 15), (10, 30), (10, 60)], members=0) == "STOP"
    assert verdict([(30, 40), (10, 40), (12, 40)]) == "REWIND"
    assert verdict([(None, 15), (None, 30)]) == "UNKNOWN"
    assert verdict([(10, 15)]) == "UNKNOWN"  # one sample: behind, direction unknown
    assert verdict([(10, 10)]) == "OK"
    assert verdict([(10, 15), (12, 30), (14, 25), (16, 40)]) == "OK"  # lag dipped once: not rising
    assert verdict([(10, 15), (12, 30)]) == "OK"  # two samples are too few to call a trend


def test_group_summary_takes_worst_status_and_sums_lag():
    frame = pd.concat([lag_frame([(10, 15), (10, 30)]),
                       lag_frame([(10, 10), (20, 20)]).assign(partition=1)])
    summary = lag.group_summary(lag.latest_lag(frame))
    assert summary.loc[0, "status"] == "STALL" and summary.loc[0, "lag"] == 20
    assert summary.loc[0, "partitions"] == 2


def test_offset_clock_interpolates_and_says_unknown():
    clock = OffsetClock()
    assert math.isnan(clock.lag_seconds(5, 10, now=100.0))
    for end, at in ((0, 0.0), (100, 10.0), (100, 20.0), (200, 30.0)):
        clock.record(end, at)
    assert len(clock.points) == 3  # the flat stretch kept its first point only
    assert clock.lag_seconds(200, 200, now=40.0) == 0.0
    assert clock.lag_seconds(50, 200, now=40.0) == 35.0   # offset 50 was the end at t=5
    assert clock.lag_seconds(150, 200, now=40.0) == 20.0  # between 10 s (100) and 30 s (200)
    assert math.isnan(clock.lag_seconds(None, 200, now=40.0))
    bounded = OffsetClock(max_points=3)
    for i in range(10):
        bounded.record(i * 10, float(i))
    assert len(bounded.points) == 3
    assert bounded.lag_seconds(0, 90, now=9.0) == 9.0  # extrapolated before the oldest point


def test_dlq_summary_growth_age_and_reasons():
    rows = [{"sampled_at": T0 + pd.Timedelta(minutes=i), "source": "kafka", "broker": "kafka",
             "dlq": "payments.DLT", "source_topic": "payments", "depth": 10 * i,
             "oldest_at": T0 - pd.Timedelta(seconds=30),
             "reasons": json.dumps({"card declined": 7, "timeout": 3})} for i in range(4)]
    out = dlq.summary(schemas.conform("dlq", rows), now=T0 + pd.Timedelta(minutes=3))
    row = dlq.to_rows(out)[0]
    assert row["depth"] == 30 and row["growth_per_min"] == 10.0
    assert row["oldest_age_seconds"] == 210.0
    assert row["reasons"][0] == {"reason": "card declined", "count": 7}


def events_frame():
    def ev(sec, topic, etype, service, offset, dead=False, cid="c1"):
        return {"observed_at": T0, "source": "kafka", "broker": "kafka", "topic": topic, "partition": 0,
                "offset": str(offset), "at": T0 + pd.Timedelta(seconds=sec), "event_type": etype,
                "event_id": f"evt_{cid}_{offset}", "service": service, "correlation_id": cid,
                "trace_id": ("a" if cid == "c1" else "b") * 32, "dead_letter": dead}
    return schemas.conform("events", [
        ev(0, "orders", "OrderPlaced", "order-service", 1),
        ev(0.25, "payments", "PaymentCharged", "payment-service", 1),
        ev(0.5, "inventory", "InventoryReserved", "inventory-service", 1),
        ev(0.75, "shipments", "ShipmentCreated", "shipping-service", 1),
        ev(1, "orders", "OrderPlaced", "order-service", 2, cid="c2"),
        ev(2, "orders.DLT", "OrderPlaced", "order-service", 0, dead=True, cid="c2"),
    ])


def test_trace_by_any_id_with_hops_and_outcome():
    events = events_frame()
    now = T0 + pd.Timedelta(minutes=5)
    by_cid = traces.find(events, "c1", now=now)
    by_trace = traces.find(events, "a" * 32, now=now)
    by_event = traces.find(events, "evt_c1_1", now=now)
    assert by_cid == by_trace
    assert by_event["correlation_id"] == "c1"
    assert [e["event_type"] for e in by_cid["events"]] == \
        ["OrderPlaced", "PaymentCharged", "InventoryReserved", "ShipmentCreated"]
    assert by_cid["outcome"] == "completed"
    assert [(h["from_topic"], h["to_topic"], h["latency_ms"]) for h in by_cid["hops"]] == \
        [("orders", "payments", 250.0), ("payments", "inventory", 250.0), ("inventory", "shipments", 250.0)]
    assert traces.find(events, "c2", now=now)["outcome"] == "dead_lettered"
    assert traces.find(events, "c1", now=T0 + pd.Timedelta(seconds=5))["outcome"] == "in_flight"
    assert traces.find(events, "nope") is None


def test_trace_in_flight_when_a_group_has_not_consumed_it():
    events = events_frame()
    lagging = lag_frame([(1, 2)]).assign(topic="shipments", sampled_at=T0 + pd.Timedelta(minutes=5))
    found = traces.find(events, "c1", lag=lagging, now=T0 + pd.Timedelta(minutes=5))
    assert found["outcome"] == "in_flight"


def firing_now(lag_rows, dlq_rows, cfg):
    """The alerts firing after replaying ``cfg``'s rules over the raw frames, with current values."""
    state, _ = alert_reference.replay(lag_rows, dlq_rows, cfg.all_rules(), stall_after_s=cfg.stall_after_s)
    return alerts.firing_frame(state, alert_reference.observe(lag_rows, dlq_rows, stall_after_s=cfg.stall_after_s))


def test_alerts_fire_after_for_with_since_and_most_severe_wins():
    frame = lag_frame([(10, 10), (10, 20), (10, 30), (10, 40)])
    frame["lag_seconds"] = [0.0, 100.0, 400.0, 500.0]
    firing = firing_now(frame, schemas.empty("dlq"), AlertsConfig(for_s=10))
    lag_alerts = firing[firing["rule"] == "lag_seconds"]
    assert len(lag_alerts) == 1 and lag_alerts.iloc[0]["severity"] == "critical"
    # the condition began at the first sample over the warning line
    assert lag_alerts.iloc[0]["since"] == (T0 + pd.Timedelta(seconds=10)).isoformat().replace("+00:00", "Z")
    assert lag_alerts.iloc[0]["value"] == 500.0
    assert "group_stall" in set(firing["rule"])
    assert firing_now(frame, schemas.empty("dlq"), AlertsConfig(for_s=60)).empty  # not held long enough
    calm = firing_now(lag_frame([(10, 10), (20, 20)]).assign(lag_seconds=0.0),
                           schemas.empty("dlq"), AlertsConfig(for_s=0))
    assert calm.empty


def test_consumer_that_stops_mid_window_is_stalled_after_a_minute():
    series = [(10 * i, 10 * i) for i in range(10)] + [(90, 90 + 10 * i) for i in range(1, 9)]
    assert verdict(series) == "STALL"  # stopped 80 s ago, though it moved earlier in the window
    assert verdict(series[:13]) == "WARN"  # stopped only 30 s ago: behind, not yet stalled


def test_dlq_reasons_stay_with_their_queue_whatever_the_row_order():
    rows = [{"sampled_at": T0 + pd.Timedelta(seconds=s), "source": "kafka", "broker": "kafka", "dlq": name,
             "depth": depth, "reasons": json.dumps(reasons)}
            for s, name, depth, reasons in ((0, "z.DLT", 5, {"boom": 5}), (1, "a.DLT", 0, {}),
                                            (2, "m.DLT", 2, {"late": 2}))]
    out = dlq.summary(schemas.conform("dlq", rows)).set_index("dlq")
    assert out.loc["z.DLT", "reasons"] == [{"reason": "boom", "count": 5}]
    assert out.loc["a.DLT", "reasons"] == []
    assert out.loc["m.DLT", "reasons"] == [{"reason": "late", "count": 2}]


def test_dlq_reasons_are_plain_lists():
    rows = [{"sampled_at": T0, "source": "kafka", "broker": "kafka", "dlq": "a.DLT", "depth": 0, "reasons": "{}"}]
    out = dlq.summary(schemas.conform("dlq", rows))
    assert out["reasons"].dtype == object and out["reasons"].iloc[0] == []
