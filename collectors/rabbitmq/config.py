"""The ``[rabbitmq]`` section: one RabbitMQ cluster's management API (and the defaults of
every ``[[sources]]`` entry with ``kind = "rabbitmq"``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import urlsplit

from eventscope.collectors import regex_problems
from eventscope.dlq_names import RABBITMQ_DLQ_PATTERN
from eventscope.secrets import Secret, redact_url, redacted_repr


@dataclass(repr=False)
class RabbitMQConfig:
    SECRETS: ClassVar[tuple] = ("password",)

    url: str | None = None  # the management API, http://host:15672
    username: str = "eventscope"  # a user with the `monitoring` tag
    password: Secret = field(default_factory=lambda: Secret(None))
    vhosts: list = field(default_factory=list)
    queues_pattern: str = ""
    dlq_pattern: str = RABBITMQ_DLQ_PATTERN
    amqp_address: str = ""  # host:port: read stream DLQs' x-death reasons (never consumes)
    stream_read_max: int = 1000
    timeout_s: float = 10.0

    def __repr__(self) -> str:
        return redacted_repr(self, ("url",))


def check(cfg: RabbitMQConfig, where: str) -> list[str]:
    """The settings' problems, one line each."""
    problems = []
    if cfg.url and (urlsplit(cfg.url).scheme not in ("http", "https") or not urlsplit(cfg.url).hostname):
        problems.append(f"{where}.url: {redact_url(cfg.url)!r} is not an http:// or https:// URL")
    if cfg.stream_read_max < 1:
        problems.append(f"{where}.stream_read_max must be >= 1")
    if cfg.timeout_s <= 0:
        problems.append(f"{where}.timeout_s must be > 0")
    return problems + regex_problems(cfg, ("queues_pattern", "dlq_pattern"), where)
