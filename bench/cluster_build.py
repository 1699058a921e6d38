"""Build a production-sized cluster on local brokers, and move it along, for the scale benches.

Kafka (:func:`build_kafka`): ``topic_count`` topics × ``partitions`` partitions, a few messages
in every partition, and ``groups`` consumer groups, each with committed offsets on every
partition of ``topics_per_group`` topics (topics are shared: 1,000 groups × 2 topics × 20
partitions = 40,000 group-partition rows over 100 topics). Offsets are committed with
``AdminClient.alter_consumer_group_offsets``, no consumer runs: the groups are Empty, as
groups between deployments or of batch jobs are.

Redis (:func:`build_redis`): ``streams`` streams with ``groups_per_stream`` groups each; the
first group has read half of the entries, the others nothing.

:func:`advance_kafka` / :func:`advance_redis` produce more messages and move the groups on,
so a live collection over a few minutes sees lag change: most groups keep up, every
``lag_every``-th group falls behind a little each round, every ``stall_every``-th group never
moves. Which group does what is fixed by its number (:func:`kafka_group_role`).

This is the bench building its own cluster: unlike eventscope, it creates topics, produces
and commits. Everything here is for throwaway local brokers only.
"""
from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

TOPIC_PREFIX = "scale-topic-"
GROUP_PREFIX = "scale-group-"
STREAM_PREFIX = "scale:stream:"
# alter_consumer_group_offsets takes one group per call; this many calls are in flight at once
COMMIT_WINDOW = 250
# The broker answers one request per connection at a time, and a commit waits for its
# write to the offsets log: commits are spread over this many clients (connections).
COMMIT_CLIENTS = 8


def log(msg: str) -> None:
    print(f"[cluster_build {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class KafkaCluster:
    """What :func:`build_kafka` made, and how long each step took (seconds)."""

    bootstrap: str
    topics: list[str]
    partitions: int
    groups: dict[str, list[str]]  # group id -> its topics
    timings: dict[str, float] = field(default_factory=dict)
    rounds: int = 0  # advance_kafka calls so far

    @property
    def rows(self) -> int:
        """Group-partition rows a lag sample has (committed on every partition of each topic)."""
        return sum(len(ts) for ts in self.groups.values()) * self.partitions


@dataclass
class RedisCluster:
    """What :func:`build_redis` made, and how long it took."""

    url: str
    streams: list[str]
    groups: list[str]
    entries: int
    timings: dict[str, float] = field(default_factory=dict)
    rounds: int = 0


def topic_name(i: int, prefix: str = TOPIC_PREFIX) -> str:
    return f"{prefix}{i:03d}"


def group_name(i: int, prefix: str = GROUP_PREFIX) -> str:
    return f"{prefix}{i:04d}"


def group_topics(i: int, topics_per_group: int, topic_count: int) -> list[int]:
    """Topic numbers of group ``i``: consecutive groups start on consecutive topics and take
    their other topics at a stride that changes every ``topic_count`` groups, so the pairs
    differ and every topic is shared by about the same number of groups."""
    first = i % topic_count
    stride = 1 + (i // topic_count) % max(1, topic_count - 1)
    out: list[int] = []
    k = 0
    while len(out) < min(topics_per_group, topic_count):
        t = (first + k * stride) % topic_count
        if t not in out:
            out.append(t)
        else:  # the stride came round: fill with the next free topic
            t = next(x for x in range(topic_count) if x not in out)
            out.append(t)
        k += 1
    return out


def kafka_group_role(i: int, lag_every: int = 10, stall_every: int = 25) -> str:
    """``stalled`` (never commits again), ``lagging`` (commits behind the end) or ``healthy``."""
    if i % stall_every == stall_every - 1:
        return "stalled"
    if i % lag_every == lag_every - 1:
        return "lagging"
    return "healthy"


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 3, "log.connection.close": False})


def _producer(bootstrap: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000,
                     "queue.buffering.max.messages": 1_000_000, "log_level": 3,
                     "log.connection.close": False, "acks": 1})


def _create_topics(admin: AdminClient, names: list[str], partitions: int) -> None:
    """Create the topics that do not exist yet, then wait until every partition has a leader."""
    existing = set(admin.list_topics(timeout=30).topics)
    todo = [n for n in names if n not in existing]
    # The single local controller takes a burst of 25 topics per request without timing out.
    for b in range(0, len(todo), 25):
        futs = admin.create_topics([NewTopic(n, partitions, 1) for n in todo[b:b + 25]],
                                   operation_timeout=60, request_timeout=90)
        for fut in futs.values():
            try:
                fut.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    deadline = time.monotonic() + 120
    while True:
        meta = admin.list_topics(timeout=30)
        ready = sum(1 for n in names if n in meta.topics and not meta.topics[n].error
                    for p in meta.topics[n].partitions.values() if p.leader >= 0)
        if ready == len(names) * partitions:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {ready} of {len(names) * partitions} partitions have a leader")
        time.sleep(0.3)


def _produce(bootstrap: str, topics: list[str], partitions: int, per_partition: int, tag: int) -> int:
    """``per_partition`` small messages into every partition; returns how many were not delivered."""
    producer = _producer(bootstrap)
    failed = [0]

    def delivered(err, _msg) -> None:
        if err is not None:
            failed[0] += 1

    for name in topics:
        for p in range(partitions):
            for m in range(per_partition):
                producer.produce(name, value=b'{"bench": %d, "round": %d}' % (m, tag), partition=p,
                                 on_delivery=delivered)
        producer.poll(0)
    left = producer.flush(60)
    return failed[0] + left


def end_offsets(admin: AdminClient, topics: list[str], partitions: int) -> dict[tuple[str, int], int]:
    """Log end offset of every partition, in one batched request."""
    futs = admin.list_offsets({TopicPartition(t, p): OffsetSpec.latest() for t in topics
                               for p in range(partitions)}, request_timeout=60)
    return {(tp.topic, tp.partition): fut.result().offset for tp, fut in futs.items()}


def commit_offsets(bootstrap: str, commits: dict[str, list[TopicPartition]], attempts: int = 5) -> int:
    """Commit ``{group: [TopicPartition(topic, partition, offset)]}``, ``COMMIT_WINDOW`` groups in
    flight over ``COMMIT_CLIENTS`` clients; groups whose commit failed (the future, or any
    partition in it) are retried. Returns the number of groups still failing."""
    admins = [_admin(bootstrap) for _ in range(COMMIT_CLIENTS)]
    todo = list(commits)
    for attempt in range(attempts):
        failed = []
        for b in range(0, len(todo), COMMIT_WINDOW):
            futs = [(gid, admins[k % len(admins)].alter_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(gid, commits[gid])], request_timeout=60)[gid])
                for k, gid in enumerate(todo[b:b + COMMIT_WINDOW])]
            for gid, fut in futs:
                try:
                    # the future succeeds even when partitions carry errors (e.g. while
                    # __consumer_offsets is still being created): check them too
                    if any(tp.error is not None for tp in fut.result().topic_partitions):
                        failed.append(gid)
                except KafkaException:
                    failed.append(gid)
        if not failed:
            return 0
        log(f"kafka: {len(failed)} group commit(s) failed (attempt {attempt + 1}), retrying")
        todo = failed
        time.sleep(1)
    return len(todo)


def _lagging_offset(end: int, round_: int) -> int:
    """A lagging group's committed offset: behind by a few messages more every round, and far
    enough behind (more than 5) that the transactional probe's small-lag case does not apply."""
    return max(0, end - 6 - 2 * round_)


def build_kafka(bootstrap: str, groups: int = 1000, topics_per_group: int = 2, partitions: int = 20,
                topic_count: int = 100, messages: int = 8) -> KafkaCluster:
    """Create the topics, fill every partition with ``messages`` messages and commit offsets for
    every group on all partitions of its topics (healthy groups at the end, lagging and stalled
    ones behind it). Returns the cluster with ``timings`` per step; logs them as it goes."""
    started = time.perf_counter()
    admin = _admin(bootstrap)
    names = [topic_name(i) for i in range(topic_count)]
    cluster = KafkaCluster(bootstrap, names, partitions,
                           {group_name(i): [names[t] for t in group_topics(i, topics_per_group, topic_count)]
                            for i in range(groups)})
    t = time.perf_counter()
    _create_topics(admin, names, partitions)
    cluster.timings["create topics"] = time.perf_counter() - t
    log(f"kafka: {topic_count} topics × {partitions} partitions ready in "
        f"{cluster.timings['create topics']:.1f} s")
    t = time.perf_counter()
    lost = _produce(bootstrap, names, partitions, messages, 0)
    cluster.timings["produce"] = time.perf_counter() - t
    log(f"kafka: produced {topic_count * partitions * messages:,} messages in "
        f"{cluster.timings['produce']:.1f} s ({lost} not delivered)")
    t = time.perf_counter()
    ends = end_offsets(admin, names, partitions)
    commits = {}
    for i, (gid, topics) in enumerate(cluster.groups.items()):
        role = kafka_group_role(i)
        commits[gid] = [TopicPartition(topic, p, ends[(topic, p)] if role == "healthy"
                                       else _lagging_offset(ends[(topic, p)], 0))
                        for topic in topics for p in range(partitions)]
    failing = commit_offsets(bootstrap, commits)
    cluster.timings["commit offsets"] = time.perf_counter() - t
    log(f"kafka: {groups:,} groups committed {cluster.rows:,} offsets in "
        f"{cluster.timings['commit offsets']:.1f} s" + (f" ({failing} groups still failing)" if failing else ""))
    cluster.timings["total"] = time.perf_counter() - started
    return cluster


def advance_kafka(cluster: KafkaCluster, messages: int = 2, topic_share: float = 1.0,
                  lag_every: int = 10, stall_every: int = 25) -> dict[str, int]:
    """One round of traffic: ``messages`` more per partition on the first ``topic_share`` of the
    topics, then healthy groups commit the new end, lagging groups commit further behind it,
    stalled groups nothing. Returns how many groups of each role committed."""
    t = time.perf_counter()
    cluster.rounds += 1
    admin = _admin(cluster.bootstrap)
    moving = cluster.topics[:max(1, round(len(cluster.topics) * topic_share))]
    _produce(cluster.bootstrap, moving, cluster.partitions, messages, cluster.rounds)
    ends = end_offsets(admin, cluster.topics, cluster.partitions)
    commits, roles = {}, {"healthy": 0, "lagging": 0, "stalled": 0}
    for i, (gid, topics) in enumerate(cluster.groups.items()):
        role = kafka_group_role(i, lag_every, stall_every)
        roles[role] += 1
        if role == "stalled":
            continue
        commits[gid] = [TopicPartition(topic, p, ends[(topic, p)] if role == "healthy"
                                       else _lagging_offset(ends[(topic, p)], cluster.rounds))
                        for topic in topics for p in range(cluster.partitions)]
    commit_offsets(cluster.bootstrap, commits)
    cluster.timings["last advance"] = time.perf_counter() - t
    return roles


def build_redis(url: str, streams: int = 2000, groups_per_stream: int = 2, entries: int = 4,
                batch: int = 250) -> RedisCluster:
    """``streams`` streams of ``entries`` entries, ``groups_per_stream`` groups each created at
    the start; the first group reads half of the entries (they stay pending). Pipelined, and
    ``batch`` streams per pipeline run in parallel on a small pool of connections."""
    t = time.perf_counter()
    keys = [f"{STREAM_PREFIX}{i:05d}" for i in range(streams)]
    groups = [f"g{j + 1}" for j in range(groups_per_stream)]
    pool = redis.ConnectionPool.from_url(url)
    client = redis.Redis(connection_pool=pool)
    try:
        def fill(chunk: list[str]) -> None:
            pipe = client.pipeline(transaction=False)
            for key in chunk:
                for m in range(entries):
                    pipe.xadd(key, {"type": "order.created", "n": str(m), "stream": key})
                for g in groups:
                    pipe.xgroup_create(key, g, id="0")
                if groups:
                    pipe.xreadgroup(groups[0], "c1", {key: ">"}, count=max(1, entries // 2))
            pipe.execute()

        with ThreadPoolExecutor(4) as pool_exec:
            list(pool_exec.map(fill, [keys[b:b + batch] for b in range(0, len(keys), batch)]))
    finally:
        client.close()
        pool.disconnect()
    cluster = RedisCluster(url, keys, groups, entries)
    cluster.timings["total"] = time.perf_counter() - t
    log(f"redis: {streams:,} streams × {groups_per_stream} groups, {entries} entries each, "
        f"in {cluster.timings['total']:.1f} s")
    return cluster


def advance_redis(cluster: RedisCluster, entries: int = 2, stall_every: int = 25, lag_every: int = 10,
                  batch: int = 500) -> None:
    """One round: ``entries`` more per stream; the first group of most streams reads and acks
    everything new, of every ``lag_every``-th stream only half of it, of every
    ``stall_every``-th stream nothing."""
    t = time.perf_counter()
    cluster.rounds += 1
    client = redis.Redis.from_url(cluster.url)
    try:
        for b in range(0, len(cluster.streams), batch):
            pipe = client.pipeline(transaction=False)
            chunk = list(enumerate(cluster.streams))[b:b + batch]
            for i, key in chunk:
                for m in range(entries):
                    pipe.xadd(key, {"type": "order.created", "n": str(m), "round": str(cluster.rounds)})
            pipe.execute()
            for i, key in chunk:
                if not cluster.groups or i % stall_every == stall_every - 1:
                    continue
                count = max(1, entries // 2) if i % lag_every == lag_every - 1 else entries
                pipe.xreadgroup(cluster.groups[0], "c1", {key: ">"}, count=count)
            replies = pipe.execute()
            for (_, key), reply in zip([c for c in chunk if cluster.groups and
                                        c[0] % stall_every != stall_every - 1], replies):
                ids = [entry_id for _stream, items in reply or [] for entry_id, _ in items]
                if ids:
                    pipe.xack(key, cluster.groups[0], *ids)
            pipe.execute()
    finally:
        client.close()
    cluster.timings["last advance"] = time.perf_counter() - t
