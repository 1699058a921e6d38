"""Property tests: whatever reaches the decoder, it never raises and every message is accounted for.

Random bytes, invalid UTF-8, deep and huge JSON, envelopes with missing and wrong-typed
fields, invalid traceparents and hostile strings go through the same path a collector
uses (:class:`eventscope.collectors.events_common.EventBatch`), into the ``events`` schema.
"""
from __future__ import annotations

import json

import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eventscope.collectors.events_common import EventBatch
from eventscope.config import DecodeConfig
from eventscope.decode import COLUMNS, UNDECODABLE, Decoder, decode_message, parse_traceparent, parse_traceparent_otel

NOW = pd.Timestamp("2026-11-28T10:00:00Z")
HOSTILE = ["<script>alert(1)</script>", "\u202eevil", "\x00\x01", "' OR 1=1 --", "{{7*7}}",
           "${jndi:ldap://x/a}", "a" * 5000, "💥" * 300, "\ud800", "href=javascript:alert(1)"]
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                         st.text(max_size=40), st.sampled_from(HOSTILE))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=20)
ENVELOPE_KEYS = ["event_type", "type", "eventType", "event_id", "eventId", "id", "source", "timestamp",
                 "time", "correlation_id", "correlationId", "metadata", "traceparent", "schema_version",
                 "specversion", "data", "email", "phone"]
envelopes = st.dictionaries(st.sampled_from(ENVELOPE_KEYS), json_values, max_size=10)
traceparents = st.one_of(
    st.text(max_size=70),
    st.from_regex(r"\A[0-9a-fA-F]{2}-[0-9a-f]{30,33}-[0-9a-f]{15,17}-[0-9a-f]{2}(-[ -~]{0,8})?[ \t]*\Z"),
    st.builds(lambda v, t, s, f: f"{v}-{t}-{s}-{f}", st.sampled_from(["00", "01", "ff", "cc", "0g"]),
              st.sampled_from(["0" * 32, "a" * 32, "0af7651916cd43dd8448eb211c80319c"]),
              st.sampled_from(["0" * 16, "b" * 16, "b7ad6b7169203331"]),
              st.sampled_from(["00", "01", "03", "ff"])))
header_names = st.sampled_from(["traceparent", "x-correlation-id", "correlation-id", "ce_type", "ce_id",
                                "ce_source", "ce_time", "event_type", "kafka_dlt-exception-message",
                                "kafka_dlt-original-topic", "payload", "envelope", "error", "x"])
headers = st.dictionaries(header_names, st.one_of(st.binary(max_size=80), traceparents.map(str.encode),
                                                  st.sampled_from(HOSTILE).map(lambda s: s.encode("utf-8", "surrogatepass"))),
                          max_size=6)


def _payload(kind, data):
    if kind == "bytes":
        return data.draw(st.binary(max_size=300))
    if kind == "invalid_utf8":
        return b'{"event_type": "OrderPlaced", "source": "' + data.draw(st.binary(min_size=1, max_size=20)) + b'\xff\xfe"}'
    if kind == "envelope":
        return json.dumps(data.draw(envelopes)).encode()
    if kind == "truncated":
        whole = json.dumps(data.draw(envelopes)).encode()
        return whole[: data.draw(st.integers(0, max(0, len(whole) - 1)))]
    if kind == "deep":
        depth = data.draw(st.integers(100, 3000))
        return b'{"event_type": "Deep", "data": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == "huge":
        return json.dumps({"event_type": "Huge", "correlation_id": "c", "data": "x" * 300_000}).encode()
    return None


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_decoder_never_raises_and_accounts_for_everything(data):
    kinds = data.draw(st.lists(st.sampled_from(["bytes", "invalid_utf8", "envelope", "truncated",
                                                "deep", "huge", "none"]), min_size=1, max_size=6))
    batch = EventBatch("t", "kafka")
    drawn = []
    for i, kind in enumerate(kinds):
        value, hdrs = _payload(kind, data), data.draw(headers)
        drawn.append((kind, value, hdrs))
        batch.add("orders", 0, str(i), 1795000000000 + i, value, hdrs, False)
    frame = batch.frame(NOW, {})
    assert len(frame) == len(kinds) and list(frame["offset"]) == [str(i) for i in range(len(kinds))]
    for (kind, value, hdrs), row in zip(drawn, frame.to_dict("records")):
        row = {k: (None if v is pd.NA else v) for k, v in row.items()}
        assert row["event_type"], row
        if row["event_type"] == UNDECODABLE:
            assert row["decode_error"], row  # undecodable always says why
        if kind in ("invalid_utf8", "truncated", "none") and "ce_type" not in hdrs:
            # a payload that cannot be read is counted, even when a header names the type
            assert row["decode_error"], (kind, value[:80] if value else value, hdrs)
        for key in ("event_type", "event_id", "service", "correlation_id", "schema_version"):
            assert row[key] is None or (isinstance(row[key], str) and len(row[key]) <= 512)
        assert row["trace_id"] is None or len(row["trace_id"]) == 32
        assert isinstance(row["payload"], str) and isinstance(row["preview"], str)
        json.loads(row["headers"])
    undecodable = int((frame["decode_error"] != "").sum())
    decoded = int((frame["decode_error"] == "").sum())
    assert (frame.loc[frame["event_type"] == UNDECODABLE, "decode_error"] != "").all()
    assert undecodable + decoded == len(kinds) == len(frame)  # nothing lost, nothing doubled


@settings(max_examples=250, deadline=None)
@given(traceparents)
def test_traceparent_fast_path_agrees_with_the_otel_propagator(value):
    assert parse_traceparent(value) == parse_traceparent_otel(value)
    assert parse_traceparent(value.encode("utf-8", "surrogatepass")) == parse_traceparent_otel(
        value.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))


@pytest.mark.parametrize("value", [
    b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # canonical
    b"00-" + b"0" * 32 + b"-b7ad6b7169203331-01", b"00-0af7651916cd43dd8448eb211c80319c-" + b"0" * 16 + b"-01",
    b"00-0af7651916cd43dd8448eb211c8031-9c-b7ad6b7169203331-01"[:55],  # 55 bytes, a dash too many
    b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333--01"[:55],
    b"00-0af7651916cd43dd8448eb211c80319C-b7ad6b7169203331-01",  # upper case
    b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",
    b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # a later version: the slow path
    b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n",
    b"00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01",
])
def test_header_bytes_fast_path_agrees_with_the_otel_propagator(value):
    assert parse_traceparent(value) == parse_traceparent_otel(value.decode("utf-8", "replace"))


def test_otel_rules_are_applied():
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert parse_traceparent(good) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert parse_traceparent(good[:-2] + "03")[0] == "0af7651916cd43dd8448eb211c80319c"
    assert parse_traceparent("00-" + "0" * 32 + "-b7ad6b7169203331-01") == (None, None)  # zero trace ID
    assert parse_traceparent("ff" + good[2:]) == (None, None)  # version ff is invalid
    assert parse_traceparent(good + "-extra") == (None, None)  # version 00 takes nothing more
    assert parse_traceparent("cc" + good[2:] + "-future")[0] == "0af7651916cd43dd8448eb211c80319c"
    assert parse_traceparent(good.upper()) == (None, None)


@given(envelopes, headers)
@settings(max_examples=100, deadline=None)
def test_wrong_typed_fields_never_become_objects(body, hdrs):
    row = decode_message(json.dumps(body).encode(), hdrs)
    for key in ("event_type", "event_id", "service", "correlation_id", "at"):
        assert row[key] is None or isinstance(row[key], str)
    for field, column in (("event_type", "event_type"), ("event_id", "event_id"), ("source", "service"),
                          ("correlation_id", "correlation_id"), ("timestamp", "at")):
        if isinstance(body.get(field), (dict, list)):  # an object is no ID: never its repr
            assert row[column] != str(body[field]) and row[column] != json.dumps(body[field])


def test_configured_paths_and_headers():
    decoder = Decoder(DecodeConfig(correlation_id=["ctx.request.id"], correlation_id_headers=["x-req"],
                                   event_type=["kind"], source=["origin.service"]))
    body = {"kind": "Shipped", "origin": {"service": "ship"}, "ctx": {"request": {"id": "r-1"}},
            "correlation_id": "ignored"}
    row = decoder.decode(orjson.dumps(body), {})
    assert (row["event_type"], row["service"], row["correlation_id"]) == ("Shipped", "ship", "r-1")
    row = decoder.decode(orjson.dumps({"kind": "X"}), {"x-req": b"from-header"})
    assert row["correlation_id"] == "from-header"
    # the traceparent may also sit in the payload
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    row = decode_message(orjson.dumps({"type": "t", "metadata": {"traceparent": tp}}), {})
    assert row["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    # a broken header falls back to the payload's traceparent
    row = decode_message(orjson.dumps({"type": "t", "traceparent": tp}), {"traceparent": b"junk"})
    assert row["trace_id"] == "0af7651916cd43dd8448eb211c80319c"


def test_masking_personal_data_but_not_ids_and_times():
    from eventscope import mask
    masked = {"call +49 151 2345678 now": "call *** now", "(555) 123-4567": "***", "ada@example.com": "***@***",
              "card 4111 1111 1111 1111": "card ****", "card 4111 1111 1111 1111 of x": "card **** of x", "amex 3782 822463 10005": "amex ****",
              "4111-1111-1111-1111": "****", "old visa 4222222222222": "old visa ****"}
    # Redis entry IDs and millisecond times that happen to pass the Luhn check are still data
    kept = ["1795841908571-0", "1795852084509-0", "at 1795852084509", "2026-11-28T10:00:00.000Z",
            "192.168.100.200", "amount 279.99", "order 1041 at 12:30", "evt_1234567890abcdef", "1732790000000"]
    for text_in, text_out in masked.items():
        assert mask.mask_text(text_in) == text_out
    for text_in in kept:
        assert mask.mask_text(text_in) == text_in
    try:
        mask.configure(fields=["customer_id"])
        shown = mask.masked_payload({"data": {"customer_id": "cus_1", "order_id": "ord_1"}})
        assert '"customer_id":"***"' in shown and "ord_1" in shown
        assert json.loads(mask.headers_json({"customer_id": b"cus_1"}))["customer_id"] == "***"
    finally:
        mask.configure()


def _reference_decode(decoder: Decoder, value, headers: dict) -> dict:
    """The plain, unoptimised decoder (path walk per field, every header scan): the oracle the
    compiled plans in :class:`Decoder` must agree with on every input."""
    from eventscope.decode import _ORIGIN_HEADERS, _json_body, _scalar, failure_reason, text

    def first(body, paths):
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

    row = {"event_type": None, "event_id": None, "service": None, "correlation_id": None,
           "at": None, "trace_id": None, "parent_span_id": None, "dlq_reason": None,
           "original_topic": None, "dlq_class": None, "schema_version": None, "decode_error": ""}
    if type(value) is bytes and value[:1] == b"\x00" and len(value) >= 5:
        # the schema registry's wire format (JSON never starts with a zero byte); without a
        # registry it cannot be read, and says which schema it names
        body, error = None, (f"Confluent Schema Registry wire format (schema {int.from_bytes(value[1:5], 'big')}) "
                             "but no [schema_registry] url or schema_dir is configured")
    else:
        body, error = _json_body(value)
    for name in decoder.payload_fields:
        if body is not None or name not in headers:
            continue
        body, error = _json_body(headers[name])
    traceparent = None
    if isinstance(body, dict):
        found = {key: first(body, paths) for key, paths in decoder.body.items()}
        traceparent = found.pop("traceparent")
        row.update(event_type=found["event_type"], event_id=found["event_id"], service=found["source"],
                   correlation_id=found["correlation_id"], at=found["timestamp"])
        meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        row["schema_version"] = _scalar(body.get("schema_version", body.get("schemaVersion", body.get(
            "dataschema", meta.get("schemaVersion")))))
    elif "ce_type" not in headers:
        row["decode_error"] = error or "payload is not a JSON object"
    for key, column in (("event_type", "event_type"), ("event_id", "event_id"), ("source", "service"),
                        ("correlation_id", "correlation_id"), ("timestamp", "at")):
        if not row[column]:
            row[column] = next((text(headers[h]) for h in decoder.headers[key] if headers.get(h)), None)
    if "ce_dataschema" in headers and not row["schema_version"]:
        row["schema_version"] = text(headers["ce_dataschema"])
    tp_header = next((headers[h] for h in decoder.headers["traceparent"] if headers.get(h)), None)
    row["trace_id"], row["parent_span_id"] = parse_traceparent_otel(text(tp_header or traceparent, 600) or "")
    if row["trace_id"] is None and tp_header is not None and traceparent is not None:
        row["trace_id"], row["parent_span_id"] = parse_traceparent_otel(traceparent)
    row["dlq_class"], row["dlq_reason"] = failure_reason(headers)
    for name in _ORIGIN_HEADERS:
        if headers.get(name):
            row["original_topic"] = text(headers[name], 249)
            break
    if not row["event_type"]:
        row["event_type"] = UNDECODABLE
        row["decode_error"] = row["decode_error"] or "no event type in payload or headers"
    return row


NESTED_DECODER = Decoder(DecodeConfig(correlation_id=["ctx.request.id", "correlation_id"], event_type=["kind", "type"],
                                      source=["origin.service", "metadata.source"], event_id=["data.id", "id"],
                                      correlation_id_headers=["x-correlation-id", "ce_id"]))
all_headers = st.dictionaries(st.one_of(header_names, st.sampled_from(
    ["ce_dataschema", "kafka_dlt-exception-fqcn", "__connect.errors.topic", "original_stream", "x-req"])),
    st.one_of(st.binary(max_size=80), traceparents.map(str.encode)), max_size=7)
nested_keys = ENVELOPE_KEYS + ["kind", "origin", "ctx", "request", "service", "schemaVersion", "dataschema",
                               "eventId", "correlationId"]
nested_envelopes = st.recursive(st.dictionaries(st.sampled_from(nested_keys), json_scalars | traceparents, max_size=8),
                                lambda inner: st.dictionaries(st.sampled_from(nested_keys), inner | json_scalars,
                                                              max_size=6), max_leaves=25)


@given(st.one_of(nested_envelopes.map(lambda b: json.dumps(b).encode()), st.binary(max_size=60), st.none(),
                 st.lists(json_scalars, max_size=3).map(lambda b: json.dumps(b).encode())),
       all_headers, st.sampled_from(["default", "nested"]))
@example(b"\x00\x00\x00\x00\x00", {}, "default")  # five zero bytes: a frame naming schema 0
@example(b"", {"payload": b"\x00\x00\x00\x01\x00"}, "nested")
@settings(max_examples=200, deadline=None)
def test_compiled_decoder_agrees_with_the_reference(value, hdrs, which):
    """Compiled paths, skipped header scans and the bytes fast path for traceparent headers give
    exactly what the plain decoder gives, field for field."""
    decoder = Decoder() if which == "default" else NESTED_DECODER
    got = decoder.decode(value, hdrs)
    assert got == _reference_decode(decoder, value, hdrs)


def _reference_mask(value, key: str = "", under_personal: bool = False):
    """The plain masking walk (every key checked, every string through the whole of ``mask_text``,
    with no pre-checks): the oracle for the whole-text pre-check, the text gate and the inlined
    walk in :mod:`eventscope.mask`. Whether the rules themselves are right is what
    ``tests/unit/test_mask_spec.py`` checks, with examples written from the specification."""
    from eventscope import mask
    under_personal = under_personal or (key != "" and mask.is_personal_key(key))
    if isinstance(value, dict):
        return {k: _reference_mask(v, str(k), under_personal) for k, v in value.items()}
    if isinstance(value, list):
        return [_reference_mask(v, "", under_personal) for v in value]
    if under_personal:  # every leaf of a value under a personal key
        return "***"
    if isinstance(value, str):
        return mask.mask_text(value)
    return value


PII_TEXT = ["ada@example.com", "x ada.l+1@mail.example.org y", "4111 1111 1111 1111", "4111-1111-1111-1112",
            "call +49 151 2345678 now", "(555) 123-4567", "555-123-4567", "+4915123456789", "1795841908571-0",
            "2026-11-28T10:00:00.123Z", "192.168.100.200", "order 1041 at 12:30", "١٢٣٤٥٦٧٨٩٠١٢", "12 34 56 7",
            "evt_1234567890abcdef", "0af7651916cd43dd8448eb211c80319c", "(12)34 5-67", "4111.1111.1111.1111",
            '{"email": "a@b.co", "id": 7}', '{"address": {"zip": 1}}', "user=bob&pass_word=x", "e%6Dail=x",
            "Authorization: Bearer abcdefgh12", 'x {"\\u0065mail": "y"}', "pin=1234&shipping=2"]
PII_KEYS = ["email", "e-mail", "customer_email", "name", "first_name", "phone", "card", "paſſword", "emaıl",
            "customer_id", "order_id", "amount", "items", "data", "note", "ssn", "Token", "K", "customerName",
            "topicName", "address", "apiKey", "x-api-key", "PIN", "shipping", "sessionId", "ipAddress"]
mask_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=30), st.sampled_from(PII_TEXT), st.sampled_from(HOSTILE[:8])),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(PII_KEYS), st.text(max_size=8)), inner, max_size=5)),
    max_leaves=25)


@given(mask_values, st.sampled_from([(), ("customer_id",), ("Kunde",), ("ſecret_code",)]))
@settings(max_examples=200, deadline=None)
def test_fast_masking_agrees_with_the_reference_walk(body, fields):
    """The whole-text pre-check, the inlined walk and the seven-digit gate give exactly what
    masking every key and string with the regexes gives."""
    from eventscope import mask
    try:
        mask.configure(fields=list(fields))
        expected = _reference_mask(body)
        assert mask._mask(body) == expected
        try:
            want = orjson.dumps(expected).decode("utf-8") if body is not None else ""
        except TypeError:  # a lone surrogate: no JSON text for it, either way
            want = ""
        assert mask.masked_payload(body, limit=10**9) == want
        for text_in in PII_TEXT:
            assert mask.mask_text(text_in) == _reference_mask(text_in)
    finally:
        mask.configure()


@given(st.dictionaries(st.one_of(st.sampled_from(PII_KEYS), st.text(max_size=8)),
                       st.one_of(st.binary(max_size=40), st.sampled_from(PII_TEXT).map(str.encode)), max_size=6))
@settings(max_examples=100, deadline=None)
def test_headers_json_masks_and_is_json(hdrs):
    from eventscope import mask
    shown = json.loads(mask.headers_json(hdrs))
    for key, value in hdrs.items():
        if key in ("envelope", "payload"):
            continue
        if mask.is_personal_key(key):
            assert shown[key] == "***"
        else:
            try:
                text_value = value.decode("utf-8")
            except UnicodeDecodeError:
                text_value = "0x" + value[:32].hex()
            want = _reference_mask(text_value)
            assert shown[key] == (want if len(want) <= 200 else want[:199] + "…")


batch_payloads = st.one_of(
    nested_envelopes.map(lambda b: json.dumps(b).encode()), envelopes.map(lambda b: json.dumps(b).encode()),
    st.binary(max_size=60), st.none(), st.just(b""), st.lists(json_scalars, max_size=3).map(lambda b: json.dumps(b).encode()),
    st.sampled_from([b"null", b"1", b'"x"', b"{}", b'{"event_type": "A"} x', b'{"event_type": "A", "data": NaN}',
                     b'{"event_type": "A", "\xff": 1}', b'{"event_type": "\\ud800"}', b'{"metadata": "x", "type": "T"}',
                     b'{"event_type": 18446744073709551615, "id": -9223372036854775809}',
                     b'{"event_type": "A", "x": "' + b"\xc3\xa9" * 10 + b'"}', b'\xef\xbb\xbf{"event_type": "A"}',
                     b'{"event_type": "A", "data": ' + b"[" * 1100 + b"]" * 1100 + b"}",
                     b'{"event_type": "A", "data": ' + b"[" * 900 + b"]" * 900 + b"}",
                     b'{"type": "T", "metadata": {"schemaVersion": null, "correlationId": 7}, "schemaVersion": 3}',
                     b'{"type": "T", "schema_version": null, "schemaVersion": 3}', b'{"event_type": "A", "data": 1e400}',
                     b'{"event_type": 1e400}', b'{"event_type": "A", "n": ' + b"9" * 400 + b"}"]))


@given(st.lists(st.tuples(batch_payloads, all_headers), min_size=1, max_size=8), st.sampled_from(["default", "nested"]))
@settings(max_examples=150, deadline=None)
def test_batch_decoder_agrees_with_decode(messages, which):
    """``decode_many`` (msgspec reading only the keys it needs, per message ``decode`` as the
    fallback) gives exactly the row ``decode`` gives for every message, and the same body."""
    decoder = Decoder() if which == "default" else NESTED_DECODER
    columns, bodies = decoder.decode_many([m[0] for m in messages], [m[1] for m in messages])
    assert list(columns) == list(COLUMNS) and all(len(col) == len(messages) for col in columns.values())
    for i, (value, hdrs) in enumerate(messages):
        want = decoder.decode(value, hdrs, with_body=True)
        body = want.pop("_body")
        got = {name: col[i] for name, col in columns.items()}
        source = value or next((hdrs[n] for n in decoder.payload_fields if n in hdrs), None)
        if _refused_for_a_huge_number(source) and got != want:
            # the one difference kept on purpose (see decode._FastPath): valid JSON with a number
            # beyond a double where nothing is read; its fields are read, its body is not
            assert got["decode_error"] in ("", "no event type in payload or headers")
            assert Decoder.parsed_body(bodies[i]) is None
            continue
        assert got == want, (value, hdrs)
        assert Decoder.parsed_body(bodies[i]) == body


def _refused_for_a_huge_number(source) -> bool:
    try:
        orjson.loads(source)
    except orjson.JSONDecodeError as exc:
        return "number is infinity" in str(exc)
    except TypeError:
        return False
    return False


def test_a_huge_number_nobody_reads_does_not_make_an_event_undecodable():
    value = b'{"event_type": "OrderPlaced", "correlation_id": "c-1", "data": {"amount": 1e400}}'
    columns, bodies = Decoder().decode_many([value], [{}])
    assert columns["event_type"] == ["OrderPlaced"] and columns["correlation_id"] == ["c-1"]
    assert columns["decode_error"] == [""] and Decoder.parsed_body(bodies[0]) is None
    batch = EventBatch("t", "kafka")
    batch.add("orders", 0, "0", None, value, {}, False)
    row = batch.frame(NOW).iloc[0]
    assert row["payload"] == "" and "OrderPlaced" in row["preview"] and row["decode_error"] == ""
    # where the number is read, it is refused as decode refuses it
    assert Decoder().decode_many([b'{"event_type": 1e400}'], [{}])[0]["event_type"] == [UNDECODABLE]
