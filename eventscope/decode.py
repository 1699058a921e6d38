"""Decode a broker message into the fields of the ``events`` frame.

Out of the box this reads:

* the eventscope envelope ``{event_type, event_id, timestamp, source, correlation_id, data}``;
* the Redis shape ``payload = {type, data, metadata: {eventId, timestamp, source, correlationId}}``;
* CloudEvents, binary mode (``ce_type``/``ce_source``/``ce_id``/``ce_time`` headers, plain
  body) and structured mode (``specversion``, ``type``, ``source``, ``id``, ``time``);
* correlation IDs in ``x-correlation-id`` / ``correlation-id`` / ``correlation_id`` headers;
* W3C ``traceparent`` (header or Redis field);
* dead-letter metadata from Spring (``kafka_dlt-*``), Kafka Connect
  (``__connect.errors.*``) and eventscope's Redis DLQ fields (``error``, ``original_stream``).

Nothing here raises on bad input: an undecodable payload becomes a row with
``event_type = "<undecodable>"`` and ``decode_error`` saying why, so it is counted,
shown, and never lost.
"""
from __future__ import annotations

import re
import struct
from typing import Iterable

import orjson

UNDECODABLE = "<undecodable>"
MAX_FIELD = 512
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_CORRELATION_HEADERS = ("x-correlation-id", "correlation-id", "correlation_id", "correlationid")
_MESSAGE_HEADERS = ("kafka_dlt-exception-message", "__connect.errors.exception.message",
                    "x-exception-message", "error", "exception_message")
_CLASS_HEADERS = ("kafka_dlt-exception-fqcn", "__connect.errors.exception.class.name",
                  "x-exception-fqcn", "error_type", "exception_class")
_CLASS_PREFIX = re.compile(r"^([A-Za-z_$][\w.$]*(?:Error|Exception|Fault|Failure)):\s*(.*)$", re.S)
_VOLATILE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|0x[0-9a-f]+"
                       r"|(?<![0-9a-z])(?=[0-9a-f]*\d)[0-9a-f]{8,}(?![0-9a-z])|\d+", re.I)
DLQ_HEADER_MARKERS = ("kafka_dlt-original-topic", "kafka_dlt-exception-fqcn", "__connect.errors.topic",
                      "__connect.errors.exception.class.name", "original_stream")
_ORIGIN_HEADERS = ("kafka_dlt-original-topic", "__connect.errors.topic", "original_topic",
                   "original_stream", "x-original-topic")


def headers_to_dict(headers: Iterable | dict | None) -> dict[str, bytes]:
    """Kafka headers (list of (key, value)) or Redis fields as ``{lowercase key: bytes}``."""
    out: dict[str, bytes] = {}
    if not headers:
        return out
    items = headers.items() if isinstance(headers, dict) else headers
    for key, value in items:
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        if value is None:
            value = b""
        elif isinstance(value, str):
            value = value.encode("utf-8")
        out[str(key).lower()] = bytes(value)
    return out


def text(value: bytes | str | None, limit: int = MAX_FIELD) -> str | None:
    """Bytes to a bounded, printable str (None stays None)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    value = str(value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def parse_traceparent(value) -> tuple[str | None, str | None]:
    """``00-<trace>-<span>-<flags>`` → (trace_id, span_id); (None, None) if malformed."""
    value = text(value, 64)
    if not value:
        return None, None
    match = _TRACEPARENT.match(value.strip().lower())
    return (match.group(1), match.group(2)) if match else (None, None)


def decode_message(value: bytes | None, headers: dict[str, bytes], with_body: bool = False) -> dict:
    """Decode one message; returns the decodable fields of an ``events`` row.

    With ``with_body`` the parsed JSON object (or None) is returned under ``_body``.
    """
    row = {"event_type": None, "event_id": None, "service": None, "correlation_id": None,
           "at": None, "trace_id": None, "parent_span_id": None, "dlq_reason": None,
           "original_topic": None, "dlq_class": None, "schema_version": None, "decode_error": ""}
    body, error = _json_body(value)
    if "payload" in headers and body is None:
        body, error = _json_body(headers["payload"])
    if "envelope" in headers and body is None:
        body, error = _json_body(headers["envelope"])
    if isinstance(body, dict):
        _from_body(row, body)
    elif "ce_type" not in headers:
        row["decode_error"] = error or "payload is not a JSON object"
    _from_headers(row, headers)
    if not row["event_type"]:
        row["event_type"] = UNDECODABLE
        row["decode_error"] = row["decode_error"] or "no event type in payload or headers"
    if with_body:
        row["_body"] = body if isinstance(body, (dict, list)) else None
    return row


def _json_body(value) -> tuple[object | None, str | None]:
    if value is None or value == b"":
        return None, "empty payload"
    try:
        return orjson.loads(value), None
    except orjson.JSONDecodeError as exc:
        return None, f"not JSON ({text(str(exc), 120)})"


def _from_body(row: dict, body: dict) -> None:
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    if "specversion" in body:  # CloudEvents structured mode
        row["event_type"] = body.get("type")
        row["event_id"] = body.get("id")
        row["service"] = body.get("source")
        row["at"] = body.get("time")
        row["correlation_id"] = body.get("correlationid") or body.get("correlation_id")
    else:
        row["event_type"] = body.get("event_type") or body.get("type") or body.get("eventType")
        row["event_id"] = body.get("event_id") or body.get("eventId") or meta.get("eventId") or body.get("id")
        row["service"] = body.get("source") or meta.get("source")
        row["at"] = body.get("timestamp") or meta.get("timestamp") or body.get("time")
        row["correlation_id"] = (body.get("correlation_id") or body.get("correlationId")
                                 or meta.get("correlationId") or meta.get("correlation_id"))
    version = body.get("schema_version", body.get("schemaVersion", body.get("dataschema", meta.get("schemaVersion"))))
    row["schema_version"] = None if version is None or isinstance(version, (dict, list)) else str(version)
    for key in ("event_type", "event_id", "service", "correlation_id", "at", "schema_version"):
        if row[key] is not None and not isinstance(row[key], str):
            row[key] = str(row[key])
        row[key] = text(row[key])


def _from_headers(row: dict, headers: dict[str, bytes]) -> None:
    if "ce_type" in headers:
        row["event_type"] = row["event_type"] or text(headers["ce_type"])
        row["event_id"] = row["event_id"] or text(headers.get("ce_id"))
        row["service"] = row["service"] or text(headers.get("ce_source"))
        row["at"] = row["at"] or text(headers.get("ce_time"))
        row["schema_version"] = row["schema_version"] or text(headers.get("ce_dataschema"))
    if not row["event_type"] and "event_type" in headers:
        row["event_type"] = text(headers["event_type"])
    if not row["correlation_id"]:
        for name in _CORRELATION_HEADERS + ("ce_correlationid",):
            if headers.get(name):
                row["correlation_id"] = text(headers[name])
                break
    row["trace_id"], row["parent_span_id"] = parse_traceparent(headers.get("traceparent"))
    row["dlq_class"], row["dlq_reason"] = failure_reason(headers)
    for name in _ORIGIN_HEADERS:
        if headers.get(name):
            row["original_topic"] = text(headers[name], 249)
            break


def failure_reason(headers: dict[str, bytes]) -> tuple[str | None, str | None]:
    """(exception class, grouped reason) from DLQ headers; the reason has IDs and numbers as ``#``."""
    cls = next((text(headers[h], 200) for h in _CLASS_HEADERS if headers.get(h)), None)
    message = next((text(headers[h], 300) for h in _MESSAGE_HEADERS if headers.get(h)), None)
    if message:
        match = _CLASS_PREFIX.match(message)
        if match:  # "PaymentDeclinedError: card declined" carries its own class
            cls = cls or match.group(1)
            message = match.group(2)
    if not cls and not message:
        return None, None
    short = cls.rsplit(".", 1)[-1] if cls else None
    normal = " ".join(_VOLATILE.sub("#", message).split())[:160] if message else None
    reason = f"{short}: {normal}" if short and normal else (short or normal)
    return cls, reason


def is_dead_letter(headers: dict[str, bytes]) -> bool:
    """True when a message carries the headers a dead-letter publisher writes."""
    return any(h in headers for h in DLQ_HEADER_MARKERS)


def int_header(value: bytes | None) -> int | None:
    """Spring's original-partition (4 bytes) / original-offset (8 bytes), big-endian."""
    if value is None:
        return None
    if len(value) == 4:
        return struct.unpack(">i", value)[0]
    if len(value) == 8:
        return struct.unpack(">q", value)[0]
    try:
        return int(value.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
