"""The trace index: correlation ID, W3C trace ID and event ID → events, without a scan.

Built per store part. Parts are immutable, so a part's index is built once per
process and reused until retention drops the part; a new sample adds one small part
and costs one small build (the incremental update). Nothing is written beside the
Parquet: the index is derived from the store's parts, bounded by the store's
retention, and rebuilt by a new process (about a second per million events).

Per part and per key column, two numpy arrays: the 64-bit hashes of the non-empty
values, sorted, and the row position of each (``uint64`` + ``int32`` = 12 bytes per
value, 36 bytes per event for the three columns). A lookup is a binary search per
part and column; candidates are then compared as strings, so a hash collision can
cost a comparison but never returns a wrong event. Hashes are Python's string hash,
which is salted per process: fine for an in-memory index, and the reason it is never
persisted as is.
"""
from __future__ import annotations

import threading

import numpy as np
import pandas as pd

KEYS = ("correlation_id", "trace_id", "event_id")


def _hashes(values) -> np.ndarray:
    return np.fromiter(map(hash, values), dtype=np.int64, count=len(values)).view(np.uint64)


class PartIndex:
    """The index of one events frame (one store part, or any frame)."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self.keys: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for col in KEYS:
            series = frame[col]
            pos = np.flatnonzero((series.notna() & (series != "")).to_numpy(dtype=bool, na_value=False))
            values = series.to_numpy(dtype=object, na_value=None)[pos]
            hashes = _hashes(values)
            order = np.argsort(hashes)
            self.keys[col] = (hashes[order], pos[order].astype(np.int32))

    @property
    def nbytes(self) -> int:
        """Bytes held by the index arrays (the frame itself is the store's)."""
        return sum(h.nbytes + p.nbytes for h, p in self.keys.values())

    def positions(self, col: str, values) -> np.ndarray:
        """Row positions whose ``col`` equals one of ``values`` (collisions filtered out)."""
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
        cand = np.unique(np.concatenate(found))
        actual = self.frame[col].iloc[cand].to_numpy(dtype=object, na_value=None)
        keep = np.fromiter((v in set(wanted) for v in actual), dtype=bool, count=len(actual))
        return cand[keep]

    def rows(self, col: str, values) -> pd.DataFrame:
        """The rows whose ``col`` equals one of ``values``."""
        return self.frame.iloc[self.positions(col, values)]


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
        return sum(len(p.frame) for p in self.parts)

    @property
    def nbytes(self) -> int:
        """Bytes held by the index arrays."""
        return sum(p.nbytes for p in self.parts)

    def _rows(self, col: str, values) -> pd.DataFrame:
        found = [p.rows(col, values) for p in self.parts]
        found = [f for f in found if not f.empty]
        if not found:
            return self.parts[0].frame.iloc[0:0] if self.parts else pd.DataFrame()
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
        for part in self.parts:
            pos = np.concatenate([part.positions("correlation_id", [some_id]),
                                  part.positions("trace_id", [some_id.lower()]),
                                  part.positions("event_id", [some_id])])
            if not len(pos):
                continue
            hit = part.frame.iloc[np.unique(pos)]
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

    :meth:`refresh` reads the manifest; parts not yet indexed are indexed, parts the
    store dropped (retention, compaction) are forgotten. Thread-safe.
    """

    def __init__(self, store):
        self.store = store
        self._parts: dict[str, PartIndex] = {}
        self._version: str | None = None
        self._lock = threading.Lock()

    def refresh(self) -> TraceIndex:
        """The index for the store's current parts (cheap when nothing changed)."""
        with self._lock:
            version = self.store.version("events")
            if version != self._version:
                current = dict(self.store.read_parts("events"))
                self._parts = {f: self._parts.get(f) or PartIndex(frame) for f, frame in current.items()}
                self._version = version
            return TraceIndex(list(self._parts.values()))

    def lookup(self, some_id: str) -> pd.DataFrame:
        """Events of the trace ``some_id`` names, within the store's retention."""
        floor = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=self.store.retention.max_age_s)
        return self.refresh().lookup(some_id, since=floor)
