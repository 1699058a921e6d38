"""eventscope.decode by examples written from its docstrings: headers as ``{lowercase key:
bytes}`` whatever the client hands over, and the parsed body only when asked for."""
from __future__ import annotations

import json

from eventscope.decode import (MAX_FIELD, Decoder, decode_message, failure_reason, headers_to_dict, parse_traceparent,
                               parse_traceparent_otel)


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


CONNECT_CLASS = "org.apache.kafka.connect.errors.DataException"
CONNECT_MESSAGE = "Converting byte[] to Kafka Connect data failed due to serialization error: "


def _connect_trace(*causes: str) -> str:
    """A Kafka Connect stacktrace: the generic DataException, then its chain of causes."""
    trace = f"{CONNECT_CLASS}: {CONNECT_MESSAGE}\n\tat x.y(Z.java:1)\n"
    return trace + "".join(f"Caused by: {c}\n\tat a.b(C.java:2)\n\t... 9 more\n" for c in causes)


def _connect_headers(trace) -> dict:
    return {"__connect.errors.exception.class.name": CONNECT_CLASS.encode(),
            "__connect.errors.exception.message": CONNECT_MESSAGE.encode(),
            "__connect.errors.exception.stacktrace": trace if isinstance(trace, (bytes, str)) else b"",
            "__connect.errors.topic": b"orders"}


def test_a_dead_letter_exception_class_is_capped_like_any_header_value():
    """README: header values are capped at 200 characters; the exception class comes from one."""

    long_class = "com.example." + "deep" * 60 + ".ValidationException"  # 272 characters
    cls, _ = failure_reason({"kafka_dlt-exception-fqcn": long_class.encode(),
                             "kafka_dlt-exception-message": b"invalid"})
    assert cls == long_class[:199] + "\u2026"
    # Spring's cause class, without a stacktrace to find it in
    cls, _ = failure_reason({"kafka_dlt-exception-fqcn": b"org.example.Wrapper",
                             "kafka_dlt-exception-cause-fqcn": long_class.encode(),
                             "kafka_dlt-exception-message": b"invalid"})
    assert cls == long_class[:199] + "\u2026"
    # the innermost cause of a stacktrace
    cls, _ = failure_reason(_connect_headers(_connect_trace(f"{long_class}: invalid").encode()))
    assert cls == long_class[:199] + "\u2026"
    # a class of exactly 200 characters is kept whole
    exact = "com.example." + "x" * 179 + "Exception"
    assert len(exact) == 200
    assert failure_reason({"kafka_dlt-exception-fqcn": exact.encode()})[0] == exact


def test_spring_reason_is_the_named_cause_class_even_when_a_deeper_cause_follows():
    """For Spring the reason is the innermost ``Caused by:`` of the class named in
    ``kafka_dlt-exception-cause-fqcn``, not simply the innermost one."""

    wrapper = "org.springframework.kafka.listener.ListenerExecutionFailedException"
    trace = (f"{wrapper}: Listener method threw exception\n\tat o.s.K.invoke(K.java:1)\n"
             "Caused by: java.lang.IllegalStateException: stock missing\n\tat c.e.O.listen(O.java:2)\n"
             "Caused by: java.io.EOFException: socket closed\n\tat j.i.S.read(S.java:3)\n")
    cls, reason = failure_reason({"kafka_dlt-exception-fqcn": wrapper.encode(),
                                  "kafka_dlt-exception-cause-fqcn": b"java.lang.IllegalStateException",
                                  "kafka_dlt-exception-message": b"Listener method threw exception",
                                  "kafka_dlt-exception-stacktrace": trace.encode()})
    assert (cls, reason) == ("java.lang.IllegalStateException", "IllegalStateException: stock missing")
    # without the named cause: the innermost one
    cls, reason = failure_reason({"kafka_dlt-exception-fqcn": wrapper.encode(),
                                  "kafka_dlt-exception-stacktrace": trace.encode()})
    assert (cls, reason) == ("java.io.EOFException", "EOFException: socket closed")


def test_a_cause_without_a_message_is_reasoned_by_its_class_alone():

    headers = _connect_headers(_connect_trace("java.lang.NullPointerException").encode())
    assert failure_reason(headers) == ("java.lang.NullPointerException", "NullPointerException")


def test_a_stacktrace_that_is_not_utf8_or_is_given_as_text_still_names_its_cause():
    """Nothing here raises on bad input: broken bytes in a stacktrace header are replaced, and a
    header given as text (not bytes) is read like its bytes."""
    from eventscope.decode import decode_message, failure_reason

    broken = _connect_trace("com.example.BadRecordException: bad byte \xff here").encode("latin-1")
    cls, reason = failure_reason(_connect_headers(broken))
    assert (cls, reason) == ("com.example.BadRecordException", "BadRecordException: bad byte \ufffd here")
    as_text = _connect_trace("com.example.BadRecordException: record 12 rejected")
    assert failure_reason(_connect_headers(as_text)) == (
        "com.example.BadRecordException", "BadRecordException: record # rejected")
    # text that has no UTF-8 form (a lone surrogate) is replaced too
    odd = _connect_trace("com.example.BadRecordException: odd \ud800 char")
    cls, reason = failure_reason(_connect_headers(odd))
    assert cls == "com.example.BadRecordException" and reason.startswith("BadRecordException: odd ")
    row = decode_message(b"{}", _connect_headers(odd))
    assert row["dlq_class"] == "com.example.BadRecordException" and row["original_topic"] == "orders"


def test_the_stacktrace_is_read_within_its_first_64_kb_in_whole_lines():
    """README: the innermost ``Caused by:`` of a stacktrace header, read within 64 kB; a line cut
    at the limit would name a cut class, so only whole lines are read."""
    from eventscope.decode import STACKTRACE_SCAN, failure_reason

    assert STACKTRACE_SCAN == 64 * 1024
    head = _connect_trace("com.example.FirstException: first")
    last = "Caused by: com.example.LastException: the last line"
    # exactly 64 kB, its last line without a newline: read whole
    filler = "\tat f.g(H.java:1)\n"
    pad = STACKTRACE_SCAN - len(head) - len(last)
    body = head + filler * (pad // len(filler)) + "x" * (pad % len(filler) - 1) + "\n" + last
    assert len(body.encode()) == STACKTRACE_SCAN
    assert failure_reason(_connect_headers(body.encode()))[1] == "LastException: the last line"
    # beyond 64 kB: a cause past the limit is not read, the last whole line before it is, whole
    inner = "Caused by: com.example.InnerException: complete message\n"
    pad = STACKTRACE_SCAN - len(head) - len(inner)
    start = head + filler * (pad // len(filler)) + "x" * (pad % len(filler) - 1) + "\n"
    body = start + inner + "Caused by: com.example.BeyondException: past the limit\n" + filler * 10
    assert len((start + inner).encode()) == STACKTRACE_SCAN
    cls, reason = failure_reason(_connect_headers(body.encode()))
    assert (cls, reason) == ("com.example.InnerException", "InnerException: complete message")
    # the limit cuts inside a cause line: that line is left out, not read cut
    body = start + "Caused by: com.example.CutException: " + "m" * 200 + "\n"
    assert failure_reason(_connect_headers(body.encode())) == (
        "com.example.FirstException", "FirstException: first")


def test_an_empty_field_is_no_hit_the_next_path_is_tried_and_a_long_one_is_cut():
    """``_find``: the first non-empty scalar along the configured paths, bounded to 512
    characters; the top-level shortcut must give that same answer for every field."""

    nested = {"metadata": {"eventId": "e2", "source": "auth", "correlationId": "c2",
                           "timestamp": "2026-01-01T00:00:00Z"}}
    empty_first = {"type": "user.registered", "event_id": "", "source": "", "correlation_id": "",
                   "timestamp": "", **nested}
    row = Decoder().decode(json.dumps(empty_first).encode(), {})
    assert (row["event_type"], row["event_id"], row["service"], row["correlation_id"], row["at"]) == (
        "user.registered", "e2", "auth", "c2", "2026-01-01T00:00:00Z")
    long = {"event_type": "T", "event_id": "I" * 600, "source": "S" * 600, "correlation_id": "C" * 600,
            "timestamp": "9" * 600}
    row = Decoder().decode(json.dumps(long).encode(), {})
    assert row["event_type"] == "T"  # one character is a value
    cut = "\u2026"
    assert (row["event_id"], row["service"], row["correlation_id"], row["at"]) == (
        "I" * 511 + cut, "S" * 511 + cut, "C" * 511 + cut, "9" * 511 + cut)
    exact = {"event_type": "T" * 512, "event_id": "I" * 512}  # 512 characters are kept whole
    row = Decoder().decode(json.dumps(exact).encode(), {})
    assert (row["event_type"], row["event_id"]) == ("T" * 512, "I" * 512)


def test_the_first_payload_field_that_holds_json_is_the_event():
    """Redis: the JSON event sits in one of ``payload_fields`` (``payload``, then ``envelope``)."""
    good = json.dumps({"event_type": "FromPayload", "event_id": "p1"}).encode()
    other = json.dumps({"event_type": "FromEnvelope", "event_id": "v1"}).encode()
    assert decode_message(b"", {"payload": good, "envelope": b"{broken"})["event_type"] == "FromPayload"
    assert decode_message(b"", {"payload": good, "envelope": other})["event_type"] == "FromPayload"
    row = decode_message(b"", {"payload": b"{broken", "envelope": other})
    assert (row["event_type"], row["event_id"], row["decode_error"]) == ("FromEnvelope", "v1", "")


def test_an_empty_traceparent_in_the_payload_is_no_hit_the_next_path_is_tried():
    body = {"event_type": "A", "traceparent": "", "metadata": {"traceparent": TP}}
    row = decode_message(json.dumps(body).encode(), {})
    assert (row["trace_id"], row["parent_span_id"]) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")


def test_a_schema_version_number_from_a_registry_record_is_written_out_and_bounded():
    """A record read with its schema is looked at like a JSON envelope: its version number is
    the text of that number, bounded like every field (512 characters)."""

    class Registry:
        def __init__(self, version):
            self.version = version

        def decode(self, value):
            return {"event_type": "A", "schema_version": self.version}, None, {"version": "7", "name": "A"}

    framed = b"\x00\x00\x00\x00\x01rest"
    assert Decoder(registry=Registry(10**120)).decode(framed, {})["schema_version"] == "1" + "0" * 120
    assert Decoder(registry=Registry(-10**120)).decode(framed, {})["schema_version"] == "-1" + "0" * 120
    assert Decoder(registry=Registry(10**600)).decode(framed, {})["schema_version"] == "1" + "0" * 510 + "\u2026"
    assert Decoder(registry=Registry(3)).decode(framed, {})["schema_version"] == "3"


def test_an_exception_message_counts_up_to_its_first_300_characters_then_the_reason_up_to_160():
    """README, dead-letter queues: an exception message is read up to its first 300 characters
    (a longer one ends in "…"), whitespace runs then become one space, and the reason keeps 160."""
    gap = "A" + " " * 297 + "Bcd"  # 301 characters: a longer text keeps 299 of them and "…"
    spring = {"kafka_dlt-exception-fqcn": b"com.shop.PayError", "kafka_dlt-exception-message": gap.encode()}
    assert failure_reason(spring) == ("com.shop.PayError", "PayError: A B\u2026")
    exactly = {"kafka_dlt-exception-fqcn": b"com.shop.PayError", "kafka_dlt-exception-message": gap[:300].encode()}
    assert failure_reason(exactly) == ("com.shop.PayError", "PayError: A Bc")  # 300: whole
    # the class a message names for itself is split off the message after that cut
    named = {"error": ("CardError: " + gap).encode()}
    assert failure_reason(named)[1] == "CardError: A " + "\u2026"
    # a Connect stacktrace's innermost cause: its message is cut the same way
    trace = ("org.apache.kafka.connect.errors.DataException: Converting failed\n"
             f"Caused by: com.fasterxml.jackson.core.JsonParseException: {gap}\n\tat x.y(Z.java:1)\n")
    connect = {"__connect.errors.exception.class.name": b"org.apache.kafka.connect.errors.DataException",
               "__connect.errors.exception.stacktrace": trace.encode()}
    assert failure_reason(connect) == ("com.fasterxml.jackson.core.JsonParseException",
                                       "JsonParseException: A B\u2026")
    # and a class name is bounded at 200
    long_cls = "com.shop." + "E" * 300 + "Error"
    cls, reason = failure_reason({"kafka_dlt-exception-fqcn": long_cls.encode(),
                                  "kafka_dlt-exception-message": b"declined"})
    assert cls == long_cls[:199] + "\u2026" and len(cls) == 200
    # the normalised reason keeps 160 characters
    words = " ".join(["declined"] * 40)  # 359 characters, no whitespace run
    reason = failure_reason({"kafka_dlt-exception-fqcn": b"com.shop.PayError",
                             "kafka_dlt-exception-message": words.encode()})[1]
    assert reason == "PayError: " + words[:160]


def test_what_makes_a_message_undecodable_is_said():
    assert decode_message(b"", {})["decode_error"] == "empty payload"
    assert decode_message(None, {})["decode_error"] == "empty payload"
    assert decode_message("", {})["decode_error"] == "empty payload"
    bad = decode_message(b"{bad", {})
    assert bad["event_type"] == "<undecodable>"
    assert bad["decode_error"].startswith("not JSON (") and "line 1 column 2" in bad["decode_error"]


def _envelope(**extra) -> dict:
    return {"event_type": "OrderPlaced", "event_id": "e1", "source": "order-service", "correlation_id": "c1",
            "timestamp": "2026-12-01T10:00:00Z", **extra}


def test_a_boolean_schema_version_is_written_as_json_writes_it():
    values = [json.dumps(_envelope(schema_version=True)).encode(), json.dumps(_envelope(schema_version=False)).encode()]
    assert [decode_message(v, {})["schema_version"] for v in values] == ["true", "false"]
    columns, _ = Decoder().decode_many(values, [{}, {}])
    assert columns["schema_version"] == ["true", "false"]


def test_the_batch_reader_gives_each_message_what_decode_gives_it():
    """decode_many reads a batch on its own fast path; every row must be decode's row, also where
    a top-level field is empty (the next path is tried) or a schema version is odd."""
    empty_firsts = {"event_type": "", "type": "OrderPlaced", "event_id": "", "eventId": "e9", "source": "",
                    "metadata": {"source": "order-service", "correlationId": "c9", "timestamp": "2026-12-01T10:00:00Z"},
                    "correlation_id": "", "timestamp": ""}
    bodies = [empty_firsts,
              _envelope(schema_version=""), _envelope(schema_version="v" * MAX_FIELD),
              _envelope(schema_version="v" * (MAX_FIELD + 1)), _envelope(schema_version=1.5),
              _envelope(schema_version=7), _envelope(schema_version=[1]), _envelope(schema_version={"v": 1}),
              _envelope(event_type="x" * MAX_FIELD, source="y"), _envelope(event_type="T" * (MAX_FIELD + 1))]
    values = [json.dumps(b).encode() for b in bodies]
    decoder = Decoder()
    columns, _ = decoder.decode_many(values, [{} for _ in values])
    rows = [decoder.decode(v, {}) for v in values]
    for i, row in enumerate(rows):
        assert {k: columns[k][i] for k in columns} == row, bodies[i]
    first = rows[0]
    assert (first["event_type"], first["event_id"], first["service"], first["correlation_id"], first["at"]) == (
        "OrderPlaced", "e9", "order-service", "c9", "2026-12-01T10:00:00Z")
    assert [r["schema_version"] for r in rows[1:8]] == [None, "v" * MAX_FIELD, "v" * (MAX_FIELD - 1) + "\u2026",
                                                        "1.5", "7", None, None]
    assert rows[9]["event_type"] == "T" * (MAX_FIELD - 1) + "\u2026"


def test_a_parsed_body_is_an_object_or_an_array_else_none():
    assert Decoder.parsed_body(b'{"a": 1}') == {"a": 1} and Decoder.parsed_body(b"[1, 2]") == [1, 2]
    assert Decoder.parsed_body({"a": 1}) == {"a": 1}  # already parsed by the batch reader
    for scalar in (b"5", b'"text"', b"true", b"null", 5, "text", None, b"1e400"):
        assert Decoder.parsed_body(scalar) is None, scalar


def test_a_traceparent_with_its_dashes_out_of_place_is_invalid_as_opentelemetry_says():
    """The canonical form's shortcut checks where the three dashes are; hostile headers of the
    right length, hex and dashes only, with the dashes elsewhere, are what the propagator says:
    invalid."""
    trace, span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    canonical = f"00-{trace}-{span}-01"
    assert parse_traceparent(canonical.encode()) == (trace, span)
    hostile = []
    for dashes in [(3, 35, 52), (2, 36, 52), (2, 35, 53), (10, 35, 52), (2, 20, 52), (2, 35, 40)]:
        chars = list(canonical.replace("-", "0"))
        for at in dashes:
            chars[at] = "-"
        hostile.append("".join(chars))
    for value in hostile:
        assert len(value) == 55 and value.count("-") == 3
        assert parse_traceparent(value.encode()) == parse_traceparent_otel(value) == (None, None), value
        assert parse_traceparent(value) == (None, None), value
