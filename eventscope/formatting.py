"""Durations, ages and numbers as short text for people (the dashboard, the alert tables)."""
from __future__ import annotations

import pandas as pd


def ago(ts, now: pd.Timestamp | None = None) -> str:
    """``ts`` relative to now in plain words: ``12 s ago``, ``3 min ago``, ``never``."""
    if ts is None or pd.isna(ts):
        return "never"
    seconds = ((now or pd.Timestamp.now(tz="UTC")) - pd.Timestamp(ts)).total_seconds()
    return duration(max(0.0, seconds)) + " ago"


def duration(seconds) -> str:
    """Seconds in plain words: ``850 ms``, ``42 s``, ``4 min 10 s``, ``2 h 5 min``."""
    if seconds is None or pd.isna(seconds):
        return "unknown"
    seconds = float(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def duration_short(seconds) -> str:
    """Like :func:`duration` but sub-second lag reads ``< 1 s`` and unknown reads ``—``."""
    if seconds is None or pd.isna(seconds):
        return "—"
    if float(seconds) == 0:
        return "0 s"
    return "< 1 s" if float(seconds) < 1 else duration(seconds)


def number(value) -> str:
    """A measured value as short text: ``12``, ``1,234``, ``97.5``, ``—`` when unknown."""
    if value is None or pd.isna(value):
        return "—"
    value = float(value)
    return f"{value:,.0f}" if value.is_integer() or abs(value) >= 100 else f"{value:.1f}"
