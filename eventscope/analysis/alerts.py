"""Alert rules over the store's frames: lag in seconds, stalled groups, DLQ depth.

Thresholds come from ``[alerts]`` in the config. A rule fires for a subject (a
group/topic, or a DLQ); ``since`` is the first sample of the current unbroken run
in which it held, so a flapping value restarts the clock.
"""
from __future__ import annotations

import pandas as pd

from eventscope.analysis import dlq as dlq_analysis
from eventscope.analysis import lag as lag_analysis

COLUMNS = ["rule", "severity", "subject", "value", "threshold", "since"]


def evaluate(lag: pd.DataFrame, dlq: pd.DataFrame, cfg) -> pd.DataFrame:
    """Firing alerts as a frame (``cfg`` is an AlertsConfig)."""
    rows = []
    if not lag.empty:
        per_group = lag.groupby(["sampled_at", "broker", "group", "topic"], observed=True).agg(
            lag_seconds=("lag_seconds", "max")).reset_index()
        per_group["subject"] = per_group["broker"] + ":" + per_group["group"] + "/" + per_group["topic"]
        for severity, threshold in (("critical", cfg.lag_seconds_crit), ("warning", cfg.lag_seconds_warn)):
            rows += _threshold_rule(per_group, "lag_seconds", threshold, "lag_seconds", severity)
        latest = lag_analysis.group_summary(lag_analysis.latest_lag(lag))
        for r in latest.itertuples(index=False):
            if r.status in ("STALL", "STOP"):
                rows.append({"rule": f"group_{r.status.lower()}", "severity": "critical",
                             "subject": f"{r.broker}:{r.group}/{r.topic}",
                             "value": None if pd.isna(r.lag) else float(r.lag), "threshold": None,
                             "since": None})
    if not dlq.empty:
        frame = dlq.assign(subject=dlq["broker"] + ":" + dlq["dlq"])
        for severity, threshold in (("critical", cfg.dlq_depth_crit), ("warning", cfg.dlq_depth_warn)):
            rows += _threshold_rule(frame, "depth", threshold, "dlq_depth", severity)
    out = pd.DataFrame(rows, columns=COLUMNS)
    if out.empty:
        return out
    # one alert per rule family and subject: the most severe wins
    out["_rank"] = out["severity"].map({"critical": 0, "warning": 1})
    out["_family"] = out["rule"].str.replace(r"_(warn|crit)$", "", regex=True)
    out = out.sort_values("_rank").drop_duplicates(["_family", "subject"])
    return out.drop(columns=["_rank", "_family"]).sort_values(["severity", "subject"]).reset_index(drop=True)


def _threshold_rule(frame: pd.DataFrame, column: str, threshold: float, rule: str, severity: str) -> list[dict]:
    rows = []
    for subject, series in frame.sort_values("sampled_at").groupby("subject", observed=True):
        values = series[column].astype("Float64")
        if pd.isna(values.iloc[-1]) or values.iloc[-1] < threshold:
            continue
        below = series[(values < threshold).fillna(True).to_numpy()]
        since = series["sampled_at"].iloc[0] if below.empty else \
            series[series["sampled_at"] > below["sampled_at"].max()]["sampled_at"].min()
        rows.append({"rule": rule, "severity": severity, "subject": subject,
                     "value": float(values.iloc[-1]), "threshold": float(threshold),
                     "since": since.isoformat().replace("+00:00", "Z")})
    return rows


def dlq_summary(dlq: pd.DataFrame) -> pd.DataFrame:
    """Re-exported for pages that show DLQ context beside alerts."""
    return dlq_analysis.summary(dlq)
