"""``schemas.conform``'s fast paths give what the plain pandas conversions give.

Row dicts are conformed column by column: text columns straight through pyarrow, times
through a Timestamp fast path or pandas' ISO 8601 parser before the per-value ``mixed``
parser. Whatever the values, the result must equal the general conversion (``pd.DataFrame``
of the rows, then ``pd.to_datetime(..., format="mixed")`` / ``astype("string")``).
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventscope import schemas

iso_times = st.builds(
    lambda t, spec, sep, zone: t.isoformat(sep=sep, timespec=spec) + zone,
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 1, 1)),
    st.sampled_from(["seconds", "milliseconds", "microseconds"]), st.sampled_from(["T", " "]),
    st.sampled_from(["Z", "", "+02:00", "-11:30", "+00:00"]))
nano_times = iso_times.filter(lambda v: "." in v).map(lambda v: v.replace(".", ".123", 1) if v[-1] == "Z" else v)
time_values = st.one_of(
    st.none(), iso_times, nano_times, st.text(max_size=30),
    st.sampled_from(["28 Nov 2026 10:00", "2026-11-28 10:00:00+02:00", "1700000000", "garbage", "",
                     "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-13-45T00:00:00Z"]),
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)).map(pd.Timestamp),
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1),
                 timezones=st.just(dt.timezone(dt.timedelta(hours=5)))).map(pd.Timestamp),
    st.just(pd.NaT), st.integers(min_value=0, max_value=2**40))


def _reference_time(values: list) -> pd.Series:
    parsed = pd.to_datetime(pd.Series(values, dtype=object), utc=True, errors="coerce", format="mixed")
    inside = (parsed >= schemas._NS_MIN) & (parsed <= schemas._NS_MAX)
    return parsed.where(inside.fillna(False).astype(bool)).astype(schemas.TIME)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.lists(time_values, max_size=12), st.lists(st.one_of(st.none(), iso_times, nano_times),
                                                              min_size=1, max_size=12)))
def test_time_fast_paths_agree_with_the_mixed_parser(values):
    got = schemas._cast(pd.Series(values, dtype=object), schemas.TIME)
    assert got.dtype == schemas.TIME
    pd.testing.assert_series_equal(got.reset_index(drop=True), _reference_time(values), check_names=False)


@pytest.mark.parametrize("values", [
    [pd.Timestamp("2026-11-28T10:00:00.123456789Z"), pd.NaT, pd.Timestamp("2026-11-28T10:00:00")],
    [pd.Timestamp("2026-11-28T10:00:00Z"), dt.datetime(2026, 1, 1), pd.Timestamp("2026-11-28T10:00:00+05:00")],
    ["2026-11-28T10:00:00.123Z", "28 Nov 2026 10:00", None, "junk"],
])
def test_time_fast_paths_keep_nanoseconds_zones_and_other_formats(values):
    got = schemas._cast(pd.Series(values, dtype=object), schemas.TIME)
    pd.testing.assert_series_equal(got, _reference_time(values), check_names=False)


text_values = st.one_of(st.none(), st.just(np.nan), st.text(max_size=20), st.integers(), st.floats(),
                        st.booleans(), st.text(max_size=5).map(str.encode))


@settings(max_examples=120, deadline=None)
@given(st.lists(st.fixed_dictionaries({}, optional={"event_type": text_values, "event_id": text_values}),
                max_size=10))
def test_text_columns_agree_with_a_frame_cast_to_string(rows):
    got = schemas.conform("events", rows)
    frame = pd.DataFrame(rows, columns=["event_type", "event_id"])
    for col in ("event_type", "event_id"):
        want = frame[col].astype(object).astype("string")
        pd.testing.assert_series_equal(got[col], want.reset_index(drop=True), check_names=False)


column_values = {
    "topic": st.one_of(st.none(), st.text(max_size=8)), "event_type": text_values,
    "partition": st.one_of(st.integers(-2**63, 2**63 - 1), st.none(), st.integers(), st.booleans()),
    "size_bytes": st.one_of(st.integers(0, 2**40), st.none()), "dead_letter": st.one_of(st.booleans(), st.none()),
    "at": time_values, "offset": text_values}


@settings(max_examples=30, deadline=None)
@given(st.lists(st.fixed_dictionaries(column_values), min_size=1, max_size=8),
       st.sampled_from([None, "kafka", "x" * 3]), st.sampled_from([None, pd.Timestamp("2026-11-28T10:00:00Z")]))
def test_columns_conform_as_rows_do(rows, broker, observed_at):
    """``conform_columns`` (what the event collectors build) gives what ``conform`` of the same
    rows gives, for lists, repeated scalars and missing columns alike."""
    n = len(rows)
    columns = {key: [row[key] for row in rows] for key in column_values}
    columns.update(broker=broker, observed_at=observed_at)
    got = schemas.conform_columns("events", columns, n)
    want = schemas.conform("events", [{**row, "broker": broker, "observed_at": observed_at} for row in rows])
    pd.testing.assert_frame_equal(got, want)


def test_columns_of_the_wrong_length_or_name_are_refused():
    with pytest.raises(ValueError, match="not in its schema"):
        schemas.conform_columns("events", {"nope": [1]}, 1)
    with pytest.raises(ValueError, match="has 2 values, not 3"):
        schemas.conform_columns("events", {"topic": ["a", "b"]}, 3)
