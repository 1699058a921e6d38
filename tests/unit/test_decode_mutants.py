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
