"""The store: append, windows, latest, retention, and whole snapshots under concurrency."""
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from eventscope import schemas
from eventscope import store as store_module
from eventscope.store import Retention, Store
from eventscope.trace_index import StoreTraceIndex


def lag_snapshot(at, n=50, source="kafka", marker=0):
    return pd.DataFrame({"sampled_at": [at] * n, "source": source, "broker": "kafka",
                         "group": "g", "topic": "t", "partition": range(n),
                         "committed": marker, "end": marker, "lag": 0})


def test_append_read_window_columns_and_filters(tmp_path):
    store = Store(tmp_path)
    t0 = pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=10)
    for i in range(5):
        store.append("lag", lag_snapshot(t0 + pd.Timedelta(minutes=i), n=3, marker=i))
    store.append("lag", lag_snapshot(t0, n=2, source="redis"))
    assert len(store.read("lag")) == 17
    window = store.read("lag", since=t0 + pd.Timedelta(minutes=2), until=t0 + pd.Timedelta(minutes=3))
    assert sorted(window["committed"].unique()) == [2, 3]
    assert list(store.read("lag").columns) == list(schemas.LAG)
    assert store.read("lag")["sampled_at"].is_monotonic_increasing
    picked = store.read("lag", columns=["committed", "partition"], where={"source": "redis"})
    assert list(picked.columns) == ["committed", "partition"] and len(picked) == 2
    assert picked["committed"].dtype == "Int64"
    assert len(store.read("lag", where={"partition": [0, 2]})) == 11


def test_raw_frames_keep_only_their_window(tmp_path):
    """Every lag row of every sample is kept for the raw window only; a log frame keeps the
    whole retention."""
    store = Store(tmp_path, Retention(max_age_s=3600, raw_window_s=300))
    now = pd.Timestamp.now(tz="UTC")
    store.append("lag", lag_snapshot(now - pd.Timedelta(minutes=20), n=5, marker=1))
    store.append("lag", lag_snapshot(now - pd.Timedelta(minutes=1), n=5, marker=2))
    assert set(store.read("lag")["committed"]) == {2}
    assert len(store.part_entries("lag")) == 1, "the expired part left the manifest"
    store.append("health", pd.DataFrame({"sampled_at": [now - pd.Timedelta(minutes=20)], "source": "s",
                                         "collector": "c", "ok": True}))
    assert len(store.read("health")) == 1


def test_snapshot_frames_are_replaced_whole(tmp_path):
    store = Store(tmp_path)
    assert store.get("lag_groups").empty and store.version("lag_groups") == "empty"
    now = pd.Timestamp.now(tz="UTC")
    rows = pd.DataFrame({"sampled_at": [now] * 3, "source": "kafka", "broker": "kafka",
                         "group": ["a", "b", "c"], "topic": "t", "partitions": 1, "lag": [1, 2, None]})
    store.put("lag_groups", rows)
    first = store.version("lag_groups")
    store.put("lag_groups", rows.iloc[:1])
    assert list(store.get("lag_groups")["group"]) == ["a"] and store.version("lag_groups") != first
    assert list(store.get("lag_groups", where={"group": "b"})["group"]) == []
    with pytest.raises(ValueError):
        store.append("lag_groups", rows)


def test_empty_store_reads_empty_frames_with_schema(tmp_path):
    store = Store(tmp_path)
    for name in schemas.SCHEMAS:
        frame = store.read(name)
        assert frame.empty and list(frame.columns) == list(schemas.SCHEMAS[name])
    assert store.version("lag") == "empty"


def health_rows(at, n, marker):
    return pd.DataFrame({"sampled_at": [at] * n, "source": "kafka", "collector": "c", "ok": True,
                         "rows": marker})


def test_retention_by_age_and_rows_and_the_cap_is_reported(tmp_path):
    store = Store(tmp_path, Retention(max_age_s=3600, max_rows=100, compact_every=4))
    now = pd.Timestamp.now(tz="UTC")
    store.append("health", health_rows(now - pd.Timedelta(hours=2), n=10, marker=-1))  # too old
    for i in range(8):
        store.append("health", health_rows(now - pd.Timedelta(minutes=30 - i), n=30, marker=i))
    frame = store.read("health")
    assert (frame["rows"] >= 0).all(), "expired rows must not be read"
    assert store.caps()[0]["frame"] == "health", "the cap cut into the retention: it must be reported"
    store.compact("health")
    on_disk = sum(p["rows"] for p in store._read_manifest(tmp_path / "health")["parts"])
    assert on_disk <= 100
    frame = store.read("health")
    assert len(frame) == 100 and frame["rows"].max() == 7  # the newest rows are the ones kept
    (cap,) = store.caps()
    assert cap["max_rows"] == 100 and cap["kept_since"] == frame["sampled_at"].min()


def test_unknown_columns_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="not in its schema"):
        Store(tmp_path).append("lag", pd.DataFrame({"sampled_at": [pd.Timestamp.now(tz="UTC")],
                                                     "lagg": [1]}))


WRITER = """
import sys
import pandas as pd
from eventscope.store import Retention, Store
store = Store(sys.argv[1], Retention(compact_every=5))
base = pd.Timestamp.now(tz="UTC")
for i in range(int(sys.argv[2])):
    store.append("lag", pd.DataFrame({"sampled_at": [base + pd.Timedelta(milliseconds=i)] * 200,
                                      "source": "kafka", "broker": "kafka", "group": "g", "topic": "t",
                                      "partition": range(200), "committed": i, "end": i, "lag": 0}))
"""


def test_reader_during_writes_sees_whole_snapshots(tmp_path):
    """Each snapshot is 200 rows with one marker; a reader must never see part of one."""
    # a separate interpreter, like `eventscope collect` beside the dashboard
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "60"])
    reader = Store(tmp_path)
    reads = 0
    deadline = time.monotonic() + 300  # generous: CI shares 2 cores with Kafka
    while proc.poll() is None and time.monotonic() < deadline:
        frame = reader.read("lag")
        counts = frame.groupby("committed").size()
        assert (counts == 200).all(), f"torn snapshot: {counts[counts != 200].to_dict()}"
        reads += 1
    assert proc.wait(timeout=300) == 0
    assert reads > 5
    final = reader.read("lag").groupby("committed").size()
    assert len(final) == 60 and (final == 200).all()


@pytest.mark.parametrize("row_group", [65_536, 64])
@pytest.mark.parametrize("full", [False, True])
def test_merging_parts_keeps_every_row_and_sorts_rollups_by_key(tmp_path, monkeypatch, full, row_group):
    """Compaction merges small parts in Arrow: the rows read back are the same, in the
    rollup's key order, with nulls and a column older parts lacked (the sorted rows are
    written a row group at a time: with 64-row groups, 16 of them)."""
    monkeypatch.setattr("eventscope.store.ROW_GROUP_ROWS", row_group)
    store = Store(tmp_path, Retention(compact_every=1000 if full else 40))  # else: at the 40th append
    start = pd.Timestamp.now(tz="UTC").floor("1min") - pd.Timedelta(minutes=40)
    for m in range(40):
        rows = [{"minute": start + pd.Timedelta(minutes=m), "source": "kafka", "broker": "kafka",
                 "group": f"g{g}", "topic": f"t{(g + m) % 3}", "partitions": 3,
                 "lag": None if (g + m) % 7 == 0 else g * m, "lag_max": g * m + 1,
                 "lag_seconds": float(m) if g % 2 else None, "status": "OK" if g % 3 else "STALL",
                 "members": 1, "committed": 10 * m, "consumed": m, "samples": 12}
                for g in range(25)]
        frame = schemas.conform("lag_1m", rows)
        if m < 5:
            frame = frame.drop(columns=["consumed"])  # parts from before a column existed
        store.append("lag_1m", frame)
        if m == 38:
            before = store.read("lag_1m")
    before = pd.concat([before, store.read("lag_1m", since=start + pd.Timedelta(minutes=39))], ignore_index=True)
    if full:
        store.compact("lag_1m")
    parts = store._read_manifest(tmp_path / "lag_1m")["parts"]
    assert len(parts) == 1 and parts[0]["rows"] == 1000
    after = store.read("lag_1m")
    key = ["minute", "group", "topic"]
    pd.testing.assert_frame_equal(after.sort_values(key).reset_index(drop=True),
                                  before.sort_values(key).reset_index(drop=True))
    assert (after["consumed"] > 0).sum() == 35 * 25  # the five older parts read as 0
    stored = pd.read_parquet(tmp_path / "lag_1m" / parts[0]["file"])
    assert pq.ParquetFile(tmp_path / "lag_1m" / parts[0]["file"]).num_row_groups == -(-1000 // row_group)
    order = ["broker", "group", "topic", "minute"]
    in_order = stored[order].sort_values(order, kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(stored[order], in_order)  # the rollup's key order: a group's rows together
    assert parts[0]["tmin"] == before["minute"].min().isoformat()
    assert parts[0]["tmax"] == before["minute"].max().isoformat()


def test_a_store_written_before_a_column_existed_still_reads(tmp_path, monkeypatch):
    """An upgrade adds a column (``dlq.unread``): parts and snapshots written without it read
    with nulls there, through the store and through both query engines."""
    from eventscope.query import Queries
    now = pd.Timestamp.now(tz="UTC").floor("s")
    row = {"sampled_at": now, "source": "kafka", "broker": "kafka", "dlq": "orders.DLT",
           "source_topic": "orders", "depth": 3, "oldest_at": now, "reasons": "{}"}
    old_schema = {k: v for k, v in schemas.SCHEMAS["dlq"].items() if k != "unread"}
    monkeypatch.setitem(schemas.SCHEMAS, "dlq", old_schema)
    monkeypatch.setitem(schemas.SCHEMAS, "dlq_latest", old_schema)
    store = Store(tmp_path)
    store.append("dlq", schemas.conform("dlq", [row]))
    store.put("dlq_latest", schemas.conform("dlq_latest", [row]))
    monkeypatch.undo()
    assert "unread" in schemas.SCHEMAS["dlq"]
    store = Store(tmp_path)
    for frame in (store.read("dlq"), store.get("dlq_latest"), Queries(store).scan("dlq"),
                  Queries(store, engine="pyarrow").scan("dlq")):
        assert list(frame.columns) == list(schemas.SCHEMAS["dlq"])
        assert frame["depth"].tolist() == [3] and frame["unread"].isna().all()
    # a newer part beside the old one: both read, the old row null where it has no value
    store.append("dlq", schemas.conform("dlq", [{**row, "sampled_at": now + pd.Timedelta(seconds=1), "unread": 7}]))
    both = Queries(store).scan("dlq")
    assert both["unread"].tolist()[1] == 7 and pd.isna(both["unread"].tolist()[0])


def test_the_store_is_its_owners_alone(tmp_path):
    """Payloads, failure reasons and names are nobody else's business: folders 0700, files
    0600, whatever the umask; temporary files are never left behind."""
    import os
    old = os.umask(0o022)
    try:
        store = Store(tmp_path / "store")
        now = pd.Timestamp.now(tz="UTC")
        store.append("events", schemas.conform("events", [{"observed_at": now, "source": "kafka", "broker": "kafka",
                                                           "topic": "t", "partition": 0, "offset": "1"}]))
        store.put("lag_latest", schemas.conform("lag_latest", []))
    finally:
        os.umask(old)
    _assert_owners_alone(tmp_path / "store")


def _assert_owners_alone(root) -> None:
    import stat
    paths = [root, *root.rglob("*")]
    assert any(p.name == ".lock" for p in paths)
    for path in paths:  # lock files included: nothing in the store is anyone else's to open
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
        assert not path.name.endswith(".tmp")


def test_a_collected_store_is_its_owners_alone(tmp_path, monkeypatch):
    """``eventscope collect`` makes the store folder itself (its writer's lock, the alerts'
    marker) and the dashboard's collector appends its log there: all 0700/0600 too."""
    import os
    from eventscope import cli
    from eventscope.files import open_private
    for name in ("EVENTSCOPE_KAFKA_BOOTSTRAP", "EVENTSCOPE_REDIS_URL", "EVENTSCOPE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    old = os.umask(0o022)
    try:  # no broker configured: one sample of the packaged recording
        assert cli.main(["collect", "--once", "--store", str(tmp_path / "store")]) == 0
        for mode in ("ab", "a"):
            with open_private(tmp_path / "store" / "collector.log", mode) as log:
                log.write(b"x" if mode == "ab" else "x")
    finally:
        os.umask(old)
    assert {".collector.lock", "alerts-evaluated", "collector.log"} <= {p.name for p in (tmp_path / "store").iterdir()}
    _assert_owners_alone(tmp_path / "store")


def test_a_snapshot_read_while_it_is_replaced_is_one_version_or_the_other(tmp_path):
    """Readers open a snapshot once: reading the footer and the pages through two opens by
    name, a reader whose snapshot was replaced in between mixed two files and failed."""
    import threading
    store = Store(tmp_path)
    now = pd.Timestamp.now(tz="UTC")

    def version(n: int) -> pd.DataFrame:
        return schemas.conform("lag_latest", [{"sampled_at": now, "source": "kafka", "broker": "kafka",
                                               "group": f"g{n}-{i}", "topic": "t" * (1 + n % 7), "partition": i,
                                               "committed": i, "end": i + n, "lag": n} for i in range(200 + n % 50)])
    store.put("lag_latest", version(0))
    stop, errors, seen = threading.Event(), [], set()

    def writer():
        n = 1
        while not stop.is_set():
            store.put("lag_latest", version(n))
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            try:
                rows = store.get("lag_latest", where={"broker": "kafka"})
            except OSError as exc:
                errors.append(exc)
                continue
            lags = set(rows["lag"].tolist())
            assert len(lags) == 1  # one version, never a mix
            seen |= lags
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[:3]
    assert len(seen) > 5  # the writer really replaced it under the reader


def _orders(t0, first, n):
    return schemas.conform("events", [
        {"observed_at": t0 + pd.Timedelta(seconds=i), "source": "kafka", "broker": "kafka", "topic": "orders",
         "partition": 0, "offset": str(i), "at": t0 + pd.Timedelta(seconds=i), "event_type": "OrderPlaced",
         "event_id": f"evt-{i}", "correlation_id": f"order-{i}", "dead_letter": False}
        for i in range(first, first + n)])


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_part_costs_its_own_rows_and_is_named(tmp_path):
    """A part cut in half (a disk that lost its end) is skipped by every reader (the store,
    both query engines, the trace index), named with its rows and time range, and moved
    aside by the writer's next compaction, which then goes on as before."""
    from eventscope.query import Queries
    t0 = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=30)
    writer = Store(tmp_path, Retention(compact_every=1000))
    for k in range(4):
        writer.append("events", _orders(t0, k * 10, 10))
    damaged = writer.part_entries("events")[1]
    _truncate(tmp_path / "events" / damaged["file"])
    (tmp_path / "events" / (damaged["file"] + ".trace-index.npz")).unlink()  # rebuilt from the rows: fails too

    reader = Store(tmp_path)
    wanted = [f"evt-{i}" for i in [*range(10), *range(20, 40)]]
    assert sorted(reader.read("events")["event_id"], key=lambda e: int(e[4:])) == wanted
    assert sorted(Queries(reader).scan("events")["event_id"], key=lambda e: int(e[4:])) == wanted
    assert sorted(Queries(Store(tmp_path)).scan("events")["event_id"], key=lambda e: int(e[4:])) == wanted
    index = StoreTraceIndex(Store(tmp_path))
    assert index.lookup("order-25")["event_id"].tolist() == ["evt-25"]
    assert index.lookup("order-15").empty
    (named,) = reader.damage()
    assert (named["frame"], named["file"], named["rows"]) == ("events", damaged["file"], 10)
    assert named["tmin"] == t0 + pd.Timedelta(seconds=10) and named["tmax"] == t0 + pd.Timedelta(seconds=19)
    assert "parquet" in named["error"].lower() or "magic" in named["error"].lower()

    writer.compact("events")  # the writer finds it on its own, moves it aside, merges the rest
    assert (tmp_path / "events" / "damaged" / damaged["file"]).exists()
    assert [p["rows"] for p in writer.part_entries("events")] == [30]
    fresh = Store(tmp_path)  # a process started later still learns what is missing
    assert [(d["file"], d["rows"]) for d in fresh.damage()] == [(damaged["file"], 10)]
    writer.append("events", _orders(t0, 40, 5))
    assert len(fresh.read("events")) == 35


def test_a_damaged_part_found_by_a_merge_is_moved_aside_on_an_append(tmp_path):
    """Appends that trigger compaction keep working when a small part is damaged."""
    t0 = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=30)
    store = Store(tmp_path, Retention(compact_every=3))
    store.append("events", _orders(t0, 0, 5))
    store.append("events", _orders(t0, 5, 5))
    _truncate(tmp_path / "events" / store.part_entries("events")[0]["file"])
    for k in range(2, 8):
        store.append("events", _orders(t0, k * 5, 5))
    assert len(store.read("events")) == 35
    assert [d["rows"] for d in store.damage()] == [5]
    assert len(list((tmp_path / "events" / "damaged").glob("part-*.parquet"))) == 1


def test_a_truncated_snapshot_reads_empty_until_the_next_sample(tmp_path):
    now = pd.Timestamp.now(tz="UTC")
    store = Store(tmp_path)
    store.put("lag_latest", lag_snapshot(now, n=5))
    _truncate(tmp_path / "lag_latest" / "snapshot.parquet")
    assert store.get("lag_latest").empty
    store.put("lag_latest", lag_snapshot(now, n=7))
    assert len(store.get("lag_latest")) == 7


def test_a_reader_holds_no_more_than_the_store_does(tmp_path):
    """200 appends: a reader that looks every few appends holds indexes of the current parts
    only and a result cache within its budget (a reader once kept every part it had ever
    decoded: 519 of them after 640 appends)."""
    from eventscope.query import Queries, ResultCache
    t0 = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(hours=1)
    writer = Store(tmp_path, Retention(max_rows=1000, compact_every=8))
    reader = Queries(Store(tmp_path), cache=ResultCache(budget=2 * 1024 * 1024))
    index = StoreTraceIndex(reader.store)
    for k in range(200):
        writer.append("events", _orders(t0, k * 10, 10))
        if k % 5 == 0:
            reader.cached("count", ("events",), (), lambda: reader.scan("events", columns=["event_id"]))
            assert not index.lookup(f"order-{k * 10}").empty
    index.refresh()
    assert len(index.parts()) == len(writer.part_entries("events")) <= 8
    assert reader.cache.used <= reader.cache.budget


def _rewrite(path, change):
    """A part's file rewritten by ``change(table)``: what an older eventscope left behind."""
    import pyarrow.parquet as pq
    pq.write_table(change(pq.read_table(path)), path)


def test_a_merge_keeps_every_row_and_fills_what_older_parts_lack(tmp_path):
    """Appends that trigger a merge: the merged part holds the parts' rows in their order,
    with the union of their columns (a column an older part lacks is null, a column it
    wrote as all-null takes the newer type), one row group for what fits in one, its time
    range and row count in the manifest, and a trace index that finds every row."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    t0 = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=30)
    store = Store(tmp_path, Retention(compact_every=4))
    store.append("events", _orders(t0, 0, 5))
    store.append("events", _orders(t0, 5, 5))
    first, second = (tmp_path / "events" / p["file"] for p in store.part_entries("events"))
    _rewrite(first, lambda t: t.drop_columns(["dead_letter"]))
    _rewrite(second, lambda t: t.set_column(t.schema.get_field_index("event_type"), "event_type",
                                            pa.nulls(t.num_rows, pa.null())))
    store.append("events", _orders(t0, 10, 5))
    store.append("events", _orders(t0, 15, 6))  # the fourth append merges the four parts

    (entry,) = store.part_entries("events")
    assert entry["rows"] == 21
    assert (pd.Timestamp(entry["tmin"]), pd.Timestamp(entry["tmax"])) == (t0, t0 + pd.Timedelta(seconds=20))
    merged = pq.ParquetFile(tmp_path / "events" / entry["file"])
    assert merged.metadata.num_row_groups == 1
    rows = store.read("events")
    assert rows["event_id"].tolist() == [f"evt-{i}" for i in range(21)]
    stored = merged.read()
    assert stored["dead_letter"].is_null().to_pylist() == [True] * 5 + [False] * 16
    assert stored.schema.field("event_type").type in (pa.string(), pa.large_string())
    assert stored["event_type"].to_pylist() == ["OrderPlaced"] * 5 + [None] * 5 + ["OrderPlaced"] * 11
    assert (rows["at"] == [t0 + pd.Timedelta(seconds=i) for i in range(21)]).all()
    index = StoreTraceIndex(Store(tmp_path))
    assert [index.lookup(f"order-{i}")["event_id"].tolist() for i in (0, 7, 20)] == [["evt-0"], ["evt-7"], ["evt-20"]]


def test_a_merge_writes_full_row_groups_whatever_the_parts_sizes(tmp_path, monkeypatch):
    """Parts of 5 rows merged with row groups of 7: groups of 7, 7, 7 and the 4 left, in order;
    with a byte limit reached by every batch, each batch is a row group of its own (a merged
    part's rows cut at 7)."""
    import pyarrow.parquet as pq
    monkeypatch.setattr(store_module, "ROW_GROUP_ROWS", 7)
    t0 = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=30)
    store = Store(tmp_path, Retention(compact_every=5))
    for k in range(5):
        store.append("events", _orders(t0, 5 * k, 5))
    (entry,) = store.part_entries("events")
    merged = pq.ParquetFile(tmp_path / "events" / entry["file"])
    assert [merged.metadata.row_group(i).num_rows for i in range(merged.metadata.num_row_groups)] == [7, 7, 7, 4]
    assert store.read("events")["event_id"].tolist() == [f"evt-{i}" for i in range(25)]
    # and a row group is written as soon as it holds MERGE_GROUP_BYTES, however few its rows
    monkeypatch.setattr(store_module, "MERGE_GROUP_BYTES", 1)
    for k in range(5, 10):
        store.append("events", _orders(t0, 5 * k, 5))
    merged = [pq.ParquetFile(tmp_path / "events" / p["file"]).metadata for p in store.part_entries("events")]
    assert [[m.row_group(i).num_rows for i in range(m.num_row_groups)] for m in merged] == [[7, 7, 7, 4] + [5] * 5]
    assert store.read("events")["event_id"].tolist() == [f"evt-{i}" for i in range(50)]


MERGE_MEMORY = """
import sys, pandas as pd, pyarrow as pa
from eventscope import schemas
from eventscope.store import Retention, Store
store = Store(sys.argv[1], Retention(compact_every=9))
t0 = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=30)
if sys.argv[2] == "write":
    for k in range(8):
        store.append("events", schemas.conform("events", pd.DataFrame({
            "observed_at": t0, "at": t0, "source": "kafka", "broker": "kafka", "topic": "orders", "partition": 0,
            "offset": [str(k * 30_000 + i) for i in range(30_000)],
            "event_id": [f"evt-{k}-{i}" for i in range(30_000)], "payload": "x" * 400})))
    print(sum(p["rows"] for p in store.part_entries("events")))
else:
    before = pa.default_memory_pool().max_memory()
    store.append("events", schemas.conform("events", pd.DataFrame({
        "observed_at": [t0], "at": t0, "source": "kafka", "broker": "kafka", "topic": "orders", "event_id": "last"})))
    print(len(store.part_entries("events")), pa.default_memory_pool().max_memory() - before)
"""


def test_a_merge_holds_a_row_group_at_a_time_not_the_merged_part(tmp_path):
    """240,000 events with 400-byte payloads (over 90 MB of payloads) merged into one part in
    a fresh process: Arrow's peak allocation stays within a few row groups' worth (a merge that
    read the parts whole peaked at 158 MiB here, this one at about 24)."""
    def run(step):
        out = subprocess.run([sys.executable, "-c", MERGE_MEMORY, str(tmp_path), step],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return [int(v) for v in out.stdout.split()]
    assert run("write") == [240_000]
    parts, peak = run("merge")
    assert parts == 1
    assert peak < 64 * 2**20, f"the merge peaked at {peak / 2**20:.0f} MiB of Arrow memory"


def test_a_torn_part_under_a_whole_saved_index_costs_a_lookup_its_rows_only(tmp_path):
    """The trace index file is whole and names rows the part's file no longer holds: a
    lookup finds nothing there (the store names the part) and everything elsewhere."""
    t0 = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=30)
    writer = Store(tmp_path, Retention(compact_every=1000))
    for k in range(3):
        writer.append("events", _orders(t0, k * 10, 10))
    torn = writer.part_entries("events")[1]
    assert (tmp_path / "events" / (torn["file"] + ".trace-index.npz")).exists()
    _truncate(tmp_path / "events" / torn["file"])
    reader = Store(tmp_path)
    index = StoreTraceIndex(reader)
    assert index.lookup("order-15").empty
    assert index.lookup("order-25")["event_id"].tolist() == ["evt-25"]
    assert index.lookup("order-5")["event_id"].tolist() == ["evt-5"]
    assert [d["file"] for d in reader.damage()] == [torn["file"]]


def test_the_columns_of_many_parts_are_held_once_per_distinct_set(tmp_path):
    """file_columns caches each file's columns; parts of one frame share one set object, so
    the cache's 4,096 entries cost a path each, not a copy of every column name."""
    t0 = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=30)
    writer = Store(tmp_path, Retention(compact_every=1000))
    for k in range(5):
        writer.append("events", _orders(t0, k * 10, 10))
    writer.append("health", pd.DataFrame([{"sampled_at": t0, "source": "kafka", "collector": "kafka.events",
                                           "ok": True, "error": "", "duration_ms": 1.0, "rows": 1}]))
    files = [tmp_path / "events" / p["file"] for p in writer.part_entries("events")]
    sets = [store_module.file_columns(f) for f in files]
    assert all(s is sets[0] for s in sets) and "correlation_id" in sets[0]
    health = store_module.file_columns(tmp_path / "health" / writer.part_entries("health")[0]["file"])
    assert health is not sets[0] and "collector" in health and "correlation_id" not in health
    # a bound: past COLUMN_SETS_MAX distinct sets, a new one is returned as it is, not kept
    kept = dict(store_module._COLUMN_SETS)
    try:
        store_module._COLUMN_SETS.clear()
        store_module._COLUMN_SETS.update({frozenset([str(i)]): frozenset([str(i)])
                                          for i in range(store_module.COLUMN_SETS_MAX)})
        odd = frozenset(["x", "y"])
        assert store_module._shared(odd) is odd and odd not in store_module._COLUMN_SETS
    finally:
        store_module._COLUMN_SETS.clear()
        store_module._COLUMN_SETS.update(kept)


def test_the_parts_found_whole_are_remembered_up_to_a_bound(tmp_path, monkeypatch):
    """find_damaged reads each footer once; the paths it remembers are bounded (parts come and
    go for as long as the process runs), and a part torn after a clear is still found."""
    monkeypatch.setattr("eventscope.store.CHECKED_MAX", 3)
    t0 = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=30)
    writer = Store(tmp_path, Retention(compact_every=1000))
    for k in range(5):
        writer.append("events", _orders(t0, k * 10, 10))
    paths = [str(tmp_path / "events" / p["file"]) for p in writer.part_entries("events")]
    reader = Store(tmp_path)
    assert not reader.find_damaged("events", paths)
    assert 0 < len(reader._checked) <= 3
    _truncate(Path(paths[0]))
    assert reader.find_damaged("events", paths) and [d["file"] for d in reader.damage()] == [Path(paths[0]).name]
