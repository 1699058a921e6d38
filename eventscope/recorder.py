"""What happens when a sample is written: raw rows, snapshots and rollups, computed once.

The runner hands every collector run's frames to :meth:`Recorder.record`. Besides the
rows themselves (``Store.append``), it keeps up to date, at a cost that grows with the
partitions of one sample and never with history:

* ``lag_latest``: the newest row of every partition with its status, judged
  incrementally by :class:`~eventscope.analysis.lag.LagJudge` over the last ``window_s``;
* ``lag_groups``: the same per group and topic (worst status, summed lag), what the Lag
  page, the Overview, the exporter and the alerts read;
* ``topics_latest``, ``consumers_latest``, ``stuck_latest``, ``dlq_latest``: the newest
  rows of each entity (members and stuck entries as of their group's newest sample);
* ``lag_1m`` and ``dlq_1m``: per-minute rollups for the whole retention. The minute in
  progress is kept as a snapshot (``*_open``) and appended when the minute is over.

Everything here is derived from stored data: a restarted collector reads the snapshots
and the last ``window_s`` of raw lag rows back, so a restart changes no verdict, no
member list and no rollup.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from eventscope import schemas
from eventscope.analysis.lag import SEVERITY, LagJudge
from eventscope.analysis.queues import queue_statuses
from eventscope.files import DamagedPart
from eventscope.store import Store

GROUP_KEY = ["source", "broker", "kind", "group", "topic"]
DLQ_KEY = ["source", "broker", "kind", "dlq"]
# the entity each row of a snapshot frame describes: a newer row replaces an older one
ENTITY = {"topics": ["source", "broker", "kind", "topic", "partition"],
          "dlq": DLQ_KEY,
          # RabbitMQ: a queue, and an exchange -> queue binding (or a queue's dead-letter route)
          "queues": ["source", "broker", "kind", "vhost", "queue"],
          "bindings": ["source", "broker", "kind", "vhost", "exchange", "queue", "routing_key", "route"]}
# members and stuck entries are replaced per group, as of the group's newest lag sample
PER_GROUP = ("consumers", "stuck")
SEVERITY_CODES = {status: code for status, code in SEVERITY.items()}
OPEN_GRACE = pd.Timedelta(minutes=2)  # a minute still open this long after newer samples: close it


class Recorder:
    """Writes collector output into a store with its snapshots and rollups."""

    def __init__(self, store: Store, window_s: float = 300.0, stuck_after_s: float = 60.0):
        self.store = store
        self.window_s = float(window_s)
        self.judge = LagJudge(window_s=window_s, stuck_after_s=stuck_after_s)
        self.latest: dict[str, pd.DataFrame] = {}
        self.open: dict[str, pd.DataFrame] = {}
        # what record() has to write at its end: snapshots, once, and the rollup minutes it
        # closed. Both stay until written: after a store failure (a full disk) the next call
        # writes them too, so no closed minute is lost
        self._changed: set[str] = set()
        self._closed: dict[str, list[pd.DataFrame]] = {"lag_1m": [], "dlq_1m": []}
        self._restore()

    def _restore(self) -> None:
        """Pick up where the last writer of this store stopped."""
        newest = self.store.newest_time("lag")
        if newest is not None:
            since = newest - pd.Timedelta(seconds=self.window_s)
            # part by part (a part is one collector run): a big cluster's five minutes of raw
            # rows are millions, and only one sample at a time needs to be in memory
            for part in sorted(self.store.part_entries("lag"), key=lambda p: p["tmin"]):
                if pd.Timestamp(part["tmax"]) >= since:
                    try:
                        rows = self.store.load_part("lag", part["file"])
                    except (DamagedPart, FileNotFoundError):  # that sample is missing, not the rest
                        continue
                    self.judge.add(rows[rows["sampled_at"] >= since])
        for name in (*ENTITY, *PER_GROUP):
            self.latest[name] = self.store.get(f"{name}_latest")
        for name in ("lag_1m", "dlq_1m"):
            self.open[name] = self.store.get(f"{name}_open")

    def record(self, frames: dict[str, pd.DataFrame]) -> int:
        """Store one collector run's frames; returns the rows written."""
        rows = 0
        for name, frame in frames.items():
            self.store.append(name, frame)
            rows += len(frame)
        lag = frames.get("lag")
        if lag is not None and not lag.empty:
            self._record_lag(lag, frames)
        for name in ENTITY:
            frame = frames.get(name)
            if frame is not None and not frame.empty:
                self._replace(name, frame, ENTITY[name])
        dlq = frames.get("dlq")
        if dlq is not None and not dlq.empty:
            self._roll("dlq_1m", dlq_minute_rows(dlq))
        # one write per derived frame, however many samples the run held (a replay's backfill)
        for name, closed in self._closed.items():
            if closed:
                self.store.append(name, pd.concat(closed, ignore_index=True))
                closed.clear()
        for name in sorted(self._changed):
            self.store.put(name, self.latest[name.removesuffix("_latest")] if name.endswith("_latest")
                           else self.open[name.removesuffix("_open")])
            self._changed.discard(name)
        return rows

    # -- lag ----------------------------------------------------------------------
    def _record_lag(self, lag: pd.DataFrame, frames: dict[str, pd.DataFrame]) -> None:
        judged = self.judge.add(lag)  # each row with the status it had when its sample came
        # RabbitMQ queues have no offsets to judge by: their verdict comes from the same
        # sample's queue rates (analysis/queues.py), here and in lag_latest below
        queues = frames.get("queues")
        if queues is not None and not queues.empty:
            judged = queue_statuses(judged, queues, self.window_s)
        samples = sample_rows(judged)
        self.store.append("lag_samples", samples)
        self._roll("lag_1m", minute_rows(samples))
        # members and stuck entries, as of each group's newest sample in this run
        keys = ["source", "broker", "kind", "group"]
        newest = lag.groupby(keys, observed=True, dropna=False)["sampled_at"].max().reset_index()
        for name in PER_GROUP:
            self._replace_groups(name, newest, frames.get(name))
        latest = self.judge.latest()
        known = [f for f in (self.latest["queues"], queues) if f is not None and not f.empty]
        if known:
            latest = queue_statuses(latest, pd.concat(known, ignore_index=True), self.window_s)
        self.store.put("lag_latest", latest)
        self.store.put("lag_groups", group_table(latest))
        self._expire_latest()

    def _replace_groups(self, name: str, newest: pd.DataFrame, rows: pd.DataFrame | None) -> None:
        """The members (or stuck entries) of a sampled group are exactly those of its newest sample."""
        keys = ["source", "broker", "kind", "group"]
        current = self.latest[name]
        if not current.empty:
            sampled = pd.MultiIndex.from_frame(newest[keys].astype(str))
            mine = pd.MultiIndex.from_frame(current[keys].astype(str))
            current = current[~mine.isin(sampled)]
        if rows is not None and not rows.empty:
            rows = rows.merge(newest, on=keys + ["sampled_at"], how="inner")
            current = pd.concat([current, rows], ignore_index=True) if not current.empty else rows
        self.latest[name] = schemas.conform(name, current)
        self._changed.add(f"{name}_latest")

    # -- other snapshots ------------------------------------------------------------
    def _replace(self, name: str, frame: pd.DataFrame, key: list[str]) -> None:
        current = self.latest[name]
        merged = pd.concat([current, frame], ignore_index=True) if not current.empty else frame
        merged = merged.sort_values(schemas.TIME_COLUMN[name], kind="stable")
        merged = merged.drop_duplicates(key, keep="last")
        newest = merged[schemas.TIME_COLUMN[name]].max()
        merged = merged[merged[schemas.TIME_COLUMN[name]] >= newest - pd.Timedelta(seconds=self.window_s)]
        self.latest[name] = merged.reset_index(drop=True)
        self._changed.add(f"{name}_latest")

    def _expire_latest(self) -> None:
        """Members and stuck entries of groups no longer sampled leave with their group."""
        newest = self.judge.newest_ns
        if newest is None:
            return
        floor = pd.Timestamp(newest, tz="UTC") - pd.Timedelta(seconds=self.window_s)
        for name in PER_GROUP:
            current = self.latest[name]
            if not current.empty and (current["sampled_at"] < floor).any():
                self.latest[name] = current[current["sampled_at"] >= floor].reset_index(drop=True)
                self._changed.add(f"{name}_latest")

    # -- rollups ----------------------------------------------------------------------
    def _roll(self, name: str, rows: pd.DataFrame) -> None:
        """Fold one sample's per-minute rows into the open minutes; append the closed ones."""
        if rows.empty:
            return
        key = ["minute"] + (GROUP_KEY if name == "lag_1m" else DLQ_KEY)
        merged = fold(name, self.open[name], rows, key)
        # a source's minute closes when that source samples a later minute (or, if it
        # stopped sampling, once the newest sample of any source is well past it)
        newest = rows.groupby("source", observed=True)["minute"].max()
        newest_minute = merged["minute"].max()
        source_newest = merged["source"].map(newest)
        closed = (merged["minute"] < source_newest) | (merged["minute"] < newest_minute - OPEN_GRACE)
        if closed.any():
            self._closed[name].append(merged[closed.to_numpy()])
        self.open[name] = merged[~closed.to_numpy()].reset_index(drop=True)
        self._changed.add(f"{name}_open")


def sample_rows(judged: pd.DataFrame) -> pd.DataFrame:
    """Judged lag rows (with ``status`` and ``consumed``) of any number of samples as
    ``lag_samples`` rows: one per sample and group-topic."""
    key = ["sampled_at"] + GROUP_KEY
    g = judged.groupby(key, observed=True, sort=False, dropna=False)
    out = pd.DataFrame({"partitions": g["partition"].size(), "lag": g["lag"].sum(min_count=1),
                        "max_lag": g["lag"].max(), "lag_seconds": g["lag_seconds"].max(),
                        "members": g["members"].max(), "committed": g["committed"].sum(min_count=1),
                        "consumed": g["consumed"].sum()})
    out["status"] = worst_status(judged, key).reindex(out.index)
    out = out.reset_index().sort_values("sampled_at", kind="stable")
    return schemas.conform("lag_samples", out)


def minute_rows(samples: pd.DataFrame) -> pd.DataFrame:
    """``lag_samples`` rows as ``lag_1m`` rows of one sample each (:func:`fold` merges them)."""
    out = samples.drop(columns=["max_lag"]).assign(minute=samples["sampled_at"].dt.floor("1min"),
                                                   lag_max=samples["lag"], samples=1)
    return schemas.conform("lag_1m", out.drop(columns=["sampled_at"]))


def dlq_minute_rows(dlq: pd.DataFrame) -> pd.DataFrame:
    """Dead-letter rows (any number of samples) as ``dlq_1m`` rows, one per DLQ and sample."""
    out = dlq[["sampled_at", *DLQ_KEY, "source_topic", "depth"]].copy()
    out["minute"] = out["sampled_at"].dt.floor("1min")
    out = out.sort_values("sampled_at", kind="stable")
    out["depth_max"] = out["depth"]
    out["samples"] = 1
    return schemas.conform("dlq_1m", out.drop(columns=["sampled_at"]))


def fold(name: str, open_rows: pd.DataFrame, rows: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Combine rollup rows of the same minute and subject; ``rows`` are the newer ones.

    The newest sample's values stand for the minute (``lag``, ``depth``, ...), extremes
    keep their extreme, counts add up, and the status is the worst of them."""
    both = pd.concat([open_rows, rows], ignore_index=True) if not open_rows.empty else rows
    if name == "lag_1m":
        newest = ["partitions", "lag", "members", "committed"]
        extremes = {"lag_max": "max", "lag_seconds": "max"}
        sums = ["consumed", "samples"]
    else:
        newest = ["depth", "source_topic"]
        extremes = {"depth_max": "max"}
        sums = ["samples"]
    g = both.groupby(key, observed=True, sort=False, dropna=False)
    # the newest sample's own values, missing ones included (an unknown lag stays unknown)
    out = g[newest].last(skipna=False)
    for column, how in extremes.items():
        out[column] = g[column].agg(how)
    for column in sums:
        out[column] = g[column].sum()
    if name == "lag_1m":
        out["status"] = worst_status(both, key).reindex(out.index)
    return schemas.conform(name, out.reset_index())


def worst_status(rows: pd.DataFrame, key: list[str]) -> pd.Series:
    """Per ``key``: the most severe status; among equally severe ones, the first in row order."""
    severity = rows["status"].map(SEVERITY_CODES).fillna(0).to_numpy()
    order = np.lexsort((np.arange(len(rows)), -severity))
    first = rows[key + ["status"]].iloc[order].drop_duplicates(key, keep="first")  # not every column
    return first.set_index(key)["status"]


def group_table(latest: pd.DataFrame) -> pd.DataFrame:
    """``lag_groups`` from the judged partitions: one row per source, broker, group and topic."""
    if latest.empty:
        return schemas.empty("lag_groups")
    g = latest.groupby(GROUP_KEY, observed=True, sort=False, dropna=False)
    out = pd.DataFrame({"sampled_at": g["sampled_at"].max(), "partitions": g["partition"].size(),
                        "lag": g["lag"].sum(min_count=1), "max_lag": g["lag"].max(),
                        "lag_seconds": g["lag_seconds"].max(), "members": g["members"].max()})
    out["status"] = worst_status(latest, GROUP_KEY).reindex(out.index)
    states = latest[GROUP_KEY + ["group_state"]].dropna(subset=["group_state"]).drop_duplicates()
    states = states.sort_values("group_state", kind="stable")
    several = states.duplicated(GROUP_KEY, keep=False)  # a group mid-rebalance reports more than one
    joined = states[~several].set_index(GROUP_KEY)["group_state"]
    if several.any():
        joined = pd.concat([joined, states[several].groupby(GROUP_KEY, observed=True, dropna=False)
                            ["group_state"].agg(", ".join)])
    out["group_state"] = joined.reindex(out.index).fillna("")
    return schemas.conform("lag_groups", out.reset_index())
