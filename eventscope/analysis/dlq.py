"""Dead-letter queue summaries: depth, growth, oldest message, failure reasons."""
from __future__ import annotations

import json

import pandas as pd

KEY = ["source", "broker", "dlq"]
COLUMNS = ["broker", "dlq", "source_topic", "depth", "growth_per_min", "oldest_age_seconds", "reasons"]


def summary(dlq: pd.DataFrame, window_s: float = 300.0, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """One row per DLQ (newest sample), growth over ``window_s`` in messages per minute."""
    if dlq.empty:
        return pd.DataFrame(columns=COLUMNS)
    now = now or dlq["sampled_at"].max()
    recent = dlq[dlq["sampled_at"] >= dlq["sampled_at"].max() - pd.Timedelta(seconds=window_s)]
    recent = recent.sort_values("sampled_at", kind="stable")
    g = recent.groupby(KEY, observed=True, sort=True)
    last, first = g.tail(1).set_index(KEY), g.head(1).set_index(KEY)
    minutes = (last["sampled_at"] - first["sampled_at"]).dt.total_seconds() / 60.0
    growth = ((last["depth"] - first["depth"]) / minutes.where(minutes > 0)).fillna(0.0)
    age = (now - last["oldest_at"]).dt.total_seconds().clip(lower=0)
    out = pd.DataFrame({
        "source_topic": last["source_topic"], "depth": last["depth"].astype("int64"),
        "growth_per_min": growth.round(2), "oldest_age_seconds": age.round(1),
        "reasons": pd.Series([parse_reasons(r) for r in last["reasons"]], index=last.index, dtype=object),
    }).reset_index()
    return out[COLUMNS].sort_values(["depth", "dlq"], ascending=[False, True]).reset_index(drop=True)


def parse_reasons(text) -> list[dict]:
    """The stored ``{reason: count}`` JSON as a list of ``{reason, count}``, biggest first."""
    if text is None or pd.isna(text) or not text:
        return []
    try:
        counts = json.loads(text)
    except (TypeError, ValueError):
        return [{"reason": "unreadable reasons record", "count": 0}]
    return [{"reason": str(k), "count": int(v)}
            for k, v in sorted(counts.items(), key=lambda kv: -kv[1])]


def depth_history(dlq: pd.DataFrame) -> pd.DataFrame:
    """Depth per (time, broker:dlq) for charts."""
    if dlq.empty:
        return pd.DataFrame(columns=["sampled_at", "series", "depth"])
    return dlq.assign(series=dlq["broker"] + ":" + dlq["dlq"])[["sampled_at", "series", "depth"]]


def to_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows for ``eventscope dlq --json``."""
    rows = []
    for r in frame.itertuples(index=False):
        rows.append({"broker": r.broker, "dlq": r.dlq,
                     "source_topic": None if pd.isna(r.source_topic) else r.source_topic,
                     "depth": int(r.depth), "growth_per_min": float(r.growth_per_min),
                     "oldest_age_seconds": None if pd.isna(r.oldest_age_seconds) else float(r.oldest_age_seconds),
                     "reasons": r.reasons})
    return rows
