"""Shared bookkeeping for the event collectors: rows and dead-letter summaries."""
from __future__ import annotations

import fnmatch
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from eventscope.decode import decode_message, is_dead_letter
from eventscope.mask import headers_json, masked_payload, preview


def event_row(now, source: str, broker: str, topic: str, partition: int, offset: str,
              value: bytes | None, headers: dict[str, bytes], broker_at: pd.Timestamp | None,
              dead_letter: bool, payload_max_chars: int = 4000, decoder=None) -> dict:
    """One ``events`` row from a raw message (never raises on bad payloads).

    Headers, a 300-character preview and the whole payload (when it fits in
    ``payload_max_chars``) are kept for every event, personal data masked. ``at`` is the
    envelope's time as written (None when it has none): ``schemas.conform`` reads it and falls
    back to ``broker_at``, so the column stays text that parses in one vectorised pass.
    """
    row, body = decoded_row(now, source, broker, topic, partition, offset, value, headers, broker_at,
                            dead_letter, decoder=decoder)
    return with_masked_text(row, body, value, headers, payload_max_chars)


def decoded_row(now, source: str, broker: str, topic: str, partition: int, offset: str,
                value: bytes | None, headers: dict[str, bytes], broker_at: pd.Timestamp | None,
                dead_letter: bool, decoder=None) -> tuple[dict, object]:
    """The first, cheap half of :func:`event_row`: the decoded fields and the broker's
    metadata, without the masked text columns, plus the parsed JSON body (or None).

    Collectors decide on sampling from this row, before paying for the masking."""
    row = decode_message(value, headers, with_body=True, decoder=decoder)
    body = row.pop("_body")
    size = len(value) if value else sum(len(v) for v in headers.values())
    dead_letter = dead_letter or is_dead_letter(headers)
    row.update(observed_at=now, source=source, broker=broker, topic=topic, partition=partition,
               offset=offset, broker_at=broker_at, dead_letter=dead_letter, size_bytes=size)
    if dead_letter:
        row["original_topic"] = row["original_topic"] or source_topic_from_name(topic)
    return row, body


def with_masked_text(row: dict, body, value: bytes | None, headers: dict[str, bytes],
                     payload_max_chars: int = 4000) -> dict:
    """The second half of :func:`event_row`: ``payload``, ``preview`` and ``headers`` text,
    personal data masked, added to ``row``."""
    raw = value if value else headers.get("envelope") or headers.get("payload")
    # a payload far over the limit cannot fit once masked: skip masking megabytes for nothing
    fits = len(raw or b"") <= 4 * payload_max_chars
    row["payload"] = masked_payload(body, payload_max_chars) if fits else ""
    row["preview"] = row["payload"][:299] + "…" if len(row["payload"]) > 300 else (row["payload"] or preview(raw))
    row["headers"] = headers_json(headers)
    return row


def in_sample(correlation_id, ratio: float) -> bool:
    """Keep this event? Decided by a stable hash of the correlation ID, not per message,
    so a sampled chain is complete on every topic and broker (CRC-32 of the UTF-8 ID,
    the same in every process); events without a correlation ID are always kept."""
    if ratio >= 1.0 or not correlation_id or not isinstance(correlation_id, str):
        return True
    return zlib.crc32(correlation_id.encode("utf-8", "replace")) < ratio * 4294967296.0


def glob_filter(patterns) -> re.Pattern:
    """Shell-style globs (``orders*``, ``*.DLT``) as one compiled regex; empty = everything."""
    patterns = [str(p) for p in (patterns or []) if str(p)] or ["*"]
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


_DLQ_SUFFIX = re.compile(r"(\.DLT|-dlt|\.dlq|-dlq|:dlq|\.dead-letter)$", re.I)
_DLQ_PREFIX = re.compile(r"^dlq[.:-]", re.I)


def source_topic_from_name(dlq: str) -> str | None:
    """``orders.DLT`` → ``orders``; None when the name does not say."""
    stripped = _DLQ_PREFIX.sub("", _DLQ_SUFFIX.sub("", dlq))
    return stripped if stripped and stripped != dlq else None


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
