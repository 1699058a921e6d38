"""Values as text for people: times, durations, numbers, stored text, status colours.

Names come from brokers and are data: :func:`md` escapes them for Markdown and
:func:`safe_text` makes any stored value displayable (and masks personal data if asked).
"""
from __future__ import annotations

import re

import pandas as pd

from eventscope.mask import mask_text

_RED, _AMBER, _GREEN = "#f9c0c0", "#fde3a7", "#d9f0d3"
STATUS_COLORS = {"OK": _GREEN, "WARN": _AMBER, "ERR": _RED, "STOP": _RED, "STALL": _RED,
                 "REWIND": _RED, "UNKNOWN": "#e8e8e8", "completed": _GREEN, "in_flight": "#dbe8f7",
                 "dead_lettered": _RED, "critical": _RED, "warning": _AMBER}
TEXT_LIMIT = 2000  # longest text a table cell shows (a huge header or reason is cut)


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


def md(value) -> str:
    """``value`` with Markdown punctuation backslash-escaped (names are data, not markup)."""
    return re.sub(r"([\\`*_{}\[\]()<>#+\-.!|:~$])", r"\\\1", str(value))


def safe_text(value, limit: int = TEXT_LIMIT, mask: bool = False):
    """Any stored value as displayable text: lone surrogates (undecodable bytes) escaped,
    cut at ``limit`` characters, optionally with e-mails and card numbers masked; None stays None."""
    if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
        return None
    if isinstance(value, bytes):
        value = "0x" + value[:32].hex() + ("…" if len(value) > 32 else "")
    text = str(value).encode("utf-8", "backslashreplace").decode("utf-8")
    if mask:
        text = mask_text(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def text_frame(df: pd.DataFrame, columns, mask=()) -> pd.DataFrame:
    """``df`` with ``columns`` as displayable text (see :func:`safe_text`)."""
    out = df.copy()
    for col in columns:
        if col in out:
            out[col] = out[col].map(lambda v, m=col in mask: safe_text(v, mask=m)).astype("object")
    return out


def styled(df: pd.DataFrame, column: str = "status"):
    """``df`` with its status-like ``column`` colored (for ``st.dataframe``)."""
    if df.empty or column not in df:
        return df
    return df.style.map(lambda v: f"background-color: {STATUS_COLORS.get(v, 'transparent')}",
                        subset=[column])


def cluster(broker, kind=None) -> str:
    """A cluster as people read it: ``prod-eu (kafka)``, or its name alone when it is named
    after its kind (``kafka``)."""
    name = str(broker)
    return name if kind is None or pd.isna(kind) or str(kind) == name else f"{name} ({kind})"
