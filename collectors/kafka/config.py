"""The ``[kafka]`` section: one Kafka cluster's settings (and the defaults of every
``[[sources]]`` entry with ``kind = "kafka"``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import urlsplit

from eventscope.collectors import regex_problems
from eventscope.dlq_names import KAFKA_DLQ_PATTERN
from eventscope.secrets import Secret, redact_url, redacted_repr

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


@dataclass(repr=False)
class KafkaConfig:
    SECRETS: ClassVar[tuple] = ("sasl_password",)

    bootstrap: str | None = None
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret = field(default_factory=lambda: Secret(None))
    topics: str = r"^(?!__).*"
    dlq_pattern: str = KAFKA_DLQ_PATTERN
    dlq_topics: list = field(default_factory=list)
    dlq_read_max: int = 10_000
    # Kafka Connect workers' REST URLs: their connectors' DLQs and the topics those read
    connect_urls: list = field(default_factory=list)
    max_events_per_sample: int = 5000
    timeout_s: float = 10.0

    def __repr__(self) -> str:
        return redacted_repr(self, ("connect_urls",))


def check(cfg: KafkaConfig, where: str) -> list[str]:
    """The settings' problems, one line each."""
    problems = []
    if cfg.security_protocol not in PROTOCOLS:
        problems.append(f"{where}.security_protocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    if cfg.dlq_read_max < 0:
        problems.append(f"{where}.dlq_read_max must be >= 0")
    if cfg.timeout_s <= 0:
        problems.append(f"{where}.timeout_s must be > 0")
    for url in cfg.connect_urls:
        if urlsplit(str(url)).scheme not in ("http", "https") or not urlsplit(str(url)).hostname:
            problems.append(f"{where}.connect_urls: {redact_url(str(url))!r} is not an http:// or https:// URL")
    return problems + regex_problems(cfg, ("topics", "dlq_pattern"), where)
