"""The runner gives freed memory back between collectors, not only after a pass: on a big
cluster the transient peaks of one pass's samples (the Kafka offsets' 42,000 rows, the
Redis streams' 2,000) would otherwise add up, since glibc reuses little of one sample's
freed heap for the next."""
from __future__ import annotations

import pandas as pd

from eventscope import runner as runner_module
from eventscope.runner import Runner
from eventscope.store import Store


class Sampling:
    def __init__(self, name: str, calls: list):
        self.name, self.source, self.calls = name, "kafka", calls

    def collect(self) -> dict:
        self.calls.append(self.name)
        return {"topics": pd.DataFrame([{"sampled_at": pd.Timestamp.now(tz="UTC"), "source": "kafka",
                                         "broker": "kafka", "topic": f"t-{self.name}", "partitions": 1}])}


def test_memory_is_released_after_each_collector_of_a_pass_and_after_the_restore(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runner_module.memory, "release", lambda: calls.append("release"))
    runner = Runner(Store(tmp_path), [Sampling("a", calls), Sampling("b", calls), Sampling("c", calls)],
                    interval_s=60)
    assert calls == ["release"]  # the restore read what the store held: given back at once
    calls.clear()
    runner.run_once(force=True)
    assert calls == ["a", "release", "b", "release", "c", "release", "release"]
    runner.close()
