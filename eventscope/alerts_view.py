"""Alerts as the CLI, the exporter and the pages read them from a store.

The collector's evaluation (``alerts`` frame) is the truth. A store nobody evaluated
(an old store, or one written by hand) falls back to replaying the rules over the
per-minute rollups of its last 15 minutes, with the same state machine.
"""
from __future__ import annotations

import pandas as pd

from eventscope.alerting import evaluated_recently
from eventscope.analysis import alert_state, alerts
from eventscope.config import NAME, RESERVED_NAMES
from eventscope.formatting import duration, number
from eventscope.query import Queries

EPISODE_COLUMNS = ["rule", "metric", "subject", "severity", "state", "since", "fired_at", "ended_at",
                   "value", "threshold", "detail", "episode"]


def current_observations(store, alerts_cfg, now: pd.Timestamp | None = None,
                         queries: Queries | None = None) -> pd.DataFrame:
    """Every (metric, subject) value now."""
    now = now or pd.Timestamp.now(tz="UTC")
    return (queries or Queries(store)).observations(now)


FALLBACK_WINDOW_S = 900.0  # what a store nobody evaluated is judged over


def evaluated(store) -> bool:
    """True when the stored ``alerts`` frame is the truth (a collector evaluates this store)."""
    return store.newest_time("alerts") is not None or evaluated_recently(store)


def fallback(store, alerts_cfg, now: pd.Timestamp | None = None,
             queries: Queries | None = None) -> tuple[dict, pd.DataFrame]:
    """For a store nobody evaluated: the rules replayed over its last 15 minutes, per minute."""
    now = now or pd.Timestamp.now(tz="UTC")
    return (queries or Queries(store)).replay_rules(
        alerts_cfg.all_rules(), now - pd.Timedelta(seconds=FALLBACK_WINDOW_S), repr(alerts_cfg))


def current_state(store, alerts_cfg, now: pd.Timestamp | None = None) -> dict:
    """The alert state: what the collector's evaluation left (``alerts_active``, else its
    transitions), else :func:`fallback`."""
    if evaluated(store):
        return stored_state(store)
    return fallback(store, alerts_cfg, now)[0]


def stored_state(store) -> dict:
    """The evaluation's state: its snapshot, or (a store written before there was one) the
    state its transition history leaves."""
    if store.version("alerts_active") != "empty":
        return alert_state.from_state_frame(store.get("alerts_active"))
    return alert_state.from_history(store.read("alerts"))


def firing_now(store, alerts_cfg) -> pd.DataFrame:
    """Firing alerts with their current values (``alerts.FIRING_COLUMNS``)."""
    return alerts.firing_frame(current_state(store, alerts_cfg), current_observations(store, alerts_cfg))


def what_if(store, rules: list, alerts_cfg, window_s: float = 3600.0, now: pd.Timestamp | None = None,
            queries: Queries | None = None) -> tuple[dict, pd.DataFrame]:
    """Replay ``rules`` over the last ``window_s`` of stored rollups: (end state, transitions)."""
    now = now or pd.Timestamp.now(tz="UTC")
    return (queries or Queries(store)).replay_rules(rules, now - pd.Timedelta(seconds=window_s), repr(rules))


def episodes(transitions: pd.DataFrame, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """One row per episode: how it went (``state``: pending, firing, resolved, cancelled).

    Column-wise, so an hour of a big incident (tens of thousands of transitions) costs a few
    group-bys, not a Python loop per episode."""
    if transitions is None or transitions.empty:
        return pd.DataFrame(columns=EPISODE_COLUMNS)
    t = transitions.sort_values("at", kind="stable").reset_index(drop=True)
    g = t.groupby("episode", sort=False)
    last = g.tail(1).set_index("episode")
    fired = t[t["transition"].isin(["firing", "escalated"])]
    fired_at = fired.groupby("episode", sort=False)["at"].first()
    # critical when it fired and some firing (or escalation) was critical
    fired_critical = (fired["severity"] == "critical").groupby(fired["episode"], sort=False).any()
    out = pd.DataFrame({
        "rule": last["rule"], "metric": last["metric"], "subject": last["subject"],
        "severity": last["severity"].where(~fired_critical.reindex(last.index, fill_value=False), "critical"),
        "state": last["transition"].replace({"escalated": "firing"}),
        "since": g["since"].first().reindex(last.index),
        "fired_at": fired_at.reindex(last.index),
        "ended_at": last["at"].where(last["transition"].isin(["resolved", "cancelled"])),
        "value": last["value"], "threshold": last["threshold"], "detail": last["detail"],
    })
    out = out.reset_index()[EPISODE_COLUMNS]
    return out.sort_values("since", ascending=False, kind="stable").reset_index(drop=True)


def detail_link(subject: str) -> tuple[str, dict] | None:
    """The page (and its query) that explains a subject: a group's lag or a DLQ."""
    broker, _, rest = str(subject).partition(":")
    if not broker or not rest or not NAME.fullmatch(broker) or broker in RESERVED_NAMES:
        return None
    if "/" in rest:
        return "pages/lag.py", {"broker": broker, "group": rest.rsplit("/", 1)[0]}
    return "pages/dead_letters.py", {"broker": broker, "dlq": rest}


UNITS = {"lag": "msgs", "dlq_depth": "msgs", "dlq_growth_per_min": "msgs/min", "stuck_entries": "entries"}


def format_value(metric: str, value, detail: str = "") -> str:
    """A rule's value or threshold for people: ``7 min 30 s``, ``12 msgs``, ``STALL``, ``—``."""
    if metric == "lag_status":
        return detail or "—"
    if value is None or isinstance(value, str) or pd.isna(value):
        return value if isinstance(value, str) else "—"
    value = float(value)
    if metric in ("lag_seconds", "collector_stale_s"):
        if value < 120:  # a threshold of 90 s reads as set, not as 1 min 30 s
            return f"{value:.0f} s" if value >= 10 or value == int(value) else f"{value:.1f} s"
        return duration(value)
    text = number(value)
    unit = UNITS.get(metric, "")
    if value == 1 and unit in ("msgs", "entries"):
        unit = unit[:-1] if unit == "msgs" else "entry"
    return f"{text} {unit}".strip()
