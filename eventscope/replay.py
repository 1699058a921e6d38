"""The replay source: feeds a recording (``sample_data/``) into the store as if live.

A recording is one Parquet file per frame plus ``meta.json``. On start the first
``backfill`` fraction of the recording is emitted at once (so every page has
history straight away); the rest plays at ``speed`` × real time. Recorded times are
shifted so that the replay's "now" is the wall clock's now.

When the recording runs out it loops. Each new cycle shifts offsets forward by the
span the recording covered and tags IDs with the cycle number, so a loop never
looks like a consumer rewinding, and trace lookups never mix two cycles.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from eventscope import schemas

REPLAYED = ("lag", "dlq", "events", "topics", "consumers", "stuck", "queues", "bindings")


class ReplaySource:
    """A collector that emits the recorded frames on the wall clock."""

    name = "replay"
    source = "replay"

    def __init__(self, data_dir: str | Path, speed: float = 1.0, loop: bool = True,
                 backfill: float = 0.75, clock=time.time):
        self.data_dir = Path(data_dir)
        self.speed = speed
        self.loop = loop
        self.clock = clock
        self.frames = {name: self._load(name) for name in REPLAYED}
        times = [f[schemas.TIME_COLUMN[n]] for n, f in self.frames.items() if not f.empty]
        if not times:
            raise FileNotFoundError(f"no recording found in {self.data_dir}")
        self.rec_start = min(t.min() for t in times)
        self.rec_end = max(t.max() for t in times)
        self.period_s = (self.rec_end - self.rec_start).total_seconds() + 1.0
        self.backfill_s = backfill * self.period_s
        self.wall_start = clock()
        self.emitted_upto = -1.0  # virtual seconds since rec_start, across cycles
        self.spans = self._offset_spans()

    def _load(self, name: str) -> pd.DataFrame:
        path = self.data_dir / f"{name}.parquet"
        if not path.exists():
            return schemas.empty(name)
        frame = schemas.conform(name, pd.read_parquet(path))
        tcol = schemas.TIME_COLUMN[name]
        frame = frame.sort_values(tcol, kind="stable").reset_index(drop=True)
        return frame

    def _offset_spans(self) -> dict[tuple[str, str, int], int]:
        topics = self.frames["topics"]
        if topics.empty:
            return {}
        grouped = topics.groupby(["broker", "topic", "partition"], observed=True)["end"]
        return {k: int((v.max() - v.min()) or 0) + 1 for k, v in grouped}

    def virtual_now(self) -> float:
        """Seconds of recording played so far (grows past one period when looping)."""
        return self.backfill_s + (self.clock() - self.wall_start) * self.speed

    def collect(self) -> dict[str, pd.DataFrame]:
        upto = self.virtual_now()
        if not self.loop:
            upto = min(upto, self.period_s)
        lo, hi = self.emitted_upto, upto
        out = {name: [] for name in REPLAYED}
        first_cycle = max(0, int(lo // self.period_s))
        for cycle in range(first_cycle, int(hi // self.period_s) + 1):
            base = cycle * self.period_s
            for name, frame in self.frames.items():
                if frame.empty:
                    continue
                tcol = schemas.TIME_COLUMN[name]
                rel = (frame[tcol] - self.rec_start).dt.total_seconds() + base
                chunk = frame[(rel > lo) & (rel <= hi)]
                if not chunk.empty:
                    out[name].append(self._shift(name, chunk, cycle))
        self.emitted_upto = hi
        return {name: (schemas.conform(name, pd.concat(parts, ignore_index=True))
                       if parts else schemas.empty(name)) for name, parts in out.items()}

    def _shift(self, name: str, chunk: pd.DataFrame, cycle: int) -> pd.DataFrame:
        chunk = chunk.copy()
        # wall time of a recorded instant t in this cycle
        origin = pd.Timestamp(self.wall_start, unit="s", tz="UTC")
        base = cycle * self.period_s - self.backfill_s
        for col, (dtype, _) in schemas.SCHEMAS[name].items():
            if dtype == schemas.TIME:
                rel = (chunk[col] - self.rec_start).dt.total_seconds() + base
                chunk[col] = origin + pd.to_timedelta(rel / self.speed, unit="s")
        chunk["source"] = self.source
        if cycle:
            chunk = self._retag(name, chunk, cycle)
        return chunk

    def _retag(self, name: str, chunk: pd.DataFrame, cycle: int) -> pd.DataFrame:
        if name not in ("lag", "topics", "events"):
            return chunk  # no offsets or IDs to move forward
        keys = list(zip(chunk["broker"], chunk["topic"], chunk["partition"]))
        if name in ("lag", "topics"):
            shift = pd.Series([self.spans.get(k, 0) * cycle for k in keys], index=chunk.index,
                              dtype="Int64")
            for col in ("committed", "end", "start"):
                if col in chunk:
                    chunk[col] = chunk[col] + shift
        if name == "events":
            tag = f"~{cycle}"
            for col in ("correlation_id", "event_id"):
                chunk[col] = chunk[col].where(chunk[col].isna(), chunk[col] + tag)
            prefix = f"{cycle:08x}"
            chunk["trace_id"] = chunk["trace_id"].where(
                chunk["trace_id"].isna(), prefix + chunk["trace_id"].str.slice(8))
            is_kafka = chunk["kind"] == "kafka"
            shift = pd.Series([self.spans.get(k, 0) * cycle for k in keys], index=chunk.index)
            as_int = pd.to_numeric(chunk["offset"].where(is_kafka), errors="coerce")
            chunk["offset"] = chunk["offset"].where(~is_kafka, (as_int + shift).astype("Int64").astype("string"))
        return chunk

    def close(self) -> None:
        """Nothing to release."""


def write_recording(store_frames: dict[str, pd.DataFrame], out_dir: str | Path, meta: dict) -> None:
    """Save frames as a recording (one Parquet file per frame, zstd) plus ``meta.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in store_frames.items():
        schemas.conform(name, frame).to_parquet(out / f"{name}.parquet", index=False,
                                                compression="zstd")
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
