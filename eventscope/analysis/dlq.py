"""Dead-letter queue summaries: depth, growth, oldest message, failure reasons."""
from __future__ import annotations

import json

import pandas as pd

KEY = ["source", "broker", "kind", "dlq"]
COLUMNS = ["broker", "kind", "dlq", "source_topic", "depth", "growth_per_min", "oldest_age_seconds", "reasons",
           "unread", "unprocessed", "pre_dlq_pressure"]
RECENT = ["at", "partition", "offset", "event_type", "correlation_id", "original_topic", "original_partition",
          "original_offset", "reason",
          "dlq_class", "size_bytes", "decode_error", "headers", "preview"]


def summary(dlq: pd.DataFrame, window_s: float = 300.0, now: pd.Timestamp | None = None,
            lag: pd.DataFrame | None = None, stuck: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per DLQ (newest sample), growth over ``window_s`` in messages per minute.

    ``unprocessed``: the largest newest lag of any group consuming the DLQ (a
    reprocessing job; for a RabbitMQ DLQ, its own backlog while it has consumers), None when
    no group does. ``pre_dlq_pressure``: stuck Redis
    pending entries in the DLQ's source stream, i.e. retries that may land here next.
    """
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
        # held messages the reasons do not count (the first read of a deep DLQ was capped)
        "unread": (last["unread"] if "unread" in last else pd.Series(0, index=last.index)).fillna(0)
        .astype("int64"),
    }).reset_index()
    out["unprocessed"] = [_unprocessed(lag, b, d) for b, d in zip(out["broker"], out["dlq"])]
    out["pre_dlq_pressure"] = [_pressure(stuck, b, k, t)
                               for b, k, t in zip(out["broker"], out["kind"], out["source_topic"])]
    return out[COLUMNS].sort_values(["depth", "dlq"], ascending=[False, True]).reset_index(drop=True)


def _unprocessed(lag: pd.DataFrame | None, broker: str, dlq: str):
    if lag is None or lag.empty:
        return None
    rows = lag[(lag["broker"] == broker) & (lag["topic"] == dlq)]
    if rows.empty:
        return None
    rows = rows[rows["sampled_at"] == rows["sampled_at"].max()]
    if "kind" in rows and "members" in rows:
        # a RabbitMQ queue is its own "group": its backlog is unprocessed only while a consumer reads it
        idle = (rows["kind"] == "rabbitmq").to_numpy(dtype=bool, na_value=False) & ~(
            pd.to_numeric(rows["members"], errors="coerce") > 0).to_numpy(dtype=bool, na_value=False)
        rows = rows[~idle]
        if rows.empty:
            return None
    per_group = rows.groupby("group", observed=True)["lag"].sum(min_count=1)
    return None if per_group.isna().all() else int(per_group.max())


def _pressure(stuck: pd.DataFrame | None, broker: str, kind: str, source_topic) -> int | None:
    if kind != "redis" or stuck is None or source_topic is None or pd.isna(source_topic):
        return None
    stuck = stuck[stuck["broker"] == broker]
    if stuck.empty:
        return 0
    newest = stuck[stuck["sampled_at"] == stuck["sampled_at"].max()]
    return int((newest["topic"] == source_topic).sum())


def reasons_over_time(events: pd.DataFrame, broker: str, dlq: str, freq: str = "1min") -> pd.DataFrame:
    """Dead letters per time bucket and reason (by the time they reached the DLQ)."""
    rows = events[(events["broker"] == broker) & (events["topic"] == dlq) & events["dead_letter"]]
    if rows.empty:
        return pd.DataFrame(columns=["minute", "reason", "count"])
    at = rows["broker_at"].fillna(rows["at"])
    reason = rows["dlq_reason"].fillna(rows["decode_error"].replace("", None)).fillna("unknown")
    frame = pd.DataFrame({"minute": at.dt.floor(freq), "reason": reason.astype(str)})
    return frame.groupby(["minute", "reason"]).size().rename("count").reset_index()


def recent_messages(events: pd.DataFrame, broker: str, dlq: str, limit: int = 100) -> pd.DataFrame:
    """The newest dead letters of one DLQ with their metadata, masked preview and headers."""
    rows = events[(events["broker"] == broker) & (events["topic"] == dlq) & events["dead_letter"]]
    if rows.empty:
        return pd.DataFrame(columns=RECENT)
    rows = rows.drop_duplicates(["partition", "offset"], keep="last")
    rows = rows.assign(at=rows["broker_at"].fillna(rows["at"]), reason=rows["dlq_reason"])
    return rows.sort_values("at", ascending=False).head(limit)[RECENT].reset_index(drop=True)


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


def to_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows for ``eventscope dlq --json``."""
    rows = []
    for r in frame.itertuples(index=False):
        rows.append({"broker": r.broker, "kind": r.kind, "dlq": r.dlq,
                     "source_topic": None if pd.isna(r.source_topic) else r.source_topic,
                     "depth": int(r.depth), "growth_per_min": float(r.growth_per_min),
                     "oldest_age_seconds": None if pd.isna(r.oldest_age_seconds) else float(r.oldest_age_seconds),
                     "reasons": r.reasons, "unread": int(r.unread),
                     "unprocessed": None if r.unprocessed is None or pd.isna(r.unprocessed) else int(r.unprocessed),
                     "pre_dlq_pressure": None if r.pre_dlq_pressure is None or pd.isna(r.pre_dlq_pressure)
                     else int(r.pre_dlq_pressure)})
    return rows
