"""Shared bookkeeping for the event collectors: rows and dead-letter summaries."""
from __future__ import annotations

import contextlib
import fnmatch
import gc
import json
import re
import zlib
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np
import pandas as pd

from eventscope import schemas
from eventscope.dlq_names import source_topic_from_name
from eventscope.decode import DLQ_MARKER_SET, Decoder, default_decoder, int_header, text
from eventscope.mask import headers_json, masked_payload, preview


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector for a batch of messages (reading them, decoding them):
    they are many small objects in no reference cycle, which the collector would otherwise walk
    again and again while the batch grows. Memory is still freed by reference counting; the
    collector resumes afterwards (unless it was already off)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_MS_MAX = pd.Timestamp.max.value // 1_000_000  # the last millisecond a nanosecond timestamp holds


class EventBatch:
    """The messages one collector run read, turned into one ``events`` frame.

    A collector adds each raw message as it reads it (:meth:`add`); :meth:`frame` then decodes them
    all in one pass (:meth:`eventscope.decode.Decoder.decode_many`), counts the dead letters into
    their :class:`DeadLetterBook`, applies ``sample_ratio`` (before the masking, the costly part
    of a row), masks the payload, preview and headers of the events it keeps, and builds the frame
    column by column. Nothing here raises on a bad payload: it becomes an undecodable row.
    """

    def __init__(self, source: str, broker: str, decoder=None, sample_ratio: float = 1.0,
                 payload_max_chars: int = 4000, origins: "RecordOrigins | None" = None,
                 declared: dict[str, list[str]] | None = None):
        self.source, self.broker = source, broker
        self.origins = origins  # where record bytes were seen: the source of a DLQ without headers
        self.declared = declared or {}  # DLQ -> the topics its writer says it reads (Kafka Connect)
        self.decoder = decoder if decoder is not None else default_decoder()
        self.sample_ratio = sample_ratio
        self.payload_max_chars = payload_max_chars
        # one list per field, not a tuple per message: nothing new for the garbage collector to track
        self.topics, self.partitions, self.offsets, self.broker_ms = [], [], [], []
        self.values, self.headers, self.dead = [], [], []
        self._add = (self.topics.append, self.partitions.append, self.offsets.append, self.broker_ms.append,
                     self.values.append, self.headers.append, self.dead.append)

    def add(self, topic: str, partition: int, offset: str, broker_ms: int | None, value: bytes | None,
            headers: dict[str, bytes], dead_letter: bool) -> None:
        """One raw message: where it was read, the broker's time of it in epoch milliseconds
        (None when unknown), its value and headers (:func:`eventscope.decode.headers_to_dict`),
        and whether it sits in a dead-letter queue by name."""
        a, b, c, d, e, f, g = self._add
        a(topic), b(partition), c(offset), d(broker_ms), e(value), f(headers), g(dead_letter)

    def __len__(self) -> int:
        return len(self.topics)

    def frame(self, now, books: dict[str, "DeadLetterBook"] | None = None, text: bool = True) -> pd.DataFrame:
        """The ``events`` frame of everything added, stamped ``observed_at = now``.

        Dead letters (by topic name, or by the headers a dead-letter publisher writes) are counted
        into ``books`` (per topic) before sampling, so the DLQ summary sees every one. With
        ``text=False`` the masked ``payload``, ``preview`` and ``headers`` columns are left empty.

        The cyclic garbage collector is paused meanwhile (:func:`gc_paused`): its passes over the
        growing batch would otherwise cost about a third of the time (``bench/trace_bench.py``)."""
        with gc_paused():
            return self._frame(now, books, text)

    def _origin(self, dlq: str, raw) -> str | None:
        """Where a dead letter without a header naming it came from: the one topic its writer
        reads, else the DLQ's name (``orders.DLT``), else where its bytes were seen (among the
        writer's topics when it reads several)."""
        declared = self.declared.get(dlq) or []
        if len(declared) == 1:
            return declared[0]
        by_name = source_topic_from_name(dlq)
        if by_name and (not declared or by_name in declared):
            return by_name
        seen = self.origins.topic_of(raw) if self.origins is not None else None
        return seen if seen and (not declared or seen in declared) else None

    def _frame(self, now, books, text: bool) -> pd.DataFrame:
        n = len(self.topics)
        if not n:
            return schemas.empty("events")
        topics, partitions, offsets, broker_ms = self.topics, self.partitions, self.offsets, self.broker_ms
        values, headers, dead = self.values, self.headers, self.dead
        cols, bodies = self.decoder.decode_many(values, headers)
        dead = [d or not DLQ_MARKER_SET.isdisjoint(h) for d, h in zip(dead, headers)]
        # a time a timestamp cannot hold (a Redis entry ID set by hand to 18446744073709551615-0,
        # a producer's odd CreateTime) is unknown, not an error
        broker_ms = [m if type(m) is int and 0 <= m <= _MS_MAX else None for m in broker_ms]
        broker_at = pd.Series(pd.to_datetime(pd.array(broker_ms, dtype="Int64"), unit="ms", utc=True))
        where_from = [None] * n, [None] * n  # the original message's partition and offset
        # a Redis entry's payload is one of its fields
        raw = [v if v else h.get("envelope") or h.get("payload") for v, h in zip(values, headers)]
        if self.origins is not None:
            self.origins.remember([(t, v) for t, v, d in zip(topics, raw, dead) if not d])
        if any(dead):
            origin, reasons, errors = cols["original_topic"], cols["dlq_reason"], cols["decode_error"]
            for i in [i for i, d in enumerate(dead) if d]:
                if not origin[i]:
                    origin[i] = self._origin(topics[i], raw[i])
                where_from[0][i], where_from[1][i] = original_position(headers[i])
                if books is not None:
                    seen = broker_at.iat[i]
                    books.setdefault(topics[i], DeadLetterBook()).count(
                        reasons[i] or errors[i] or None, origin[i], None if pd.isna(seen) else seen)
        causes = [causation_of(v, h, b) for v, h, b in zip(raw, headers, bodies)]
        columns = {**cols, "topic": topics, "partition": partitions, "offset": offsets, "dead_letter": dead,
                   "causation_id": causes,
                   "original_partition": where_from[0], "original_offset": where_from[1],
                   "size_bytes": [len(v) if v else sum(map(len, h.values())) for v, h in zip(values, headers)]}
        if self.sample_ratio < 1.0:
            keep = [i for i, cid in enumerate(cols["correlation_id"]) if in_sample(cid, self.sample_ratio)]
            if not keep:
                return schemas.empty("events")
            if len(keep) < n:
                pick = itemgetter(*keep) if len(keep) > 1 else (lambda seq: (seq[keep[0]],))
                columns = {k: pick(v) for k, v in columns.items()}
                broker_at = broker_at.take(keep).reset_index(drop=True)
                values, headers, bodies = pick(values), pick(headers), pick(bodies)
        if text:
            body_of, limit = Decoder.parsed_body, self.payload_max_chars
            columns["payload"], columns["preview"], columns["headers"] = (map(list, zip(*(
                masked_text(body_of(b), v, h, limit) for b, v, h in zip(bodies, values, headers)))))
        columns.update(observed_at=now, source=self.source, broker=self.broker, broker_at=broker_at)
        return schemas.conform_columns("events", columns, len(columns["topic"]))


class RecordOrigins:
    """Which topic a record's bytes were last seen on, for the newest ``size`` records.

    A dead letter without headers (Kafka Connect with
    ``errors.deadletterqueue.context.headers.enable=false``, its default) is a copy of the
    record that failed, byte for byte: seen on a watched topic first, it names its source.
    Keyed by CRC-32 and length (a few bytes per record, never the record itself); a record
    seen on two topics names neither."""

    AMBIGUOUS = ""

    def __init__(self, size: int = 20_000):
        self.size = size
        self.seen: OrderedDict[tuple[int, int], str] = OrderedDict()

    @staticmethod
    def _key(value: bytes | None) -> tuple[int, int] | None:
        return (zlib.crc32(value), len(value)) if value and len(value) >= 8 else None

    def remember(self, records) -> None:
        """``(topic, value)`` pairs read from topics that are not DLQs."""
        seen = self.seen
        for topic, value in records:
            key = self._key(value)
            if key is None:
                continue
            known = seen.get(key)
            seen[key] = topic if known is None or known == topic else self.AMBIGUOUS
            seen.move_to_end(key)
        while len(seen) > self.size:
            seen.popitem(last=False)

    def topic_of(self, value: bytes | None) -> str | None:
        """The topic these bytes were seen on, or None (never seen, or seen on several)."""
        key = self._key(value)
        return (self.seen.get(key) or None) if key is not None else None


_CAUSATION_KEYS = ("causation_id", "causationId", "causationid")
_CAUSATION_HEADERS = ("causation-id", "causation_id", "x-causation-id", "ce_causationid")


def causation_of(value: bytes | None, headers: dict[str, bytes], body) -> str | None:
    """The ID of the event that caused this one, when its envelope or headers carry one.
    Most payloads have none: a byte search skips them without parsing them again."""
    for name in _CAUSATION_HEADERS:
        if headers.get(name):
            return text(headers[name], 200)
    if not value or (b"ausation" not in value and type(body) is not dict):
        return None  # a dict body may come from a binary record (Avro) whose bytes name no field
    parsed = Decoder.parsed_body(body)
    if not isinstance(parsed, dict):
        return None
    meta = parsed.get("metadata") if isinstance(parsed.get("metadata"), dict) else {}
    for key in _CAUSATION_KEYS:
        found = parsed.get(key, meta.get(key))
        if isinstance(found, (str, int)) and str(found):
            return str(found)[:200]
    return None


def original_position(headers: dict[str, bytes]) -> tuple[int | None, int | None]:
    """(partition, offset) of the message a dead letter copies: Spring writes them as 4- and
    8-byte big-endian integers (``kafka_dlt-original-partition``/``-offset``), Kafka Connect
    as text (``__connect.errors.partition``/``.offset``)."""
    partition = int_header(headers.get("kafka_dlt-original-partition"))
    offset = int_header(headers.get("kafka_dlt-original-offset"))
    if partition is None and offset is None:
        partition = _int_text(headers.get("__connect.errors.partition"))
        offset = _int_text(headers.get("__connect.errors.offset"))
    return partition, offset


def _int_text(value: bytes | None) -> int | None:
    try:
        return int(value.decode("ascii")) if value else None
    except (UnicodeDecodeError, ValueError):
        return None


def masked_text(body, value: bytes | None, headers: dict[str, bytes], payload_max_chars: int = 4000
                ) -> tuple[str, str, str]:
    """``payload``, ``preview`` and ``headers`` text of one message, personal data masked: the
    whole payload as JSON (when it fits in ``payload_max_chars``), its first 300 characters, and
    the headers as a JSON object."""
    raw = value if value else headers.get("envelope") or headers.get("payload")
    # a payload far over the limit cannot fit once masked: skip masking megabytes for nothing
    payload = masked_payload(body, payload_max_chars) if len(raw or b"") <= 4 * payload_max_chars else ""
    shown = payload[:299] + "…" if len(payload) > 300 else (payload or preview(raw))
    return payload, shown, headers_json(headers)


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


@dataclass
class DeadLetterBook:
    """What the collector has seen in one DLQ: reasons, origin, oldest message."""

    reasons: Counter = field(default_factory=Counter)
    source_topics: Counter = field(default_factory=Counter)
    oldest_seen: pd.Timestamp | None = None
    # where the first read began per partition, when the read budget left older messages
    # unread (Kafka offsets, a Redis entry ID), and how many it left
    unread_until: dict = field(default_factory=dict)
    unread: int = 0

    def count(self, reason: str | None, original_topic: str | None, seen: pd.Timestamp | None) -> None:
        """Count one dead letter: its reason, the topic it came from, the broker's time of it."""
        self.reasons[reason or "unknown"] += 1
        if len(self.reasons) > 2 * BOOK_REASONS_KEPT:  # a DLQ whose every message has its own reason
            kept = dict(self.reasons.most_common(BOOK_REASONS_KEPT - 1))
            other = sum(self.reasons.values()) - sum(kept.values())
            self.reasons = Counter(kept)
            self.reasons[OTHER_REASONS] += other  # counted, never dropped
        if original_topic:
            self.source_topics[original_topic] += 1
            if len(self.source_topics) > 2 * BOOK_REASONS_KEPT:
                self.source_topics = Counter(dict(self.source_topics.most_common(BOOK_REASONS_KEPT)))
        if seen is not None and (self.oldest_seen is None or seen < self.oldest_seen):
            self.oldest_seen = seen

    def row(self, now, source: str, broker: str, dlq: str, depth: int, oldest_at, unread: int = 0,
            declared: list[str] | None = None) -> dict:
        """The ``dlq`` frame row for this queue (``unread``: messages held the reasons do not
        count; ``declared``: the topics its writer's configuration says it reads, the source
        while no dead letter named one)."""
        origin = self.source_topics.most_common(1)[0][0] if self.source_topics \
            else declared[0] if declared and len(declared) == 1 else None
        return {"sampled_at": now, "source": source, "broker": broker, "dlq": dlq,
                "source_topic": origin, "depth": depth,
                "oldest_at": oldest_at if oldest_at is not None else (self.oldest_seen if depth else None),
                "reasons": json.dumps(dict(self.reasons.most_common(50))), "unread": min(unread, depth)}


# -- reading state: where each partition's reading stands, saved with the store ---------------
BOOK_PARTITION = -1  # the reading_state row of a DLQ's book
BOOK_REASONS_KEPT = 500  # distinct reasons a book keeps (the most frequent); the rest are one
OTHER_REASONS = "(other reasons)"


def offset_key(broker: str, offset: str):
    """A stored offset as something that orders: Kafka offsets as numbers, Redis entry IDs
    as (milliseconds, sequence)."""
    if broker == "redis":
        ms, _, seq = str(offset).partition("-")
        return (int(ms), int(seq or 0))
    return int(offset)


def reading_rows(now, source: str, broker: str, positions: dict, books: dict) -> list[dict]:
    """``reading_state`` rows: one per (topic, partition) position, one per DLQ book."""
    rows = [{"saved_at": now, "source": source, "broker": broker, "topic": topic, "partition": partition,
             "position": str(position)} for (topic, partition), position in positions.items()]
    for topic, book in books.items():
        rows.append({"saved_at": now, "source": source, "broker": broker, "topic": topic,
                     "partition": BOOK_PARTITION,
                     "reasons": json.dumps(dict(book.reasons.most_common(BOOK_REASONS_KEPT))),
                     "source_topics": json.dumps(dict(book.source_topics.most_common(BOOK_REASONS_KEPT))),
                     "oldest_seen": book.oldest_seen,
                     "unread_until": json.dumps({str(k): str(v) for k, v in book.unread_until.items()})
                     if book.unread_until else None, "unread": book.unread})
    return rows


def restore_reading(rows: pd.DataFrame, events: pd.DataFrame | None, broker: str
                    ) -> tuple[dict, dict[str, DeadLetterBook]]:
    """(positions, books) from saved ``reading_state`` rows of one source, moved past the
    stored ``events`` read after the save (a collector stopped between storing its events
    and saving its state): those are not read twice, and their dead letters are counted."""
    positions, books = {}, {}
    for r in rows.itertuples(index=False):
        if int(r.partition) == BOOK_PARTITION:
            book = DeadLetterBook()
            book.reasons.update(_counts(r.reasons))
            book.source_topics.update(_counts(r.source_topics))
            book.oldest_seen = None if pd.isna(r.oldest_seen) else pd.Timestamp(r.oldest_seen)
            book.unread_until = {int(k): v for k, v in _counts(r.unread_until, str).items()}
            book.unread = 0 if pd.isna(r.unread) else int(r.unread)
            books[str(r.topic)] = book
        elif isinstance(r.position, str) and r.position:
            positions[(str(r.topic), int(r.partition))] = r.position
    if events is None or events.empty:
        return positions, books
    # Vectorised: a restart after a busy minute finds ~150,000 events stored since the save; a
    # Python loop over them took 6 s and left ~40 MB behind in a process meant to stay small.
    rows_of = pd.DataFrame({"topic": events["topic"].astype(str).to_numpy(dtype=object),
                            "partition": events["partition"].astype("int64").to_numpy()})
    at = _offset_columns(broker, events["offset"])
    for name, column in at.items():
        rows_of[name] = column
    ordered = list(at)  # each row's offset as something that orders, most significant first
    # by offset (stable: equal offsets keep the order they were stored in)
    order = np.lexsort([rows_of[c].to_numpy() for c in reversed(ordered)])
    rows_of = rows_of.iloc[order]
    if positions:
        saved = [(t, p, *_offset_tuple(broker, v)) for (t, p), v in positions.items()]
        saved = pd.DataFrame(saved, columns=["topic", "partition", *("saved_" + c for c in ordered)])
        both = rows_of.merge(saved, on=["topic", "partition"], how="left")  # row order kept: used as arrays
        known = both["saved_" + ordered[0]].notna().to_numpy()
        # Kafka saves the next offset to read (an earlier one was read), Redis the last ID read
        after = _later(both, ordered, inclusive=broker != "redis")
        rows_of = rows_of[~known | after]
    rows_of = rows_of[~rows_of.duplicated(["topic", "partition", *ordered])]  # stored twice, read once
    if rows_of.empty:
        return positions, books
    last = rows_of.groupby(["topic", "partition"], sort=False).tail(1)
    raw = events["offset"].to_numpy(dtype=object)
    for topic, partition, i in zip(last["topic"], last["partition"].tolist(), last.index):
        positions[(topic, partition)] = str(raw[i]) if broker == "redis" else str(int(raw[i]) + 1)
    dead = events["dead_letter"].to_numpy(dtype=object)[rows_of.index]
    for i in rows_of.index[pd.array(dead, dtype="boolean").fillna(False).to_numpy(dtype=bool)]:
        r = events.iloc[i]
        book = books.setdefault(str(r["topic"]), DeadLetterBook())
        book.count(None if pd.isna(r["dlq_reason"]) else r["dlq_reason"],
                   None if pd.isna(r["original_topic"]) else r["original_topic"],
                   None if pd.isna(r["broker_at"]) else r["broker_at"])
    return positions, books


def _offset_columns(broker: str, offsets: pd.Series) -> dict[str, np.ndarray]:
    """:func:`offset_key` of a column at once: Kafka ``at``; Redis ``ms`` and ``seq``."""
    text = offsets.astype(str)
    if broker == "redis":
        parts = text.str.partition("-")
        seq = parts[2].where(parts[2] != "", "0")
        return {"ms": parts[0].astype("int64").to_numpy(), "seq": seq.astype("int64").to_numpy()}
    return {"at": text.astype("int64").to_numpy()}


def _offset_tuple(broker: str, offset: str) -> tuple:
    key = offset_key(broker, offset)
    return key if isinstance(key, tuple) else (key,)


def _later(both: pd.DataFrame, ordered: list[str], inclusive: bool) -> np.ndarray:
    """Rows whose offset comes after their saved one (or equals it, ``inclusive``), compared
    column by column, most significant first; rows without a saved offset come out False."""
    result = np.zeros(len(both), dtype=bool)
    equal = np.ones(len(both), dtype=bool)
    for c in ordered:
        mine, saved = both[c].to_numpy(), both["saved_" + c].to_numpy()
        known = ~pd.isna(saved)
        saved = np.where(known, saved, 0).astype("int64")
        result |= equal & known & (mine > saved)
        equal &= known & (mine == saved)
    return result | (equal if inclusive else False)


def _counts(text, kind=int) -> dict:
    if not isinstance(text, str) or not text:
        return {}
    try:
        return {str(k): kind(v) for k, v in json.loads(text).items()}
    except (TypeError, ValueError, AttributeError):
        return {}
