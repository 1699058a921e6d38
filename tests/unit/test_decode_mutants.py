"""eventscope.decode by examples written from its docstrings: headers as ``{lowercase key:
bytes}`` whatever the client hands over, and the parsed body only when asked for."""
from __future__ import annotations

import json

from eventscope.decode import decode_message, headers_to_dict


def test_headers_become_lowercase_text_keys_with_byte_values_from_any_client_shape():
    kafka = [(b"TraceParent", b"00-a-b-01"), ("X-Retry", "2"), (b"bad-\xff\xfe", b"v"), ("empty", None),
             ("caf\u00e9", "\u00e9t\u00e9")]
    assert headers_to_dict(kafka) == {
        "traceparent": b"00-a-b-01",
        "x-retry": b"2",  # text values are sent as UTF-8
        "bad-\ufffd\ufffd": b"v",  # a key that is not UTF-8 keeps its place, marked, instead of failing
        "empty": b"",  # Kafka's header without a value
        "caf\u00e9": "\u00e9t\u00e9".encode("utf-8"),
    }
    assert headers_to_dict({b"Payload": b"{}", "Count": b"1"}) == {"payload": b"{}", "count": b"1"}
    assert headers_to_dict(None) == {} and headers_to_dict([]) == {} and headers_to_dict({}) == {}


def test_the_parsed_body_is_returned_only_when_asked_for():
    body = {"event_type": "OrderPlaced", "event_id": "e1", "correlation_id": "c1", "data": {"n": 1}}
    value = json.dumps(body).encode()
    plain = decode_message(value, {})
    assert "_body" not in plain and plain["event_type"] == "OrderPlaced"
    with_body = decode_message(value, {}, with_body=True)
    assert with_body["_body"] == body
    assert {k: v for k, v in with_body.items() if k != "_body"} == plain
    assert decode_message(b"not json", {}, with_body=True)["_body"] is None


def test_spring_int_headers_are_java_ints_and_longs_or_decimal_text():
    import struct

    from eventscope.decode import int_header
    assert int_header(struct.pack(">i", 7)) == 7
    assert int_header(struct.pack(">i", -1)) == -1  # a Java int is signed
    assert int_header(struct.pack(">q", 2**40)) == 2**40
    assert int_header(struct.pack(">q", -5)) == -5  # and so is a long
    assert int_header(b"123") == 123  # other clients write the number as text
    assert int_header(b"12a") is None and int_header("\u00e9".encode()) is None and int_header(None) is None


def test_a_framed_payload_names_its_schema_id_and_a_failing_registry_its_error():
    from eventscope.decode import Decoder

    row = Decoder().decode(b"\x00\x01\x00\x00\x2a\x02x", {})  # schema 16,777,258: all four ID bytes count
    assert "(schema 16777258)" in row["decode_error"]

    class Broken:
        def decode(self, value):
            raise ValueError("bug")

    row = Decoder(registry=Broken()).decode(b"\x00\x00\x00\x00\x2a\x02x", {})
    assert row["decode_error"] == "schema registry decoding failed: ValueError"


TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
LONG = "T" * 600  # past the 512 characters a field keeps


def _messages():
    """(value, headers) pairs covering the envelope shapes and the header cases."""
    envelope = {"event_type": "OrderPlaced", "event_id": "e1", "source": "orders", "correlation_id": "c1",
                "timestamp": "2026-01-01T00:00:00Z", "traceparent": TP, "schema_version": 2}
    nested = {"type": "user.registered", "data": {}, "metadata": {
        "eventId": "e2", "timestamp": "2026-01-01T00:00:00Z", "source": "auth", "correlationId": "c2",
        "schemaVersion": "v3", "traceparent": TP}}
    dlt = {"kafka_dlt-exception-message": b"boom", "kafka_dlt-original-topic": b"orders"}
    return [
        (json.dumps(envelope).encode(), {}),
        (json.dumps(nested).encode(), {}),
        (json.dumps(envelope).encode(), dlt),  # a dead letter: its reason and origin from the headers
        (json.dumps({**envelope, "traceparent": None}).encode(), dlt),  # ... and no traceparent
        (json.dumps({"type": "user.registered", "metadata": {"traceparent": TP}}).encode(), dlt),
        (json.dumps({**envelope, "event_type": "", "type": "Fallback"}).encode(), {}),  # empty: the next path
        (json.dumps({**envelope, "event_type": LONG}).encode(), {}),
        (json.dumps({"type": "x", "metadata": {"correlationId": "C" * 512, "eventId": "E" * 513}}).encode(), {}),
        (json.dumps(envelope).encode(), {"traceparent": TP.replace("b7ad", "c7ad").encode()}),
        (json.dumps(envelope).encode(), {"ce_type": b"Other", "ce_dataschema": b"s9"}),
        (b"", {"payload": json.dumps(nested).encode()}),  # a Redis entry: the envelope in a field
        (None, {"payload": json.dumps(envelope).encode()}),
        (b"not json", {}),
        ("caf\u00e9".encode("latin-1"), {}),  # not UTF-8
        (json.dumps({"event_type": "caf\u00e9", "event_id": "e\u00e9"}, ensure_ascii=False).encode(), {}),
        (b"\x00\x00\x00\x00\x2a\x02x", {}),  # the schema registry's framing, no registry
        (json.dumps([1, 2]).encode(), {}),
    ]


def _batch_rows(decoder, messages):
    columns, bodies = decoder.decode_many([v for v, _ in messages], [h for _, h in messages])
    rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
    return rows, [decoder.parsed_body(b) for b in bodies]


def test_a_batch_decodes_every_message_as_decode_does_with_or_without_the_fast_path():
    from eventscope.decode import Decoder

    messages = _messages()
    single = [Decoder().decode(v, h, with_body=True) for v, h in messages]
    expected_rows = [{k: v for k, v in row.items() if k != "_body"} for row in single]
    expected_bodies = [row["_body"] for row in single]
    plain = Decoder()
    plain._fast = None  # as when the configured paths cannot be read the fast way
    for decoder in (Decoder(), plain):
        rows, bodies = _batch_rows(decoder, messages)
        assert rows == expected_rows
        assert bodies == expected_bodies
    by = {i: row for i, row in enumerate(expected_rows)}
    assert by[3]["trace_id"] is None and by[4]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert by[5]["event_type"] == "Fallback"
    assert by[6]["event_type"] == "T" * 511 + "\u2026"
    assert by[7]["correlation_id"] == "C" * 512 and by[7]["event_id"] == "E" * 511 + "\u2026"
    assert by[10]["event_id"] == "e2" and by[11]["event_id"] == "e1"


def test_an_empty_configured_path_is_ignored():
    from eventscope.decode import DecodeConfig, Decoder

    decoder = Decoder(DecodeConfig(event_type=["", "type"]))
    assert decoder.decode(b'{"": "Blank", "type": "Real"}', {})["event_type"] == "Real"
