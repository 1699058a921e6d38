"""Decoding the envelope shapes of the domain articles, and hostile input."""
import json
import struct

import pandas as pd

from eventscope.decode import UNDECODABLE, decode_message, headers_to_dict, int_header, parse_traceparent

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_eventscope_envelope_with_kafka_headers():
    env = {"event_type": "OrderPlaced", "schema_version": 2, "event_id": "evt_1",
           "timestamp": "2026-01-01T00:00:00.000Z", "source": "order-service",
           "correlation_id": "corr-1", "data": {"order_id": "o1"}}
    row = decode_message(json.dumps(env).encode(), headers_to_dict([("traceparent", TP.encode())]))
    assert (row["event_type"], row["event_id"], row["service"], row["correlation_id"]) == \
        ("OrderPlaced", "evt_1", "order-service", "corr-1")
    assert row["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert row["decode_error"] == ""


def test_redis_payload_shape_from_the_articles():
    event = {"type": "user.registered", "data": {}, "metadata": {
        "eventId": "e-9", "timestamp": "2026-01-01T00:00:00Z", "source": "auth", "correlationId": "c-9"}}
    row = decode_message(None, headers_to_dict({b"payload": json.dumps(event).encode()}))
    assert (row["event_type"], row["event_id"], row["service"], row["correlation_id"]) == \
        ("user.registered", "e-9", "auth", "c-9")


def test_cloudevents_binary_mode_with_correlation_header():
    headers = headers_to_dict([("ce_type", b"com.acme.order.placed"), ("ce_source", b"/orders"),
                               ("ce_id", b"ce-1"), ("x-correlation-id", b"corr-ce")])
    row = decode_message(b"plain text body", headers)
    assert (row["event_type"], row["service"], row["event_id"], row["correlation_id"]) == \
        ("com.acme.order.placed", "/orders", "ce-1", "corr-ce")


def test_spring_and_connect_dead_letter_headers():
    spring = headers_to_dict([("kafka_dlt-exception-message", b"card declined"),
                              ("kafka_dlt-original-topic", b"payments"),
                              ("kafka_dlt-original-partition", struct.pack(">i", 2)),
                              ("kafka_dlt-original-offset", struct.pack(">q", 12345))])
    row = decode_message(b'{"event_type": "X"}', spring)
    assert row["dlq_reason"] == "card declined" and row["original_topic"] == "payments"
    assert int_header(spring["kafka_dlt-original-partition"]) == 2
    assert int_header(spring["kafka_dlt-original-offset"]) == 12345
    connect = headers_to_dict([("__connect.errors.topic", b"orders"),
                               ("__connect.errors.exception.message", b"bad schema")])
    row = decode_message(b"{}", connect)
    assert row["dlq_reason"] == "bad schema" and row["original_topic"] == "orders"


def test_hostile_payloads_never_raise():
    for value in (b"\xff\xfe\x00", b"", None, b"[1,2]", b'{"event_type": ' + b"9" * 10, b"x" * 2_000_000):
        row = decode_message(value, {})
        assert row["event_type"] == UNDECODABLE
        assert row["decode_error"]
    huge = json.dumps({"event_type": "A" * 10_000, "source": "<script>alert(1)</script>"}).encode()
    row = decode_message(huge, {})
    assert len(row["event_type"]) <= 512
    assert row["service"] == "<script>alert(1)</script>"  # kept verbatim; escaped where rendered


def test_traceparent_parsing():
    assert parse_traceparent(TP.encode()) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert parse_traceparent(b"00-zz-1-01") == (None, None)
    assert parse_traceparent(None) == (None, None)
    flags3 = TP[:-2] + "03"
    assert parse_traceparent(flags3)[0] == "0af7651916cd43dd8448eb211c80319c"


def test_unreadable_event_times_fall_back_to_the_broker_time():
    from eventscope import schemas
    broker = pd.Timestamp("2026-11-28T10:00:00Z")
    rows = [{"at": value, "broker_at": broker, "event_type": "X"} for value in ("-1", "not a time", None, 10**30)]
    rows.append({"at": "2026-11-28T09:59:59.5Z", "broker_at": broker, "event_type": "X"})
    frame = schemas.conform("events", rows)
    assert list(frame["at"]) == [broker] * 4 + [pd.Timestamp("2026-11-28T09:59:59.5Z")]
