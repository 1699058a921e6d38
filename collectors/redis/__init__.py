"""Redis Streams: consumer groups' lag, pending and stuck entries, events and DLQ streams."""
from __future__ import annotations

from eventscope.collectors import SourceKind, register
from eventscope.collectors.redis.config import RedisConfig, check
from eventscope.secrets import redact_url

KIND = register(SourceKind(
    name="redis", settings=RedisConfig, builder="eventscope.collectors.redis.build",
    configured=lambda cfg: bool(cfg.url), address=lambda cfg: redact_url(cfg.url) if cfg.url else "",
    check=check, frames=("lag", "dlq", "events", "topics", "consumers", "stuck", "reading_state"),
    env_shortcuts={"EVENTSCOPE_REDIS_URL": "url"}, protocol="redis"))
