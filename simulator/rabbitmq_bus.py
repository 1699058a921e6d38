"""RabbitMQ implementation of the simulator bus.

Topology (every name with the config's prefix):

- one durable ``topic`` exchange per topic (``orders``, ``payments``, ...); an event is
  published with its type as routing key (``OrderPlaced``), with the ``timestamp``
  property set (so the management API can date a queue's head message) and
  ``traceparent``, ``x-correlation-id`` and ``event_type`` headers;
- one durable queue per consumer group, named like the group, bound with ``#`` to the
  exchange of each topic it reads; consumers of one group share it;
- a ``dlx`` direct exchange: every group's queue dead-letters into it (queue arguments
  ``x-dead-letter-exchange`` and ``x-dead-letter-routing-key`` = the group) and
  ``<group>.dlq`` (classic) is bound to it with that key. The payment group's queue is a
  quorum queue with at-least-once dead-lettering, whose dead letters also reach
  ``<group>.audit``, a stream: a stream can be read without consuming, so its ``x-death``
  reasons are readable by eventscope, where a classic DLQ's are not.

A failed message is retried by the worker, then rejected without requeue: RabbitMQ itself
dead-letters it (``x-death`` reason ``rejected``). A stalled group keeps its consumer and
the messages prefetched, unacknowledged.
"""
from __future__ import annotations

import logging
import time
from collections import deque

import pika

from .bus import Message

log = logging.getLogger(__name__)
PREFETCH = 100  # unacknowledged messages a group's consumer may hold
DLX = "dlx"
DLQ_SUFFIX = ".dlq"
AUDIT_SUFFIX = ".audit"  # the stream DLQ of the group that reads payments of orders
STREAM_DLQ_GROUP = "payment-service"


class RabbitMQBus:
    """Simulator bus on RabbitMQ (one connection, one thread)."""

    name = "rabbitmq"

    def __init__(self, url: str, prefix: str = ""):
        params = pika.URLParameters(url)
        params.heartbeat = 30
        params.blocked_connection_timeout = 30
        self.connection = pika.BlockingConnection(params)
        self.publisher = self.connection.channel()
        self.prefix = prefix
        self.channels: dict[str, pika.adapters.blocking_connection.BlockingChannel] = {}
        self.buffers: dict[str, deque[Message]] = {}
        self.dlqs: dict[str, str] = {}

    def setup(self, topics: dict[str, int], groups: dict[str, tuple[str, list[str]]]) -> None:
        """Declare exchanges, group queues, the DLX and the DLQs; start a consumer per group."""
        ch = self.publisher
        dlx = self.prefix + DLX
        ch.exchange_declare(dlx, "direct", durable=True)
        for topic in topics:
            ch.exchange_declare(topic, "topic", durable=True)
        for group, (_service, group_topics) in groups.items():
            arguments = {"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": group}
            if group == self.prefix + STREAM_DLQ_GROUP:
                # quorum + at-least-once: the dead letters reach a stream DLQ too
                arguments.update({"x-queue-type": "quorum", "x-dead-letter-strategy": "at-least-once",
                                  "x-overflow": "reject-publish"})
                ch.queue_declare(group + AUDIT_SUFFIX, durable=True, arguments={"x-queue-type": "stream"})
                ch.queue_bind(group + AUDIT_SUFFIX, dlx, group)
            ch.queue_declare(group, durable=True, arguments=arguments)
            ch.queue_declare(group + DLQ_SUFFIX, durable=True)
            ch.queue_bind(group + DLQ_SUFFIX, dlx, group)
            self.dlqs[group] = group + DLQ_SUFFIX
            for topic in group_topics:
                ch.queue_bind(group, topic, "#")
            self._consume(group)

    def _consume(self, group: str) -> None:
        channel = self.connection.channel()
        channel.basic_qos(prefetch_count=PREFETCH)
        buffer: deque[Message] = deque()

        def on_message(_ch, method, props, body) -> None:
            headers = {k: v if isinstance(v, bytes) else str(v).encode() for k, v in (props.headers or {}).items()}
            traceparent = headers.get("traceparent")
            buffer.append(Message(topic=method.exchange, value=body, key=None,
                                  traceparent=traceparent.decode() if traceparent else None,
                                  headers=list(headers.items()), offset=method.delivery_tag,
                                  timestamp_ms=props.timestamp * 1000 if props.timestamp else None))

        channel.basic_consume(group, on_message, auto_ack=False, consumer_tag=f"{group}-1")
        self.channels[group] = channel
        self.buffers[group] = buffer

    def ready(self) -> bool:
        return True

    def publish(self, topic: str, value: bytes, key: str | None = None,
                headers: dict[str, str | bytes] | None = None) -> None:
        headers = {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                   for k, v in (headers or {}).items()}
        routing_key = str(headers.get("event_type") or "event")
        props = pika.BasicProperties(content_type="application/json", delivery_mode=2, headers=headers,
                                     timestamp=int(time.time()), message_id=key)
        self.publisher.basic_publish(topic, routing_key, value, props)

    def poll(self, group: str, max_messages: int) -> list[Message]:
        self.connection.process_data_events(time_limit=0)
        buffer = self.buffers[group]
        return [buffer.popleft() for _ in range(min(max_messages, len(buffer)))]

    def hold(self, group: str) -> list[Message]:
        # a stalled consumer stays attached with its prefetched messages unacknowledged
        self.connection.process_data_events(time_limit=0)
        return []

    def release(self, group: str) -> None:
        pass

    def ack(self, group: str, msg: Message) -> None:
        self.channels[group].basic_ack(msg.offset)

    def dead_letter(self, group: str, msg: Message, exc: BaseException, attempts: int) -> str:
        # RabbitMQ dead-letters it through the queue's DLX, with an x-death header
        self.channels[group].basic_reject(msg.offset, requeue=False)
        return self.dlqs[group]

    def tick(self) -> None:
        self.connection.process_data_events(time_limit=0)

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()
