"""The trace index (eventscope.trace_index) by small examples written from its
docstrings: a saved index is used only when it fits its part, empty IDs are never keys,
``since`` drops rows observed before it, and a part is read only when it has a candidate."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from eventscope import schemas, trace_index
from eventscope.trace_index import PartIndex, TraceIndex
from test_trace_index import T0, chain_events


def _saved(tmp_path, events, **change):
    """Save ``events``' index, with ``change`` (array name → new array) written over it."""
    path = tmp_path / "part.parquet.trace-index.npz"
    PartIndex(events).save(path)
    if change:
        with np.load(path) as saved:
            arrays = dict(saved)
        arrays.update(change)
        for name in [n for n, v in change.items() if v is None]:
            del arrays[name]
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
    return path


def _open(path, events):
    return PartIndex.open(path, lambda: events, len(events))


def test_a_saved_index_opens_without_reading_its_part(tmp_path):
    events = chain_events(4, T0)
    reads = []
    index = PartIndex.open(_saved(tmp_path, events), lambda: reads.append(1) or events, len(events))
    assert index.source == "saved" and not index.loaded and index.n_rows == 12
    assert index.nbytes == PartIndex(events).nbytes == 12 * (3 * 12 - 1)
    assert index.rows("correlation_id", ["nope"]) is None and reads == []  # no candidate: not read
    assert sorted(index.rows("correlation_id", ["cid-2"])["offset"]) == ["2-0", "2-1", "2-2"]
    assert reads == [1] and index.loaded
    index.rows("event_id", ["evt-1-1"])
    assert reads == [1]  # read once


@pytest.mark.parametrize("change", [
    {"format": np.array([2, 12], dtype=np.int64)},                        # another format
    {"format": np.array([1, 11], dtype=np.int64)},                        # another part's row count
    {"trace_id.hash": None},                                              # a column missing
    {"trace_id.pos": np.arange(12, dtype=np.int64)},                      # positions of the wrong type
    {"trace_id.pos": np.arange(11, dtype=np.int32)},                      # not one position per hash
    {"trace_id.pos": np.r_[np.arange(11), -1].astype(np.int32)},          # a position before the part
    {"trace_id.pos": np.r_[np.arange(11), 12].astype(np.int32)},          # a position past its end
])
def test_a_saved_index_that_does_not_fit_its_part_is_not_used(tmp_path, change):
    events = chain_events(4, T0)
    assert _open(_saved(tmp_path, events, **change), events) is None


def test_saved_hashes_must_be_one_sorted_row_of_uint64(tmp_path):
    events = chain_events(4, T0)
    good = PartIndex(events).keys["event_id"][0]
    assert _open(_saved(tmp_path, events, **{"event_id.hash": good.astype(np.int64)}), events) is None
    square = np.zeros((12, 1), dtype=np.uint64)
    assert _open(_saved(tmp_path, events, **{"event_id.hash": square,
                                             "event_id.pos": np.zeros((12, 1), dtype=np.int32)}), events) is None
    swapped = np.sort(good)
    swapped[[5, 6]] = swapped[[6, 5]]  # out of order past the first: refused
    assert _open(_saved(tmp_path, events, **{"event_id.hash": swapped}), events) is None
    equal = np.sort(good)
    equal[1] = equal[0]  # equal neighbours are sorted
    assert _open(_saved(tmp_path, events, **{"event_id.hash": equal}), events) is not None
    assert _open(tmp_path / "absent.npz", events) is None
    last = np.arange(12, dtype=np.int32)  # the last row (11) is a valid position
    assert _open(_saved(tmp_path, events, **{"trace_id.pos": last[::-1].copy()}), events) is not None


def test_a_part_whose_rows_changed_under_its_index_is_refused():
    events = chain_events(2, T0)
    index = PartIndex(keys=PartIndex(events).keys, rows=6, loader=lambda: events.iloc[:5])
    with pytest.raises(ValueError, match="part has 5 rows, its index 6"):
        index.rows("correlation_id", ["cid-1"])
    short = PartIndex(keys=PartIndex(events).keys, rows=6, reader=lambda pos: events.iloc[pos[:-1]])
    with pytest.raises(ValueError, match="part gave 2 rows for 3 positions"):
        short.rows("correlation_id", ["cid-1"])


def test_a_reader_is_asked_for_the_candidates_only_every_time_and_a_collision_is_dropped(monkeypatch):
    events = chain_events(3, T0)
    asked = []
    index = PartIndex(keys=PartIndex(events).keys, rows=9,
                      reader=lambda pos: asked.append(pos.tolist()) or events.iloc[pos])
    assert index.rows("correlation_id", ["cid-1"])["offset"].tolist() == ["1-0", "1-1", "1-2"]
    assert index.rows("correlation_id", ["cid-1"]) is not None and asked == [[3, 4, 5], [3, 4, 5]]
    assert not index.loaded
    # every ID hashes alike: all rows are candidates, and only the equal ones are returned
    monkeypatch.setattr(trace_index, "_hashes", lambda values: np.zeros(len(values), dtype=np.uint64))
    colliding = PartIndex(events, reader=lambda pos: asked.append(pos.tolist()) or events.iloc[pos])
    assert colliding.positions("event_id", ["evt-2-0"]).tolist() == [6]
    assert asked[-1] == list(range(9)) and colliding.rows("event_id", ["nope"]) is None


def test_empty_and_missing_ids_are_never_keys():
    events = chain_events(2, T0)
    events.loc[0, "event_id"] = ""
    events.loc[1, "event_id"] = None
    index = PartIndex(events)
    assert len(index.keys["event_id"][0]) == 4 and len(index.keys["correlation_id"][0]) == 6
    assert index.keys["event_id"][1].dtype == np.int32 and index.keys["event_id"][0].dtype == np.uint64
    assert index.positions("event_id", [""]).tolist() == []
    assert index.positions("event_id", ["", None, "evt-0-2"]).tolist() == [2]
    assert sorted(index.positions("correlation_id", ["cid-0", "cid-1", "cid-0"]).tolist()) == [0, 1, 2, 3, 4, 5]
    assert TraceIndex.from_frame(events).lookup("").empty
    empty = PartIndex(events.iloc[0:0])
    assert empty.positions("event_id", ["evt-0-2"]).tolist() == [] and empty.nbytes == 0
    assert trace_index._hashes([]).dtype == np.uint64


def test_lookup_drops_rows_observed_before_since():
    events = chain_events(3, T0, observed=T0)
    later = chain_events(3, T0 + pd.Timedelta(hours=1), observed=T0 + pd.Timedelta(hours=1))
    later["offset"] = later["offset"] + "-later"
    index = TraceIndex([PartIndex(events), PartIndex(later)])
    assert len(index.lookup("cid-1")) == 6
    assert index.lookup("cid-1", since=T0 + pd.Timedelta(minutes=30))["offset"].tolist() == [
        "1-0-later", "1-1-later", "1-2-later"]
    assert index.lookup("cid-1", since=T0)["offset"].tolist() == ["1-0", "1-1", "1-2", "1-0-later", "1-1-later",
                                                                 "1-2-later"]  # since is inclusive
    assert index.lookup("cid-1", since=T0 + pd.Timedelta(hours=2)).empty
    assert index.events == 18 and index.nbytes == 2 * 12 * 3 * 9
    assert TraceIndex().lookup("cid-1").empty and TraceIndex().events == 0


def test_a_trace_id_without_correlation_ids_selects_its_events_by_trace_id():
    events = chain_events(2, T0)
    events["correlation_id"] = None
    index = TraceIndex.from_frame(events)
    got = index.lookup("evt-1-0")
    assert got["offset"].tolist() == ["1-0", "1-1", "1-2"] and got.index.tolist() == [0, 1, 2]
    assert index.lookup(f"  {2:032X} ")["offset"].tolist() == ["1-0", "1-1", "1-2"]


def test_a_part_whose_rows_cannot_be_read_is_left_out_and_the_rest_is_found(tmp_path):
    """README/store: a damaged part is named by the store; the index still finds every trace
    of the other parts, before and after it."""
    from eventscope.trace_index import StoreTraceIndex
    from eventscope.store import Retention, Store
    from test_trace_index import _three_part_store
    _three_part_store(tmp_path, pd.Timestamp.now(tz="UTC"))
    parts = sorted((tmp_path / "events").glob("*.parquet"))
    assert len(parts) == 3
    (tmp_path / "events" / (parts[1].name + trace_index.INDEX_SUFFIX)).unlink()  # no saved index either
    parts[1].write_bytes(b"not parquet")
    index = StoreTraceIndex(Store(tmp_path, Retention(max_age_s=3600)))
    assert len(index.refresh().parts) == 2
    assert sorted(index.lookup("a-4")["event_id"]) == ["evta-4-0", "evta-4-1", "evta-4-2"]
    assert sorted(index.lookup("c-4")["event_id"]) == ["evtc-4-0", "evtc-4-1", "evtc-4-2"]
    assert index.lookup("b-4").empty


def test_lookup_returns_the_events_columns_only_and_since_includes_its_own_instant():
    events = chain_events(3, T0, observed=T0)
    index = TraceIndex.from_frame(events)
    got = index.lookup("cid-1")
    assert list(got.columns) == list(events.columns) and got.index.tolist() == [0, 1, 2]
    assert len(index.lookup("evt-1-0", since=T0)) == 3  # observed exactly at since: kept
    assert index.lookup("evt-1-0", since=T0 + pd.Timedelta(microseconds=1)).empty


def test_a_damaged_part_in_the_middle_of_a_trace_leaves_the_rest_of_it(tmp_path):
    from eventscope.trace_index import StoreTraceIndex
    from eventscope.store import Retention, Store
    now = pd.Timestamp.now(tz="UTC")
    store = Store(tmp_path, Retention(max_age_s=3600))
    for k, name in enumerate(("a", "b", "c")):  # one chain "x-1" over three parts
        part = chain_events(2, now - pd.Timedelta(minutes=30 - k))
        part["correlation_id"] = part["correlation_id"].str.replace("cid", "x")
        part["event_id"] = part["event_id"].str.replace("evt", f"evt{name}")
        part["offset"] = part["offset"] + name
        store.append("events", part)
    parts = sorted((tmp_path / "events").glob("*.parquet"))
    parts[1].write_bytes(b"not parquet")  # its saved index stays: the damage shows on reading it
    index = StoreTraceIndex(Store(tmp_path, Retention(max_age_s=3600)))
    got = index.lookup("evta-1-0")
    assert sorted(got["event_id"]) == ["evta-1-0", "evta-1-1", "evta-1-2", "evtc-1-0", "evtc-1-1", "evtc-1-2"]


def test_events_that_carry_no_trace_ids_are_found_by_correlation_and_event_id():
    events = chain_events(3, T0)
    events["trace_id"] = None
    index = TraceIndex.from_frame(events)
    assert index.lookup("cid-1")["offset"].tolist() == ["1-0", "1-1", "1-2"]
    assert index.lookup("evt-2-1")["offset"].tolist() == ["2-0", "2-1", "2-2"]
    assert index.lookup(f"{2:032x}").empty


def _arrow_keys(columns: dict, chunks: int) -> pa.Table:
    arrays = {}
    for name, values in columns.items():
        cut = max(1, len(values) // chunks)
        pieces = [values[i:i + cut] for i in range(0, len(values), cut)] or [[]]
        arrays[name] = pa.chunked_array([pa.array(p, pa.string()) for p in pieces], pa.string())
    return pa.table(arrays)


@pytest.mark.parametrize("chunk_rows", [1, 3, 65_536])
def test_an_index_built_from_arrow_a_chunk_at_a_time_is_the_one_built_from_the_frame(chunk_rows):
    """A compaction indexes its merged part from Arrow columns, a chunk at a time; the saved
    index must be the very one the rows' frame gives: same hashes, same positions, same order
    (row positions count across table chunks and index chunks), empty and missing IDs left out."""
    ids = ["order-1", "", None, "order-2", "order-1", "é-ü", "order-3", None, "order-2", "x" * 80, "", "order-1"]
    columns = {"correlation_id": ids, "event_id": [f"e{i}" if i % 4 else None for i in range(len(ids))]}
    table = _arrow_keys(columns, chunks=3)  # no trace_id column at all: an older part
    built = PartIndex.from_arrow(table, chunk_rows=chunk_rows)
    frame = PartIndex(schemas.conform("events", table.to_pandas(), columns=list(trace_index.KEYS)))
    assert built.n_rows == frame.n_rows == len(ids)
    for key in trace_index.KEYS:
        assert built.keys[key][0].dtype == np.uint64 and built.keys[key][1].dtype == np.int32
        assert np.array_equal(built.keys[key][0], frame.keys[key][0]), key
        assert np.array_equal(built.keys[key][1], frame.keys[key][1]), key
    # the positions are the rows: order-1 at 0, 4 and 11, in row order under one hash
    at = built.keys["correlation_id"]
    one = trace_index._hashes(np.array(["order-1"], dtype=object))[0]
    assert at[1][at[0] == one].tolist() == [0, 4, 11]
    assert len(built.keys["trace_id"][0]) == 0 and len(at[0]) == 8  # 12 rows less 2 empty and 2 missing
