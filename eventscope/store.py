"""The store: frames as Parquet files under a directory, sized by what users look at.

Three kinds of frame (``schemas.KIND``):

* **log** frames (``events``, ``health``, ``alerts``, the rollups ``lag_1m`` and
  ``dlq_1m``) keep their rows for the whole retention (``Retention.max_age_s``).
* **raw** frames (``lag``, ``topics``, ``consumers``, ``stuck``, ``dlq``): every row of
  every sample, kept only for ``Retention.raw_window_s``. At 1,000 groups × 40 partitions
  a sample holds 40,000 lag rows; six hours of them would be 170 million. What history
  needs is in the rollups and the snapshots, computed when a sample is written
  (:mod:`eventscope.recorder`).
* **snapshot** frames (``*_latest``, ``lag_groups``, a rollup's open minute): one file,
  replaced whole on each write.

Layout: ``<root>/<frame>/MANIFEST.json`` lists the immutable part files of a log or raw
frame, each with its row count and time range; a snapshot frame is
``<root>/<frame>/snapshot.parquet``. Writers (one collector process; a file lock
serialises them anyway) write a file under a temporary name, flush it to disk, and
``os.replace`` it into place, then replace the manifest the same way. Readers read the
manifest once and then only the parts it names, so a reader running during a write
sees either the old set of parts or the new one, never half a snapshot.

Retention: reads filter rows older than the frame's age limit; every ``compact_every``
appends a log frame's small parts are merged, dropping expired rows and keeping at
most ``max_rows`` newest rows; a cut made by ``max_rows`` inside the retention is
recorded in the manifest and reported by :meth:`Store.caps`, so a page or the CLI can
say that history is shorter than promised. Raw frames only drop whole expired parts.
Parts dropped are deleted after a grace period, because a reader may have read the
previous manifest a moment ago.

Reads push the time range, the columns and simple equality filters down to the
Parquet files (pyarrow); nothing is cached here (the query layer caches results).

Each ``events`` part has its trace index beside it (``<part>.trace-index.npz``, see
``trace_index.py``), written with the part and deleted with it.

A part that cannot be read (a disk that lost its end, a file someone truncated) costs its
own rows and nothing else: readers skip it, and :meth:`Store.damage` names it with its time
range so pages and the CLI can say which history is missing; the writer moves it to
``<frame>/damaged/`` when it next touches it (compaction) and keeps that record in the
manifest. A damaged snapshot reads as empty until the next sample replaces it.
"""
from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from eventscope import schemas
from eventscope.files import DamagedPart
from eventscope.files import open_private
from eventscope.files import write_atomically as _write_atomically
from eventscope.trace_index import INDEX_SUFFIX, PartIndex
from eventscope.trace_index import KEYS as INDEX_KEYS

log = logging.getLogger("eventscope.store")

GRACE_S = 60.0
TARGET_ROWS = 250_000  # parts this big are never merged again
SNAPSHOT_FILE = "snapshot.parquet"
ROW_GROUP_ROWS = 65_536
# a merge copies rows in batches of this many, and writes a row group once it holds
# ROW_GROUP_ROWS rows or this many bytes (64k events of a few kB each would be hundreds of MB)
MERGE_BATCH_ROWS = 8_192
MERGE_GROUP_BYTES = 8 * 2**20
DAMAGED_KEPT = 100  # quarantined parts a manifest remembers
CHECKED_MAX = 10_000  # part paths a process remembers as whole
# what reading a file that is not (or no longer) whole Parquet raises; FileNotFoundError is not
# damage (a part compacted away) and is handled where it can happen
UNREADABLE = (pa.ArrowException, OSError, ValueError)


@dataclass(frozen=True)
class Retention:
    """How much history the store keeps per frame."""

    max_age_s: float = 6 * 3600.0
    max_rows: int = 2_000_000
    compact_every: int = 32
    raw_window_s: float = 900.0

    def age_s(self, name: str) -> float:
        """How long rows of ``name`` are kept."""
        return self.raw_window_s if schemas.KIND[name] == "raw" else self.max_age_s


class Store:
    """Frames on disk; safe to share between one writer process and many readers."""

    def __init__(self, root: str | os.PathLike, retention: Retention | None = None):
        self.root = Path(root)
        self.retention = retention or Retention()
        self._damaged: dict[tuple[str, str], dict] = {}  # (frame, part file) -> its record
        self._checked: set[str] = set()  # part paths whose footer was found whole

    # -- writing ---------------------------------------------------------------
    def append(self, name: str, frame: pd.DataFrame) -> None:
        """Append rows to a log or raw frame as a new immutable part."""
        if schemas.KIND[name] == "snapshot":
            raise ValueError(f"{name!r} is a snapshot frame: use put()")
        frame = schemas.conform(name, frame)
        if frame.empty:
            return
        tcol = schemas.TIME_COLUMN[name]
        folder = self._folder(name)
        with self._locked(folder):
            part = _new_part_name()
            self._write_part(name, frame, folder / part)
            manifest = self._quarantine(name, folder, self._read_manifest(folder))
            manifest["parts"].append(_part_entry(part, frame, tcol))
            manifest["appends"] = manifest.get("appends", 0) + 1
            if manifest["appends"] % self.retention.compact_every == 0:
                manifest = self._compact(name, folder, manifest)  # a raw frame: footers and expiry
            elif schemas.KIND[name] == "raw":
                manifest = self._expire(name, manifest)
            self._write_manifest(folder, manifest)
            self._delete_expired_garbage(folder, manifest)

    def put(self, name: str, frame: pd.DataFrame) -> None:
        """Replace the whole of a snapshot frame."""
        if schemas.KIND[name] != "snapshot":
            raise ValueError(f"{name!r} is not a snapshot frame: use append()")
        frame = schemas.conform(name, frame)
        folder = self._folder(name)
        _write_parquet(frame, folder / SNAPSHOT_FILE)

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
            if schemas.KIND[name] == "snapshot":
                (folder / SNAPSHOT_FILE).unlink(missing_ok=True)
                continue
            with self._locked(folder):
                manifest = self._read_manifest(folder)
                garbage = manifest.get("garbage", []) + [[p["file"], time.time()] for p in manifest["parts"]]
                self._write_manifest(folder, {"parts": [], "garbage": garbage,
                                              "appends": manifest.get("appends", 0)})

    # -- reading ---------------------------------------------------------------
    def read(self, name: str, since: pd.Timestamp | None = None, until: pd.Timestamp | None = None,
             columns: list[str] | None = None, where: dict | None = None) -> pd.DataFrame:
        """Rows of ``name`` with time in [since, until], oldest first.

        ``columns`` picks columns (all by default); ``where`` maps a column to a value or a
        list of values it must equal. Both are applied inside the Parquet reader."""
        if schemas.KIND[name] == "snapshot":
            return self.get(name, columns=columns, where=where)
        tcol = schemas.TIME_COLUMN[name]
        floor = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=self.retention.age_s(name))
        since = floor if since is None else max(_utc(since), floor)
        until = None if until is None else _utc(until)
        filters = _filters(where) + [(tcol, ">=", since)] + ([(tcol, "<=", until)] if until is not None else [])
        wanted = _columns(name, columns, tcol)
        for attempt in range(3):
            manifest = self._read_manifest(self._folder(name, create=False))
            folder = self._folder(name, create=False)
            try:
                tables = [self._read_part(name, folder, p, wanted, filters)
                          for p in self.readable(name, manifest["parts"]) if _overlaps(p, since, until)]
                break
            except FileNotFoundError:
                # A part vanished between manifest read and file read: only possible
                # if this reader stalled longer than GRACE_S. Read the new manifest.
                if attempt == 2:
                    raise
        out = _frame(name, tables, wanted)
        if not out[tcol].is_monotonic_increasing:
            out = out.sort_values(tcol, kind="stable").reset_index(drop=True)
        return out if columns is None or tcol in columns else out.drop(columns=[tcol])

    def get(self, name: str, columns: list[str] | None = None, where: dict | None = None) -> pd.DataFrame:
        """The current rows of a snapshot frame (empty when never written)."""
        wanted = _columns(name, columns, None)
        try:
            # one open for the footer and the pages: a writer replacing the snapshot between two
            # opens by name made a reader mix the old footer with the new file ("Page was
            # smaller than expected"); an open file keeps its own inode
            with open(self._folder(name, create=False) / SNAPSHOT_FILE, "rb") as fh:
                present = set(pq.read_schema(fh).names)
                fh.seek(0)
                table = pq.read_table(fh, columns=[c for c in wanted if c in present],
                                      filters=_filters(where) or None)
        except FileNotFoundError:
            table = None
        except UNREADABLE as exc:  # the next sample replaces it; until then, nothing to show
            log.warning("store: %s snapshot unreadable, shown empty until the next sample: %s", name, exc)
            table = None
        return _frame(name, [table] if table is not None else [], wanted)

    def part_entries(self, name: str) -> list[dict]:
        """The manifest's current parts of ``name``: ``{file, rows, tmin, tmax}`` each."""
        return list(self._read_manifest(self._folder(name, create=False))["parts"])

    def part_path(self, name: str, file: str) -> Path:
        """Where a part (or a file kept beside it) of ``name`` lives."""
        return self._folder(name, create=False) / file

    def load_part(self, name: str, file: str) -> pd.DataFrame:
        """One whole part of ``name`` (for structures kept per part: the trace index).
        Raises :class:`DamagedPart` (and remembers it) when the file cannot be read."""
        path = self._folder(name, create=False) / file
        try:
            return schemas.conform(name, pd.read_parquet(path))
        except FileNotFoundError:
            raise
        except UNREADABLE as exc:
            self.mark_damaged(name, file, exc)
            raise DamagedPart(f"{name}/{file}: {exc}") from exc

    def load_rows(self, name: str, file: str, positions, rows: int) -> pd.DataFrame:
        """The rows at ``positions`` (sorted, unique) of one part of ``name`` that holds ``rows``
        rows, in that order, reading only the row groups that hold them. Raises ValueError when
        the part does not hold ``rows`` rows, :class:`DamagedPart` when it cannot be read."""
        path = self._folder(name, create=False) / file
        with self._reading(name, path):
            parquet = pq.ParquetFile(path)
        if parquet.metadata.num_rows != rows:
            raise ValueError(f"part has {parquet.metadata.num_rows} rows, its index {rows}")
        sizes = np.array([parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)])
        starts = np.cumsum(sizes) - sizes  # each row group's first row in the part
        positions = np.asarray(positions, dtype=np.int64)
        group_of = np.searchsorted(starts, positions, side="right") - 1
        groups = np.unique(group_of)
        with self._reading(name, path):
            table = parquet.read_row_groups(groups.tolist())
        read_at = np.cumsum(sizes[groups]) - sizes[groups]  # each group's first row in what was read
        at = positions - starts[group_of] + read_at[np.searchsorted(groups, group_of)]
        return schemas.conform(name, table.take(pa.array(at)).to_pandas())

    # -- damaged parts ---------------------------------------------------------
    def readable(self, name: str, parts: list[dict]) -> list[dict]:
        """``parts`` without the ones found damaged."""
        return [p for p in parts if (name, p["file"]) not in self._damaged]

    def mark_damaged(self, name: str, file: str, exc: BaseException) -> None:
        """Remember that a part of ``name`` cannot be read (warned once per part)."""
        if (name, file) in self._damaged:
            return
        entry = next((p for p in self._read_manifest(self._folder(name, create=False))["parts"]
                      if p["file"] == file), {"file": file, "rows": None, "tmin": None, "tmax": None})
        error = " ".join(str(exc).split())[:200] or exc.__class__.__name__
        self._damaged[(name, file)] = {**entry, "frame": name, "error": error}
        log.warning("store: %s part %s (%s rows, %s to %s) cannot be read and is skipped: %s",
                    name, file, entry["rows"], entry["tmin"], entry["tmax"], error)

    def find_damaged(self, name: str, files: list[str]) -> bool:
        """Check the footers of ``files`` (paths of parts of ``name``) not checked before;
        True when one of them is damaged (now remembered). For a query engine that failed
        on a list of parts and cannot say which."""
        found = False
        for path in files:
            if path in self._checked:
                continue
            try:
                pq.read_metadata(path)
                # parts come and go: a bound, not a ledger (10,000 paths are ~1.5 MB; a
                # clear costs one footer read of each part still current)
                if len(self._checked) >= CHECKED_MAX:
                    self._checked.clear()
                self._checked.add(path)
            except FileNotFoundError:
                continue
            except UNREADABLE as exc:
                self.mark_damaged(name, Path(path).name, exc)
                found = True
        return found

    def damage(self) -> list[dict]:
        """Parts that could not be read and whose time range is still within retention:
        ``{frame, file, rows, tmin, tmax, error}`` each (moved aside by the writer, or found
        by this process). Their rows are missing from every answer."""
        out, seen = [], set()
        for name, kind in schemas.KIND.items():
            if kind == "snapshot":
                continue
            floor = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=self.retention.age_s(name))
            recorded = self._read_manifest(self._folder(name, create=False)).get("damaged", [])
            mine = [d for (frame, _), d in self._damaged.items() if frame == name]
            for d in [*recorded, *mine]:
                if d["file"] in seen or (d.get("tmax") and pd.Timestamp(d["tmax"]) < floor):
                    continue
                seen.add(d["file"])
                out.append({"frame": name, "file": d["file"], "rows": d.get("rows"),
                            "tmin": None if not d.get("tmin") else pd.Timestamp(d["tmin"]),
                            "tmax": None if not d.get("tmax") else pd.Timestamp(d["tmax"]),
                            "error": d.get("error", "")})
        return out

    def _read_part(self, name: str, folder: Path, part: dict, wanted: list[str], filters) -> pa.Table | None:
        path = folder / part["file"]
        try:
            return pq.read_table(path, columns=_in_file(path, wanted), filters=filters)
        except FileNotFoundError:
            raise
        except UNREADABLE as exc:
            self.mark_damaged(name, part["file"], exc)
            return None

    def _quarantine(self, name: str, folder: Path, manifest: dict) -> dict:
        """(Writer, under the lock.) Parts of ``name`` found damaged leave the manifest for
        ``<frame>/damaged/``; the manifest keeps their record."""
        bad = {file for (frame, file) in self._damaged if frame == name}
        moved = [p for p in manifest["parts"] if p["file"] in bad]
        if not moved:
            return manifest
        aside = folder / "damaged"
        aside.mkdir(mode=0o700, exist_ok=True)
        for part in moved:
            for file in (part["file"], part["file"] + INDEX_SUFFIX):
                try:
                    os.replace(folder / file, aside / file)
                except FileNotFoundError:
                    pass
            record = self._damaged.pop((name, part["file"]))
            manifest.setdefault("damaged", []).append({**part, "error": record["error"],
                                                       "moved_at": pd.Timestamp.now(tz="UTC").isoformat()})
        manifest["damaged"] = manifest["damaged"][-DAMAGED_KEPT:]
        manifest["parts"] = [p for p in manifest["parts"] if p["file"] not in bad]
        return manifest

    def files(self, name: str) -> list[Path]:
        """The files holding ``name`` now (parts named by the manifest, or the snapshot)."""
        folder = self._folder(name, create=False)
        if schemas.KIND[name] == "snapshot":
            path = folder / SNAPSHOT_FILE
            return [path] if path.exists() else []
        return [folder / p["file"] for p in self._read_manifest(folder)["parts"]]

    def version(self, name: str) -> str:
        """A token that changes whenever ``name`` gets new data (a cache key)."""
        folder = self._folder(name, create=False)
        path = folder / (SNAPSHOT_FILE if schemas.KIND[name] == "snapshot" else "MANIFEST.json")
        try:
            st = path.stat()
        except FileNotFoundError:
            return "empty"
        return f"{st.st_mtime_ns}-{st.st_size}"

    def newest_time(self, name: str) -> pd.Timestamp | None:
        """Time of the newest row of a log or raw frame, from its manifest alone."""
        parts = self._read_manifest(self._folder(name, create=False))["parts"]
        if not parts:
            return None
        return max(pd.Timestamp(p["tmax"]) for p in parts)

    def caps(self) -> list[dict]:
        """Frames whose history ``max_rows`` cut short of the retention:
        ``{frame, kept_since, max_rows, retention_hours}`` each."""
        out = []
        floor = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=self.retention.max_age_s)
        for name, kind in schemas.KIND.items():
            if kind != "log":
                continue
            capped = self._read_manifest(self._folder(name, create=False)).get("capped")
            if capped and pd.Timestamp(capped["kept_since"]) > floor:
                out.append({"frame": name, "kept_since": pd.Timestamp(capped["kept_since"]),
                            "max_rows": int(capped["max_rows"]),
                            "retention_hours": self.retention.max_age_s / 3600.0})
        return out

    # -- internals -------------------------------------------------------------
    def _folder(self, name: str, create: bool = True) -> Path:
        if name not in schemas.SCHEMAS:
            raise KeyError(f"unknown frame {name!r}")
        folder = self.root / name
        if create and not folder.is_dir():
            # what the store holds (payloads, reasons, names) is its owner's alone
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.mkdir(mode=0o700, exist_ok=True)
        return folder

    @contextmanager
    def _locked(self, folder: Path):
        with open_private(folder / ".lock") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _expire(self, name: str, manifest: dict) -> dict:
        """A raw frame drops the parts that left its window; nothing is merged."""
        floor = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=self.retention.age_s(name))
        expired = [p for p in manifest["parts"] if pd.Timestamp(p["tmax"]) < floor]
        if not expired:
            return manifest
        gone = {p["file"] for p in expired}
        return {**manifest, "parts": [p for p in manifest["parts"] if p["file"] not in gone],
                "garbage": manifest.get("garbage", []) + [[f, time.time()] for f in sorted(gone)]}

    def _compact(self, name: str, folder: Path, manifest: dict, full: bool = False) -> dict:
        """Size-tiered: merge runs of small parts; drop parts wholly past retention.

        Parts at or above ``TARGET_ROWS`` are left alone, so an append costs the
        same whether the frame holds a thousand rows or millions. ``full=True``
        rewrites everything and applies retention exactly.
        """
        # footers first (each file once): a damaged part goes aside instead of failing the merge
        self.find_damaged(name, [str(folder / p["file"]) for p in manifest["parts"]])
        manifest = self._quarantine(name, folder, manifest)
        if schemas.KIND[name] == "raw":
            return self._expire(name, manifest)
        tcol = schemas.TIME_COLUMN[name]
        floor = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=self.retention.age_s(name))
        parts = sorted(manifest["parts"], key=lambda p: p["tmin"])
        dropped = [p for p in parts if pd.Timestamp(p["tmax"]) < floor]
        parts = [p for p in parts if pd.Timestamp(p["tmax"]) >= floor]
        total = sum(p["rows"] for p in parts)
        capped = manifest.get("capped")
        while parts and total - parts[0]["rows"] >= self.retention.max_rows:
            total -= parts[0]["rows"]
            dropped.append(parts.pop(0))
            capped = {"kept_since": parts[0]["tmin"], "max_rows": self.retention.max_rows}
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
        written = []
        for group in groups:
            try:
                entry, cut = self._merge(name, folder, group, tcol, floor if full else None)
            except DamagedPart:  # a page inside a part with a whole footer: aside now, merge next time
                manifest = {**manifest, "garbage": manifest.get("garbage", []) + [
                    [e["file"], time.time()] for e in written]}
                return self._quarantine(name, folder, manifest)
            if entry is not None:
                written.append(entry)
                kept.append(entry)
                if cut:
                    capped = {"kept_since": entry["tmin"], "max_rows": self.retention.max_rows}
        old = [p["file"] for p in dropped] + sorted(merged_away)
        garbage = manifest.get("garbage", []) + [[f, time.time()] for f in old]
        kept.sort(key=lambda p: p["tmin"])
        out = {"parts": kept, "garbage": garbage, "appends": manifest.get("appends", 0)}
        if manifest.get("damaged"):
            out["damaged"] = manifest["damaged"]
        if capped:
            out["capped"] = capped
        return self._quarantine(name, folder, out)

    def _merge(self, name: str, folder: Path, group: list[dict], tcol: str,
               floor: pd.Timestamp | None) -> tuple[dict | None, bool]:
        """Merge ``group``'s parts into one (a full compaction passes ``floor``: rows older are
        dropped, and at most ``max_rows`` of the newest kept), in Arrow: a quarter million
        rows of text columns take tens of MB as Arrow buffers and hundreds as Python
        strings. Returns the new part's manifest entry (None when no row is left) and whether
        ``max_rows`` cut rows."""
        if floor is None and name not in schemas.SORT:
            return self._merge_streaming(name, folder, group, tcol), False
        tables = []
        for p in group:
            with self._reading(name, folder / p["file"]):
                tables.append(pq.read_table(folder / p["file"]).replace_schema_metadata(None))
        table = pa.concat_tables(tables, promote_options="permissive")
        del tables
        capped = False
        if floor is not None:
            ns = pc.cast(table[tcol], pa.int64())
            table = table.filter(pc.greater_equal(ns, pa.scalar(floor.value, pa.int64())))
            table = table.sort_by([(tcol, "ascending")])
            if table.num_rows > self.retention.max_rows:
                table = table.slice(table.num_rows - self.retention.max_rows)
                capped = True
        if table.num_rows == 0:
            return None, capped
        part = _new_part_name()
        if name == "events":  # its trace index first, as _write_part does
            PartIndex.from_arrow(table).save(folder / (part + INDEX_SUFFIX))
        if name in schemas.SORT:
            _write_sorted(table, schemas.SORT[name], folder / part)
        else:
            _write_table(table, folder / part)
        bounds = pc.min_max(pc.cast(table[tcol], pa.int64()))
        return {"file": part, "rows": int(table.num_rows), "tmin": _stamp(bounds["min"].as_py()),
                "tmax": _stamp(bounds["max"].as_py())}, capped

    def _merge_streaming(self, name: str, folder: Path, group: list[dict], tcol: str) -> dict | None:
        """:meth:`_merge` of parts whose rows stay as they are (no cut, no sort): they are
        copied a batch at a time into the new part, so merging holds at most one row group
        (64k rows or ``MERGE_GROUP_BYTES``) at a time, not the whole merged part (a quarter
        million events, ~80 MB of Arrow buffers). Columns are unified as
        ``concat_tables(promote_options="permissive")`` would."""
        files = [folder / p["file"] for p in group]
        found = []
        for f in files:
            with self._reading(name, f):
                found.append(pq.read_schema(f).remove_metadata())
        schema = pa.unify_schemas(found, promote_options="permissive")
        part = _new_part_name()
        if name == "events":  # its trace index first, as _write_part does
            keys = []
            for f in files:
                with self._reading(name, f):
                    keys.append(_conformed(pq.read_table(f, columns=_in_file(f, list(INDEX_KEYS))),
                                           schema, INDEX_KEYS))
            keys = pa.concat_tables(keys)
            if keys.num_rows == 0:
                return None
            PartIndex.from_arrow(keys).save(folder / (part + INDEX_SUFFIX))
            del keys
        counted = {"rows": 0, "min": None, "max": None}

        def count(table: pa.Table) -> None:
            bounds = pc.min_max(pc.cast(table[tcol], pa.int64()))
            lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
            counted["rows"] += table.num_rows
            if lo is not None and (counted["min"] is None or lo < counted["min"]):
                counted["min"] = lo
            if hi is not None and (counted["max"] is None or hi > counted["max"]):
                counted["max"] = hi

        def copy(fh) -> None:
            with pq.ParquetWriter(fh, schema) as writer:
                pending: list[pa.Table] = []
                for f in files:
                    for batch in self._batches(name, f):
                        table = _conformed(pa.Table.from_batches([batch]), schema)
                        count(table)
                        pending.append(table)
                        while pending and (sum(t.num_rows for t in pending) >= ROW_GROUP_ROWS
                                           or sum(t.nbytes for t in pending) >= MERGE_GROUP_BYTES):
                            whole = pa.concat_tables(pending)
                            cut = min(whole.num_rows, ROW_GROUP_ROWS)
                            writer.write_table(whole.slice(0, cut), row_group_size=cut)
                            pending = [whole.slice(cut)] if whole.num_rows > cut else []
                if pending:
                    writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)

        try:
            _write_atomically(folder / part, copy)
        except BaseException:
            (folder / (part + INDEX_SUFFIX)).unlink(missing_ok=True)
            raise
        if counted["rows"] == 0:
            (folder / part).unlink(missing_ok=True)
            (folder / (part + INDEX_SUFFIX)).unlink(missing_ok=True)
            return None
        return {"file": part, "rows": counted["rows"], "tmin": _stamp(counted["min"]), "tmax": _stamp(counted["max"])}

    def _batches(self, name: str, path: Path):
        """``path``'s rows in record batches of ``MERGE_BATCH_ROWS``, read under :meth:`_reading`
        (what the caller does with a batch is not)."""
        with self._reading(name, path):
            batches = pq.ParquetFile(path).iter_batches(batch_size=MERGE_BATCH_ROWS)
        while True:
            with self._reading(name, path):
                batch = next(batches, None)
            if batch is None:
                return
            yield batch

    @contextmanager
    def _reading(self, name: str, path: Path):
        """A read of one part (for a merge, or a lookup's rows): a part that cannot be read is
        marked damaged and the read stops with :class:`DamagedPart` (a part gone is not damage:
        it propagates)."""
        try:
            yield
        except FileNotFoundError:
            raise
        except UNREADABLE as exc:
            self.mark_damaged(name, path.name, exc)
            raise DamagedPart(f"{name}/{path.name}: {exc}") from exc

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
        _write_parquet(frame, path)

    @staticmethod
    def _read_manifest(folder: Path) -> dict:
        try:
            with open(folder / "MANIFEST.json", encoding="utf-8") as fh:
                return json.load(fh)
        except FileNotFoundError:
            return {"parts": [], "garbage": []}

    @staticmethod
    def _write_manifest(folder: Path, manifest: dict) -> None:
        _write_atomically(folder / "MANIFEST.json", lambda fh: fh.write(json.dumps(manifest).encode("utf-8")))


def _new_part_name() -> str:
    """A part's file name: time-ordered, unique across processes."""
    return f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """A frame's Parquet in row groups of 64k rows (a filtered read skips the ones whose
    statistics exclude it), written by :func:`_write_atomically`."""
    _write_atomically(path, lambda fh: frame.to_parquet(fh, index=False, row_group_size=ROW_GROUP_ROWS))


def _write_table(table: pa.Table, path: Path) -> None:
    """:func:`_write_parquet` of an Arrow table."""
    _write_atomically(path, lambda fh: pq.write_table(table, fh, row_group_size=ROW_GROUP_ROWS))


def _write_sorted(table: pa.Table, keys: list[str], path: Path) -> None:
    """:func:`_write_table` of ``table`` sorted by ``keys``, a row group at a time: the sorted
    copy is never whole. Merging a rollup's 200,000 rows held the merged table and its sorted
    copy at once, the collector's highest moment on a big cluster."""
    order = pc.sort_indices(table, sort_keys=[(c, "ascending") for c in keys])

    def write(fh) -> None:
        with pq.ParquetWriter(fh, table.schema) as writer:
            for at in range(0, len(order), ROW_GROUP_ROWS):
                writer.write_table(table.take(order.slice(at, ROW_GROUP_ROWS)), row_group_size=ROW_GROUP_ROWS)
    _write_atomically(path, write)


def _columns(name: str, columns: list[str] | None, tcol: str | None) -> list[str]:
    schema = schemas.SCHEMAS[name]
    if columns is None:
        return list(schema)
    unknown = [c for c in columns if c not in schema]
    if unknown:
        raise KeyError(f"frame {name!r} has no column(s) {unknown}")
    wanted = list(columns)
    if tcol is not None and tcol not in wanted:
        wanted.append(tcol)  # the time filter and the ordering need it
    return wanted


def file_columns(path: Path) -> frozenset[str]:
    """The columns a Parquet file holds (its footer, read once per file: files never change)."""
    return _file_columns(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _file_columns(path: str, _mtime_ns: int) -> frozenset[str]:
    return _shared(frozenset(pq.read_schema(path).names))


_COLUMN_SETS: dict[frozenset, frozenset] = {}  # each distinct set of columns, once
COLUMN_SETS_MAX = 256


def _shared(columns: frozenset[str]) -> frozenset[str]:
    """One object per distinct set of columns: a store's parts have a handful (one per frame
    and schema version), and 4,096 cached copies of an events part's 28 names held 16 MB,
    filled over the first half hour of a big cluster's dashboard."""
    found = _COLUMN_SETS.get(columns)
    if found is not None:
        return found
    if len(_COLUMN_SETS) < COLUMN_SETS_MAX:
        _COLUMN_SETS[columns] = columns
    return columns


def _stamp(ns: int | None) -> str:
    """A merged part's time bound for its manifest entry: nanoseconds since the epoch, as ISO 8601."""
    return pd.Timestamp(ns, tz="UTC").isoformat()


def _conformed(table: pa.Table, schema: pa.Schema, columns=None) -> pa.Table:
    """``table`` with ``schema``'s columns (or those of them named in ``columns``), in its
    order and types: a column the table lacks is null, a narrower type is widened."""
    fields = [schema.field(c) for c in columns] if columns is not None else list(schema)
    arrays = [table.column(f.name).cast(f.type) if f.name in table.column_names
              else pa.nulls(table.num_rows, f.type) for f in fields]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _in_file(path: Path, wanted: list[str]) -> list[str]:
    """``wanted`` without the columns ``path`` predates (a store written by an older
    eventscope): :func:`_frame` fills them with nulls."""
    present = file_columns(path)
    return wanted if present.issuperset(wanted) else [c for c in wanted if c in present]


def _filters(where: dict | None) -> list[tuple]:
    out = []
    for column, value in (where or {}).items():
        if isinstance(value, (list, tuple, set, frozenset)):
            out.append((column, "in", list(value)))
        else:
            out.append((column, "==", value))
    return out


def _frame(name: str, tables: list, columns: list[str]) -> pd.DataFrame:
    tables = [t for t in tables if t is not None and t.num_rows]
    if not tables:
        return schemas.empty(name)[columns]
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    return schemas.conform(name, table.to_pandas(), columns=columns)


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
