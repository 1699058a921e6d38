"""The big cluster, end to end: every figure of the sizing targets, beside its target.

Starts its own Kafka and Redis on loopback (always stopped again) and builds an ordinary
production cluster on them (``bench/cluster_build.py``): 1,000 Kafka consumer groups, each
committed on 2 topics × 20 partitions (40,000 group-partition rows per sample over 100
shared topics), and 2,000 Redis streams × 2 groups. Then:

1. **History.** ``--history-hours`` (6) of samples every ``--history-every`` seconds (5)
   are written through the store's own write path (:class:`eventscope.recorder.Recorder`:
   raw rows, snapshots, rollups), shaped and named like the live cluster's samples, so the
   store holds what six hours of collection leave behind without waiting six hours.
2. **Live.** The dashboard (``eventscope dashboard``, collecting in its own process) watches
   the real brokers for ``--live-minutes`` while the cluster moves (new messages, commits;
   healthy, lagging and stalled groups). Its RSS (process and children) is read every 5 s.
3. **Pages.** Chromium opens every page; the time to main content (heading shown, script
   finished, no skeleton left) is measured warm, three times each.
4. **Figures.** The group chart over 6 h (query, fresh process and warm), alert evaluation
   per sample, the Kafka offsets sample (42,000 rows) in a process that only collects, the
   store on disk, and ``eventscope collect`` alone (peak RSS).
5. **Small store.** The same pages on the bundled sample data, for comparison.

Prints a table of figures beside the targets; asserts nothing. ``python -m
bench.cluster_scale --help`` lists the knobs (``--quick`` for a short run).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from playwright.sync_api import sync_playwright

from bench import cluster_build
from bench.offsets_bench import Collecting, run_cli_collect
from eventscope import memory, schemas
from eventscope.alerting import AlertEvaluator
from eventscope.config import load_config
from eventscope.localbrokers import free_port, start_kafka, start_redis
from eventscope.query import Queries
from eventscope.recorder import Recorder
from eventscope.runner import build_collectors, open_store

PAGES = [("", "Overview"), ("lag", "Consumer lag"), ("dead_letters", "Dead letters"), ("traces", "Traces"),
         ("flow_graph", "Flow graph"), ("catalog", "Event catalog"), ("alerts", "Alerts")]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DLQS = 20
TABLE: list[tuple[str, str, str]] = []


def log(msg: str) -> None:
    print(f"[cluster_scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def figure(name: str, target: str, measured: str) -> None:
    TABLE.append((name, target, measured))
    log(f"{name}: {measured} (target {target})")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f} on {os.cpu_count()} CPUs"


# -- 1. history through the write path ------------------------------------------------
def templates(bootstrap: str, redis_url: str) -> dict[str, pd.DataFrame]:
    """One real sample of the live cluster (names, partitions, offsets) to shape history on."""
    config = load_config(env={"EVENTSCOPE_KAFKA_BOOTSTRAP": bootstrap, "EVENTSCOPE_REDIS_URL": redis_url})
    frames: dict[str, list[pd.DataFrame]] = {}
    for collector in build_collectors(config):
        if collector.name in ("kafka.offsets", "redis.streams"):
            for name, frame in collector.collect().items():
                if name in ("lag", "topics", "consumers"):
                    frames.setdefault(name, []).append(frame)
        collector.close()
    return {name: pd.concat(parts, ignore_index=True) for name, parts in frames.items()}


def history_sample(template: dict[str, pd.DataFrame], at: pd.Timestamp, f: float, roles: np.ndarray,
                   rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """The cluster as it stood at fraction ``f`` of the history: offsets grown towards today's,
    lagging groups behind, stalled ones flat for the last hour."""
    lag = template["lag"].copy()
    end = lag["end"].astype("float64").to_numpy()
    committed = lag["committed"].astype("float64").to_numpy()
    grown_end = np.floor(end * f)
    behind = np.where(roles == "lagging", np.floor(30 * f), 0) + np.where(roles == "stalled", np.floor(60 * f), 0)
    grown = np.maximum(0, np.minimum(np.floor(committed * f), grown_end - behind))
    lag["sampled_at"] = at
    lag["end"] = pd.array(grown_end, dtype="Int64")
    lag["committed"] = pd.array(np.where(np.isnan(committed), np.nan, grown), dtype="Int64")
    lag["lag"] = (lag["end"] - lag["committed"]).clip(lower=0)
    lag["lag_seconds"] = np.where(lag["lag"].fillna(0).to_numpy() > 0, rng.uniform(5, 400, len(lag)), 0.0)
    topics = template["topics"].assign(sampled_at=at, end=lambda t: pd.array(
        np.floor(t["end"].astype("float64") * f), dtype="Int64"))
    dlq = schemas.conform("dlq", [{"sampled_at": at, "source": "kafka", "broker": "kafka",
                                   "dlq": f"{cluster_build.TOPIC_PREFIX}{i:03d}.DLT",
                                   "source_topic": f"{cluster_build.TOPIC_PREFIX}{i:03d}",
                                   "depth": int(i * 40 * f), "oldest_at": at - pd.Timedelta(minutes=30),
                                   "reasons": json.dumps({"IllegalStateException: bad #": int(i * 40 * f)})}
                                  for i in range(DLQS)])
    health = schemas.conform("health", [{"sampled_at": at, "source": s, "collector": c, "ok": True, "error": "",
                                         "duration_ms": 400.0, "rows": 40_000, "last_success": at}
                                        for s, c in (("kafka", "kafka.offsets"), ("redis", "redis.streams"))])
    return {"lag": lag, "topics": topics, "consumers": template["consumers"].assign(sampled_at=at),
            "dlq": dlq, "health": health}


def write_history(store_dir: Path, template: dict, hours: float, every_s: float, until: pd.Timestamp) -> None:
    store = open_store(load_config(env={"EVENTSCOPE_STORE": str(store_dir)}))
    recorder = Recorder(store)
    lag = template["lag"]
    groups = lag["group"].astype(str).to_numpy()
    numbers = np.array([int(g.rsplit("-", 1)[1]) if g.startswith(cluster_build.GROUP_PREFIX) else -1 for g in groups])
    roles = np.array([cluster_build.kafka_group_role(n) if n >= 0 else "healthy" for n in numbers])
    count = int(hours * 3600 / every_s)
    start = until - pd.Timedelta(hours=hours)
    rng = np.random.default_rng(1)
    t0, took = time.perf_counter(), []
    for i in range(count):
        at = start + pd.Timedelta(seconds=every_s * i)
        frames = history_sample(template, at, (i + 1) / count, roles, rng)
        t = time.perf_counter()
        recorder.store.append("health", frames.pop("health"))
        recorder.record(frames)
        took.append(time.perf_counter() - t)
        if i % 360 == 0:
            log(f"history: {i:,}/{count:,} samples ({at:%H:%M}), {time.perf_counter() - t0:.0f} s so far")
    figure("recorder: one sample written (44,000 lag rows, snapshots, rollups)", "(5 s interval)",
           f"median {1000 * statistics.median(took):.0f} ms, p95 {1000 * np.percentile(took, 95):.0f} ms "
           f"over {count:,} samples")
    log(f"history written in {time.perf_counter() - t0:.0f} s")


# -- 2. live dashboard and its memory ---------------------------------------------------
def rss_kib(pid: int) -> int:
    """RSS of a process and all its descendants."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as status:
                total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
            with open(f"/proc/{p}/task/{p}/children") as children:
                stack += [int(c) for c in children.read().split()]
        except (OSError, StopIteration):
            continue
    return total


def start_dashboard(env: dict, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cli = Path(sys.executable).with_name("eventscope")
    proc = subprocess.Popen([str(cli), "dashboard", "--port", str(port)], env=env,
                            stdout=log_path.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"dashboard did not start: {log_path.read_text()[-2000:]}")


def settle(page, title: str, timeout_ms: int = 120_000) -> float:
    started = time.perf_counter()
    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=timeout_ms)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stApp\"]')"
        "?.getAttribute('data-test-script-state') === 'notRunning'"
        " && document.querySelectorAll('[data-testid=\"stSkeleton\"]').length === 0",
        timeout=timeout_ms)
    failed = page.locator('[data-testid="stException"]')
    if failed.count():  # a page that raised has no figure worth printing
        raise RuntimeError(f"page {title!r} shows an exception: {failed.first.inner_text()[:500]}")
    return time.perf_counter() - started


def page_times(url: str, rounds: int = 3, shots: Path | None = None) -> dict[str, list[float]]:
    """Per page: seconds from navigation to main content, first visit then ``rounds`` warm ones."""
    out: dict[str, list[float]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1250})
        for round_ in range(rounds + 1):
            for path, title in PAGES:
                started = time.perf_counter()
                page.goto(f"{url}/{path}", wait_until="domcontentloaded")
                settle(page, title)
                out.setdefault(title, []).append(time.perf_counter() - started)
                if shots is not None and round_ == rounds:
                    page.screenshot(path=str(shots / f"{path or 'overview'}.png"), full_page=False)
        browser.close()
    return out


def watch_memory(pid: int, stop: threading.Event, points: list) -> None:
    """Every 5 s: (time, RSS of the process and its children, RSS of the process alone)."""
    while not stop.wait(5):
        points.append((time.monotonic(), rss_kib(pid), own_rss_kib(pid)))


def own_rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


def slope_mib_per_h(points: list) -> float:
    if len(points) < 3:
        return float("nan")
    t = np.array([p[0] for p in points]) / 3600.0
    m = np.array([p[1] for p in points]) / 1024.0
    return float(np.polyfit(t - t[0], m, 1)[0])


def floor_slope_mib_per_h(points: list, window_s: float = 300.0) -> float:
    """The trend of the lowest RSS of each ``window_s``: what the process keeps between the
    peaks of the page renders, which a fit through every point mixes in."""
    if not points:
        return float("nan")
    t0 = points[0][0]
    floors: dict[int, tuple[float, float]] = {}
    for t, m in points:
        k = int((t - t0) // window_s)
        if k not in floors or m < floors[k][1]:
            floors[k] = (t, m)
    return slope_mib_per_h(sorted(floors.values()))


# -- 4. other figures ---------------------------------------------------------------------
CHART = """
import sys, time, random
import pandas as pd
from eventscope.config import load_config
from eventscope.query import Queries
from eventscope.runner import open_store
q = Queries(open_store(load_config(env={"EVENTSCOPE_STORE": sys.argv[1]})))
groups = sys.argv[2].split(",")
since = pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=6)
t = time.perf_counter(); rows = q.group_history("kafka", groups[0], since); cold = time.perf_counter() - t
warm = []
for g in groups[1:]:
    t = time.perf_counter(); rows = q.group_history("kafka", g, since); warm.append(time.perf_counter() - t)
print(cold, sorted(warm)[len(warm) // 2], max(warm), len(rows))
"""


def chart_figure(store_dir: Path, groups: list[str]) -> None:
    picks = random.Random(5).sample(groups, 21)
    out = subprocess.run([sys.executable, "-c", CHART, str(store_dir), ",".join(picks)],
                         capture_output=True, text=True, timeout=300)
    try:
        cold, median, worst, rows = out.stdout.split()
    except ValueError:
        figure("one group's lag chart over 6 h", "≤ 1 s", f"failed: {out.stderr[-500:]}")
        return
    figure("one group's lag chart over 6 h (query)", "≤ 1 s",
           f"first in a fresh process {float(cold) * 1000:.0f} ms; 20 other groups median "
           f"{float(median) * 1000:.0f} ms, worst {float(worst) * 1000:.0f} ms ({rows} rows each)")


def alert_figure(store_dir: Path, seconds: float) -> None:
    """AlertEvaluator.evaluate() after each new sample the dashboard's collector writes."""
    store = open_store(load_config(env={"EVENTSCOPE_STORE": str(store_dir)}))
    memory.tune_gc()  # the garbage collector as `eventscope collect` sets it in the process that evaluates
    evaluator = AlertEvaluator(store, load_config(env={}).alerts)
    evaluator.evaluate()  # the first one reads the alert history
    took, cpu, seen = [], [], store.version("lag_groups")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if store.version("lag_groups") != seen:
            seen = store.version("lag_groups")
            t, c = time.perf_counter(), time.process_time()
            evaluator.evaluate()
            took.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        time.sleep(0.2)
    if took:
        # each evaluation starts as the collector writes a sample: on 2 cores they take turns,
        # so the time spent computing (CPU) is given beside the time it took (wall)
        p95 = sorted(took)[int(0.95 * (len(took) - 1))]
        figure("alert evaluation per sample", "≤ 0.5 s",
               f"median {1000 * statistics.median(took):.0f} ms, p95 {1000 * p95:.0f} ms, worst "
               f"{1000 * max(took):.0f} ms over {len(took)} samples ({len(evaluator.observations):,} observations "
               f"each); CPU median {1000 * statistics.median(cpu):.0f} ms, worst {1000 * max(cpu):.0f} ms")


def offsets_figure(bootstrap: str, redis_url: str, samples: int) -> None:
    collecting = Collecting(bootstrap, redis_url)
    try:
        collecting.sample("kafka")
        runs = [collecting.sample("kafka") for _ in range(samples)]
    finally:
        end = collecting.stop()
    walls = sorted(r["wall"] for r in runs if "wall" in r)
    rows = runs[-1].get("rows", {}).get("lag", 0)
    figure(f"Kafka offsets sample ({rows:,} lag rows), process that only collects", "≤ 0.4 s",
           f"median {1000 * statistics.median(walls):.0f} ms, best {1000 * walls[0]:.0f} ms over {len(walls)} "
           f"samples; that process's peak RSS {end.get('maxrss', 0) / 1024:.0f} MiB")


def du_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# -- main --------------------------------------------------------------------------------
def bench(workdir: Path, args) -> None:
    kafka_broker = start_kafka(workdir / "kafka")
    redis_broker = None
    dashboard = None
    try:
        redis_broker = start_redis(workdir / "redis")
        kafka = cluster_build.build_kafka(kafka_broker.address, groups=args.groups)
        streams = cluster_build.build_redis(redis_broker.address, streams=args.streams)
        log(f"cluster built ({load()})")
        template = templates(kafka_broker.address, redis_broker.address)
        store_dir = workdir / "store"
        live_start = pd.Timestamp.now(tz="UTC")
        write_history(store_dir, template, args.history_hours, args.history_every, live_start)
        figure("store on disk after the history", "≤ 2 GiB", f"{du_bytes(store_dir) / 2**20:,.0f} MiB")

        env = {**os.environ, "EVENTSCOPE_KAFKA_BOOTSTRAP": kafka_broker.address,
               "EVENTSCOPE_REDIS_URL": redis_broker.address, "EVENTSCOPE_STORE": str(store_dir)}
        env.pop("EVENTSCOPE_CONFIG", None)
        dashboard, url = start_dashboard(env, workdir / "dashboard.log")
        stop, points = threading.Event(), []
        watcher = threading.Thread(target=watch_memory, args=(dashboard.pid, stop, points), daemon=True)
        watcher.start()

        def keep_moving() -> None:
            while not stop.wait(15):
                cluster_build.advance_kafka(kafka)
                cluster_build.advance_redis(streams)
        mover = threading.Thread(target=keep_moving, daemon=True)
        mover.start()
        shots = workdir / "screenshots"
        shots.mkdir()
        page_times(url, rounds=0)  # the first visit starts the dashboard's collector
        log(f"dashboard up, collecting; live for {args.live_minutes} min ({load()})")
        alert_figure(store_dir, min(120.0, args.live_minutes * 60 / 2))
        deadline = time.monotonic() + args.live_minutes * 60
        times: dict[str, list[float]] = {}
        while time.monotonic() < deadline:
            for title, seconds in page_times(url, rounds=1, shots=shots).items():
                times.setdefault(title, []).extend(seconds[1:])
        for title, seconds in times.items():
            figure(f"page '{title}' to main content, warm, Chromium", "≤ 3 s",
                   f"median {statistics.median(seconds):.2f} s, worst {max(seconds):.2f} s ({len(seconds)} visits)")
        stop.set()
        mover.join(60)
        rss = [p[1] for p in points]
        pd.DataFrame(points, columns=["monotonic_s", "total_kib", "server_kib"]).to_csv(
            workdir / "memory.csv", index=False)  # the whole curve, for a look after the run (--keep)
        late = points[len(points) // 3:]
        server = [(t, own) for t, _, own in late]
        collector = [(t, total - own) for t, total, own in late]
        figure("dashboard process with its collector: RSS", "≤ 1 GiB, steady",
               f"peak {max(rss) / 1024:,.0f} MiB, last {rss[-1] / 1024:,.0f} MiB (server "
               f"{points[-1][2] / 1024:,.0f}, collector {(points[-1][1] - points[-1][2]) / 1024:,.0f}), trend "
               f"{slope_mib_per_h([(t, total) for t, total, _ in late]):+.0f} MiB/h (server "
               f"{slope_mib_per_h(server):+.0f}, collector {slope_mib_per_h(collector):+.0f}) over the "
               f"last two thirds of {args.live_minutes} min; the lowest of each 5 min: server "
               f"{floor_slope_mib_per_h(server):+.0f} MiB/h, collector {floor_slope_mib_per_h(collector):+.0f}")
        health = Queries(open_store(load_config(env={"EVENTSCOPE_STORE": str(store_dir)}))).health(live_start)
        offsets = health[health["collector"] == "kafka.offsets"]["duration_ms"]
        if not offsets.empty:
            figure("Kafka offsets sample inside the dashboard process", "(≤ 0.4 s alone)",
                   f"median {offsets.median():.0f} ms, worst {offsets.max():.0f} ms over {len(offsets)} samples")
        dashboard.terminate()
        dashboard.wait(30)
        dashboard = None
        chart_figure(store_dir, sorted(kafka.groups))
        offsets_figure(kafka_broker.address, redis_broker.address, args.samples)
        run_cli_collect(kafka_broker.address, redis_broker.address, args.collect_s, workdir, kafka, streams)
        figure("store on disk at the end", "≤ 2 GiB", f"{du_bytes(store_dir) / 2**20:,.0f} MiB")

        # 5. the small store: the bundled sample data, replayed
        small = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSCOPE_")}
        small["EVENTSCOPE_STORE"] = str(workdir / "small")
        dashboard, url = start_dashboard(small, workdir / "small.log")
        page_times(url, rounds=0)
        time.sleep(5)
        for title, seconds in page_times(url, rounds=3).items():
            figure(f"small store (sample data): page '{title}' warm", "not worse than before",
                   f"median {statistics.median(seconds[1:]):.2f} s")
    finally:
        if dashboard is not None:
            dashboard.kill()
        if redis_broker is not None:
            redis_broker.stop()
        kafka_broker.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_scale", description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--history-hours", type=float, default=6.0)
    parser.add_argument("--history-every", type=float, default=5.0, help="seconds between history samples")
    parser.add_argument("--live-minutes", type=float, default=10.0)
    parser.add_argument("--samples", type=int, default=6, help="timed Kafka offsets samples")
    parser.add_argument("--collect-s", type=float, default=90.0, help="seconds of `eventscope collect` alone")
    parser.add_argument("--quick", action="store_true", help="history every 60 s, 3 live minutes")
    parser.add_argument("--keep", help="keep the work directory here (store, logs, screenshots)")
    args = parser.parse_args(argv)
    if args.quick:
        args.history_every, args.live_minutes = 60.0, 3.0
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="eventscope-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"work directory {workdir} ({load()})")
    try:
        bench(workdir, args)
    finally:
        print("\n| figure | target | measured |\n| --- | --- | --- |")
        for name, target, measured in TABLE:
            print(f"| {name} | {target} | {measured} |")
        print(f"\n({load()}; history every {args.history_every:g} s over {args.history_hours:g} h, "
              f"{args.live_minutes:g} live minutes)")
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
