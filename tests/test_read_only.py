"""Read-only, proven on groups the simulator really consumes with.

While the pipeline runs, eventscope samples it; afterwards the brokers hold exactly
the groups, members, committed offsets and Redis pending lists that the simulator
left, and further sampling changes none of it.
"""
import threading
import uuid

import pytest
import redis
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient

from eventscope.config import load_config
from eventscope.runner import Runner, build_collectors
from eventscope.store import Store
from eventscope.simulator import SimulatorConfig, run_simulation

pytestmark = pytest.mark.broker


def kafka_state(admin, prefix):
    groups = sorted(g.group_id for g in admin.list_consumer_groups().result().valid)
    offsets = {}
    for gid in [g for g in groups if g.startswith(prefix)]:
        res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(gid)])[gid].result()
        offsets[gid] = sorted((tp.topic, tp.partition, tp.offset) for tp in res.topic_partitions)
    return groups, offsets


def redis_state(client, prefix):
    state = {}
    for key in sorted(client.scan_iter(match=prefix + "*", _type="stream")):
        for group in client.xinfo_groups(key):
            name = group["name"]
            pending = client.xpending_range(key, name, min="-", max="+", count=10_000)
            state[(key, name)] = (group["last-delivered-id"], group["entries-read"], group["pending"],
                                  sorted(c["name"] for c in client.xinfo_consumers(key, name)),
                                  [(p["message_id"], p["consumer"], p["times_delivered"]) for p in pending])
    return state


def test_collecting_a_live_pipeline_changes_nothing(tmp_path, kafka_bootstrap, redis_url):
    prefix = f"ro{uuid.uuid4().hex[:5]}-"
    # inventory stalls mid-run, so its group falls behind
    sim = SimulatorConfig(rate=8, duration=5, seed=11, prefix=prefix, payment_failure_rate=0.3,
                          schedule=[(2.0, {"stall": {"inventory-service"}})])
    threads = [threading.Thread(target=run_simulation, args=(sim,), kwargs={"kafka_bootstrap": kafka_bootstrap}),
               threading.Thread(target=run_simulation, args=(sim,), kwargs={"redis_url": redis_url})]
    cfg = load_config(env={"EVENTSCOPE_KAFKA_BOOTSTRAP": kafka_bootstrap, "EVENTSCOPE_REDIS_URL": redis_url,
                           "EVENTSCOPE_KAFKA_TOPICS": "^" + prefix,
                           "EVENTSCOPE_REDIS_STREAM_PATTERN": prefix + "*"})
    runner = Runner(Store(tmp_path), build_collectors(cfg), interval_s=0.5)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    for t in threads:
        t.start()
    seen_members = set()
    while any(t.is_alive() for t in threads):
        runner.run_once(force=True)
        for gid, fut in admin.describe_consumer_groups(
                [g for g in kafka_state(admin, prefix)[0] if g.startswith(prefix)]).items():
            seen_members |= {m.client_id for m in fut.result().members}
    for t in threads:
        t.join()
    # nobody but the simulator ever joined a group, and eventscope made no group of its own
    assert seen_members and not any("eventscope" in m for m in seen_members)
    groups, _ = kafka_state(admin, prefix)
    assert not any(g.startswith("eventscope") for g in groups)

    # a consumer that crashed holding entries: the stalled group's pending list is non-empty
    client.xreadgroup(prefix + "inventory-service", "crashed-worker", {prefix + "payments": ">"}, count=5)
    kafka_before, redis_before = kafka_state(admin, prefix), redis_state(client, prefix)
    assert any(entry[4] for entry in redis_before.values()), "the scenario must leave pending entries"
    for _ in range(3):
        health = runner.run_once(force=True)
        assert health["ok"].all()
    runner.close()
    assert kafka_state(admin, prefix) == kafka_before
    assert redis_state(client, prefix) == redis_before
