"""The store: append-only snapshots of frames, as Parquet parts under a directory.

Layout: ``<root>/<frame>/MANIFEST.json`` lists the immutable part files that make
up the frame, each with its row count and time range. Writers (one collector
process; a file lock serialises them anyway) write a new part to a temporary name,
``os.replace`` it into place, then replace the manifest the same way. Readers read
the manifest once and then only the parts it names, so a reader running during a
write sees either the old set of parts or the new one, never half a snapshot.

Retention: reads filter rows older than ``max_age_s``; every ``compact_every``
appends the parts are merged into one, dropping expired rows and keeping at most
``max_rows`` newest rows. Parts dropped by a compaction are deleted only after a
grace period, because a reader may have read the previous manifest a moment ago.

Parts never change once written, so each process caches decoded parts by file
name: reading the same window twice costs a manifest read and a concat.

Each ``events`` part has its trace index beside it (``<part>.trace-index.npz``, see
``analysis/trace_index.py``), written with the part and deleted with it.
"""
from __future__ import annotations

import fcntl
import json
import os
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from eventscope import schemas
from eventscope.analysis.trace_index import INDEX_SUFFIX, PartIndex

GRACE_S = 60.0
TARGET_ROWS = 250_000  # parts this big are never merged again


@dataclass(frozen=True)
class Retention:
    """How much history the store keeps per frame."""

    max_age_s: float = 6 * 3600.0
    max_rows: int = 2_000_000
    compact_every: int = 32


class Store:
    """Frames on disk; safe to share between one writer process and many readers."""

    def __init__(self, root: str | os.PathLike, retention: Retention | None = None):
        self.root = Path(root)
        self.retention = retention or Retention()
        self._cache: dict[str, pd.DataFrame] = {}
        self._cache_lock = threading.Lock()

    # -- writing ---------------------------------------------------------------
    def append(self, name: str, frame: pd.DataFrame) -> None:
        """Append one snapshot (rows of one frame) as a new immutable part."""
        frame = schemas.conform(name, frame)
        if frame.empty:
            return
        tcol = schemas.TIME_COLUMN[name]
        folder = self._folder(name)
        with self._locked(folder):
            part = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
            self._write_part(name, frame, folder / part)
            manifest = self._read_manifest(folder)
            manifest["parts"].append(_part_entry(part, frame, tcol))
            manifest["appends"] = manifest.get("appends", 0) + 1
            if manifest["appends"] % self.retention.compact_every == 0:
                manifest = self._compact(name, folder, manifest)
            self._write_manifest(folder, manifest)
            self._delete_expired_garbage(folder, manifest)

    def compact(self, name: str) -> None:
        """Merge all parts of ``name`` into one, applying retention now."""
        folder = self._folder(name)
        with self._locked(folder):
            manifest = self._compact(name, folder, self._read_manifest(folder), full=True)
            self._write_manifest(folder, manifest)

    def clear(self) -> None:
        """Drop every frame (used to restart a sample-data replay from scratch)."""
        for name in schemas.SCHEMAS:
            folder = self.root / name
            if not folder.exists():
                continue
            with self._locked(folder):
                manifest = self._read_manifest(folder)
                garbage = manifest.get("garbage", []) + [[p["file"], time.time()] for p in manifest["parts"]]
                self._write_manifest(folder, {"parts": [], "garbage": garbage,
                                              "appends": manifest.get("appends", 0)})
        with self._cache_lock:
            self._cache.clear()

    # -- reading ---------------------------------------------------------------
    def read(self, name: str, since: pd.Timestamp | None = None,
             until: pd.Timestamp | None = None) -> pd.DataFrame:
        """Rows of ``name`` with time in [since, until], oldest first."""
        tcol = schemas.TIME_COLUMN[name]
        floor = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=self.retention.max_age_s)
        since = floor if since is None else max(_utc(since), floor)
        until = None if until is None else _utc(until)
        for attempt in range(3):
            manifest = self._read_manifest(self._folder(name, create=False))
            try:
                frames = [self._load(name, p["file"]) for p in manifest["parts"]
                          if _overlaps(p, since, until)]
                break
            except FileNotFoundError:
                # A part vanished between manifest read and file read: only possible
                # if this reader stalled longer than GRACE_S. Read the new manifest.
                if attempt == 2:
                    raise
        frames = [f for f in frames if not f.empty]
        if not frames:
            return schemas.empty(name)
        out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        mask = out[tcol] >= since
        if until is not None:
            mask &= out[tcol] <= until
        out = out[mask]
        if not out[tcol].is_monotonic_increasing:
            out = out.sort_values(tcol, kind="stable")
        return out.reset_index(drop=True)

    def read_parts(self, name: str) -> list[tuple[str, pd.DataFrame]]:
        """Every current part of ``name`` as (file name, frame), unfiltered.

        For derived structures kept per part (the trace index): parts never change, so
        a consumer can key its work on the file name. Apply retention yourself."""
        for attempt in range(3):
            manifest = self._read_manifest(self._folder(name, create=False))
            try:
                return [(p["file"], self._load(name, p["file"])) for p in manifest["parts"]]
            except FileNotFoundError:
                if attempt == 2:
                    raise
        return []

    def part_entries(self, name: str) -> list[dict]:
        """The manifest's current parts of ``name``: ``{file, rows, tmin, tmax}`` each."""
        return list(self._read_manifest(self._folder(name, create=False))["parts"])

    def part_path(self, name: str, file: str) -> Path:
        """Where a part (or a file kept beside it) of ``name`` lives."""
        return self._folder(name, create=False) / file

    def load_part(self, name: str, file: str) -> pd.DataFrame:
        """One part of ``name`` (cached per process; parts never change)."""
        return self._load(name, file)

    def latest(self, name: str, window_s: float = 3600.0) -> pd.DataFrame:
        """The newest snapshot per source: rows whose time equals that source's newest time."""
        tcol = schemas.TIME_COLUMN[name]
        since = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=window_s)
        frame = self.read(name, since=since)
        if frame.empty:
            return frame
        newest = frame.groupby("source", observed=True)[tcol].transform("max")
        return frame[frame[tcol] == newest].reset_index(drop=True)

    def version(self, name: str) -> str:
        """A token that changes whenever ``name`` gets new data (a cache key)."""
        path = self._folder(name, create=False) / "MANIFEST.json"
        try:
            st = path.stat()
        except FileNotFoundError:
            return "empty"
        return f"{st.st_mtime_ns}-{st.st_size}"

    def newest_time(self, name: str) -> pd.Timestamp | None:
        """Time of the newest row of ``name``, from the manifest alone."""
        parts = self._read_manifest(self._folder(name, create=False))["parts"]
        if not parts:
            return None
        return max(pd.Timestamp(p["tmax"]) for p in parts)

    # -- internals -------------------------------------------------------------
    def _folder(self, name: str, create: bool = True) -> Path:
        if name not in schemas.SCHEMAS:
            raise KeyError(f"unknown frame {name!r}")
        folder = self.root / name
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        return folder

    @contextmanager
    def _locked(self, folder: Path):
        with open(folder / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _load(self, name: str, file: str) -> pd.DataFrame:
        key = f"{name}/{file}"
        with self._cache_lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        frame = pd.read_parquet(self.root / name / file)
        frame = schemas.conform(name, frame)
        with self._cache_lock:
            self._cache[key] = frame
        return frame

    def _compact(self, name: str, folder: Path, manifest: dict, full: bool = False) -> dict:
        """Size-tiered: merge runs of small parts; drop parts wholly past retention.

        Parts at or above ``TARGET_ROWS`` are left alone, so an append costs the
        same whether the frame holds a thousand rows or millions. ``full=True``
        rewrites everything and applies retention exactly.
        """
        tcol = schemas.TIME_COLUMN[name]
        floor = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=self.retention.max_age_s)
        parts = sorted(manifest["parts"], key=lambda p: p["tmin"])
        dropped = [p for p in parts if pd.Timestamp(p["tmax"]) < floor]
        parts = [p for p in parts if pd.Timestamp(p["tmax"]) >= floor]
        total = sum(p["rows"] for p in parts)
        while parts and total - parts[0]["rows"] >= self.retention.max_rows:
            total -= parts[0]["rows"]
            dropped.append(parts.pop(0))
        groups: list[list[dict]] = []
        if full:
            groups = [parts] if parts else []
        else:
            run: list[dict] = []
            for part in parts:
                if part["rows"] >= TARGET_ROWS or sum(p["rows"] for p in run) + part["rows"] > TARGET_ROWS:
                    if len(run) > 1:
                        groups.append(run)
                    run = [] if part["rows"] >= TARGET_ROWS else [part]
                else:
                    run.append(part)
            if len(run) > 1:
                groups.append(run)
        merged_away = {p["file"] for g in groups for p in g}
        kept = [p for p in parts if p["file"] not in merged_away]
        for group in groups:
            frame = pd.concat([self._load(name, p["file"]) for p in group], ignore_index=True)
            if full:
                frame = frame[frame[tcol] >= floor]
                frame = frame.sort_values(tcol, kind="stable")
                if len(frame) > self.retention.max_rows:
                    frame = frame.iloc[-self.retention.max_rows:]
            frame = frame.reset_index(drop=True)
            if frame.empty:
                continue
            part = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
            self._write_part(name, frame, folder / part)
            kept.append(_part_entry(part, frame, tcol))
        old = [p["file"] for p in dropped] + sorted(merged_away)
        garbage = manifest.get("garbage", []) + [[f, time.time()] for f in old]
        with self._cache_lock:
            for f in old:
                self._cache.pop(f"{name}/{f}", None)
        kept.sort(key=lambda p: p["tmin"])
        return {"parts": kept, "garbage": garbage, "appends": manifest.get("appends", 0)}

    def _delete_expired_garbage(self, folder: Path, manifest: dict) -> None:
        now = time.time()
        keep = []
        for file, dropped_at in manifest.get("garbage", []):
            if now - dropped_at >= GRACE_S:
                (folder / file).unlink(missing_ok=True)
                (folder / (file + INDEX_SUFFIX)).unlink(missing_ok=True)
            else:
                keep.append([file, dropped_at])
        if len(keep) != len(manifest.get("garbage", [])):
            manifest["garbage"] = keep
            self._write_manifest(folder, manifest)

    def _write_part(self, name: str, frame: pd.DataFrame, path: Path) -> None:
        """A part's Parquet, and for ``events`` its trace index beside it (written first, so
        a part a manifest names always has its index, unless the disk lost it)."""
        if name == "events":
            PartIndex(frame).save(path.with_name(path.name + INDEX_SUFFIX))
        self._write_parquet(frame, path)

    @staticmethod
    def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)

    @staticmethod
    def _read_manifest(folder: Path) -> dict:
        try:
            with open(folder / "MANIFEST.json", encoding="utf-8") as fh:
                return json.load(fh)
        except FileNotFoundError:
            return {"parts": [], "garbage": []}

    @staticmethod
    def _write_manifest(folder: Path, manifest: dict) -> None:
        tmp = folder / f"MANIFEST.json.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh)
        os.replace(tmp, folder / "MANIFEST.json")


def _part_entry(file: str, frame: pd.DataFrame, tcol: str) -> dict:
    return {"file": file, "rows": int(len(frame)),
            "tmin": frame[tcol].min().isoformat(), "tmax": frame[tcol].max().isoformat()}


def _overlaps(part: dict, since: pd.Timestamp, until: pd.Timestamp | None) -> bool:
    if pd.Timestamp(part["tmax"]) < since:
        return False
    return until is None or pd.Timestamp(part["tmin"]) <= until


def _utc(ts) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
