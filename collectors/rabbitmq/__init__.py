"""RabbitMQ: queues, consumers, bindings and dead-letter queues, from the management API."""
from __future__ import annotations

from eventscope.collectors import SourceKind, register
from eventscope.collectors.rabbitmq.config import RabbitMQConfig, check
from eventscope.secrets import redact_url

KIND = register(SourceKind(
    name="rabbitmq", settings=RabbitMQConfig, builder="eventscope.collectors.rabbitmq.build",
    configured=lambda cfg: bool(cfg.url), address=lambda cfg: redact_url(cfg.url) if cfg.url else "",
    check=check, frames=("lag", "dlq", "topics", "consumers", "queues", "bindings"),
    env_shortcuts={"EVENTSCOPE_RABBITMQ_URL": "url"}, protocol="amqp"))
