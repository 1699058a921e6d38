"""A RabbitMQ source's collector: the management API, read as a `monitoring` user."""
from __future__ import annotations

from eventscope.collectors import BuildContext
from eventscope.collectors.rabbitmq.config import RabbitMQConfig
from eventscope.collectors.rabbitmq.management import RabbitMQCollector


def build(name: str, cfg: RabbitMQConfig, context: BuildContext) -> list:
    return [RabbitMQCollector(cfg.url, cfg.username, cfg.password.get() or "", source=name,
                              vhosts=cfg.vhosts or None, queues_pattern=cfg.queues_pattern or None,
                              timeout_s=cfg.timeout_s, dlq_pattern=cfg.dlq_pattern,
                              amqp_address=cfg.amqp_address or None, stream_read_max=cfg.stream_read_max)]
