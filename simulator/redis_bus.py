"""Redis Streams implementation of the simulator bus.

Stream key = topic name; entries have fields `envelope` (JSON bytes) and
`traceparent`. Groups are created at ID 0 with MKSTREAM; consumers XREADGROUP and
XACK. A failed entry stays in the PEL while it is retried, then goes to
`<stream>.dlq` and is XACKed in the same MULTI.
"""
from __future__ import annotations

import logging

import redis

from .bus import Message, exception_fqcn
from .config import REDIS_DLQ_SUFFIX
from .envelope import now_iso

log = logging.getLogger(__name__)


def _text(value: bytes | str | None) -> str | None:
    """Decode a Redis field for display (never raises)."""
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _stream_entries(reply) -> list[tuple[str, list]]:
    """Normalize an XREADGROUP reply (RESP2 list or RESP3 dict) to [(stream, entries)]."""
    if not reply:
        return []
    pairs = reply.items() if isinstance(reply, dict) else reply
    out = []
    for stream, entries in pairs:
        if isinstance(entries, list) and len(entries) == 1 and isinstance(entries[0], list) \
                and entries[0] and isinstance(entries[0][0], list):
            entries = entries[0]  # some RESP3 shapes nest once more
        out.append((_text(stream), entries))
    return out


class RedisBus:
    """Simulator bus on Redis Streams (one client, one thread)."""

    name = "redis"

    def __init__(self, url: str, maxlen: int | None = None):
        self.client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self.maxlen = maxlen
        self.groups: dict[str, tuple[str, list[str]]] = {}  # group -> (consumer, streams)
        # group -> {stream: last ID}: our own PEL, re-read once after a restart.
        self._recovering: dict[str, dict[str, str]] = {}

    def setup(self, topics: dict[str, int], groups: dict[str, tuple[str, list[str]]]) -> None:
        """Create every (stream, group) at ID 0 with MKSTREAM, and our consumer in it."""
        self.client.ping()
        for group, (service, streams) in groups.items():
            consumer = f"{service}-1"
            for stream in streams:
                try:
                    self.client.xgroup_create(stream, group, id="0", mkstream=True)
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                # So a group that is stalled from the start still shows its consumer.
                self.client.xgroup_createconsumer(stream, group, consumer)
            self.groups[group] = (consumer, list(streams))
            self._recovering[group] = {stream: "0" for stream in streams}

    def ready(self) -> bool:
        return True

    def publish(self, topic: str, value: bytes, key: str | None = None,
                headers: dict[str, str | bytes] | None = None) -> None:
        fields: dict[str, bytes | str] = {"envelope": value}
        if headers and headers.get("traceparent") is not None:
            fields["traceparent"] = headers["traceparent"]
        self.client.xadd(topic, fields, maxlen=self.maxlen, approximate=True)

    def poll(self, group: str, max_messages: int) -> list[Message]:
        consumer, streams = self.groups[group]
        # After a restart, entries we read but never acked are only reachable by ID.
        cursor = self._recovering.get(group)
        ids = dict(cursor) if cursor else {s: ">" for s in streams}
        reply = self.client.xreadgroup(group, consumer, ids, count=max_messages)
        messages = []
        seen = set()
        for stream, entries in _stream_entries(reply):
            for entry_id, fields in entries:
                entry_id = _text(entry_id)
                seen.add(stream)
                if cursor:
                    cursor[stream] = entry_id
                if not fields:  # entry trimmed/deleted while pending: nothing to process
                    self.client.xack(stream, group, entry_id)
                    continue
                fields = {_text(k): v for k, v in fields.items()}
                messages.append(Message(
                    topic=stream, value=fields.get("envelope"), offset=entry_id,
                    traceparent=_text(fields.get("traceparent")),
                    headers=[(k, v if isinstance(v, bytes) else str(v).encode())
                             for k, v in fields.items() if k != "envelope"],
                    timestamp_ms=int(entry_id.split("-")[0]),
                ))
        if cursor:
            for stream in [s for s in cursor if s not in seen]:
                del cursor[stream]  # this stream's PEL is fully re-read
            if not cursor:
                del self._recovering[group]
            if messages:
                log.info("redis group %s: re-processing %d pending entries", group, len(messages))
        return messages

    def hold(self, group: str) -> list[Message]:
        return []  # a stalled consumer simply stops reading; its idle time grows

    def release(self, group: str) -> None:
        pass

    def ack(self, group: str, msg: Message) -> None:
        self.client.xack(msg.topic, group, msg.offset)

    def dead_letter(self, group: str, msg: Message, exc: BaseException, attempts: int) -> str:
        dlq = msg.topic + REDIS_DLQ_SUFFIX
        fields: dict[str, bytes | str] = {"envelope": msg.value if msg.value is not None else b""}
        if msg.traceparent:
            fields["traceparent"] = msg.traceparent
        fields.update({
            "error": f"{type(exc).__name__}: {exc}",
            "error_type": exception_fqcn(exc),
            "original_stream": msg.topic,
            "original_id": str(msg.offset),
            "group": group,
            "attempts": str(attempts),
            "failed_at": now_iso(),
        })
        with self.client.pipeline(transaction=True) as pipe:
            pipe.xadd(dlq, fields, maxlen=self.maxlen, approximate=True)
            pipe.xack(msg.topic, group, msg.offset)
            pipe.execute()
        return dlq

    def tick(self) -> None:
        pass

    def close(self) -> None:
        self.client.close()
