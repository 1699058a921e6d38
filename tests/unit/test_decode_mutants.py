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
