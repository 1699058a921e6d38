"""A broker that stops answering in the middle of a sample (a long GC pause, a restart, a
network stall) must cost samples, never the collector.

librdkafka 2.x aborts the process when a group request's own deadline passes while its
coordinator lookup is in flight: stopping the broker for a few seconds longer than the
request timeout, with a few hundred groups, killed the offsets collector with SIGABRT.
This test stalls a broker of its own (SIGSTOP, so the test suite's shared one is not
touched) under a collector running in a child process, so an abort is seen as an exit
code instead of taking pytest down."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from eventscope.localbrokers import start_kafka
from eventscope.store import Store

pytestmark = pytest.mark.broker

GROUPS, TOPICS, PARTITIONS = 300, 10, 4
TIMEOUT_S = 3.0

# the collector as `eventscope collect` builds it (socket timeout = its timeout), sampling
# back to back, one JSON line per sample
CHILD = """
import json, sys, time
from confluent_kafka.admin import AdminClient
from eventscope.collectors.kafka.offsets import KafkaOffsetsCollector
from eventscope.config import load_config
from eventscope.collectors.kafka.offsets import kafka_client_config
cfg = load_config(env={"EVENTSCOPE_KAFKA_BOOTSTRAP": sys.argv[1], "EVENTSCOPE_KAFKA_TIMEOUT_S": sys.argv[2]})
collector = KafkaOffsetsCollector(AdminClient(kafka_client_config(cfg.kafka)), timeout_s=cfg.kafka.timeout_s)
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    start = time.monotonic()
    try:
        rows, error = len(collector.collect()["lag"]), None
    except Exception as exc:
        rows, error = 0, str(exc)
    print(json.dumps({"rows": rows, "error": error, "group_errors": collector.group_errors,
                      "seconds": time.monotonic() - start}), flush=True)
    time.sleep(0.02)
"""


@pytest.fixture(scope="module")
def stalling_kafka(tmp_path_factory):
    broker = start_kafka(tmp_path_factory.mktemp("stalling-kafka"))
    admin = AdminClient({"bootstrap.servers": broker.address})
    for future in admin.create_topics([NewTopic(f"s{i}", PARTITIONS, 1) for i in range(TOPICS)]).values():
        future.result()
    for g in range(GROUPS):
        consumer = Consumer({"bootstrap.servers": broker.address, "group.id": f"stall-{g}",
                             "enable.auto.commit": False})
        consumer.commit(offsets=[TopicPartition(f"s{g % TOPICS}", p, 0) for p in range(PARTITIONS)],
                        asynchronous=False)
        consumer.close()
    yield broker
    os.kill(broker.pid, signal.SIGCONT)
    broker.stop()


def test_a_stalling_broker_costs_samples_not_the_collector(stalling_kafka):
    child = subprocess.Popen([sys.executable, "-c", CHILD, stalling_kafka.address, str(TIMEOUT_S), "30"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        for pause in (1.3, 2.1, 1.7):  # three stalls twice the timeout long, at odd moments
            os.kill(stalling_kafka.pid, signal.SIGSTOP)
            time.sleep(2 * TIMEOUT_S)
            os.kill(stalling_kafka.pid, signal.SIGCONT)
            time.sleep(pause)
        out, err = child.communicate(timeout=120)
    finally:
        os.kill(stalling_kafka.pid, signal.SIGCONT)
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, f"the collector died ({child.returncode}): {err[-2000:]}"
    samples = [json.loads(line) for line in out.splitlines()]
    full = GROUPS * PARTITIONS
    # the stalls hit samples: some failed or left groups out...
    assert any(s["error"] or s["group_errors"] for s in samples)
    # ...each kept its own time: the timeout, half again for the last answers, and a metadata
    # request's own timeout at most
    assert max(s["seconds"] for s in samples) < 3 * TIMEOUT_S, max(s["seconds"] for s in samples)
    # and once the broker answers again, every group is back
    assert samples[-1]["rows"] == full and not samples[-1]["error"], samples[-3:]


def test_a_kafka_outage_costs_samples_within_their_deadline_and_then_recovers(stalling_kafka, tmp_path):
    """Kafka killed (SIGKILL: no goodbye to its clients) for a while, then started again on
    the same port with its data: `eventscope collect` keeps sampling, each failed sample
    takes about its timeout (not the client's default of minutes), health names the
    problem, and once Kafka is back every group is back without a restart."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSCOPE_")}
    env.update({"EVENTSCOPE_KAFKA_BOOTSTRAP": stalling_kafka.address, "EVENTSCOPE_KAFKA_TIMEOUT_S": str(TIMEOUT_S),
                "EVENTSCOPE_KAFKA_TOPICS": r"^s\d", "EVENTSCOPE_STORE": str(tmp_path / "store"),
                "EVENTSCOPE_COLLECT_INTERVAL_S": "1", "EVENTSCOPE_COLLECT_MAX_BACKOFF_S": "2"})
    log = open(tmp_path / "collect.log", "wb")
    child = subprocess.Popen([str(Path(sys.executable).with_name("eventscope")), "collect"],
                             env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        store = Store(tmp_path / "store")
        _wait_for(lambda: _healthy(store, since=None), 60, "the first good samples", child)
        down_at = pd.Timestamp.now(tz="UTC")
        stalling_kafka.kill()
        time.sleep(4 * TIMEOUT_S)
        up_at = pd.Timestamp.now(tz="UTC")
        stalling_kafka.restart()
        _wait_for(lambda: _healthy(store, since=up_at), 90, "good samples after the restart", child)
        lag = store.get("lag_latest")
        assert lag["group"].nunique() == GROUPS and len(lag) == GROUPS * PARTITIONS
    finally:
        child.send_signal(signal.SIGTERM)
        code = child.wait(30)
    assert code == 0, (tmp_path / "collect.log").read_text()[-3000:]
    health = store.read("health")
    outage = health[(health["sampled_at"] > down_at + pd.Timedelta(seconds=1)) & (health["sampled_at"] < up_at)]
    failed = outage[~outage["ok"]]
    assert set(failed["collector"]) >= {"kafka.offsets", "kafka.events"}, outage
    assert failed["error"].str.len().gt(0).all()
    # one failed sample of a collector takes its timeout (and a little), never a client default
    assert health["duration_ms"].max() < 3 * TIMEOUT_S * 1000, health.sort_values("duration_ms").tail(5)


def _healthy(store, since) -> bool:
    health = store.read("health", since=since)
    kafka = health[health["source"] == "kafka"]
    latest = kafka.drop_duplicates("collector", keep="last")
    return len(latest) >= 2 and bool(latest["ok"].all()) and len(store.get("lag_latest")) > 0


def _wait_for(check, seconds: float, what: str, child) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert child.poll() is None, f"the collector exited with {child.returncode}"
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {seconds:.0f} s")
