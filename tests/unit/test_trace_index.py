"""The trace index gives the same answer as a full scan; hops split only where the data allows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from eventscope import schemas, trace_index
from eventscope.analysis import traces
from eventscope.store import Retention, Store
from eventscope.trace_index import StoreTraceIndex, TraceIndex

T0 = pd.Timestamp("2026-11-28T10:00:00Z")


def chain_events(n: int, start: pd.Timestamp, broker: str = "kafka", observed: pd.Timestamp | None = None):
    rows = []
    for i in range(n):
        cid = f"cid-{i}"
        for step, (topic, etype) in enumerate([("orders", "OrderPlaced"), ("payments", "PaymentCharged"),
                                               ("shipments", "ShipmentCreated")]):
            at = start + pd.Timedelta(seconds=i) + pd.Timedelta(milliseconds=100 * step)
            rows.append({"observed_at": observed or at, "source": broker, "broker": broker, "topic": topic,
                         "partition": 0, "offset": f"{i}-{step}", "at": at, "broker_at": at,
                         "event_type": etype, "event_id": f"evt-{i}-{step}", "service": f"svc-{step}",
                         "correlation_id": cid if not (i == 3 and step == 2) else None,
                         "trace_id": f"{i + 1:032x}", "dead_letter": False})
    return schemas.conform("events", rows)


def test_lookup_matches_a_full_scan_for_every_kind_of_id():
    events = chain_events(50, T0)
    index = TraceIndex.from_frame(events)
    for some_id in ("cid-7", f"{8:032x}", f"{8:032X}", "evt-7-1", "cid-3", f"{4:032x}", "nope", ""):
        expected = traces.resolve(events, some_id).sort_values("offset")["offset"].tolist()
        got = index.lookup(some_id).sort_values("offset")["offset"].tolist()
        assert got == expected, some_id
    assert len(index.lookup("cid-7")) == 3
    assert index.nbytes == 12 * (3 * 150 - 1)  # hash + position per non-empty value


def test_hash_collisions_never_return_a_wrong_event(monkeypatch):
    monkeypatch.setattr(trace_index, "_hashes", lambda values: np.zeros(len(values), dtype=np.uint64))
    events = chain_events(20, T0)
    index = TraceIndex.from_frame(events)
    assert sorted(index.lookup("cid-5")["event_id"]) == ["evt-5-0", "evt-5-1", "evt-5-2"]
    assert index.lookup("cid-999").empty


def test_store_index_is_incremental_and_bounded_by_retention(tmp_path):
    now = pd.Timestamp.now(tz="UTC")
    store = Store(tmp_path, Retention(max_age_s=3600))
    old = chain_events(5, now - pd.Timedelta(hours=2), observed=now - pd.Timedelta(hours=2))
    old["correlation_id"] = old["correlation_id"].str.replace("cid", "old")
    store.append("events", old)
    store.append("events", chain_events(10, now - pd.Timedelta(minutes=5)))
    index = StoreTraceIndex(store)
    assert len(index.lookup("cid-2")) == 3
    assert index.lookup("old-1").empty  # past retention: not findable even if the part still exists
    first = dict(index._parts)
    more = chain_events(3, now - pd.Timedelta(minutes=1))
    more["correlation_id"] = more["correlation_id"].str.replace("cid", "new")
    store.append("events", more)
    assert len(index.lookup("new-2")) == 3
    assert all(index._parts[f] is part for f, part in first.items())  # old parts were not rebuilt


def _three_part_store(root, now):
    store = Store(root, Retention(max_age_s=3600))
    for k, name in enumerate(("a", "b", "c")):
        part = chain_events(10, now - pd.Timedelta(minutes=30 - k))
        part["correlation_id"] = part["correlation_id"].str.replace("cid", name)
        part["event_id"] = part["event_id"].str.replace("evt", f"evt{name}")
        part["trace_id"] = [f"{k:02x}{t[2:]}" for t in part["trace_id"]]
        store.append("events", part)
    return store


def _sidecars(folder):
    return sorted(p.name[: -len(trace_index.INDEX_SUFFIX)] for p in folder.glob("*" + trace_index.INDEX_SUFFIX))


def test_index_is_saved_with_each_events_part_and_deleted_with_it(tmp_path, monkeypatch):
    now = pd.Timestamp.now(tz="UTC")
    store = _three_part_store(tmp_path, now)
    folder = tmp_path / "events"
    parts = [p["file"] for p in store.part_entries("events")]
    assert len(parts) == 3 and _sidecars(folder) == sorted(parts)
    store.append("lag", schemas.conform("lag", [{"sampled_at": now, "group": "g", "topic": "t"}]))
    assert not list((tmp_path / "lag").glob("*" + trace_index.INDEX_SUFFIX))  # only events parts have one
    store.compact("events")
    merged = [p["file"] for p in store.part_entries("events")]
    assert len(merged) == 1 and set(_sidecars(folder)) == set(parts) | set(merged)  # old ones kept for the grace period
    monkeypatch.setattr("eventscope.store.GRACE_S", 0.0)
    store.append("events", chain_events(1, now))
    assert _sidecars(folder) == sorted(p["file"] for p in store.part_entries("events"))
    assert sorted(p.name for p in folder.glob("*.parquet")) == _sidecars(folder)


def test_a_new_process_opens_the_saved_indexes_and_reads_only_the_parts_it_needs(tmp_path):
    now = pd.Timestamp.now(tz="UTC")
    writer = _three_part_store(tmp_path, now)
    everything = writer.read("events")
    reader = Store(tmp_path, Retention(max_age_s=3600))  # a new process: nothing cached
    index = StoreTraceIndex(reader)
    parts = index.refresh().parts
    assert [p.source for p in parts] == ["saved"] * 3 and not any(p.loaded for p in parts)
    assert list(index.parts()) == [p["file"] for p in reader.part_entries("events")]
    assert index.refresh().events == len(everything) == 90
    reads = []
    load_rows = reader.load_rows
    reader.load_rows = lambda name, file, positions, rows: reads.append((file, [int(p) for p in positions])) or load_rows(
        name, file, positions, rows)
    got = index.lookup("b-4")
    assert sorted(got["event_id"]) == ["evtb-4-0", "evtb-4-1", "evtb-4-2"]
    middle = reader.part_entries("events")[1]["file"]
    # only the part that holds the trace is read, only the trace's rows are asked for (the
    # hits, then their correlation ID's rows), and nothing of it stays in memory
    assert reads == [(middle, [12, 13, 14]), (middle, [12, 13, 14])]
    assert not any(p.loaded for p in parts)
    full = TraceIndex.from_frame(everything)
    for some_id in ("a-1", "c-9", "evtc-2-1", f"02{5:030x}", "a-3", "nope"):
        expected = full.lookup(some_id).sort_values("offset")["offset"].tolist()
        assert index.lookup(some_id).sort_values("offset")["offset"].tolist() == expected, some_id
    assert index.lookup("nope").empty and index.lookup("nope").columns.tolist() == list(schemas.EVENTS)


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage", "wrong rows", "unsorted"])
def test_a_missing_or_damaged_index_file_is_rebuilt_from_the_part(tmp_path, damage):
    now = pd.Timestamp.now(tz="UTC")
    _three_part_store(tmp_path, now)
    victim = sorted((tmp_path / "events").glob("*" + trace_index.INDEX_SUFFIX))[1]
    if damage == "missing":
        victim.unlink()
    elif damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:100])
    elif damage == "garbage":
        victim.write_bytes(b"<script>alert(1)</script>" * 10)
    else:
        with np.load(victim) as saved:
            arrays = dict(saved)
        if damage == "wrong rows":
            arrays["format"] = np.array([1, 7], dtype=np.int64)
        else:
            arrays["event_id.hash"] = arrays["event_id.hash"][::-1].copy()
        with open(victim, "wb") as fh:
            np.savez(fh, **arrays)
    index = StoreTraceIndex(Store(tmp_path, Retention(max_age_s=3600)))
    assert [p.source for p in index.refresh().parts] == ["saved", "frame", "saved"]
    assert sorted(index.lookup("b-4")["event_id"]) == ["evtb-4-0", "evtb-4-1", "evtb-4-2"]
    assert sorted(index.lookup("evtb-7-2")["correlation_id"]) == ["b-7"] * 3


def test_index_hashes_are_the_same_in_every_process():
    import json
    import os
    import subprocess
    import sys
    ids = ["cid-1", "0af7651916cd43dd8448eb211c80319c", "évt-ünïcode", "x" * 600]
    mine = [int(h) for h in trace_index._hashes(ids)]
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", "import json, sys; from eventscope.trace_index import _hashes; "
             "print(json.dumps([int(h) for h in _hashes(json.loads(sys.argv[1]))]))", json.dumps(ids)],
            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": seed})
        assert json.loads(out.stdout) == mine


def redis_hop_rows(wait_s: float, service_s: float):
    a_at = T0
    b_at = T0 + pd.Timedelta(seconds=wait_s + service_s)
    def ev(topic, at, etype, svc, off):
        return {"observed_at": at, "source": "redis", "broker": "redis", "topic": topic, "partition": 0,
                "offset": off, "at": at, "broker_at": at, "event_type": etype, "event_id": off,
                "service": svc, "correlation_id": "c", "trace_id": None, "dead_letter": False}
    return schemas.conform("events", [ev("orders", a_at, "OrderPlaced", "order-service", "1-0"),
                                      ev("payments", b_at, "PaymentCharged", "payment-service", "2-0")])


def lag_samples(delivered_at: pd.Timestamp, every_s: float, span_s: float, position: int = 10):
    """entries-read of group payment-service on `orders`: the event is entry number `position`,
    added at T0 (entries-added goes 9 → 10 at T0); delivered at `delivered_at`."""
    rows = []
    t = T0 - pd.Timedelta(seconds=every_s / 2)
    while t <= T0 + pd.Timedelta(seconds=span_s):
        for group in ("payment-service", "analytics-service"):
            rows.append({"sampled_at": t, "source": "redis", "broker": "redis", "group": group,
                         "topic": "orders", "partition": 0,
                         "committed": position if (group == "analytics-service" or t >= delivered_at) else position - 1,
                         "end": position if t >= T0 else position - 1, "lag": 0, "lag_seconds": 0.0,
                         "group_state": "n/a", "members": 1})
        t += pd.Timedelta(seconds=every_s)
    return schemas.conform("lag", rows)


def test_redis_hop_split_is_estimated_when_the_samples_bracket_the_delivery():
    rows = redis_hop_rows(wait_s=60, service_s=20)
    lag = lag_samples(T0 + pd.Timedelta(seconds=60), every_s=5, span_s=120)
    hop = traces.from_rows(rows, lag_history=lag, now=T0 + pd.Timedelta(minutes=5))["hops"][0]
    assert hop["service"] == "payment-service" and hop["latency_ms"] == 80_000
    assert hop["split"] == "estimated"
    assert abs(hop["broker_wait_ms"] - 60_000) <= hop["split_error_ms"] + 1
    assert hop["split_error_ms"] <= 2_500
    assert hop["broker_wait_ms"] + hop["service_ms"] == pytest.approx(80_000)


def test_no_split_when_the_samples_cannot_say():
    rows = redis_hop_rows(wait_s=0.05, service_s=0.1)  # a 150 ms hop, samples every 5 s
    lag = lag_samples(T0 + pd.Timedelta(seconds=0.05), every_s=5, span_s=30)
    hop = traces.from_rows(rows, lag_history=lag, now=T0 + pd.Timedelta(minutes=5))["hops"][0]
    assert hop["split"] is None and hop["broker_wait_ms"] is None and hop["service_ms"] is None
    kafka = rows.assign(broker="kafka", offset=["1", "2"])
    hop = traces.from_rows(kafka, lag_history=lag.assign(broker="kafka"), now=T0)["hops"][0]
    assert hop["split"] is None  # Kafka commits after processing: never split


def test_dead_letter_hop_links_to_the_copied_event_and_names_the_group():
    rows = chain_events(1, T0)
    dead = rows.iloc[[1]].assign(topic="payments.DLT", dead_letter=True, offset="0",
                                 broker_at=T0 + pd.Timedelta(seconds=2),
                                 headers='{"kafka_dlt-original-consumer-group": "inventory-service"}')
    rows = pd.concat([rows.iloc[:2], dead], ignore_index=True)
    found = traces.from_rows(rows, now=T0 + pd.Timedelta(minutes=5))
    assert found["outcome"] == "dead_lettered"
    hop = found["hops"][-1]
    assert (hop["from_topic"], hop["to_topic"], hop["service"], hop["dead_letter"]) == \
        ("payments", "payments.DLT", "inventory-service", True)
    assert hop["from_event_id"] == hop["to_event_id"] == "evt-0-1"


def test_summary_slowest_and_failed():
    events = chain_events(5, T0)
    events.loc[events["correlation_id"] == "cid-2", "at"] += pd.to_timedelta(
        [0, 4, 9], unit="s").values
    events.loc[(events["correlation_id"] == "cid-4") & (events["topic"] == "shipments"), "dead_letter"] = True
    table = traces.summary(events, now=T0 + pd.Timedelta(minutes=5))
    assert traces.slowest(table).iloc[0]["correlation_id"] == "cid-2"
    assert traces.slowest(table).iloc[0]["duration_ms"] == 9200.0
    assert traces.failed(table)["correlation_id"].tolist() == ["cid-4"]


def test_a_lookup_reads_only_the_row_groups_of_its_rows_and_keeps_none(tmp_path, monkeypatch):
    """A store part's rows are read per lookup, a row group at a time, and dropped after: a
    server looking up trace after trace holds the index arrays, never the parts. The rows it
    reads are exactly the rows at the positions asked for, across row groups."""
    monkeypatch.setattr("eventscope.store.ROW_GROUP_ROWS", 7)
    now = pd.Timestamp.now(tz="UTC")
    writer = Store(tmp_path, Retention(max_age_s=3600))
    events = chain_events(40, now - pd.Timedelta(minutes=5))  # 120 rows: 18 row groups of 7 or fewer
    writer.append("events", events)
    store = Store(tmp_path, Retention(max_age_s=3600))
    (entry,) = store.part_entries("events")
    assert pq.ParquetFile(store.part_path("events", entry["file"])).num_row_groups == 18
    stored = store.read("events")
    for positions in ([0], [6, 7], [5, 13, 64, 119], list(range(0, 120, 11)), list(range(120))):
        got = store.load_rows("events", entry["file"], np.array(positions), 120)
        pd.testing.assert_frame_equal(got.reset_index(drop=True), stored.iloc[positions].reset_index(drop=True))
    with pytest.raises(ValueError, match="part has 120 rows, its index 121"):
        store.load_rows("events", entry["file"], np.array([0]), 121)
    groups = []
    read_row_groups = pq.ParquetFile.read_row_groups
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups",
                        lambda self, wanted, **kw: groups.append(list(wanted)) or read_row_groups(self, wanted, **kw))
    index = StoreTraceIndex(store)
    full = TraceIndex.from_frame(stored)
    for i in (0, 2, 17, 39):
        got = index.lookup(f"cid-{i}")
        assert sorted(got["event_id"]) == sorted(full.lookup(f"cid-{i}")["event_id"]) == [
            f"evt-{i}-{s}" for s in range(3) if not (i == 3 and s == 2)]
    # cid-39's rows are 117-119: row groups 16 (112-118) and 17 (119), read for the hit and for
    # its trace; cid-17's (51-53) row group 7 alone
    assert groups[-4:] == [[7], [7], [16, 17], [16, 17]] and all(len(g) <= 2 for g in groups)
    assert not any(p.loaded for p in index.refresh().parts)
