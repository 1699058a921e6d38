"""Correlation-ID traces: every event that carried one ID, in time order, with hops.

An ID may be a correlation ID, a W3C trace ID or an event ID; the latter two are
resolved to the correlation ID of the event(s) they name.

Hops: each event after the first is linked to its cause, by the rule the flow graph's
``causes`` edges follow (:mod:`eventscope.analysis.causality`): the event its causation ID
names, else the one its OpenTelemetry spans lead to, else the newest earlier event on a
topic its producer consumes (learned from traffic), else the latest earlier event of the
trace in a different topic; ``latency_ms`` is the gap between the two events' times. A
dead letter is linked to the event it copies (its original partition and offset, the
same event ID, else its original topic), and its hop's service is the consumer group the
DLQ headers name.

Broker wait vs. service time (``broker_wait_ms`` / ``service_ms``, ``split``): only
estimated where the lag samples bracket the moment the consuming group took the
event, and left null elsewhere. Redis 7's ``entries-read`` counts an entry when
XREADGROUP delivers it, so the group's samples bound the delivery: the last sample
whose ``entries-read`` is below the event's position (taken from ``entries-added``
at the samples around the event's entry ID) and the first one at or past it. When
that bracket, clipped to the hop, is at most half the hop's latency, its midpoint
splits the hop (``split = "estimated"``, ``split_error_ms`` = half the bracket).
Kafka's committed offset moves after the consumer has processed a message, not when
it fetched it, so it cannot separate waiting from working: Kafka hops carry no split.

Outcome: ``dead_lettered`` if any event of the trace sits in a DLQ; ``in_flight`` if
an event is still waiting for a consumer group on its partition (known from the lag
frame for Kafka) or the newest event is younger than ``quiet_s``; else ``completed``.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from eventscope.analysis import causality

MAX_EVENTS = 2000  # events a trace document holds: the first and the last half of a longer trace
DEAD_SHOWN = 10  # dead letters from between the two halves kept in a cut trace


def resolve(events: pd.DataFrame, some_id: str) -> pd.DataFrame:
    """Events belonging to the trace that ``some_id`` names (empty if none)."""
    some_id = (some_id or "").strip()
    if not some_id or events.empty:
        return events.iloc[0:0]
    hit = events[(events["correlation_id"] == some_id) | (events["trace_id"] == some_id.lower())
                 | (events["event_id"] == some_id)]
    if hit.empty:
        return hit
    cids = hit["correlation_id"].dropna().unique()
    if len(cids):
        return events[events["correlation_id"].isin(cids)]
    return events[events["trace_id"].isin(hit["trace_id"].dropna().unique())]


def find(events: pd.DataFrame, some_id: str, lag: pd.DataFrame | None = None,
         quiet_s: float = 30.0, now: pd.Timestamp | None = None) -> dict | None:
    """The trace as the CLI prints it, or None when no event carries ``some_id``."""
    return from_rows(resolve(events, some_id), lag, quiet_s, now)


def from_rows(rows: pd.DataFrame, lag: pd.DataFrame | None = None, quiet_s: float = 30.0,
              now: pd.Timestamp | None = None, lag_history: pd.DataFrame | None = None,
              details: bool = False, consumes: dict | None = None, spans: dict | None = None,
              max_events: int = MAX_EVENTS) -> dict | None:
    """The trace document for the events of one trace (from :func:`resolve` or the index).

    ``lag`` (recent samples) decides the outcome; ``lag_history`` (samples over the
    trace's own time span, default ``lag``) the broker/service split of each hop. With
    ``details`` each event also carries its stored (masked) ``headers`` and ``payload``.
    ``consumes`` and ``spans`` (:func:`eventscope.analysis.causality.span_index`) name
    each hop's cause (see :func:`hops`).

    A trace of more than ``max_events`` events (a correlation ID per tenant, a retry
    loop) keeps its first and last ``max_events / 2`` events and their hops, plus the first
    :data:`DEAD_SHOWN` dead letters between them, and says how
    many it had (``events_total``); its outcome is decided over all of them. Linking hops
    costs time in the square of the events: 100,000 of them took minutes."""
    if rows.empty:
        return None
    rows = rows.drop_duplicates(["broker", "topic", "partition", "offset"])
    # a dead-lettered copy keeps the original envelope's timestamp; when it reached
    # the DLQ is the broker's time, and that is the moment the trace died
    dead_at = rows["broker_at"].where(rows["dead_letter"] & rows["broker_at"].notna(), rows["at"])
    rows = rows.assign(at=dead_at).sort_values(["at", "broker_at"], kind="stable")
    cid = rows["correlation_id"].dropna()
    verdict = outcome(rows, lag, quiet_s, now)  # over every event
    total = len(rows)
    history = lag if lag_history is None else lag_history
    if total > max_events:  # a hot ID (one per tenant, a stuck retry loop): its start and its end
        half = max_events // 2
        parts = [rows.iloc[:half], rows.iloc[-half:]]
        found_hops = hops(parts[0], history, consumes, spans) + hops(parts[1], history, consumes, spans)
        middle = rows.iloc[half:-half]
        dead = middle[middle["dead_letter"].fillna(False).astype(bool).to_numpy()].head(DEAD_SHOWN)
        rows = pd.concat([parts[0], dead, parts[1]])  # where it died stays in view
    else:
        found_hops = hops(rows, history, consumes, spans)
        half = None
    return {"correlation_id": cid.iloc[0] if len(cid) else None,
            "outcome": verdict,
            "events_total": total, **({"events_each_end": half} if half else {}),
            "events": [_event(r, details) for r in rows.itertuples(index=False)],
            "hops": found_hops}


def _event(r, details: bool = False) -> dict:
    out = {"at": _iso(r.at), "broker": r.broker, "kind": r.kind, "topic": r.topic, "partition": int(r.partition),
           "offset": r.offset, "event_type": r.event_type, "event_id": _none(r.event_id),
           "source": _none(r.service), "trace_id": _none(r.trace_id), "dead_letter": bool(r.dead_letter),
           "dlq_reason": _none(r.dlq_reason)}
    if details:
        out.update(headers=_none(getattr(r, "headers", None)) or "{}",
                   payload=_none(getattr(r, "payload", None)) or "",
                   preview=_none(getattr(r, "preview", None)) or "",
                   decode_error=_none(getattr(r, "decode_error", None)) or "",
                   schema_version=_none(getattr(r, "schema_version", None)))
    return out


def hops(rows: pd.DataFrame, lag: pd.DataFrame | None = None, consumes: dict | None = None,
         spans: dict | None = None) -> list[dict]:
    """Topic → topic steps through a service, with latency and (where known) its split.

    ``consumes`` (:func:`eventscope.analysis.causality.consumed_topics`) is what each
    producer reads: an event's cause is then the newest earlier event on one of those
    topics, as for the flow graph's ``causes`` edges. ``spans`` (OpenTelemetry, see
    :func:`eventscope.analysis.causality.span_causes`) name a cause ahead of that."""
    out = []
    seen = list(rows.itertuples(index=False))
    by_span = np.full(len(seen), -1, dtype=np.int64)
    if spans and "parent_span_id" in rows.columns:
        live = ~rows["dead_letter"].fillna(False).astype(bool).to_numpy()
        found = causality.span_causes(np.zeros(int(live.sum()), dtype=np.int64),
                                      rows["parent_span_id"][live].tolist(), spans)
        index = np.flatnonzero(live)
        by_span[index[found >= 0]] = index[found[found >= 0]]
        by_span[index[found == causality.NO_CAUSE]] = causality.NO_CAUSE
    for i, b in enumerate(seen[1:], start=1):
        a = _cause(seen[:i], b, consumes, seen[by_span[i]] if by_span[i] >= 0 else by_span[i])
        if a is None:
            continue
        if b.dead_letter:
            service = _dlq_group(b) or "dead-letter"
        else:
            service = _none(b.service)
        latency = (b.at - a.at).total_seconds() * 1000
        hop = {"from_topic": a.topic, "to_topic": b.topic, "service": service,
               "latency_ms": round(latency, 1), "broker": b.broker, "kind": b.kind,
               "from_event_id": _none(a.event_id), "to_event_id": _none(b.event_id),
               "dead_letter": bool(b.dead_letter),
               "broker_wait_ms": None, "service_ms": None, "split": None, "split_error_ms": None}
        if lag is not None and not lag.empty and a.kind == "redis" and latency > 0:
            hop.update(_split(a, b, service, lag, latency))
        out.append(hop)
    return out


def _cause(earlier: list, b, consumes: dict | None = None, by_span=None):
    """The event ``b`` most likely followed from (None for the first of a chain);
    ``by_span``: the one its OpenTelemetry spans lead to, :data:`causality.NO_CAUSE`
    when they say it has none, -1 when they say nothing."""
    if b.dead_letter:
        offset = getattr(b, "original_offset", None)
        if offset is not None and not pd.isna(offset):  # the publisher named the original message
            same = [a for a in earlier if not a.dead_letter and a.topic == b.original_topic
                    and a.partition == getattr(b, "original_partition", None) and a.offset == str(int(offset))]
            if same:
                return same[-1]
        same = [a for a in earlier if not a.dead_letter and _none(a.event_id) and a.event_id == b.event_id]
        if not same and _none(b.original_topic):
            same = [a for a in earlier if not a.dead_letter and a.topic == b.original_topic]
        if same:
            return same[-1]
    cause = _none(getattr(b, "causation_id", None))
    if cause:  # the envelope names its cause
        named = [a for a in earlier if _none(a.event_id) == cause]
        if named:
            return named[-1]
    if isinstance(by_span, (int, np.integer)):  # the spans say there is none, or nothing
        if by_span == causality.NO_CAUSE:
            return None
    elif by_span is not None:
        return by_span
    inputs = None if consumes is None else consumes.get((_none(b.service), _none(b.event_type)))
    if inputs is not None:  # learned: only a topic its producer reads (none: it starts chains)
        read = [a for a in earlier if not a.dead_letter and (a.broker, a.topic) in inputs
                and (a.topic != b.topic or a.broker != b.broker)]
        return read[-1] if read else None
    prev = [a for a in earlier if not a.dead_letter and (a.topic != b.topic or a.broker != b.broker)]
    return prev[-1] if prev else None


_GROUP_HEADERS = ("kafka_dlt-original-consumer-group", "group", "consumer_group",
                  "__connect.errors.connector.name")


def _dlq_group(row) -> str | None:
    """The consumer group (or connector) a DLQ publisher names in the headers."""
    raw = getattr(row, "headers", None)
    if not isinstance(raw, str) or not raw.startswith("{"):
        return None
    try:
        headers = json.loads(raw)
    except ValueError:
        return None
    return next((str(headers[h]) for h in _GROUP_HEADERS if headers.get(h)), None)


def _split(a, b, service: str | None, lag: pd.DataFrame, latency_ms: float) -> dict:
    """Broker wait / service time of a Redis hop from ``entries-read`` (see the module doc)."""
    stream = lag[(lag["broker"] == a.broker) & (lag["topic"] == a.topic)]
    if stream.empty or pd.isna(a.broker_at):
        return {}
    groups = list(dict.fromkeys(stream["group"].dropna()))
    group = next((g for g in groups if service and (g == service or g.endswith(service))), None)
    if group is None and len(groups) == 1:
        group = groups[0]
    if group is None:
        return {}
    samples = stream[stream["group"] == group].sort_values("sampled_at")
    before = samples[samples["sampled_at"] <= a.broker_at]["end"].dropna()
    after = samples[samples["sampled_at"] >= a.broker_at]["end"].dropna()
    if after.empty:
        return {}
    low = int(before.max()) + 1 if not before.empty else 1   # the entry's position is within
    high = int(after.iloc[0])                                  # [low, high] (entries-added)
    committed = samples["committed"]
    waiting = samples[committed.notna() & (committed < low)]["sampled_at"]
    taken = samples[committed.notna() & (committed >= high)]["sampled_at"]
    lo = max([a.broker_at] + [t for t in waiting if t <= b.at])
    later = [t for t in taken if t >= a.broker_at]
    hi = min([b.at] + later[:1]) if later else b.at
    width = (hi - lo).total_seconds() * 1000
    if width < 0 or width > latency_ms / 2:
        return {}
    delivered = lo + (hi - lo) / 2
    wait = min(latency_ms, max(0.0, (delivered - a.at).total_seconds() * 1000))
    return {"broker_wait_ms": round(wait, 1), "service_ms": round(latency_ms - wait, 1),
            "split": "estimated", "split_error_ms": round(width / 2, 1)}


def outcome(rows: pd.DataFrame, lag: pd.DataFrame | None, quiet_s: float,
            now: pd.Timestamp | None) -> str:
    """``dead_lettered``, ``in_flight`` or ``completed``."""
    if rows["dead_letter"].any():
        return "dead_lettered"
    now = now or pd.Timestamp.now(tz="UTC")
    if (now - rows["at"].max()).total_seconds() < quiet_s:
        return "in_flight"
    if lag is not None and not lag.empty and _waiting(rows, lag):
        return "in_flight"
    return "completed"


def _waiting(rows: pd.DataFrame, lag: pd.DataFrame) -> bool:
    kafka = rows[rows["kind"] == "kafka"]
    if kafka.empty:
        return False
    # each cluster's newest sample: clusters are sampled at their own times
    newest = lag[lag["sampled_at"] == lag.groupby("broker", observed=True)["sampled_at"].transform("max")]
    for r in kafka.itertuples(index=False):
        groups = newest[(newest["broker"] == r.broker) & (newest["topic"] == r.topic)
                        & (newest["partition"] == r.partition) & (newest["kind"] == "kafka")]
        if groups.empty:
            continue
        if (groups["committed"].fillna(-1) <= int(r.offset)).any():
            return True
    return False


SUMMARY_COLUMNS = ["correlation_id", "first_at", "last_at", "events", "duration_ms", "outcome"]


def summary(events: pd.DataFrame, now: pd.Timestamp | None = None, quiet_s: float = 30.0) -> pd.DataFrame:
    """One row per correlation ID: first/last time, events, end-to-end ms, outcome; newest first."""
    ev = events.dropna(subset=["correlation_id"])
    ev = ev[ev["correlation_id"] != ""]
    if ev.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    at = ev["broker_at"].where(ev["dead_letter"] & ev["broker_at"].notna(), ev["at"])
    g = ev.assign(at=at).groupby("correlation_id", observed=True)
    out = g.agg(first_at=("at", "min"), last_at=("at", "max"), events=("offset", "size"),
                dead=("dead_letter", "any"))
    return summary_of(out.reset_index(), now, quiet_s)


def summary_of(out: pd.DataFrame, now: pd.Timestamp | None = None, quiet_s: float = 30.0) -> pd.DataFrame:
    """:func:`summary` from its aggregate per correlation ID (``correlation_id``, ``first_at``,
    ``last_at``, ``events``, ``dead``), however it was made (pandas here, DuckDB in the
    query layer)."""
    if out.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    now = now or pd.Timestamp.now(tz="UTC")
    # newest first; equal times by ID, so both ways of aggregating give the same order
    out = out.sort_values(["last_at", "correlation_id"], ascending=[False, True]).set_index("correlation_id")
    out["duration_ms"] = ((out["last_at"] - out["first_at"]).dt.total_seconds() * 1000).round(1)
    quiet = (now - out["last_at"]).dt.total_seconds() >= quiet_s
    out["outcome"] = ["dead_lettered" if d else ("completed" if q else "in_flight")
                      for d, q in zip(out["dead"], quiet)]
    return out.reset_index()[SUMMARY_COLUMNS]


def recent(events: pd.DataFrame, limit: int = 50, now: pd.Timestamp | None = None,
           quiet_s: float = 30.0) -> pd.DataFrame:
    """The newest correlation IDs with first/last time, event count, duration and outcome."""
    return summary(events, now, quiet_s).head(limit).reset_index(drop=True)


def slowest(table: pd.DataFrame, limit: int = 50) -> pd.DataFrame:
    """The longest finished chains of a :func:`summary` table (in-flight ones are still growing)."""
    done = table[table["outcome"] != "in_flight"]
    return done.sort_values("duration_ms", ascending=False, kind="stable").head(limit).reset_index(drop=True)


def failed(table: pd.DataFrame, limit: int = 50) -> pd.DataFrame:
    """The newest dead-lettered chains of a :func:`summary` table."""
    return table[table["outcome"] == "dead_lettered"].head(limit).reset_index(drop=True)


def _iso(ts) -> str | None:
    return None if ts is None or pd.isna(ts) else ts.isoformat().replace("+00:00", "Z")


def _none(v):
    return None if v is None or (not isinstance(v, str) and pd.isna(v)) else v
