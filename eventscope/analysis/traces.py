"""Correlation-ID traces: every event that carried one ID, in time order, with hops.

An ID may be a correlation ID, a W3C trace ID or an event ID; the latter two are
resolved to the correlation ID of the event(s) they name.

Hops: the envelope carries no causation ID, so each event after the first is linked
to the latest earlier event of the trace that sits in a different topic, which is
exact for a pipeline where a service consumes one event and then produces the next;
``latency_ms`` is the gap between the two events' times.

Outcome: ``dead_lettered`` if any event of the trace sits in a DLQ; ``in_flight`` if
an event is still waiting for a consumer group on its partition (known from the lag
frame for Kafka) or the newest event is younger than ``quiet_s``; else ``completed``.
"""
from __future__ import annotations

import pandas as pd

EVENT_FIELDS = ["at", "broker", "topic", "partition", "offset", "event_type", "event_id",
                "source", "trace_id", "dead_letter"]


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
    rows = resolve(events, some_id)
    if rows.empty:
        return None
    rows = rows.drop_duplicates(["broker", "topic", "partition", "offset"])
    # a dead-lettered copy keeps the original envelope's timestamp; when it reached
    # the DLQ is the broker's time, and that is the moment the trace died
    dead_at = rows["broker_at"].where(rows["dead_letter"] & rows["broker_at"].notna(), rows["at"])
    rows = rows.assign(at=dead_at).sort_values(["at", "broker_at"], kind="stable")
    cid = rows["correlation_id"].dropna()
    out_events = [_event(r) for r in rows.itertuples(index=False)]
    return {"correlation_id": cid.iloc[0] if len(cid) else None,
            "outcome": outcome(rows, lag, quiet_s, now),
            "events": out_events, "hops": hops(rows)}


def _event(r) -> dict:
    return {"at": _iso(r.at), "broker": r.broker, "topic": r.topic, "partition": int(r.partition),
            "offset": r.offset, "event_type": r.event_type, "event_id": _none(r.event_id),
            "source": _none(r.service), "trace_id": _none(r.trace_id), "dead_letter": bool(r.dead_letter),
            "dlq_reason": _none(r.dlq_reason)}


def hops(rows: pd.DataFrame) -> list[dict]:
    """Topic → topic steps through a service, with the latency between the two events."""
    out = []
    seen = list(rows.itertuples(index=False))
    for i, b in enumerate(seen[1:], start=1):
        prev = [a for a in seen[:i] if a.topic != b.topic or a.broker != b.broker]
        if not prev:
            continue
        a = prev[-1]
        service = b.service if not b.dead_letter else (b.service or "dead-letter")
        out.append({"from_topic": a.topic, "to_topic": b.topic, "service": _none(service),
                    "latency_ms": round((b.at - a.at).total_seconds() * 1000, 1),
                    "broker": b.broker})
    return out


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
    kafka = rows[rows["broker"] == "kafka"]
    if kafka.empty:
        return False
    newest = lag[lag["sampled_at"] == lag["sampled_at"].max()]
    for r in kafka.itertuples(index=False):
        groups = newest[(newest["topic"] == r.topic) & (newest["partition"] == r.partition)
                        & (newest["broker"] == "kafka")]
        if groups.empty:
            continue
        if (groups["committed"].fillna(-1) <= int(r.offset)).any():
            return True
    return False


def recent(events: pd.DataFrame, limit: int = 50, now: pd.Timestamp | None = None,
           quiet_s: float = 30.0) -> pd.DataFrame:
    """The newest correlation IDs with first/last time, event count and outcome."""
    cols = ["correlation_id", "first_at", "last_at", "events", "outcome"]
    ev = events.dropna(subset=["correlation_id"])
    if ev.empty:
        return pd.DataFrame(columns=cols)
    now = now or pd.Timestamp.now(tz="UTC")
    g = ev.groupby("correlation_id", observed=True)
    out = g.agg(first_at=("at", "min"), last_at=("at", "max"), events=("offset", "size"),
                dead=("dead_letter", "any"))
    out = out.sort_values("last_at", ascending=False).head(limit)
    quiet = (now - out["last_at"]).dt.total_seconds() >= quiet_s
    out["outcome"] = ["dead_lettered" if d else ("completed" if q else "in_flight")
                      for d, q in zip(out["dead"], quiet)]
    return out.reset_index()[cols]


def _iso(ts) -> str | None:
    return None if ts is None or pd.isna(ts) else ts.isoformat().replace("+00:00", "Z")


def _none(v):
    return None if v is None or (not isinstance(v, str) and pd.isna(v)) else v
