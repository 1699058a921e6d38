"""Decode a broker message into the fields of the ``events`` frame.

Out of the box this reads:

* the eventscope envelope ``{event_type, event_id, timestamp, source, correlation_id, data}``;
* the Redis shape ``payload = {type, data, metadata: {eventId, timestamp, source, correlationId}}``;
* CloudEvents, binary mode (``ce_type``/``ce_source``/``ce_id``/``ce_time`` headers, plain
  body) and structured mode (``specversion``, ``type``, ``source``, ``id``, ``time``);
* correlation IDs in ``x-correlation-id`` / ``correlation-id`` / ``correlation_id`` headers;
* W3C ``traceparent`` (header or Redis field);
* Avro, Protobuf and JSON Schema records in the Confluent Schema Registry wire format (magic
  byte 0, schema ID), read into a dict by :mod:`eventscope.registry` and then looked at like a
  JSON envelope; with no type field or header, the schema's record name is the event type,
  and without an envelope version ``schema_version`` names the registered schema;
* dead-letter metadata from Spring (``kafka_dlt-*``), Kafka Connect
  (``__connect.errors.*``) and eventscope's Redis DLQ fields (``error``, ``original_stream``).

Nothing here raises on bad input: an undecodable payload becomes a row with
``event_type = "<undecodable>"`` and ``decode_error`` saying why, so it is counted,
shown, and never lost.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Annotated, Iterable, Union

import msgspec
import orjson
from opentelemetry import trace as otel_trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from eventscope.mask import mask_text

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
DLQ_MARKER_SET = frozenset(DLQ_HEADER_MARKERS)
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
        _PROPAGATOR = TraceContextTextMapPropagator()
    return _PROPAGATOR


def parse_traceparent(value) -> tuple[str | None, str | None]:
    """``00-<trace>-<span>-<flags>`` → (trace_id, span_id); (None, None) if invalid.

    OpenTelemetry's TraceContext propagator decides what is valid (future versions,
    all-zero IDs, version ``ff``, ...). The canonical version-00 form, which is nearly
    every real header, is taken by a regex first because building an OTel context costs
    ~20 µs per event; ``tests/unit/test_decode_properties.py`` checks that both always agree.
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
    try:
        ctx = _propagator().extract({"traceparent": value})
        span = otel_trace.get_current_span(ctx).get_span_context()
    except Exception:  # the propagator is lenient, but hostile input must never escape
        return None, None
    if not span.is_valid:
        return None, None
    return format(span.trace_id, "032x"), format(span.span_id, "016x")


_FIELDS = ("correlation_id", "event_type", "event_id", "source", "timestamp", "traceparent")
#: what :meth:`Decoder.decode` returns (and :meth:`Decoder.decode_many` gives per message), in order
COLUMNS = ("event_type", "event_id", "service", "correlation_id", "at", "trace_id", "parent_span_id",
           "dlq_reason", "original_topic", "dlq_class", "schema_version", "decode_error")
_MISSING = object()
_NO_KEY = object()  # never a key of a parsed JSON object


def _plan(paths) -> tuple:
    """Dotted paths as ``((top-level key, rest of the path or ()), ...)``: one dict lookup for
    the common top-level case, a walk only for nested paths."""
    return tuple((path[0], tuple(path[1:])) for path in paths)


@dataclass
class DecodeConfig:
    """Where decoding looks for each field: dotted JSON paths first, then headers (first hit wins)."""

    correlation_id: list = field(default_factory=lambda: [
        "correlation_id", "correlationId", "metadata.correlationId", "metadata.correlation_id",
        "correlationid"])
    correlation_id_headers: list = field(default_factory=lambda: [
        "correlation-id", "x-correlation-id", "correlation_id", "correlationid", "ce_correlationid"])
    event_type: list = field(default_factory=lambda: ["event_type", "type", "eventType"])
    event_type_headers: list = field(default_factory=lambda: ["ce_type", "event_type"])
    event_id: list = field(default_factory=lambda: ["event_id", "eventId", "metadata.eventId", "id"])
    event_id_headers: list = field(default_factory=lambda: ["ce_id"])
    source: list = field(default_factory=lambda: ["source", "metadata.source"])
    source_headers: list = field(default_factory=lambda: ["ce_source"])
    timestamp: list = field(default_factory=lambda: ["timestamp", "metadata.timestamp", "time"])
    timestamp_headers: list = field(default_factory=lambda: ["ce_time"])
    traceparent: list = field(default_factory=lambda: ["traceparent", "metadata.traceparent"])
    traceparent_headers: list = field(default_factory=lambda: ["traceparent"])
    payload_fields: list = field(default_factory=lambda: ["payload", "envelope"])


class Decoder:
    """Field paths and header names to look in, from ``[decode]`` (:class:`DecodeConfig`).

    The paths are compiled once into small plans (top-level key first, the rest of a
    nested path only when the first key is there), and every header name the decoder
    might read is kept in one set, so a message whose headers name none of them skips
    the header scans entirely.
    """

    def __init__(self, config=None, registry=None):
        config = config or DecodeConfig()
        # reads payloads in the Confluent Schema Registry wire format (eventscope.registry's
        # SchemaRegistryDecoder: ``decode(value) -> (dict | None, error | None, schema info)``)
        self.registry = registry

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
        self._fast = _FastPath.build([self.body[key] for key in _FIELDS])

    def decode(self, value: bytes | None, headers: dict[str, bytes], with_body: bool = False) -> dict:
        """Decode one message; returns the decodable fields of an ``events`` row (never raises).

        With ``with_body`` the parsed JSON object (or None) is returned under ``_body``.
        """
        event_type = event_id = service = correlation_id = at = schema_version = framed = None
        decode_error = ""
        if type(value) is bytes and value[:1] == b"\x00" and len(value) >= 5:
            # the Confluent wire format (a JSON text never starts with a zero byte): the record,
            # once read with its schema, is an envelope like any other
            body, error, framed = self._framed(value)
        else:
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
        if framed is not None and schema_version is None:
            schema_version = framed["version"]
        row = dict(zip(COLUMNS, self._complete(event_type, event_id, service, correlation_id, at, traceparent,
                                               schema_version, decode_error, headers)))
        if framed is not None and row["event_type"] == UNDECODABLE and type(body) is dict and framed["name"]:
            # no envelope field or header names the type: the schema's record name does
            row["event_type"], row["decode_error"] = text(framed["name"]), ""
        if with_body:
            row["_body"] = body if isinstance(body, (dict, list)) else None
        return row

    def _framed(self, value: bytes) -> tuple[dict | None, str | None, dict | None]:
        """(record, error, schema info) of a payload in the Confluent wire format."""
        if self.registry is None:
            schema_id = int.from_bytes(value[1:5], "big")
            return None, (f"Confluent Schema Registry wire format (schema {schema_id}) but no "
                          f"[schema_registry] url or schema_dir is configured"), None
        try:
            return self.registry.decode(value)
        except Exception as exc:  # the registry decoder never raises; a bug there loses nothing here
            return None, f"schema registry decoding failed: {type(exc).__name__}", None

    def decode_many(self, values: list, headers: list) -> tuple[dict[str, list], list]:
        """Decode a batch of messages: the columns of :data:`COLUMNS` (per message exactly what
        :meth:`decode` gives), and per message what :meth:`parsed_body` turns into its parsed JSON
        object when it is needed (for the masked payload): the parsed body, or the bytes to parse
        it from. Each row goes into the column lists as soon as it is made, while its values are
        still in the CPU's cache (transposing a finished batch costs a fifth of the decoding)."""
        columns = {name: [] for name in COLUMNS}
        c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11 = (col.append for col in columns.values())
        bodies = []
        bodies_append = bodies.append

        def rows_append(row):
            x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11 = row
            c0(x0), c1(x1), c2(x2), c3(x3), c4(x4), c5(x5), c6(x6), c7(x7), c8(x8), c9(x9), c10(x10), c11(x11)

        fast = self._fast
        if fast is None:
            for value, hdrs in zip(values, headers):
                row = self.decode(value, hdrs, with_body=True)
                bodies_append(row.pop("_body"))
                rows_append(tuple(row.values()))
            return columns, bodies
        read, firsts, versions, direct = fast.decode, fast.firsts, fast.versions, fast.direct
        p_tp, p_type, p_id, p_source, p_cid, p_time = fast.plans
        h_fixed_disjoint, h_any_disjoint, h_tp = self._h_fixed.isdisjoint, self._h_any.isdisjoint, self._h_tp
        meta_version, payload_fields, complete = fast.meta_version, self._h_payload, self._complete
        for value, hdrs in zip(values, headers):
            src = value
            if not src and hdrs:
                src = next((hdrs[name] for name in payload_fields if name in hdrs), None)
            s = None
            # msgspec's depth limit follows Python's recursion limit, orjson's is fixed at 1024:
            # a document that might nest that deep (one bracket per level) is left to decode
            if type(src) is bytes and src[:1] != b"\x00" and (src.isascii() or _utf8(src)) and (
                    len(src) < 2048 or src.count(b"[") + src.count(b"{") < 1000):
                try:
                    s = read(src)
                except Exception:  # not an object, an array where a scalar was expected, ...
                    s = None
            if s is None:
                row = self.decode(value, hdrs, with_body=True)
                bodies_append(row.pop("_body"))
                rows_append(tuple(row.values()))
                continue
            if direct:  # the first path of each field is a top-level key: a short string there is it
                a, b, c, d, e = firsts(s)
                event_type = a if type(a) is str and 0 < len(a) <= MAX_FIELD else _pick(s, p_type)
                event_id = b if type(b) is str and 0 < len(b) <= MAX_FIELD else _pick(s, p_id)
                service = c if type(c) is str and 0 < len(c) <= MAX_FIELD else _pick(s, p_source)
                correlation_id = d if type(d) is str and 0 < len(d) <= MAX_FIELD else _pick(s, p_cid)
                at = e if type(e) is str and 0 < len(e) <= MAX_FIELD else _pick(s, p_time)
            else:
                event_type, event_id, service = _pick(s, p_type), _pick(s, p_id), _pick(s, p_source)
                correlation_id, at = _pick(s, p_cid), _pick(s, p_time)
            version, v2, v3, meta = versions(s)
            if version is _UNSET:
                version = v2
                if version is _UNSET:
                    version = v3
                    if version is _UNSET:
                        version = getattr(meta, meta_version) if isinstance(meta, msgspec.Struct) else None
                        if version is _UNSET:
                            version = None
            schema_version = None
            if version is not None:
                kind = type(version)
                if kind is int:
                    schema_version = str(version)
                elif kind is str and 0 < len(version) <= MAX_FIELD:
                    schema_version = version
                else:
                    schema_version = _scalar(version)
            bodies_append(src)
            if event_type and event_id and service and correlation_id and at and (
                    not hdrs or h_fixed_disjoint(hdrs)):
                # the common case inline (what _complete does when the body had every field and no
                # dead-letter header is there): only the traceparent may come from the headers
                trace_id = span_id = None
                if hdrs and not h_any_disjoint(hdrs):
                    for name in h_tp:
                        tp_header = hdrs.get(name)
                        if tp_header:
                            trace_id, span_id = parse_traceparent(tp_header)
                            break
                if trace_id is None:  # the body's traceparent only when no header gives a valid one
                    traceparent = _pick(s, p_tp)
                    if traceparent is not None:
                        trace_id, span_id = parse_traceparent(traceparent)
                c0(event_type), c1(event_id), c2(service), c3(correlation_id), c4(at), c5(trace_id), c6(span_id)
                c7(None), c8(None), c9(None), c10(schema_version), c11("")
                continue
            x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11 = complete(
                event_type, event_id, service, correlation_id, at, _LAZY, schema_version, "", hdrs, s)
            c0(x0), c1(x1), c2(x2), c3(x3), c4(x4), c5(x5), c6(x6), c7(x7), c8(x8), c9(x9), c10(x10), c11(x11)
        return columns, bodies

    @staticmethod
    def parsed_body(entry):
        """The parsed JSON object (or list, or None) of one message, from what :meth:`decode_many`
        gave for it."""
        if type(entry) is bytes:
            try:
                entry = orjson.loads(entry)
            except Exception:  # valid JSON orjson will not read (a number beyond a double)
                return None
        return entry if isinstance(entry, (dict, list)) else None

    def _complete(self, event_type, event_id, service, correlation_id, at, traceparent, schema_version,
                  decode_error, headers, struct=None) -> tuple:
        """The fields read from the body, completed from the headers: the values of
        :data:`COLUMNS`, in order. ``traceparent`` is ``_LAZY`` when the fast path's ``struct`` is
        to be asked for it only if the headers carry no valid one."""
        trace_id = span_id = dlq_reason = original_topic = dlq_class = None
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
        if traceparent is _LAZY:
            if tp_header is not None:
                trace_id, span_id = parse_traceparent(tp_header)
            if trace_id is None:
                traceparent = self._fast.traceparent(struct)
                if traceparent is not None:
                    trace_id, span_id = parse_traceparent(traceparent)
        elif tp_header is not None or traceparent is not None:
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
        return (event_type, event_id, service, correlation_id, at, trace_id, span_id, dlq_reason,
                original_topic, dlq_class, schema_version, decode_error)

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



_UNSET = msgspec.UNSET
_LAZY = object()  # the body's traceparent, not looked up yet
# integers orjson reads as the same Python value (it turns those beyond 64 bits into floats;
# msgspec bounds stop at int64, so the unsigned top half goes to decode)
_INT = Annotated[int, msgspec.Meta(ge=-2**63, le=2**63 - 1)]
_LEAF = Union[str, _INT, float, bool, None]
_VERSION_PATHS = (("schema_version",), ("schemaVersion",), ("dataschema",), ("metadata", "schemaVersion"))


class _FastPath:
    """Reads only the keys the decoder looks at, with msgspec into a small Struct (the rest of the
    document is validated and skipped, never built as Python objects): several times cheaper than
    parsing the whole envelope. A message it cannot read exactly as :meth:`Decoder.decode` would
    (not an object, an array or object where a value was expected, an integer beyond 64 bits,
    bytes that are not UTF-8, a document that may nest over 1,000 levels) goes to ``decode``;
    ``tests/unit/test_decode_properties.py`` checks that both give the same row.

    One difference is kept on purpose: a number too large for a double (``1e400``) in a part of the
    document that is not read. RFC 8259 allows it and msgspec skips it, so the event's fields are
    read; orjson refuses the whole document, so ``decode`` calls it undecodable. Such an event's
    masked payload is empty (orjson cannot read it) and its preview is the masked raw text."""

    def __init__(self, struct_type, plans: list, attrs: dict):
        self.decode = msgspec.json.Decoder(struct_type).decode
        # per field: ((attr, (nested attrs...)), ...), the configured paths in order; traceparent first
        order = ("traceparent", "event_type", "event_id", "source", "correlation_id", "timestamp")
        self.plans = [plans[_FIELDS.index(f)] for f in order]
        # the five fields besides traceparent, when each one's first path is a top-level key: one
        # C call reads those five attributes
        self.direct = all(plan and not plan[0][1] for plan in self.plans[1:])
        self.firsts = attrgetter(*[plan[0][0] for plan in self.plans[1:]]) if self.direct else None
        self.versions = attrgetter(*[attrs[path][0] for path in _VERSION_PATHS[:3]], attrs[("metadata",)][0])
        self.meta_version = attrs[("metadata", "schemaVersion")][1][0]

    def traceparent(self, s) -> str | None:
        """The body's traceparent, from a decoded Struct."""
        return _pick(s, self.plans[0])

    @classmethod
    def build(cls, field_paths: list) -> "_FastPath | None":
        """From each field's dotted paths; None when they cannot be expressed as a Struct."""
        tree: dict = {}
        for path in [p for paths in field_paths for p in paths] + list(_VERSION_PATHS):
            node = tree
            for key in path:
                node = node.setdefault(key, {})
        try:
            struct_type, attrs = _struct_for(tree, "Envelope", ())
            plans = [tuple(attrs[path] for path in paths) for paths in field_paths]
            return cls(struct_type, plans, attrs)
        except Exception:  # an odd configured key msgspec will not take: every message goes to decode
            return None


def _struct_for(tree: dict, name: str, prefix: tuple):
    """A Struct type with one field per key of ``tree`` (``f0``, ``f1``, ... renamed to the keys), and
    ``{path: (first attr, (nested attrs...))}`` for every path through it."""
    fields, rename, attrs = [], {}, {}
    for i, (key, sub) in enumerate(tree.items()):
        attr = f"f{i}"
        rename[attr] = key
        if sub:
            sub_type, sub_attrs = _struct_for(sub, f"{name}_{i}", ())
            kind = Union[sub_type, str, _INT, float, bool, None]
            for path, (first, rest) in sub_attrs.items():
                attrs[(key,) + path] = (attr, (first,) + rest)
        else:
            kind = _LEAF
        attrs[(key,)] = (attr, ())
        fields.append((attr, kind, _UNSET))
    return msgspec.defstruct(name, fields, rename=rename, gc=False), attrs


def _pick(s, plan) -> str | None:
    """:func:`_find` over a fast-path Struct: the first non-empty scalar along the paths."""
    for attr, rest in plan:
        node = getattr(s, attr)
        for part in rest:
            if not isinstance(node, msgspec.Struct):
                node = None
                break
            node = getattr(node, part)
        if node is None or node is _UNSET or isinstance(node, msgspec.Struct):
            continue  # missing, null, or an object: no value here
        if type(node) is str:
            if node:
                return node if len(node) <= MAX_FIELD else node[: MAX_FIELD - 1] + "…"
            continue
        found = _scalar(node)
        if found:
            return found
    return None


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False

DEFAULT_DECODER: Decoder | None = None


def default_decoder() -> Decoder:
    """The decoder with the default paths (made once)."""
    global DEFAULT_DECODER
    if DEFAULT_DECODER is None:
        DEFAULT_DECODER = Decoder()
    return DEFAULT_DECODER


def decode_message(value: bytes | None, headers: dict[str, bytes], with_body: bool = False,
                   decoder: Decoder | None = None) -> dict:
    """Decode one message with ``decoder`` (default paths when None); never raises."""
    return (decoder or default_decoder()).decode(value, headers, with_body)


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


def failure_reason(headers: dict[str, bytes]) -> tuple[str | None, str | None]:
    """(exception class, grouped reason) from DLQ headers; the reason has IDs and numbers as ``#``.

    The exception a dead-letter publisher names is often a wrapper with the same text on every
    record: Spring's ``ListenerExecutionFailedException`` ("Listener method ... threw
    exception"), Kafka Connect's ``DataException`` ("Converting byte[] to Kafka Connect data
    failed due to serialization error"). What failed is its cause: Spring names the cause's
    class in ``kafka_dlt-exception-cause-fqcn``; both put the whole chain in a stacktrace
    header. So the reason is the innermost ``Caused by:`` of the stacktrace (for Spring, the
    one of the named cause class), else the cause class with the exception's message, else
    the exception itself."""
    cls = next((text(headers[h], 200) for h in _CLASS_HEADERS if headers.get(h)), None)
    message = next((text(headers[h], 300) for h in _MESSAGE_HEADERS if headers.get(h)), None)
    if message:
        match = _CLASS_PREFIX.match(message)
        if match:  # "PaymentDeclinedError: card declined" carries its own class
            cls = cls or match.group(1)
            message = match.group(2)
    cause_cls = text(headers.get("kafka_dlt-exception-cause-fqcn"), 200) or None
    cause = _innermost_cause(headers, cause_cls)
    if cause is not None:
        cls, message = cause
    elif cause_cls:
        cls = cause_cls
    if not cls and not message:
        return None, None
    short = cls.rsplit(".", 1)[-1] if cls else None
    # an exception message quotes what failed: an e-mail address, a token (masked like payloads)
    normal = " ".join(_VOLATILE.sub("#", mask_text(message)).split())[:160] if message else None
    reason = f"{short}: {normal}" if short and normal else (short or normal)
    return cls, reason


_STACKTRACE_HEADERS = ("kafka_dlt-exception-stacktrace", "__connect.errors.exception.stacktrace")
_CAUSED_BY = re.compile(r"^\s*Caused by: ([A-Za-z_$][\w.$]*)(?::[ \t]*([^\r\n]*))?", re.M)
STACKTRACE_SCAN = 64 * 1024  # a Java trace's causes sit in its first few kB; bounded either way


def _innermost_cause(headers: dict[str, bytes], cls: str | None) -> tuple[str, str] | None:
    """(class, message) of the innermost ``Caused by:`` line of the stacktrace header, or of the
    innermost one of class ``cls`` when given; None without a stacktrace or a match."""
    trace = next((headers[h] for h in _STACKTRACE_HEADERS if headers.get(h)), None)
    if trace is None:
        return None
    if isinstance(trace, str):
        trace = trace.encode("utf-8", "replace")
    if len(trace) > STACKTRACE_SCAN:  # whole lines only: a cut line would name a cut class
        trace = trace[:trace.rfind(b"\n", 0, STACKTRACE_SCAN) + 1]
    found = [(m.group(1), m.group(2) or "")
             for m in _CAUSED_BY.finditer(trace.decode("utf-8", "replace"))]
    if cls:
        found = [f for f in found if f[0] == cls]
    if not found:
        return None
    cause_cls, message = found[-1]
    return text(cause_cls, 200), text(message.strip(), 300)


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
