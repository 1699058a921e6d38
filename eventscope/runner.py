"""The collector runner: samples every collector on an interval into the store.

Each collector runs in turn; a failure is recorded as a ``health`` row (never a
crash) and that collector backs off exponentially (interval × 2^failures, capped)
while the others keep going. ``eventscope collect`` runs it in the foreground; the
dashboard starts one in a process of its own per server process, and starts it again if
it dies (:class:`ChildCollector`). An exclusive lock
file in the store directory makes sure only one runner writes a store at a time:
a dashboard pointed at a store that ``eventscope collect`` already fills just reads.
"""
from __future__ import annotations

import atexit
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import queue
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from eventscope import mask, memory, schemas
from eventscope import collectors as collectors_registry
from eventscope.collectors import BuildContext, unique_names
from eventscope.collectors.otlp.files import OtlpFilesCollector
from eventscope.alerting import build_evaluator
from eventscope.analysis.alerts import LAG_WINDOW_S
from eventscope.config import Config
from eventscope.decode import Decoder
from eventscope.files import open_private
from eventscope.recorder import Recorder
from eventscope.replay import ReplaySource
from eventscope.store import Retention, Store

log = logging.getLogger("eventscope.runner")
HEALTH_PENDING_MAX = 10_000
WATCHDOG_S = 60.0  # a collect() running longer than this (or 4 × its timeout) is left behind


class _Worker:
    """One daemon thread that runs calls in order: a call that never returns holds only this
    thread, and never the process's exit (a ThreadPoolExecutor's threads are joined at exit)."""

    def __init__(self, name: str):
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def submit(self, call) -> Future:
        future: Future = Future()
        self._calls.put((call, future))
        return future

    def stop(self) -> None:
        self._calls.put(None)

    def _loop(self) -> None:
        while (item := self._calls.get()) is not None:
            call, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting runner
                future.set_exception(exc)


class CollectorStuck(Exception):
    """A collector's ``collect()`` has not returned within its watchdog time."""


class StoreWriteFailed(Exception):
    """A collector's sample was read but could not be stored (a full disk, a lost mount)."""


@dataclass
class _State:
    failures: int = 0
    next_run: float = 0.0
    last_success: pd.Timestamp | None = None
    last_error: str = ""


@dataclass
class Runner:
    """Runs collectors into a store, one sample per interval."""

    store: Store
    collectors: list
    interval_s: float = 5.0
    max_backoff_s: float = 60.0
    stop_event: threading.Event = field(default_factory=threading.Event)
    evaluator: object | None = None  # alerting.AlertEvaluator: rules evaluated on every sample
    stall_after_s: float = 60.0  # a partition whose committed offset has not moved this long stalls

    def __post_init__(self):
        self.recorder = Recorder(self.store, window_s=LAG_WINDOW_S, stuck_after_s=self.stall_after_s)
        self.states = {id(c): _State() for c in self.collectors}
        self.samples = 0
        self._evaluated = float("-inf")
        self.reading: dict[tuple[str, str], list[dict]] = {}  # (source, broker) -> its reading_state rows
        self._pending_health: list[pd.DataFrame] = []
        self._workers: dict[int, _Worker] = {}  # one thread per collector (owner) that samples
        self._busy: dict[int, tuple] = {}  # owner -> (future, since) of a collect() past its watchdog
        self._restore_reading()
        memory.release()  # the events read to restore are gone: not the collector's floor from now on

    # -- reading state: where the event readers stand, saved with what they stored --------
    def _readers(self) -> list:
        """The collectors that read events and can save where they stand (once each)."""
        owners = {}
        for collector in self.collectors:
            owner = getattr(collector, "parent", collector)
            if hasattr(owner, "reading_state") and hasattr(owner, "restore"):
                owners[id(owner)] = owner
        return list(owners.values())

    def _restore_reading(self) -> None:
        """Each reader goes on where the last writer of this store stopped: from its saved
        positions and books, moved past the events stored after that save (a run stopped
        between storing its events and saving its state), so no message is stored twice."""
        readers = self._readers()
        if not readers:
            return
        saved = self.store.get("reading_state")
        for reader in readers:
            mine = saved[(saved["source"] == reader.source) & (saved["broker"] == reader.broker)]
            self.reading[(reader.source, reader.broker)] = mine.to_dict("records")
            later = self._stored_since(reader, mine)
            if not mine.empty or not later.empty:
                reader.restore(mine, later)

    def _stored_since(self, reader, mine: pd.DataFrame) -> pd.DataFrame:
        """The events ``reader`` stored after its saved state ``mine`` (the rows a restore
        moves past)."""
        if not mine.empty:
            since = mine["saved_at"].min() - pd.Timedelta(seconds=60)
        else:  # stopped before its first save: what it stored is within the window it reads first
            since = pd.Timestamp.now(tz="UTC") - pd.Timedelta(
                seconds=(getattr(reader, "lookback_s", None) or 3600.0) + 60)
        return self.store.read("events", since=since, where={"source": reader.source, "broker": reader.broker},
                               columns=["topic", "partition", "offset", "dead_letter", "dlq_reason",
                                        "original_topic", "broker_at"])

    def _rewind(self, collector) -> None:
        """After a failed store (a full disk): the reader goes back to what the store holds,
        so the events it read and could not store are read again, not lost."""
        owner = getattr(collector, "parent", collector)
        if not hasattr(owner, "rewind") or (owner.source, owner.broker) not in self.reading:
            return
        mine = schemas.conform("reading_state", self.reading[(owner.source, owner.broker)])
        try:
            owner.rewind(mine, self._stored_since(owner, mine))
        except Exception as exc:  # noqa: BLE001 - the reader keeps its place; the loss is logged
            log.warning("%s/%s could not go back to its stored position: %s",
                        owner.source, owner.name, one_line(exc))

    def _save_reading(self, collector) -> None:
        owner = getattr(collector, "parent", collector)
        if not (hasattr(owner, "reading_state") and hasattr(owner, "restore")):
            return
        kind = getattr(owner, "kind", None)
        self.reading[(owner.source, owner.broker)] = [
            {**row, "kind": kind} if kind else row for row in owner.reading_state(pd.Timestamp.now(tz="UTC"))]
        rows = [row for part in self.reading.values() for row in part]
        self.store.put("reading_state", schemas.conform("reading_state", rows))

    def run_once(self, force: bool = False) -> pd.DataFrame:
        """One pass over the collectors that are due; returns their health rows."""
        health = []
        for collector in self.collectors:
            state = self.states[id(collector)]
            if not force and time.monotonic() < state.next_run:
                continue
            health.append(self._run_one(collector, state))
            # what this sample freed goes back before the next collector's (a few ms): glibc
            # reuses little of one sample's freed heap for the next, so without it the peaks of
            # all collectors of a pass add up (big cluster: +40 MiB by the pass's end)
            memory.release()
        frame = schemas.conform("health", health)
        self._append_health(frame)
        self.samples += 1
        # Rules are evaluated once per interval, not after every short event read.
        if self.evaluator is not None and health and (
                force or time.monotonic() - self._evaluated >= self.interval_s * 0.9):
            self._evaluated = time.monotonic()
            try:
                self.evaluator.evaluate()
            except Exception as exc:  # alerting must never stop collection: log and go on
                log.warning("alert evaluation failed: %s", one_line(exc))
        memory.release()  # what this pass freed goes back to the OS, not to its high-water mark
        return frame

    def _append_health(self, frame: pd.DataFrame) -> None:
        """Store health rows; rows a failing store refused wait for the next pass (at most
        ``HEALTH_PENDING_MAX``), so a full disk costs samples, not the collector."""
        pending = pd.concat([*self._pending_health, frame], ignore_index=True) if self._pending_health else frame
        try:
            self.store.append("health", pending)
            self._pending_health = []
        except Exception as exc:  # noqa: BLE001 - never stops collection
            self._pending_health = [pending.tail(HEALTH_PENDING_MAX)]
            log.warning("storing health rows failed (kept for the next sample): %s", one_line(exc))

    def _collect(self, collector) -> dict:
        """``collector.collect()`` in its owner's own thread, waited for at most its watchdog
        time (``WATCHDOG_S``, or four times the collector's own timeout when longer): a call that
        never returns (a client library waiting for an answer that will not come) costs that
        collector its samples, and says so, instead of stopping every collector. Its result,
        should it come later, is dropped, and an event reader goes back to what the store holds."""
        owner = getattr(collector, "parent", collector)
        busy = self._busy.get(id(owner))
        if busy is not None:
            future, since = busy
            if not future.done():
                raise CollectorStuck(f"its collect() called {time.monotonic() - since:.0f} s ago has not returned")
            del self._busy[id(owner)]
            self._rewind(collector)  # what that late call read was never stored
        worker = self._workers.get(id(owner))
        if worker is None:
            worker = self._workers[id(owner)] = _Worker(f"eventscope-{owner.name}")
        future = worker.submit(collector.collect)
        limit = max(WATCHDOG_S, 4 * (getattr(owner, "timeout_s", None) or 0.0))
        try:
            return future.result(timeout=limit)
        except FutureTimeout:
            self._busy[id(owner)] = (future, time.monotonic() - limit)
            raise CollectorStuck(f"collect() did not return within {limit:g} s") from None

    def _run_one(self, collector, state: _State) -> dict:
        started = time.monotonic()
        now = pd.Timestamp.now(tz="UTC")
        rows, error = 0, ""
        try:
            frames = tag_kind(self._collect(collector), getattr(collector, "kind", None))
            try:
                rows = self.recorder.record(frames)
                self._save_reading(collector)  # after its events are stored: see _restore_reading
            except Exception as exc:
                raise StoreWriteFailed(f"the store refused this sample: {one_line(exc)}") from exc
            state.failures = 0
            state.last_success = now
            state.next_run = started + (getattr(collector, "interval_s", None) or self.interval_s)
        except Exception as exc:  # a collector's failure is data, not a crash
            error = one_line(exc)
            if isinstance(exc, StoreWriteFailed):
                self._rewind(collector)
            state.failures += 1
            state.last_error = error
            backoff = min(self.max_backoff_s, self.interval_s * 2 ** state.failures)
            state.next_run = started + backoff
            log.warning("collector %s/%s failed (retry in %.0f s): %s",
                        collector.source, collector.name, backoff, error)
        return {"sampled_at": now, "source": collector.source, "collector": collector.name,
                "ok": not error, "error": error, "duration_ms": (time.monotonic() - started) * 1000,
                "rows": rows, "last_success": state.last_success}

    def run(self, duration_s: float | None = None, parent: int | None = None) -> None:
        """Loop until ``stop_event`` is set, ``duration_s`` has passed, or process ``parent``
        (the dashboard that started this collector) is gone."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not self.stop_event.is_set():
            if parent is not None and os.getppid() != parent:
                log.info("the dashboard that started this collector is gone: stopping")
                break
            self.run_once()
            if deadline is not None and time.monotonic() >= deadline:
                break
            due = min(self.states[id(c)].next_run for c in self.collectors)
            wait = max(0.02, min(due - time.monotonic(), self.interval_s))
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            self.stop_event.wait(wait)

    def status(self) -> list[dict]:
        """Per collector: failures in a row, last success and last error."""
        return [{"source": c.source, "collector": c.name, "failures": s.failures,
                 "last_success": s.last_success, "last_error": s.last_error}
                for c in self.collectors for s in [self.states[id(c)]]]

    def close(self) -> None:
        """Stop the loop and close every collector's client."""
        self.stop_event.set()
        for worker in self._workers.values():
            worker.stop()
        if self.evaluator is not None:
            self.evaluator.close()
        for collector in self.collectors:
            try:
                collector.close()
            except Exception as exc:  # closing is best effort; say so in the log
                log.info("closing %s failed: %s", collector.name, one_line(exc))


def tag_kind(frames: dict, kind: str | None) -> dict:
    """Every row a source wrote gets its kind (``kafka``, ``redis``, ...): the source's
    ``broker`` column holds its cluster's name, which says nothing of what it is."""
    if kind:
        for frame in frames.values():
            if "kind" in frame.columns and "broker" in frame.columns:
                frame["kind"] = pd.array([kind] * len(frame), dtype="string")
    return frames


def one_line(exc: BaseException) -> str:
    """An exception as one short line: ``Type: message``."""
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:300]


def open_store(config: Config) -> Store:
    """The store the config points at, with its retention."""
    return Store(config.store_dir, Retention(max_age_s=config.store.retention_hours * 3600,
                                             max_rows=config.store.max_rows,
                                             raw_window_s=config.store.raw_window_s))


def build_runner(config: Config, store: Store, collectors: list) -> Runner:
    """The runner for a config: its collectors, interval, backoff and alert evaluator."""
    return Runner(store, collectors, interval_s=config.collect.interval_s,
                  max_backoff_s=config.collect.max_backoff_s, evaluator=build_evaluator(config, store),
                  stall_after_s=config.alerts.stall_after_s)


def source_decoders(config: Config) -> dict:
    """The decoder of each source with a Schema Registry of its own (``[[schema_registry.clusters]]``),
    and under ``None`` everyone else's (with the section's own registry, when set)."""
    section = config.schema_registry
    if not section.configured and not section.clusters:
        return {None: Decoder(config.decode)}
    from eventscope.registry_client import SchemaRegistryDecoder  # ~25 MiB of imports: only when configured
    default = Decoder(config.decode, registry=SchemaRegistryDecoder(section) if section.configured else None)
    decoders: dict = {None: default}
    for cluster in section.clusters:
        decoder = Decoder(config.decode, registry=SchemaRegistryDecoder(cluster))
        decoders.update({name: decoder for name in cluster.sources})
    return decoders


def build_collectors(config: Config) -> list:
    """Collectors for the configured sources (each kind's from its registered builder), or the
    sample-data replay when none is; then the OTLP span reader, when files are given."""
    mask.configure(config.mask.enabled, config.mask.fields)
    decoders = source_decoders(config)
    context = BuildContext(decoder=decoders[None], lookback_s=config.traces.lookback_s,
                           sample_ratio=config.traces.sample_ratio,
                           payload_max_chars=config.collect.payload_max_chars,
                           interval_s=config.collect.interval_s,
                           events_interval_s=min(config.traces.interval_s, config.collect.interval_s),
                           trace_globs={"kafka": config.traces.kafka_topics, "redis": config.traces.redis_streams})
    collectors = [c for source in config.all_sources()
                  for c in collectors_registry.build(source.kind, source.name, source.settings, replace(
                      context, decoder=decoders.get(source.name, decoders[None])))]
    if not collectors:
        collectors.append(ReplaySource(config.replay_dir(), speed=config.replay.speed, loop=config.replay.loop))
    if config.traces.otlp_files:
        collectors.append(OtlpFilesCollector(config.traces.otlp_files))
    return unique_names(collectors)


class StoreLock:
    """An exclusive, non-blocking lock on a store: one writer per store."""

    def __init__(self, store_dir: Path):
        Path(store_dir).mkdir(mode=0o700, parents=True, exist_ok=True)  # as the store makes it
        self.path = Path(store_dir) / ".collector.lock"
        self.handle = None

    def acquire(self) -> bool:
        """True if this process now owns the store's writing."""
        handle = open_private(self.path)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self.handle = handle
        return True

    def release(self) -> None:
        """Give up the lock."""
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


class ChildCollector:
    """``eventscope collect`` in a process of its own, started by the dashboard.

    A separate process, not a thread: a big cluster's sample takes a second of CPU, and in
    the dashboard's process it would hold the interpreter's lock while pages render. It
    stops when the dashboard does (it watches its parent), and takes the store's lock like
    any collector. If it dies (a client library that aborts the process, the OOM killer),
    a watcher thread says so in its log and starts it again after a pause that doubles with
    each death in a row (``restart_s`` up to ``max_restart_s``; a run of ten minutes
    resets it); the sidebar shows how often that happened."""

    def __init__(self, command: list[str], env: dict, log_path: Path,
                 restart_s: float = 5.0, max_restart_s: float = 300.0):
        self.command, self.env, self.log_path = command, env, log_path
        self.restart_s, self.max_restart_s = restart_s, max_restart_s
        self.restarts = 0
        self.last_exit: tuple[int, pd.Timestamp] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.process = self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="eventscope-collector-watch", daemon=True)
        self._watcher.start()

    def _spawn(self) -> subprocess.Popen:
        with open_private(self.log_path, "ab") as log_file:
            return subprocess.Popen(self.command, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=log_file, stderr=subprocess.STDOUT)

    def _watch(self) -> None:
        pause = self.restart_s
        while not self._stopping.is_set():
            started = time.monotonic()
            code = self.process.wait()
            if self._stopping.is_set():
                return
            self.last_exit = (code, pd.Timestamp.now(tz="UTC"))
            if time.monotonic() - started >= 600:
                pause = self.restart_s
            with open_private(self.log_path, "a", encoding="utf-8") as log_file:
                log_file.write(f"{self.last_exit[1]:%Y-%m-%d %H:%M:%S} the collector process exited "
                               f"with {describe_exit(code)}; starting it again in {pause:g} s\n")
            if self._stopping.wait(pause):
                return
            pause = min(self.max_restart_s, pause * 2)
            with self._lock:
                if self._stopping.is_set():
                    return
                self.process = self._spawn()
                self.restarts += 1

    def running(self) -> bool:
        """True while the collector process runs."""
        return self.process.poll() is None

    def describe(self) -> str:
        """What the sidebar says of this collector: running, and any deaths it recovered from."""
        text = "collecting (a process started by this dashboard)" if self.running() else \
            "the collector process is not running (starting it again)"
        if self.last_exit is not None:
            code, at = self.last_exit
            text += (f"; it exited {self.restarts + (0 if self.running() else 1)} time(s), last with "
                     f"{describe_exit(code)} at {at:%H:%M:%S} UTC (see {self.log_path.name})")
        return text

    def stop(self) -> None:
        """Stop the collector (it finishes its current pass) and do not start it again."""
        with self._lock:
            self._stopping.set()
        if self.running():
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def describe_exit(code: int) -> str:
    """A process's exit status in words: ``exit code 1`` or ``signal 6 (SIGABRT)``."""
    if code is not None and code < 0:
        try:
            return f"signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


_background: dict[str, ChildCollector | None] = {}
_background_lock = threading.Lock()


def ensure_background_collector(config: Config) -> ChildCollector | None:
    """Start (once per process and store) a collector process; None when collection is off
    or another process already collects into the store."""
    key = str(Path(config.store_dir).resolve())
    with _background_lock:
        if key in _background:
            return _background[key]
        child = None
        lock = StoreLock(config.store_dir)
        if config.dashboard.collect == "auto" and lock.acquire():
            try:
                store = open_store(config)
                if not config.live and set(store.read("health")["source"].unique()) <= {"replay"}:
                    # A store holding only an earlier replay: start over, or two replays
                    # would interleave on the charts. A store with live data is never touched.
                    store.clear()
            finally:
                lock.release()  # the child takes it
            child = ChildCollector(
                [sys.executable, "-m", "eventscope", "collect", "--parent", str(os.getpid())],
                dict(os.environ, EVENTSCOPE_STORE=key), Path(config.store_dir) / "collector.log")
            atexit.register(child.stop)
        _background[key] = child
        return child
