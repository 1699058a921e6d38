"""Kafka: consumer-group lag from offsets, events and dead-letter topics, Kafka Connect's DLQs."""
from __future__ import annotations

from eventscope.collectors import SourceKind, register
from eventscope.collectors.kafka.config import KafkaConfig, check

KIND = register(SourceKind(
    name="kafka", settings=KafkaConfig, builder="eventscope.collectors.kafka.build",
    configured=lambda cfg: bool(cfg.bootstrap), address=lambda cfg: cfg.bootstrap or "", check=check,
    frames=("lag", "dlq", "events", "topics", "consumers", "reading_state"),
    env_shortcuts={"EVENTSCOPE_KAFKA_BOOTSTRAP": "bootstrap"}, protocol="kafka"))
