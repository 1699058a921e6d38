"""Read-only, proven by the brokers themselves.

The collectors run as identities the brokers allow nothing but reading: a Redis ACL user
with only read commands (``redis_ro_url``) and a Kafka principal granted only Describe and
Read on topics and Describe on groups, on a broker that enforces ACLs (``kafka_ro_env``).
Any write the collectors attempted would be refused, and the refusal shows: in a failed
health row, in Redis's ``ACL LOG``, in the Kafka authorizer's log of denied requests.

A first test shows the restriction is real: as those identities, every kind of write
(records, deletes, trims, groups, acknowledgements, offsets, topics, configs) is denied.
Then, while the simulator's pipeline runs, eventscope samples it as those identities and
really sees it (lag rows for every group); afterwards the brokers hold exactly the groups,
members, committed offsets, records, topic configs and Redis streams and pending lists
that the simulator left, and further sampling changes none of it.
"""
import threading
import uuid
from urllib.parse import urlsplit

import pytest
import redis
from confluent_kafka import (Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic,
                                   OffsetSpec)

from eventscope.collectors.kafka.offsets import kafka_client_config
from eventscope.config import load_config
from eventscope.runner import Runner, build_collectors
from eventscope.store import Store
from eventscope.simulator import SimulatorConfig, run_simulation

pytestmark = pytest.mark.broker


def kafka_state(admin, prefix):
    """Groups and their committed offsets, every watched topic's end offsets and configs."""
    groups = sorted(g.group_id for g in admin.list_consumer_groups().result().valid)
    offsets = {}
    for gid in [g for g in groups if g.startswith(prefix)]:
        res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(gid)])[gid].result()
        offsets[gid] = sorted((tp.topic, tp.partition, tp.offset) for tp in res.topic_partitions)
    meta = admin.list_topics(timeout=10).topics
    topics = sorted(t for t in meta if t.startswith(prefix))
    ends = {(tp.topic, tp.partition): fut.result().offset for tp, fut in admin.list_offsets(
        {TopicPartition(t, p): OffsetSpec.latest() for t in topics for p in meta[t].partitions}).items()}
    configs = {res.name: {k: (e.value, e.source) for k, e in fut.result().items()} for res, fut in
               admin.describe_configs([ConfigResource("topic", t) for t in topics]).items()}
    return groups, offsets, sorted(ends.items()), configs


def redis_state(client, prefix):
    """Every stream's length and first/last IDs, its groups, consumers and pending lists."""
    state = {}
    for key in sorted(client.scan_iter(match=prefix + "*", _type="stream")):
        info = client.xinfo_stream(key)
        state[key] = (info["length"], info["last-generated-id"], info["entries-added"],
                      info["max-deleted-entry-id"], (info["first-entry"] or [None])[0],
                      (info["last-entry"] or [None])[0])
        for group in client.xinfo_groups(key):
            name = group["name"]
            pending = client.xpending_range(key, name, min="-", max="+", count=10_000)
            state[(key, name)] = (group["last-delivered-id"], group["entries-read"], group["pending"],
                                  sorted(c["name"] for c in client.xinfo_consumers(key, name)),
                                  [(p["message_id"], p["consumer"], p["times_delivered"]) for p in pending])
    return state


def denied_log_lines(kafka_broker, principal: str, since: int) -> list[str]:
    """The Kafka authorizer's "is Denied operation" lines for ``principal``, past byte
    ``since`` of the broker log."""
    with open(kafka_broker.log_path, "rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    return [line for line in text.splitlines()
            if f"Principal = {principal} " in line and "Denied" in line]


def acl_log_of(client, user: str) -> list[dict]:
    """Redis's ``ACL LOG`` entries (refused commands, keys, logins) of ``user``."""
    return [entry for entry in client.acl_log(count=1000) if entry["username"] == user]


def _kafka_code(call) -> int:
    with pytest.raises(KafkaException) as caught:
        call()
    return caught.value.args[0].code()


def test_the_read_only_identities_can_read_but_not_write(kafka_broker, kafka_bootstrap, kafka_ro_env,
                                                         redis_url, redis_ro_url):
    tag = f"deny{uuid.uuid4().hex[:5]}"
    # --- Redis: a stream with a group holding a pending entry, made by the full user
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    ro = redis.Redis.from_url(redis_ro_url, decode_responses=True)
    stream = tag + ":orders"
    first = admin.xadd(stream, {"n": "1"})
    admin.xadd(stream, {"n": "2"})
    admin.xgroup_create(stream, "workers", id="0")
    admin.xreadgroup("workers", "w1", {stream: ">"}, count=1)
    before = redis_state(admin, tag)
    # reading works...
    assert [m[0] for m in ro.xrange(stream)][0] == first
    assert ro.xinfo_stream(stream)["length"] == 2
    assert ro.xpending_range(stream, "workers", min="-", max="+", count=10)[0]["message_id"] == first
    # ...and every write is refused by Redis itself
    writes = {
        "XADD": lambda: ro.xadd(stream, {"n": "3"}),
        "XDEL": lambda: ro.xdel(stream, first),
        "XTRIM": lambda: ro.xtrim(stream, maxlen=0),
        "XGROUP CREATE": lambda: ro.xgroup_create(stream, "eventscope", id="0"),
        "XGROUP SETID": lambda: ro.xgroup_setid(stream, "workers", id="0"),
        "XGROUP DELCONSUMER": lambda: ro.xgroup_delconsumer(stream, "workers", "w1"),
        "XREADGROUP": lambda: ro.xreadgroup("workers", "eventscope", {stream: ">"}),
        "XACK": lambda: ro.xack(stream, "workers", first),
        "XCLAIM": lambda: ro.xclaim(stream, "workers", "eventscope", 0, [first]),
        "XAUTOCLAIM": lambda: ro.xautoclaim(stream, "workers", "eventscope", 0),
        "DEL": lambda: ro.delete(stream),
        "SET": lambda: ro.set(tag, "x"),
        "FLUSHALL": lambda: ro.flushall(),
        "CONFIG SET": lambda: ro.config_set("maxmemory", "1mb"),
    }
    for name, write in writes.items():
        with pytest.raises(redis.exceptions.NoPermissionError):
            write()
    assert redis_state(admin, tag) == before
    # each refusal is in the ACL LOG, where the live test looks for any of eventscope's
    refused = {entry["object"] for entry in acl_log_of(admin, urlsplit(redis_ro_url).username)}
    assert {"xadd", "xdel", "xtrim", "xack", "xclaim", "del"} <= refused
    ro.close()
    admin.close()

    # --- Kafka: a topic with records and a group with committed offsets, made on PLAINTEXT
    topic, group = tag + ".orders", tag + "-workers"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(timeout=30)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(6):
        producer.produce(topic, f"r{i}".encode(), partition=i % 2)
    assert producer.flush(30) == 0
    committer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    committer.commit(offsets=[TopicPartition(topic, 0, 2), TopicPartition(topic, 1, 1)], asynchronous=False)
    committer.close()
    before = kafka_state(admin, tag)
    log_start = kafka_broker.log_path.stat().st_size

    conf = kafka_client_config(load_config(env=kafka_ro_env).kafka)
    ro = AdminClient(conf)
    # reading works: metadata, end offsets, groups, committed offsets, records
    assert ro.list_topics(topic, timeout=10).topics[topic].error is None
    assert ro.list_offsets({TopicPartition(topic, 0): OffsetSpec.latest()})[
        TopicPartition(topic, 0)].result().offset == 3
    assert group in {g.group_id for g in ro.list_consumer_groups().result().valid}
    committed = ro.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
    assert sorted((tp.partition, tp.offset) for tp in committed.topic_partitions) == [(0, 2), (1, 1)]
    reader = Consumer(dict(conf, **{"group.id": f"eventscope-{tag}", "enable.auto.commit": False,
                                    "enable.auto.offset.store": False}))
    reader.assign([TopicPartition(topic, 0, 0)])
    msg = None
    for _ in range(50):
        msg = reader.poll(0.2)
        if msg is not None:
            break
    assert msg is not None and msg.error() is None and msg.value() == b"r0"

    # ...and every write is refused by the broker's authorizer
    failures = []
    writer = Producer(dict(conf, **{"message.timeout.ms": 10_000, "retries": 0}))
    writer.produce(topic, b"forbidden", partition=0, on_delivery=lambda err, _msg: failures.append(err))
    writer.flush(15)
    assert [err.code() for err in failures] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    assert _kafka_code(lambda: ro.create_topics([NewTopic(tag + ".new", 1, 1)])[tag + ".new"].result(
        timeout=30)) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert _kafka_code(lambda: reader.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
                       ) == KafkaError.GROUP_AUTHORIZATION_FAILED
    altered = ro.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 0)])])[group]
    try:
        codes = [tp.error.code() for tp in altered.result(timeout=30).topic_partitions]
    except KafkaException as exc:
        codes = [exc.args[0].code()]
    assert codes == [KafkaError.GROUP_AUTHORIZATION_FAILED]
    retention = ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)
    (altering,) = ro.incremental_alter_configs(
        [ConfigResource("topic", topic, incremental_configs=[retention])]).values()
    assert _kafka_code(lambda: altering.result(timeout=30)) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    (deleting,) = ro.delete_records([TopicPartition(topic, 0, 1)]).values()
    assert _kafka_code(lambda: deleting.result(timeout=30)) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert _kafka_code(lambda: ro.delete_consumer_groups([group])[group].result(timeout=30)
                       ) == KafkaError.GROUP_AUTHORIZATION_FAILED
    assert _kafka_code(lambda: ro.delete_topics([topic])[topic].result(timeout=30)
                       ) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    reader.close()
    assert kafka_state(admin, tag) == before
    # each refusal is in the authorizer's log, where the live test looks for any of eventscope's
    denied = denied_log_lines(kafka_broker, "User:" + kafka_ro_env["EVENTSCOPE_KAFKA_SASL_USERNAME"], log_start)
    for operation in ("WRITE", "CREATE", "ALTER_CONFIGS", "DELETE"):
        assert any(f"operation = {operation} " in line for line in denied), (operation, denied)


def test_collecting_a_live_pipeline_changes_nothing(tmp_path, kafka_broker, kafka_bootstrap, kafka_ro_env,
                                                    redis_url, redis_ro_url):
    prefix = f"ro{uuid.uuid4().hex[:5]}-"
    # inventory stalls mid-run, so its group falls behind
    sim = SimulatorConfig(rate=8, duration=5, seed=11, prefix=prefix, payment_failure_rate=0.3,
                          schedule=[(2.0, {"stall": {"inventory-service"}})])
    # the simulator and the checks below use the full rights; eventscope only the read-only ones
    threads = [threading.Thread(target=run_simulation, args=(sim,), kwargs={"kafka_bootstrap": kafka_bootstrap}),
               threading.Thread(target=run_simulation, args=(sim,), kwargs={"redis_url": redis_url})]
    cfg = load_config(env={**kafka_ro_env, "EVENTSCOPE_REDIS_URL": redis_ro_url,
                           "EVENTSCOPE_KAFKA_TOPICS": "^" + prefix,
                           "EVENTSCOPE_REDIS_STREAM_PATTERN": prefix + "*"})
    store = Store(tmp_path)
    runner = Runner(store, build_collectors(cfg), interval_s=0.5)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.acl_log_reset()
    log_start = kafka_broker.log_path.stat().st_size
    for t in threads:
        t.start()
    seen_members = set()
    while any(t.is_alive() for t in threads):
        health = runner.run_once(force=True)
        assert health["ok"].all(), health[["collector", "error"]].to_dict("records")
        for gid, fut in admin.describe_consumer_groups(
                [g for g in kafka_state(admin, prefix)[0] if g.startswith(prefix)]).items():
            seen_members |= {m.client_id for m in fut.result().members}
    for t in threads:
        t.join()
    # nobody but the simulator ever joined a group, and eventscope made no group of its own
    assert seen_members and not any("eventscope" in m for m in seen_members)
    groups = kafka_state(admin, prefix)[0]
    assert not any(g.startswith("eventscope") for g in groups)

    # a consumer that crashed holding entries: the stalled group's pending list is non-empty
    client.xreadgroup(prefix + "inventory-service", "crashed-worker", {prefix + "payments": ">"}, count=5)
    kafka_before, redis_before = kafka_state(admin, prefix), redis_state(client, prefix)
    assert any(entry[4] for key, entry in redis_before.items() if isinstance(key, tuple)), \
        "the scenario must leave pending entries"
    for _ in range(3):
        health = runner.run_once(force=True)
        assert health["ok"].all(), health[["collector", "error"]].to_dict("records")
    runner.close()

    # eventscope saw the pipeline: lag of every group the simulator runs, on both brokers
    lag = store.read("lag")
    lag = lag[lag["group"].str.startswith(prefix) & lag["lag"].notna()]
    for broker in ("kafka", "redis"):
        mine = lag[lag["broker"] == broker]
        assert prefix + "inventory-service" in set(mine["group"]), (broker, sorted(set(mine["group"])))
        assert (mine.loc[mine["group"] == prefix + "inventory-service", "lag"] > 0).any(), broker
    assert len(store.read("events")) > 0

    # and neither broker refused it anything: it never tried to write
    assert acl_log_of(client, urlsplit(redis_ro_url).username) == []
    principal = "User:" + kafka_ro_env["EVENTSCOPE_KAFKA_SASL_USERNAME"]
    assert denied_log_lines(kafka_broker, principal, log_start) == []
    assert kafka_state(admin, prefix) == kafka_before
    assert redis_state(client, prefix) == redis_before
