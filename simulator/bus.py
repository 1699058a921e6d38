"""The tiny broker interface the services run on, and the message they receive.

Three implementations: `kafka_bus.KafkaBus`, `redis_bus.RedisBus` and
`rabbitmq_bus.RabbitMQBus`, each used from one thread only (the broker's runner thread).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class Message:
    """One consumed message, broker-neutral."""

    topic: str                    # topic / stream key (prefixed)
    value: bytes | None           # Kafka value / Redis `envelope` field
    key: bytes | None = None      # Kafka key (None on Redis)
    traceparent: str | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)  # Kafka headers / Redis fields
    partition: int = 0            # 0 for a Redis stream
    offset: int | str = 0         # Kafka offset / Redis entry ID
    timestamp_ms: int | None = None


def header_map(correlation_id: str | None, event_type: str | None,
               traceparent: str | None) -> dict[str, str]:
    """Return the headers every simulator event carries (absent values omitted)."""
    headers = {"traceparent": traceparent, "x-correlation-id": correlation_id,
               "event_type": event_type}
    return {name: value for name, value in headers.items() if value is not None}


class Bus(Protocol):
    """What a broker must offer the runner."""

    name: str          # "kafka", "redis" or "rabbitmq"

    def setup(self, topics: dict[str, int], groups: dict[str, tuple[str, list[str]]]) -> None:
        """Create topics/streams, their DLQs and the groups {group: (service, [topics])}."""

    def ready(self) -> bool:
        """Tell whether every group can receive messages (Kafka: has an assignment)."""

    def publish(self, topic: str, value: bytes, key: str | None = None,
                headers: dict[str, str | bytes] | None = None) -> None:
        """Append one message (Redis keeps only the `traceparent` header, as a field)."""

    def poll(self, group: str, max_messages: int) -> list[Message]:
        """Return up to `max_messages` new messages for `group`, without waiting."""

    def hold(self, group: str) -> list[Message]:
        """Keep a stalled group alive without consuming; may return already-fetched messages."""

    def release(self, group: str) -> None:
        """Undo `hold` when a stall ends."""

    def ack(self, group: str, msg: Message) -> None:
        """Mark `msg` done for `group` (Redis XACK; Kafka commit, batched by `tick`)."""

    def dead_letter(self, group: str, msg: Message, exc: BaseException, attempts: int) -> str:
        """Copy `msg` to its DLQ with the failure, then ack it; return the DLQ name."""

    def tick(self) -> None:
        """Housekeeping once per loop round (delivery reports, offset commits)."""

    def close(self) -> None:
        """Flush, commit and disconnect."""


def exception_fqcn(exc: BaseException) -> str:
    """Return `module.QualName` of an exception's class, as the simulated shop names it."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    # The shop's modules are `simulator.*` whether it runs from a checkout or an installed
    # eventscope, so recordings and live runs name a failure alike.
    return f"{cls.__module__.removeprefix('eventscope.')}.{cls.__qualname__}"
