"""A Kafka source's collectors: offsets and lag, events and DLQs, and Kafka Connect's DLQs."""
from __future__ import annotations

from confluent_kafka.admin import AdminClient

from eventscope.collectors import BuildContext
from eventscope.collectors.kafka.config import KafkaConfig
from eventscope.collectors.kafka.connect import ConnectDirectory
from eventscope.collectors.kafka.events import KafkaEventsCollector
from eventscope.collectors.kafka.offsets import KafkaOffsetsCollector, client_secrets, kafka_client_config
from eventscope.collectors.kafka.security import ConnectionTrouble
from eventscope.collectors.kafka.record_times import RecordTimes
from eventscope.dlq_names import dlq_regex


def build(name: str, cfg: KafkaConfig, context: BuildContext) -> list:
    trouble = ConnectionTrouble(client_secrets(cfg))  # why a connection fails: one per source
    conf = kafka_client_config(cfg, trouble)
    collectors: list = [KafkaOffsetsCollector(AdminClient(conf), source=name, topics=cfg.topics,
                                              timeout_s=cfg.timeout_s, probe_conf=conf,
                                              record_times=RecordTimes(conf),
                                              admin_factory=lambda: AdminClient(conf), trouble=trouble)]
    connect = None
    if cfg.connect_urls:
        connect = ConnectDirectory(cfg.connect_urls, timeout_s=min(cfg.timeout_s, 5.0), source=name)
        collectors.append(connect)  # ahead of the events: its DLQs are known when they are read
    events = KafkaEventsCollector(conf, source=name, topics=cfg.topics, connect=connect,
                                  dlq_pattern=dlq_regex(cfg.dlq_pattern, cfg.dlq_topics),
                                  max_events=cfg.max_events_per_sample, timeout_s=cfg.timeout_s,
                                  dlq_read_max=cfg.dlq_read_max,
                                  globs=context.trace_globs.get("kafka", ["*"]), trouble=trouble,
                                  **context.events())
    events.interval_s = context.events_interval_s
    collectors.append(events)
    return collectors
