"""A Redis source's collectors: streams, groups and DLQs, and its event reader's shorter interval."""
from __future__ import annotations

from eventscope.collectors import BuildContext, EventsTail
from eventscope.collectors.redis.config import RedisConfig
from eventscope.collectors.redis.connect import explain, make_client
from eventscope.collectors.redis.streams import RedisStreamsCollector
from eventscope.dlq_names import dlq_regex


def build(name: str, cfg: RedisConfig, context: BuildContext) -> list:
    streams = RedisStreamsCollector(make_client(cfg), source=name, pattern=cfg.stream_pattern, streams=cfg.streams,
                                    dlq_pattern=dlq_regex(cfg.dlq_pattern, cfg.dlq_streams),
                                    max_events=cfg.max_events_per_sample,
                                    stuck_min_deliveries=cfg.stuck_min_deliveries, stuck_idle_s=cfg.stuck_idle_s,
                                    dlq_read_max=cfg.dlq_read_max,
                                    explain=lambda exc: explain(exc, cfg),
                                    globs=context.trace_globs.get("redis", ["*"]), **context.events())
    if context.events_interval_s < context.interval_s:
        return [streams, EventsTail(streams, context.events_interval_s)]
    return [streams]
