"""Faults: a broker that goes away and comes back, wrong credentials, vanishing topics."""

import subprocess
import time
import uuid

import pytest
import redis
from confluent_kafka.admin import NewTopic

from eventscope.collectors.kafka.offsets import KafkaOffsetsCollector
from eventscope.config import load_config
from eventscope.localbrokers import free_port
from eventscope.runner import Runner, build_collectors
from eventscope.store import Store
from programs import require_program

pytestmark = pytest.mark.broker


def redis_server(port, *extra):
    proc = subprocess.Popen([require_program("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, password=extra[1] if extra else None)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def test_redis_outage_is_reported_then_recovers_by_itself(tmp_path, redis_broker):
    port = free_port()
    server = redis_server(port)
    redis.Redis(port=port).xadd("orders", {"envelope": "{}"})
    cfg = load_config(env={"EVENTSCOPE_REDIS_URL": f"redis://127.0.0.1:{port}/0",
                           "EVENTSCOPE_REDIS_TIMEOUT_S": "1"})
    store = Store(tmp_path)
    runner = Runner(store, build_collectors(cfg), interval_s=1)
    try:
        assert runner.run_once(force=True)["ok"].all()
        server.terminate()
        server.wait(10)
        down = runner.run_once(force=True).iloc[0]
        assert not down["ok"] and "ConnectionError" in down["error"]
        assert len(store.read("topics")) == 1  # the last good sample is still there
        server = redis_server(port)
        redis.Redis(port=port).xadd("orders", {"envelope": "{}"})
        back = runner.run_once(force=True).iloc[0]
        assert back["ok"], back["error"]
        health = store.read("health")
        assert set(health["collector"]) == {"redis.streams", "redis.events"}  # the events tail is reported too
        assert health[health["collector"] == "redis.streams"]["ok"].tolist() == [True, False, True]
        assert health[health["collector"] == "redis.events"]["ok"].tolist() == [True, False, True]
    finally:
        runner.close()
        server.kill()


def test_wrong_redis_password_is_a_clear_health_error_without_the_password(tmp_path, redis_broker):
    port = free_port()
    server = redis_server(port, "--requirepass", "right-one")
    try:
        cfg = load_config(env={"EVENTSCOPE_REDIS_URL": f"redis://127.0.0.1:{port}/0",
                               "EVENTSCOPE_REDIS_PASSWORD": "wrong-guess"})
        runner = Runner(Store(tmp_path), build_collectors(cfg), interval_s=1)
        row = runner.run_once(force=True).iloc[0]
        runner.close()
        assert not row["ok"]
        assert "Redis refused the login of user 'default': wrong username or password" in row["error"], row["error"]
        assert "wrong-guess" not in row["error"] and "right-one" not in row["error"]
    finally:
        server.kill()


def test_topic_deleted_between_samples(kafka_admin):
    topic = f"doomed-{uuid.uuid4().hex[:6]}"
    kafka_admin.create_topics([NewTopic(topic, 2, 1)])[topic].result()
    collector = KafkaOffsetsCollector(kafka_admin, topics=f"^{topic}$")
    deadline = time.monotonic() + 30
    while len(collector.collect()["topics"]) < 2:  # a new topic's leaders take a moment
        assert time.monotonic() < deadline, "new topic never got leaders"
        time.sleep(0.2)
    kafka_admin.delete_topics([topic])[topic].result()
    while topic in kafka_admin.list_topics(timeout=5).topics:  # metadata catches up
        assert time.monotonic() < deadline + 30, "topic deletion never showed in metadata"
        time.sleep(0.2)
    out = collector.collect()
    assert out["topics"].empty and out["lag"].empty
