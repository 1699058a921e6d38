"""The alert state machine: observations + previous state in, new state + transitions out.

Per (rule, subject)::

    inactive ──value ≥ threshold──► pending ──held for `for_s`──► firing ──value < clear──► resolved
                                      │                            │
                                      └─value < threshold─► cancelled └─critical reached─► escalated

``for_s`` guards pending → firing; ``clear`` (below the threshold) guards firing →
resolved, so a value hovering at the line neither re-pages nor flaps. A firing
alert's severity only goes up (``escalated``) until it resolves. A subject with no
observation at a step keeps its state: unknown is neither better nor worse.

An *episode* (``rule|subject|since``) names one pending-to-resolved run; it is the
same whether computed live or replayed over history, which is what makes the
page's what-if and notification dedupe agree with the collector.

Pure: no store, no clock, no network.
"""
from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from eventscope.analysis.rules import Rule, Selector

TRANSITION_COLUMNS = ["at", "rule", "metric", "severity", "subject", "transition", "value",
                      "threshold", "clear", "since", "fired_at", "episode", "detail"]
OBSERVATION_COLUMNS = ["metric", "subject", "names", "value", "detail"]
_Observation = namedtuple("_Observation", OBSERVATION_COLUMNS)


@dataclass(frozen=True)
class AlertState:
    """Where one (rule, subject) stands."""

    rule: str
    metric: str
    subject: str
    state: str  # pending | firing
    severity: str
    since: pd.Timestamp
    fired_at: pd.Timestamp | None
    value: float | None
    threshold: object
    clear: float | None
    detail: str = ""

    @property
    def episode(self) -> str:
        """Stable ID of this pending-to-resolved run."""
        return f"{self.rule}|{self.subject}|{_iso(self.since)}"


def step(state: dict, observations: pd.DataFrame, rules: list[Rule] | Selector, at: pd.Timestamp
         ) -> tuple[dict, list[dict]]:
    """Apply one sample's ``observations`` (OBSERVATION_COLUMNS) at time ``at``. ``rules``: a
    list, or a :class:`~eventscope.analysis.rules.Selector` that remembers its answers."""
    at = pd.Timestamp(at)
    choose = rules if isinstance(rules, Selector) else Selector(rules)
    new = dict(state)
    transitions: list[dict] = []
    seen: set[tuple[str, str]] = set()
    observed_subjects: set[str] = set()
    # whole columns to Python at once, a missing value as None: per-row access to Arrow-backed
    # cells costs ~1 µs each, and so does asking pandas whether each value is missing
    columns = [observations[c].to_numpy(dtype=object, na_value=None) for c in OBSERVATION_COLUMNS]
    for obs in (_Observation(*row) for row in zip(*columns)):
        observed_subjects.add(obs.subject)
        rule = choose(obs.metric, obs.names)
        if rule is None or rule.silent:
            continue
        key = (rule.name, obs.subject)
        seen.add(key)
        value = None if obs.value is None else float(obs.value)
        detail = "" if obs.detail is None else str(obs.detail)
        current = new.get(key)
        level = rule.level(value, detail)
        if current is None:
            if level is None:
                continue
            current = AlertState(rule.name, rule.metric, obs.subject, "pending", level, at, None,
                                 value, _num(rule.threshold(level)), rule.clear_threshold, detail)
            transitions.append(_row(current, "pending", at))
            new[key] = current
        if current.state == "pending":
            if level is None:
                transitions.append(_row(_updated(current, value=value, detail=detail), "cancelled", at))
                del new[key]
                continue
            current = _updated(current, severity=level, value=value, detail=detail,
                              threshold=_num(rule.threshold(level)))
            if (at - current.since).total_seconds() >= rule.for_s:
                current = _updated(current, state="firing", fired_at=at)
                transitions.append(_row(current, "firing", at))
            new[key] = current
        elif current.state == "firing":
            if rule.cleared(value, detail):
                transitions.append(_row(_updated(current, value=value, detail=detail), "resolved", at))
                del new[key]
                continue
            if level == "critical" and current.severity != "critical":
                current = _updated(current, severity="critical", threshold=_num(rule.threshold("critical")))
                transitions.append(_row(_updated(current, value=value, detail=detail), "escalated", at))
            new[key] = _updated(current, value=value, detail=detail)
    # a rule that no longer applies to an observed subject (removed or overridden) lets go
    for key, current in state.items():
        if key not in seen and key[1] in observed_subjects:
            del new[key]
            if current.state == "firing":
                transitions.append(_row(_updated(current, detail="rule no longer applies"), "resolved", at))
            else:
                transitions.append(_row(current, "cancelled", at))
    return new, transitions


def run(observations: pd.DataFrame, rules: list[Rule], state: dict | None = None
        ) -> tuple[dict, pd.DataFrame]:
    """Step through observations that carry an ``at`` column, oldest first."""
    state = dict(state or {})
    rows: list[dict] = []
    if not observations.empty:
        for at, obs in observations.sort_values("at", kind="stable").groupby("at", sort=True):
            state, transitions = step(state, obs, rules, at)
            rows += transitions
    return state, transitions_frame(rows)


def transitions_frame(rows: list[dict]) -> pd.DataFrame:
    """Transition rows as a frame with TRANSITION_COLUMNS."""
    return pd.DataFrame(rows, columns=TRANSITION_COLUMNS)


def from_history(history: pd.DataFrame) -> dict:
    """The state a stored transition history leaves behind (for a restart or the CLI).

    Each transition row carries the whole state it leaves (``since``, ``fired_at``, value,
    thresholds), so the state is the newest row of each (rule, subject) whose transition
    is not ``resolved`` or ``cancelled``: a restart reads 58,000 rows of six hours into a
    few thousand states without stepping through every row."""
    state: dict = {}
    if history is None or history.empty:
        return state
    newest = history.sort_values("at", kind="stable").drop_duplicates(["rule", "subject"], keep="last")
    newest = newest[~newest["transition"].isin(["resolved", "cancelled"])]
    for r in newest.itertuples(index=False):
        fired = r.fired_at if r.transition in ("firing", "escalated") else None
        state[(r.rule, r.subject)] = AlertState(
            r.rule, r.metric, r.subject, "pending" if r.transition == "pending" else "firing",
            r.severity, pd.Timestamp(r.since),
            None if fired is None or pd.isna(fired) else pd.Timestamp(fired),
            None if pd.isna(r.value) else float(r.value), _threshold(r.threshold),
            None if pd.isna(r.clear) else float(r.clear), "" if pd.isna(r.detail) else str(r.detail))
    return state


def state_frame(state: dict) -> pd.DataFrame:
    """The active alerts as rows (``alerts_active``): what a reader needs instead of replaying
    the whole transition history."""
    rows = [{"rule": a.rule, "metric": a.metric, "subject": a.subject, "state": a.state, "severity": a.severity,
             "since": a.since, "fired_at": a.fired_at, "value": a.value, "threshold": _threshold(a.threshold),
             "clear": a.clear, "detail": a.detail} for a in state.values()]
    return pd.DataFrame(rows, columns=["rule", "metric", "subject", "state", "severity", "since", "fired_at",
                                       "value", "threshold", "clear", "detail"])


def from_state_frame(rows: pd.DataFrame) -> dict:
    """The state :func:`state_frame` wrote."""
    # whole columns to Python at once (per-row access to Arrow-backed cells costs ~1 µs each),
    # missing values found by column too
    def column(name: str, convert) -> list:
        return [None if missing else convert(v)
                for v, missing in zip(rows[name].tolist(), rows[name].isna().tolist())]
    since = [pd.Timestamp(v) for v in rows["since"].tolist()]
    fired, value = column("fired_at", pd.Timestamp), column("value", float)
    threshold, clear = column("threshold", float), column("clear", float)
    detail = ["" if d is None else d for d in column("detail", str)]
    names = [rows[c].tolist() for c in ("rule", "metric", "subject", "state", "severity")]
    state = {}
    for i, (rule, metric, subject, status, severity) in enumerate(zip(*names)):
        state[(rule, subject)] = AlertState(rule, metric, subject, status, severity, since[i], fired[i],
                                            value[i], threshold[i], clear[i], detail[i])
    return state


def _updated(s: AlertState, **changes) -> AlertState:
    """``dataclasses.replace`` for the state machine's hot path: every firing alert gets its
    new value on every step, and ``replace`` (which re-runs ``__init__`` through its field
    checks) cost 0.17 s a step for a big incident's 6,800 alerts; this copies the fields."""
    new = object.__new__(AlertState)
    new.__dict__.update(s.__dict__, **changes)  # frozen blocks attribute writes, not this
    return new


def firing(state: dict) -> list[AlertState]:
    """Firing alerts, critical first, then oldest first."""
    alerts = [s for s in state.values() if s.state == "firing"]
    return sorted(alerts, key=lambda s: (s.severity != "critical", s.since, s.subject))


def _row(s: AlertState, transition: str, at: pd.Timestamp) -> dict:
    return {"at": at, "rule": s.rule, "metric": s.metric, "severity": s.severity, "subject": s.subject,
            "transition": transition, "value": s.value, "threshold": s.threshold,
            "clear": s.clear, "since": s.since, "fired_at": s.fired_at, "episode": s.episode,
            "detail": s.detail}


def _num(value) -> float | None:
    """A numeric threshold; None for a status list (the status is in ``detail``)."""
    return float(value) if isinstance(value, (int, float)) else None


def _threshold(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


@lru_cache(maxsize=4096)
def _iso(ts) -> str:
    """(Remembered: the alerts an incident starts share their ``since``, and a step that ends
    6,000 of them at once names each one's episode.)"""
    return pd.Timestamp(ts).isoformat().replace("+00:00", "Z")


class Stepper:
    """:func:`step`, fed only the subjects whose observations can change a state: a subject
    is stepped when one of its observations differs from the last one seen (value, detail or
    names), when the metrics it is observed by differ from last time, or when it has a
    pending alert (whose ``for_s`` runs on with an unchanged value).

    Anything else cannot change: an unchanged observation of a subject with no alert did
    not start one last time; a firing alert whose value stays put neither resolves nor
    escalates (it was judged on that value already) and keeps its state; the same names
    select the same rules, so no alert lets go either. A step costs what changed, not
    every subject of the cluster nor every alert of an incident.
    """

    def __init__(self, rules: list[Rule], state: dict | None = None):
        self.rules = rules
        self.select = Selector(rules)  # which rule takes a subject, asked once per subject
        self.state = dict(state or {})
        self.last: dict[tuple[str, str], tuple] = {}
        self.metrics_of: dict[str, tuple] = {}  # each subject's metrics when it was last observed

    MAX_REMEMBERED = 400_000  # observations remembered; beyond, all forgotten (subjects come and go)

    def step(self, observations: pd.DataFrame, at: pd.Timestamp) -> list[dict]:
        """Apply one moment's observations; returns its transitions."""
        if observations.empty:
            self.state, transitions = step(self.state, observations, self.select, at)
            return transitions
        # whole columns to Python objects at once: iterating a text column of pandas' Arrow
        # strings goes value by value (16,000 observations: ~80 ms of a big cluster's step)
        def column(name: str):
            return observations[name].to_numpy(dtype=object, na_value=None)
        metrics, subjects = column("metric"), column("subject")
        keys = list(zip(metrics, subjects))
        values = [(_comparable(v), _comparable(d), n) for v, d, n in
                  zip(column("value"), column("detail"), column("names"))]
        if len(self.last) > self.MAX_REMEMBERED:  # the next step is a whole one: exact, once
            self.last.clear()
            self.metrics_of.clear()
        last = self.last
        touched = {s.subject for s in self.state.values() if s.state == "pending"}
        touched.update(k[1] for k, v in zip(keys, values) if last.get(k) != v)
        observed: dict[str, list] = {}
        for metric, subject in keys:
            observed.setdefault(subject, []).append(metric)
        for subject, seen in observed.items():
            seen = tuple(seen)
            if self.metrics_of.get(subject) != seen:
                touched.add(subject)
                self.metrics_of[subject] = seen
        last.update(zip(keys, values))
        wanted = [subject in touched for subject in subjects]
        self.state, transitions = step(self.state, observations[wanted], self.select, at)
        return transitions


def _comparable(value):
    """NaN and None compare equal to themselves here (an unknown value that stays unknown)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value
