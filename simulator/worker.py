"""One consumer group at work: poll, handle, publish, ack; retry with backoff; DLQ.

A worker never blocks: retries wait in a heap until due (the message stays in the
Redis PEL / below the committed Kafka offset meanwhile), a slow service is simply
not stepped until its simulated processing time has passed, and a stalled one
only keeps its group membership alive.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from . import envelope
from .bus import Bus, Message, header_map
from .config import SimulatorConfig
from .services import ConsumerSpec, Emit, HandlerContext

log = logging.getLogger(__name__)
BATCH = 20            # messages handled per step at most
POLL_MAX = 10         # messages fetched per poll (1 for a slow service)
MAX_RETRYING = 500    # stop fetching while this many messages wait for a retry


@dataclass
class Stats:
    """Counters of one broker's pipeline."""

    published: Counter = field(default_factory=Counter)        # event_type -> n
    handled: Counter = field(default_factory=Counter)          # group -> messages done
    skipped: Counter = field(default_factory=Counter)          # group -> event types it ignores
    retries: Counter = field(default_factory=Counter)          # group -> retries scheduled
    dead_lettered: Counter = field(default_factory=Counter)    # DLQ name -> n
    dead_lettered_by_group: Counter = field(default_factory=Counter)
    dead_letter_reasons: Counter = field(default_factory=Counter)  # "Error: message" -> n
    malformed_published: Counter = field(default_factory=Counter)  # kind -> n

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {name: dict(sorted(value.items())) for name, value in vars(self).items()}


@dataclass(order=True)
class _Retry:
    due: float
    seq: int
    msg: Message = field(compare=False)
    attempt: int = field(compare=False)
    memo: dict[str, Any] = field(compare=False)


class Worker:
    """Runs one ConsumerSpec on a bus; `step()` is called once per loop round."""

    _seq = itertools.count()

    def __init__(self, spec: ConsumerSpec, config: SimulatorConfig, bus: Bus,
                 stats: Stats, rng: random.Random):
        self.spec, self.bus, self.stats, self.rng = spec, bus, stats, rng
        self.group = config.group(spec.group)
        self.topics = [config.topic(t) for t in spec.topics]
        self.buffer: deque[Message] = deque()
        self.retrying: list[_Retry] = []
        self.busy_until = 0.0
        self.held = False

    def stalled(self, cfg: SimulatorConfig) -> bool:
        return cfg.is_stalled(self.spec.service, self.spec.group)

    def has_work(self) -> bool:
        """Tell whether messages are fetched but not yet done."""
        return bool(self.buffer or self.retrying)

    def step(self, now: float, cfg: SimulatorConfig) -> bool:
        """Do what is due; return True if a message was handled."""
        if self.stalled(cfg):
            self.held = True
            self.buffer.extend(self.bus.hold(self.group))
            return False
        if self.held:
            self.bus.release(self.group)
            self.held = False
        slow = cfg.slowness(self.spec.service, self.spec.group)
        did = False
        for _ in range(BATCH):
            if now < self.busy_until:
                break
            if self.retrying and self.retrying[0].due <= now:
                retry = heapq.heappop(self.retrying)
                self._attempt(retry.msg, retry.attempt, retry.memo, now, cfg)
            elif self.buffer:
                self._attempt(self.buffer.popleft(), 1, {}, now, cfg)
            elif len(self.retrying) < MAX_RETRYING:
                fetched = self.bus.poll(self.group, 1 if slow else POLL_MAX)
                if not fetched:
                    break
                self.buffer.extend(fetched)
                continue
            else:
                break
            did = True
            self.busy_until = now + slow
        return did

    def _attempt(self, msg: Message, attempt: int, memo: dict[str, Any], now: float,
                 cfg: SimulatorConfig) -> None:
        ctx = HandlerContext(cfg, self.rng, attempt, memo)
        try:
            event = envelope.decode(msg.value)
            handler = self.spec.handlers.get(event["event_type"])
            emits = handler(event, ctx) if handler is not None else []
        except envelope.MalformedMessageError as exc:
            self._dead_letter(msg, exc, attempt)  # no retry can fix a poison message
            return
        except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then DLQ'd
            if attempt >= cfg.max_attempts:
                self._dead_letter(msg, exc, attempt)
            else:
                log.debug("%s: attempt %d of %s failed: %s", self.group, attempt, msg.offset, exc)
                self.stats.retries[self.group] += 1
                heapq.heappush(self.retrying, _Retry(now + cfg.backoff(attempt), next(self._seq),
                                                     msg, attempt + 1, memo))
            return
        for emit in emits:
            self._publish(event, msg, emit, cfg)
        self.bus.ack(self.group, msg)
        (self.stats.handled if handler is not None else self.stats.skipped)[self.group] += 1

    def _publish(self, parent: dict, msg: Message, emit: Emit, cfg: SimulatorConfig) -> None:
        child = envelope.make_event(emit.event_type, self.spec.service,
                                    parent["correlation_id"], emit.data)
        traceparent = envelope.child_traceparent(msg.traceparent)
        self.bus.publish(cfg.topic(emit.topic), envelope.encode(child),
                         key=emit.data.get("order_id"),
                         headers=header_map(child["correlation_id"], emit.event_type, traceparent))
        self.stats.published[emit.event_type] += 1

    def _dead_letter(self, msg: Message, exc: BaseException, attempts: int) -> None:
        dlq = self.bus.dead_letter(self.group, msg, exc, attempts)
        log.debug("%s: %s:%s dead-lettered to %s after %d attempt(s): %s",
                  self.group, msg.topic, msg.offset, dlq, attempts, exc)
        self.stats.dead_lettered[dlq] += 1
        self.stats.dead_lettered_by_group[self.group] += 1
        self.stats.dead_letter_reasons[f"{type(exc).__name__}: {exc}"] += 1
