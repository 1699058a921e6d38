"""Lag in seconds from offsets: per partition, a small table of (end offset, time).

Every sample records the partition's end offset and the time it was read. The time
at which the log end was at the group's committed offset is found by linear
interpolation between the two points around it; ``lag_seconds = now - that time``.
Flat stretches (end offset unchanged) keep only their first point, because the
first time an offset was the end is the time the message after it had not yet
arrived. The table is bounded; beyond its oldest point the rate of the oldest
segment is extrapolated, and with fewer than two points the answer is unknown.

:class:`OffsetClock` is one partition's table; :class:`OffsetClocks` holds the tables of
many partitions in two arrays and answers for whole columns of rows at once, with the
same arithmetic in the same order (so the same floats).
"""
from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Hashable, Sequence

import numpy as np


class OffsetClock:
    """(end offset, time) points for one partition."""

    def __init__(self, max_points: int = 120):
        self.points: deque[tuple[int, float]] = deque(maxlen=max_points)

    def record(self, end: int, at: float) -> None:
        """Add a sample; an unchanged end offset only refreshes nothing (flat stretch)."""
        if self.points and end <= self.points[-1][0]:
            if end < self.points[-1][0]:  # topic recreated or truncated: start over
                self.points.clear()
                self.points.append((end, at))
            return
        self.points.append((end, at))

    def time_of(self, offset: int) -> float | None:
        """When the end offset was ``offset`` (interpolated), or None if unknown."""
        pts = self.points
        if not pts:
            return None
        if offset >= pts[-1][0]:
            return None  # caught up: there is no unconsumed message to date
        i = bisect.bisect_right(pts, offset, key=lambda point: point[0])
        if i > 0:
            (o1, t1), (o2, t2) = pts[i - 1], pts[i]
            return t1 + (t2 - t1) * (offset - o1) / (o2 - o1)
        if len(pts) < 2:
            return None
        (o1, t1), (o2, t2) = pts[0], pts[1]
        rate = (o2 - o1) / (t2 - t1) if t2 > t1 else 0.0
        if rate <= 0:
            return None
        return t1 - (o1 - offset) / rate  # extrapolate before the oldest point

    def lag_seconds(self, committed: int | None, end: int, now: float) -> float:
        """Seconds the oldest unconsumed message has waited; 0 when caught up, NaN if unknown."""
        if committed is None:
            return math.nan
        if committed >= end:
            return 0.0
        at = self.time_of(committed)
        return math.nan if at is None else max(0.0, now - at)


class OffsetClocks:
    """The :class:`OffsetClock` of every partition, as arrays: row ``r`` holds one partition's
    points, oldest first, in ``offsets[r, :counts[r]]`` and ``times[r, :counts[r]]``.

    A collector with thousands of partitions keeps two numbers per point instead of a tuple
    of two objects, and looks up a whole column of committed offsets in a few array passes.
    """

    # rows compared at once in a lookup: bounds the temporary (rows × max_points) arrays
    CHUNK = 4096

    def __init__(self, max_points: int = 120):
        self.max_points = max_points
        self.rows: dict[Hashable, int] = {}
        self.offsets = np.zeros((0, max_points), dtype=np.int64)
        self.times = np.zeros((0, max_points), dtype=np.float64)
        self.counts = np.zeros(0, dtype=np.int64)

    def rows_of(self, keys: Sequence[Hashable]) -> np.ndarray:
        """The row of each key (a partition), adding rows for keys not seen before."""
        rows = self.rows
        for key in keys:
            if key not in rows:
                rows[key] = len(rows)
        if len(rows) > len(self.counts):
            size = max(len(rows), 2 * len(self.counts))
            grow = size - len(self.counts)
            self.offsets = np.concatenate([self.offsets, np.zeros((grow, self.max_points), np.int64)])
            self.times = np.concatenate([self.times, np.zeros((grow, self.max_points), np.float64)])
            self.counts = np.concatenate([self.counts, np.zeros(grow, np.int64)])
        return np.fromiter((rows[key] for key in keys), dtype=np.intp, count=len(keys))

    def retain(self, keys: Sequence[Hashable]) -> None:
        """Keep only the clocks of ``keys`` (the partitions that exist now); rows are renumbered."""
        keep = [key for key in dict.fromkeys(keys) if key in self.rows]
        old = np.fromiter((self.rows[key] for key in keep), dtype=np.intp, count=len(keep))
        self.offsets, self.times, self.counts = self.offsets[old], self.times[old], self.counts[old]
        self.rows = {key: i for i, key in enumerate(keep)}

    def record(self, rows: np.ndarray, ends: np.ndarray, at: float) -> None:
        """:meth:`OffsetClock.record` for each (row, end); ``rows`` are distinct."""
        rows = np.asarray(rows, dtype=np.intp)
        ends = np.asarray(ends, dtype=np.int64)
        counts = self.counts[rows]
        last = self.offsets[rows, np.maximum(counts - 1, 0)]
        # topic recreated or truncated: start over, with this point only
        self.counts[rows[(counts > 0) & (ends < last)]] = 0
        adding = (counts == 0) | (ends != last)  # an unchanged end keeps the flat stretch's first point
        rows, ends = rows[adding], ends[adding]
        full = rows[self.counts[rows] == self.max_points]
        if len(full):  # bounded: the oldest point goes
            self.offsets[full, :-1] = self.offsets[full, 1:]
            self.times[full, :-1] = self.times[full, 1:]
            self.counts[full] -= 1
        at_col = self.counts[rows]
        self.offsets[rows, at_col] = ends
        self.times[rows, at_col] = at
        self.counts[rows] += 1

    def times_of(self, rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """:meth:`OffsetClock.time_of` for each (row, offset); NaN where that is None."""
        rows = np.asarray(rows, dtype=np.intp)
        offsets = np.asarray(offsets, dtype=np.int64)
        out = np.full(len(rows), np.nan)
        counts = self.counts[rows]
        last = self.offsets[rows, np.maximum(counts - 1, 0)]
        todo = np.flatnonzero((counts > 0) & (offsets < last))  # else caught up (or no points)
        span = np.arange(self.max_points)
        for c in range(0, len(todo), self.CHUNK):
            pick = todo[c:c + self.CHUNK]
            r, off, n = rows[pick], offsets[pick], counts[pick]
            # bisect_right over each row's points: how many of them are <= the offset
            i = ((self.offsets[r] <= off[:, None]) & (span < n[:, None])).sum(axis=1)
            inside = i > 0
            if inside.any():
                ri, oi, ii = r[inside], off[inside], i[inside]
                o1, t1 = self.offsets[ri, ii - 1], self.times[ri, ii - 1]
                o2, t2 = self.offsets[ri, ii], self.times[ri, ii]
                out[pick[inside]] = t1 + (t2 - t1) * (oi - o1) / (o2 - o1)
            before = ~inside & (n >= 2)
            if before.any():  # extrapolate before the oldest point at the oldest segment's rate
                rb, ob = r[before], off[before]
                o1, t1 = self.offsets[rb, 0], self.times[rb, 0]
                o2, t2 = self.offsets[rb, 1], self.times[rb, 1]
                moving = t2 > t1
                rate = np.zeros(len(rb))
                rate[moving] = (o2 - o1)[moving] / (t2 - t1)[moving]
                ok = rate > 0
                out[pick[before][ok]] = t1[ok] - (o1[ok] - ob[ok]) / rate[ok]
        return out

    def before_oldest(self, rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """True where ``offset`` is older than the row's oldest point (or the row has fewer
        than two points): its time can only be extrapolated, or not known at all."""
        rows = np.asarray(rows, dtype=np.intp)
        return (self.counts[rows] < 2) | (np.asarray(offsets, dtype=np.int64) < self.offsets[rows, 0])

    def lag_seconds(self, rows: np.ndarray, committed: np.ndarray, known: np.ndarray, ends: np.ndarray,
                    now: float) -> np.ndarray:
        """:meth:`OffsetClock.lag_seconds` for each row: NaN where the committed offset is not
        ``known``, 0 where it has reached the end, else the age of the oldest unconsumed message."""
        committed = np.asarray(committed, dtype=np.int64)
        out = np.full(len(committed), np.nan)
        behind = known & (committed < ends)
        out[known & ~behind] = 0.0
        pick = np.flatnonzero(behind)
        if len(pick):
            waited = now - self.times_of(np.asarray(rows)[pick], committed[pick])
            out[pick] = np.where(np.isnan(waited), np.nan, np.maximum(0.0, waited))
        return out
