"""Simulator knobs (`SimulatorConfig`), scheduled changes and broker object names.

Names are the same on both brokers. With a `prefix` (tests, parallel demos) every
topic/stream and every consumer group gets it; service names (the envelope
`source`) never do.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

ORDERS, PAYMENTS, INVENTORY, SHIPMENTS = "orders", "payments", "inventory", "shipments"
# Kafka partition counts; a Redis stream is one "partition 0".
TOPIC_PARTITIONS = {ORDERS: 3, PAYMENTS: 2, INVENTORY: 2, SHIPMENTS: 1}
KAFKA_DLQ_SUFFIX = ".DLT"  # Spring's DeadLetterPublishingRecoverer default
REDIS_DLQ_SUFFIX = ".dlq"

SERVICES = ("order-service", "payment-service", "inventory-service",
            "shipping-service", "email-service", "analytics-service")

SHAPES = ("pipeline", "fanout")

# Fields a schedule entry may change while the simulation runs.
MUTABLE = {"rate", "payment_failure_rate", "inventory_failure_rate",
           "transient_failure_rate", "malformed_rate", "slow", "stall", "max_attempts"}


@dataclass
class SimulatorConfig:
    """What the simulated order pipeline does. Rates are per order (0..1)."""

    rate: float = 5.0                      # orders per second (Poisson arrivals)
    payment_failure_rate: float = 0.02     # charges that always fail -> DLQ after max_attempts
    inventory_failure_rate: float = 0.05   # reservations that fail -> refund (saga compensation)
    transient_failure_rate: float = 0.05   # charges whose first attempt fails, retry succeeds
    malformed_rate: float = 0.0            # extra hostile messages on `orders`, per order
    slow: dict[str, float] = field(default_factory=dict)  # service or group -> extra s/message
    stall: set[str] = field(default_factory=set)          # services or groups that stop consuming
    max_attempts: int = 3
    backoff_base: float = 0.05             # first retry delay, doubled per attempt
    backoff_cap: float = 2.0
    duration: float | None = 30.0          # seconds of order production; None = until stopped
    drain: float = 5.0                     # max seconds after `duration` to finish in-flight work
    seed: int | None = None
    schedule: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    prefix: str = ""                       # prepended to every topic/stream and group name
    redis_maxlen: int | None = None        # approximate XADD MAXLEN; None = never trim
    # "pipeline": one consumer per step, one correlation ID per order. "fanout": `orders` is
    # read by payment, inventory and analytics at once (their events race), and a
    # correlation ID is the customer's, shared by all of a customer's orders.
    shape: str = "pipeline"

    def __post_init__(self) -> None:
        self.slow = {str(k): float(v) for k, v in dict(self.slow).items()}
        self.stall = set(self.stall)
        self.schedule = sorted(((float(at), dict(change)) for at, change in self.schedule),
                               key=lambda entry: entry[0])
        for at, change in self.schedule:
            unknown = set(change) - MUTABLE
            if unknown:
                raise ValueError(f"schedule entry at {at}s changes unknown or fixed "
                                 f"settings {sorted(unknown)}")
        for name in ("payment_failure_rate", "inventory_failure_rate",
                     "transient_failure_rate", "malformed_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1")
        if self.rate < 0 or self.max_attempts < 1:
            raise ValueError("rate must be >= 0 and max_attempts >= 1")
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}")

    def with_changes(self, change: dict[str, Any]) -> "SimulatorConfig":
        """Return a copy with one schedule entry applied (schedule itself unchanged)."""
        return dataclasses.replace(self, **change)

    def topic(self, name: str) -> str:
        """Topic (Kafka) or stream key (Redis) for a pipeline topic name."""
        return self.prefix + name

    def group(self, name: str) -> str:
        """Consumer group name for a service group."""
        return self.prefix + name

    def is_stalled(self, service: str, group: str) -> bool:
        """Tell whether `service` (or its group, unprefixed) is stalled."""
        return service in self.stall or group in self.stall

    def slowness(self, service: str, group: str) -> float:
        """Extra seconds per message for this group (group entry wins)."""
        return self.slow.get(group, self.slow.get(service, 0.0))

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1 = first retry)."""
        return min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))


def parse_change(text: str) -> tuple[float, dict[str, Any]]:
    """Parse a CLI schedule entry `AT:KEY=VALUE[;KEY=VALUE]`.

    Examples: `60:stall=analytics-service`, `90:payment_failure_rate=0.6`,
    `120:payment_failure_rate=0.02;stall=`, `30:slow=email-service:0.5,shipping-service:0.2`.
    """
    at, sep, rest = text.partition(":")
    if not sep or not rest:
        raise ValueError(f"schedule entry {text!r} is not AT:KEY=VALUE")
    change: dict[str, Any] = {}
    for item in rest.split(";"):
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or key not in MUTABLE:
            raise ValueError(f"schedule entry {text!r}: unknown setting {key!r}")
        change[key] = parse_value(key, value.strip())
    return float(at), change


def parse_value(key: str, value: str) -> Any:
    """Convert a CLI string to the type of setting `key`."""
    if key == "stall":
        return {name.strip() for name in value.split(",") if name.strip()}
    if key == "slow":
        return dict(parse_slow(item) for item in value.split(",") if item.strip())
    if key == "max_attempts":
        return int(value)
    return float(value)


def parse_slow(text: str) -> tuple[str, float]:
    """Parse `SERVICE:SECONDS` (or `SERVICE=SECONDS`)."""
    name, _, seconds = text.replace("=", ":").rpartition(":")
    if not name:
        raise ValueError(f"slow entry {text!r} is not SERVICE:SECONDS")
    return name.strip(), float(seconds)
