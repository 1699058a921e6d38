"""Traces: decode + index throughput, lookup time at 1,000,000 events, index memory, end to end.

Prints figures; nothing here asserts. Targets: decode + index ≥ 50,000 events/s on one
core, lookup p99 ≤ 50 ms at 1,000,000 indexed events, ≤ 300 bytes per indexed event,
produced → findable ≤ 5 s at the default collection interval.

Figures depend on the machine's load: print ``uptime`` beside them.

1. Throughput: 50,000 raw messages shaped like the simulator's (envelope JSON + Kafka
   headers; 2 % dead letters with Spring headers; 1 % undecodable) through the collectors'
   own path: each message added to an ``EventBatch`` (as a collector's read loop does), the
   batch decoded and built into the ``events`` frame (``EventBatch.frame``), then the index
   build. "Decode + index" leaves out the masked payload, preview and headers text
   (``text=False``); the collector path includes them; and the collector path at a sampling
   ratio of 0.1 (the sampling is decided before the masking). ``Decoder.decode_many`` is also
   timed alone. One thread, so one core; timed in CPU seconds of the process
   (``time.process_time``), so other work on a shared machine does not count against it; each
   stage five times, the median printed and the best beside it. Every message carries an
   e-mail address, so the masking walk always runs (payloads with no personal data skip it in
   production). Each envelope has its own timestamp. CPU time still depends on how fast the
   (shared, virtual) cores run at the moment, so a yardstick is timed beside the stages: the
   standard library's ``json.loads`` over the same payloads, code eventscope does not control.
2. Lookup: 1,000,000 events in four 250,000-row parts (the store's compacted part size),
   1,000 lookups each by correlation ID, trace ID and event ID, random and present.
3. Memory: the index arrays' ``nbytes`` per event, and the tracemalloc peak of indexing
   one 250,000-event part (what the build allocates beyond the frame, transiently).
4. Cold start: a store of 1,000,000 events written through ``Store.append`` (which saves each
   part's index beside it); a fresh store object and index (as a new process has) open it and
   look one trace up, once with the saved index files and once with them deleted.
5. End to end (starts its own Kafka and Redis, always stopped again): the simulator on
   both brokers for 30 s, at 20 orders/s and then at full speed (asked for 1,000 orders/s),
   the collector at the default 5 s interval into a store, and a watcher that refreshes the
   store's trace index every 100 ms; for every produced event, the time from its produce
   call to the moment its event ID is in the index (waiting up to 60 s for stragglers).
6. JSON beside Avro (``python bench/trace_bench.py avro`` runs this row alone): the same
   envelopes as JSON and as Avro records in the Confluent wire format, schema from a local
   ``schema_dir`` (no registry request is timed: a schema is fetched once per ID), through
   ``Decoder.decode_many`` and the collector path with the masked text.
"""
from __future__ import annotations

import gc
import io
import json
import os
import random
import statistics
import struct
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from eventscope.collectors.events_common import EventBatch
from eventscope.decode import Decoder
from eventscope.registry import SchemaRegistryConfig
from eventscope.registry_client import SchemaRegistryDecoder
from eventscope import schemas
from eventscope.trace_index import PartIndex, TraceIndex
from eventscope.decode import default_decoder, headers_to_dict

N_DECODE = 50_000
N_INDEX = 1_000_000
PART_ROWS = 250_000


_T0 = pd.Timestamp("2026-11-28T10:00:00Z")


def _iso(i: int) -> str:
    """A distinct envelope time per message (ms apart), as producers write it."""
    return (_T0 + pd.Timedelta(milliseconds=7 * i)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _messages(n: int, seed: int = 1) -> list[tuple[str, bytes, dict]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        cid = str(uuid.UUID(int=rng.getrandbits(128)))
        trace = f"{rng.getrandbits(128):032x}"
        env = {"event_type": rng.choice(["OrderPlaced", "PaymentCharged", "InventoryReserved", "ShipmentCreated"]),
               "schema_version": 2, "event_id": f"evt_{rng.getrandbits(64):016x}",
               "timestamp": _iso(i), "source": "payment-service", "correlation_id": cid,
               "data": {"order_id": f"ord_{i:010x}", "customer_id": "cus_1a2b3c4d", "customer_email":
                        "ada.lovelace7@example.com", "amount": 129.9, "currency": "EUR",
                        "items": [{"sku": "sku_kbd_001", "quantity": 1, "unit_price": 89.0}]}}
        headers = [("traceparent", f"00-{trace}-{rng.getrandbits(64):016x}-01".encode()),
                   ("x-correlation-id", cid.encode()), ("event_type", env["event_type"].encode())]
        topic = "orders"
        value = json.dumps(env).encode()
        if i % 50 == 0:
            topic = "orders.DLT"
            headers += [("kafka_dlt-exception-fqcn", b"simulator.services.PaymentDeclinedError"),
                        ("kafka_dlt-exception-message", b"card declined: insufficient funds"),
                        ("kafka_dlt-original-topic", b"orders"), ("kafka_dlt-original-partition", struct.pack(">i", 1)),
                        ("kafka_dlt-original-offset", struct.pack(">q", i))]
        elif i % 100 == 1:
            value = b'{"event_type":"OrderPlaced","data":{"order_id":"ord_\xff\xfe'
        out.append((topic, value, headers_to_dict(headers)))
    return out


def throughput(repeats: int = 5) -> None:
    """Each stage timed ``repeats`` times over the same messages; the median and the best are
    printed (the best is the least disturbed by other work on a shared machine)."""
    msgs = _messages(N_DECODE)
    now = pd.Timestamp.now(tz="UTC")
    broker_ms = int(now.value // 1_000_000)
    times: dict[str, list[float]] = {k: [] for k in ("yardstick", "decode_many", "decode_frame", "index_decoded",
                                                     "frame", "index", "sampled")}
    payloads = [value for _, value, _ in msgs if value.endswith(b"}")]

    def batch(ratio: float = 1.0) -> EventBatch:
        """What a collector's read loop builds: one add per message."""
        out = EventBatch("bench", "kafka", sample_ratio=ratio)
        for i, (topic, value, headers) in enumerate(msgs):
            out.add(topic, 0, str(i), broker_ms + i, value, headers, topic.endswith(".DLT"))
        return out

    # The harness's 50,000 input messages stay alive throughout, and each full pass of the
    # garbage collector would walk them: move them out of its way (gc.freeze), as a collector
    # holds only the batch it is reading. What the stages allocate is collected as usual.
    gc.collect()
    gc.freeze()
    decoder = default_decoder()
    values, headers = [m[1] for m in msgs], [m[2] for m in msgs]
    for _ in range(repeats):
        started = time.process_time()  # a fixed workload outside eventscope: the machine's speed now
        for value in payloads:
            json.loads(value)
        times["yardstick"].append(time.process_time() - started)
        started = time.process_time()
        decoder.decode_many(values, headers)
        times["decode_many"].append(time.process_time() - started)
        started = time.process_time()  # decode + the broker's metadata + the frame, no masked text
        decoded_frame = batch().frame(now, {}, text=False)
        times["decode_frame"].append(time.process_time() - started)
        started = time.process_time()
        PartIndex(decoded_frame)
        times["index_decoded"].append(time.process_time() - started)
        started = time.process_time()  # the whole collector path: + masked payload, preview, headers
        frame = batch().frame(now, {})
        times["frame"].append(time.process_time() - started)
        started = time.process_time()
        PartIndex(frame)
        times["index"].append(time.process_time() - started)
        started = time.process_time()  # what a collector does at traces.sample_ratio = 0.1
        kept = batch(0.1).frame(now, {})
        PartIndex(kept)
        times["sampled"].append(time.process_time() - started)
    gc.unfreeze()
    undecodable = int((frame["decode_error"] != "").sum())

    def rate(*stages: str) -> str:
        med = sum(statistics.median(times[s]) for s in stages)
        best = sum(min(times[s]) for s in stages)
        return f"{N_DECODE / med:>9,.0f} events/s (best {N_DECODE / best:,.0f})"

    def per_event(stage: str) -> str:
        return f"{1e6 * statistics.median(times[stage]) / N_DECODE:.1f} µs/event"

    print(f"traces: {N_DECODE:,} messages ({undecodable:,} undecodable, all accounted for), one thread, "
          "per CPU second of this process (time.process_time, so other load on the machine does not count); "
          f"median of {repeats} runs, best in brackets")
    print(f"traces:   decode + index (EventBatch: add each message, decode, frame without the masked text; "
          f"index build) {rate('decode_frame', 'index_decoded')}   target ≥ 50,000")
    print(f"traces:   decode alone (Decoder.decode_many)                {rate('decode_many')}")
    print(f"traces:   collector path (+ masked payload, preview, headers text) {rate('frame', 'index')}")
    print(f"traces:   collector path at traces.sample_ratio = 0.1 (sampled before masking) "
          f"{rate('sampled')} read ({len(kept):,} kept)")
    print(f"traces:     per event: decode_many {per_event('decode_many')}, EventBatch without text "
          f"{per_event('decode_frame')}, index build {per_event('index_decoded')}; EventBatch with the masked "
          f"text {per_event('frame')}")
    print(f"traces:   index build alone                            {N_DECODE / statistics.median(times['index']):>9,.0f} events/s")
    print(f"traces:   yardstick: the standard library's json.loads of the same payloads, "
          f"{1e6 * statistics.median(times['yardstick']) / len(payloads):.2f} µs each (a rough guide to "
          "how fast this shared machine runs at the moment)")


AVRO_ENVELOPE = {
    "type": "record", "name": "Envelope", "namespace": "bench", "fields": [
        {"name": "event_type", "type": "string"}, {"name": "schema_version", "type": "int"},
        {"name": "event_id", "type": "string"}, {"name": "timestamp", "type": "string"},
        {"name": "source", "type": "string"}, {"name": "correlation_id", "type": "string"},
        {"name": "data", "type": {"type": "record", "name": "Order", "fields": [
            {"name": "order_id", "type": "string"}, {"name": "customer_id", "type": "string"},
            {"name": "customer_email", "type": "string"}, {"name": "amount", "type": "double"},
            {"name": "currency", "type": "string"},
            {"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Item", "fields": [
                {"name": "sku", "type": "string"}, {"name": "quantity", "type": "int"},
                {"name": "unit_price", "type": "double"}]}}}]}}]}


def avro_throughput(n: int = 20_000, repeats: int = 5) -> None:
    """The same envelopes as JSON and as Avro in the Confluent wire format (schema ID 1, read from
    a local ``schema_dir``: no registry request is timed), through ``Decoder.decode_many`` and
    the collector path (``EventBatch.frame`` with the masked text); events/s per CPU second."""
    import fastavro  # writes the Avro records; only this row needs it

    msgs = [m for m in _messages(n) if m[1].endswith(b"}") and not m[0].endswith(".DLT")]
    parsed = fastavro.parse_schema(AVRO_ENVELOPE)
    framed = []
    for _, value, _ in msgs:
        out = io.BytesIO()
        out.write(b"\x00\x00\x00\x00\x01")
        fastavro.schemaless_writer(out, parsed, json.loads(value))
        framed.append(out.getvalue())
    headers = [m[2] for m in msgs]
    now = pd.Timestamp.now(tz="UTC")
    with tempfile.TemporaryDirectory() as schema_dir:
        (Path(schema_dir) / "1.avsc").write_text(json.dumps(AVRO_ENVELOPE))
        decoders = {"JSON": Decoder(), "Avro": Decoder(registry=SchemaRegistryDecoder(
            SchemaRegistryConfig(schema_dir=schema_dir)))}
        rows = {"JSON": [m[1] for m in msgs], "Avro": framed}
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(repeats):
            for name, decoder in decoders.items():
                values = rows[name]
                started = time.process_time()
                columns, _ = decoder.decode_many(values, headers)
                times.setdefault((name, "decode_many"), []).append(time.process_time() - started)
                assert not any(columns["decode_error"]), name
                started = time.process_time()
                batch = EventBatch("bench", "kafka", decoder=decoder)
                for i, (value, hdrs) in enumerate(zip(values, headers)):
                    batch.add("orders", 0, str(i), None, value, hdrs, False)
                batch.frame(now, {})
                times.setdefault((name, "frame"), []).append(time.process_time() - started)
    count = len(msgs)
    for name in decoders:
        decode, frame = statistics.median(times[(name, "decode_many")]), statistics.median(times[(name, "frame")])
        print(f"decode:   {name:<4} {count:,} envelopes: decode_many {count / decode:>9,.0f} events/s "
              f"(best {count / min(times[(name, 'decode_many')]):,.0f}); collector path with masked text "
              f"{count / frame:>9,.0f} events/s")


def _big_frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    chains = n // 5
    chain = np.arange(n) // 5
    cids = np.array([f"{c:08x}-7f20-4a6d-9c10-{c * 2654435761 % 2**48:012x}" for c in range(chains)], dtype=object)
    traces = np.array([f"{(c * 11400714819323198485) % 2**128:032x}" for c in range(chains)], dtype=object)
    now = pd.Timestamp.now(tz="UTC")
    return pd.DataFrame({
        "observed_at": now, "at": now, "broker": "kafka", "topic": "orders", "partition": 0,
        "offset": pd.array(np.arange(n).astype(str), dtype="string"),
        "correlation_id": pd.array(cids[chain], dtype="string"),
        "trace_id": pd.array(traces[chain], dtype="string"),
        "event_id": pd.array([f"evt_{x:016x}" for x in rng.integers(0, 2**63, n)], dtype="string")})


def lookups() -> None:
    frame = _big_frame(N_INDEX)
    parts = [frame.iloc[i:i + PART_ROWS].reset_index(drop=True) for i in range(0, N_INDEX, PART_ROWS)]
    started = time.process_time()
    index = TraceIndex([PartIndex(p) for p in parts])
    build_s = time.process_time() - started
    tracemalloc.start()  # on one part only: tracemalloc slows every allocation several times
    PartIndex(parts[0])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"traces: index over {index.events:,} events in {len(parts)} parts built in {build_s:.2f} s "
          f"CPU time ({index.events / build_s:,.0f} events/s)")
    print(f"traces: memory per indexed event: {index.nbytes / index.events:.1f} bytes "
          f"(method: numpy nbytes of the hash and position arrays); build peak "
          f"{peak / len(parts[0]):.1f} bytes/event (method: tracemalloc peak while indexing one "
          f"{len(parts[0]):,}-event part, transient)")
    rng = random.Random(5)
    for col, label in (("correlation_id", "correlation ID"), ("trace_id", "trace ID"), ("event_id", "event ID")):
        values = frame[col]
        times, cpu = [], []
        for _ in range(1000):
            some_id = values.iat[rng.randrange(N_INDEX)]
            started, started_cpu = time.perf_counter(), time.process_time()
            rows = index.lookup(some_id)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
            assert len(rows) == 5
        times.sort()
        cpu.sort()
        print(f"traces: lookup by {label:<14} at {index.events:,} events: wall p50 {1000 * times[500]:.2f} ms, "
              f"p99 {1000 * times[989]:.2f} ms, max {1000 * times[-1]:.2f} ms; CPU p50 {1000 * cpu[500]:.2f} ms, "
              f"p99 {1000 * cpu[989]:.2f} ms")


def cold_start() -> None:
    """A new process opening a store of 1,000,000 events (four 250,000-row parts): with the
    index files the store keeps beside its parts, and with them deleted (indexed from the rows)."""
    from eventscope.trace_index import INDEX_SUFFIX, StoreTraceIndex
    from eventscope.store import Retention, Store

    frame = _big_frame(N_INDEX)
    root = Path(tempfile.mkdtemp(prefix="eventscope-trace-cold-"))
    try:
        writer = Store(root, Retention(max_rows=2 * N_INDEX))
        for i in range(0, N_INDEX, PART_ROWS):
            writer.append("events", frame.iloc[i:i + PART_ROWS].reset_index(drop=True))
        files = sorted((root / "events").glob("*" + INDEX_SUFFIX))
        size = sum(f.stat().st_size for f in files)
        some_id = frame["correlation_id"].iat[N_INDEX // 3]
        for label in ("with the saved index files", "index files deleted"):
            if label == "index files deleted":
                for f in files:
                    f.unlink()
            index = StoreTraceIndex(Store(root, Retention(max_rows=2 * N_INDEX)))  # nothing cached
            started = time.perf_counter()
            index.refresh()
            opened = time.perf_counter() - started
            started = time.perf_counter()
            rows = index.lookup(some_id)
            first = time.perf_counter() - started
            assert len(rows) == 5
            loaded = sum(p.loaded for p in index.refresh().parts)
            print(f"traces: cold start at {N_INDEX:,} events, {label}: open {opened:.2f} s, first lookup "
                  f"{first:.2f} s (parts read: {loaded} of {len(files)})")
        print(f"traces: index files on disk: {size / N_INDEX:.1f} bytes per event")
    finally:
        import shutil
        shutil.rmtree(root, ignore_errors=True)


def end_to_end(seconds: float = 30.0, rate: float = 20.0) -> None:
    from eventscope.config import load_config
    from eventscope.localbrokers import start_kafka, start_redis
    from eventscope.runner import Runner, build_collectors
    from eventscope.store import Store
    from eventscope.simulator import SimulatorConfig, run_simulation
    from eventscope.simulator.kafka_bus import KafkaBus
    from eventscope.simulator.redis_bus import RedisBus

    workdir = Path(tempfile.mkdtemp(prefix="eventscope-trace-bench-"))
    kafka = redis_ = None
    produced: dict[str, float] = {}
    where: dict[str, str] = {}
    lock = threading.Lock()
    originals = (KafkaBus.publish, RedisBus.publish)

    def record(original):
        def publish(self, topic, value, *args, **kwargs):
            out = original(self, topic, value, *args, **kwargs)
            try:
                eid = json.loads(value)["event_id"]
            except (TypeError, ValueError, KeyError):
                return out
            with lock:
                produced.setdefault(eid, time.time())
                where.setdefault(eid, f"{type(self).__name__[:-3].lower()}:{topic}")
            return out
        return publish

    try:
        kafka, redis_ = start_kafka(workdir / "kafka"), start_redis(workdir / "redis")
        KafkaBus.publish, RedisBus.publish = record(originals[0]), record(originals[1])
        cfg = load_config(env={"EVENTSCOPE_KAFKA_BOOTSTRAP": kafka.address, "EVENTSCOPE_REDIS_URL": redis_.address,
                               "EVENTSCOPE_KAFKA_TOPICS": "^bench-", "EVENTSCOPE_REDIS_STREAM_PATTERN": "bench-*"})
        store = Store(workdir / "store")
        runner = Runner(store, build_collectors(cfg), interval_s=cfg.collect.interval_s)
        from eventscope.trace_index import StoreTraceIndex
        index = StoreTraceIndex(store)
        found: dict[str, float] = {}
        seen_parts: set[str] = set()  # by file name: an id() of a dropped part object can come back
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                index.refresh()
                for file, part in index.parts().items():
                    if file in seen_parts:
                        continue
                    seen_parts.add(file)
                    now = time.time()
                    for eid in part.frame["event_id"].dropna():
                        found.setdefault(eid, now)
                stop.wait(0.1)

        threads = [threading.Thread(target=runner.run, daemon=True), threading.Thread(target=watch, daemon=True)]
        for t in threads:
            t.start()
        sim = SimulatorConfig(rate=rate, duration=seconds, seed=2, prefix="bench-")
        result = run_simulation(sim, kafka_bootstrap=kafka.address, redis_url=redis_.address)
        waited_until = time.time() + 60  # late is measured, not lost: wait for stragglers
        while time.time() < waited_until:
            with lock:
                if all(e in found for e in produced):
                    break
            time.sleep(0.5)
        stop.set()
        runner.stop_event.set()
        threads[0].join(timeout=60)
        runner.close()
        with lock:
            delays = sorted(found[e] - t for e, t in produced.items() if e in found)
            missing = sum(1 for e in produced if e not in found)
        published = sum(result["published"].values())
        print(f"traces: end to end at the default {cfg.collect.interval_s:g} s interval (new events read every "
              f"{cfg.traces.interval_s:g} s), {rate:g} orders/s on "
              f"both brokers for {seconds:g} s ({published:,} events published, {published / seconds:,.0f}/s; "
              f"{len(produced):,} recorded, "
              f"{missing} not found within 60 s of the end)")
        if missing:
            lost = Counter(where[e] for e in produced if e not in found)
            print("traces:   not found, by broker:topic: " + ", ".join(f"{k} {v}" for k, v in lost.most_common(8)))
        if delays:
            print(f"traces:   produced → findable: p50 {statistics.median(delays):.2f} s, "
                  f"p95 {delays[int(0.95 * len(delays))]:.2f} s, p99 {delays[int(0.99 * len(delays))]:.2f} s, "
                  f"max {delays[-1]:.2f} s")
        health = store.read("health")
        if not health.empty:
            runs = health.groupby("collector")["duration_ms"].agg(["count", "median", "max"])
            print("traces:   collector runs (ms): " + "; ".join(
                f"{name} ×{int(r['count'])} p50 {r['median']:.0f} max {r['max']:.0f}" for name, r in runs.iterrows()))
    finally:
        KafkaBus.publish, RedisBus.publish = originals
        for broker in (kafka, redis_):
            if broker is not None:
                broker.stop()


def main() -> None:
    print(f"traces: load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    if sys.argv[1:] == ["avro"]:  # the JSON / Avro decode rows alone
        avro_throughput()
        return
    throughput()
    avro_throughput()
    lookups()
    cold_start()
    if os.environ.get("TRACE_BENCH_SKIP_BROKERS"):
        print("traces: end to end skipped (TRACE_BENCH_SKIP_BROKERS)")
        return
    try:
        end_to_end()
        # asked for 1,000 orders/s, the simulator produces as fast as it can on this machine
        # (sharing the process and both cores with the collector): the collector must keep up
        end_to_end(rate=1000.0)
    except Exception as exc:  # a broker that cannot start must not hide the figures above
        print(f"traces: end to end failed: {type(exc).__name__}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    main()
