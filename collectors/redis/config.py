"""The ``[redis]`` section: one Redis server's settings (and the defaults of every
``[[sources]]`` entry with ``kind = "redis"``)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar
from urllib.parse import urlsplit

from eventscope.collectors import regex_problems
from eventscope.dlq_names import REDIS_DLQ_PATTERN
from eventscope.secrets import Secret, redact_url


@dataclass(repr=False)
class RedisConfig:
    SECRETS: ClassVar[tuple] = ("password",)

    url: str | None = None
    password: Secret = field(default_factory=lambda: Secret(None))
    stream_pattern: str = "*"
    streams: list = field(default_factory=list)
    dlq_pattern: str = REDIS_DLQ_PATTERN
    dlq_streams: list = field(default_factory=list)
    dlq_read_max: int = 10_000
    max_events_per_sample: int = 5000
    timeout_s: float = 5.0
    stuck_min_deliveries: int = 3
    stuck_idle_s: float = 60.0

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name != "url")
        url = redact_url(self.url) if self.url else None
        return f"RedisConfig(url={url!r}, {shown})"


def check(cfg: RedisConfig, where: str) -> list[str]:
    """The settings' problems, one line each."""
    problems = []
    if cfg.url and urlsplit(cfg.url).scheme not in ("redis", "rediss", "unix"):
        problems.append(f"{where}.url must start with redis://, rediss:// or unix://")
    if cfg.dlq_read_max < 0:
        problems.append(f"{where}.dlq_read_max must be >= 0")
    if cfg.timeout_s <= 0:
        problems.append(f"{where}.timeout_s must be > 0")
    return problems + regex_problems(cfg, ("dlq_pattern",), where)
