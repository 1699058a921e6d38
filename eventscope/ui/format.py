"""Values as text for people: times, durations, numbers, stored text, status colours.

Names come from brokers and are data: :func:`md` escapes them for Markdown and
:func:`safe_text` makes any stored value displayable (and masks personal data if asked).
"""
from __future__ import annotations

import re

import pandas as pd

# durations, ages and numbers have one home, shared with the alert tables; the pages reach
# them here, beside the rest of what they format
from eventscope.formatting import ago, duration, duration_short, number  # noqa: F401
from eventscope.mask import mask_text
from eventscope.palette import STATUS_FILL

TEXT_LIMIT = 2000  # longest text a table cell shows (a huge header or reason is cut)


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
    return df.style.map(lambda v: f"background-color: {STATUS_FILL.get(v, 'transparent')}",
                        subset=[column])


def cluster(broker, kind=None) -> str:
    """A cluster as people read it: ``prod-eu (kafka)``, or its name alone when it is named
    after its kind (``kafka``)."""
    name = str(broker)
    return name if kind is None or pd.isna(kind) or str(kind) == name else f"{name} ({kind})"
