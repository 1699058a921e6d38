"""order-service: publishes OrderPlaced on `orders` (Poisson arrivals), and on
request a few hostile messages that consumers must survive.

Hostile kinds, in turn: `not_json` (truncated JSON with invalid UTF-8 -> DLQ),
`bad_envelope` (source `<script>`, `data` not an object -> DLQ), `script_source`
(a valid order whose source and customer name carry HTML: processed normally,
so the dashboard sees a producer named `<script>alert(1)</script>`).
"""
from __future__ import annotations

import random

from . import envelope
from .bus import Bus, header_map
from .config import ORDERS, SimulatorConfig
from .services import make_order
from .worker import Stats

SERVICE = "order-service"
HOSTILE_KINDS = ("not_json", "bad_envelope", "script_source")
SCRIPT = "<script>alert(1)</script>"


class OrderService:
    """Publishes orders at `cfg.rate` per second when `tick()` is called."""

    def __init__(self, bus: Bus, stats: Stats, rng: random.Random):
        self.bus, self.stats, self.rng = bus, stats, rng
        self.next_at: float | None = None
        self.hostile_sent = 0

    def tick(self, now: float, cfg: SimulatorConfig) -> bool:
        """Publish every order due by `now`; return True if any was."""
        if cfg.rate <= 0:
            self.next_at = None
            return False
        if self.next_at is None or self.next_at < now - 1.0:  # start, or we fell behind
            self.next_at = now + self.rng.expovariate(cfg.rate)
            return False
        sent = False
        while self.next_at <= now:
            self.publish_order(cfg)
            if self.rng.random() < cfg.malformed_rate:
                self.publish_hostile(cfg)
            self.next_at += self.rng.expovariate(cfg.rate)
            sent = True
        return sent

    def publish_order(self, cfg: SimulatorConfig, source: str = SERVICE,
                      data: dict | None = None) -> dict:
        """Publish one OrderPlaced in a new trace; return its envelope."""
        data = data or make_order(self.rng)
        # fan-out shape: one correlation ID per customer, shared by all their orders
        correlation = f"cor_{data['customer_id']}" if cfg.shape == "fanout" else envelope.new_correlation_id()
        event = envelope.make_event("OrderPlaced", source, correlation, data)
        traceparent = envelope.make_traceparent(envelope.new_trace_id(), envelope.new_span_id())
        self.bus.publish(cfg.topic(ORDERS), envelope.encode(event), key=data["order_id"],
                         headers=header_map(event["correlation_id"], "OrderPlaced", traceparent))
        self.stats.published["OrderPlaced"] += 1
        return event

    def publish_hostile(self, cfg: SimulatorConfig) -> str:
        """Publish the next hostile message kind; return the kind."""
        kind = HOSTILE_KINDS[self.hostile_sent % len(HOSTILE_KINDS)]
        self.hostile_sent += 1
        self.stats.malformed_published[kind] += 1
        topic = cfg.topic(ORDERS)
        if kind == "not_json":
            value = b'{"event_type":"OrderPlaced","data":{"order_id":"ord_\xff\xfe\x00\x9c'
            self.bus.publish(topic, value, headers={"content-type": "application/octet-stream"})
        elif kind == "bad_envelope":
            event = envelope.make_event("OrderPlaced", SCRIPT, envelope.new_correlation_id(),
                                        {})
            event["data"] = '<img src=x onerror="alert(2)">'
            traceparent = envelope.make_traceparent(envelope.new_trace_id(), envelope.new_span_id())
            headers = header_map(event["correlation_id"], "OrderPlaced", traceparent)
            self.bus.publish(topic, envelope.encode(event), headers=headers)
        else:
            data = make_order(self.rng)
            data.update(customer_name='<img src=x onerror="alert(3)">',
                        customer_email="mallory@example.com")
            self.publish_order(cfg, source=SCRIPT, data=data)
        return kind
