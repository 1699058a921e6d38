"""Restarts change nothing: `eventscope collect` killed (SIGKILL) mid-run and started again,
or run with `--once` again and again, stores each message once and keeps every DLQ's
reasons, source and oldest message, on the real brokers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import redis
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from eventscope.store import Store

pytestmark = pytest.mark.broker
CLI = [str(Path(sys.executable).with_name("eventscope"))]
REASONS = ("IllegalStateException", "NullPointerException", "TimeoutException")


class Traffic:
    """Orders on a Kafka topic and a Redis stream, every fifth one dead-lettered with one of
    three causes; remembers what it sent."""

    def __init__(self, prefix: str, kafka_bootstrap: str, redis_url: str):
        self.prefix = prefix
        self.producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
        self.redis = redis.Redis.from_url(redis_url)
        self.sent = 0
        self.dead = {"kafka": {}, "redis": {}}

    def send(self, count: int) -> None:
        for _ in range(count):
            i = self.sent
            self.sent += 1
            body = json.dumps({"event_type": "OrderPlaced", "event_id": f"{self.prefix}{i}",
                               "correlation_id": f"order-{i}", "source": "order-service"}).encode()
            self.producer.produce(f"{self.prefix}orders", body, key=str(i).encode())
            self.redis.xadd(f"{self.prefix}orders", {"envelope": body})
            if i % 5 == 4:
                cause = REASONS[i % 3]
                self.producer.produce(f"{self.prefix}orders.DLT", body, headers=[
                    ("kafka_dlt-exception-fqcn", f"java.lang.{cause}".encode()),
                    ("kafka_dlt-exception-message", b"order could not be handled"),
                    ("kafka_dlt-original-topic", f"{self.prefix}orders".encode())])
                self.redis.xadd(f"{self.prefix}orders.dlq", {"envelope": body, "error": f"{cause}: failed",
                                                             "original_stream": f"{self.prefix}orders"})
                for broker, reason in (("kafka", f"{cause}: order could not be handled"),
                                       ("redis", f"{cause}: failed")):
                    self.dead[broker][reason] = self.dead[broker].get(reason, 0) + 1
        self.producer.flush(10)


@pytest.fixture
def traffic(kafka_admin, kafka_bootstrap, redis_url):
    prefix = f"rs{uuid.uuid4().hex[:6]}-"
    for topic in (f"{prefix}orders", f"{prefix}orders.DLT"):
        kafka_admin.create_topics([NewTopic(topic, 3, 1)])[topic].result()
    traffic = Traffic(prefix, kafka_bootstrap, redis_url)
    yield traffic
    traffic.producer.flush(10)
    traffic.producer = None  # its handle goes now, not after the broker at the end of the run


def _env(traffic: Traffic, kafka_ro_env: dict, redis_ro_url: str, store: Path) -> dict:
    """`eventscope collect`'s environment: the brokers as its read-only identities see them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSCOPE_")}
    env.update({**kafka_ro_env, "EVENTSCOPE_REDIS_URL": redis_ro_url,
                "EVENTSCOPE_STORE": str(store), "EVENTSCOPE_KAFKA_TOPICS": "^" + traffic.prefix,
                "EVENTSCOPE_REDIS_STREAM_PATTERN": traffic.prefix + "*",
                "EVENTSCOPE_TRACES_INTERVAL_S": "0.5"})
    return env


def _check(store: Path, traffic: Traffic) -> None:
    """Every message stored once, and each DLQ summary as its whole content says."""
    events = Store(store).read("events")
    mine = events[events["topic"].str.startswith(traffic.prefix)]
    for broker in ("kafka", "redis"):
        rows = mine[mine["broker"] == broker]
        live, dead = rows[~rows["dead_letter"]], rows[rows["dead_letter"]]
        assert not rows.duplicated(["topic", "partition", "offset"]).any(), f"{broker}: an event stored twice"
        assert sorted(live["event_id"]) == sorted(f"{traffic.prefix}{i}" for i in range(traffic.sent)), broker
        assert len(dead) == sum(traffic.dead[broker].values()), broker
    dlq = Store(store).get("dlq_latest").set_index(["broker", "dlq"])
    for broker, name in (("kafka", f"{traffic.prefix}orders.DLT"), ("redis", f"{traffic.prefix}orders.dlq")):
        row = dlq.loc[(broker, name)]
        assert json.loads(row["reasons"]) == traffic.dead[broker], broker
        assert row["source_topic"] == f"{traffic.prefix}orders"
        assert row["depth"] == sum(traffic.dead[broker].values())
        assert pd.notna(row["oldest_at"])


def test_collect_once_again_and_again_stores_each_message_once(tmp_path, traffic, kafka_ro_env, redis_ro_url):
    env = _env(traffic, kafka_ro_env, redis_ro_url, tmp_path / "store")
    for round_ in range(3):
        traffic.send(15 if round_ < 2 else 0)  # the third run finds nothing new
        done = subprocess.run(CLI + ["collect", "--once"], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
    _check(tmp_path / "store", traffic)


def test_a_killed_collector_starts_again_where_it_stopped(tmp_path, traffic, kafka_ro_env, redis_ro_url):
    """SIGKILL at moments of the run nobody chose, three times, while orders keep coming."""
    env = _env(traffic, kafka_ro_env, redis_ro_url, tmp_path / "store")
    stop = threading.Event()

    def keep_sending():
        while not stop.is_set():
            traffic.send(3)
            time.sleep(0.05)
    sender = threading.Thread(target=keep_sending, daemon=True)
    sender.start()
    log = open(tmp_path / "collect.log", "ab")
    try:
        for kill_after in (2.0, 2.3, 3.1, 1.7):
            proc = subprocess.Popen(CLI + ["collect", "--interval", "0.5"], env=env, stdout=log, stderr=log)
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
    finally:
        stop.set()
        sender.join(30)
    assert traffic.sent > 100
    # a last run reads what the killed ones left, then stops on its own
    done = subprocess.run(CLI + ["collect", "--duration", "6", "--interval", "0.5"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    _check(tmp_path / "store", traffic)


def test_a_dlq_seen_for_the_first_time_is_read_from_its_start(tmp_path, traffic, kafka_ro_env, redis_ro_url):
    """Dead letters from hours before eventscope started count in the reasons (the events
    lookback does not apply to a DLQ); past ``dlq_read_max`` the summary says what it left out."""
    from eventscope.config import load_config
    from eventscope.runner import Runner, build_collectors
    hours_ago = int((time.time() - 2 * 3600) * 1000)
    for i in range(30):
        traffic.producer.produce(f"{traffic.prefix}orders.DLT", b"{}", partition=i % 3, timestamp=hours_ago + i,
                                 headers=[("kafka_dlt-exception-fqcn", b"java.lang.IllegalStateException"),
                                          ("kafka_dlt-exception-message", b"old failure")])
        traffic.redis.xadd(f"{traffic.prefix}orders.dlq", {"envelope": b"{}", "error": "IllegalStateException: old"})
    traffic.producer.flush(10)
    results, errors = {}, {}
    for read_max in (100, 12):
        env = _env(traffic, kafka_ro_env, redis_ro_url, tmp_path / f"store-{read_max}")
        env.update({"EVENTSCOPE_KAFKA_DLQ_READ_MAX": str(read_max), "EVENTSCOPE_REDIS_DLQ_READ_MAX": str(read_max),
                    "EVENTSCOPE_TRACES_LOOKBACK_S": "300"})
        config = load_config(env={k: v for k, v in env.items() if k.startswith("EVENTSCOPE_")})
        store = Store(tmp_path / f"store-{read_max}")
        runner = Runner(store, build_collectors(config), interval_s=0.5)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until both DLQs are read as far as they will be
            runner.run_once(force=True)
            rows = store.get("dlq_latest")
            if len(rows) == 2 and all(sum(json.loads(r).values()) == min(30, read_max)
                                      for r in rows["reasons"]):
                break
        runner.close()
        health = store.read("health")
        errors[read_max] = sorted(set(health.loc[~health["ok"], "error"]))
        results[read_max] = store.get("dlq_latest").set_index("broker")
    for broker, reason in (("kafka", "IllegalStateException: old failure"), ("redis", "IllegalStateException: old")):
        whole, capped = results[100].loc[broker], results[12].loc[broker]
        assert json.loads(whole["reasons"]) == {reason: 30} and whole["unread"] == 0, broker
        assert sum(json.loads(capped["reasons"]).values()) == 12 and capped["unread"] == 18, (broker, errors)
        assert whole["depth"] == capped["depth"] == 30


@pytest.mark.parametrize("refused", ["every frame", "all but the events"])
def test_a_store_that_refuses_writes_loses_no_message(tmp_path, traffic, kafka_ro_env, redis_ro_url,
                                                       monkeypatch, refused):
    """A full disk for a while: the samples in between fail (health says so, the collector
    goes on), and afterwards every message is stored once and every DLQ's reasons are
    counted once. With "all but the events", events are stored but the reading positions
    and DLQ summaries are not: the readers must neither read them again nor lose count."""
    import errno
    from eventscope.config import load_config
    from eventscope.runner import Runner, build_collectors
    env = _env(traffic, kafka_ro_env, redis_ro_url, tmp_path / "store")
    config = load_config(env={k: v for k, v in env.items() if k.startswith("EVENTSCOPE_")})
    store = Store(tmp_path / "store")
    runner = Runner(store, build_collectors(config), interval_s=0.5)
    traffic.send(10)
    for _ in range(3):
        runner.run_once(force=True)
    real_append, real_put = Store.append, Store.put

    def full(kind):
        def refuse(self, name, frame):
            if refused == "all but the events" and name == "events":
                return (real_append if kind == "append" else real_put)(self, name, frame)
            raise OSError(errno.ENOSPC, "No space left on device")
        return refuse
    monkeypatch.setattr(Store, "append", full("append"))
    monkeypatch.setattr(Store, "put", full("put"))
    traffic.send(15)
    failed = [runner.run_once(force=True) for _ in range(4)]
    assert not any(h["ok"].any() for h in failed if "events" in " ".join(h["collector"]))
    monkeypatch.setattr(Store, "append", real_append)
    monkeypatch.setattr(Store, "put", real_put)
    traffic.send(10)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until every order is in on both brokers (or time is up)
        runner.run_once(force=True)
        events = store.read("events", columns=["event_id", "broker", "topic", "dead_letter"])
        live = events[events["topic"].str.startswith(traffic.prefix) & ~events["dead_letter"].astype(bool)]
        if (all(live.loc[live["broker"] == b, "event_id"].nunique() >= traffic.sent for b in ("kafka", "redis"))
                and len(store.get("dlq_latest")) == 2):
            break
    for _ in range(2):
        runner.run_once(force=True)
    runner.close()
    health = store.read("health")
    assert health["error"].str.contains("No space left on device").any(), "the failed samples are in health"
    _check(tmp_path / "store", traffic)
