"""Lag status per partition and group, judged from the recent history of samples.

The verdict needs no hand-tuned threshold; it looks at how the committed offset and
the lag moved over the window (in the spirit of Burrow's evaluation rules):

* ``UNKNOWN`` — lag is not known (no committed offset, or Redis reports null), or
  the partition is behind and there is only one sample to judge by;
* ``OK`` — caught up, or committing and the lag did not rise at every sample;
* ``WARN`` — committing, but the lag rose at every sample (at least twice in a row)
  since it was last zero, or across the whole window;
* ``ERR`` — as WARN, and the oldest message has waited longer than the window;
* ``STALL`` — members present, lag > 0, but the committed offset has not moved over
  the window or for ``stuck_after_s`` (a consumer that stopped mid-window);
* ``STOP`` — as STALL, with no members;
* ``REWIND`` — the committed offset went backwards.

Burrow tells STOP (no commits at all) from STALL (commits of the same offset) by
commit timestamps. Offsets read from the broker carry no commit time, so here the
difference is whether the group still has members: a group with live members that
does not advance is stalled; one with none has stopped. The group verdict is the
worst partition's (``group_summary``).
"""
from __future__ import annotations

import pandas as pd

KEY = ["source", "broker", "group", "topic", "partition"]
STATUSES = ["OK", "WARN", "ERR", "STOP", "STALL", "REWIND", "UNKNOWN"]
SEVERITY = {"OK": 0, "UNKNOWN": 1, "WARN": 2, "REWIND": 3, "STALL": 4, "STOP": 4, "ERR": 5}


def latest_lag(lag: pd.DataFrame, window_s: float = 300.0, stuck_after_s: float = 60.0) -> pd.DataFrame:
    """The newest row per partition, with a ``status`` column judged over ``window_s``."""
    if lag.empty:
        out = lag.copy()
        out["status"] = pd.Series(dtype="string")
        return out
    newest = lag["sampled_at"].max()
    recent = lag[lag["sampled_at"] >= newest - pd.Timedelta(seconds=window_s)]
    recent = recent.sort_values("sampled_at", kind="stable")
    g = recent.groupby(KEY, observed=True, sort=False, dropna=False)
    latest = g.tail(1).set_index(KEY)
    first = g.head(1).set_index(KEY)
    committed = recent["committed"].astype("Float64")
    step = committed - committed.groupby([recent[k] for k in KEY], observed=True, dropna=False).shift()
    rewound = (step < 0).fillna(False).groupby([recent[k] for k in KEY], observed=True,
                                                 dropna=False).any()
    samples = g.size()
    keys = [recent[k] for k in KEY]
    lag_f = recent["lag"].astype("Float64")
    lag_step = lag_f - lag_f.groupby(keys, observed=True, dropna=False).shift()
    # "rising" is judged since the partition was last caught up (lag 0), if it was
    zero_at = recent["sampled_at"].where((lag_f == 0).fillna(False).to_numpy())
    last_zero = zero_at.groupby(keys, observed=True, dropna=False).transform("max")
    in_run = last_zero.isna() | (recent["sampled_at"] > last_zero)
    not_rising = ((lag_step <= 0).fillna(False) & in_run).groupby(keys, observed=True, dropna=False).any()
    run_steps = (lag_step.notna() & in_run).groupby(keys, observed=True, dropna=False).sum()
    moved_at = recent["sampled_at"].where((step != 0).fillna(False).to_numpy())
    last_move = moved_at.groupby([recent[k] for k in KEY], observed=True, dropna=False).max()
    stuck_s = (latest["sampled_at"] - last_move.reindex(latest.index).fillna(first["sampled_at"])
               ).dt.total_seconds()
    latest = latest.assign(x_stuck_s=stuck_s, x_rising=~not_rising.reindex(latest.index).fillna(False),
                           x_run_steps=run_steps.reindex(latest.index).fillna(0),
        x_first_committed=first["committed"], x_first_lag=first["lag"],
        x_samples=samples, x_rewound=rewound.reindex(latest.index).fillna(False),
        x_span_s=(latest["sampled_at"] - first["sampled_at"]).dt.total_seconds())
    latest["status"] = [_verdict(r, window_s, stuck_after_s) for r in latest.itertuples()]
    return latest.drop(columns=[c for c in latest.columns if c.startswith("x_")]).reset_index()


def _verdict(r, window_s: float, stuck_after_s: float) -> str:
    if pd.isna(r.lag):
        return "UNKNOWN"
    if r.x_rewound:
        return "REWIND"
    if r.lag == 0:
        return "OK"
    if r.x_samples < 2:
        return "UNKNOWN"  # behind, but one sample cannot say whether it is moving
    moved = not pd.isna(r.committed) and not pd.isna(r.x_first_committed) and r.committed > r.x_first_committed
    if not moved or r.x_stuck_s >= stuck_after_s:
        no_members = pd.isna(r.members) or r.members == 0
        return "STOP" if no_members else "STALL"
    if r.x_rising and r.x_run_steps >= 2:
        too_old = not pd.isna(r.lag_seconds) and r.lag_seconds > max(window_s, r.x_span_s)
        return "ERR" if too_old else "WARN"
    return "OK"


def group_summary(latest: pd.DataFrame) -> pd.DataFrame:
    """Per broker/group/topic: partitions, total lag, worst lag_seconds, worst status."""
    cols = ["broker", "group", "topic", "partitions", "lag", "lag_seconds", "status", "members"]
    if latest.empty:
        return pd.DataFrame(columns=cols)
    g = latest.groupby(["broker", "group", "topic"], observed=True, sort=True)
    out = g.agg(partitions=("partition", "count"), lag=("lag", "sum"),
                lag_seconds=("lag_seconds", "max"), members=("members", "max"),
                status=("status", lambda s: max(s, key=lambda x: SEVERITY.get(x, 0))))
    unknown = g["lag"].apply(lambda s: s.isna().all())
    out.loc[unknown, "lag"] = pd.NA
    return out.reset_index()[cols]


def lag_history(lag: pd.DataFrame, group: str | None = None) -> pd.DataFrame:
    """Total lag per (time, broker, group) for charts."""
    frame = lag if group is None else lag[lag["group"] == group]
    if frame.empty:
        return pd.DataFrame(columns=["sampled_at", "series", "lag", "lag_seconds"])
    frame = frame.assign(series=frame["broker"] + ":" + frame["group"])
    out = frame.groupby(["sampled_at", "series"], observed=True).agg(
        lag=("lag", "sum"), lag_seconds=("lag_seconds", "max"))
    return out.reset_index()


def to_rows(latest: pd.DataFrame) -> list[dict]:
    """Rows for ``eventscope lag --json`` (the CLI contract's fields)."""
    rows = []
    for r in latest.itertuples(index=False):
        rows.append({
            "broker": r.broker, "group": r.group, "topic": r.topic, "partition": int(r.partition),
            "committed": None if pd.isna(r.committed) else int(r.committed),
            "end": None if pd.isna(r.end) else int(r.end),
            "lag": None if pd.isna(r.lag) else int(r.lag),
            "lag_seconds": None if pd.isna(r.lag_seconds) else round(float(r.lag_seconds), 3),
            "status": r.status, "sampled_at": r.sampled_at.isoformat().replace("+00:00", "Z"),
            "group_state": None if pd.isna(r.group_state) else r.group_state,
            "members": None if pd.isna(r.members) else int(r.members),
        })
    return rows
