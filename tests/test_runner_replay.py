"""The runner (health, backoff, one writer per store) and the replay source."""
import json
import threading
import time

import pandas as pd
import pytest

from eventscope import schemas
from eventscope.config import load_config
from eventscope.replay import ReplaySource, write_recording
from eventscope.runner import Runner, StoreLock, build_collectors, ensure_background_collector
from eventscope.store import Store

T0 = pd.Timestamp("2026-11-01T00:00:00Z")


class Flaky:
    name, source = "flaky", "test"

    def __init__(self, fail_times):
        self.fail_times, self.calls = fail_times, 0

    def collect(self):
        self.calls += 1
        if self.calls <= self.fail_times:
            raise ConnectionError("broker unreachable\nsecond line")
        return {"topics": schemas.conform("topics", [{"sampled_at": pd.Timestamp.now(tz="UTC"),
                                                      "source": "test", "broker": "kafka", "topic": "t",
                                                      "partition": 0, "start": 0, "end": self.calls}])}

    def close(self):
        pass


def test_failures_become_health_rows_and_back_off(tmp_path):
    flaky = Flaky(fail_times=2)
    runner = Runner(Store(tmp_path), [flaky], interval_s=10, max_backoff_s=60)
    first = runner.run_once(force=True).iloc[0]
    assert not first["ok"] and first["error"] == "ConnectionError: broker unreachable second line"
    assert pd.isna(first["last_success"])
    assert runner.run_once().empty  # backing off: not due for 20 s
    assert runner.states[id(flaky)].failures == 1
    runner.run_once(force=True)
    ok = runner.run_once(force=True).iloc[0]
    assert ok["ok"] and ok["rows"] == 1 and not pd.isna(ok["last_success"])
    health = Store(tmp_path).read("health")
    assert list(health["ok"]) == [False, False, True]


def test_a_collect_call_that_never_returns_costs_only_its_own_samples(tmp_path, monkeypatch):
    """A client library waiting for an answer that never comes (seen: futures of a dropped
    Kafka admin client) held the runner, and so every collector, until the process was
    killed. The call runs in its collector's own thread with a watchdog: that collector's
    samples fail and say why, the others go on, a late result is dropped, and the collector
    works again once its call returns."""
    import eventscope.runner as runner_module
    monkeypatch.setattr(runner_module, "WATCHDOG_S", 0.3)
    release = threading.Event()

    class Hangs(Flaky):
        name = "hangs"

        def collect(self):
            if self.calls == 1:
                release.wait(30)  # the second call hangs until the test lets it go
            frames = super().collect()
            frames["topics"]["topic"] = "hung"
            return frames
    hangs, other = Hangs(fail_times=0), Flaky(fail_times=0)
    runner = Runner(Store(tmp_path), [hangs, other], interval_s=10)
    assert runner.run_once(force=True)["ok"].all()
    started = time.monotonic()
    stuck = runner.run_once(force=True).set_index("collector")
    assert time.monotonic() - started < 2
    assert not stuck.loc["hangs", "ok"] and stuck.loc["hangs", "error"].startswith(
        "CollectorStuck: collect() did not return within 0.3 s")
    assert stuck.loc["flaky", "ok"]  # the other collector was sampled all the same
    still = runner.run_once(force=True).set_index("collector")
    assert "has not returned" in still.loc["hangs", "error"] and still.loc["flaky", "ok"]
    assert hangs.calls == 1  # still inside its second call: no third one piled up behind it
    release.set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not runner.run_once(force=True).set_index("collector").loc["hangs", "ok"]:
        time.sleep(0.05)
    health = Store(tmp_path).read("health")
    assert health.loc[health["collector"] == "hangs", "ok"].tolist()[-1] and hangs.calls >= 3
    # the hung call's result (end = 2) came too late and was never stored
    topics = Store(tmp_path).read("topics")
    assert 2 not in topics.loc[topics["topic"] == "hung", "end"].tolist() and len(topics) > 4
    runner.close()


@pytest.mark.broker
def test_unreachable_kafka_is_reported_not_raised(tmp_path):
    from eventscope.localbrokers import free_port
    cfg = load_config(env={"EVENTSCOPE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
                           "EVENTSCOPE_KAFKA_TIMEOUT_S": "1", "EVENTSCOPE_STORE": str(tmp_path)})
    runner = Runner(Store(tmp_path), build_collectors(cfg), interval_s=1)
    health = runner.run_once(force=True)
    runner.close()
    assert len(health) == 2 and not health["ok"].any()
    assert all(e.startswith("KafkaException") for e in health["error"])


def test_only_one_writer_per_store(tmp_path):
    first, second = StoreLock(tmp_path), StoreLock(tmp_path)
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()


def make_recording(path):
    lag = [{"sampled_at": T0 + pd.Timedelta(seconds=s), "source": "kafka", "broker": "kafka",
            "group": "g", "topic": "orders", "partition": 0, "committed": s, "end": 2 * s, "lag": s}
           for s in range(0, 100, 10)]
    topics = [{"sampled_at": r["sampled_at"], "source": "kafka", "broker": "kafka", "topic": "orders",
               "partition": 0, "start": 0, "end": r["end"]} for r in lag]
    events = [{"observed_at": T0 + pd.Timedelta(seconds=s), "source": "kafka", "broker": "kafka",
               "topic": "orders", "partition": 0, "offset": str(s), "at": T0 + pd.Timedelta(seconds=s),
               "event_type": "OrderPlaced", "correlation_id": f"c{s}", "trace_id": "ab" * 16}
              for s in range(0, 100, 10)]
    write_recording({"lag": schemas.conform("lag", lag), "topics": schemas.conform("topics", topics),
                     "events": schemas.conform("events", events), "dlq": schemas.empty("dlq")},
                    path, {"note": "test"})


def test_replay_backfills_then_plays_live_and_loops_cleanly(tmp_path):
    make_recording(tmp_path / "rec")
    clock = {"now": 1_000_000.0}
    replay = ReplaySource(tmp_path / "rec", speed=1.0, backfill=0.5, clock=lambda: clock["now"])
    first = replay.collect()
    assert list(first["lag"]["committed"]) == [0, 10, 20, 30, 40]  # half of a 91 s period
    wall = pd.Timestamp(clock["now"], unit="s", tz="UTC")
    assert first["lag"]["sampled_at"].max() <= wall
    assert (first["lag"]["source"] == "replay").all()
    clock["now"] += 45
    second = replay.collect()
    assert list(second["lag"]["committed"]) == [50, 60, 70, 80, 90]
    clock["now"] += 91  # one whole period later: the second cycle
    third = replay.collect()
    cycle2 = third["lag"][third["lag"]["sampled_at"] > second["lag"]["sampled_at"].max()]
    assert cycle2["committed"].min() > 90, "a loop must not look like a rewind"
    assert third["events"]["correlation_id"].str.endswith("~1").any()
    assert third["events"]["trace_id"].str.len().eq(32).all()


def test_sample_data_replays_into_every_frame(tmp_path):
    cfg = load_config(env={"EVENTSCOPE_STORE": str(tmp_path)})
    (collector,) = build_collectors(cfg)
    out = collector.collect()
    for name in ("lag", "dlq", "events", "topics"):
        assert len(out[name]) > 0, f"sample data has no {name} rows"
    assert set(out["lag"]["kind"]) == {"kafka", "redis", "rabbitmq"} and out["dlq"]["depth"].max() > 0
    assert len(out["consumers"]) > 0
    # RabbitMQ's queues and routing replay too: the verdicts and the flow graph need them
    assert set(out["queues"]["kind"]) == {"rabbitmq"} and out["queues"]["is_dlq"].any()
    assert set(out["bindings"]["route"]) == {"binding", "dlx"}
    assert (out["dlq"]["kind"] == "rabbitmq").any()
    meta = json.loads((cfg.replay_dir() / "meta.json").read_text())
    assert meta["incident"]


def test_background_collector_is_one_per_process_and_store(tmp_path):
    cfg = load_config(env={"EVENTSCOPE_STORE": str(tmp_path)})
    runners = []
    threads = [threading.Thread(target=lambda: runners.append(ensure_background_collector(cfg)))
               for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(r) for r in runners}) == 1 and runners[0] is not None
    assert runners[0].running()
    # a second process cannot collect into the same store: the child holds its lock
    lock, deadline = StoreLock(tmp_path), time.monotonic() + 60
    while time.monotonic() < deadline and lock.acquire():
        lock.release()
        time.sleep(0.2)
    assert not lock.acquire(), "the collector process never took the store's lock"
    runners[0].stop()
    assert not runners[0].running()


def test_a_restarted_replay_starts_over_but_live_data_is_never_wiped(tmp_path):
    import eventscope.runner as runner_module
    replay_store, live_store = tmp_path / "replay", tmp_path / "live"
    Store(replay_store).append("health", schemas.conform("health", [
        {"sampled_at": pd.Timestamp.now(tz="UTC"), "source": "replay", "collector": "replay", "ok": True}]))
    Store(live_store).append("health", schemas.conform("health", [
        {"sampled_at": pd.Timestamp.now(tz="UTC"), "source": "kafka", "collector": "kafka.offsets", "ok": True}]))
    for store_dir in (replay_store, live_store):
        cfg = load_config(env={"EVENTSCOPE_STORE": str(store_dir), "EVENTSCOPE_COLLECT_INTERVAL_S": "30"})
        child = ensure_background_collector(cfg)
        store = Store(store_dir)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (store.read("health")["source"] == "replay").any():
            time.sleep(0.1)  # its first sample, then stop
        child.stop()
        runner_module._background.pop(str(store_dir.resolve()), None)
    assert set(Store(replay_store).read("health")["source"]) == {"replay"}
    assert len(Store(replay_store).read("health")) == 1  # only the new run's first sample
    assert set(Store(live_store).read("health")["source"]) == {"kafka", "replay"}


class Counting(Flaky):
    def __init__(self, name, interval_s=None):
        super().__init__(fail_times=0)
        self.name = name
        if interval_s is not None:
            self.interval_s = interval_s


def test_a_collector_with_its_own_interval_is_due_on_that_interval(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    full, tail = Counting("full"), Counting("tail", interval_s=1.0)
    runner = Runner(Store(tmp_path), [full, tail], interval_s=5.0)
    for _ in range(10):  # ten simulated seconds, a pass every second
        runner.run_once()
        clock[0] += 1.0
    assert tail.calls == 10
    assert full.calls == 2  # at 0 s and 5 s


@pytest.mark.broker
def test_live_collectors_read_events_between_full_samples(tmp_path, redis_url, kafka_bootstrap):
    cfg = load_config(env={"EVENTSCOPE_REDIS_URL": redis_url, "EVENTSCOPE_KAFKA_BOOTSTRAP": kafka_bootstrap,
                           "EVENTSCOPE_REDIS_STREAMS": "tailme", "EVENTSCOPE_KAFKA_TOPICS": "^tailme$"})
    collectors = build_collectors(cfg)
    try:
        intervals = {c.name: getattr(c, "interval_s", None) for c in collectors}
        assert intervals == {"kafka.offsets": None, "kafka.events": 1.0, "redis.streams": None,
                             "redis.events": 1.0}
        import redis as redis_lib
        client = redis_lib.Redis.from_url(redis_url)
        client.delete("tailme")
        client.xadd("tailme", {"envelope": json.dumps({"event_type": "A", "event_id": "e1"})})
        redis_full = next(c for c in collectors if c.name == "redis.streams")
        tail = next(c for c in collectors if c.name == "redis.events")
        assert list(redis_full.collect()["events"]["event_id"]) == ["e1"]
        assert tail.collect()["events"].empty  # nothing new since the full sample
        client.xadd("tailme", {"envelope": json.dumps({"event_type": "B", "event_id": "e2"})})
        frames = tail.collect()
        assert set(frames) == {"events"} and list(frames["events"]["event_id"]) == ["e2"]
        assert redis_full.collect()["events"].empty  # the tail moved the shared position on
    finally:
        for c in collectors:
            c.close()


def test_a_dead_dashboard_collector_is_started_again_and_the_sidebar_says_so(tmp_path):
    """The collector process dies as librdkafka's abort() would kill it: the dashboard's
    watcher logs it, starts a new one (which collects again), and stops for good on stop()."""
    import os
    import signal
    import sys

    from eventscope.runner import ChildCollector
    store_dir = tmp_path / "store"
    env = dict(os.environ, EVENTSCOPE_STORE=str(store_dir), EVENTSCOPE_COLLECT_INTERVAL_S="1")
    for name in ("EVENTSCOPE_KAFKA_BOOTSTRAP", "EVENTSCOPE_REDIS_URL", "EVENTSCOPE_CONFIG"):
        env.pop(name, None)
    store_dir.mkdir()
    child = ChildCollector([sys.executable, "-m", "eventscope", "collect"], env, store_dir / "collector.log",
                           restart_s=0.2)
    try:
        def samples() -> int:
            return len(Store(store_dir).read("health"))

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and samples() == 0:
            time.sleep(0.1)
        first = child.process
        assert samples() > 0 and child.restarts == 0 and child.last_exit is None
        first.send_signal(signal.SIGABRT)
        while time.monotonic() < deadline and not (child.restarts == 1 and child.running()):
            time.sleep(0.05)
        assert child.process is not first and child.running() and child.restarts == 1
        assert "exited 1 time(s), last with signal 6 (SIGABRT)" in child.describe()
        assert "exited with signal 6 (SIGABRT); starting it again" in (store_dir / "collector.log").read_text()
        before = samples()
        while time.monotonic() < deadline and samples() <= before:
            time.sleep(0.1)
        assert samples() > before, "the new collector process wrote nothing"
    finally:
        child.stop()
    time.sleep(0.5)
    assert not child.running() and child.restarts == 1  # stopped on purpose: not started again
