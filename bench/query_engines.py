"""Query engines for the redesigned store: DuckDB against pyarrow datasets, on Parquet parts.

Builds a synthetic store in a temp dir, at the size of a big cluster (1,000 Kafka groups
× 40 partitions, 2,000 Redis streams × 2 groups, sampled every 5 s, 6 h kept):

* ``lag_1m/`` per-minute rollup, 6,000 group-topics × 360 minutes (2.16 M rows), in two
  layouts: one part per minute as written live (360 files), and ``lag_1m_compacted/``:
  one part per hour (6 files), each sorted by (broker, group, topic, minute), row groups
  of 64k rows;
* ``latest/lag.parquet`` (44,000 partition rows) and ``latest/lag_groups.parquet``
  (6,000 group-topics);
* ``events/`` 2 M rows of the ``events`` schema, 40 parts of 50k rows in observed_at
  order, ~2 % dead letters on 5 DLQ topics;
* ``lag/`` raw partition rows of the last 15 min: 180 samples × 44,000 rows, one part per
  sample, and ``lag_compacted/``: 10 parts of 18 samples, each sorted by (broker, group,
  topic, partition, sampled_at), row groups of 64k rows.

Each query (Q1-Q7, see ``QUERIES``) is implemented idiomatically in both engines and
returns a pandas DataFrame. Every (query, layout, engine) runs in a fresh subprocess that
imports only pandas and that engine: cold = first run including ``duckdb.connect()`` /
``ds.dataset()``; warm = median of 10 more runs in that process (DuckDB reuses its
connection; pyarrow builds a new dataset per query, as the part list changes every 5 s;
both list the folder each time); peak = ``ru_maxrss`` after the runs minus the RSS after
imports. The subprocesses are repeated ``--reps`` times (interleaved) and the figures are
given as ranges over the repetitions. The OS page cache is warm in every run (the files
were just written): "cold" is a cold process, not a cold disk.

Also measured: import time and RSS, on-disk sizes, DuckDB's ``memory_limit`` and
``threads``, 4 threads querying at once (Streamlit runs each session in a thread), and
reads of a file that a writer replaces with ``os.replace`` meanwhile. Prints Markdown;
asserts nothing.

    python -m bench.query_engines [--reps 3] [--root DIR (reuse/keep the data)]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

END = "2026-06-01T12:00:00Z"  # the newest sample of the synthetic store ("now" of every query)
KAFKA_GROUPS, TOPICS_PER_GROUP, PARTITIONS, TOPICS = 1000, 2, 20, 500
REDIS_STREAMS, GROUPS_PER_STREAM = 2000, 2
MINUTES, RAW_SAMPLES, INTERVAL_S = 360, 180, 5
EVENT_ROWS, EVENT_PART_ROWS = 2_000_000, 50_000
STATUSES = ["OK", "WARN", "ERR", "STALL", "STOP", "REWIND", "UNKNOWN"]
STATUS_P = [0.90, 0.04, 0.01, 0.02, 0.01, 0.005, 0.015]
# eventscope.analysis.lag.SEVERITY
SEVERITY = {"OK": 0, "UNKNOWN": 1, "WARN": 2, "REWIND": 3, "STALL": 4, "STOP": 4, "ERR": 5}
DLQS = ["orders.DLQ", "payments.DLQ", "shipping.DLQ", "inventory.DLQ", "notifications.DLQ"]
DLQ_P = [0.40, 0.25, 0.15, 0.12, 0.08]
REASONS = ["ValidationError: field # is required", "ValidationError: amount # out of range",
           "KeyError: 'customer_id'", "TimeoutError: upstream # did not answer in # ms",
           "IntegrityError: duplicate key # in orders", "JSONDecodeError: Expecting value: line # column #",
           "PermissionError: tenant # not allowed", "ConnectionError: redis at # refused",
           "ValueError: unknown currency #", "SchemaError: schema_version # not supported",
           "RetryExhausted: # attempts", "UnicodeDecodeError: invalid start byte at #"]

GROUP, TOPIC_Q = "group-0417", "orders.DLQ"
NEEDLE = "04"  # the name search of Q3 (a substring, any case)


# -- data ---------------------------------------------------------------------------------
def _strs(values):
    import pyarrow as pa
    return pa.array(values, type=pa.string())


def _hex(rng, n: int, nbytes: int):
    """n random lowercase hex strings of 2*nbytes characters, built without Python objects."""
    import numpy as np
    import pyarrow as pa
    width = 2 * nbytes
    data = rng.bytes(n * nbytes).hex().encode()
    offsets = (np.arange(n + 1, dtype=np.int32) * width)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data)])


def _ts(ns, n=None):
    import numpy as np
    import pyarrow as pa
    arr = np.full(n, ns, dtype="int64") if n is not None else np.asarray(ns, dtype="int64")
    return pa.array(arr.view("datetime64[ns]"), type=pa.timestamp("ns", "UTC"))


def _group_topics():
    """The 6,000 group-topics: 2,000 Kafka (group, topic), 4,000 Redis (group, stream)."""
    groups, topics, brokers, parts = [], [], [], []
    for g in range(KAFKA_GROUPS):
        for j in range(TOPICS_PER_GROUP):
            groups.append(f"group-{g:04d}")
            topics.append(f"topic-{(TOPICS_PER_GROUP * g + j) % TOPICS:03d}")
            brokers.append("kafka")
            parts.append(PARTITIONS)
    for s in range(REDIS_STREAMS):
        for j in range(GROUPS_PER_STREAM):
            groups.append(f"rgroup-{(s + j) % REDIS_STREAMS:04d}")
            topics.append(f"stream-{s:04d}")
            brokers.append("redis")
            parts.append(1)
    return groups, topics, brokers, parts


def build_store(root: Path) -> dict[str, float]:
    """Write every layout under ``root``; returns seconds spent per dataset."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    end_ns = pd.Timestamp(END).value
    spent = {}
    groups, topics, brokers, parts = _group_topics()
    n_gt = len(groups)
    base_status = rng.choice(STATUSES, size=n_gt, p=STATUS_P)
    base_lag = rng.lognormal(5, 2, n_gt).astype("int64")
    base_lag_s = rng.lognormal(1, 1.5, n_gt)
    is_kafka = np.array([b == "kafka" for b in brokers])
    g_arr, t_arr, b_arr = _strs(groups), _strs(topics), _strs(brokers)
    parts_arr = pa.array(np.array(parts, dtype="int64"))

    # 1. lag_1m: one part per minute, then per-hour compacted parts
    t0 = time.perf_counter()
    live = root / "lag_1m"
    live.mkdir(parents=True)
    tables = []
    for m in range(MINUTES):
        minute_ns = end_ns - (MINUTES - 1 - m) * 60_000_000_000
        status = base_status.copy()
        flip = rng.random(n_gt) < 0.02
        status[flip] = rng.choice(STATUSES, size=int(flip.sum()), p=STATUS_P)
        lag = (base_lag * rng.uniform(0.5, 1.5, n_gt)).astype("int64")
        lag_s = base_lag_s * rng.uniform(0.5, 1.5, n_gt)
        members = np.where(is_kafka, rng.integers(1, 9, n_gt), rng.integers(1, 5, n_gt))
        members[status == "STOP"] = 0
        table = pa.table({
            "minute": _ts(minute_ns, n_gt), "source": b_arr, "broker": b_arr, "group": g_arr,
            "topic": t_arr, "partitions": parts_arr, "lag": pa.array(lag),
            "lag_max": pa.array((lag * rng.uniform(1.0, 1.3, n_gt)).astype("int64")),
            "lag_seconds": pa.array(lag_s, mask=status == "UNKNOWN"), "status": _strs(status),
            "members": pa.array(members.astype("int64")), "samples": pa.array(np.full(n_gt, 12, dtype="int64"))})
        pq.write_table(table, live / f"part-{minute_ns:020d}.parquet")
        tables.append(table)
    spent["lag_1m"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    compacted = root / "lag_1m_compacted"
    compacted.mkdir()
    for h in range(MINUTES // 60):
        hour = pa.concat_tables(tables[h * 60:(h + 1) * 60])
        hour = hour.sort_by([("broker", "ascending"), ("group", "ascending"), ("topic", "ascending"),
                             ("minute", "ascending")])
        pq.write_table(hour, compacted / f"part-{h:03d}.parquet", row_group_size=65_536)
    spent["lag_1m_compacted"] = time.perf_counter() - t0
    del tables

    # 2./5. latest snapshot of partition rows, and 180 raw samples of them
    t0 = time.perf_counter()
    rows_g, rows_t, rows_b, rows_p, rows_gt = [], [], [], [], []
    for i in range(n_gt):
        for p in range(parts[i]):
            rows_g.append(groups[i])
            rows_t.append(topics[i])
            rows_b.append(brokers[i])
            rows_p.append(p)
            rows_gt.append(i)
    gt = np.array(rows_gt)
    n = len(gt)
    pg, pt, pb = _strs(rows_g), _strs(rows_t), _strs(rows_b)
    partition = pa.array(np.array(rows_p, dtype="int64"))
    p_kafka = is_kafka[gt]
    p_status = base_status[gt].copy()
    flip = rng.random(n) < 0.01
    p_status[flip] = rng.choice(STATUSES, size=int(flip.sum()), p=STATUS_P)
    unknown = p_status == "UNKNOWN"
    p_lag = (base_lag[gt] * rng.uniform(0, 2, n)).astype("int64")
    committed0 = rng.integers(10_000, 10_000_000_000, n)
    rate = rng.integers(0, 200, n)
    p_members = np.where(p_kafka, rng.integers(1, 9, n), rng.integers(1, 5, n))
    p_members[p_status == "STOP"] = 0
    state = np.where(p_kafka, rng.choice(["Stable", "Empty", "PreparingRebalance"], size=n, p=[.95, .03, .02]),
                     "n/a")
    state[p_kafka & (p_status == "STOP")] = "Empty"
    state_arr, status_arr = _strs(state), _strs(p_status)
    pending = pa.array(rng.integers(0, 50, n), mask=p_kafka)
    source = pb

    def snapshot(i: int):
        at_ns = end_ns - (RAW_SAMPLES - 1 - i) * INTERVAL_S * 1_000_000_000
        lag = np.maximum(p_lag + rng.integers(-5, 6, n), 0)
        committed = committed0 + i * INTERVAL_S * rate
        return pa.table({
            "sampled_at": _ts(at_ns, n), "source": source, "broker": pb, "group": pg, "topic": pt,
            "partition": partition, "committed": pa.array(committed, mask=unknown),
            "end": pa.array(committed + lag), "lag": pa.array(lag, mask=unknown),
            "lag_seconds": pa.array(base_lag_s[gt] * rng.uniform(0.5, 1.5, n), mask=unknown),
            "group_state": state_arr, "members": pa.array(p_members.astype("int64")), "pending": pending,
            "status": status_arr})

    raw = root / "lag"
    raw.mkdir()
    samples = []
    for i in range(RAW_SAMPLES):
        table = snapshot(i)
        pq.write_table(table, raw / f"part-{i:05d}.parquet")
        samples.append(table)
    spent["lag"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    raw_c = root / "lag_compacted"
    raw_c.mkdir()
    per = RAW_SAMPLES // 10
    for k in range(10):
        chunk = pa.concat_tables(samples[k * per:(k + 1) * per]).sort_by(
            [(c, "ascending") for c in ("broker", "group", "topic", "partition", "sampled_at")])
        pq.write_table(chunk, raw_c / f"part-{k:03d}.parquet", row_group_size=65_536)
    spent["lag_compacted"] = time.perf_counter() - t0
    latest_t = samples[-1]
    del samples
    t0 = time.perf_counter()
    (root / "latest").mkdir()
    pq.write_table(latest_t, root / "latest" / "lag.parquet")
    # 3. group-topic summary of the newest snapshot
    worst = ["OK", "UNKNOWN", "WARN", "REWIND", "STALL", "STOP", "ERR"]  # SEVERITY, STOP above STALL
    sev_num = pc.index_in(latest_t["status"], value_set=_strs(worst))
    summary = latest_t.append_column("sev", sev_num).group_by(["broker", "group", "topic"], use_threads=False).aggregate(
        [([], "count_all"), ("lag", "sum"), ("lag", "max"), ("lag_seconds", "max"), ("sev", "max"),
         ("members", "max")])
    lag_groups = pa.table({
        "broker": summary["broker"], "group": summary["group"], "topic": summary["topic"],
        "partitions": summary["count_all"], "lag": summary["lag_sum"], "max_lag": summary["lag_max"],
        "lag_seconds": summary["lag_seconds_max"],
        "status": pc.take(_strs(worst), summary["sev_max"]), "members": summary["members_max"]})
    pq.write_table(lag_groups, root / "latest" / "lag_groups.parquet")
    spent["latest"] = time.perf_counter() - t0

    # 4. events
    t0 = time.perf_counter()
    ev = root / "events"
    ev.mkdir()
    span_ns = MINUTES * 60_000_000_000
    n_parts = EVENT_ROWS // EVENT_PART_ROWS
    types = [f"{a}{b}" for a in ("Order", "Payment", "Shipment", "Invoice", "Customer", "Stock")
             for b in ("Placed", "Updated", "Cancelled", "Confirmed", "Failed")]
    services = [f"svc-{name}-{i}" for name in ("orders", "billing", "shipping", "catalog") for i in range(10)]
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()
    notes = _strs([" ".join(rng.choice(words, size=rng.integers(2, 25))) for _ in range(1000)])
    cities = _strs(["Berlin", "Lyon", "Porto", "Gdansk", "Turin", "Leeds", "Ghent", "Graz"])
    join = pc.binary_join_element_wise

    def pick(values, size, p=None):
        return pc.take(values if isinstance(values, pa.Array) else _strs(values),
                       pa.array(rng.choice(len(values), size=size, p=p)))

    def num(values):
        return pc.cast(pa.array(values), pa.string())

    for k in range(n_parts):
        m = EVENT_PART_ROWS
        lo = end_ns - span_ns + k * span_ns // n_parts
        hi = end_ns - span_ns + (k + 1) * span_ns // n_parts
        observed = np.sort(rng.integers(lo, hi, m))
        at = observed - rng.integers(0, 2_000_000_000, m)
        dead = rng.random(m) < 0.02
        kafka = rng.random(m) < 0.8
        topic = np.array([f"topic-{t:03d}" for t in range(TOPICS)])[
            (rng.zipf(1.3, m) - 1) % TOPICS].astype(object)
        topic[dead] = rng.choice(DLQS, size=int(dead.sum()), p=DLQ_P)
        broker = np.where(kafka, "kafka", "redis")
        cents = rng.integers(100, 500_000, m)
        payload = join(
            '{"order_id":"', _hex(rng, m, 8), '","customer_id":"c-', num(rng.integers(0, 10**7, m)),
            '","amount":', num(cents // 100), ".", pc.utf8_lpad(num(cents % 100), width=2, padding="0"),
            ',"currency":"EUR","items":[{"sku":"sku-', num(rng.integers(0, 99999, m)), '","qty":',
            num(rng.integers(1, 9, m)), '},{"sku":"sku-', num(rng.integers(0, 99999, m)), '","qty":',
            num(rng.integers(1, 9, m)), '}],"email":"***@***","shipping":{"street":"***","city":"',
            pick(cities, m), '","zip":"#####"},"notes":"', pick(notes, m), '"}', "")
        trace, span = _hex(rng, m, 16), _hex(rng, m, 8)
        reason = np.where(dead, rng.choice(REASONS, size=m), "")
        headers = join('{"traceparent":"00-', trace, "-", span, '-01","content-type":"application/json",'
                       '"x-tenant":"t-', num(rng.integers(0, 300, m)), '","x-retry":"',
                       num(rng.integers(0, 4, m)), '"', pa.array(np.where(
                           dead, ',"x-exception-message":"' + reason + '"', "")), "}", "")
        table = pa.table({
            "observed_at": _ts(observed), "source": _strs(broker), "broker": _strs(broker),
            "topic": _strs(topic), "partition": pa.array(np.where(kafka, rng.integers(0, 20, m), 0)),
            "offset": pa.array(np.where(kafka, rng.integers(0, 10**9, m).astype(str),
                                        np.char.add((at // 1_000_000).astype(str), "-0"))),
            "at": _ts(at), "broker_at": _ts(at + rng.integers(0, 50_000_000, m)),
            "event_type": pick(types, m), "event_id": _hex(rng, m, 16), "service": pick(services, m),
            "correlation_id": _hex(rng, m, 16), "trace_id": trace, "parent_span_id": span,
            "dead_letter": pa.array(dead), "dlq_reason": _strs(reason),
            "original_topic": _strs(np.where(dead, np.char.replace(topic.astype(str), ".DLQ", ""), "")),
            "dlq_class": _strs(np.where(dead, np.char.partition(reason, ":")[:, 0], "")),
            "headers": headers, "preview": pc.utf8_slice_codeunits(payload, 0, 300),
            "schema_version": pick(["1", "2", ""], m, [.6, .3, .1]), "payload": payload,
            "size_bytes": pc.binary_length(payload).cast(pa.int64()),
            "decode_error": _strs(np.full(m, ""))})
        pq.write_table(table, ev / f"part-{observed[0]:020d}.parquet")
    spent["events"] = time.perf_counter() - t0
    return spent


# -- the queries ----------------------------------------------------------------------------
QUERIES = {
    "Q1": ("one group's lag history, 6 h, lag_1m", ["lag_1m", "lag_1m_compacted"]),
    "Q2": ("one group's partitions, latest/lag", ["latest"]),
    "Q3": ("50 worst groups + name search + count, lag_groups", ["latest"]),
    "Q4": ("counts per status × broker, lag_groups", ["latest"]),
    "Q5": ("newest 50 dead letters of one DLQ, last 1 h, events", ["events"]),
    "Q6": ("dead letters per minute × reason, last 1 h, events", ["events"]),
    "Q7": ("one group's partition history, 15 min, raw lag", ["lag", "lag_compacted"]),
}
Q5_COLUMNS = ["at", "partition", "offset", "event_type", "correlation_id", "dlq_reason", "preview"]
Q2_COLUMNS = ["sampled_at", "topic", "partition", "committed", "end", "lag", "lag_seconds", "group_state",
              "members", "status"]


def _since(hours: float):
    import pandas as pd
    return pd.Timestamp(END) - pd.Timedelta(hours=hours)


def _sev_case(col: str = "status") -> str:
    return "CASE " + col + " " + " ".join(f"WHEN '{k}' THEN {v}" for k, v in SEVERITY.items()) + " ELSE 0 END"


def duck_query(con, root: Path, query: str, layout: str):
    """Run ``query`` on DuckDB connection ``con``; a pandas DataFrame (Q3: (frame, total))."""
    glob = str(root / layout / "*.parquet")
    if query == "Q1":
        return con.execute("""SELECT minute, topic, lag, lag_seconds FROM read_parquet(?)
                              WHERE broker = ? AND "group" = ? ORDER BY topic, minute""",
                           [glob, "kafka", GROUP]).df()
    if query == "Q2":
        cols = ", ".join(f'"{c}"' for c in Q2_COLUMNS)
        return con.execute(f"""SELECT {cols} FROM read_parquet(?) WHERE broker = ? AND "group" = ?
                               ORDER BY topic, "partition" """,
                           [str(root / "latest" / "lag.parquet"), "kafka", GROUP]).df()
    if query == "Q3":
        df = con.execute(f"""SELECT *, count(*) OVER () AS total FROM (
                                 SELECT *, {_sev_case()} AS severity FROM read_parquet(?)
                                 WHERE "group" ILIKE ? OR topic ILIKE ?)
                             ORDER BY severity DESC, lag_seconds DESC NULLS LAST, broker, "group", topic
                             LIMIT 50""",
                         [str(root / "latest" / "lag_groups.parquet"), f"%{NEEDLE}%", f"%{NEEDLE}%"]).df()
        total = int(df["total"].iloc[0]) if len(df) else 0
        return df.drop(columns=["total"]), total
    if query == "Q4":
        return con.execute("""SELECT status, broker, count(*) AS n FROM read_parquet(?)
                              GROUP BY status, broker ORDER BY status, broker""",
                           [str(root / "latest" / "lag_groups.parquet")]).df()
    if query == "Q5":
        cols = ", ".join(f'"{c}"' for c in Q5_COLUMNS)
        # observed_at is TIMESTAMPTZ_NS: a TIMESTAMPTZ parameter must be cast to compare
        return con.execute(f"""SELECT {cols} FROM read_parquet(?)
                               WHERE topic = ? AND dead_letter AND observed_at >= ?::TIMESTAMPTZ_NS
                               ORDER BY "at" DESC LIMIT 50""",
                           [glob, TOPIC_Q, _since(1)]).df()
    if query == "Q6":
        # date_trunc has no TIMESTAMPTZ_NS overload: cast to TIMESTAMPTZ (µs) first
        return con.execute("""SELECT date_trunc('minute', "at"::TIMESTAMPTZ) AS minute, dlq_reason, count(*) AS n
                              FROM read_parquet(?)
                              WHERE topic = ? AND dead_letter AND observed_at >= ?::TIMESTAMPTZ_NS
                              GROUP BY ALL ORDER BY minute, dlq_reason""",
                           [glob, TOPIC_Q, _since(1)]).df()
    if query == "Q7":
        return con.execute("""SELECT sampled_at, topic, "partition", committed, "end", lag, lag_seconds
                              FROM read_parquet(?) WHERE broker = ? AND "group" = ?
                              ORDER BY sampled_at, topic, "partition" """,
                           [glob, "kafka", GROUP]).df()
    raise KeyError(query)


def arrow_query(root: Path, query: str, layout: str):
    """Run ``query`` with pyarrow.dataset; a pandas DataFrame (Q3: (frame, total))."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    f = pc.field
    if query == "Q1":
        t = ds.dataset(root / layout, format="parquet").to_table(
            columns=["minute", "topic", "lag", "lag_seconds"],
            filter=(f("broker") == "kafka") & (f("group") == GROUP))
        return t.sort_by([("topic", "ascending"), ("minute", "ascending")]).to_pandas()
    if query == "Q2":
        t = ds.dataset(root / "latest" / "lag.parquet", format="parquet").to_table(
            columns=Q2_COLUMNS, filter=(f("broker") == "kafka") & (f("group") == GROUP))
        return t.sort_by([("topic", "ascending"), ("partition", "ascending")]).to_pandas()
    if query == "Q3":
        t = ds.dataset(root / "latest" / "lag_groups.parquet", format="parquet").to_table(
            filter=pc.match_substring(f("group"), NEEDLE, ignore_case=True)
            | pc.match_substring(f("topic"), NEEDLE, ignore_case=True))
        severity = pc.take(pa.array(list(SEVERITY.values()), pa.int32()),
                           pc.index_in(t["status"], value_set=pa.array(list(SEVERITY))))
        t = t.append_column("severity", pc.fill_null(severity, 0))
        top = t.sort_by([("severity", "descending"), ("lag_seconds", "descending"), ("broker", "ascending"),
                         ("group", "ascending"), ("topic", "ascending")]).slice(0, 50)
        return top.to_pandas(), t.num_rows
    if query == "Q4":
        t = ds.dataset(root / "latest" / "lag_groups.parquet", format="parquet").to_table(
            columns=["status", "broker"])
        out = t.group_by(["status", "broker"], use_threads=False).aggregate([([], "count_all")])
        out = out.rename_columns(["status", "broker", "n"])
        return out.sort_by([("status", "ascending"), ("broker", "ascending")]).to_pandas()
    since = pa.scalar(_since(1), type=pa.timestamp("ns", "UTC"))
    dlq = (f("topic") == TOPIC_Q) & (f("dead_letter") == True) & (f("observed_at") >= since)  # noqa: E712
    if query == "Q5":
        t = ds.dataset(root / layout, format="parquet").to_table(columns=Q5_COLUMNS, filter=dlq)
        # top-k without a full sort; select_k_unstable returns the k indices in order
        idx = pc.select_k_unstable(t, k=50, sort_keys=[("at", "descending")])
        return t.take(idx).to_pandas()
    if query == "Q6":
        t = ds.dataset(root / layout, format="parquet").to_table(columns=["at", "dlq_reason"], filter=dlq)
        t = pa.table({"minute": pc.floor_temporal(t["at"], unit="minute"), "dlq_reason": t["dlq_reason"]})
        out = t.group_by(["minute", "dlq_reason"], use_threads=False).aggregate([([], "count_all")])
        out = out.rename_columns(["minute", "dlq_reason", "n"])
        return out.sort_by([("minute", "ascending"), ("dlq_reason", "ascending")]).to_pandas()
    if query == "Q7":
        t = ds.dataset(root / layout, format="parquet").to_table(
            columns=["sampled_at", "topic", "partition", "committed", "end", "lag", "lag_seconds"],
            filter=(f("broker") == "kafka") & (f("group") == GROUP))
        return t.sort_by([("sampled_at", "ascending"), ("topic", "ascending"),
                          ("partition", "ascending")]).to_pandas()
    raise KeyError(query)


# -- one measurement per fresh process ----------------------------------------------------
def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _maxrss() -> int:
    """RSS high-water of this process. ``VmHWM``, not ``ru_maxrss``: on Linux a child's
    ru_maxrss starts at its parent's (the value survives fork and exec), so a worker started by
    a parent that built the 700 MB store would report 700 MB whatever it did."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_maxrss() -> None:
    """Set the high-water mark to the current RSS (Linux >= 4.0), so imports do not count."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def worker(engine: str, query: str, layout: str, root: Path, warm: int, config: dict) -> dict:
    import pandas  # noqa: F401  (what every reader has loaded anyway)
    if engine == "duckdb":
        import duckdb
    else:
        import pyarrow.compute  # noqa: F401
        import pyarrow.dataset  # noqa: F401
    _reset_maxrss()
    base, base_max = _rss(), _maxrss()
    t = time.perf_counter()
    if engine == "duckdb":
        con = duckdb.connect(config=config)
        run = lambda: duck_query(con, root, query, layout)  # noqa: E731
    else:
        run = lambda: arrow_query(root, query, layout)  # noqa: E731
    error = None
    try:
        out = run()
    except Exception as exc:  # reported, e.g. a memory_limit that is too small
        error, out = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}", None
    cold = time.perf_counter() - t
    peak_cold = _maxrss()
    times = []
    for _ in range(warm if error is None else 0):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    frame = out[0] if isinstance(out, tuple) else out
    return {"cold": cold, "warm": statistics.median(times) if times else None,
            "peak_cold": peak_cold - base, "peak_all": _maxrss() - base, "import_peak": base_max - base,
            "rows": None if frame is None else len(frame), "error": error}


def run_worker(engine, query, layout, root, warm=10, config=None) -> dict:
    cmd = [sys.executable, "-m", "bench.query_engines", "--worker", engine, query, layout, str(root),
           "--warm", str(warm), "--config", json.dumps(config or {})]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1][:200] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


IMPORT_SNIPPET = """
import time, os, json, resource
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
t0 = time.perf_counter(); r0 = rss()
import pandas
t1 = time.perf_counter(); r1 = rss()
{imp}
t2 = time.perf_counter(); r2 = rss()
print(json.dumps({{"pandas_s": t1 - t0, "s": t2 - t1, "rss": r2 - r1, "pandas_rss": r1 - r0}}))
"""


def import_cost(module_import: str, reps: int) -> list[dict]:
    out = []
    for _ in range(reps):
        proc = subprocess.run([sys.executable, "-c", IMPORT_SNIPPET.format(imp=module_import)],
                              capture_output=True, text=True)
        out.append(json.loads(proc.stdout))
    return out


# -- checks beside the timings ---------------------------------------------------------------
def _normal(frame):
    """A frame reduced to comparable values: times as UTC ns integers, NA as None."""
    import pandas as pd
    out = {}
    for col in frame.columns:
        s = frame[col]
        if isinstance(s.dtype, pd.DatetimeTZDtype) or str(s.dtype).startswith("datetime64"):
            s = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
            s = s.dt.as_unit("ns").astype("int64")
        out[col] = [None if pd.isna(v) else (round(v, 9) if isinstance(v, float) else v) for v in s.tolist()]
    return out


def compare(root: Path) -> list[tuple[str, str, str, str]]:
    """Each query's result of both engines: same values? and the dtypes pandas gets."""
    import duckdb
    rows = []
    con = duckdb.connect()
    for q, (_, layouts) in QUERIES.items():
        d = duck_query(con, root, q, layouts[0])
        a = arrow_query(root, q, layouts[0])
        if q == "Q3":
            same = "same" if d[1] == a[1] else f"totals differ {d[1]} / {a[1]}"
            d, a = d[0], a[0]
        else:
            same = "same"
        if same == "same":
            nd, na = _normal(d), _normal(a)
            diff = [c for c in nd if nd[c] != na.get(c)]
            same = "same" if not diff and list(d.columns) == list(a.columns) else f"differ in {diff}"
        dtypes = lambda f: ", ".join(f"{c}:{t}" for c, t in f.dtypes.astype(str).items()  # noqa: E731
                                     if t not in ("int64", "float64"))
        rows.append((q, same, dtypes(d), dtypes(a)))
    # int64 columns with nulls (the store's Int64): all 44,000 rows of latest/lag.parquet
    path = str(root / "latest" / "lag.parquet")
    cols = ["committed", "lag", "pending", "lag_seconds"]
    d = con.execute('SELECT committed, lag, pending, lag_seconds FROM read_parquet(?)', [path]).df()
    import pyarrow.dataset as ds
    a = ds.dataset(path, format="parquet").to_table(columns=cols).to_pandas()
    same = "same" if _normal(d) == _normal(a) else "differ"
    rows.append(("latest/lag.parquet, columns with nulls", same,
                 ", ".join(f"{c}:{d[c].dtype}" for c in cols), ", ".join(f"{c}:{a[c].dtype}" for c in cols)))
    # DuckDB keeping the zone: SET TimeZone (after connect: as connect() config it needs icu
    # autoloaded, which fails offline) and Arrow out of a relation (con.sql, not execute)
    con.execute("SET TimeZone = 'UTC'")
    d = con.sql("SELECT sampled_at, lag FROM read_parquet($p) LIMIT 1", params={"p": path}).to_arrow_table().to_pandas()
    rows.append(("duckdb after `SET TimeZone='UTC'`, `con.sql(...).to_arrow_table().to_pandas()`", "",
                 ", ".join(f"{c}:{t}" for c, t in d.dtypes.astype(str).items()), ""))
    return rows


def settings_check(root: Path, tmp: Path) -> list[str]:
    """DuckDB's memory_limit / threads: accepted, and their effect on RSS (fresh processes)."""
    import duckdb
    lines = []
    con = duckdb.connect(config={"memory_limit": "256MB", "threads": 2})
    con.execute("SET threads = 2")
    con.execute("SET memory_limit = '200MB'")
    lines.append("after `SET threads = 2; SET memory_limit = '200MB'`: "
                 f"{con.execute('SELECT current_setting(' + chr(39) + 'threads' + chr(39) + ')').fetchone()[0]} threads, "
                 f"memory_limit {con.execute('SELECT current_setting(' + chr(39) + 'memory_limit' + chr(39) + ')').fetchone()[0]}")
    cfg_small = {"memory_limit": "200MB", "threads": 2, "temp_directory": str(tmp / "duck-spill")}
    for q, layout in (("Q5", "events"), ("Q1", "lag_1m")):
        for label, cfg in (("default", {}), ("memory_limit 200MB", cfg_small),
                           ("threads 1", {"threads": 1})):
            r = run_worker("duckdb", q, layout, root, warm=3, config=cfg)
            lines.append(f"{q} {layout}, {label}: cold {_ms(r.get('cold'))}, warm {_ms(r.get('warm'))}, "
                         f"peak Δ {_mb(r.get('peak_all'))}" + (f", error {r['error']}" if r.get("error") else ""))
    # a query that needs far more than 200MB: spills, or fails?
    snippet = f"""
import duckdb, time, json, os
con = duckdb.connect(config={json.dumps(cfg_small)})
t = time.perf_counter()
try:
    n = con.execute("SELECT count(*) FROM (SELECT DISTINCT payload FROM read_parquet('{root}/events/*.parquet'))").fetchone()[0]
    err = None
except Exception as e:
    n, err = None, type(e).__name__ + ': ' + str(e).splitlines()[0][:150]
hwm = [int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]
print(json.dumps({{"n": n, "err": err, "s": time.perf_counter() - t, "maxrss": hwm}}))
"""
    for label, snip in (("memory_limit 200MB", snippet),
                        ("no limit", snippet.replace(json.dumps(cfg_small), "{}"))):
        p = subprocess.run([sys.executable, "-c", snip], capture_output=True, text=True)
        try:
            r = json.loads(p.stdout.strip().splitlines()[-1])
            lines.append(f"DISTINCT payload over all 2 M events ({label}): "
                         f"{'error ' + r['err'] if r['err'] else str(r['n']) + ' rows'} in {r['s']:.1f} s, "
                         f"process peak RSS (VmHWM) {_mb(r['maxrss'])}")
        except Exception:
            lines.append(f"DISTINCT payload ({label}): failed: {p.stderr.strip()[-200:]}")
    shutil.rmtree(tmp / "duck-spill", ignore_errors=True)
    return lines


def threads_check(root: Path, n_threads: int = 4, per_thread: int = 25) -> list[str]:
    """Q2 and Q3 from n threads at once, as Streamlit sessions would."""
    import duckdb
    lines = []
    shared = duckdb.connect()
    variants = {
        "duckdb, one connection, cursor() per thread": lambda: shared.cursor(),
        "duckdb, one connection shared as is": lambda: shared,
        "pyarrow.dataset": lambda: None,
    }
    for q in ("Q2", "Q3"):
        for label, make in variants.items():
            errors, wrong = [], [0]
            expected = (arrow_query(root, q, "latest")[1] if q == "Q3" else len(arrow_query(root, q, "latest")))

            def loop():
                con = make()
                for _ in range(per_thread):
                    try:
                        out = arrow_query(root, q, "latest") if con is None else duck_query(con, root, q, "latest")
                        got = out[1] if q == "Q3" else len(out)
                        wrong[0] += got != expected
                    except Exception as exc:
                        errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
            t = time.perf_counter()
            threads = [threading.Thread(target=loop) for _ in range(n_threads)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            wall = time.perf_counter() - t
            n = n_threads * per_thread
            lines.append(f"{q}, {label}: {n} queries in {wall:.2f} s ({n / wall:.0f}/s), "
                         f"{len(errors)} errors, {wrong[0]} wrong results"
                         + (f" (first: {errors[0]})" if errors else ""))
    return lines


def replace_check(root: Path, tmp: Path, versions: int = 150) -> list[str]:
    """A writer replaces lag_groups.parquet with os.replace while readers query it.

    Version v has members = v in every row. Sequential: replace, then read at once: is the
    new version seen (DuckDB caches file data by path)? Concurrent: one writer thread, a
    reader thread per engine: errors, and torn reads (min(members) != max(members))."""
    import duckdb
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    folder = tmp / "replace"
    folder.mkdir(exist_ok=True)
    path = folder / "lag_groups.parquet"
    base = pq.read_table(root / "latest" / "lag_groups.parquet")

    def write(v: int) -> None:
        t = base.set_column(base.schema.get_field_index("members"), "members",
                            pa.array([v] * base.num_rows, pa.int64()))
        tmp_path = folder / f".lag_groups.{v}.tmp"
        pq.write_table(t, tmp_path)
        os.replace(tmp_path, path)

    con = duckdb.connect()
    readers = {
        "duckdb": lambda c=con: c.execute("SELECT min(members), max(members) FROM read_parquet(?)",
                                          [str(path)]).fetchone(),
        "duckdb, enable_external_file_cache=false": None,
        "pyarrow": lambda: (lambda t: (pc.min(t["members"]).as_py(), pc.max(t["members"]).as_py()))(
            ds.dataset(path, format="parquet").to_table(columns=["members"])),
    }
    con2 = duckdb.connect(config={"enable_external_file_cache": False})
    readers["duckdb, enable_external_file_cache=false"] = lambda c=con2: c.execute(
        "SELECT min(members), max(members) FROM read_parquet(?)", [str(path)]).fetchone()
    lines = []
    write(0)
    for name, read in readers.items():
        read()  # warm its caches
        stale = 0
        for v in range(1, versions + 1):
            write(v)
            lo, hi = read()
            stale += (lo, hi) != (v, v)
        lines.append(f"sequential, {name}: {stale} of {versions} reads right after os.replace "
                     "returned an older version")
    for name, read in readers.items():
        stop = threading.Event()
        counts = {"reads": 0, "errors": 0, "torn": 0, "first_error": None}

        def reader():
            while not stop.is_set():
                try:
                    lo, hi = read()
                    counts["torn"] += lo != hi
                except Exception as exc:
                    counts["errors"] += 1
                    counts["first_error"] = counts["first_error"] or f"{type(exc).__name__}: {str(exc)[:100]}"
                counts["reads"] += 1
        th = threading.Thread(target=reader)
        th.start()
        for v in range(versions + 1, 2 * versions + 1):
            write(v)
        stop.set()
        th.join()
        lines.append(f"concurrent, {name}: {counts['reads']} reads during {versions} replacements, "
                     f"{counts['errors']} errors, {counts['torn']} torn"
                     + (f" (first: {counts['first_error']})" if counts["first_error"] else ""))
    return lines


def churn_check(root: Path, tmp: Path, rounds: int = 200) -> list[str]:
    """Readers glob a folder of parts while a writer adds a part (tmp name + os.replace) and
    deletes the oldest at once (a compaction without a grace period)."""
    import duckdb
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    folder = tmp / "churn"
    folder.mkdir(exist_ok=True)
    table = pq.read_table(root / "latest" / "lag_groups.parquet")
    for i in range(20):
        pq.write_table(table, folder / f"part-{i:06d}.parquet")
    con = duckdb.connect()
    readers = {
        "duckdb read_parquet('dir/*.parquet')": lambda: con.execute(
            "SELECT count(*) FROM read_parquet(?)", [str(folder / "*.parquet")]).fetchone()[0],
        "pyarrow ds.dataset(dir)": lambda: ds.dataset(folder, format="parquet").count_rows(),
    }
    lines, n = [], 20
    for name, read in readers.items():
        stop = threading.Event()
        counts = {"reads": 0, "errors": 0, "first": None}

        def reader():
            while not stop.is_set():
                try:
                    read()
                except Exception as exc:
                    counts["errors"] += 1
                    counts["first"] = counts["first"] or f"{type(exc).__name__}: {str(exc).splitlines()[0][:90]}"
                counts["reads"] += 1
        th = threading.Thread(target=reader)
        th.start()
        for _ in range(rounds):
            tmp_path = folder / f".part-{n:06d}.tmp"
            pq.write_table(table, tmp_path)
            os.replace(tmp_path, folder / f"part-{n:06d}.parquet")
            os.remove(folder / f"part-{n - 20:06d}.parquet")
            n += 1
        stop.set()
        th.join()
        lines.append(f"{name}: {counts['reads']} reads during {rounds} add+delete rounds, {counts['errors']} failed"
                     + (f" (first: {counts['first']})" if counts["first"] else ""))
    return lines


# -- report ----------------------------------------------------------------------------------
def _ms(s) -> str:
    return "–" if s is None else (f"{1000 * s:.0f}" if s >= 0.1 else f"{1000 * s:.1f}")


def _mb(b) -> str:
    return "–" if b is None else f"{b / 2**20:.0f} MB"


def _range(values, fmt) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    lo, hi = fmt(min(values)), fmt(max(values))
    return lo if lo == hi else f"{lo}–{hi}"


def _size(path: Path) -> tuple[int, int]:
    files = list(path.rglob("*.parquet")) if path.is_dir() else [path]
    return sum(f.stat().st_size for f in files), len(files)


def _uptime() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="fresh processes per (query, layout, engine)")
    ap.add_argument("--root", help="build the store here (kept), or reuse the one already there")
    ap.add_argument("--worker", nargs=4, metavar=("ENGINE", "QUERY", "LAYOUT", "ROOT"), help=argparse.SUPPRESS)
    ap.add_argument("--warm", type=int, default=10, help=argparse.SUPPRESS)
    ap.add_argument("--config", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        engine, query, layout, root = args.worker
        print(json.dumps(worker(engine, query, layout, Path(root), args.warm, json.loads(args.config))))
        return

    import duckdb
    import numpy
    import pandas
    import pyarrow
    tmp = Path(tempfile.mkdtemp(prefix="eventscope-qe-"))
    root = Path(args.root) if args.root else tmp / "store"
    print("# Query engines: DuckDB vs pyarrow.dataset\n")
    print(f"duckdb {duckdb.__version__}, pyarrow {pyarrow.__version__}, pandas {pandas.__version__}, "
          f"numpy {numpy.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs")
    print(f"\nload at start: `{_uptime()}`\n")
    try:
        if not (root / "events").exists():
            t = time.perf_counter()
            spent = build_store(root)
            print(f"store built in {time.perf_counter() - t:.0f} s ("
                  + ", ".join(f"{k} {v:.0f} s" for k, v in spent.items()) + ")\n")
        print("| dataset | files | on disk | rows |\n| --- | ---: | ---: | ---: |")
        import pyarrow.dataset as ds
        for name in ("lag_1m", "lag_1m_compacted", "latest/lag.parquet", "latest/lag_groups.parquet", "events",
                     "lag", "lag_compacted"):
            size, files = _size(root / name)
            rows = ds.dataset(root / name, format="parquet").count_rows()
            print(f"| {name} | {files} | {size / 2**20:.1f} MB | {rows:,} |")

        print("\n## Import (fresh process, after `import pandas`)\n")
        print("| import | time ms | RSS added |\n| --- | ---: | ---: |")
        pandas_runs = []
        for label, imp in (("duckdb", "import duckdb"),
                           ("pyarrow.dataset + pyarrow.compute", "import pyarrow.dataset, pyarrow.compute")):
            runs = import_cost(imp, max(5, args.reps))
            pandas_runs += runs
            print(f"| `{label}` | {_range([r['s'] for r in runs], _ms)} (median {_ms(statistics.median(r['s'] for r in runs))}) "
                  f"| {_range([r['rss'] for r in runs], _mb)} |")
        print(f"| (`pandas` itself, for scale) | {_range([r['pandas_s'] for r in pandas_runs], _ms)} "
              f"| {_range([r['pandas_rss'] for r in pandas_runs], _mb)} |")

        configs = [(q, layout, engine) for q, (_, layouts) in QUERIES.items() for layout in layouts
                   for engine in ("duckdb", "pyarrow")]
        results: dict[tuple, list[dict]] = {c: [] for c in configs}
        for _ in range(args.reps):
            for c in configs:
                results[c].append(run_worker(c[2], c[0], c[1], root))
        print(f"\n## Queries ({args.reps} fresh processes each; ranges over them)\n")
        print("cold = first query of a fresh process incl. connect/dataset; warm = median of 10 more; "
              "peak = RSS high-water (VmHWM, reset after imports) minus RSS after imports\n")
        print("| query | layout | engine | rows | cold ms | warm ms | peak Δ RSS cold | after 11 runs |")
        print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for (q, layout, engine), runs in results.items():
            errors = [r["error"] for r in runs if r.get("error")]
            if errors:
                print(f"| {q} | {layout} | {engine} | error: {errors[0]} | | | | |")
                continue
            print(f"| {q} | {layout} | {engine} | {runs[0]['rows']:,} | {_range([r['cold'] for r in runs], _ms)} "
                  f"| {_range([r['warm'] for r in runs], _ms)} | {_range([r['peak_cold'] for r in runs], _mb)} "
                  f"| {_range([r['peak_all'] for r in runs], _mb)} |")
        print("\n" + "\n".join(f"- {q}: {d}" for q, (d, _) in QUERIES.items()))

        print("\n## Same results? dtypes pandas receives (other than int64/float64)\n")
        print("| query | values | duckdb `.df()` | pyarrow `.to_pandas()` |\n| --- | --- | --- | --- |")
        for q, same, dd, da in compare(root):
            print(f"| {q} | {same} | {dd} | {da} |")

        print("\n## DuckDB settings\n")
        print("\n".join(f"- {line}" for line in settings_check(root, tmp)))
        print("\n## 4 threads at once (25 queries each, one process)\n")
        print("\n".join(f"- {line}" for line in threads_check(root)))
        print("\n## Reading a file replaced by os.replace\n")
        print("\n".join(f"- {line}" for line in replace_check(root, tmp)))
        print("\n## Globbing a folder while parts are added and deleted\n")
        print("\n".join(f"- {line}" for line in churn_check(root, tmp)))
        print(f"\nload at end: `{_uptime()}`")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
