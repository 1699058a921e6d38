"""Lag collection at the size of an ordinary production cluster: wall time per sample, its
phases, and the collecting process's memory.

Starts its own local Kafka and Redis (always stopped again) and builds the cluster with
:mod:`bench.cluster_build`: 100 topics × 20 partitions, 1,000 consumer groups each committed
on every partition of 2 topics (40,000 group-partition rows + 2,000 topic rows per sample),
and 2,000 Redis streams × 2 groups; a few seconds of the demo pipeline (the simulator) add
its topics, streams and groups on both brokers. Then, in a separate process that does
nothing but collect (as ``eventscope collect`` does, so its peak RSS is the collector's):

- Kafka: ``KafkaOffsetsCollector.collect()`` as ``eventscope collect`` builds it (with the
  read_committed probe), 1 warm-up sample, then samples back to back (``static``: nothing
  moves) and samples each after a round of traffic and commits (``live``: end offsets move,
  healthy groups commit the new end, lagging groups fall behind, stalled groups never
  commit); wall time median and min, process CPU, and the collector's own phase timings
  (``KafkaOffsetsCollector.phases``: wall-clock slices in the order the collector waits for
  each answer; requests overlap, so a slice is the wait left once the answers before it
  were in);
- Redis: ``RedisStreamsCollector.collect()``: the first sample (it reads every stream's
  backlog as events), then samples each after a round of new entries and reads;
- the collecting process's peak RSS (``VmHWM``) after its imports, after the
  Kafka samples and after the Redis samples.

In this process, for comparison: ``describe_consumer_groups`` of every group (what a sample
adds when all groups have members: the bench's groups have none, so the collector skips
them), and, with ``--collect-s``, ``eventscope collect`` itself run against both brokers
for that long (its peak RSS from ``wait4``), while the cluster keeps moving.

It prints figures; it asserts nothing. Run: ``python -m bench.offsets_bench [--samples N]``.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import redis
from confluent_kafka.admin import AdminClient

from bench import cluster_build
from eventscope.collectors.kafka.offsets import KafkaOffsetsCollector, kafka_client_config
from eventscope.collectors.kafka.record_times import RecordTimes
from eventscope.collectors.redis.streams import RedisStreamsCollector
from eventscope.config import load_config
from eventscope.localbrokers import start_kafka, start_redis
from eventscope.simulator import SimulatorConfig, run_simulation

DEMO_PREFIX = "demo-"


def log(msg: str) -> None:
    print(f"[offsets_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ms(seconds: float) -> str:
    return f"{1000 * seconds:,.0f} ms"


def mib(kib: float) -> str:
    return f"{kib / 1024:,.0f} MiB"


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) / {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def rss_now_kib(field: str = "VmRSS", pid: int | str = "self") -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_kib(pid: int | str = "self") -> int:
    """A process's peak RSS since it started its program (``VmHWM``). Not ``ru_maxrss``: Linux
    keeps that across ``execve``, so a child forked from a big bench process reports the
    bench's size, not its own."""
    return rss_now_kib("VmHWM", pid)


# --- the collecting process ----------------------------------------------------------

def collecting_process(conn, bootstrap: str, redis_url: str) -> None:
    """Build the collectors as ``eventscope collect`` does and take a sample per request:
    ``"kafka"`` or ``"redis"`` → figures of that sample; ``"stop"`` → exit."""
    config = load_config(env={"EVENTSCOPE_KAFKA_BOOTSTRAP": bootstrap, "EVENTSCOPE_REDIS_URL": redis_url})
    conf = kafka_client_config(config.kafka)
    kafka = KafkaOffsetsCollector(AdminClient(conf), topics=config.kafka.topics,
                                  timeout_s=config.kafka.timeout_s, probe_conf=conf,
                                  record_times=RecordTimes(conf))
    streams = RedisStreamsCollector(redis.Redis.from_url(config.redis.url, socket_timeout=config.redis.timeout_s,
                                                         socket_connect_timeout=config.redis.timeout_s),
                                    pattern=config.redis.stream_pattern)
    conn.send({"maxrss": peak_kib(), "rss": rss_now_kib()})
    try:
        while True:
            what = conn.recv()
            if what == "stop":
                break
            collector = kafka if what == "kafka" else streams
            try:
                wall, cpu = time.perf_counter(), time.process_time()
                out = collector.collect()
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            except Exception as exc:  # report it: the bench goes on with what it has
                conn.send({"error": f"{exc.__class__.__name__}: {exc}"})
                continue
            conn.send({"wall": wall, "cpu": cpu, "rows": {name: len(frame) for name, frame in out.items()},
                       "phases": dict(getattr(collector, "phases", {})),
                       "maxrss": peak_kib(), "rss": rss_now_kib()})
            del out
    finally:
        kafka.close()
        streams.close()
        conn.send({"maxrss": peak_kib(), "rss": rss_now_kib()})


class Collecting:
    """The collecting process, driven over a pipe."""

    def __init__(self, bootstrap: str, redis_url: str):
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of this one's memory
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=collecting_process, args=(child, bootstrap, redis_url), daemon=True)
        self.process.start()
        self.started = self.conn.recv()

    def sample(self, what: str) -> dict:
        self.conn.send(what)
        return self.conn.recv()

    def stop(self) -> dict:
        try:
            self.conn.send("stop")
            return self.conn.recv() if self.conn.poll(60) else {}
        finally:
            self.process.join(30)
            if self.process.is_alive():
                self.process.kill()


# --- figures -------------------------------------------------------------------------

def summary(label: str, samples: list[dict]) -> None:
    good = [s for s in samples if "error" in s or "wall" in s]
    failed = [s["error"] for s in good if "error" in s]
    walls = sorted(s["wall"] for s in good if "wall" in s)
    if not walls:
        print(f"{label}: no sample succeeded ({failed[:1]})")
        return
    rows = samples[-1].get("rows", {})
    print(f"{label}: median {ms(statistics.median(walls))}, min {ms(walls[0])}, max {ms(walls[-1])} "
          f"over {len(walls)} samples ({', '.join(ms(w) for w in walls)}); process CPU median "
          f"{ms(statistics.median(s['cpu'] for s in good if 'cpu' in s))}; rows "
          + ", ".join(f"{k} {v:,}" for k, v in rows.items())
          + (f"; {len(failed)} failed: {failed[0]}" if failed else ""))
    phases = [s["phases"] for s in good if s.get("phases")]
    if phases:
        names = list(dict.fromkeys(name for p in phases for name in p))
        rest = statistics.median(s["wall"] - sum(s["phases"].values()) for s in good if s.get("phases"))
        print("    phases (median): " + ", ".join(
            f"{name} {ms(statistics.median(p.get(name, 0.0) for p in phases))}" for name in names)
            + f"; outside the phases {ms(rest)}")


def describe_all(bootstrap: str, repeats: int = 3) -> None:
    """``describe_consumer_groups`` of every group at once: what a sample adds when every group
    has members (the collector describes only those)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3, "log.connection.close": False})
    groups = sorted(g.group_id for g in admin.list_consumer_groups(request_timeout=30).result().valid)
    walls = []
    for _ in range(repeats):
        t = time.perf_counter()
        for fut in admin.describe_consumer_groups(groups, request_timeout=30).values():
            fut.exception()
        walls.append(time.perf_counter() - t)
    print(f"kafka describe_consumer_groups of all {len(groups):,} groups at once (not part of the samples above: "
          f"their groups have no members): {', '.join(ms(w) for w in walls)}")


def run_demo(bootstrap: str, redis_url: str, seconds: float) -> None:
    """A few seconds of the demo pipeline on both brokers: its topics, streams, DLQs and groups."""
    sim = SimulatorConfig(rate=20, duration=seconds, drain=2, seed=3, prefix=DEMO_PREFIX,
                          payment_failure_rate=0.2, malformed_rate=0.05)
    t = time.perf_counter()
    result = run_simulation(sim, kafka_bootstrap=bootstrap, redis_url=redis_url)
    log(f"demo pipeline: {sum(result.get('published', {}).values()):,} events published "
        f"in {time.perf_counter() - t:.1f} s")


def run_cli_collect(bootstrap: str, redis_url: str, seconds: float, workdir: Path,
                    kafka: cluster_build.KafkaCluster, streams: cluster_build.RedisCluster) -> None:
    """``eventscope collect`` for ``seconds`` against both brokers while the cluster moves."""
    env = {**os.environ, "EVENTSCOPE_KAFKA_BOOTSTRAP": bootstrap, "EVENTSCOPE_REDIS_URL": redis_url,
           "EVENTSCOPE_STORE": str(workdir / "store")}
    env.pop("EVENTSCOPE_CONFIG", None)
    cli = Path(sys.executable).with_name("eventscope")
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "eventscope"]
    stop = threading.Event()

    def keep_moving() -> None:
        while not stop.wait(5):
            cluster_build.advance_kafka(kafka)
            cluster_build.advance_redis(streams)

    mover = threading.Thread(target=keep_moving, daemon=True)
    t = time.perf_counter()
    with open(workdir / "collect.log", "wb") as out:
        proc = subprocess.Popen(command + ["collect", "--duration", str(seconds), "--interval", "5"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    mover.start()
    peak, exited = [0], threading.Event()

    def watch_peak() -> None:  # VmHWM while it runs: ru_maxrss would include this process's size
        while not exited.wait(0.2):
            peak[0] = max(peak[0], peak_kib(proc.pid))
    watcher = threading.Thread(target=watch_peak, daemon=True)
    watcher.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        exited.set()
        stop.set()
        mover.join(60)
        watcher.join(5)
    proc.returncode = os.waitstatus_to_exitcode(status)
    tail = (workdir / "collect.log").read_text(errors="replace").strip().splitlines()[-3:]
    print(f"eventscope collect --duration {seconds:.0f} --interval 5 (both brokers, cluster moving): "
          f"exit {proc.returncode} after {time.perf_counter() - t:.0f} s, peak RSS {mib(peak[0])}, "
          f"CPU {usage.ru_utime + usage.ru_stime:.1f} s" + (f"; last output: {tail}" if proc.returncode else ""))


# --- main ----------------------------------------------------------------------------

def bench(workdir: Path, args) -> None:
    t = time.perf_counter()
    kafka_broker = start_kafka(workdir / "kafka")
    redis_broker = None
    collecting = None
    try:
        redis_broker = start_redis(workdir / "redis")
        log(f"brokers started in {time.perf_counter() - t:.1f} s: kafka {kafka_broker.address}, "
            f"redis {redis_broker.address}")
        kafka = cluster_build.build_kafka(kafka_broker.address, groups=args.groups)
        streams = cluster_build.build_redis(redis_broker.address, streams=args.streams)
        print(f"cluster built: kafka {kafka.rows:,} group-partition rows over {len(kafka.topics)} topics × "
              f"{kafka.partitions} partitions in {kafka.timings['total']:.1f} s ("
              + ", ".join(f"{k} {v:.1f} s" for k, v in kafka.timings.items() if k != "total")
              + f"); redis {len(streams.streams):,} streams in {streams.timings['total']:.1f} s")
        if args.demo_s:
            try:
                run_demo(kafka_broker.address, redis_broker.address, args.demo_s)
            except Exception as exc:  # the scale figures are still worth having without it
                print(f"demo pipeline failed: {exc!r}")
        print(f"at start of sampling: {load()}")

        collecting = Collecting(kafka_broker.address, redis_broker.address)
        print(f"collecting process after its imports: RSS {mib(collecting.started['rss'])}")
        warm = collecting.sample("kafka")
        log(f"kafka warm-up sample: {ms(warm.get('wall', float('nan')))} {warm.get('error', '')}")
        static = []
        for _ in range(args.samples):
            static.append(collecting.sample("kafka"))
        summary("kafka offsets, static cluster", static)
        live = []
        for i in range(args.samples):
            roles = cluster_build.advance_kafka(kafka)
            live.append(collecting.sample("kafka"))
            log(f"kafka live sample {i + 1}: {ms(live[-1].get('wall', float('nan')))} "
                f"(round of traffic and commits took {kafka.timings['last advance']:.1f} s)")
        summary(f"kafka offsets, live cluster ({roles['healthy']} healthy, {roles['lagging']} lagging, "
                f"{roles['stalled']} stalled groups)", live)
        after_kafka = live[-1].get("maxrss") or static[-1].get("maxrss", 0)
        print(f"    collecting process peak RSS after the Kafka samples: {mib(after_kafka)}")
        describe_all(kafka_broker.address)

        first = collecting.sample("redis")
        summary("redis streams, first sample (reads every backlog)", [first])
        redis_live = []
        for _ in range(args.samples):
            cluster_build.advance_redis(streams)
            redis_live.append(collecting.sample("redis"))
        summary("redis streams, live", redis_live)
        end = collecting.stop()
        collecting = None
        print(f"collecting process peak RSS (Kafka and Redis collectors in one process): "
              f"{mib(end.get('maxrss', 0))}, RSS at the end {mib(end.get('rss', 0))}")
        print(f"at end of sampling: {load()}")
        if args.collect_s:
            try:
                run_cli_collect(kafka_broker.address, redis_broker.address, args.collect_s, workdir,
                                kafka, streams)
            except Exception as exc:
                traceback.print_exc()
                print(f"eventscope collect run failed: {exc!r}")
    finally:
        if collecting is not None:
            collecting.stop()
        if redis_broker is not None:
            redis_broker.stop()
        kafka_broker.stop()
        log("brokers stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.offsets_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=6, help="timed samples per case (after 1 warm-up)")
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--demo-s", type=float, default=4.0, help="seconds of the demo pipeline; 0: none")
    parser.add_argument("--collect-s", type=float, default=30.0,
                        help="seconds of `eventscope collect` against the cluster; 0: skip")
    args = parser.parse_args(argv)
    print(f"offsets bench: {load()} at start; brokers run on the same machine")
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="eventscope-offsets-bench-") as tmp:
        bench(Path(tmp), args)
    log(f"done in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
