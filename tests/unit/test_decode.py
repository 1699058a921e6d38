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


SPRING_WRAPPER = "org.springframework.kafka.listener.ListenerExecutionFailedException"
SPRING_MESSAGE = b"Listener method 'public void com.example.Orders.listen(java.lang.String)' threw exception"


def _spring(cause: str, message: str) -> dict:
    trace = (f"{SPRING_WRAPPER}: {SPRING_MESSAGE.decode()}\n\tat org.springframework.kafka.listener."
             f"KafkaMessageListenerContainer.invoke(KafkaMessageListenerContainer.java:2996)\n"
             f"Caused by: {cause}: {message}\n\tat com.example.Orders.listen(Orders.java:21)\n\t... 14 more\n")
    return headers_to_dict([("kafka_dlt-exception-fqcn", SPRING_WRAPPER.encode()),
                            ("kafka_dlt-exception-cause-fqcn", cause.encode()),
                            ("kafka_dlt-exception-message", SPRING_MESSAGE),
                            ("kafka_dlt-exception-stacktrace", trace.encode()),
                            ("kafka_dlt-original-topic", b"orders")])


def test_spring_reasons_are_the_cause_not_the_listener_wrapper():
    reasons = {decode_message(b"{}", _spring(cls, msg))["dlq_reason"]
               for cls, msg in (("java.lang.IllegalStateException", "stock missing for order 7"),
                                ("java.lang.IllegalStateException", "stock missing for order 8"),
                                ("java.lang.NullPointerException", "stock missing for order 9"))}
    # same message, different cause: two reasons; same cause, different IDs: one reason
    assert reasons == {"IllegalStateException: stock missing for order #",
                       "NullPointerException: stock missing for order #"}
    row = decode_message(b"{}", _spring("java.lang.IllegalStateException", "x"))
    assert row["dlq_class"] == "java.lang.IllegalStateException"
    # the cause class without a stacktrace still beats the wrapper
    bare = headers_to_dict([("kafka_dlt-exception-fqcn", SPRING_WRAPPER.encode()),
                            ("kafka_dlt-exception-cause-fqcn", b"java.lang.ArithmeticException"),
                            ("kafka_dlt-exception-message", b"/ by zero")])
    assert decode_message(b"{}", bare)["dlq_reason"] == "ArithmeticException: / by zero"


def test_connect_reasons_come_from_the_innermost_cause_of_the_stacktrace():
    generic = b"Converting byte[] to Kafka Connect data failed due to serialization error: "

    def connect(*causes: str) -> dict:
        trace = "org.apache.kafka.connect.errors.DataException: " + generic.decode() + "\n\tat x.y(Z.java:1)\n"
        trace += "".join(f"Caused by: {c}\n\tat a.b(C.java:2)\n\t... 9 more\n" for c in causes)
        return headers_to_dict([("__connect.errors.exception.class.name",
                                 b"org.apache.kafka.connect.errors.DataException"),
                                ("__connect.errors.exception.message", generic),
                                ("__connect.errors.exception.stacktrace", trace.encode()),
                                ("__connect.errors.topic", b"orders")])
    serialization = "org.apache.kafka.common.errors.SerializationException: wrapped"
    parse = decode_message(b"{}", connect(serialization, "com.fasterxml.jackson.core.JsonParseException: "
                                          "Unexpected character ('n' (code 110)): was expecting double-quote"))
    eof = decode_message(b"{}", connect(serialization, "com.fasterxml.jackson.core.io.JsonEOFException: "
                                        "Unexpected end-of-input: expected close marker for Object"))
    assert parse["dlq_reason"] == "JsonParseException: Unexpected character ('n' (code #)): was expecting double-quote"
    assert eof["dlq_class"] == "com.fasterxml.jackson.core.io.JsonEOFException"
    assert eof["dlq_reason"].startswith("JsonEOFException: Unexpected end-of-input")
    # no stacktrace (errors.deadletterqueue.context.headers.enable=false keeps none): the exception
    plain = headers_to_dict([("__connect.errors.exception.class.name", b"org.apache.kafka.connect.errors.DataException"),
                             ("__connect.errors.exception.message", b"bad schema")])
    assert decode_message(b"{}", plain)["dlq_reason"] == "DataException: bad schema"
    # a hostile or endless trace is read only so far, and never raises
    endless = connect(*["java.lang.RuntimeException: deeper"] * 20_000)
    assert decode_message(b"{}", endless)["dlq_reason"] == "RuntimeException: deeper"


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


def test_the_original_message_of_a_dead_letter():
    """Spring writes the original partition and offset as big-endian integers, Kafka Connect as
    text; both reach the events row, and the trace links the dead letter to that message."""
    from eventscope.analysis import traces
    from eventscope.collectors.events_common import EventBatch
    batch = EventBatch("kafka", "kafka")
    body = b'{"event_type": "OrderPlaced", "event_id": "e1", "correlation_id": "c1", "source": "shop"}'
    batch.add("orders", 2, "1041", 1_700_000_000_000, body, {}, False)
    batch.add("orders", 2, "1042", 1_700_000_000_100, body, {}, False)  # a redelivery, same event ID
    batch.add("orders.DLT", 0, "7", 1_700_000_001_000, body, headers_to_dict([
        ("kafka_dlt-original-topic", b"orders"), ("kafka_dlt-original-partition", struct.pack(">i", 2)),
        ("kafka_dlt-original-offset", struct.pack(">q", 1041))]), True)
    batch.add("connect-dlq", 0, "3", 1_700_000_002_000, b"{not json", headers_to_dict([
        ("__connect.errors.topic", b"orders"), ("__connect.errors.partition", b"2"),
        ("__connect.errors.offset", b"1234")]), True)
    rows = batch.frame(pd.Timestamp("2026-12-05T10:00:00Z"))
    dead = rows[rows["dead_letter"]].set_index("topic")
    assert (dead.loc["orders.DLT", "original_partition"], dead.loc["orders.DLT", "original_offset"]) == (2, 1041)
    assert (dead.loc["connect-dlq", "original_partition"], dead.loc["connect-dlq", "original_offset"]) == (2, 1234)
    assert rows[~rows["dead_letter"]]["original_offset"].isna().all()
    found = traces.from_rows(rows[rows["correlation_id"] == "c1"])
    hop = next(h for h in found["hops"] if h["dead_letter"])
    assert hop["from_topic"] == "orders" and hop["from_event_id"] == "e1"
    first = next(e for e in found["events"] if e["offset"] == "1041")
    assert hop["latency_ms"] == round((pd.Timestamp(found["events"][-1]["at"]) - pd.Timestamp(first["at"]))
                                      .total_seconds() * 1000, 1)


def test_a_dead_letter_without_headers_names_its_source_by_its_bytes():
    """Kafka Connect's DLQ with context headers off (its default) holds byte-for-byte copies of
    the records that failed: seen first on a watched topic, a copy names its source."""
    from eventscope.collectors.events_common import EventBatch, RecordOrigins
    origins = RecordOrigins(size=100)
    at = pd.Timestamp("2026-12-05T10:00:00Z")
    first = EventBatch("kafka", "kafka", origins=origins)
    first.add("orders", 0, "1", None, b'{"id": 1, "bad": tru', {}, False)
    first.add("payments", 0, "1", None, b'{"id": 2, "ok": true}', {}, False)
    first.add("orders", 0, "2", None, b'{"same": "bytes", "x": 1}', {}, False)
    first.add("refunds", 0, "1", None, b'{"same": "bytes", "x": 1}', {}, False)  # on two topics
    first.frame(at)
    later = EventBatch("kafka", "kafka", origins=origins)
    later.add("connect-errors", 0, "0", None, b'{"id": 1, "bad": tru', {}, True)
    later.add("connect-errors", 0, "1", None, b'{"same": "bytes", "x": 1}', {}, True)
    later.add("connect-errors", 0, "2", None, b'{"never": "seen before"}', {}, True)
    books = {}
    rows = later.frame(at, books)
    assert rows["original_topic"].tolist()[0] == "orders"
    assert rows["original_topic"].isna().tolist()[1:] == [True, True]  # ambiguous, unknown
    assert books["connect-errors"].source_topics == {"orders": 1}


def test_header_names_are_cut_like_their_values():
    """50 Redis fields with 200 kB names made a 10-million-character headers cell."""
    import json as _json
    from eventscope.mask import HEADER_KEY_CHARS, headers_json
    headers = {f"{i:02d}" + "k" * 200_000: b"v" * 1000 for i in range(60)}
    shown = headers_json(headers)
    parsed = _json.loads(shown)
    assert len(parsed) == 50 and len(shown) < 50 * (HEADER_KEY_CHARS + 200 + 10)
    assert all(len(k) == HEADER_KEY_CHARS and k.endswith("…") for k in parsed)
    assert len({k[:2] for k in parsed}) == 50  # cut names stay apart by their start


def test_dead_letter_reasons_are_masked_like_payloads():
    """An exception message quoting an e-mail address or a bearer token must not reach the
    DLQ reasons (stored, shown on the page, printed by the CLI)."""
    from eventscope.decode import failure_reason
    cls, reason = failure_reason({
        "kafka_dlt-exception-fqcn": b"org.example.NotifyException",
        "kafka_dlt-exception-message": b"mail to jane.doe@example.com refused; Authorization: Bearer eyJhbGciOi.J9x.yz "
                                       b"password=hunter2"})
    assert cls == "org.example.NotifyException"
    assert "jane.doe" not in reason and "eyJhbGciOi" not in reason and "hunter2" not in reason, reason
    assert reason.startswith("NotifyException: mail to ***@*** refused")
