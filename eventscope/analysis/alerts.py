"""Alert rules over what the recorder keeps: what each rule measures, and replays over history.

:func:`observe_now` turns the recorder's snapshots (``lag_groups``, the DLQ summary,
``stuck_latest``, collector health) into one value per (metric, subject) as of a moment:
lag and lag seconds per group/topic, the worst lag status, DLQ depth and growth, stuck
Redis entries, and how long ago each collector last succeeded. The state machine
(:mod:`eventscope.analysis.alert_state`) consumes those; :func:`replay_samples` and
:func:`replay_minutes` run it over the stored per-group samples and minute rollups (the
CLI's fallback for a store nobody evaluated, and the Alerts page's "what would have fired"
with edited rules). ``tests/alert_reference.py`` judges the same rules from raw partition
rows, every partition again at every step: the reference these are tested against.

Subjects: ``broker:group/topic`` (lag metrics, stuck entries), ``broker:dlq`` (DLQs),
``source/collector`` (staleness).
"""
from __future__ import annotations

from functools import lru_cache

import pandas as pd

from eventscope.analysis import alert_state
from eventscope.analysis import dlq as dlq_analysis
from eventscope.analysis.rules import Selector, select
from eventscope.analysis.samples import newest_per_source

COLUMNS = ["rule", "severity", "subject", "value", "threshold", "since"]
FIRING_COLUMNS = COLUMNS + ["metric", "fired_at", "detail", "episode"]
LAG_WINDOW_S = 300.0  # what the lag status and DLQ growth look back over
STALE_S = 120.0  # a subject whose newest sample is older than this is not observed


def _upto(frame: pd.DataFrame | None, at: pd.Timestamp, window_s: float = LAG_WINDOW_S):
    if frame is None or frame.empty:
        return None
    rows = frame[(frame["sampled_at"] <= at) & (frame["sampled_at"] > at - pd.Timedelta(seconds=window_s))]
    return rows if not rows.empty else None


def _collector_observations(health, at: pd.Timestamp) -> list[dict]:
    if health is None:
        return []
    rows = []
    for (source, collector), runs in health.groupby(["source", "collector"], observed=True):
        success = runs["last_success"].max()
        if pd.isna(success):
            success = runs["sampled_at"].min()  # never succeeded: stale since we know of it
        subject = f"{source}/{collector}"
        last = runs.iloc[-1]
        rows.append({"metric": "collector_stale_s", "subject": subject,
                     "names": (subject, collector, source),
                     "value": max(0.0, (at - success).total_seconds()),
                     "detail": "" if last["ok"] else str(last["error"])[:200]})
    return rows


def observe_now(groups: pd.DataFrame, dlq: pd.DataFrame, stuck: pd.DataFrame | None = None,
                health: pd.DataFrame | None = None, at: pd.Timestamp | None = None,
                metrics: set | None = None) -> pd.DataFrame:
    """One row per (metric, subject) as of ``at`` (default: now), from what the recorder keeps:
    ``groups`` (``lag_groups``: each group and topic now, its status judged when its sample was
    written), ``dlq`` (the DLQ summary with the newest sample's ``sampled_at``), ``stuck``
    (``stuck_latest``), ``health``. A subject whose newest sample is more than ``STALE_S``
    old is not observed. ``metrics`` limits the rows (and the work) to those metrics."""
    at = pd.Timestamp.now(tz="UTC") if at is None else pd.Timestamp(at)
    wanted = set(metrics) if metrics is not None else None

    def want(*names):
        return wanted is None or bool(wanted & set(names))
    parts = []
    fresh = _fresh(groups)
    if want("lag", "lag_seconds", "lag_status") and not fresh.empty:
        subjects = (fresh["broker"].astype(str) + ":" + fresh["group"].astype(str) + "/"
                    + fresh["topic"].astype(str))
        # whole columns to Python lists first: iterating Arrow-backed text cell by cell costs ~1 µs a cell
        names = list(zip(subjects.tolist(), fresh["group"].astype(str).tolist(), fresh["topic"].astype(str).tolist(),
                         fresh["broker"].astype(str).tolist()))
        lag_values = fresh["lag"].astype("float64")
        for metric, values, detail in (("lag", lag_values, ""), ("lag_seconds", fresh["lag_seconds"], ""),
                                       ("lag_status", lag_values, fresh["status"].fillna("UNKNOWN"))):
            parts.append(pd.DataFrame({"metric": metric, "subject": subjects.to_numpy(), "names": names,
                                       "value": values.to_numpy(dtype="float64", na_value=float("nan")),
                                       "detail": detail if isinstance(detail, str) else detail.to_numpy()}))
    rows: list[dict] = []
    if want("dlq_depth", "dlq_growth_per_min") and dlq is not None and not dlq.empty:
        for r in dlq.itertuples(index=False):
            if (at - r.sampled_at).total_seconds() > STALE_S:
                continue
            subject = f"{r.broker}:{r.dlq}"
            names = (subject, r.dlq, None if pd.isna(r.source_topic) else r.source_topic, r.broker)
            rows += [{"metric": "dlq_depth", "subject": subject, "names": names, "value": float(r.depth),
                      "detail": ""},
                     {"metric": "dlq_growth_per_min", "subject": subject, "names": names,
                      "value": float(r.growth_per_min), "detail": ""}]
    if want("stuck_entries") and not fresh.empty:
        redis = fresh[fresh["kind"] == "redis"]
        counts = {}
        if stuck is not None and not stuck.empty:
            counts = stuck.groupby(["broker", "group", "topic"], observed=True).size().to_dict()
        for broker, group, topic in zip(redis["broker"], redis["group"], redis["topic"]):
            subject = f"{broker}:{group}/{topic}"
            rows.append({"metric": "stuck_entries", "subject": subject,
                         "names": (subject, group, topic, broker),
                         "value": float(counts.get((broker, group, topic), 0)), "detail": ""})
    if want("collector_stale_s"):
        rows += _collector_observations(_upto(health, at, window_s=900.0), at)
    parts.append(pd.DataFrame(rows, columns=alert_state.OBSERVATION_COLUMNS))
    out = pd.concat([p for p in parts if not p.empty], ignore_index=True) if any(
        not p.empty for p in parts) else pd.DataFrame(columns=alert_state.OBSERVATION_COLUMNS)
    if wanted is not None:
        out = out[out["metric"].isin(wanted)].reset_index(drop=True)
    return out


def _fresh(groups: pd.DataFrame | None) -> pd.DataFrame:
    """Group rows whose sample is at most STALE_S older than their source's newest."""
    if groups is None or groups.empty:
        return pd.DataFrame(columns=["broker", "group", "topic", "lag", "lag_seconds", "status"])
    return newest_per_source(groups, within_s=STALE_S)


def replay_minutes(lag_1m: pd.DataFrame, dlq_1m: pd.DataFrame, rules: list,
                   health: pd.DataFrame | None = None, since: pd.Timestamp | None = None,
                   max_steps: int = 360, now: pd.Timestamp | None = None) -> tuple[dict, pd.DataFrame]:
    """Run the state machine over per-minute rollups (``lag_1m``, ``dlq_1m``): one step at
    the end of each minute, on the minute's worst lag, seconds behind and status and its
    newest DLQ depth (a minute still in progress is judged at ``now``). What the rules
    would have done, at a cost that grows with what changed from minute to minute."""
    metrics = {r.metric for r in rules if not r.silent}
    minutes = pd.concat([f["minute"] for f in (lag_1m, dlq_1m) if f is not None and not f.empty]
                        + [pd.Series([], dtype="datetime64[ns, UTC]")], ignore_index=True)
    minutes = minutes.drop_duplicates().sort_values()
    if since is not None:
        minutes = minutes[minutes >= pd.Timestamp(since).floor("1min")]
    minutes = minutes.iloc[-max_steps:]
    stepper = alert_state.Stepper(rules)
    rows: list[dict] = []
    lag_by = dict(tuple(lag_1m.groupby("minute"))) if lag_1m is not None and not lag_1m.empty else {}
    dlq_by = _dlq_growth(dlq_1m)
    for minute in minutes:
        at = minute + pd.Timedelta(minutes=1)
        if now is not None:
            at = min(at, pd.Timestamp(now))
        groups = lag_by.get(minute)
        if groups is not None:
            groups = groups.assign(lag=groups["lag_max"], sampled_at=at)
        obs = observe_now(groups, dlq_by.get(minute), None, health, at=at, metrics=metrics)
        rows += stepper.step(obs, at)
    return stepper.state, alert_state.transitions_frame(rows)


def replay_samples(samples: pd.DataFrame, dlq: pd.DataFrame, rules: list,
                   health: pd.DataFrame | None = None, since: pd.Timestamp | None = None,
                   max_steps: int = 240) -> tuple[dict, pd.DataFrame]:
    """Run the state machine over ``lag_samples`` (each group's rows per sample, with the
    status judged when the sample was written) and raw ``dlq`` samples: one step per sample
    time (evenly thinned to ``max_steps``, the newest always kept), each group as of its
    newest sample by then. What :func:`replay` does over raw partition rows, without judging
    any partition again."""
    metrics = {r.metric for r in rules if not r.silent}
    times = pd.concat([f["sampled_at"] for f in (samples, dlq) if f is not None and not f.empty]
                      + [pd.Series([], dtype="datetime64[ns, UTC]")], ignore_index=True)
    times = times.drop_duplicates().sort_values()
    if since is not None:
        times = times[times >= pd.Timestamp(since)]
    if len(times) > max_steps:
        picks = sorted({int(round(i * (len(times) - 1) / (max_steps - 1))) for i in range(max_steps)})
        times = times.iloc[picks]
    samples = samples.sort_values("sampled_at", kind="stable") if samples is not None else None
    key = ["source", "broker", "kind", "group", "topic"]
    stepper = alert_state.Stepper(rules)
    current = None
    done = None
    rows: list[dict] = []
    for at in times:
        if samples is not None and not samples.empty:
            new = samples[(samples["sampled_at"] <= at) & ((samples["sampled_at"] > done) if done is not None
                                                            else True)]
            if not new.empty:
                current = new if current is None else pd.concat([current, new], ignore_index=True)
                current = current.drop_duplicates(key, keep="last")
        done = at
        dlq_now = None
        if dlq is not None and not dlq.empty:
            recent = dlq[(dlq["sampled_at"] <= at) & (dlq["sampled_at"] > at - pd.Timedelta(seconds=LAG_WINDOW_S))]
            if not recent.empty:
                dlq_now = dlq_analysis.summary(recent, window_s=LAG_WINDOW_S, now=at).join(
                    recent.groupby(["broker", "dlq"], observed=True)["sampled_at"].max(), on=["broker", "dlq"])
        obs = observe_now(current, dlq_now, None, health, at=at, metrics=metrics)
        rows += stepper.step(obs, at)
    return stepper.state, alert_state.transitions_frame(rows)


def _dlq_growth(dlq_1m: pd.DataFrame | None) -> dict:
    """Per minute: each DLQ's newest depth and its growth per minute since the minute before."""
    if dlq_1m is None or dlq_1m.empty:
        return {}
    rows = dlq_1m.sort_values("minute", kind="stable")
    keys = ["source", "broker", "kind", "dlq"]
    before = rows.groupby(keys, observed=True)["depth"].shift()
    gap = (rows["minute"] - rows.groupby(keys, observed=True)["minute"].shift()).dt.total_seconds() / 60
    growth = ((rows["depth"] - before) / gap).fillna(0.0).round(2)
    rows = rows.assign(growth_per_min=growth, sampled_at=rows["minute"] + pd.Timedelta(minutes=1))
    return dict(tuple(rows.groupby("minute")))


def firing_frame(state: dict, observations: pd.DataFrame | None = None) -> pd.DataFrame:
    """Firing alerts (COLUMNS + metric, fired_at, detail, episode) with current values."""
    current = {}
    if observations is not None and not observations.empty:
        # whole columns to Python at once: per-row access to Arrow-backed cells costs ~1 µs each
        keys = zip(observations["metric"].tolist(), observations["subject"].tolist())
        current = dict(zip(keys, zip(observations["value"].tolist(), observations["detail"].tolist())))
    rows = []
    for a in alert_state.firing(state):
        value, detail = current.get((a.metric, a.subject), (a.value, a.detail))
        rows.append({"rule": a.rule, "severity": a.severity, "subject": a.subject,
                     "value": None if value is None or pd.isna(value) else float(value),
                     "threshold": a.threshold, "since": _iso(a.since), "metric": a.metric,
                     "fired_at": _iso(a.fired_at), "detail": detail or "", "episode": a.episode})
    return pd.DataFrame(rows, columns=FIRING_COLUMNS)


@lru_cache(maxsize=2)
def _selector(rules: tuple) -> Selector:
    """The rules' :class:`Selector`, kept across calls: the dashboard asks for the same rules'
    table after every sample, and matching 22,000 observations' names again cost 40 ms."""
    return Selector(list(rules))


def rule_table(rules: list, observations: pd.DataFrame, state: dict) -> pd.DataFrame:
    """Every rule with each subject's current value against its thresholds and its state."""
    rows = []
    columns = [observations[c].tolist() for c in ("metric", "names", "subject", "detail", "value")]
    choose = _selector(tuple(rules))
    for metric, names, subject, detail, value in zip(*columns):
        rule = choose(metric, names)
        if rule is None:
            continue
        current = state.get((rule.name, subject))
        rows.append({"rule": rule.name, "metric": rule.metric, "subject": subject,
                     "value": detail if rule.metric == "lag_status" else value,
                     "warning": rule.threshold("warning"), "critical": rule.threshold("critical"),
                     "clear": rule.clear_threshold, "for_s": rule.for_s,
                     "state": current.state if current else ("silenced" if rule.silent else "ok"),
                     "severity": current.severity if current else None})
    return pd.DataFrame(rows, columns=["rule", "metric", "subject", "value", "warning", "critical",
                                       "clear", "for_s", "state", "severity"])


def _iso(ts) -> str | None:
    """ISO text of a moment, None when missing (the state machine's own, which remembers the
    moments many alerts share)."""
    return None if ts is None or pd.isna(ts) else alert_state._iso(ts)
