"""Alerts at a big cluster's size give the same answers as the plain state machine."""
from __future__ import annotations

import random

import pandas as pd

from eventscope.alerts_view import episodes
from eventscope.analysis import alert_state, alerts
from eventscope.analysis.rules import parse_rule
from eventscope.config import AlertsConfig
from eventscope.query import Queries
from eventscope.recorder import Recorder
from eventscope.store import Store
from tests import alert_reference
from test_app import synthetic_frames

T0 = pd.Timestamp("2026-11-28T10:00:00Z")
RULES = [parse_rule({"name": "lag", "metric": "lag", "warning": 50, "critical": 200, "for_s": 20}, "r", 60, 0.8),
         parse_rule({"name": "stall", "metric": "lag_status", "critical": ["STALL", "STOP"], "for_s": 10},
                    "r", 60, 0.8)]


def observations(step: int, rng: random.Random, subjects: int) -> pd.DataFrame:
    rows = []
    for s in range(subjects):
        if rng.random() < 0.1:
            continue  # not observed this time: keeps its state
        subject = f"kafka:g{s}/t"
        names = (subject, f"g{s}", "t", "kafka")
        value = rng.choice([None, 0.0, 40.0, 60.0, 250.0, 250.0, 250.0])
        rows.append({"metric": "lag", "subject": subject, "names": names, "value": value, "detail": ""})
        rows.append({"metric": "lag_status", "subject": subject, "names": names, "value": value,
                     "detail": rng.choice(["OK", "OK", "STALL", "STOP", "UNKNOWN", ""])})
    return pd.DataFrame(rows, columns=alert_state.OBSERVATION_COLUMNS)


def test_stepper_makes_exactly_the_transitions_of_step():
    """Feeding only what changed (and active subjects) is the same as feeding everything."""
    for seed in range(30):
        rng = random.Random(seed)
        sequence = [observations(i, rng, subjects=12) for i in range(25)]
        # values repeat often, so most observations are unchanged from one step to the next
        for i in range(1, len(sequence)):
            if rng.random() < 0.5:
                sequence[i] = sequence[i - 1]
        state, plain = {}, []
        stepper, fed = alert_state.Stepper(RULES), []
        for i, obs in enumerate(sequence):
            at = T0 + pd.Timedelta(seconds=7 * i)
            state, transitions = alert_state.step(state, obs, RULES, at)
            plain += transitions
            fed += stepper.step(obs, at)
        assert fed == plain, f"seed {seed}"
        assert stepper.state == state


def test_stepper_equals_step_when_names_metrics_and_rules_change_under_an_incident():
    """The stepper skips subjects whose observations are all as last seen, firing alerts
    included. Here subjects move to a topic another rule covers (same values, new names),
    lose or regain one of their metrics, stay put while pending and while firing, and go
    unobserved; every step must still equal stepping everything."""
    rules = RULES + [
        parse_rule({"name": "lag_u", "metric": "lag", "match": ["u"], "warning": 30, "for_s": 14}, "r", 60, 0.8),
        parse_rule({"name": "secs", "metric": "lag_seconds", "warning": 10, "critical": 100, "for_s": 0,
                    "clear": 5}, "r", 60, 0.8)]
    kinds = {"lag": [None, 0.0, 35.0, 60.0, 250.0], "lag_status": [0.0], "lag_seconds": [None, 3.0, 8.0, 50.0, 500.0]}
    skipped = 0
    for seed in range(40):
        rng = random.Random(seed)
        now = {}  # subject -> {metric: (value, detail, topic)}
        state, plain = {}, []
        stepper, fed = alert_state.Stepper(rules), []
        if seed % 2:
            stepper.MAX_REMEMBERED = 20  # forgets everything now and then: the next step is whole
        for i in range(30):
            rows = []
            for s in range(10):
                subject = f"kafka:g{s}"
                old = now.get(subject, {})
                cur = {}
                for metric, choices in kinds.items():
                    if metric in old and rng.random() < 0.75:
                        cur[metric] = old[metric]  # unchanged: what the stepper skips
                    else:
                        detail = rng.choice(["OK", "STALL", "STOP", ""]) if metric == "lag_status" else ""
                        cur[metric] = (rng.choice(choices), detail, old.get(metric, (0, 0, "t"))[2])
                if rng.random() < 0.1:  # the subject moves to the topic rule lag_u covers, values unchanged
                    topic = "u" if cur["lag"][2] == "t" else "t"
                    cur = {m: (v, d, topic) for m, (v, d, _) in cur.items()}
                if rng.random() < 0.1:  # one metric missing this time
                    cur.pop(rng.choice(list(cur)))
                now[subject] = {**old, **cur}
                if rng.random() < 0.1:
                    continue  # not observed at all
                for metric, (value, detail, topic) in cur.items():
                    rows.append({"metric": metric, "subject": subject, "names": (subject, f"g{s}", topic, "kafka"),
                                 "value": value, "detail": detail})
            obs = pd.DataFrame(rows, columns=alert_state.OBSERVATION_COLUMNS)
            at = T0 + pd.Timedelta(seconds=7 * i)
            before = dict(stepper.state)
            state, transitions = alert_state.step(state, obs, rules, at)
            plain += transitions
            fed += stepper.step(obs, at)
            assert fed == plain, f"seed {seed}, step {i}"
            assert stepper.state == state, f"seed {seed}, step {i}"
            assert len(stepper.last) <= stepper.MAX_REMEMBERED + len(obs)
            skipped += sum(1 for k, v in stepper.state.items() if before.get(k) is v)
    assert skipped > 1000  # firing alerts were left alone, not re-stepped


def test_episodes_from_the_specification():
    def row(at_s, transition, severity="warning", episode="e1", since_s=0, value=1.0):
        return {"at": T0 + pd.Timedelta(seconds=at_s), "rule": "lag", "metric": "lag", "severity": severity,
                "subject": "kafka:g/t", "transition": transition, "value": value, "threshold": 50.0,
                "clear": 40.0, "since": T0 + pd.Timedelta(seconds=since_s), "fired_at": None,
                "episode": episode, "detail": ""}
    history = alert_state.transitions_frame([
        row(0, "pending"), row(20, "firing"), row(40, "escalated", "critical"), row(90, "resolved", "critical"),
        row(100, "pending", episode="e2", since_s=100), row(105, "cancelled", episode="e2", since_s=100),
        row(200, "pending", episode="e3", since_s=200),
        row(300, "pending", "critical", episode="e4", since_s=300), row(330, "firing", "critical", episode="e4",
                                                                      since_s=300)])
    eps = episodes(history).set_index("episode")
    assert list(eps.index) == ["e4", "e3", "e2", "e1"]  # newest first
    e1 = eps.loc["e1"]
    assert (e1["state"], e1["severity"]) == ("resolved", "critical")
    assert e1["fired_at"] == T0 + pd.Timedelta(seconds=20) and e1["ended_at"] == T0 + pd.Timedelta(seconds=90)
    assert (eps.loc["e2", "state"], eps.loc["e2", "ended_at"]) == ("cancelled", T0 + pd.Timedelta(seconds=105))
    assert eps.loc["e3", "state"] == "pending" and pd.isna(eps.loc["e3", "fired_at"])
    assert pd.isna(eps.loc["e3", "ended_at"])
    assert (eps.loc["e4", "state"], eps.loc["e4", "severity"]) == ("firing", "critical")
    assert episodes(history.iloc[:0]).empty


def test_observations_from_snapshots_equal_those_from_raw_rows(tmp_path):
    """What the evaluator reads (the recorder's snapshots) judges every subject as the raw
    frames do."""
    frames = synthetic_frames()
    store = Store(tmp_path)
    Recorder(store).record(frames)
    now = frames["lag"]["sampled_at"].max()
    from_raw = alert_reference.observe(frames["lag"], frames["dlq"], None, frames["health"], at=now)
    queries = Queries(store, engine="pyarrow")
    from_snapshots = queries.observations(now)
    key = ["metric", "subject"]
    a = from_raw[key + ["value", "detail"]].sort_values(key).reset_index(drop=True)
    b = from_snapshots[key + ["value", "detail"]].sort_values(key).reset_index(drop=True)
    b = b[b["metric"] != "stuck_entries"].reset_index(drop=True)  # no Redis group: no stuck rows there
    a = a[a["metric"] != "stuck_entries"].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert set(a["detail"][a["metric"] == "lag_status"]) >= {"OK", "STALL"}
    config = AlertsConfig()
    assert not alerts.firing_frame(*alert_reference.replay(frames["lag"], frames["dlq"], config.all_rules(),
                                                  health=frames["health"])[:1], from_raw).empty
