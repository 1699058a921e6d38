"""Lag collectors at scale: wall time and broker requests per sample, against a naive loop.

Starts its own local Kafka and Redis (always stopped again) and prints figures; nothing
here asserts.

Kafka: 100 topics × 20 partitions (2,000 partitions), 3 messages per partition, consumer
groups with committed offsets (each group on 2-4 partitions of one topic, every fourth
group also on 2 partitions of a second topic). ``KafkaOffsetsCollector.collect()`` is
timed at 100 and at 1,000 groups (median of 3 samples after 1 warm-up) next to a naive
loop: one ``list_consumer_group_offsets`` per group, sequentially, each followed by one
``list_offsets`` for the partitions of the group's topics (the per-group pattern of
lag exporters). Requests are librdkafka's own count: the per-broker ``tx`` counters
(and ``req`` per API) of its statistics, read before and after each sample. The collector
is timed without its read_committed probe; the probe that ``runner.build_collectors``
enables is timed on its own (a dozen probes, default and short ``fetch.wait.max.ms``)
and its cost for a first sample at 1,000 groups is extrapolated from the number of rows
it would probe.

Redis: streams × 2 groups (4 entries each; group ``g1`` has read 2 with XREADGROUP,
``g2`` nothing). ``RedisStreamsCollector.collect()`` is timed at 500 and 5,000 streams:
the first sample (which reads the events backlog) and the median of 3 steady-state
samples, next to a naive loop of one ``XINFO GROUPS`` per stream. Round trips and
commands are counted client-side (``Redis.execute_command`` = 1 round trip,
``Pipeline.execute`` = 1 round trip carrying N commands) and cross-checked with the
server's ``total_commands_processed``.
"""
from __future__ import annotations

import gc
import json
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

TARGET_KAFKA_S = 2.0
TARGET_REDIS_S = 1.0

TOPICS = 100
PARTITIONS = 20
MESSAGES_PER_PARTITION = 3
GROUP_STAGES = (100, 1000)
STREAM_STAGES = (500, 5000)
ENTRIES_PER_STREAM = 4
SAMPLES = 3

TABLE: list[tuple] = []


def log(msg: str) -> None:
    print(f"[lag_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ms(seconds: float) -> str:
    return f"{1000 * seconds:,.0f} ms" if seconds < 10 else f"{seconds:,.0f} s"


# --- Kafka -----------------------------------------------------------------------

class KafkaStats:
    """librdkafka statistics of one client: requests sent, in total and per API."""

    def __init__(self):
        self.raw: str | None = None

    def cb(self, stats_json: str) -> None:
        self.raw = stats_json  # callbacks arrive in order: the last one is the newest

    def snapshot(self, client, timeout: float = 10.0) -> tuple[int, Counter]:
        """Counters from a statistics emit made after this call started."""
        mark = time.monotonic()
        deadline = mark + timeout
        while True:
            client.poll(0.05)
            if self.raw is not None:
                stats = json.loads(self.raw)
                if stats["ts"] / 1e6 > mark:  # ts is librdkafka's CLOCK_MONOTONIC in µs
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("no librdkafka statistics emitted")
        tx, per_api = 0, Counter()
        for broker in stats["brokers"].values():
            tx += broker.get("tx", 0)
            per_api.update({k: v for k, v in broker.get("req", {}).items() if v})
        return tx, per_api


def kafka_sample(fn, stats: KafkaStats, admin) -> tuple[float, float, object, int, Counter]:
    tx0, api0 = stats.snapshot(admin)
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    tx1, api1 = stats.snapshot(admin)
    api1.subtract(api0)
    return wall, cpu, out, tx1 - tx0, +api1


def group_assignment(i: int) -> list[tuple[str, int, int]]:
    """(topic, partition, committed offset) for group ``i``."""
    first = f"bench-topic-{i % TOPICS:03d}"
    start = (i // TOPICS) % PARTITIONS
    out = [(first, (start + j) % PARTITIONS, 1 + j % MESSAGES_PER_PARTITION) for j in range(2 + i % 3)]
    if i % 4 == 0:
        second = f"bench-topic-{(i + 37) % TOPICS:03d}"
        out += [(second, 0, 1), (second, 1, 2)]
    return out


def kafka_setup_topics(admin, address: str) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    t = time.perf_counter()
    names = [f"bench-topic-{i:03d}" for i in range(TOPICS)]
    for b in range(0, TOPICS, 20):
        futs = admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names[b:b + 20]],
                                   operation_timeout=60, request_timeout=90)
        for fut in futs.values():
            fut.result()
        log(f"kafka: created {min(b + 20, TOPICS) * PARTITIONS} partitions")
    deadline = time.monotonic() + 120
    while True:
        meta = admin.list_topics(timeout=30)
        ready = sum(1 for n in names if n in meta.topics and not meta.topics[n].error
                    for p in meta.topics[n].partitions.values() if p.leader >= 0)
        if ready == TOPICS * PARTITIONS or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    log(f"kafka: {ready} partitions with a leader after {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    producer = Producer({"bootstrap.servers": address, "linger.ms": 50, "log_level": 3,
                         "log.connection.close": False})
    for n in names:
        for p in range(PARTITIONS):
            for m in range(MESSAGES_PER_PARTITION):
                producer.produce(n, value=b'{"bench": %d}' % m, partition=p)
        producer.poll(0)
    left = producer.flush(60)
    del producer
    log(f"kafka: produced {TOPICS * PARTITIONS * MESSAGES_PER_PARTITION} messages "
        f"in {time.perf_counter() - t:.1f} s ({left} unflushed)")


def kafka_setup_groups(admin, first: int, last: int) -> None:
    """Commit each group's offsets; retry groups whose commit failed per partition.

    The future of ``alter_consumer_group_offsets`` succeeds even when partitions carry
    errors (e.g. while ``__consumer_offsets`` is still being created), so check them.
    """
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    t = time.perf_counter()
    todo = list(range(first, last))
    for attempt in range(5):
        failed = []
        for b in range(0, len(todo), 200):
            futs = []
            for i in todo[b:b + 200]:
                gid = f"bench-group-{i:04d}"
                tps = [TopicPartition(tp, p, off) for tp, p, off in group_assignment(i)]
                futs.append((i, admin.alter_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(gid, tps)], request_timeout=60)[gid]))
            for i, fut in futs:
                try:
                    if any(tp.error is not None for tp in fut.result().topic_partitions):
                        failed.append(i)
                except Exception:  # a failed commit request: retried below, counted in the log line
                    failed.append(i)
        if not failed:
            break
        log(f"kafka: {len(failed)} group commits failed, retrying")
        todo = failed
        time.sleep(1)
    log(f"kafka: groups {first}..{last - 1} committed offsets in {time.perf_counter() - t:.1f} s"
        + (f" ({len(failed)} still failing)" if failed else ""))


def naive_kafka(admin, timeout: float = 30.0) -> int:
    """Per group, sequentially: committed offsets, then end offsets of its topics."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    meta = admin.list_topics(timeout=timeout)
    partitions = {t: len(m.partitions) for t, m in meta.topics.items()}
    groups = sorted(g.group_id for g in admin.list_consumer_groups(request_timeout=timeout).result().valid)
    rows = 0
    for gid in groups:
        res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(gid)],
                                                request_timeout=timeout)[gid].result()
        topics = {tp.topic for tp in res.topic_partitions if tp.error is None}
        tps = [TopicPartition(t, p) for t in sorted(topics) for p in range(partitions.get(t, 0))]
        if not tps:
            continue
        for fut in admin.list_offsets({tp: OffsetSpec.latest() for tp in tps},
                                      request_timeout=timeout).values():
            fut.result()
        rows += len(tps)
    return rows


def api_text(per_api: Counter, tx: int) -> str:
    hidden = tx - sum(per_api.values())
    text = ", ".join(f"{k} {v:,}" for k, v in per_api.most_common())
    if hidden:
        # librdkafka leaves consumer APIs out of a producer-type (admin) client's
        # per-API stats, but its tx total counts them: here that is OffsetFetch
        text += f", OffsetFetch (tx − Σ per-API) {hidden:,}"
    return text


def instrument_phases(collector) -> dict:
    """Wrap the collector's own methods on the instance to time its phases."""
    phases: dict[str, float] = Counter()
    admin = collector.admin

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name] += time.perf_counter() - t
        return wrapper

    class TimedAdmin:
        """Times the collector's admin calls up to the futures' results (see _AwaitTimed)."""

        def __getattr__(self, name):
            return getattr(admin, name)

        def list_topics(self, *a, **kw):
            return timed("metadata", admin.list_topics)(*a, **kw)

        def list_consumer_groups(self, *a, **kw):
            fut = admin.list_consumer_groups(*a, **kw)
            t = time.perf_counter()
            fut.result()
            phases["list groups"] += time.perf_counter() - t
            return fut

        def describe_consumer_groups(self, *a, **kw):
            t = time.perf_counter()
            futs = admin.describe_consumer_groups(*a, **kw)
            for f in futs.values():
                f.exception()
            phases["describe groups"] += time.perf_counter() - t
            return futs

    collector.admin = TimedAdmin()
    collector._offsets = timed("list_offsets ×2", collector._offsets)
    collector._committed = timed("committed offsets", collector._committed)
    return phases


def measure_collector_kafka(admin, stats, n_groups: int) -> dict:
    from eventscope.collectors.kafka.offsets import KafkaOffsetsCollector

    collector = KafkaOffsetsCollector(admin, topics=r"^bench-", timeout_s=60)
    phases = instrument_phases(collector)
    kafka_sample(collector.collect, stats, admin)  # warm-up
    samples = []
    for _ in range(SAMPLES):
        phases.clear()
        wall, cpu, out, tx, per_api = kafka_sample(collector.collect, stats, admin)
        samples.append((wall, cpu, tx, per_api, dict(phases), out))
        log(f"kafka collector @{n_groups} groups: {ms(wall)}, {tx:,} requests")
    wall, cpu, tx, per_api, ph, out = sorted(samples, key=lambda s: s[0])[len(samples) // 2]
    rows = len(out["lag"])
    rest = wall - sum(ph.values())
    print(f"kafka collector @ {n_groups:,} groups, {TOPICS * PARTITIONS:,} partitions: "
          f"{ms(wall)} per sample (median of {SAMPLES}: {', '.join(ms(s[0]) for s in samples)}; "
          f"process CPU {ms(cpu)}), target ≤ {TARGET_KAFKA_S:.0f} s; "
          f"{rows:,} lag rows + {len(out['topics']):,} topic rows; {tx:,} requests")
    print(f"    requests by API: {api_text(per_api, tx)}")
    print("    phases: " + ", ".join(f"{k} {ms(v)}" for k, v in ph.items())
          + f", building rows/frames {ms(rest)}")
    TABLE.append(("kafka", "collector", f"{n_groups:,} groups", wall, tx, rows,
                  f"≤ {TARGET_KAFKA_S:.0f} s"))
    return {"wall": wall, "tx": tx, "lag": out["lag"]}


def measure_naive_kafka(admin, stats, n_groups: int) -> dict:
    samples = []
    for _ in range(SAMPLES):
        wall, cpu, rows, tx, per_api = kafka_sample(lambda: naive_kafka(admin), stats, admin)
        samples.append((wall, cpu, tx, per_api, rows))
        log(f"kafka naive @{n_groups} groups: {ms(wall)}, {tx:,} requests")
    wall, cpu, tx, per_api, rows = sorted(samples, key=lambda s: s[0])[len(samples) // 2]
    print(f"kafka naive     @ {n_groups:,} groups: {ms(wall)} per sample (median of {SAMPLES}: "
          f"{', '.join(ms(s[0]) for s in samples)}; process CPU {ms(cpu)}); "
          f"{rows:,} lag rows; {tx:,} requests")
    print(f"    requests by API: {api_text(per_api, tx)}")
    TABLE.append(("kafka", "naive", f"{n_groups:,} groups", wall, tx, rows, f"≤ {TARGET_KAFKA_S:.0f} s"))
    return {"wall": wall, "tx": tx}


def check_listing(admin, n_groups: int) -> None:
    """Say whether list_consumer_groups sees every group the setup created."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    listing = admin.list_consumer_groups(request_timeout=30).result()
    listed = {g.group_id for g in listing.valid}
    missing = sorted({f"bench-group-{i:04d}" for i in range(n_groups)} - listed)
    print(f"kafka: list_consumer_groups lists {len(listed & {f'bench-group-{i:04d}' for i in range(n_groups)}):,} "
          f"of the {n_groups:,} groups created ({len(listing.errors)} errors)")
    for gid in missing[:5]:
        res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(gid)],
                                                request_timeout=30)[gid].result()
        desc = admin.describe_consumer_groups([gid], request_timeout=30)[gid]
        state = desc.result().state if desc.exception() is None else desc.exception()
        committed = [(tp.topic, tp.partition, tp.offset) for tp in res.topic_partitions]
        print(f"    not listed: {gid}: committed {committed}, describe → {state}")


PROBES = 12


def probe_cost(base: dict, lag, n_groups: int) -> None:
    """The read_committed probe that runner.build_collectors enables (probe_conf=client conf)."""
    from eventscope.collectors.kafka.offsets import ControlRecordProbe

    small = lag[(lag["lag"] >= 1) & (lag["lag"] <= 5)]
    keys = sorted(set(zip(small["topic"], small["partition"].astype(int),
                          small["committed"].astype(int), small["end"].astype(int))))
    topics = len({k[0] for k in keys})
    print(f"kafka probe @ {n_groups:,} groups: {len(small):,} lag rows have 1 ≤ lag ≤ 5, i.e. "
          f"{len(keys):,} distinct (partition, committed, end) to probe over {topics} topics; "
          f"the collector probes each one sequentially inside row building")
    for label, extra in (("default fetch.wait.max.ms (500)", {}),
                         ("fetch.wait.max.ms=10", {"fetch.wait.max.ms": 10})):
        probe = ControlRecordProbe({**base, **extra}, timeout_s=10)
        times, answers = [], Counter()
        try:
            for key in keys[:PROBES]:
                t = time.perf_counter()
                answers[probe.only_control(*key)] += 1
                times.append(time.perf_counter() - t)
        finally:
            probe.close()
        if not times:
            return
        med = statistics.median(times)
        print(f"    {label}: {len(times)} probes measured, median {ms(med)}, max {ms(max(times))} "
              f"(only-control answers: {answers[True]}) → first sample with the probe on ≈ "
              f"{len(keys):,} × {ms(med)} = {len(keys) * med:,.0f} s extra (extrapolated)")
        log(f"kafka probe {label}: median {ms(med)}")
        TABLE.append(("kafka", f"probe ({label.split(' (')[0]})", f"{n_groups:,} groups",
                      len(keys) * med, len(keys), len(small), "extrapolated"))


def offset_clock_cost(rows: int) -> None:
    """Lag-seconds lookup with a full 120-point table (10 minutes of 5 s samples)."""
    from eventscope.collectors.kafka.timelag import OffsetClock

    clock = OffsetClock()
    for k in range(120):
        clock.record(1000 + 10 * k, 1000.0 + 5 * k)
    committed_values = [1000 + (7 * k) % 1190 for k in range(1000)]
    t = time.perf_counter()
    for c in committed_values:
        clock.lag_seconds(c, 2190, 2000.0)
    per_call = (time.perf_counter() - t) / len(committed_values)
    print(f"kafka: OffsetClock.lag_seconds with a full 120-point table: {1e6 * per_call:.1f} µs per "
          f"call → {ms(per_call * rows)} per sample for {rows:,} lag rows once clocks are full "
          f"(not reached in this bench: the end offsets do not move, so each clock holds 1 point)")


def bench_kafka(workdir: Path) -> None:
    from confluent_kafka.admin import AdminClient

    from eventscope.localbrokers import start_kafka

    t = time.perf_counter()
    broker = start_kafka(workdir / "kafka")
    log(f"kafka: started at {broker.address} in {time.perf_counter() - t:.1f} s")
    try:
        base = {"bootstrap.servers": broker.address, "log_level": 3, "log.connection.close": False}
        setup = AdminClient(base)
        kafka_setup_topics(setup, broker.address)
        stats = KafkaStats()
        admin = AdminClient({**base, "client.id": "eventscope", "statistics.interval.ms": 100,
                             "stats_cb": stats.cb})
        results = {}
        done = 0
        for n_groups in GROUP_STAGES:
            kafka_setup_groups(setup, done, n_groups)
            done = n_groups
            check_listing(setup, n_groups)
            results[n_groups] = (measure_collector_kafka(admin, stats, n_groups),
                                 measure_naive_kafka(admin, stats, n_groups))
        lo, hi = GROUP_STAGES
        for i, name in enumerate(("collector", "naive")):
            a, b = results[lo][i], results[hi][i]
            print(f"kafka scaling {name:9s}: {lo:,} → {hi:,} groups ({hi // lo}×): wall "
                  f"{ms(a['wall'])} → {ms(b['wall'])} ({b['wall'] / a['wall']:.1f}×), requests "
                  f"{a['tx']:,} → {b['tx']:,} ({b['tx'] / max(1, a['tx']):.1f}×)")
        offset_clock_cost(len(results[hi][0]["lag"]))
        probe_cost(base, results[hi][0]["lag"], hi)
        del admin, setup
        gc.collect()
    finally:
        broker.stop()
        log("kafka: stopped")


# --- Redis -----------------------------------------------------------------------

class RedisCounter:
    """Client-side round trips, commands (by name) and time spent in redis-py, while active."""

    def __init__(self):
        self.active = False
        self._saved = None
        self.reset()

    def reset(self) -> None:
        self.trips = 0
        self.commands = 0
        self.by_name: Counter = Counter()
        self.client_s = 0.0

    def install(self) -> None:
        import redis
        from redis.client import Pipeline

        execute_command, execute = redis.Redis.execute_command, Pipeline.execute
        counter = self

        def counted_command(client, *args, **options):
            if not counter.active:
                return execute_command(client, *args, **options)
            counter.trips += 1
            counter.commands += 1
            counter.by_name[str(args[0]).upper()] += 1
            t = time.perf_counter()
            try:
                return execute_command(client, *args, **options)
            finally:
                counter.client_s += time.perf_counter() - t

        def counted_execute(pipe, *args, **kwargs):
            if not (counter.active and pipe.command_stack):
                return execute(pipe, *args, **kwargs)
            counter.trips += 1
            counter.commands += len(pipe.command_stack)
            for item in pipe.command_stack:
                cmd = item[0] if isinstance(item, tuple) else getattr(item, "args", ("?",))
                counter.by_name[str(cmd[0]).upper()] += 1
            t = time.perf_counter()
            try:
                return execute(pipe, *args, **kwargs)
            finally:
                counter.client_s += time.perf_counter() - t

        self._saved = (execute_command, execute)
        redis.Redis.execute_command = counted_command
        Pipeline.execute = counted_execute

    def uninstall(self) -> None:
        import redis
        from redis.client import Pipeline

        if self._saved:
            redis.Redis.execute_command, Pipeline.execute = self._saved
            self._saved = None


def server_commands(client) -> int:
    return int(client.info("stats")["total_commands_processed"])


def redis_sample(fn, counter: RedisCounter, probe) -> tuple:
    server0 = server_commands(probe)
    counter.reset()
    counter.active = True
    t, c = time.perf_counter(), time.process_time()
    try:
        out = fn()
    finally:
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        counter.active = False
    server = server_commands(probe) - server0 - 1  # minus the first INFO itself
    detail = (f"in redis-py calls (pack, send, wait, parse) {ms(counter.client_s)}, "
              f"rest {ms(wall - counter.client_s)}; commands: "
              + ", ".join(f"{k} {v:,}" for k, v in counter.by_name.most_common()))
    return wall, cpu, out, counter.trips, counter.commands, server, detail


def redis_setup(client, first: int, last: int) -> None:
    t = time.perf_counter()
    for b in range(first, last, 500):
        pipe = client.pipeline(transaction=False)
        for i in range(b, min(b + 500, last)):
            key = f"bench:stream:{i:05d}"
            for m in range(ENTRIES_PER_STREAM):
                pipe.xadd(key, {"type": "order.created", "n": str(m), "stream": str(i)})
            pipe.xgroup_create(key, "g1", id="0")
            pipe.xgroup_create(key, "g2", id="0")
            pipe.xreadgroup("g1", "c1", {key: ">"}, count=2)
        pipe.execute()
    log(f"redis: streams {first}..{last - 1} set up in {time.perf_counter() - t:.1f} s")


def naive_redis(client) -> int:
    """SCAN for streams, then one XINFO GROUPS per stream."""
    keys = list(client.scan_iter(match="*", count=1000, _type="stream"))
    return sum(len(client.xinfo_groups(k)) for k in keys)


def measure_redis(client, probe, counter: RedisCounter, n_streams: int) -> dict:
    from eventscope.collectors.redis.streams import RedisStreamsCollector

    collector = RedisStreamsCollector(client, pattern="*")
    wall, cpu, out, trips, cmds, server, detail = redis_sample(collector.collect, counter, probe)
    log(f"redis collector @{n_streams} streams, first sample: {ms(wall)}")
    print(f"redis collector @ {n_streams:,} streams × 2 groups, FIRST sample (reads the backlog): "
          f"{ms(wall)} (process CPU {ms(cpu)}), target ≤ {TARGET_REDIS_S:.0f} s; "
          f"{len(out['lag']):,} lag rows, {len(out['events']):,} event rows; "
          f"{trips:,} round trips, {cmds:,} commands (server counted {server:,})")
    print(f"    {detail}")
    TABLE.append(("redis", "collector, first", f"{n_streams:,} streams", wall, trips,
                  len(out["lag"]), f"≤ {TARGET_REDIS_S:.0f} s"))
    samples = []
    for _ in range(SAMPLES):
        samples.append(redis_sample(collector.collect, counter, probe))
    wall, cpu, out, trips, cmds, server, detail = sorted(samples, key=lambda s: s[0])[len(samples) // 2]
    log(f"redis collector @{n_streams} streams, steady: {ms(wall)}")
    print(f"redis collector @ {n_streams:,} streams, steady state: {ms(wall)} per sample "
          f"(median of {SAMPLES}: {', '.join(ms(s[0]) for s in samples)}; process CPU {ms(cpu)}), "
          f"target ≤ {TARGET_REDIS_S:.0f} s; {len(out['lag']):,} lag rows, "
          f"{len(out['events']):,} event rows, {len(out['consumers']):,} consumer rows, "
          f"{len(out['stuck']):,} stuck rows; {trips:,} round trips, {cmds:,} commands "
          f"(server counted {server:,})")
    print(f"    {detail}")
    TABLE.append(("redis", "collector, steady", f"{n_streams:,} streams", wall, trips,
                  len(out["lag"]), f"≤ {TARGET_REDIS_S:.0f} s"))
    result = {"wall": wall, "trips": trips}
    samples = [redis_sample(lambda: naive_redis(client), counter, probe) for _ in range(SAMPLES)]
    wall, cpu, rows, trips, cmds, server, detail = sorted(samples, key=lambda s: s[0])[len(samples) // 2]
    log(f"redis naive @{n_streams} streams: {ms(wall)}")
    print(f"redis naive     @ {n_streams:,} streams (SCAN + 1 XINFO GROUPS per stream): {ms(wall)} "
          f"per sample (median of {SAMPLES}: {', '.join(ms(s[0]) for s in samples)}; process CPU "
          f"{ms(cpu)}); {rows:,} group rows; {trips:,} round trips, {cmds:,} commands "
          f"(server counted {server:,})")
    print(f"    {detail}")
    TABLE.append(("redis", "naive", f"{n_streams:,} streams", wall, trips, rows,
                  f"≤ {TARGET_REDIS_S:.0f} s"))
    return result, {"wall": wall, "trips": trips}


def bench_redis(workdir: Path) -> None:
    import redis

    from eventscope.localbrokers import start_redis

    broker = start_redis(workdir / "redis")
    log(f"redis: started at {broker.address}")
    counter = RedisCounter()
    client = probe = None
    try:
        client = redis.Redis.from_url(broker.address)
        probe = redis.Redis.from_url(broker.address)
        counter.install()
        results, done = {}, 0
        for n in STREAM_STAGES:
            redis_setup(client, done, n)
            done = n
            results[n] = measure_redis(client, probe, counter, n)
        lo, hi = STREAM_STAGES
        for i, name in enumerate(("collector", "naive")):
            a, b = results[lo][i], results[hi][i]
            print(f"redis scaling {name:9s}: {lo:,} → {hi:,} streams ({hi // lo}×): wall "
                  f"{ms(a['wall'])} → {ms(b['wall'])} ({b['wall'] / a['wall']:.1f}×), round trips "
                  f"{a['trips']:,} → {b['trips']:,} ({b['trips'] / max(1, a['trips']):.1f}×)")
    finally:
        counter.uninstall()
        for c in (client, probe):
            if c is not None:
                c.close()
        broker.stop()
        log("redis: stopped")


def print_table() -> None:
    print()
    header = ("broker", "approach", "size", "wall/sample", "requests*", "rows", "target", "")
    lines = [header] + [(b, a, s, ms(w), f"{r:,}", f"{n:,}", tgt,
                         "" if a == "naive" or not tgt.startswith("≤")
                         else ("ok" if w <= float(tgt.split()[1]) else "OVER"))
                        for b, a, s, w, r, n, tgt in TABLE]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(str(v).ljust(w) if i < 3 else str(v).rjust(w)
                        for i, (v, w) in enumerate(zip(line, widths))).rstrip())
    print("* Kafka: requests sent to the broker (librdkafka stats tx); probe rows: probes "
          "(each a consumer assign + fetch), rows = lag rows with 1 ≤ lag ≤ 5; "
          "Redis: client round trips (a pipeline counts once)")


def main() -> None:
    import os

    import confluent_kafka
    import redis

    TABLE.clear()
    kafka_version = confluent_kafka.version()
    kafka_version = kafka_version[0] if isinstance(kafka_version, tuple) else kafka_version
    t = time.perf_counter()
    print(f"lag bench: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
          f"confluent-kafka {kafka_version} "
          f"(librdkafka {confluent_kafka.libversion()[0]}), redis-py {redis.__version__}; "
          f"brokers run on the same machine")
    with tempfile.TemporaryDirectory(prefix="eventscope-lag-bench-") as tmp:
        try:
            bench_kafka(Path(tmp))
        except Exception as exc:  # keep going: the Redis figures are still worth having
            traceback.print_exc()
            print(f"kafka bench failed: {exc!r}")
        try:
            bench_redis(Path(tmp))
        except Exception as exc:
            traceback.print_exc()
            print(f"redis bench failed: {exc!r}")
    print_table()
    print(f"load average {os.getloadavg()[0]:.1f} at the end (other work on this machine skews wall times)")
    log(f"done in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
