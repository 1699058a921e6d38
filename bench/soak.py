"""Fault soak: eventscope under the faults of a real night, on real brokers.

For ``--minutes`` (10 by default), with the order simulator running on a Kafka and a Redis
of the soak's own and a ledger producer recording every send the brokers acknowledged,
``eventscope collect`` samples both into a store on a small filesystem of its own, with
``eventscope exporter`` serving ``/metrics`` and alerts going to a live and a dead webhook.
Meanwhile the soak:

* kills Kafka (SIGKILL) and starts it again on the same port and data, then Redis (its
  append-only file synced on every write, so what it acknowledged survives);
* truncates a part of the store (after counting the ledger's events in it);
* fills the store's filesystem until writes fail, holds it full, then frees it;
* sends hostile keys, values, headers and field names (hypothesis strategies) to watched
  topics and streams the whole time;
* holds slow clients (half a request, a byte now and then) on ``/metrics`` while scraping
  it, and a webhook that accepts connections and never answers.

It prints: samples missed per collector, events lost (the ledger against the store, less the
events of the part it truncated, which the store names), collector crashes, the time to
recover after each fault, /metrics answers during the slow clients, webhook deliveries, and
the collector's peak memory. ``python -m bench.soak --minutes 10``. Needs root (the store's
filesystem is a tmpfs mounted for the run)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import redis
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from eventscope.localbrokers import free_port, start_kafka, start_redis
from eventscope.store import Store
from eventscope.simulator import SimulatorConfig, run_simulation

CLI = str(Path(sys.executable).with_name("eventscope"))
INTERVAL_S = 1.0
LEDGER_TOPIC, LEDGER_DLQ = "soak-orders", "soak-orders.DLT"
LEDGER_STREAM, LEDGER_STREAM_DLQ = "soak:orders", "soak:orders.dlq"
HOSTILE_TOPIC, HOSTILE_STREAM = "soak-hostile", "soak:hostile"


class Ledger:
    """Every event ID a broker acknowledged, per broker."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {"kafka": set(), "redis": set()}
        self.refused = {"kafka": 0, "redis": 0}

    def ack(self, broker: str, event_id: str) -> None:
        with self.lock:
            self.acked[broker].add(event_id)

    def refuse(self, broker: str) -> None:
        with self.lock:
            self.refused[broker] += 1


def ledger_producer(kafka: str, redis_url: str, ledger: Ledger, stop: threading.Event) -> None:
    """An order every 50 ms to Kafka and to Redis, every tenth dead-lettered with a reason."""
    # idempotent: a retry after a lost acknowledgement (Kafka killed mid-request) must not
    # write the order twice, or the ledger could not tell the broker's copy from the collector's
    producer = Producer({"bootstrap.servers": kafka, "acks": "all", "linger.ms": 5, "enable.idempotence": True,
                         "message.timeout.ms": 120_000, "reconnect.backoff.ms": 500})
    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    i = 0
    while not stop.is_set():
        event_id = f"soak-{i}"
        body = json.dumps({"event_type": "OrderPlaced", "event_id": event_id, "correlation_id": f"order-{i}",
                           "source": "soak-shop", "occurred_at": pd.Timestamp.now(tz="UTC").isoformat()})

        def acked(err, _msg, event_id=event_id):
            if err is None:
                ledger.ack("kafka", event_id)
            else:
                ledger.refuse("kafka")
        dead = i % 10 == 9
        topic = LEDGER_DLQ if dead else LEDGER_TOPIC
        headers = [("kafka_dlt-exception-fqcn", b"java.lang.IllegalStateException"),
                   ("kafka_dlt-exception-message", f"order {i} could not be handled".encode()),
                   ("kafka_dlt-original-topic", LEDGER_TOPIC.encode())] if dead else None
        try:
            producer.produce(topic, body.encode(), key=str(i).encode(), headers=headers, on_delivery=acked)
        except BufferError:
            ledger.refuse("kafka")
        producer.poll(0)
        fields = {"envelope": body}
        if dead:
            fields.update({"error": f"IllegalStateException: order {i} could not be handled",
                           "original_stream": LEDGER_STREAM})
        try:
            client.xadd(LEDGER_STREAM_DLQ if dead else LEDGER_STREAM, fields)
            ledger.ack("redis", event_id)
        except redis.RedisError:
            ledger.refuse("redis")
        i += 1
        stop.wait(0.05)
    producer.flush(120)


def hostile_producer(kafka: str, redis_url: str, stop: threading.Event, counts: dict) -> None:
    """Hypothesis-generated keys, values, headers and field names, five a second."""
    from hypothesis import strategies as st
    from hypothesis.errors import NonInteractiveExampleWarning
    nasty = st.sampled_from(["<script>alert(1)</script>", "\x1b]0;owned\x07\x1b[31m", "![p](http://127.0.0.1:9/p)",
                             "' OR 1=1 --", "{{7*7}}", "../../etc/passwd", "\u202eevil", "a" * 5000, ""])
    text = st.one_of(st.text(max_size=120), nasty)
    envelope = st.fixed_dictionaries({"event_type": text, "correlation_id": text, "event_id": text,
                                      "source": text, "schema_version": text}).map(json.dumps)
    value = st.one_of(st.binary(max_size=3000), envelope.map(str.encode), text.map(str.encode))
    headers = st.lists(st.tuples(text, st.binary(max_size=300)), max_size=6)
    fields = st.dictionaries(st.one_of(st.binary(min_size=1, max_size=60), text.filter(bool)),
                             st.binary(max_size=500), min_size=1, max_size=6)
    producer = Producer({"bootstrap.servers": kafka, "reconnect.backoff.ms": 500, "message.timeout.ms": 60_000})
    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        while not stop.is_set():
            try:
                producer.produce(HOSTILE_TOPIC, value.example(), key=text.example().encode("utf-8", "replace"),
                                 headers=headers.example())
                producer.poll(0)
                counts["kafka"] += 1
            except (BufferError, ValueError, TypeError):
                pass
            try:
                client.xadd(HOSTILE_STREAM, fields.example())
                counts["redis"] += 1
            except redis.RedisError:
                pass
            stop.wait(0.2)
    producer.flush(30)


def simulator(kafka: str, redis_url: str, stop: threading.Event, restarts: list) -> None:
    """The order pipeline on both brokers; started again when a broker outage stops it."""
    while not stop.is_set():
        config = SimulatorConfig(rate=4, duration=None, prefix="sim-", payment_failure_rate=0.05)
        try:
            run_simulation(config, kafka_bootstrap=kafka, redis_url=redis_url, stop_event=stop)
        except Exception:  # noqa: BLE001 - an outage stops it; the soak starts it again
            restarts.append(time.time())
            stop.wait(2)


class Hooks:
    """A webhook that answers and one that accepts connections and never says a word."""

    def __init__(self):
        self.received: list[float] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(time.time())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass
        self.live = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.live.serve_forever, daemon=True).start()
        self.dead = socket.socket()
        self.dead.bind(("127.0.0.1", 0))
        self.dead.listen(128)  # the kernel accepts; nobody ever reads or answers
        self.urls = [f"http://127.0.0.1:{self.dead.getsockname()[1]}/hook",
                     f"http://127.0.0.1:{self.live.server_address[1]}/hook"]

    def close(self):
        self.live.shutdown()
        self.dead.close()


def slow_clients(port: int, stop: threading.Event, n: int = 8) -> None:
    """``n`` clients that send half a request and then a header byte every few seconds."""
    held: list[socket.socket] = []
    while not stop.is_set():
        while len(held) < n:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: soak\r\n")
                held.append(s)
            except OSError:
                break
        for s in list(held):
            try:
                s.sendall(b"X")
            except OSError:  # the server dropped it: a new one takes its place
                held.remove(s)
                s.close()
        stop.wait(3)
    for s in held:
        s.close()


def scraper(port: int, stop: threading.Event, results: list) -> None:
    """Scrape ``/metrics`` every two seconds: (ok, seconds) each."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                ok = answer.status == 200 and b"eventscope_" in answer.read()
        except OSError:
            ok = False
        results.append((ok, time.monotonic() - started))
        stop.wait(2)


class Child:
    """A long-running eventscope command; an exit nobody asked for counts as a crash and it
    is started again. Its memory is sampled while it runs."""

    def __init__(self, args: list[str], env: dict, log: Path):
        self.args, self.env, self.log = args, env, log
        self.crashes: list[tuple[float, int]] = []
        self.peak_rss_kb = 0
        self.stopping = False
        self.proc = self._start()
        threading.Thread(target=self._watch, daemon=True).start()

    def _start(self) -> subprocess.Popen:
        with open(self.log, "ab") as out:
            return subprocess.Popen(self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def _watch(self) -> None:
        while not self.stopping:
            code = self.proc.poll()
            if code is not None and not self.stopping:
                self.crashes.append((time.time(), code))
                self.proc = self._start()
            try:
                status = Path(f"/proc/{self.proc.pid}/status").read_text()
                rss = max(int(line.split()[1]) for line in status.splitlines()
                          if line.startswith(("VmRSS:", "VmHWM:")))
                self.peak_rss_kb = max(self.peak_rss_kb, rss)
            except (OSError, ValueError):
                pass
            time.sleep(0.5)

    def stop(self) -> int:
        self.stopping = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:  # its threads' tracebacks to its log, then the end
            self.proc.send_signal(signal.SIGABRT)
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()


def _mount_small_fs(path: Path, size_mb: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the soak mounts a small filesystem for its store and needs root: {done.stderr.strip()}")


def _fill(path: Path) -> Path:
    """Write a file under ``path`` until the filesystem refuses (a filesystem the store has
    filled already refuses the file itself: the disk is full either way)."""
    filler = path / "filler"
    block = b"\0" * (1 << 20)
    try:
        fh = open(filler, "wb")
    except OSError:
        return filler
    with fh:
        try:
            while True:
                fh.write(block)
                fh.flush()
        except OSError:
            pass
    # the last bytes too: a tmpfs may still take a partial page
    try:
        with open(filler, "ab") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
    except OSError:
        pass
    return filler


def _size_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2 ** 20


def _first_ok_after(store: Store, collectors: set[str], after: float, timeout_s: float) -> float | None:
    """Seconds from ``after`` (epoch) until every collector in ``collectors`` has an ok
    health row sampled after it; None when not within ``timeout_s``."""
    since = pd.Timestamp(after, unit="s", tz="UTC")
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            health = store.read("health", since=since, columns=["sampled_at", "collector", "ok"])
        except Exception:  # noqa: BLE001 - a reader racing the full disk: ask again
            health = pd.DataFrame(columns=["sampled_at", "collector", "ok"])
        ok = health[health["ok"].astype(bool) & health["collector"].isin(collectors)]
        if set(ok["collector"]) >= collectors:
            return max(ok.groupby("collector")["sampled_at"].min()).timestamp() - after
        time.sleep(0.5)
    return None


def _missed(health: pd.DataFrame, collector: str, start: float, calm_until: float, end: float) -> tuple[int, float]:
    """Samples a collector did not store between ``start`` and ``end``, and its cadence:
    the median time between its good samples before the first fault (``calm_until``); a gap
    between good samples counts the samples of that cadence that would have fitted in it."""
    times = sorted(t.timestamp() for t in health.loc[health["ok"].astype(bool)
                                                      & (health["collector"] == collector), "sampled_at"])
    times = [t for t in times if start <= t <= end]
    calm = [b - a for a, b in zip(times, times[1:]) if b <= calm_until]
    cadence = float(pd.Series(calm).median()) if calm else INTERVAL_S
    times = [start] + times + [end]
    return int(sum(max(0, round((b - a) / cadence) - 1) for a, b in zip(times, times[1:]))), cadence


def run_soak(minutes: float, workdir: Path, say=print) -> dict:
    """Run the soak for ``minutes``; returns its figures."""
    workdir.mkdir(parents=True, exist_ok=True)
    duration = minutes * 60.0
    hold_s = 18.0  # a broker down this long left the old admin client stuck (see KafkaOffsetsCollector)
    store_dir = workdir / "storefs"
    _mount_small_fs(store_dir, 96)
    kafka = start_kafka(workdir / "kafka")
    redis_broker = start_redis(workdir / "redis", persistent=True)
    admin = AdminClient({"bootstrap.servers": kafka.address})
    for fut in admin.create_topics([NewTopic(t, 3, 1) for t in (LEDGER_TOPIC, LEDGER_DLQ, HOSTILE_TOPIC)]).values():
        fut.result()
    hooks = Hooks()
    metrics_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSCOPE_")}
    env.update({"PYTHONFAULTHANDLER": "1", "EVENTSCOPE_KAFKA_BOOTSTRAP": kafka.address, "EVENTSCOPE_REDIS_URL": redis_broker.address,
                "EVENTSCOPE_STORE": str(store_dir / "store"), "EVENTSCOPE_KAFKA_TOPICS": "^(soak|sim-)",
                "EVENTSCOPE_REDIS_STREAM_PATTERN": "*", "EVENTSCOPE_KAFKA_TIMEOUT_S": "3",
                "EVENTSCOPE_REDIS_TIMEOUT_S": "2", "EVENTSCOPE_COLLECT_INTERVAL_S": str(INTERVAL_S),
                "EVENTSCOPE_COLLECT_MAX_BACKOFF_S": "4", "EVENTSCOPE_TRACES_INTERVAL_S": str(INTERVAL_S),
                "EVENTSCOPE_ALERTS_FOR_S": "0", "EVENTSCOPE_ALERTS_NOTIFY_TIMEOUT_S": "3",
                "EVENTSCOPE_ALERTS_NOTIFY_RETRIES": "1",
                "EVENTSCOPE_ALERTS_WEBHOOKS": json.dumps([{"url": url} for url in hooks.urls])})
    stop = threading.Event()
    ledger, hostile_counts, sim_restarts, scrapes = Ledger(), {"kafka": 0, "redis": 0}, [], []
    threads = [threading.Thread(target=ledger_producer, args=(kafka.address, redis_broker.address, ledger, stop)),
               threading.Thread(target=hostile_producer, args=(kafka.address, redis_broker.address, stop,
                                                               hostile_counts)),
               threading.Thread(target=simulator, args=(kafka.address, redis_broker.address, stop, sim_restarts))]
    collector = exporter = None
    figures: dict = {"minutes": minutes, "faults": {}}
    try:
        collector = Child([CLI, "collect"], env, workdir / "collect.log")
        exporter = Child([CLI, "exporter", "--port", str(metrics_port)], env, workdir / "exporter.log")
        for t in threads:
            t.start()
        store = Store(store_dir / "store")
        started = time.time()
        ready = _first_ok_after(store, {"kafka.offsets", "redis.streams"}, started - 5, 120)
        if ready is None:
            raise RuntimeError("the collector never sampled both brokers: see " + str(workdir / "collect.log"))
        loads = [threading.Thread(target=slow_clients, args=(metrics_port, stop), daemon=True),
                 threading.Thread(target=scraper, args=(metrics_port, stop, scrapes), daemon=True)]
        for t in loads:
            t.start()

        def at(fraction: float) -> None:
            stop.wait(max(0.0, started + fraction * duration - time.time()))

        def outage(broker, name: str, collectors: set[str]) -> None:
            say(f"soak: {name} killed for {hold_s:.0f} s")
            broker.kill()
            time.sleep(hold_s)
            broker.restart()
            back = time.time()
            figures["faults"][f"{name} killed and restarted"] = _first_ok_after(store, collectors, back, 120)

        at(0.15)
        outage(kafka, "kafka", {"kafka.offsets", "kafka.events"})
        at(0.35)
        outage(redis_broker, "redis", {"redis.streams"})
        at(0.5)
        say("soak: truncating a store part")
        parts = store.part_entries("events")
        victim = store.part_path("events", parts[len(parts) // 2]["file"])
        rows = pq.read_table(victim, columns=["topic", "event_id"]).to_pandas()
        figures["truncated part ledger events"] = int(rows["topic"].isin(
            [LEDGER_TOPIC, LEDGER_DLQ, LEDGER_STREAM, LEDGER_STREAM_DLQ]).sum())
        data = victim.read_bytes()
        victim.write_bytes(data[: len(data) // 2])
        truncated = time.time()
        figures["faults"]["store part truncated"] = _first_ok_after(store, {"kafka.events", "redis.streams"},
                                                                   truncated, 60)
        at(0.65)
        say(f"soak: store filesystem full for {hold_s:.0f} s")
        filler = _fill(store_dir)
        time.sleep(hold_s)
        filler.unlink(missing_ok=True)
        freed = time.time()
        figures["store MiB when the disk was freed"] = round(_size_mib(store_dir / "store"), 1)
        figures["faults"]["disk full, then freed"] = _first_ok_after(
            store, {"kafka.offsets", "kafka.events", "redis.streams"}, freed, 120)
        at(1.0)
        say("soak: stopping the producers, letting the collector catch up")
        stop.set()
        for t in threads + loads:
            t.join(180)
        end = time.time()
        wanted = {b: set(ids) for b, ids in ledger.acked.items()}
        deadline = time.time() + 90
        while True:
            stored = store.read("events", columns=["broker", "topic", "partition", "offset", "event_id"])
            stored = stored[stored["topic"].isin([LEDGER_TOPIC, LEDGER_DLQ, LEDGER_STREAM, LEDGER_STREAM_DLQ])]
            missing = {b: wanted[b] - set(stored.loc[stored["broker"] == b, "event_id"]) for b in wanted}
            if sum(map(len, missing.values())) <= figures["truncated part ledger events"] or time.time() > deadline:
                break
            time.sleep(2)
        health = store.read("health")
        figures.update({
            "samples missed (cadence s)": {
                c: "%d (%.2f)" % _missed(health, c, started - 5 + ready, started + 0.15 * duration, end)
                for c in ("kafka.offsets", "kafka.events", "redis.streams")},
            "samples failed": int((~health["ok"].astype(bool)).sum()),
            "events acknowledged": {b: len(ids) for b, ids in wanted.items()},
            # one broker record stored twice is the collector's fault; one order at two offsets
            # (a producer's retry the broker accepted twice) is the broker's content, stored as is
            "events stored twice": int(stored.duplicated(["broker", "topic", "partition", "offset"]).sum()),
            "orders the brokers hold twice": int(
                stored.drop_duplicates(["broker", "topic", "partition", "offset"])
                .duplicated(["broker", "event_id"]).sum()),
            "events missing": {b: len(ids) for b, ids in missing.items()},
            "events lost": max(0, sum(map(len, missing.values())) - figures["truncated part ledger events"]),
            "store names damaged rows": sum(d["rows"] or 0 for d in store.damage()),
            "hostile messages sent": dict(hostile_counts),
            "simulator restarts": len(sim_restarts),
            "collector crashes": len(collector.crashes),
            "exporter crashes": len(exporter.crashes),
            "scrapes ok": f"{sum(ok for ok, _ in scrapes)}/{len(scrapes)}",
            "slowest scrape s": round(max((s for _, s in scrapes), default=0.0), 2),
            "webhook deliveries (live)": len(hooks.received),
            "collector peak RSS MiB": round(collector.peak_rss_kb / 1024, 1),
            "exporter peak RSS MiB": round(exporter.peak_rss_kb / 1024, 1),
            "errors seen": sorted({e.split(":")[0] for e in health.loc[~health["ok"].astype(bool), "error"]}),
        })
        figures["collector exit code"] = collector.stop()
        collector = None
        figures["store MiB at the end"] = round(_size_mib(store_dir / "store"), 1)
        health.to_parquet(workdir / "health.parquet")  # for a look after the run (--keep)
        return figures
    finally:
        stop.set()
        for child in (collector, exporter):
            if child is not None:
                child.stop()
        hooks.close()
        kafka.stop()
        redis_broker.stop()
        subprocess.run(["umount", "-l", str(store_dir)], capture_output=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--keep", type=Path, help="work directory to keep (logs, broker data)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    args = parser.parse_args(argv)
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="eventscope-soak-"))
    figures = run_soak(args.minutes, workdir, say=lambda m: print(m, file=sys.stderr))
    if args.json:
        print(json.dumps(figures, default=str))
    else:
        for key, value in figures.items():
            print(f"{key:32} {value}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
