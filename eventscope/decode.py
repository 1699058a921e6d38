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
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_TRACEPARENT_BYTES = re.compile(_TRACEPARENT.pattern.encode("ascii"))
_HEX_DASH = b"0123456789abcdef-"
_ZERO_TRACE, _ZERO_SPAN = b"0" * 32, b"0" * 16
_MESSAGE_HEADERS = ("kafka_dlt-exception-message", "__connect.errors.exception.message",
                    "x-exception-message", "error", "exception_message")
_CLASS_HEADERS = ("kafka_dlt-exception-fqcn", "__connect.errors.exception.class.name",
                  "x-exception-fqcn", "error_type", "exception_class")
_CLASS_PREFIX = re.compile(r"^([A-Za-z_$][\w.$]*(?:Error|Exception|Fault|Failure)):\s*(.*)$", re.S)
_VOLATILE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|0x[0-9a-f]+"
                       r"|(?<![0-9a-z])(?=[0-9a-f]*\d)[0-9a-f]{8,}(?![0-9a-z])|\d+", re.I)
DLQ_HEADER_MARKERS = ("kafka_dlt-original-topic", "kafka_dlt-exception-fqcn", "__connect.errors.topic",
                      "__connect.errors.exception.class.name", "original_stream")
_DLQ_MARKERS = frozenset(DLQ_HEADER_MARKERS)
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


_PROPAGATOR = None


def _propagator():
    global _PROPAGATOR
    if _PROPAGATOR is None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        _PROPAGATOR = TraceContextTextMapPropagator()
    return _PROPAGATOR


def parse_traceparent(value) -> tuple[str | None, str | None]:
    """``00-<trace>-<span>-<flags>`` → (trace_id, span_id); (None, None) if invalid.

    OpenTelemetry's TraceContext propagator decides what is valid (future versions,
    all-zero IDs, version ``ff``, ...). The canonical version-00 form, which is nearly
    every real header, is taken by a regex first because building an OTel context costs
    ~20 µs per event; ``tests/test_decode_properties.py`` checks that both always agree.
    """
    if type(value) is bytes:  # a header
        # canonical: 55 bytes, dashes exactly at 2, 35 and 52, lower-case hex elsewhere (the
        # same set the regex takes, without running it); anything else takes the slow path
        if (len(value) == 55 and value[2] == 45 and value[35] == 45 and value[52] == 45
                and value[:2] == b"00" and value.count(b"-") == 3 and not value.translate(None, _HEX_DASH)):
            trace, span = value[3:35], value[36:52]
            if trace != _ZERO_TRACE and span != _ZERO_SPAN:
                return trace.decode("ascii"), span.decode("ascii")
            return None, None
        match = _TRACEPARENT_BYTES.match(value)
        if match and match.group(1).strip(b"0") and match.group(2).strip(b"0"):
            return match.group(1).decode("ascii"), match.group(2).decode("ascii")
    value = text(value, 600)
    if not value:
        return None, None
    match = _TRACEPARENT.match(value)
    if match and match.group(0)[:2] == "00" and match.group(1).strip("0") and match.group(2).strip("0"):
        return match.group(1), match.group(2)
    return parse_traceparent_otel(value)


def parse_traceparent_otel(value: str) -> tuple[str | None, str | None]:
    """The same answer from OpenTelemetry's propagator alone (the reference)."""
    from opentelemetry import trace
    try:
        ctx = _propagator().extract({"traceparent": value})
        span = trace.get_current_span(ctx).get_span_context()
    except Exception:  # the propagator is lenient, but hostile input must never escape
        return None, None
    if not span.is_valid:
        return None, None
    return format(span.trace_id, "032x"), format(span.span_id, "016x")


_FIELDS = ("correlation_id", "event_type", "event_id", "source", "timestamp", "traceparent")
_MISSING = object()
_NO_KEY = object()  # never a key of a parsed JSON object


def _plan(paths) -> tuple:
    """Dotted paths as ``((top-level key, rest of the path or ()), ...)``: one dict lookup for
    the common top-level case, a walk only for nested paths."""
    return tuple((path[0], tuple(path[1:])) for path in paths)


class Decoder:
    """Field paths and header names to look in, from ``[decode]`` (:class:`DecodeConfig`).

    The paths are compiled once into small plans (top-level key first, the rest of a
    nested path only when the first key is there), and every header name the decoder
    might read is kept in one set, so a message whose headers name none of them skips
    the header scans entirely.
    """

    def __init__(self, config=None):
        from eventscope.config import DecodeConfig
        config = config or DecodeConfig()

        def paths(names):
            return [tuple(str(n).split(".")) for n in names if str(n)]

        def heads(names):
            return [str(n).lower() for n in names if str(n)]

        self.body = {key: paths(getattr(config, key)) for key in _FIELDS}
        self.headers = {key: heads(getattr(config, key + "_headers")) for key in _FIELDS}
        self.payload_fields = heads(config.payload_fields)
        plans = {key: _plan(p) for key, p in self.body.items()}
        self._p_type, self._p_id, self._p_source = plans["event_type"], plans["event_id"], plans["source"]
        self._p_cid, self._p_time, self._p_tp = plans["correlation_id"], plans["timestamp"], plans["traceparent"]
        self._k_first = tuple(plan[0][0] if plan and not plan[0][1] else _NO_KEY for plan in (
            self._p_type, self._p_id, self._p_source, self._p_cid, self._p_time, self._p_tp))
        self._h_fields = tuple((column, tuple(self.headers[key])) for key, column in (
            ("event_type", "event_type"), ("event_id", "event_id"), ("source", "service"),
            ("correlation_id", "correlation_id"), ("timestamp", "at")))
        self._h_tp = tuple(self.headers["traceparent"])
        self._h_payload = tuple(self.payload_fields)
        self._h_fixed = frozenset(("ce_type", "ce_dataschema") + _CLASS_HEADERS + _MESSAGE_HEADERS
                                  + _ORIGIN_HEADERS)
        self._h_any = frozenset(h for _, names in self._h_fields for h in names) | frozenset(self._h_tp)

    def decode(self, value: bytes | None, headers: dict[str, bytes], with_body: bool = False) -> dict:
        """Decode one message; returns the decodable fields of an ``events`` row (never raises).

        With ``with_body`` the parsed JSON object (or None) is returned under ``_body``.
        """
        event_type = event_id = service = correlation_id = at = trace_id = span_id = None
        dlq_reason = original_topic = dlq_class = schema_version = None
        decode_error = ""
        try:  # the common case inline: bytes of a JSON document
            body, error = orjson.loads(value), None
        except Exception:  # not JSON, empty, or not bytes/str: the careful path says why
            body, error = _json_body(value)
        if body is None and headers:
            for name in self._h_payload:
                if name in headers:
                    body, error = _json_body(headers[name])
                    if body is not None:
                        break
        traceparent = None
        if type(body) is dict:
            # the first configured path, when it is a top-level key holding a short string, is
            # the answer (nearly every envelope); anything else walks the whole plan
            get = body.get
            k_type, k_id, k_source, k_cid, k_time, k_tp = self._k_first
            event_type = get(k_type)
            if type(event_type) is not str or not 0 < len(event_type) <= MAX_FIELD:
                event_type = _find(body, self._p_type)
            event_id = get(k_id)
            if type(event_id) is not str or not 0 < len(event_id) <= MAX_FIELD:
                event_id = _find(body, self._p_id)
            service = get(k_source)
            if type(service) is not str or not 0 < len(service) <= MAX_FIELD:
                service = _find(body, self._p_source)
            correlation_id = get(k_cid)
            if type(correlation_id) is not str or not 0 < len(correlation_id) <= MAX_FIELD:
                correlation_id = _find(body, self._p_cid)
            at = get(k_time)
            if type(at) is not str or not 0 < len(at) <= MAX_FIELD:
                at = _find(body, self._p_time)
            traceparent = get(k_tp)
            if type(traceparent) is not str or not 0 < len(traceparent) <= MAX_FIELD:
                traceparent = _find(body, self._p_tp)
            version = body.get("schema_version", _MISSING)
            if version is _MISSING:
                version = body.get("schemaVersion", _MISSING)
                if version is _MISSING:
                    version = body.get("dataschema", _MISSING)
                    if version is _MISSING:
                        meta = body.get("metadata")
                        version = meta.get("schemaVersion") if type(meta) is dict else None
            if version is not None:
                kind = type(version)
                if kind is int:  # the common case: a version number
                    schema_version = str(version) if -10**100 < version < 10**100 else _scalar(version)
                elif kind is str and 0 < len(version) <= MAX_FIELD:
                    schema_version = version
                else:
                    schema_version = _scalar(version)
        elif "ce_type" not in headers:
            # CloudEvents binary mode carries any data format; anything else should be a JSON
            # object, and a broken one is counted as undecodable even when headers name the type
            decode_error = error or "payload is not a JSON object"
        hit = headers and not self._h_any.isdisjoint(headers)
        if hit and not (event_type and event_id and service and correlation_id and at):
            found = {"event_type": event_type, "event_id": event_id, "service": service,
                     "correlation_id": correlation_id, "at": at}
            for column, names in self._h_fields:
                if not found[column]:
                    found[column] = next((text(headers[h]) for h in names if headers.get(h)), None)
            event_type, event_id, service = found["event_type"], found["event_id"], found["service"]
            correlation_id, at = found["correlation_id"], found["at"]
        fixed = headers and not self._h_fixed.isdisjoint(headers)
        if fixed and "ce_dataschema" in headers and not schema_version:
            schema_version = text(headers["ce_dataschema"])
        tp_header = None
        if hit:
            for name in self._h_tp:
                if headers.get(name):
                    tp_header = headers[name]
                    break
        if tp_header is not None or traceparent is not None:
            trace_id, span_id = parse_traceparent(tp_header or traceparent)
            if trace_id is None and tp_header is not None and traceparent is not None:
                trace_id, span_id = parse_traceparent(traceparent)
        if fixed:
            dlq_class, dlq_reason = failure_reason(headers)
            for name in _ORIGIN_HEADERS:
                if headers.get(name):
                    original_topic = text(headers[name], 249)
                    break
        if not event_type:
            event_type = UNDECODABLE
            decode_error = decode_error or "no event type in payload or headers"
        row = {"event_type": event_type, "event_id": event_id, "service": service,
               "correlation_id": correlation_id, "at": at, "trace_id": trace_id,
               "parent_span_id": span_id, "dlq_reason": dlq_reason, "original_topic": original_topic,
               "dlq_class": dlq_class, "schema_version": schema_version, "decode_error": decode_error}
        if with_body:
            row["_body"] = body if isinstance(body, (dict, list)) else None
        return row


def _find(body: dict, plan) -> str | None:
    """The first non-empty scalar along the compiled paths, as bounded text (see :func:`_scalar`)."""
    for key, rest in plan:
        node = body.get(key)
        if node is None:
            continue
        for part in rest:
            if type(node) is not dict:
                node = None
                break
            node = node.get(part)
        if type(node) is str:  # the common case, without a call
            if node:
                return node if len(node) <= MAX_FIELD else node[: MAX_FIELD - 1] + "…"
            continue
        found = _scalar(node)
        if found:
            return found
    return None


DEFAULT_DECODER: Decoder | None = None


def decode_message(value: bytes | None, headers: dict[str, bytes], with_body: bool = False,
                   decoder: Decoder | None = None) -> dict:
    """Decode one message with ``decoder`` (default paths when None); never raises."""
    global DEFAULT_DECODER
    if decoder is None:
        if DEFAULT_DECODER is None:
            DEFAULT_DECODER = Decoder()
        decoder = DEFAULT_DECODER
    return decoder.decode(value, headers, with_body)


def _json_body(value) -> tuple[object | None, str | None]:
    if value is None or value == b"" or value == "":
        return None, "empty payload"
    try:
        return orjson.loads(value), None
    except orjson.JSONDecodeError as exc:
        return None, f"not JSON ({text(str(exc), 120)})"
    except Exception as exc:  # orjson only takes bytes/str; anything else is undecodable too
        return None, f"not JSON ({type(exc).__name__})"


def _scalar(value) -> str | None:
    """A JSON scalar as bounded text; objects, arrays and null are no value."""
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        value = "true" if value else "false"
    return text(str(value)) or None


def _first(body: dict, paths) -> str | None:
    for path in paths:
        node = body
        for part in path:
            if not isinstance(node, dict):
                node = None
                break
            node = node.get(part)
        found = _scalar(node)
        if found:
            return found
    return None


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
    return not _DLQ_MARKERS.isdisjoint(headers)


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
