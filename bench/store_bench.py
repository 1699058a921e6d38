"""Store: append cost, window and latest read times at dashboard-like sizes.

Shape: 500 partitions (groups × partitions) sampled every 5 s for 6 hours = 4,320
snapshots, 2.16 M lag rows, the default retention. Reports the median of 5 reads,
cold (new process cache) and warm.
"""
from __future__ import annotations

import resource
import statistics
import tempfile
import time

import numpy as np
import pandas as pd

from eventscope.store import Retention, Store

PARTITIONS = 500
SNAPSHOTS = 4320
INTERVAL_S = 5


def snapshot(at: pd.Timestamp, i: int) -> pd.DataFrame:
    n = PARTITIONS
    return pd.DataFrame({
        "sampled_at": [at] * n, "source": "kafka", "broker": "kafka",
        "group": [f"group-{p // 10}" for p in range(n)], "topic": [f"topic-{p % 50}" for p in range(n)],
        "partition": np.arange(n) % 10, "committed": np.full(n, i * 10), "end": np.full(n, i * 10 + 5),
        "lag": np.full(n, 5), "lag_seconds": np.full(n, 1.5), "group_state": "Stable", "members": 1})


def timed(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    root = tempfile.mkdtemp(prefix="eventscope-bench-")
    store = Store(root, Retention(max_age_s=7 * 3600, max_rows=3_000_000))
    start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=SNAPSHOTS * INTERVAL_S)
    appends = []
    t0 = time.perf_counter()
    for i in range(SNAPSHOTS):
        t = time.perf_counter()
        store.append("lag", snapshot(start + pd.Timedelta(seconds=i * INTERVAL_S), i))
        appends.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    print(f"store: {SNAPSHOTS} snapshots × {PARTITIONS} rows appended in {total:.1f} s; "
          f"append p50 {1000 * statistics.median(appends):.1f} ms, "
          f"p99 {1000 * sorted(appends)[int(0.99 * len(appends))]:.1f} ms")
    cold = Store(root, store.retention)
    t = time.perf_counter()
    rows = len(cold.read("lag"))
    print(f"store: cold read of all {rows:,} rows: {time.perf_counter() - t:.2f} s")
    med, frame = timed(lambda: cold.read("lag"))
    print(f"store: warm read of all rows: {1000 * med:.0f} ms")
    since = pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=10)
    med, frame = timed(lambda: cold.read("lag", since=since))
    print(f"store: last-10-minutes window ({len(frame):,} rows): {1000 * med:.0f} ms")
    med, frame = timed(lambda: cold.latest("lag", window_s=3600))
    print(f"store: latest snapshot ({len(frame):,} rows): {1000 * med:.0f} ms")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"store: peak RSS of the benchmark process {rss:.0f} MiB")


if __name__ == "__main__":
    main()
