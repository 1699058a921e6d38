"""Event envelopes (DESIGN.md) and W3C trace context, built by hand.

Identifiers come from the OS random source, never from the simulation seed, so two
runs (or the Kafka and Redis pipelines of one run) never share an ID.
"""
from __future__ import annotations

import json
import re
import secrets
import uuid
from datetime import datetime, timezone
from typing import Any

SCHEMA_VERSION = 2
ENVELOPE_FIELDS = ("event_type", "schema_version", "event_id", "timestamp",
                   "source", "correlation_id", "data")
TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


class MalformedMessageError(ValueError):
    """A message that no retry can fix: not JSON, not an envelope, missing fields."""


# --- identifiers and time ------------------------------------------------------

def new_event_id() -> str:
    """Return `evt_` + 16 hex digits."""
    return "evt_" + secrets.token_hex(8)


def new_id(prefix: str) -> str:
    """Return a business ID such as `ord_3f9a0c12be` (10 random hex digits)."""
    return f"{prefix}_{secrets.token_hex(5)}"


def new_correlation_id() -> str:
    """Return a fresh correlation ID (a UUID4 string, distinct from trace IDs)."""
    return str(uuid.uuid4())


def now_iso(now: datetime | None = None) -> str:
    """Return an ISO 8601 UTC timestamp with milliseconds and `Z`."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


# --- W3C traceparent -----------------------------------------------------------

def _nonzero_hex(nbytes: int) -> str:
    """Return random lowercase hex of `nbytes` bytes, never all zeros (invalid in W3C)."""
    while True:
        value = secrets.token_hex(nbytes)
        if value.strip("0"):
            return value


def new_trace_id() -> str:
    """Return a 32-hex W3C trace ID."""
    return _nonzero_hex(16)


def new_span_id() -> str:
    """Return a 16-hex W3C span (parent) ID."""
    return _nonzero_hex(8)


def make_traceparent(trace_id: str, span_id: str, sampled: bool = True) -> str:
    """Return `00-<trace_id>-<span_id>-<flags>`."""
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def parse_traceparent(value: str | bytes | None) -> tuple[str, str] | None:
    """Return (trace_id, span_id) of a valid version-00 traceparent, else None."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    match = TRACEPARENT_RE.match(value.strip())
    if match is None or not match.group(1).strip("0") or not match.group(2).strip("0"):
        return None
    return match.group(1), match.group(2)


def child_traceparent(parent: str | bytes | None) -> str:
    """Return a traceparent in the parent's trace with a new span (a new trace if none)."""
    parsed = parse_traceparent(parent)
    trace_id = parsed[0] if parsed else new_trace_id()
    return make_traceparent(trace_id, new_span_id())


# --- envelopes -------------------------------------------------------------------

def make_event(event_type: str, source: str, correlation_id: str,
               data: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """Return an envelope dict with the fields of DESIGN.md, in that order."""
    return {
        "event_type": event_type,
        "schema_version": SCHEMA_VERSION,
        "event_id": new_event_id(),
        "timestamp": now_iso(now),
        "source": source,
        "correlation_id": correlation_id,
        "data": data,
    }


def encode(event: dict[str, Any]) -> bytes:
    """Serialize an envelope to compact UTF-8 JSON."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode(value: bytes | str | None) -> dict[str, Any]:
    """Parse and check an envelope; raise MalformedMessageError with a short reason."""
    if value is None:
        raise MalformedMessageError("empty payload")
    try:
        event = json.loads(value)
    except (UnicodeDecodeError, ValueError):
        raise MalformedMessageError("payload is not valid UTF-8 JSON") from None
    if not isinstance(event, dict):
        raise MalformedMessageError("payload is not a JSON object")
    for name in ("event_type", "event_id", "correlation_id"):
        if not isinstance(event.get(name), str) or not event[name]:
            raise MalformedMessageError(f"envelope field {name} missing or not a string")
    data = event.get("data")
    if not isinstance(data, dict):
        raise MalformedMessageError("envelope field data missing or not an object")
    if not isinstance(data.get("order_id"), str):
        raise MalformedMessageError("data.order_id missing or not a string")
    return event
