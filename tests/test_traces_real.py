"""Trace lookup on the real brokers: exactly the events the test saw being produced, in order.

The simulator runs the order pipeline on Kafka and Redis at once while the collector
tails both (assigned partitions from the lookback, XRANGE). The test wraps the
simulator's publish calls, so it knows every event each correlation ID produced
(dead-letter copies included) without asking eventscope. Then, for a sample of
correlation IDs on each broker, including dead-lettered ones, the index lookup must
return exactly those events, time-ordered, with the right outcome; the W3C trace ID
and an event ID must find the same chain; the CLI and the Traces page show it.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from eventscope.analysis import traces
from eventscope.config import load_config
from eventscope.runner import Runner, build_collectors
from eventscope.store import Store
from eventscope.trace_index import StoreTraceIndex
from eventscope.simulator import SimulatorConfig, run_simulation
from eventscope.simulator.kafka_bus import KafkaBus
from eventscope.simulator.redis_bus import RedisBus

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parent.parent


class Recorder:
    """Every event the simulator produced, per correlation ID, in production order."""

    def __init__(self):
        self.lock = threading.Lock()
        self.chains: dict[str, list[dict]] = defaultdict(list)
        self.trace_ids: dict[str, str] = {}

    def add(self, broker: str, topic: str, value: bytes | None, headers=None) -> None:
        try:
            envelope = json.loads(value)
        except (TypeError, ValueError):
            return
        if not isinstance(envelope, dict) or not envelope.get("correlation_id"):
            return
        with self.lock:
            self.chains[envelope["correlation_id"]].append(
                {"broker": broker, "topic": topic, "event_id": envelope["event_id"],
                 "at": pd.Timestamp(envelope["timestamp"]), "event_type": envelope["event_type"]})
            tp = (headers or {}).get("traceparent") if isinstance(headers, dict) else None
            if tp and envelope["correlation_id"] not in self.trace_ids:
                self.trace_ids[envelope["correlation_id"]] = tp.split("-")[1]


@pytest.fixture
def recorded(monkeypatch):
    rec = Recorder()
    kafka_publish, redis_publish, redis_dead = KafkaBus.publish, RedisBus.publish, RedisBus.dead_letter

    def kafka(self, topic, value, key=None, headers=None, **kw):
        rec.add("kafka", topic, value, headers)
        return kafka_publish(self, topic, value, key=key, headers=headers, **kw)

    def redis_(self, topic, value, key=None, headers=None):
        rec.add("redis", topic, value, headers)
        return redis_publish(self, topic, value, key=key, headers=headers)

    def redis_dlq(self, group, msg, exc, attempts):
        dlq = redis_dead(self, group, msg, exc, attempts)
        rec.add("redis", dlq, msg.value)
        return dlq

    monkeypatch.setattr(KafkaBus, "publish", kafka)
    monkeypatch.setattr(RedisBus, "publish", redis_)
    monkeypatch.setattr(RedisBus, "dead_letter", redis_dlq)
    return rec


def _key(e: dict) -> tuple:
    return (e["broker"], e["topic"], e["event_id"])


def _assert_same_chain(found: dict, expected: list[dict], cid: str) -> None:
    got = [(e["broker"], e["topic"], e["event_id"]) for e in found["events"]]
    assert sorted(got) == sorted(_key(e) for e in expected), f"{cid}: wrong events"
    assert len(set(got)) == len(got), f"{cid}: an event twice"
    times = pd.to_datetime([e["at"] for e in found["events"]], utc=True, format="ISO8601")
    assert times.is_monotonic_increasing, f"{cid}: not in time order"
    position = {k: i for i, k in enumerate(got)}
    # in order, to the resolution of the data: an event produced at a later millisecond comes later
    for a in expected:
        for b in expected:
            if a["at"] < b["at"] and "DLT" not in b["topic"] and ".dlq" not in b["topic"]:
                assert position[_key(a)] < position[_key(b)], f"{cid}: {a['topic']} after {b['topic']}"
    for dead in (e for e in expected if e["topic"].endswith((".DLT", ".dlq"))):
        original = next(e for e in expected if e["event_id"] == dead["event_id"] and e is not dead)
        assert position[_key(original)] < position[_key(dead)], f"{cid}: dead letter before its original"


def test_lookup_returns_exactly_the_produced_chain(tmp_path, kafka_bootstrap, redis_url, recorded, monkeypatch):
    prefix = f"tr{uuid.uuid4().hex[:6]}-"
    sim = SimulatorConfig(rate=8, duration=6, seed=11, prefix=prefix, payment_failure_rate=0.15,
                          inventory_failure_rate=0.2)
    results = {}
    threads = [threading.Thread(target=lambda b=b, kw=kw: results.update({b: run_simulation(sim, **kw)}))
               for b, kw in (("kafka", {"kafka_bootstrap": kafka_bootstrap}), ("redis", {"redis_url": redis_url}))]
    env = {"EVENTSCOPE_KAFKA_BOOTSTRAP": kafka_bootstrap, "EVENTSCOPE_REDIS_URL": redis_url,
           "EVENTSCOPE_KAFKA_TOPICS": "^" + prefix, "EVENTSCOPE_REDIS_STREAM_PATTERN": prefix + "*",
           "EVENTSCOPE_TRACES_LOOKBACK_S": "120", "EVENTSCOPE_TRACES_QUIET_S": "1",
           "EVENTSCOPE_STORE": str(tmp_path / "store")}
    cfg = load_config(env=env)
    store = Store(tmp_path / "store")
    runner = Runner(store, build_collectors(cfg), interval_s=1.0)
    collecting = threading.Thread(target=runner.run, kwargs={"duration_s": 120}, daemon=True)
    collecting.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert set(results) == {"kafka", "redis"}, "the simulation did not finish"
    time.sleep(4)  # a few more samples after the drain
    runner.stop_event.set()  # let the pass in progress finish before the clients are closed
    collecting.join(timeout=60)
    runner.close()

    index = StoreTraceIndex(store)
    lag = store.read("lag")
    later = pd.Timestamp.now(tz="UTC") + pd.Timedelta(minutes=1)
    rng = random.Random(7)
    checked = defaultdict(int)
    for broker in ("kafka", "redis"):
        chains = {cid: evs for cid, evs in recorded.chains.items() if evs[0]["broker"] == broker}
        dead = [cid for cid, evs in chains.items() if any(e["topic"].endswith((".DLT", ".dlq")) for e in evs)]
        full = [cid for cid, evs in chains.items() if any(e["event_type"] == "ShipmentCreated" for e in evs)]
        refunded = [cid for cid, evs in chains.items() if any(e["event_type"] == "PaymentRefunded" for e in evs)]
        assert dead and full, f"{broker}: the run produced no dead letter or no full chain"
        sample = rng.sample(full, min(6, len(full))) + rng.sample(dead, min(2, len(dead))) + refunded[:1]
        for cid in sample:
            expected = chains[cid]
            found = traces.from_rows(index.lookup(cid), lag=lag, now=later)
            assert found is not None, f"{broker} {cid}: not found"
            assert found["correlation_id"] == cid
            _assert_same_chain(found, expected, cid)
            want = "dead_lettered" if cid in dead else "completed"
            assert found["outcome"] == want, (cid, found["outcome"])
            by_trace = traces.from_rows(index.lookup(recorded.trace_ids[cid]), lag=lag, now=later)
            assert by_trace["events"] == found["events"], f"{cid}: the trace ID finds another chain"
            by_event = traces.from_rows(index.lookup(expected[-1]["event_id"]), lag=lag, now=later)
            assert by_event["events"] == found["events"]
            hops = found["hops"]
            assert len(hops) == len(expected) - 1  # every event after the first has its cause
            if cid in dead:
                dlq_hop = [h for h in hops if h["dead_letter"]]
                assert len(dlq_hop) == 1 and dlq_hop[0]["service"].endswith("payment-service")
            checked[broker] += 1
    assert checked["kafka"] >= 7 and checked["redis"] >= 7

    # the CLI on the same store: a dead-lettered chain by correlation ID, a full one by trace ID
    dead_cid = next(c for c, evs in recorded.chains.items()
                    if evs[0]["broker"] == "kafka" and evs[-1]["topic"].endswith(".DLT"))
    cli_env = dict(os.environ, **env)
    for some_id, cid in ((dead_cid, dead_cid), (recorded.trace_ids[sample[0]], sample[0])):
        proc = subprocess.run([sys.executable, "-m", "eventscope.cli", "trace", some_id, "--json"],
                              capture_output=True, text=True, env=cli_env, cwd=ROOT, timeout=60)
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["correlation_id"] == cid
        assert sorted((e["broker"], e["topic"], e["event_id"]) for e in doc["events"]) == \
            sorted(_key(e) for e in recorded.chains[cid])
    assert json.loads(subprocess.run([sys.executable, "-m", "eventscope.cli", "trace", dead_cid, "--json"],
                                     capture_output=True, text=True, env=cli_env, cwd=ROOT,
                                     timeout=60).stdout)["outcome"] == "dead_lettered"

    # the Traces page on the same store
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("EVENTSCOPE_DASHBOARD_COLLECT", "off")
    monkeypatch.delenv("EVENTSCOPE_KAFKA_BOOTSTRAP")
    monkeypatch.delenv("EVENTSCOPE_REDIS_URL")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/traces.py").run()
    at.text_input(key="trace_id").input(dead_cid).run()
    assert not at.exception, at.exception
    assert any("Died in" in e.value for e in at.error)
    timeline = [d.value for d in at.dataframe if "event_type" in d.value.columns][0]
    assert sorted(timeline["event_id"]) == sorted(e["event_id"] for e in recorded.chains[dead_cid])
