"""The local brokers are real, reachable on loopback only, and stop when told."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import NewTopic

from eventscope import localbrokers
from eventscope.localbrokers import BrokerStartError, start_redis

REPO_ROOT = Path(__file__).resolve().parents[2]

# Every test here runs a real redis-server or Kafka, fixture or not.
pytestmark = pytest.mark.broker


def _running(pid: int) -> bool:
    """Tell from procfs whether `pid` is a live (non-zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- Redis -------------------------------------------------------------------

def test_redis_answers_ping_without_persistence(redis_client: redis.Redis) -> None:
    assert redis_client.ping()
    assert redis_client.config_get("save") == {"save": ""}
    assert redis_client.config_get("appendonly") == {"appendonly": "no"}
    assert redis_client.config_get("bind") == {"bind": "127.0.0.1"}


def test_redis_client_starts_empty(redis_client: redis.Redis) -> None:
    redis_client.xadd("orders", {"id": "1"})
    assert redis_client.xlen("orders") == 1
    assert redis_client.dbsize() == 1


def test_redis_stop_ends_the_process(tmp_path: Path) -> None:
    broker = start_redis(tmp_path)
    assert _running(broker.pid)
    broker.stop()
    assert not _running(broker.pid)
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(broker.address, socket_connect_timeout=1).ping()


def test_failed_start_raises_with_log_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        monkeypatch.setattr(localbrokers, "free_port", lambda: taken.getsockname()[1])
        with pytest.raises(BrokerStartError) as failure:
            start_redis(tmp_path, timeout=5)
    message = str(failure.value)
    assert "last lines of" in message
    assert "Address already in use" in message  # the log tail, not just our words


def test_cli_start_and_stop(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "eventscope.localbrokers"]
    started = subprocess.run([*cli, "start", "redis", "--dir", str(tmp_path), "--json"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert started.returncode == 0, started.stderr
    record = json.loads(started.stdout)
    assert json.loads((tmp_path / "redis.json").read_text())["pid"] == record["pid"]
    assert redis.Redis.from_url(record["address"]).ping()

    stopped = subprocess.run([*cli, "stop", "redis", "--dir", str(tmp_path)],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert stopped.returncode == 0, stopped.stderr
    assert not (tmp_path / "redis.json").exists()
    assert not _running(record["pid"])


# --- Kafka -------------------------------------------------------------------

def test_kafka_metadata_shows_one_loopback_broker(kafka_admin, kafka_bootstrap: str) -> None:
    brokers = kafka_admin.list_topics(timeout=10).brokers
    assert len(brokers) == 1
    (only,) = brokers.values()
    assert f"{only.host}:{only.port}" == kafka_bootstrap
    assert only.host == "127.0.0.1"


def test_kafka_produce_consume_round_trip(kafka_admin, kafka_bootstrap: str) -> None:
    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    kafka_admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)

    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b"k1", value=b"hello", headers=[("trace", b"abc")])
    assert producer.flush(15) == 0

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"g-{topic}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        message = None
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error():
                pytest.fail(f"consume error: {message.error()}")
    finally:
        consumer.close()
    assert message is not None, "no message within 30 s"
    assert (message.key(), message.value()) == (b"k1", b"hello")
    assert message.headers() == [("trace", b"abc")]


def test_kafka_ready_topic_was_removed(kafka_admin) -> None:
    assert localbrokers.READY_TOPIC not in kafka_admin.list_topics(timeout=10).topics
