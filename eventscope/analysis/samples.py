"""What "now" is per source: the rows of each source's newest sample.

Every collector pass writes its rows with one ``sampled_at`` per source; sources sample at
their own times, so "the newest rows" is always per source (or per source and broker).
"""
from __future__ import annotations

import pandas as pd


def newest_per_source(frame: pd.DataFrame, keys=("source",), within_s: float = 0.0) -> pd.DataFrame:
    """The rows whose ``sampled_at`` is their ``keys``' newest, or at most ``within_s`` older."""
    if frame.empty:
        return frame
    newest = frame.groupby(list(keys), observed=True)["sampled_at"].transform("max")
    return frame[frame["sampled_at"] >= newest - pd.Timedelta(seconds=within_s)]
