"""Alerts as the CLI, the exporter and the pages read them from a store.

The collector's evaluation (``alerts`` frame) is the truth. A store nobody evaluated
(an old store, or one written by hand) falls back to replaying the rules over the
last hour, with the same state machine.
"""
from __future__ import annotations

import pandas as pd

from eventscope.analysis import alert_state, alerts

EPISODE_COLUMNS = ["rule", "metric", "subject", "severity", "state", "since", "fired_at", "ended_at",
                   "value", "threshold", "detail", "episode"]


def _frames(store, now: pd.Timestamp, window_s: float) -> dict:
    since = now - pd.Timedelta(seconds=window_s)
    out = {n: store.read(n, since=since) for n in ("lag", "dlq", "stuck")}
    out["health"] = store.read("health", since=now - pd.Timedelta(seconds=max(window_s, 900.0)))
    return out


def current_observations(store, alerts_cfg, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Every (metric, subject) value now."""
    now = now or pd.Timestamp.now(tz="UTC")
    f = _frames(store, now, alerts.LAG_WINDOW_S)
    return alerts.observe(f["lag"], f["dlq"], f["stuck"], f["health"], at=now,
                          stall_after_s=alerts_cfg.stall_after_s)


def current_state(store, alerts_cfg, now: pd.Timestamp | None = None) -> dict:
    """The alert state: from the stored transitions, else replayed over the last hour."""
    if store.newest_time("alerts") is not None:
        return alert_state.from_history(store.read("alerts"))
    now = now or pd.Timestamp.now(tz="UTC")
    f = _frames(store, now, 3600.0)
    state, _ = alerts.replay(f["lag"], f["dlq"], alerts_cfg.all_rules(), stuck=f["stuck"], health=f["health"],
                             stall_after_s=alerts_cfg.stall_after_s)
    return state


def firing_now(store, alerts_cfg) -> pd.DataFrame:
    """Firing alerts with their current values (``alerts.FIRING_COLUMNS``)."""
    return alerts.firing_frame(current_state(store, alerts_cfg), current_observations(store, alerts_cfg))


def what_if(store, rules: list, alerts_cfg, window_s: float = 3600.0, max_steps: int = 240,
            now: pd.Timestamp | None = None) -> tuple[dict, pd.DataFrame]:
    """Replay ``rules`` over the last ``window_s`` of stored frames: (end state, transitions)."""
    now = now or pd.Timestamp.now(tz="UTC")
    f = _frames(store, now, window_s)
    return alerts.replay(f["lag"], f["dlq"], rules, stuck=f["stuck"], health=f["health"],
                         max_steps=max_steps, stall_after_s=alerts_cfg.stall_after_s)


def episodes(transitions: pd.DataFrame, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """One row per episode: how it went (``state``: pending, firing, resolved, cancelled)."""
    if transitions is None or transitions.empty:
        return pd.DataFrame(columns=EPISODE_COLUMNS)
    rows = []
    for episode, t in transitions.sort_values("at", kind="stable").groupby("episode", sort=False):
        last = t.iloc[-1]
        fired = t[t["transition"].isin(["firing", "escalated"])]
        ended = last["at"] if last["transition"] in ("resolved", "cancelled") else pd.NaT
        state = {"escalated": "firing"}.get(last["transition"], last["transition"])
        severity = "critical" if (t["severity"] == "critical").any() and not fired.empty and \
            (fired["severity"] == "critical").any() else last["severity"]
        rows.append({"rule": last["rule"], "metric": last["metric"], "subject": last["subject"],
                     "severity": severity, "state": state, "since": t["since"].iloc[0],
                     "fired_at": fired["at"].iloc[0] if not fired.empty else pd.NaT, "ended_at": ended,
                     "value": last["value"], "threshold": last["threshold"], "detail": last["detail"],
                     "episode": episode})
    out = pd.DataFrame(rows, columns=EPISODE_COLUMNS)
    return out.sort_values("since", ascending=False, kind="stable").reset_index(drop=True)


def detail_link(subject: str) -> tuple[str, dict] | None:
    """The page (and its query) that explains a subject: a group's lag or a DLQ."""
    broker, _, rest = str(subject).partition(":")
    if broker not in ("kafka", "redis") or not rest:
        return None
    if "/" in rest:
        return "pages/lag.py", {"broker": broker, "group": rest.rsplit("/", 1)[0]}
    return "pages/dead_letters.py", {"broker": broker, "dlq": rest}
