"""The newest sample per source (``eventscope.analysis.samples``)."""
import pandas as pd

from eventscope.analysis.samples import newest_per_source

T0 = pd.Timestamp("2026-11-28T10:00:00Z")


def _rows(*rows):
    return pd.DataFrame([{"source": s, "broker": b, "sampled_at": T0 + pd.Timedelta(seconds=t), "n": n}
                         for s, b, t, n in rows])


def test_each_source_keeps_its_own_newest_sample():
    rows = _rows(("a", "a", 0, 1), ("a", "a", 10, 2), ("b", "b", 0, 3), ("b", "b", 3, 4))
    assert newest_per_source(rows)["n"].tolist() == [2, 4]


def test_within_keeps_samples_close_to_their_source_newest():
    rows = _rows(("a", "a", 0, 1), ("a", "a", 8, 2), ("a", "a", 10, 3), ("b", "b", 0, 4))
    assert newest_per_source(rows, within_s=2)["n"].tolist() == [2, 3, 4]


def test_keys_split_a_source_by_broker_and_an_empty_frame_stays_empty():
    rows = _rows(("a", "x", 0, 1), ("a", "y", 5, 2))
    assert newest_per_source(rows, keys=("source", "broker"))["n"].tolist() == [1, 2]
    assert newest_per_source(rows)["n"].tolist() == [2]
    assert newest_per_source(rows.iloc[0:0]).empty
