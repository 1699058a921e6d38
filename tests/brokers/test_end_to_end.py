"""Broker → collector → store → analysis, with the simulator on both real brokers."""
import threading
import time
import uuid

import pandas as pd
import pytest

from eventscope.analysis import lag as lag_analysis
from eventscope.analysis import traces
from eventscope.config import load_config
from eventscope.runner import Runner, build_collectors
from eventscope.store import Store
from eventscope.simulator import SimulatorConfig, run_simulation

pytestmark = pytest.mark.broker


def test_simulated_traffic_reaches_the_store(tmp_path, kafka_bootstrap, redis_url, kafka_ro_env, redis_ro_url):
    prefix = f"e2e{uuid.uuid4().hex[:5]}-"
    sim = SimulatorConfig(rate=8, duration=6, seed=3, prefix=prefix, payment_failure_rate=0.2,
                          schedule=[(2.0, {"stall": {"analytics-service"}})])
    stop = threading.Event()
    results = {}
    threads = [threading.Thread(target=lambda b=b, kw=kw: results.update({b: run_simulation(sim, **kw)}))
               for b, kw in (("kafka", {"kafka_bootstrap": kafka_bootstrap}),
                             ("redis", {"redis_url": redis_url}))]
    for t in threads:
        t.start()
    # eventscope connects with read-only rights, as in production (tests/brokers/test_read_only.py)
    cfg = load_config(env={**kafka_ro_env, "EVENTSCOPE_REDIS_URL": redis_ro_url,
                           "EVENTSCOPE_KAFKA_TOPICS": "^" + prefix, "EVENTSCOPE_REDIS_STREAM_PATTERN": prefix + "*"})
    store = Store(tmp_path)
    runner = Runner(store, build_collectors(cfg), interval_s=1.0)
    runner.stop_event = stop
    # collect until the simulation has finished (group assignment can take a while on a busy
    # machine), then a few more samples; a fixed window lost the last events under load
    collecting = threading.Thread(target=runner.run, kwargs={"duration_s": 120}, daemon=True)
    collecting.start()
    for t in threads:
        t.join(timeout=90)
    time.sleep(4)
    stop.set()  # let the pass in progress finish before the clients are closed
    collecting.join(timeout=60)
    runner.close()
    assert set(results) == {"kafka", "redis"}

    events = store.read("events")
    for broker in ("kafka", "redis"):
        mine_all = events[events["broker"] == broker]
        mine = mine_all[~mine_all["dead_letter"]]
        published = results[broker]["published"]
        assert (mine["event_type"] == "OrderPlaced").sum() == published["OrderPlaced"]
        assert (mine["event_type"] == "ShipmentCreated").sum() == published.get("ShipmentCreated", 0)
        assert mine_all["dead_letter"].sum() == sum(results[broker]["dead_lettered"].values())
    health = store.read("health")
    assert health["ok"].tail(3).all()

    latest = lag_analysis.latest_lag(store.read("lag"))
    analytics = latest[latest["group"] == prefix + "analytics-service"]
    assert set(analytics["broker"]) == {"kafka", "redis"}
    assert analytics["lag"].sum() > 0, "the stalled consumer's lag must show"
    payment = latest[latest["group"] == prefix + "payment-service"]
    assert (payment["lag"].fillna(0) == 0).all()

    shipped = events[(events["event_type"] == "ShipmentCreated") & (events["broker"] == "kafka")]
    cid = shipped["correlation_id"].iloc[0]
    # A shipped order's trace is exactly its four events, in causal order: each service emits
    # after it consumed the previous event, so the envelope times (which order a trace) grow
    # along the chain, and a correlation ID (a UUID4) names one order on one broker only.
    # Judged five minutes on and without lag samples, nothing of it can still be waiting;
    # only a declined payment dead-letters, and that order never ships: it completed.
    found = traces.find(events, cid, now=pd.Timestamp.now(tz="UTC") + pd.Timedelta(minutes=5))
    assert [(e["event_type"], e["broker"]) for e in found["events"]] == [
        ("OrderPlaced", "kafka"), ("PaymentCharged", "kafka"), ("InventoryReserved", "kafka"),
        ("ShipmentCreated", "kafka")]
    assert found["outcome"] == "completed"
    assert [(h["from_topic"], h["to_topic"]) for h in found["hops"]] == [
        (prefix + "orders", prefix + "payments"), (prefix + "payments", prefix + "inventory"),
        (prefix + "inventory", prefix + "shipments")]
