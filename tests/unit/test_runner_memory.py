"""The runner gives freed memory back between collectors, not only after a pass: on a big
cluster the transient peaks of one pass's samples (the Kafka offsets' 42,000 rows, the
Redis streams' 2,000) would otherwise add up, since glibc reuses little of one sample's
freed heap for the next."""
from __future__ import annotations

import gc
import subprocess
import sys

import pandas as pd

from eventscope import memory
from eventscope import runner as runner_module
from eventscope.cli import main
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


def test_a_collector_process_collects_cyclic_garbage_less_often_and_skips_what_its_imports_made(
        tmp_path, monkeypatch):
    """`eventscope collect` sets the garbage collector's thresholds and freezes what exists
    at its start; ``memory.tune_gc`` says why."""
    for name in ("EVENTSCOPE_KAFKA_BOOTSTRAP", "EVENTSCOPE_REDIS_URL", "EVENTSCOPE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    assert gc.get_threshold() != memory.GC_THRESHOLDS and gc.get_freeze_count() == 0
    assert main(["collect", "--once", "--store", str(tmp_path / "s")]) == 0
    assert gc.get_threshold() == memory.GC_THRESHOLDS
    assert gc.get_freeze_count() > 10_000  # the modules, classes and functions imported so far


def test_fewer_full_collections_run_with_the_collectors_thresholds():
    """The same allocations (an evaluation's worth of short-lived keys and rows, a few
    long-lived) run far fewer full collections with ``GC_THRESHOLDS`` than with Python's own."""
    def full_collections(thresholds) -> int:
        before = gc.get_threshold()
        gc.set_threshold(*thresholds)
        try:
            start = gc.get_stats()[2]["collections"]
            kept = []
            for step in range(20):
                rows = [(f"m{i}", [i]) for i in range(20_000)]  # short-lived containers
                kept.append(rows[::50])  # what survives a step (like an evaluator's state)
            return gc.get_stats()[2]["collections"] - start
        finally:
            gc.set_threshold(*before)
    default, tuned = full_collections((700, 10, 10)), full_collections(memory.GC_THRESHOLDS)
    assert default >= 5 and tuned * 5 <= default, (default, tuned)


def test_what_the_collector_froze_is_thawed_at_exit():
    """A frozen DuckDB connection outlives the interpreter's last collection, and DuckDB's
    bindings then print a leak report on every exit; ``tune_gc`` thaws it at exit."""
    script = ("from eventscope import memory\nfrom eventscope.query import _scanner\n"
              "scanner = _scanner()\nmemory.tune_gc()\nprint('done')\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "done"
    assert "leaked" not in run.stderr, run.stderr[:500]
