"""Shared bookkeeping for the event collectors: rows and dead-letter summaries."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from eventscope.decode import decode_message


def event_row(now, source: str, broker: str, topic: str, partition: int, offset: str,
              value: bytes | None, headers: dict[str, bytes], broker_at: pd.Timestamp | None,
              dead_letter: bool) -> dict:
    """One ``events`` row from a raw message (never raises on bad payloads)."""
    fields = decode_message(value, headers)
    at = fields.pop("at")
    size = len(value) if value else sum(len(v) for v in headers.values())
    return {"observed_at": now, "source": source, "broker": broker, "topic": topic,
            "partition": partition, "offset": offset, "at": at or broker_at,
            "broker_at": broker_at, "dead_letter": dead_letter, "size_bytes": size, **fields}


@dataclass
class DeadLetterBook:
    """What the collector has seen in one DLQ: reasons, origin, oldest message."""

    reasons: Counter = field(default_factory=Counter)
    source_topics: Counter = field(default_factory=Counter)
    oldest_seen: pd.Timestamp | None = None

    def add(self, row: dict) -> None:
        """Count one dead-lettered event row."""
        self.reasons[row.get("dlq_reason") or row.get("decode_error") or "unknown"] += 1
        if row.get("original_topic"):
            self.source_topics[row["original_topic"]] += 1
        seen = row.get("broker_at")
        if seen is not None and (self.oldest_seen is None or seen < self.oldest_seen):
            self.oldest_seen = seen

    def row(self, now, source: str, broker: str, dlq: str, depth: int, oldest_at) -> dict:
        """The ``dlq`` frame row for this queue."""
        origin = self.source_topics.most_common(1)[0][0] if self.source_topics else None
        return {"sampled_at": now, "source": source, "broker": broker, "dlq": dlq,
                "source_topic": origin, "depth": depth,
                "oldest_at": oldest_at if oldest_at is not None else (self.oldest_seen if depth else None),
                "reasons": json.dumps(dict(self.reasons.most_common(50)))}
