"""Frame schemas: every frame the collectors produce and the store keeps.

Each schema is an ordered mapping ``column -> (dtype, meaning)``. Collectors build
frames with :func:`empty` / :func:`conform`, so every frame that reaches the store
has exactly these columns in this order with these dtypes. The README's "Frames"
section is generated from the same table (``tests/unit/test_docs.py`` checks it).

Times are ``datetime64[ns, UTC]``. Nullable integers use pandas' ``Int64`` so that
"unknown" stays distinct from zero (a partition with no committed offset has
``committed = <NA>``, not 0 and not a huge number).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas._libs import lib
from pandas.errors import OutOfBoundsDatetime

TIME = "datetime64[ns, UTC]"
_NS_MIN, _NS_MAX = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")
STR = "string"

LAG = {
    "sampled_at": (TIME, "when the sample was taken (collector clock, UTC)"),
    "source": (STR, "name of the configured source (e.g. `kafka`, `redis`, `replay`)"),
    "broker": (STR, "cluster: the configured source's `name` (by default its kind's name)"),
    "kind": (STR, "broker kind of the cluster: `kafka`, `redis` or `rabbitmq`"),
    "group": (STR, "consumer group name"),
    "topic": (STR, "Kafka topic or Redis stream key"),
    "partition": ("int64", "partition number; 0 for a Redis stream"),
    "committed": ("Int64", "committed offset (Kafka) or entries-read (Redis); <NA> when the group has none"),
    "end": ("Int64", "log end offset (Kafka) or entries-added (Redis)"),
    "lag": ("Int64", "max(0, end - committed); <NA> when unknown"),
    "lag_seconds": ("float64", "age of the oldest unconsumed message, seconds; NaN when unknown"),
    "group_state": (STR, "group state as the broker reports it (Stable, Empty, ...); `n/a` for Redis"),
    "members": ("Int64", "Kafka: members of the group; Redis: consumers active within `redis.stuck_idle_s`"),
    "pending": ("Int64", "Redis: entries delivered but not acknowledged (PEL size); <NA> for Kafka"),
}

DLQ = {
    "sampled_at": (TIME, "when the sample was taken"),
    "source": (STR, "configured source name"),
    "broker": (STR, "cluster: the configured source's `name` (by default its kind's name)"),
    "kind": (STR, "broker kind of the cluster: `kafka`, `redis` or `rabbitmq`"),
    "dlq": (STR, "dead-letter topic or stream"),
    "source_topic": (STR, "topic the failures came from, when known"),
    "depth": ("int64", "messages currently held"),
    "oldest_at": (TIME, "time of the oldest message held; NaT when empty or unknown"),
    "reasons": (STR, "JSON object `{reason: count}` over the messages seen"),
    "unread": ("Int64", "messages held that `reasons` does not count: a DLQ deeper than `dlq_read_max` "
                        "when first seen was read from its newest messages; 0 when all were read"),
}

EVENTS = {
    "observed_at": (TIME, "when eventscope read the message"),
    "source": (STR, "configured source name"),
    "broker": (STR, "cluster: the configured source's `name` (by default its kind's name)"),
    "kind": (STR, "broker kind of the cluster: `kafka`, `redis` or `rabbitmq`"),
    "topic": (STR, "topic or stream key"),
    "partition": ("int64", "partition; 0 for Redis"),
    "offset": (STR, "Kafka offset or Redis entry ID, as text"),
    "at": (TIME, "event time: envelope timestamp, else the broker timestamp"),
    "broker_at": (TIME, "broker timestamp (Kafka record time / Redis entry ID time)"),
    "event_type": (STR, "event type (OrderPlaced, ...); `<undecodable>` when the payload could not be read"),
    "event_id": (STR, "event ID from the envelope"),
    "service": (STR, "producing service (envelope `source`)"),
    "correlation_id": (STR, "correlation ID"),
    "causation_id": (STR, "the event ID of the event that caused this one, when the envelope "
                          "(`causation_id`, `causationId`, `metadata.causationId`) or a header says"),
    "trace_id": (STR, "W3C trace ID from `traceparent`"),
    "parent_span_id": (STR, "W3C parent span ID from `traceparent`"),
    "dead_letter": ("bool", "True when the message sits in a dead-letter queue"),
    "dlq_reason": (STR, "failure reason: exception class + message with IDs and numbers as `#`"),
    "original_topic": (STR, "topic a dead-lettered message came from"),
    "original_partition": ("Int64", "dead letters: partition of the original message (Spring, Kafka Connect headers)"),
    "original_offset": ("Int64", "dead letters: offset of the original message (Spring, Kafka Connect headers)"),
    "dlq_class": (STR, "dead letters: exception class from the DLQ headers"),
    "headers": (STR, "headers (Redis: fields other than the payload) as a JSON object of text; binary as hex, personal data masked"),
    "preview": (STR, "first 300 characters of the payload, personal data masked"),
    "schema_version": (STR, "envelope `schema_version` (or `dataschema`/`ce_dataschema`); empty when absent"),
    "payload": (STR, "the payload as JSON text with personal data masked, up to `collect.payload_max_chars`; empty when undecodable or larger"),
    "size_bytes": ("int64", "payload size in bytes"),
    "decode_error": (STR, "why the payload could not be decoded; empty when it could"),
}

HEALTH = {
    "sampled_at": (TIME, "when the collector ran"),
    "source": (STR, "configured source name"),
    "collector": (STR, "collector name (e.g. `kafka.offsets`)"),
    "ok": ("bool", "True when the run succeeded"),
    "error": (STR, "one-line error message when it failed; empty when ok"),
    "duration_ms": ("float64", "how long the run took"),
    "rows": ("int64", "rows the run produced"),
    "last_success": (TIME, "last time this collector succeeded; NaT if never"),
}

TOPICS = {
    "sampled_at": (TIME, "when the sample was taken"),
    "source": (STR, "configured source name"),
    "broker": (STR, "cluster: the configured source's `name` (by default its kind's name)"),
    "kind": (STR, "broker kind of the cluster: `kafka`, `redis` or `rabbitmq`"),
    "topic": (STR, "topic or stream key"),
    "partition": ("int64", "partition; 0 for Redis"),
    "start": ("Int64", "earliest offset still held (Kafka) / entries held (Redis: length)"),
    "end": ("Int64", "log end offset (Kafka) / entries-added (Redis)"),
}

CONSUMERS = {
    "sampled_at": (TIME, "when the sample was taken"),
    "source": (STR, "configured source name"),
    "broker": (STR, "cluster: the configured source's `name` (by default its kind's name)"),
    "kind": (STR, "broker kind of the cluster: `kafka`, `redis` or `rabbitmq`"),
    "group": (STR, "consumer group"),
    "topic": (STR, "Redis: the stream; Kafka: the assigned topics, comma-separated"),
    "consumer": (STR, "Kafka member client id / Redis consumer name"),
    "member_id": (STR, "Kafka: the member's ID in its group; empty for Redis"),
    "host": (STR, "Kafka member host; empty for Redis"),
    "assignment": (STR, "Kafka: assigned partitions as `topic:p,p`; empty for Redis"),
    "pending": ("Int64", "Redis: entries delivered to this consumer and not acknowledged"),
    "idle_ms": ("Int64", "Redis: milliseconds since the consumer's last interaction"),
}

STUCK = {
    "sampled_at": (TIME, "when the sample was taken"),
    "source": (STR, "configured source name"),
    "broker": (STR, "cluster: the configured source's `name` (by default its kind's name)"),
    "kind": (STR, "broker kind of the cluster: `kafka`, `redis` or `rabbitmq`"),
    "topic": (STR, "stream key"),
    "group": (STR, "consumer group"),
    "entry_id": (STR, "pending entry ID"),
    "consumer": (STR, "consumer holding the entry"),
    "idle_ms": ("int64", "milliseconds since the entry was last delivered"),
    "deliveries": ("int64", "times the entry has been delivered"),
}

ALERTS = {
    "at": (TIME, "when the transition happened (the sample it was evaluated on)"),
    "rule": (STR, "rule name (e.g. `lag_seconds`, `group_stall`, `dlq_depth`)"),
    "metric": (STR, "what the rule measures (`lag`, `lag_seconds`, `lag_status`, `dlq_depth`, ...)"),
    "severity": (STR, "`warning` or `critical`"),
    "subject": (STR, "what it is about: `broker:group/topic`, `broker:dlq` or `source/collector`"),
    "transition": (STR, "`pending`, `firing`, `escalated`, `resolved` or `cancelled`"),
    "value": ("float64", "the measured value at the transition; NaN for a status"),
    "threshold": ("float64", "threshold of the severity; NaN for a status rule"),
    "clear": ("float64", "a firing alert resolves below this value; NaN for a status rule"),
    "since": (TIME, "when the condition began (start of the pending run)"),
    "fired_at": (TIME, "when it started firing; NaT while pending"),
    "episode": (STR, "`rule|subject|since`: one pending-to-resolved run (notification dedupe key)"),
    "detail": (STR, "the lag status, a collector error, or why it resolved"),
}

ALERTS_ACTIVE = {
    "rule": (STR, "rule name"),
    "metric": (STR, "what the rule measures"),
    "subject": (STR, "what it is about"),
    "state": (STR, "`pending` or `firing`"),
    "severity": (STR, "`warning` or `critical`"),
    "since": (TIME, "when the condition began"),
    "fired_at": (TIME, "when it started firing; NaT while pending"),
    "value": ("float64", "the value at the last evaluation that changed it"),
    "threshold": ("float64", "threshold of the severity; NaN for a status rule"),
    "clear": ("float64", "a firing alert resolves below this value; NaN for a status rule"),
    "detail": (STR, "the lag status or a collector error"),
}

QUEUES = {
    "sampled_at": (TIME, "when the sample was taken"),
    "source": (STR, "configured source name"),
    "broker": (STR, "cluster: the configured source's `name` (by default its kind's name)"),
    "kind": (STR, "broker kind of the cluster: `kafka`, `redis` or `rabbitmq`"),
    "vhost": (STR, "RabbitMQ virtual host"),
    "queue": (STR, "queue name"),
    "type": (STR, "`classic`, `quorum` or `stream`"),
    "state": (STR, "queue state as RabbitMQ reports it (`running`, `idle`, `flow`, ...)"),
    "ready": ("Int64", "messages ready for delivery; <NA> when the API gives none (a stream: see `messages`)"),
    "unacked": ("Int64", "messages delivered to consumers and not yet acknowledged"),
    "messages": ("Int64", "messages held (ready + unacked; a stream: the messages it keeps)"),
    "consumers": ("Int64", "consumers attached to the queue"),
    "consumer_utilisation": ("float64", "share of time (0..1) the queue could deliver to its consumers at once; NaN when unknown"),
    "publish_rate": ("float64", "messages published into the queue per second (the API's counters over the collector's last 30 s); NaN when absent"),
    "deliver_rate": ("float64", "messages delivered to consumers or fetched per second (same window); NaN when absent"),
    "ack_rate": ("float64", "messages acknowledged per second (same window); NaN when absent"),
    "head_at": (TIME, "`timestamp` property of the message at the head of the queue, when publishers set it; NaT otherwise"),
    "dead_letter_exchange": (STR, "exchange its dead letters go to (queue argument, else policy); empty when none"),
    "dead_letter_routing_key": (STR, "routing key its dead letters are republished with; empty when theirs is kept"),
    "policy": (STR, "policy applied to the queue; empty when none"),
    "is_dlq": ("bool", "True when the queue receives dead letters (bound to a dead-letter exchange, or named like a DLQ)"),
}

BINDINGS = {
    "sampled_at": (TIME, "when the sample was taken"),
    "source": (STR, "configured source name"),
    "broker": (STR, "cluster: the configured source's `name` (by default its kind's name)"),
    "kind": (STR, "broker kind of the cluster: `kafka`, `redis` or `rabbitmq`"),
    "vhost": (STR, "RabbitMQ virtual host"),
    "exchange": (STR, "exchange name (`binding`: the source of the binding; `dlx`: the dead-letter exchange)"),
    "exchange_type": (STR, "`direct`, `topic`, `fanout`, `headers`, ...; empty when unknown"),
    "queue": (STR, "`binding`: the queue bound; `dlx`: the queue whose dead letters go to the exchange"),
    "routing_key": (STR, "binding key (`binding`); dead-letter routing key, empty when kept (`dlx`)"),
    "route": (STR, "`binding` (exchange → queue) or `dlx` (queue → its dead-letter exchange)"),
}

# -- derived frames: written by eventscope.recorder when a sample is stored ------------------
STATUS = (STR, "lag verdict over the last 5 minutes: `OK`, `WARN`, `ERR`, `STALL`, `STOP`, `REWIND` or `UNKNOWN`")

LAG_LATEST = {**LAG, "status": STATUS}

LAG_GROUPS = {
    "sampled_at": (TIME, "newest sample of the group's partitions on this topic"),
    "source": (STR, "configured source name"),
    "broker": (STR, "cluster: the configured source's `name` (by default its kind's name)"),
    "kind": (STR, "broker kind of the cluster: `kafka`, `redis` or `rabbitmq`"),
    "group": (STR, "consumer group"),
    "topic": (STR, "topic or stream key"),
    "partitions": ("int64", "partitions of the topic the group has a row for"),
    "lag": ("Int64", "sum of the partitions' lag; <NA> when none is known"),
    "max_lag": ("Int64", "largest partition lag"),
    "lag_seconds": ("float64", "largest partition lag in seconds"),
    "status": (STR, "worst partition status"),
    "members": ("Int64", "members (Kafka) or active consumers (Redis)"),
    "group_state": (STR, "group states reported, comma-separated"),
}

LAG_SAMPLES = {
    "sampled_at": (TIME, "when the sample was taken"),
    "source": (STR, "configured source name"),
    "broker": (STR, "cluster: the configured source's `name` (by default its kind's name)"),
    "kind": (STR, "broker kind of the cluster: `kafka`, `redis` or `rabbitmq`"),
    "group": (STR, "consumer group"),
    "topic": (STR, "topic or stream key"),
    "partitions": ("int64", "partitions of the topic in the sample"),
    "lag": ("Int64", "sum of the partitions' lag; <NA> when none is known"),
    "max_lag": ("Int64", "largest partition lag"),
    "lag_seconds": ("float64", "largest partition lag in seconds"),
    "status": (STR, "worst partition status, as judged when the sample was written"),
    "members": ("Int64", "members (Kafka) or active consumers (Redis)"),
    "committed": ("Int64", "sum of the partitions' committed offsets"),
    "consumed": ("int64", "messages consumed since the previous sample: forward steps of the committed offsets"),
}

LAG_1M = {
    "minute": (TIME, "start of the minute (UTC)"),
    "source": (STR, "configured source name"),
    "broker": (STR, "cluster: the configured source's `name` (by default its kind's name)"),
    "kind": (STR, "broker kind of the cluster: `kafka`, `redis` or `rabbitmq`"),
    "group": (STR, "consumer group"),
    "topic": (STR, "topic or stream key"),
    "partitions": ("int64", "partitions in the minute's newest sample"),
    "lag": ("Int64", "sum of partition lag in the minute's newest sample; <NA> when none is known"),
    "lag_max": ("Int64", "largest summed lag of any sample in the minute"),
    "lag_seconds": ("float64", "largest partition lag in seconds in the minute"),
    "status": (STR, "worst group status of any sample in the minute"),
    "members": ("Int64", "members in the minute's newest sample"),
    "committed": ("Int64", "sum of committed offsets in the minute's newest sample"),
    "consumed": ("int64", "messages consumed in the minute: forward steps of the committed offsets"),
    "samples": ("int64", "samples rolled into the row"),
}

DLQ_1M = {
    "minute": (TIME, "start of the minute (UTC)"),
    "source": (STR, "configured source name"),
    "broker": (STR, "cluster: the configured source's `name` (by default its kind's name)"),
    "kind": (STR, "broker kind of the cluster: `kafka`, `redis` or `rabbitmq`"),
    "dlq": (STR, "dead-letter topic or stream"),
    "source_topic": (STR, "topic the failures came from, when known"),
    "depth": ("int64", "messages held in the minute's newest sample"),
    "depth_max": ("int64", "most messages held in any sample of the minute"),
    "samples": ("int64", "samples rolled into the row"),
}

READING_STATE = {
    "saved_at": (TIME, "when the collector saved it (after storing the events it covers)"),
    "source": (STR, "configured source name"),
    "broker": (STR, "cluster: the configured source's `name` (by default its kind's name)"),
    "kind": (STR, "broker kind of the cluster: `kafka`, `redis` or `rabbitmq`"),
    "topic": (STR, "topic or stream key"),
    "partition": ("int64", "partition (0 for Redis); -1 on a DLQ's book row"),
    "position": (STR, "Kafka: the next offset to read; Redis: the last entry ID read; an OTLP file (`otel`): `inode:byte offset`"),
    "reasons": (STR, "book row: JSON `{reason: count}` of every dead letter read from the DLQ"),
    "source_topics": (STR, "book row: JSON `{topic: count}` the dead letters came from"),
    "oldest_seen": (TIME, "book row: broker time of the oldest dead letter read"),
    "unread_until": (STR, "book row: JSON `{partition: offset}` where the first read began, when "
                          "`dlq_read_max` left older messages unread"),
    "unread": ("Int64", "book row: how many messages that first read left unread"),
}

SPANS = {
    "observed_at": (TIME, "when the collector read the span"),
    "source": (STR, "configured source name (`otel`)"),
    "trace_id": (STR, "W3C trace ID, 32 hex digits"),
    "span_id": (STR, "span ID, 16 hex digits"),
    "parent_span_id": (STR, "the parent span's ID; null for a root span"),
    "links": (STR, "span IDs the span links to, space-separated (a messaging consumer's process span "
                   "links to the send span of the message it processes)"),
    "name": (STR, "span name"),
    "kind": (STR, "`INTERNAL`, `SERVER`, `CLIENT`, `PRODUCER`, `CONSUMER` or `UNSPECIFIED`"),
    "service": (STR, "`service.name` of the span's resource"),
    "start_at": (TIME, "when the span started"),
}

SCHEMAS: dict[str, dict[str, tuple[str, str]]] = {
    "lag": LAG,
    "dlq": DLQ,
    "events": EVENTS,
    "health": HEALTH,
    "topics": TOPICS,
    "consumers": CONSUMERS,
    "stuck": STUCK,
    "alerts": ALERTS,
    "alerts_active": ALERTS_ACTIVE,
    "lag_latest": LAG_LATEST,
    "lag_samples": LAG_SAMPLES,
    "lag_groups": LAG_GROUPS,
    "topics_latest": TOPICS,
    "consumers_latest": CONSUMERS,
    "stuck_latest": STUCK,
    "dlq_latest": DLQ,
    "lag_1m": LAG_1M,
    "lag_1m_open": LAG_1M,
    "dlq_1m": DLQ_1M,
    "dlq_1m_open": DLQ_1M,
    "reading_state": READING_STATE,
    "spans": SPANS,
    "queues": QUEUES,
    "queues_latest": QUEUES,
    "bindings": BINDINGS,
    "bindings_latest": BINDINGS,
}

#: how each frame is kept (eventscope.store): ``log`` for the whole retention, ``raw`` for
#: the raw window only, ``snapshot`` one file replaced whole on every write
KIND = {"lag": "raw", "lag_samples": "raw", "dlq": "raw", "topics": "raw", "consumers": "raw", "stuck": "raw",
        "events": "log", "health": "log", "alerts": "log", "alerts_active": "snapshot", "lag_1m": "log", "dlq_1m": "log",
        "lag_latest": "snapshot", "lag_groups": "snapshot", "topics_latest": "snapshot",
        "consumers_latest": "snapshot", "stuck_latest": "snapshot", "dlq_latest": "snapshot",
        "lag_1m_open": "snapshot", "dlq_1m_open": "snapshot", "reading_state": "snapshot", "spans": "log",
        "queues": "raw", "queues_latest": "snapshot", "bindings": "raw", "bindings_latest": "snapshot"}

#: the order a log frame's merged parts are written in (default: time): a rollup sorted by
#: subject lets a reader of one group skip every other group's row groups
SORT = {"lag_1m": ["broker", "group", "topic", "minute"], "dlq_1m": ["broker", "dlq", "minute"]}

#: the column that orders each frame in time (retention and windows use it)
TIME_COLUMN = {"lag": "sampled_at", "dlq": "sampled_at", "events": "observed_at",
               "health": "sampled_at", "topics": "sampled_at", "consumers": "sampled_at",
               "stuck": "sampled_at", "alerts": "at", "alerts_active": "since", "lag_latest": "sampled_at", "lag_samples": "sampled_at",
               "lag_groups": "sampled_at", "topics_latest": "sampled_at",
               "consumers_latest": "sampled_at", "stuck_latest": "sampled_at",
               "dlq_latest": "sampled_at", "lag_1m": "minute", "lag_1m_open": "minute",
               "dlq_1m": "minute", "dlq_1m_open": "minute", "reading_state": "saved_at",
               "spans": "observed_at", "queues": "sampled_at", "queues_latest": "sampled_at",
               "bindings": "sampled_at", "bindings_latest": "sampled_at"}


def empty(name: str) -> pd.DataFrame:
    """An empty frame with the schema's columns and dtypes."""
    schema = SCHEMAS[name]
    return pd.DataFrame({col: pd.Series(dtype=dtype) for col, (dtype, _) in schema.items()})


#: frames whose ``kind`` column is not the broker kind
NOT_BROKER_KIND = frozenset({"spans"})


def conform(name: str, frame: pd.DataFrame | list[dict], columns: list[str] | None = None) -> pd.DataFrame:
    """Return ``frame`` with exactly the schema's columns, in order, cast to its dtypes.

    Missing columns are filled with nulls (False for bool columns); extra columns
    raise ``ValueError`` so a typo in a collector fails loudly, not silently.
    ``columns`` restricts the schema to those columns, in that order.
    """
    schema = SCHEMAS[name] if columns is None else {c: SCHEMAS[name][c] for c in columns}
    if not isinstance(frame, pd.DataFrame):
        rows = list(frame)
        if all(type(row) is dict for row in rows):
            return _conform_rows(name, schema, rows)
        frame = pd.DataFrame(rows)
    extra = [c for c in frame.columns if c not in schema]
    if extra:
        raise ValueError(f"frame {name!r} has columns not in its schema: {extra}")
    out = {}
    n = len(frame)
    for col, (dtype, _) in schema.items():
        if col in frame.columns:
            series = frame[col]
        elif dtype == "bool":
            series = pd.Series([False] * n, index=frame.index)
        elif dtype == "int64":
            series = pd.Series([0] * n, index=frame.index)
        else:
            series = pd.Series([None] * n, index=frame.index, dtype="object")
        out[col] = _cast(series, dtype)
    return pd.DataFrame(_fix_times(name, out)).reset_index(drop=True)


def _fix_times(name: str, out: dict) -> dict:
    if name == "events" and "at" in out and "broker_at" in out:
        # an envelope time that is missing or unreadable: the broker's time
        out["at"] = out["at"].fillna(out["broker_at"])
    if "kind" in out and "broker" in out and name not in NOT_BROKER_KIND and out["kind"].hasnans:
        # rows written before clusters had names, and a recording: a cluster's default name is
        # its kind's. The runner sets every live source's kind (eventscope.runner).
        out["kind"] = out["kind"].fillna(out["broker"])
    return out


def _conform_rows(name: str, schema: dict, rows: list[dict]) -> pd.DataFrame:
    """:func:`conform` of a list of row dicts (what collectors build), column by column: no
    intermediate frame whose object columns pandas would convert once and ``_cast`` again.
    A key missing from a row is a null there, as in ``pd.DataFrame(rows)``."""
    extra = [c for c in set().union(*rows) if c not in schema] if rows else []
    if extra:
        raise ValueError(f"frame {name!r} has columns not in its schema: {sorted(extra, key=str)}")
    names = list(schema)
    # pandas' own row-dict transpose (what pd.DataFrame(rows) runs; a missing key becomes NaN)
    table = lib.dicts_to_array(rows, names) if rows else np.empty((0, len(names)), dtype=object)
    out = {col: _column(table[:, j], dtype) for j, (col, (dtype, _)) in enumerate(schema.items())}
    return pd.DataFrame(_fix_times(name, out), copy=False)


def conform_columns(name: str, columns: dict, n: int) -> pd.DataFrame:
    """:func:`conform` of column-wise data (what :class:`eventscope.collectors.events_common.EventBatch`
    builds): each value is a sequence of ``n`` values, a pandas Series of ``n`` values, or one
    value for every row (a scalar, such as the time of the sample). A missing column is nulls
    (False in a bool column); extra columns raise ``ValueError``."""
    schema = SCHEMAS[name]
    extra = [c for c in columns if c not in schema]
    if extra:
        raise ValueError(f"frame {name!r} has columns not in its schema: {sorted(extra, key=str)}")
    out = {}
    for col, (dtype, _) in schema.items():
        values = columns.get(col)
        if isinstance(values, pd.Series):
            out[col] = values.reset_index(drop=True) if str(values.dtype) == dtype else _cast(
                values.reset_index(drop=True), dtype)
        elif isinstance(values, (list, tuple, np.ndarray)):
            if len(values) != n:
                raise ValueError(f"column {col!r} has {len(values)} values, not {n}")
            out[col] = _plain(values, dtype)
            if out[col] is None:
                out[col] = _column(values if isinstance(values, np.ndarray) or dtype == STR
                                   else np.array(values, dtype=object), dtype)
        elif dtype == TIME and isinstance(values, pd.Timestamp) and values is not pd.NaT:
            stamp = values.tz_localize("UTC") if values.tzinfo is None else values.tz_convert("UTC")
            out[col] = pd.Series(np.full(n, stamp.as_unit("ns").value, dtype="int64").view("datetime64[ns]")
                                 ).dt.tz_localize("UTC")
        elif dtype == STR and (values is None or type(values) is str):  # the same text (or null) everywhere
            out[col] = pd.Series(_text_array(np.array([values], dtype=object)).repeat(n))
        else:  # one value for all rows (None: nulls)
            out[col] = _column(np.array([values] * n, dtype=object), dtype)
    return pd.DataFrame(_fix_times(name, out), copy=False)


def _plain(values, dtype: str) -> pd.Series | None:
    """A list of Python ints (``int64``) or bools (``bool``) straight into numpy; None for anything
    else (nulls, mixed types, other dtypes), which :func:`_column` converts with its checks."""
    if dtype not in ("int64", "bool") or isinstance(values, np.ndarray):
        return None
    kind = lib.infer_dtype(values, skipna=False)
    if (dtype, kind) in (("int64", "integer"), ("bool", "boolean")):
        try:
            return pd.Series(np.array(values, dtype=dtype))
        except OverflowError:  # an integer beyond 64 bits: the careful path
            return None
    return None


def _column(values, dtype: str) -> pd.Series:
    """One column's values (an object array, or a list of text) as a Series of ``dtype``."""
    text = _arrow_text(values) if dtype == STR else None
    if text is not None:
        return pd.Series(text)  # all text or null: one conversion
    if dtype == STR:
        values = np.array(values, dtype=object) if not isinstance(values, np.ndarray) else values
        if lib.infer_dtype(values, skipna=True) in ("string", "empty"):
            return pd.Series(_text_array(values))
        return _cast(pd.Series(list(values)), dtype)  # numbers etc.: inferred first, as a frame would
    return _cast(pd.Series(values, dtype=object), dtype)


def _arrow_text(values: np.ndarray):
    """Object array of str/None/NaN as the ``string`` dtype, pyarrow checking the types while it
    converts; None when the values are not all text (numbers, bytes, ...) or pyarrow is not the
    string storage."""
    try:
        array = pa.array(values, from_pandas=True)
        if array.type == pa.string():
            pass
        elif array.type == pa.null():
            array = pa.nulls(len(array), pa.large_string())
        else:
            return None
        text = pd.arrays.ArrowStringArray(pa.chunked_array([array]))
        return text if text.dtype == STR else None
    except Exception:  # mixed types or another string storage: the careful path
        return None


def _text_array(values: np.ndarray):
    """Object array of str/None/NaN as the ``string`` dtype, straight through pyarrow (the values
    are known to be text, so pandas' per-element validation is skipped)."""
    try:
        array = pd.arrays.ArrowStringArray(pa.chunked_array([pa.array(values, type=pa.large_string(),
                                                                      from_pandas=True)]))
        if array.dtype == STR:
            return array
    except Exception:  # another string storage or an odd null: pandas' own conversion
        pass
    return pd.array(values, dtype=STR)


_RFC3339 = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})?$"


def _all_rfc3339(series: pd.Series) -> bool:
    """True when every non-null value is a full RFC 3339 date-time (``2026-11-28T10:00:00.123Z``):
    the shape pandas' ISO 8601 parser reads exactly as the ``mixed`` parser does (it is lenient
    with other shapes, e.g. unpadded fields, where the two differ)."""
    try:
        array = pa.array(series.to_numpy(), type=pa.string(), from_pandas=True)
        return bool(pc.all(pc.match_substring_regex(array, _RFC3339), skip_nulls=True).as_py() is not False)
    except Exception:  # an odd value: the general parser
        return False


def _parse_times(series: pd.Series) -> pd.Series:
    """``pd.to_datetime(utc=True, errors="coerce", format="mixed")``, with fast paths: a column of
    timestamps is converted whole, and a column of RFC 3339 text (what envelopes carry) is parsed
    by pandas' ISO 8601 parser; any other column goes through ``mixed``, the per-value parser
    that also reads other formats."""
    if series.dtype == object and len(series):
        kind = lib.infer_dtype(series.to_numpy(), skipna=True)
        if kind == "datetime":
            try:  # pandas Timestamps (and NaT): their nanoseconds since the epoch, UTC
                ns = np.fromiter((v.value for v in series.to_numpy()), dtype="int64", count=len(series))
            except (AttributeError, OverflowError, ValueError):  # datetime.datetime, numpy values, ...
                pass
            else:
                return pd.Series(ns.view("datetime64[ns]"), index=series.index).dt.tz_localize("UTC")
        elif kind == "string" and _all_rfc3339(series):
            return pd.to_datetime(series, utc=True, errors="coerce", format="ISO8601")
    return pd.to_datetime(series, utc=True, errors="coerce", format="mixed")


def _cast(series: pd.Series, dtype: str) -> pd.Series:
    if series.dtype == _DTYPES.get(dtype):  # already conformed (a frame put again): as it is
        return series
    if dtype == TIME:
        parsed = _parse_times(series)
        try:
            return parsed.astype(TIME)
        except (OutOfBoundsDatetime, OverflowError):  # e.g. year -1: parsed, but not in ns range
            inside = (parsed >= _NS_MIN) & (parsed <= _NS_MAX)
            return parsed.where(inside.fillna(False).astype(bool)).astype(TIME)
    if dtype == "Int64":
        return pd.to_numeric(series, errors="coerce").astype("Int64")
    if dtype == "int64":
        return pd.to_numeric(series, errors="coerce").fillna(0).astype("int64")
    if dtype == "float64":
        return pd.to_numeric(series, errors="coerce").astype("float64")
    if dtype == "bool":
        return series.fillna(False).astype(bool)
    return series.astype(STR)


_DTYPES = {d: pd.api.types.pandas_dtype(d) for d in (TIME, "Int64", "int64", "float64", "bool", STR)}


def markdown_table(name: str) -> str:
    """The schema as a Markdown table (column, dtype, meaning)."""
    lines = ["| column | dtype | meaning |", "| --- | --- | --- |"]
    for col, (dtype, meaning) in SCHEMAS[name].items():
        lines.append(f"| `{col}` | `{dtype}` | {meaning} |")
    return "\n".join(lines)
