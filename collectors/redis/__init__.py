"""Redis Streams: consumer groups' lag, pending and stuck entries, events and DLQ streams."""
from __future__ import annotations

from eventscope.collectors import SourceKind, register
from eventscope.collectors.redis.config import RedisConfig, address, check, configured

KIND = register(SourceKind(
    name="redis", settings=RedisConfig, builder="eventscope.collectors.redis.build",
    configured=configured, address=address,
    check=check, frames=("lag", "dlq", "events", "topics", "consumers", "stuck", "reading_state"),
    env_shortcuts={"EVENTSCOPE_REDIS_URL": "url"}, protocol="redis"))
