"""Run the whole pipeline on one or more brokers: one cooperative loop per broker.

`run_simulation(config, kafka_bootstrap=None, redis_url=None, stop_event=None,
rabbitmq_url=None)`
produces orders for `config.duration` seconds (counted from the moment every
Kafka group has its partitions), then lets the consumers finish in-flight work
for at most `config.drain` seconds, and returns counters. Setting `stop_event`
(or Ctrl-C) stops at once, without the drain.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from typing import Any, Callable

from .bus import Bus
from .config import TOPIC_PARTITIONS, SimulatorConfig
from .orders import OrderService
from .services import consumers
from .worker import Stats, Worker

log = logging.getLogger(__name__)
IDLE_SLEEP = 0.02      # seconds to sleep after a round with nothing to do
QUIET = 0.75           # drain ends after this long without any work
READY_TIMEOUT = 30.0   # longest wait for Kafka group assignments before producing
PROGRESS_EVERY = 10.0


class SimulationError(RuntimeError):
    """A broker loop failed (connection lost, topic creation refused, ...)."""


def _rng(seed: int | None, *parts: str) -> random.Random:
    """An independent random stream per broker and component."""
    return random.Random(None if seed is None else "-".join([str(seed), *parts]))


def groups_for(config: SimulatorConfig) -> dict[str, tuple[str, list[str]]]:
    """Return {prefixed group: (service, [prefixed topics])} for every consumer."""
    return {config.group(s.group): (s.service, [config.topic(t) for t in s.topics])
            for s in consumers(config)}


class BrokerRunner:
    """The pipeline on one bus, run by `run()` in its own thread."""

    def __init__(self, make_bus: Callable[[], Bus], broker: str, config: SimulatorConfig,
                 stop_event: threading.Event):
        self.make_bus, self.broker, self.base = make_bus, broker, config
        self.stop_event = stop_event
        self.stats = Stats()
        self.error: BaseException | None = None
        self.elapsed = 0.0

    def run(self) -> None:
        try:
            bus = self.make_bus()
            try:
                bus.setup({self.base.topic(t): n for t, n in TOPIC_PARTITIONS.items()},
                          groups_for(self.base))
                self._loop(bus)
            finally:
                bus.close()
        except BaseException as exc:  # noqa: BLE001 - reported by run_simulation
            log.error("%s simulation failed: %s: %s", self.broker, type(exc).__name__, exc)
            log.debug("traceback", exc_info=True)
            self.error = exc

    def _loop(self, bus: Bus) -> None:
        cfg, seed = self.base, self.base.seed
        workers = [Worker(s, cfg, bus, self.stats, _rng(seed, self.broker, s.group))
                   for s in consumers(cfg)]
        orders = OrderService(bus, self.stats, _rng(seed, self.broker, "order-service"))
        schedule = list(cfg.schedule)
        began = time.monotonic()
        t0 = last_busy = drain_from = None
        next_progress = began + PROGRESS_EVERY
        while not self.stop_event.is_set():
            now = time.monotonic()
            if t0 is None and (bus.ready() or now - began > READY_TIMEOUT):
                if now - began > READY_TIMEOUT:
                    log.warning("%s: groups still unassigned after %.0f s; producing anyway",
                                self.broker, READY_TIMEOUT)
                t0 = now
            worked = False
            if t0 is not None:
                self.elapsed = now - t0
                while schedule and schedule[0][0] <= self.elapsed:
                    at, change = schedule.pop(0)
                    log.info("%s: t=%.1fs applying %s", self.broker, at, change)
                    cfg = cfg.with_changes(change)
                if cfg.duration is None or self.elapsed < cfg.duration:
                    worked = orders.tick(now, cfg)
                elif drain_from is None:
                    drain_from = last_busy = now
            for worker in workers:
                worked = worker.step(now, cfg) or worked
            bus.tick()
            if drain_from is not None:
                if worked or any(w.has_work() for w in workers if not w.stalled(cfg)):
                    last_busy = now
                if now - last_busy >= QUIET or now - drain_from >= cfg.drain:
                    break
            if now >= next_progress:
                next_progress = now + PROGRESS_EVERY
                log.info("%s: t=%.0fs published %s dead-lettered %s", self.broker,
                         self.elapsed, dict(self.stats.published),
                         sum(self.stats.dead_lettered.values()))
            if not worked:
                time.sleep(IDLE_SLEEP)


def _sum(dicts: list[dict[str, int]]) -> dict[str, int]:
    total: Counter = Counter()
    for d in dicts:
        total.update(d)
    return dict(sorted(total.items()))


def run_simulation(config: SimulatorConfig, kafka_bootstrap: str | None = None,
                   redis_url: str | None = None,
                   stop_event: threading.Event | None = None,
                   rabbitmq_url: str | None = None) -> dict[str, Any]:
    """Run the order pipeline on the given broker(s); return counters.

    The result has, summed over brokers, `published` (event type -> n), `handled`,
    `skipped`, `retries`, `dead_lettered_by_group` (group -> n), `dead_lettered`
    (DLQ name -> n), `dead_letter_reasons`, `malformed_published` (kind -> n), plus
    `brokers`, `elapsed_s` and `by_broker` ({"kafka"|"redis"|"rabbitmq": same counters}).
    ``rabbitmq_url`` is an AMQP URL (``amqp://user:password@host:port/%2F``) of a user that
    may declare, publish and consume there. Raises SimulationError if a broker loop failed.
    """
    if not kafka_bootstrap and not redis_url and not rabbitmq_url:
        raise ValueError("run_simulation needs kafka_bootstrap, redis_url and/or rabbitmq_url")
    stop_event = stop_event or threading.Event()
    halt = threading.Event()  # ours: set on Ctrl-C or a failure, stops every loop
    runners = []
    if kafka_bootstrap:
        from .kafka_bus import KafkaBus  # here: it imports this broker's client library
        runners.append(BrokerRunner(lambda: KafkaBus(kafka_bootstrap), "kafka", config, halt))
    if redis_url:
        from .redis_bus import RedisBus  # here: it imports this broker's client library
        runners.append(BrokerRunner(lambda: RedisBus(redis_url, config.redis_maxlen), "redis",
                                    config, halt))
    if rabbitmq_url:
        from .rabbitmq_bus import RabbitMQBus  # here: it imports this broker's client library
        runners.append(BrokerRunner(lambda: RabbitMQBus(rabbitmq_url, config.prefix), "rabbitmq",
                                    config, halt))
    threads = [threading.Thread(target=r.run, name=f"simulator-{r.broker}", daemon=True)
               for r in runners]
    for thread in threads:
        thread.start()
    try:
        while any(t.is_alive() for t in threads):
            if stop_event.is_set() or any(r.error for r in runners):
                halt.set()
            for thread in threads:
                thread.join(0.1)
    except KeyboardInterrupt:
        halt.set()
        for thread in threads:
            thread.join()
    failed = [r for r in runners if r.error is not None]
    if failed:
        error = failed[0].error
        raise SimulationError(f"{failed[0].broker}: {type(error).__name__}: {error}") from error
    per = {r.broker: r.stats.as_dict() for r in runners}
    result: dict[str, Any] = {key: _sum([p[key] for p in per.values()])
                              for key in vars(Stats()).keys()}
    result.update(brokers=[r.broker for r in runners],
                  elapsed_s=round(max(r.elapsed for r in runners), 3), by_broker=per)
    return result
