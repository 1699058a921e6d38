"""The trace index: correlation ID, W3C trace ID and event ID → events, without a scan.

Kept per store part and persisted with it. When the store writes an ``events`` part
(an append or a compaction), it writes the part's index beside it
(``part-….parquet.trace-index.npz``); retention and compaction delete the two together.
A process opening the store loads these files instead of hashing every ID again, and
reads a part's Parquet only when a lookup has a candidate in it: a lookup in a store
of a million events reads the one or two parts that hold the trace. A part whose index
file is missing or unreadable (a store written before the index existed, a torn file)
is indexed in memory from its rows; readers never write into the store.

Per part and per key column, two numpy arrays: the 64-bit hashes of the non-empty
values, sorted, and the row position of each (``uint64`` + ``int32`` = 12 bytes per
value, 36 bytes per event for the three columns). A lookup is a binary search per
part and column; candidates are then compared as strings, so a hash collision can
cost a comparison but never returns a wrong event. The hash is pandas' ``hash_array``
(SipHash with a fixed key over UTF-8), the same in every process, so a saved index
stays valid.
"""
from __future__ import annotations

import threading
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from eventscope import schemas
from eventscope.files import DamagedPart, write_atomically

KEYS = ("correlation_id", "trace_id", "event_id")


INDEX_SUFFIX = ".trace-index.npz"
_FORMAT = 1


def _hashes(values) -> np.ndarray:
    """Stable 64-bit hashes of non-empty strings (the same in every process and run)."""
    values = np.asarray(values, dtype=object)
    if not len(values):
        return np.empty(0, dtype=np.uint64)
    return pd.util.hash_array(values, categorize=False)


def _key_arrays(pieces: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One key column's index from (hashes, row positions) of its non-empty values, in row
    order: the hashes sorted, each with its position (equal hashes keep row order)."""
    hashes = np.concatenate([h for h, _ in pieces]) if pieces else np.empty(0, dtype=np.uint64)
    positions = np.concatenate([p for _, p in pieces]) if pieces else np.empty(0, dtype=np.int64)
    order = np.argsort(hashes, kind="stable")
    return hashes[order], positions[order].astype(np.int32)


class PartIndex:
    """The index of one events frame (one store part, or any frame).

    Built from a frame, or opened from a saved index (:meth:`open`). Its rows come from the
    frame it was built from, from a ``loader`` that reads the whole part once on first need,
    or (a store's parts) from a ``reader`` that reads only the rows a lookup asks for, every
    time: nothing of the part stays in memory. A server that kept each part a lookup had
    read grew with every trace looked up, up to the whole events frame of a big cluster."""

    def __init__(self, frame: pd.DataFrame | None = None, *, keys=None, rows: int | None = None,
                 loader: Callable[[], pd.DataFrame] | None = None,
                 reader: Callable[[np.ndarray], pd.DataFrame] | None = None):
        self._frame = frame if reader is None else None
        self._loader = loader
        self._reader = reader  # sorted unique row positions -> those rows, in that order
        self.source = "frame"
        if keys is not None:
            self.keys = keys
            self.n_rows = int(rows)
            self.source = "saved"
            return
        self.n_rows = len(frame)
        self.keys: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for col in KEYS:
            series = frame[col]
            pos = np.flatnonzero((series.notna() & (series != "")).to_numpy(dtype=bool, na_value=False))
            self.keys[col] = _key_arrays([(_hashes(series.to_numpy(dtype=object, na_value=None)[pos]), pos)])

    @classmethod
    def from_arrow(cls, table: pa.Table, chunk_rows: int = 65_536) -> "PartIndex":
        """The index :meth:`__init__` builds from ``table``'s rows (its key columns), built
        ``chunk_rows`` at a time: only a chunk's IDs are ever Python strings. A compaction
        indexing a quarter million events as a frame held ~30 MB of strings at once, the
        collector's highest peak on a big cluster. The index is for :meth:`save`: it has no rows."""
        keys = {}
        for col in KEYS:
            column = table.column(col) if col in table.column_names else pa.chunked_array(
                [pa.nulls(table.num_rows, pa.string())])
            pieces, start = [], 0
            for chunk in column.chunks:
                for at in range(0, len(chunk), chunk_rows):
                    values = pc.cast(chunk.slice(at, chunk_rows), pa.string())
                    present = pc.fill_null(pc.not_equal(values, ""), False)
                    pieces.append((_hashes(values.filter(present).to_numpy(zero_copy_only=False)),
                                   np.flatnonzero(present.to_numpy(zero_copy_only=False)) + start))
                    start += len(values)
            keys[col] = _key_arrays(pieces)
        return cls(keys=keys, rows=table.num_rows)

    @property
    def frame(self) -> pd.DataFrame:
        """The part's rows (read on first use when the index was opened from its file)."""
        if self._frame is None:
            frame = self._loader()
            if len(frame) != self.n_rows:
                raise ValueError(f"part has {len(frame)} rows, its index {self.n_rows}")
            self._frame = frame
        return self._frame

    @property
    def loaded(self) -> bool:
        """Whether the part's rows are in memory."""
        return self._frame is not None

    def take(self, positions: np.ndarray) -> pd.DataFrame:
        """The rows at ``positions`` (sorted, unique), in that order."""
        if self._frame is None and self._reader is not None:
            rows = self._reader(positions)
            if len(rows) != len(positions):
                raise ValueError(f"part gave {len(rows)} rows for {len(positions)} positions")
            return rows
        return self.frame.iloc[positions]

    def save(self, path: Path) -> None:
        """Write the index next to its part, atomically (temporary file, then rename)."""
        arrays = {"format": np.array([_FORMAT, self.n_rows], dtype=np.int64)}
        for col, (hashes, pos) in self.keys.items():
            arrays[f"{col}.hash"], arrays[f"{col}.pos"] = hashes, pos
        write_atomically(path, lambda fh: np.savez(fh, **arrays))

    @classmethod
    def open(cls, path: Path, loader: Callable[[], pd.DataFrame], rows: int,
             reader: Callable[[np.ndarray], pd.DataFrame] | None = None) -> "PartIndex | None":
        """The saved index at ``path`` for a part of ``rows`` rows; None when it is missing,
        unreadable or does not fit the part (the caller then builds it from the rows)."""
        try:
            with np.load(path, allow_pickle=False) as saved:
                version, saved_rows = (int(x) for x in saved["format"])
                if version != _FORMAT or saved_rows != rows:
                    return None
                keys = {}
                for col in KEYS:
                    hashes, pos = saved[f"{col}.hash"], saved[f"{col}.pos"]
                    if (hashes.dtype != np.uint64 or pos.dtype != np.int32 or hashes.shape != pos.shape
                            or hashes.ndim != 1 or (len(pos) and (pos.min() < 0 or pos.max() >= rows))
                            or np.any(hashes[1:] < hashes[:-1])):
                        return None
                    keys[col] = (hashes, pos)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        return cls(keys=keys, rows=rows, loader=loader, reader=reader)

    @property
    def nbytes(self) -> int:
        """Bytes held by the index arrays (the frame itself is the store's)."""
        return sum(h.nbytes + p.nbytes for h, p in self.keys.values())

    def candidates(self, col: str, values) -> np.ndarray:
        """Sorted row positions whose ``col`` hashes like one of ``values`` (a collision
        included: :meth:`matching` filters it out). Reads no row."""
        hashes, pos = self.keys[col]
        wanted = [v for v in values if v]
        if not wanted or not len(hashes):
            return np.empty(0, dtype=np.int32)
        keys = _hashes(wanted)
        lo = np.searchsorted(hashes, keys, side="left")
        hi = np.searchsorted(hashes, keys, side="right")
        found = [pos[a:b] for a, b in zip(lo, hi) if b > a]
        if not found:
            return np.empty(0, dtype=np.int32)
        return np.unique(np.concatenate(found))

    def positions(self, col: str, values) -> np.ndarray:
        """Row positions whose ``col`` equals one of ``values`` (collisions filtered out)."""
        cand = self.candidates(col, values)
        if not len(cand):
            return cand
        return cand[matching(self.take(cand), {col: values})]

    def rows(self, col: str, values) -> pd.DataFrame | None:
        """The rows whose ``col`` equals one of ``values``; None when there are none (without
        reading a part that has no candidate, and reading only the candidates of one that has)."""
        cand = self.candidates(col, values)
        if not len(cand):
            return None
        found = self.take(cand)
        found = found[matching(found, {col: values})]
        return found if len(found) else None


def matching(rows: pd.DataFrame, wanted: dict) -> np.ndarray:
    """Whether each row's value in one of ``wanted``'s columns is among that column's
    non-empty values (a row matches when any column does)."""
    keep = np.zeros(len(rows), dtype=bool)
    for col, values in wanted.items():
        allowed = {v for v in values if v}
        actual = rows[col].to_numpy(dtype=object, na_value=None)
        keep |= np.fromiter((v in allowed for v in actual), dtype=bool, count=len(actual))
    return keep


class TraceIndex:
    """Lookups over a set of part indexes; :meth:`lookup` resolves any of the three IDs."""

    def __init__(self, parts: list[PartIndex] | None = None):
        self.parts = list(parts or [])

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "TraceIndex":
        """An index over one frame (tests, the replay, a window already read)."""
        return cls([PartIndex(frame)])

    @property
    def events(self) -> int:
        """Events indexed."""
        return sum(p.n_rows for p in self.parts)

    @property
    def nbytes(self) -> int:
        """Bytes held by the index arrays."""
        return sum(p.nbytes for p in self.parts)

    def _rows(self, col: str, values) -> pd.DataFrame:
        found = []
        for part in self.parts:
            try:
                rows = part.rows(col, values)
            except DamagedPart:  # its index is whole but its rows are not: the store names it
                continue
            if rows is not None and not rows.empty:
                found.append(rows)
        if not found:
            return schemas.empty("events")
        return pd.concat(found, ignore_index=True) if len(found) > 1 else found[0].reset_index(drop=True)

    def lookup(self, some_id: str, since: pd.Timestamp | None = None) -> pd.DataFrame:
        """Every event of the trace ``some_id`` names (same rule as ``traces.resolve``).

        The ID is tried as a correlation ID, a trace ID (lower-cased) and an event ID;
        the hits' correlation IDs then select the trace (or, when the hits carry none,
        their trace IDs). ``since`` drops rows observed before it (retention).
        """
        some_id = (some_id or "").strip()
        if not some_id or not self.parts:
            return self._rows("correlation_id", [])
        cids, traces = set(), set()
        wanted = {"correlation_id": [some_id], "trace_id": [some_id.lower()], "event_id": [some_id]}
        for part in self.parts:
            cand = np.unique(np.concatenate([part.candidates(col, ids) for col, ids in wanted.items()]))
            if not len(cand):
                continue
            try:
                hit = part.take(cand)
            except DamagedPart:  # its index is whole but its rows are not: the store names it
                continue
            hit = hit[matching(hit, wanted)]
            if since is not None:
                hit = hit[hit["observed_at"] >= since]
            cids.update(c for c in hit["correlation_id"].dropna() if c)
            traces.update(t for t in hit["trace_id"].dropna() if t)
        if not cids and not traces:
            return self._rows("correlation_id", [])
        rows = self._rows("correlation_id", cids) if cids else self._rows("trace_id", traces)
        if since is not None:
            rows = rows[rows["observed_at"] >= since]
        return rows.reset_index(drop=True)


class StoreTraceIndex:
    """A :class:`TraceIndex` kept in step with the ``events`` frame of a store.

    :meth:`refresh` reads the manifest; parts not yet open are opened from their saved
    index (or indexed from their rows when it is missing), parts the store dropped
    (retention, compaction) are forgotten. Thread-safe.
    """

    def __init__(self, store):
        self.store = store
        self._parts: dict[str, PartIndex] = {}
        self._version: str | None = None
        self._lock = threading.Lock()

    def _open(self, file: str, rows: int) -> PartIndex:
        def loader() -> pd.DataFrame:
            return self.store.load_part("events", file)

        def reader(positions: np.ndarray) -> pd.DataFrame:
            return self.store.load_rows("events", file, positions, rows)
        saved = PartIndex.open(self.store.part_path("events", file + INDEX_SUFFIX), loader, rows, reader)
        return saved if saved is not None else PartIndex(loader(), reader=reader)

    def refresh(self, force: bool = False) -> TraceIndex:
        """The index for the store's current parts (cheap when nothing changed)."""
        with self._lock:
            version = self.store.version("events")
            if force or version != self._version:
                parts = {}
                for p in self.store.part_entries("events"):
                    try:
                        parts[p["file"]] = self._parts.get(p["file"]) or self._open(p["file"], p["rows"])
                    except DamagedPart:  # its rows are missing (the store says so); the rest is found
                        continue
                self._parts = parts
                self._version = version
            return TraceIndex(list(self._parts.values()))

    def parts(self) -> dict[str, PartIndex]:
        """The current parts' indexes by part file name (after a :meth:`refresh`)."""
        with self._lock:
            return dict(self._parts)

    def lookup(self, some_id: str) -> pd.DataFrame:
        """Events of the trace ``some_id`` names, within the store's retention."""
        floor = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=self.store.retention.max_age_s)
        try:
            return self.refresh().lookup(some_id, since=floor)
        except FileNotFoundError:
            # a part dropped by compaction after this index last read the manifest (its rows
            # are in the merged part by now): read the manifest again, once
            return self.refresh(force=True).lookup(some_id, since=floor)
