"""Lag in seconds from offsets: per partition, a small table of (end offset, time).

Every sample records the partition's end offset and the time it was read. The time
at which the log end was at the group's committed offset is found by linear
interpolation between the two points around it; ``lag_seconds = now - that time``.
Flat stretches (end offset unchanged) keep only their first point, because the
first time an offset was the end is the time the message after it had not yet
arrived. The table is bounded; beyond its oldest point the rate of the oldest
segment is extrapolated, and with fewer than two points the answer is unknown.
"""
from __future__ import annotations

import bisect
import math
from collections import deque


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
