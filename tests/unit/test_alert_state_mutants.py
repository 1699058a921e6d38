"""The alert state machine (eventscope.analysis.alert_state) by small examples written from
its docstrings: a rule that stops applying, the firing order, the active-alerts frame and
its round trip, stepping over timed observations, and the Stepper that skips what did not
change."""
from __future__ import annotations

import pandas as pd
import pytest

from eventscope.analysis import alert_state
from eventscope.analysis.rules import Rule

T0 = pd.Timestamp("2026-11-28T10:00:00Z")
LAG = Rule(name="lag_seconds", metric="lag_seconds", warning=60.0, critical=300.0, for_s=0.0, clear=40.0)
SLOW = Rule(name="slow", metric="lag_seconds", warning=60.0, for_s=30.0)


def obs(*items, metric="lag_seconds"):
    """items: (subject, value[, detail])."""
    rows = [{"metric": metric, "subject": s, "names": (s, "g", "t"), "value": v,
             "detail": rest[0] if rest else ""} for s, v, *rest in items]
    return pd.DataFrame(rows, columns=alert_state.OBSERVATION_COLUMNS)


def at(seconds):
    return T0 + pd.Timedelta(seconds=seconds)


def test_a_firing_alert_whose_rule_is_gone_resolves_and_a_pending_one_is_cancelled():
    state, out = alert_state.step({}, obs(("a", 100.0)), [LAG], at(0))
    assert [t["transition"] for t in out] == ["pending", "firing"]
    state, _ = alert_state.step(state, obs(("b", 100.0)), [SLOW], at(0))
    assert {k: s.state for k, s in state.items()} == {("lag_seconds", "a"): "firing", ("slow", "b"): "pending"}
    # the rules are edited: neither applies any more, both subjects still observed
    quiet = Rule(name="other", metric="dlq_depth", warning=1.0)
    state, out = alert_state.step(state, obs(("a", 100.0), ("b", 100.0)), [quiet], at(10))
    assert state == {}
    assert [(t["rule"], t["subject"], t["transition"], t["detail"]) for t in out] == [
        ("lag_seconds", "a", "resolved", "rule no longer applies"), ("slow", "b", "cancelled", "")]
    assert all(t["at"] == at(10) for t in out)


def test_a_subject_not_observed_keeps_its_alert():
    state, _ = alert_state.step({}, obs(("a", 100.0)), [LAG], at(0))
    state, out = alert_state.step(state, obs(("other", 1.0)), [LAG], at(10))
    assert out == [] and state[("lag_seconds", "a")].state == "firing"
    state, out = alert_state.step(state, obs(), [LAG], at(20))
    assert out == [] and list(state) == [("lag_seconds", "a")]


def test_transition_rows_carry_the_whole_state():
    state, out = alert_state.step({}, obs(("kafka:g/t", 100.0, "why")), [LAG], at(0))
    pending, firing = out
    assert pending == {"at": at(0), "rule": "lag_seconds", "metric": "lag_seconds", "severity": "warning",
                       "subject": "kafka:g/t", "transition": "pending", "value": 100.0, "threshold": 60.0,
                       "clear": 40.0, "since": at(0), "fired_at": None,
                       "episode": "lag_seconds|kafka:g/t|2026-11-28T10:00:00Z", "detail": "why"}
    assert firing["transition"] == "firing" and firing["fired_at"] == at(0)
    frame = alert_state.transitions_frame(out)
    assert list(frame.columns) == alert_state.TRANSITION_COLUMNS and len(frame) == 2
    assert list(alert_state.transitions_frame([]).columns) == alert_state.TRANSITION_COLUMNS


def test_an_escalation_carries_the_critical_threshold_and_a_status_rule_none():
    state, _ = alert_state.step({}, obs(("a", 100.0)), [LAG], at(0))
    state, out = alert_state.step(state, obs(("a", 400.0)), [LAG], at(10))
    assert [(t["transition"], t["severity"], t["threshold"], t["value"]) for t in out] == [
        ("escalated", "critical", 300.0, 400.0)]
    stall = Rule(name="stall", metric="lag_status", critical=("STALL",), for_s=0.0)
    _, out = alert_state.step({}, obs(("a", 5.0, "STALL"), metric="lag_status"), [stall], at(0))
    assert [(t["transition"], t["threshold"], t["detail"]) for t in out] == [
        ("pending", None, "STALL"), ("firing", None, "STALL")]


def test_firing_lists_critical_first_then_the_oldest_then_by_subject():
    state = {}
    for second, subject, value in ((0, "w-old", 100.0), (10, "c-new", 400.0), (5, "c-old", 400.0),
                                   (10, "c-b", 400.0), (20, "w-new", 100.0)):
        state, _ = alert_state.step(state, obs((subject, value)), [LAG], at(second))
    state, _ = alert_state.step(state, obs(("pending-one", 100.0)), [SLOW], at(30))
    assert [a.subject for a in alert_state.firing(state)] == ["c-old", "c-b", "c-new", "w-old", "w-new"]


def test_the_active_alerts_frame_round_trips():
    state = {}
    state, _ = alert_state.step(state, obs(("a", 100.0, "d")), [LAG], at(0))
    state, _ = alert_state.step(state, obs(("b", float("nan"))), [LAG], at(1))  # unknown: nothing
    state, _ = alert_state.step(state, obs(("c", 70.0)), [SLOW], at(2))
    stall = Rule(name="stall", metric="lag_status", critical=("STALL",), for_s=0.0)
    state, _ = alert_state.step(state, obs(("s", None, "STALL"), metric="lag_status"), [stall], at(3))
    frame = alert_state.state_frame(state)
    assert list(frame.columns) == ["rule", "metric", "subject", "state", "severity", "since", "fired_at",
                                   "value", "threshold", "clear", "detail"]
    assert sorted(frame["subject"]) == ["a", "c", "s"]
    back = alert_state.from_state_frame(frame)
    assert back == state
    assert back[("slow", "c")].fired_at is None and back[("slow", "c")].clear == 60.0  # clear: the threshold
    assert back[("stall", "s")].value is None and back[("stall", "s")].threshold is None
    assert alert_state.from_state_frame(alert_state.state_frame({})) == {}


def test_history_restores_pending_firing_and_escalated_with_their_numbers():
    state, rows = {}, []
    for second, items, rules in ((0, [("a", 100.0)], [LAG]), (0, [("b", 70.0)], [SLOW]),
                                 (5, [("a", 400.0)], [LAG]), (6, [("c", 100.0)], [LAG]),
                                 (7, [("c", 10.0)], [LAG])):
        state, out = alert_state.step(state, obs(*items), rules, at(second))
        rows += out
    restored = alert_state.from_history(alert_state.transitions_frame(rows))
    assert set(restored) == {("lag_seconds", "a"), ("slow", "b")}
    a, b = restored[("lag_seconds", "a")], restored[("slow", "b")]
    assert (a.state, a.severity, a.since, a.fired_at, a.value, a.threshold, a.clear) == (
        "firing", "critical", at(0), at(0), 400.0, 300.0, 40.0)
    assert (b.state, b.fired_at, b.value, b.threshold, b.clear, b.detail) == (
        "pending", None, 70.0, 60.0, 60.0, "")
    assert alert_state.from_history(None) == {} and alert_state.from_history(alert_state.transitions_frame([])) == {}


def test_run_steps_through_timed_observations_oldest_first():
    frames = [obs(("a", v)).assign(at=at(s)) for s, v in ((20, 10.0), (0, 100.0), (10, 100.0), (30, 100.0))]
    state, history = alert_state.run(pd.concat(frames, ignore_index=True), [SLOW])
    assert [(t.transition, (t.at - T0).total_seconds()) for t in history.itertuples()] == [
        ("pending", 0.0), ("cancelled", 20.0), ("pending", 30.0)]
    assert state[("slow", "a")].since == at(30)
    state, history = alert_state.run(obs().assign(at=pd.Series(dtype="datetime64[ns, UTC]")), [SLOW], state)
    assert history.empty and list(state) == [("slow", "a")]


def test_the_stepper_gives_what_stepping_everything_gives():
    """Stepper feeds step() only what changed and what has an active alert; the transitions
    must be those of stepping every observation."""
    series = {"a": [10.0, 100.0, 100.0, 100.0, 100.0, 30.0, 30.0],
              "b": [float("nan"), float("nan"), 70.0, 70.0, 70.0, 70.0, 10.0],
              "c": [5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]}
    rules = [SLOW, Rule(name="lag_seconds", metric="lag_seconds", warning=60.0, match=("b",), for_s=10.0,
                        clear=20.0)]
    stepper, state, expected, got = alert_state.Stepper(rules), {}, [], []
    for i in range(7):
        frame = obs(*[(s, v[i]) for s, v in series.items()])
        state, out = alert_state.step(state, frame, rules, at(10 * i))
        expected += out
        got += stepper.step(frame, at(10 * i))
    assert got == expected and stepper.state == state
    # a: pending at 10 s, firing 30 s later, below clear (60) at 50 s; b: pending at 20 s,
    # firing after its 10 s, below its clear (20) at 60 s; c: never
    assert [(t["subject"], t["transition"], (t["at"] - T0).total_seconds()) for t in got] == [
        ("a", "pending", 10.0), ("b", "pending", 20.0), ("b", "firing", 30.0), ("a", "firing", 40.0),
        ("a", "resolved", 50.0), ("b", "resolved", 60.0)]


def test_the_stepper_keeps_stepping_a_subject_whose_value_stays_put_while_pending():
    stepper = alert_state.Stepper([SLOW])
    seen = []
    for s in (0, 10, 20, 30, 40):  # the same value every time: pending at 0, firing at 30
        seen += [(t["transition"], (t["at"] - T0).total_seconds()) for t in stepper.step(obs(("a", 70.0)), at(s))]
    assert seen == [("pending", 0.0), ("firing", 30.0)]
    # an empty step changes nothing
    assert stepper.step(obs(), at(50)) == [] and stepper.state[("slow", "a")].state == "firing"


def test_an_unknown_value_that_stays_unknown_is_unchanged():
    assert alert_state._comparable(float("nan")) is None and alert_state._comparable(None) is None
    assert alert_state._comparable(3.0) == 3.0 and alert_state._comparable("OK") == "OK"


def test_observations_of_one_moment_are_stepped_in_the_order_they_came():
    """``run`` sorts by time only: rows of the same moment keep their order (a stable sort,
    which matters past the 16 rows a quicksort handles by insertion)."""
    subjects = [f"s{i:02d}" for i in range(40)][::-1]
    frame = obs(*[(s, 100.0) for s in subjects]).assign(at=at(0))
    _, history = alert_state.run(frame, [LAG])
    assert list(history["subject"]) == [s for s in subjects for _ in ("pending", "firing")]
    assert list(history["transition"]) == ["pending", "firing"] * 40


def test_history_of_one_moment_restores_the_last_transition_written():
    """A rule with no ``for_s`` goes pending and firing at the same moment: the firing row,
    written second, is the state, for every subject (40 of them, beyond an insertion sort)."""
    state, rows = alert_state.step({}, obs(*[(f"s{i:02d}", 100.0) for i in range(40)]), [LAG], at(0))
    restored = alert_state.from_history(alert_state.transitions_frame(rows))
    assert restored == state
    assert {s.state for s in restored.values()} == {"firing"}
    assert {s.fired_at for s in restored.values()} == {at(0)}


def test_history_restores_metric_and_detail_and_leaves_unknowns_empty():
    status = Rule(name="stall", metric="lag_status", warning=("STALL",), for_s=60.0)
    state, rows = alert_state.step({}, obs(("g", None, "STALL"), metric="lag_status"), [status], at(0))
    restored = alert_state.from_history(alert_state.transitions_frame(rows))
    s = restored[("stall", "g")]
    assert (s.metric, s.detail, s.state) == ("lag_status", "STALL", "pending")
    assert s.value is None and s.fired_at is None and s.threshold is None and s.clear is None
    assert restored == state
    # a transition row whose detail and value were lost (an older store) reads as empty, not "nan"
    frame = alert_state.transitions_frame(rows).assign(detail=None, value=float("nan"))
    s = alert_state.from_history(frame)[("stall", "g")]
    assert s.detail == "" and s.value is None


def test_the_active_alerts_frame_of_no_alerts_has_its_columns_and_a_lost_detail_reads_empty():
    assert list(alert_state.state_frame({}).columns) == [
        "rule", "metric", "subject", "state", "severity", "since", "fired_at", "value", "threshold", "clear",
        "detail"]
    state, _ = alert_state.step({}, obs(("a", 100.0, "d")), [LAG], at(0))
    frame = alert_state.state_frame(state).assign(detail=None)
    assert alert_state.from_state_frame(frame)[("lag_seconds", "a")].detail == ""


def test_the_stepper_feeds_step_only_changed_values_and_subjects_with_an_alert(monkeypatch):
    fed = []
    real = alert_state.step

    def counting(state, observations, rules, when):
        fed.append(sorted(observations["subject"]))
        return real(state, observations, rules, when)

    monkeypatch.setattr(alert_state, "step", counting)
    stepper = alert_state.Stepper([SLOW])
    stepper.step(obs(("a", 70.0), ("b", 5.0), ("c", 5.0)), at(0))  # first sight: all three
    stepper.step(obs(("a", 70.0), ("b", 5.0), ("c", 6.0)), at(10))  # a has an alert, c changed
    stepper.step(obs(("a", 70.0), ("b", 5.0), ("c", 6.0)), at(20))  # only a
    assert fed == [["a", "b", "c"], ["a", "c"], ["a"]]


def test_every_transition_and_state_carries_the_value_and_detail_of_its_own_step():
    rows = []

    def step(state, items, rules, second):
        state, out = alert_state.step(state, obs(*items), rules, at(second))
        rows.extend((t["subject"], t["transition"], t["value"], t["detail"]) for t in out)
        return state

    s = step({}, [("a", 100.0, "d1")], [LAG], 0)
    s = step(s, [("a", 400.0, "d2")], [LAG], 10)
    a = s[("lag_seconds", "a")]
    assert (a.severity, a.threshold, a.value, a.detail) == ("critical", 300.0, 400.0, "d2")
    s = step(s, [("a", 350.0, "d3")], [LAG], 20)  # firing, no transition: the state moves on
    assert (s[("lag_seconds", "a")].value, s[("lag_seconds", "a")].detail) == (350.0, "d3")
    s = step(s, [("a", 10.0, "d4")], [LAG], 30)
    assert rows == [("a", "pending", 100.0, "d1"), ("a", "firing", 100.0, "d1"),
                    ("a", "escalated", 400.0, "d2"), ("a", "resolved", 10.0, "d4")]
    assert s == {}

    rows.clear()
    s = step({}, [("b", 70.0, "p1")], [SLOW], 0)
    s = step(s, [("b", 80.0, "p2")], [SLOW], 10)  # still pending: value and detail follow
    b = s[("slow", "b")]
    assert (b.state, b.value, b.detail, b.severity, b.threshold) == ("pending", 80.0, "p2", "warning", 60.0)
    s = step(s, [("b", 10.0, "p3")], [SLOW], 20)
    assert rows == [("b", "pending", 70.0, "p1"), ("b", "cancelled", 10.0, "p3")]


def test_a_pending_alert_takes_the_severity_and_threshold_of_its_newest_level():
    slow_critical = Rule(name="slow", metric="lag_seconds", warning=60.0, critical=300.0, for_s=60.0)
    state, _ = alert_state.step({}, obs(("a", 100.0)), [slow_critical], at(0))
    assert (state[("slow", "a")].severity, state[("slow", "a")].threshold) == ("warning", 60.0)
    state, out = alert_state.step(state, obs(("a", 400.0)), [slow_critical], at(10))
    assert out == []
    assert (state[("slow", "a")].severity, state[("slow", "a")].threshold) == ("critical", 300.0)
    state, out = alert_state.step(state, obs(("a", 100.0)), [slow_critical], at(60))
    assert [(t["transition"], t["severity"], t["threshold"]) for t in out] == [("firing", "warning", 60.0)]


def test_an_observation_detail_that_is_missing_reads_empty_and_any_other_reads_as_text():
    details = {}
    for subject, detail in (("none", None), ("nan", float("nan")), ("text", "why"), ("number", 5)):
        _, out = alert_state.step({}, obs((subject, 100.0, detail)), [LAG], at(0))
        details[subject] = {t["detail"] for t in out}
    assert details == {"none": {""}, "nan": {""}, "text": {"why"}, "number": {"5"}}


def test_an_updated_state_equals_dataclasses_replace_and_leaves_the_old_one_alone():
    import dataclasses

    from eventscope.analysis.alert_state import AlertState, _updated

    at = pd.Timestamp("2026-01-01T12:00:00Z")
    old = AlertState("lag", "lag", "kafka:g/t", "firing", "warning", at, at, 5.0, 3.0, 1.0, "d")
    new = _updated(old, value=9.0, detail="e")
    assert new == dataclasses.replace(old, value=9.0, detail="e") and type(new) is AlertState
    assert (old.value, old.detail) == (5.0, "d") and new.episode == old.episode
    assert hash(new) == hash(dataclasses.replace(old, value=9.0, detail="e"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        new.value = 1.0  # still frozen
