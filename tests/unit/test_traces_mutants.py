"""Correlation-ID traces (eventscope.analysis.traces) by small examples written from its
docstrings: the summary table and its views, the outcome, a cut trace, the event fields."""
from __future__ import annotations

import pandas as pd

from eventscope import schemas
from eventscope.analysis import traces

T0 = pd.Timestamp("2026-12-01T09:00:00Z")


def ev(cid, sec, topic="orders", offset=None, dead=False, broker="kafka", partition=0, broker_sec=None, **more):
    at = T0 + pd.Timedelta(seconds=sec)
    row = {"observed_at": at, "source": broker, "broker": broker, "topic": topic, "partition": partition,
           "offset": offset if offset is not None else f"{cid}-{sec}", "at": at,
           "broker_at": at if broker_sec is None else T0 + pd.Timedelta(seconds=broker_sec),
           "event_type": "E", "event_id": f"id-{cid}-{sec}", "service": "svc", "correlation_id": cid,
           "trace_id": None, "dead_letter": dead}
    row.update(more)
    return row


def frame(rows):
    return schemas.conform("events", rows)


def test_summary_is_one_row_per_chain_newest_first_with_its_outcome():
    rows = frame([ev("a", 0), ev("a", 2.5), ev("a", 4),                    # finished long ago
                  ev("b", 10), ev("b", 12, topic="orders.DLT", dead=True, broker_sec=20),  # died at 20 s
                  ev("c", 100), ev("c", 101),                              # 29 s before now: still going
                  ev(None, 50), ev("", 60)])                               # no chain
    now = T0 + pd.Timedelta(seconds=130)
    table = traces.summary(rows, now=now)
    assert list(table.columns) == traces.SUMMARY_COLUMNS
    assert table["correlation_id"].tolist() == ["c", "b", "a"]
    assert table["events"].tolist() == [2, 2, 3]
    assert table["duration_ms"].tolist() == [1000.0, 10000.0, 4000.0]
    assert table["outcome"].tolist() == ["in_flight", "dead_lettered", "completed"]
    assert table.loc[1, "last_at"] == T0 + pd.Timedelta(seconds=20)  # when it reached the DLQ
    # quiet for exactly quiet_s: finished
    assert traces.summary(rows, now=T0 + pd.Timedelta(seconds=131))["outcome"].tolist()[0] == "completed"
    assert traces.summary(rows, now=now, quiet_s=10)["outcome"].tolist()[0] == "completed"
    assert traces.summary(frame([ev(None, 1)]), now=now).empty


def test_recent_slowest_and_failed_views():
    rows = frame([ev("a", 0), ev("a", 4), ev("b", 10), ev("b", 11), ev("c", 20), ev("c", 29),
                  ev("d", 30), ev("d", 31, dead=True), ev("e", 40), ev("e", 41, dead=True),
                  ev("f", 100), ev("f", 120)])
    table = traces.summary(rows, now=T0 + pd.Timedelta(seconds=125))
    assert traces.recent(rows, limit=2, now=T0 + pd.Timedelta(seconds=125))["correlation_id"].tolist() == ["f", "e"]
    # the in-flight chain f (20 s) is left out, however long
    # equal durations (b, d, e: 1 s) keep the newest first
    assert traces.slowest(table)["correlation_id"].tolist() == ["c", "a", "e", "d", "b"]
    assert traces.slowest(table, limit=1)["correlation_id"].tolist() == ["c"]
    assert traces.failed(table)["correlation_id"].tolist() == ["e", "d"]
    assert traces.failed(table, limit=1)["correlation_id"].tolist() == ["e"]
    assert traces.slowest(table).index.tolist() == [0, 1, 2, 3, 4]


def test_outcome_waits_for_a_kafka_group_that_has_not_committed_past_the_event():
    rows = frame([ev("a", 0, offset="5"), ev("a", 1, topic="payments", offset="9", partition=1)])
    now = T0 + pd.Timedelta(minutes=5)

    def lag(committed_orders, committed_payments, partition_payments=1, at=now):
        base = {"sampled_at": at, "source": "kafka", "broker": "kafka", "group": "g", "end": 20, "lag": 0,
                "lag_seconds": 0.0, "group_state": "Stable", "members": 1}
        return schemas.conform("lag", [dict(base, topic="orders", partition=0, committed=committed_orders),
                                       dict(base, topic="payments", partition=partition_payments,
                                            committed=committed_payments)])
    assert traces.outcome(rows, lag(6, 10), 30.0, now) == "completed"  # both committed past
    assert traces.outcome(rows, lag(5, 10), 30.0, now) == "in_flight"  # offset 5 not yet consumed
    assert traces.outcome(rows, lag(6, 9), 30.0, now) == "in_flight"
    assert traces.outcome(rows, lag(6, 2, partition_payments=0), 30.0, now) == "completed"  # another partition
    assert traces.outcome(rows, lag(6, None), 30.0, now) == "in_flight"  # no commit yet: nothing read
    first = frame([ev("a", 0, offset="0")])  # the partition's very first message, nothing committed
    assert traces.outcome(first, lag(None, 10), 30.0, now) == "in_flight"
    assert traces.outcome(first, lag(0, 10), 30.0, now) == "in_flight" and traces.outcome(first, lag(1, 10), 30.0, now) == "completed"
    # only the newest sample counts
    older = lag(5, 9, at=now - pd.Timedelta(seconds=10))
    assert traces.outcome(rows, pd.concat([older, lag(6, 10)], ignore_index=True), 30.0, now) == "completed"
    # the same numbers on Redis say nothing (no offsets to compare)
    redis = rows.assign(broker="redis", kind="redis")
    assert traces.outcome(redis, lag(0, 0).assign(broker="redis", kind="redis"), 30.0, now) == "completed"
    assert traces.outcome(rows, lag(5, 10).assign(broker="redis", kind="redis"), 30.0, now) == "completed"
    # young: in flight whatever the lag says; a dead letter: dead whatever else
    assert traces.outcome(rows, None, 30.0, T0 + pd.Timedelta(seconds=30)) == "in_flight"
    assert traces.outcome(rows, None, 30.0, T0 + pd.Timedelta(seconds=31)) == "completed"
    dead = frame([ev("a", 0), ev("a", 1, dead=True)])
    assert traces.outcome(dead, None, 30.0, T0 + pd.Timedelta(seconds=1)) == "dead_lettered"


def test_a_long_trace_keeps_both_ends_and_the_dead_letters_between():
    rows = [ev("hot", i, topic=("orders" if i % 2 else "payments")) for i in range(12)]
    rows[5] = ev("hot", 5, topic="orders.DLT", dead=True)
    found = traces.from_rows(frame(rows), now=T0 + pd.Timedelta(minutes=5), max_events=4)
    assert found["events_total"] == 12 and found["events_each_end"] == 2
    assert [e["at"] for e in found["events"]] == [
        f"2026-12-01T09:00:{s:02d}Z" for s in (0, 1, 5, 10, 11)]
    assert found["outcome"] == "dead_lettered"  # decided over all twelve
    assert [(h["from_topic"], h["to_topic"]) for h in found["hops"]] == [("payments", "orders"),
                                                                         ("payments", "orders")]
    whole = traces.from_rows(frame(rows), now=T0 + pd.Timedelta(minutes=5))
    assert whole["events_total"] == 12 and "events_each_end" not in whole and len(whole["events"]) == 12


def test_an_event_read_twice_is_one_event_and_fields_are_plain():
    rows = frame([ev("a", 0, offset="7", partition=3), ev("a", 0, offset="7", partition=3),
                  ev("a", 1, topic="payments", offset="2", dlq_reason="boom", event_id=None,
                     trace_id="ab" * 16)])
    found = traces.from_rows(rows, now=T0 + pd.Timedelta(minutes=5))
    assert found["correlation_id"] == "a" and found["events_total"] == 2
    first, second = found["events"]
    assert first == {"at": "2026-12-01T09:00:00Z", "broker": "kafka", "kind": "kafka", "topic": "orders", "partition": 3,
                     "offset": "7", "event_type": "E", "event_id": "id-a-0", "source": "svc", "trace_id": None,
                     "dead_letter": False, "dlq_reason": None}
    assert type(first["partition"]) is int and type(first["dead_letter"]) is bool
    assert second["event_id"] is None and second["trace_id"] == "ab" * 16 and second["dlq_reason"] == "boom"
    assert traces.from_rows(rows.iloc[0:0]) is None
    hop = found["hops"][0]
    assert hop == {"from_topic": "orders", "to_topic": "payments", "service": "svc", "latency_ms": 1000.0,
                   "broker": "kafka", "kind": "kafka", "from_event_id": "id-a-0", "to_event_id": None, "dead_letter": False,
                   "broker_wait_ms": None, "service_ms": None, "split": None, "split_error_ms": None}


def test_details_carry_the_stored_headers_and_payload():
    rows = frame([ev("a", 0, headers='{"k": "v"}', payload='{"x": 1}', preview="x=1", schema_version="2")])
    event = traces.from_rows(rows, now=T0 + pd.Timedelta(minutes=5), details=True)["events"][0]
    assert (event["headers"], event["payload"], event["preview"], event["decode_error"], event["schema_version"]) == \
        ('{"k": "v"}', '{"x": 1}', "x=1", "", "2")
    bare = traces.from_rows(frame([ev("a", 0)]), now=T0 + pd.Timedelta(minutes=5), details=True)["events"][0]
    assert (bare["headers"], bare["payload"], bare["preview"], bare["schema_version"]) == ("{}", "", "", None)


def test_resolve_and_find_by_any_of_the_three_ids():
    rows = frame([ev("a", 0, trace_id="ab" * 16), ev("a", 1, topic="payments"), ev("b", 2),
                  ev(None, 3, trace_id="cd" * 16, event_id="lonely"), ev(None, 4, trace_id="cd" * 16)])
    assert len(traces.resolve(rows, "a")) == 2
    assert len(traces.resolve(rows, "AB" * 16)) == 2  # a trace ID, any case: its chain
    assert len(traces.resolve(rows, " id-b-2 ")) == 1  # an event ID, padded
    assert len(traces.resolve(rows, "lonely")) == 2  # no correlation ID: the events of its trace
    assert traces.resolve(rows, "").empty and traces.resolve(rows, "nope").empty
    assert traces.resolve(rows.iloc[0:0], "a").empty
    found = traces.find(rows, "a", now=T0 + pd.Timedelta(minutes=5))
    assert found["correlation_id"] == "a" and found["outcome"] == "completed"
    assert traces.find(rows, "a", quiet_s=600, now=T0 + pd.Timedelta(minutes=5))["outcome"] == "in_flight"
    assert traces.find(rows, "nope") is None


def test_the_views_are_tables_of_the_summary_columns_only():
    rows = frame([ev("a", 0), ev("a", 1.23456), ev("b", 10), ev("b", 11, dead=True), ev("c", 20)])
    now = T0 + pd.Timedelta(seconds=40)
    table = traces.summary(rows, now=now)
    for view in (table, traces.recent(rows, now=now), traces.slowest(table), traces.failed(table)):
        assert list(view.columns) == traces.SUMMARY_COLUMNS
        assert view.index.tolist() == list(range(len(view)))
    assert list(traces.summary(frame([ev("", 1)]), now=now).columns) == traces.SUMMARY_COLUMNS
    assert table.set_index("correlation_id").loc["a", "duration_ms"] == 1234.6  # to a tenth of a ms


def test_recent_judges_the_outcome_at_now_with_quiet_s():
    rows = frame([ev("a", 0), ev("a", 5)])
    assert traces.recent(rows, now=T0 + pd.Timedelta(seconds=20))["outcome"].tolist() == ["in_flight"]
    assert traces.recent(rows, now=T0 + pd.Timedelta(seconds=40))["outcome"].tolist() == ["completed"]
    assert traces.recent(rows, now=T0 + pd.Timedelta(seconds=40), quiet_s=60)["outcome"].tolist() == ["in_flight"]


def test_without_now_the_summary_judges_by_the_clock():
    fresh = pd.Timestamp.now(tz="UTC")
    rows = frame([ev("old", 0), {**ev("new", 0), "at": fresh, "broker_at": fresh, "observed_at": fresh}])
    table = traces.summary(rows).set_index("correlation_id")
    assert table.loc["old", "outcome"] == "completed" and table.loc["new", "outcome"] == "in_flight"


def test_find_calls_a_chain_quiet_for_30_seconds_by_default_finished():
    rows = frame([ev("a", 0), ev("a", 5)])
    assert traces.find(rows, "a", now=T0 + pd.Timedelta(seconds=35))["outcome"] == "completed"
    assert traces.find(rows, "a", now=T0 + pd.Timedelta(seconds=34.5))["outcome"] == "in_flight"


def test_an_empty_id_finds_nothing_even_where_events_have_empty_ids():
    rows = frame([ev("", 0, event_id=""), ev("a", 1)])
    assert traces.resolve(rows, "").empty and traces.resolve(rows, "   ").empty and traces.resolve(rows, None).empty
    assert traces.find(rows, "") is None


def _split_hop(lag):
    from test_trace_index import redis_hop_rows
    rows = redis_hop_rows(wait_s=60, service_s=20)  # entry 10 added at T0, the payment 80 s later
    return traces.from_rows(rows, lag_history=lag, now=T0 + pd.Timedelta(minutes=5))["hops"][0]


def test_the_split_reads_the_samples_of_the_group_named_after_the_consuming_service():
    """Module doc: the consuming group's entries-read samples bound the delivery. payment-service
    took entry 10 about 60 s after it was added; analytics-service at once."""
    from test_trace_index import T0 as ADDED, lag_samples
    lag = lag_samples(ADDED + pd.Timedelta(seconds=60), every_s=5, span_s=120)
    lag = lag.iloc[::-1].reset_index(drop=True)  # analytics-service is met first
    # another stream of the same group, read at once: not this hop's
    lag = pd.concat([lag, lag[lag["group"] == "payment-service"].assign(topic="other", committed=10, end=10)],
                    ignore_index=True)
    hop = _split_hop(lag)
    assert hop["split"] == "estimated" and abs(hop["broker_wait_ms"] - 60_000) <= hop["split_error_ms"] + 1
    # a group whose name ends with the service's is the service's
    renamed = lag.assign(group=lag["group"].replace({"payment-service": "prod-payment-service"}))
    hop = _split_hop(renamed)
    assert hop["split"] == "estimated" and abs(hop["broker_wait_ms"] - 60_000) <= hop["split_error_ms"] + 1
    # two groups, neither the service's: which one took the entry is unknown, no split
    other = lag.assign(group=lag["group"].replace({"payment-service": "billing"}))
    assert _split_hop(other)["split"] is None
    # the only group on the stream is the one that read it: analytics took it at once
    alone = lag[(lag["group"] == "analytics-service") & (lag["topic"] == "orders")]
    hop = _split_hop(alone)
    assert hop["split"] == "estimated" and hop["broker_wait_ms"] <= 2_500 + hop["split_error_ms"]


def test_samples_that_begin_after_the_entry_give_no_split():
    from test_trace_index import T0 as ADDED, lag_samples
    lag = lag_samples(ADDED + pd.Timedelta(seconds=60), every_s=5, span_s=120)
    assert _split_hop(lag)["split"] == "estimated"
    later = lag[lag["sampled_at"] > ADDED]  # no sample from before the entry was added
    assert _split_hop(later)["split"] is None


def _group_samples(samples):
    """(seconds after the entry was added, entries-added, entries-read) of payment-service on orders."""
    from test_trace_index import T0 as ADDED
    return schemas.conform("lag", [
        {"sampled_at": ADDED + pd.Timedelta(seconds=s), "source": "redis", "broker": "redis", "group": "payment-service",
         "topic": "orders", "partition": 0, "committed": read, "end": added, "lag": 0, "lag_seconds": 0.0,
         "group_state": "n/a", "members": 1} for s, added, read in samples])


def test_the_split_is_the_midpoint_of_the_last_sample_waiting_and_the_first_past_the_entry():
    # entry 10 added at 0 s; still unread at 55.51234 s, read at 61.25 s; the payment at 80 s:
    # delivered at the midpoint, 58.38117 s, give or take half the 5.73766 s bracket
    hop = _split_hop(_group_samples([(-3, 9, 9), (4, 10, 9), (55.51234, 11, 9), (61.25, 11, 10), (70, 12, 12)]))
    assert (hop["split"], hop["broker_wait_ms"], hop["service_ms"], hop["split_error_ms"]) == (
        "estimated", 58381.2, 21618.8, 2868.8)


def test_a_bracket_of_half_the_hop_still_splits_it():
    # unread at 20 s, read at 60 s: 40 s, half the 80 s hop
    hop = _split_hop(_group_samples([(-3, 9, 9), (20, 10, 9), (60, 10, 10)]))
    assert (hop["split"], hop["broker_wait_ms"], hop["split_error_ms"]) == ("estimated", 40000.0, 20000.0)
    hop = _split_hop(_group_samples([(-3, 9, 9), (19.9, 10, 9), (60, 10, 10)]))  # 40.1 s: too wide
    assert hop["split"] is None and hop["broker_wait_ms"] is None


def test_recent_calls_a_chain_quiet_for_30_seconds_by_default_finished():
    rows = frame([ev("a", 0), ev("a", 5)])
    assert traces.recent(rows, now=T0 + pd.Timedelta(seconds=35))["outcome"].tolist() == ["completed"]
    assert traces.recent(rows, now=T0 + pd.Timedelta(seconds=34.5))["outcome"].tolist() == ["in_flight"]


def test_an_event_in_a_dlq_says_so_and_details_carry_its_decode_error():
    rows = frame([ev("a", 0), ev("a", 1, topic="orders.DLT", dead=True, original_topic="orders",
                                 decode_error="not JSON: b'\\x00'")])
    found = traces.from_rows(rows, now=T0 + pd.Timedelta(minutes=5), details=True)
    assert [e["dead_letter"] for e in found["events"]] == [False, True]
    assert [e["decode_error"] for e in found["events"]] == ["", "not JSON: b'\\x00'"]
    plain = traces.from_rows(rows, now=T0 + pd.Timedelta(minutes=5))["events"][1]
    assert plain["dead_letter"] is True and "decode_error" not in plain


def test_a_hop_latency_is_kept_to_a_tenth_of_a_millisecond():
    rows = frame([ev("a", 0), ev("a", 1.23456, topic="payments")])
    hop = traces.from_rows(rows, now=T0 + pd.Timedelta(minutes=5))["hops"][0]
    assert hop["latency_ms"] == 1234.6


def _span_chain():
    """A → B, a dead letter of A, then C, D and E, each carrying the span its traceparent names.
    The spans: C's span is a child of A's; D's is a root; E carries B's span unchanged."""
    return frame([ev("s", 0, parent_span_id="a0"),
                  ev("s", 1, topic="payments", parent_span_id="b0"),
                  ev("s", 1.5, topic="orders.DLT", dead=True, original_topic="orders", parent_span_id="a0"),
                  ev("s", 2, topic="shipping", parent_span_id="c0"),
                  ev("s", 3, topic="emails", parent_span_id="d0"),
                  ev("s", 4, topic="audit", parent_span_id="b0")])


def test_spans_name_a_hops_cause_ahead_of_the_topic_rule_and_can_say_there_is_none():
    spans = {"c0": ("a0", ()), "d0": (None, ())}
    found = traces.from_rows(_span_chain(), now=T0 + pd.Timedelta(minutes=5), spans=spans)
    assert [(h["from_topic"], h["to_topic"]) for h in found["hops"]] == [
        ("orders", "payments"),      # no span known for b0: the latest earlier event elsewhere
        ("orders", "orders.DLT"),    # a dead letter: the original's topic
        ("orders", "shipping"),      # c0's parent is the span A carries
        # D: its span is a root every step of which is known, and no message on the way: no hop
        ("payments", "audit")]       # E carries B's span unchanged
    assert [h["latency_ms"] for h in found["hops"]] == [1000.0, 1500.0, 2000.0, 3000.0]


def test_without_spans_a_shared_traceparent_names_no_cause():
    """As for the flow graph's edges: with no spans given (or none stored), a hop's cause is
    found by the topic rule, whatever span IDs the messages carry."""
    expected = [("orders", "payments"), ("orders", "orders.DLT"), ("payments", "shipping"),
                ("shipping", "emails"), ("emails", "audit")]
    for spans in (None, {}):
        found = traces.from_rows(_span_chain(), now=T0 + pd.Timedelta(minutes=5), spans=spans)
        assert [(h["from_topic"], h["to_topic"]) for h in found["hops"]] == expected
    assert [(h["from_topic"], h["to_topic"]) for h in
            traces.find(_span_chain(), "s", now=T0 + pd.Timedelta(minutes=5))["hops"]] == expected


def test_from_rows_calls_a_chain_quiet_for_30_seconds_by_default_finished():
    rows = frame([ev("a", 0), ev("a", 5)])
    assert traces.from_rows(rows, now=T0 + pd.Timedelta(seconds=35))["outcome"] == "completed"
    assert traces.from_rows(rows, now=T0 + pd.Timedelta(seconds=34.5))["outcome"] == "in_flight"


def test_a_live_event_keeps_its_envelope_time_only_a_dead_letter_takes_the_brokers():
    rows = frame([ev("a", 0, broker_sec=3), ev("a", 1, topic="payments", broker_sec=2)])
    found = traces.from_rows(rows, now=T0 + pd.Timedelta(minutes=5))
    assert [(e["topic"], e["at"]) for e in found["events"]] == [("orders", "2026-12-01T09:00:00Z"),
                                                                ("payments", "2026-12-01T09:00:01Z")]
    assert [h["latency_ms"] for h in found["hops"]] == [1000.0]


def test_a_message_read_again_later_is_still_one_event():
    again = {**ev("a", 0, offset="7"), "observed_at": T0 + pd.Timedelta(seconds=10)}  # read again at 10 s
    rows = frame([ev("a", 0, offset="7"), again, ev("a", 1, topic="payments", offset="3")])
    found = traces.from_rows(rows, now=T0 + pd.Timedelta(minutes=5))
    assert found["events_total"] == 2 and [e["offset"] for e in found["events"]] == ["7", "3"]


def _hop(rows, lag):
    return traces.from_rows(rows, lag_history=lag, now=T0 + pd.Timedelta(minutes=5))["hops"][0]


def test_a_kafka_hop_is_never_split_even_where_samples_would_bracket_it():
    from test_trace_index import redis_hop_rows
    samples = [(-3, 9, 9), (20, 10, 9), (60, 10, 10)]
    assert _split_hop(_group_samples(samples))["split"] == "estimated"
    kafka = redis_hop_rows(wait_s=60, service_s=20).assign(source="kafka", broker="kafka", kind="kafka")
    lag = _group_samples(samples).assign(source="kafka", broker="kafka", kind="kafka")
    hop = _hop(kafka, lag)
    assert (hop["split"], hop["broker_wait_ms"], hop["service_ms"]) == (None, None, None)


def test_a_hop_of_no_time_is_not_split_and_one_of_a_millisecond_can_be():
    from test_trace_index import redis_hop_rows
    hop = _hop(redis_hop_rows(wait_s=0, service_s=0), _group_samples([(-3, 9, 9), (5, 10, 10)]))
    assert hop["latency_ms"] == 0.0 and hop["split"] is None and hop["broker_wait_ms"] is None
    # 1 ms: unread 0.2 ms after the entry was added, read at 0.6 ms: delivered at 0.4 ms ± 0.2
    hop = _hop(redis_hop_rows(wait_s=0.0006, service_s=0.0004),
               _group_samples([(-3, 9, 9), (0.0002, 10, 9), (0.0006, 10, 10)]))
    assert (hop["latency_ms"], hop["split"], hop["broker_wait_ms"], hop["service_ms"], hop["split_error_ms"]) == (
        1.0, "estimated", 0.4, 0.6, 0.2)


def test_without_a_lag_history_the_recent_samples_split_the_hops():
    samples = _group_samples([(-3, 9, 9), (20, 10, 9), (60, 10, 10)])
    from test_trace_index import redis_hop_rows
    hop = traces.from_rows(redis_hop_rows(wait_s=60, service_s=20), lag=samples,
                           now=T0 + pd.Timedelta(minutes=5))["hops"][0]
    assert (hop["split"], hop["broker_wait_ms"], hop["split_error_ms"]) == ("estimated", 40000.0, 20000.0)


def test_a_trace_of_exactly_max_events_is_kept_whole():
    rows = frame([ev("a", i, topic=("orders" if i % 2 else "payments")) for i in range(4)])
    found = traces.from_rows(rows, now=T0 + pd.Timedelta(minutes=5), max_events=4)
    assert found["events_total"] == 4 and "events_each_end" not in found
    assert len(found["events"]) == 4 and len(found["hops"]) == 3


def test_a_cut_trace_keeps_the_first_ten_dead_letters_between_its_ends():
    rows = [ev("hot", 0)] + [ev("hot", s, topic="orders.DLT", dead=True) for s in range(1, 12)] + [ev("hot", 12)]
    found = traces.from_rows(frame(rows), now=T0 + pd.Timedelta(minutes=5), max_events=2)
    assert found["events_total"] == 13 and found["events_each_end"] == 1
    assert [e["at"][-3:-1] for e in found["events"]] == ["00", *(f"{s:02d}" for s in range(1, 11)), "12"]


def _cut(rows, **kw):
    return traces.from_rows(frame(rows), now=T0 + pd.Timedelta(minutes=10), max_events=6, **kw)["hops"]


def test_each_end_of_a_cut_trace_links_its_hops_by_the_learned_topics_and_the_spans():
    # each end: orders (shop), then refunds (ref), then payments (pay); three events between
    def end(start, span):
        return [ev("hot", start, parent_span_id=f"a{span}", service="shop"),
                ev("hot", start + 1, topic="refunds", parent_span_id=f"r{span}", service="ref"),
                ev("hot", start + 2, topic="payments", parent_span_id=f"p{span}", service="pay")]
    rows = end(0, 0) + [ev("hot", s, topic="x", service="other") for s in (10, 11, 12)] + end(20, 1)

    def pairs(hops):
        return [(h["from_event_id"], h["to_event_id"]) for h in hops]

    # by the topic rule alone, payments follows refunds
    assert pairs(_cut(rows)) == [("id-hot-0", "id-hot-1"), ("id-hot-1", "id-hot-2"),
                                 ("id-hot-20", "id-hot-21"), ("id-hot-21", "id-hot-22")]
    # learned: the payment service reads orders only
    consumes = {("pay", "E"): {("kafka", "orders")}}
    assert pairs(_cut(rows, consumes=consumes)) == [("id-hot-0", "id-hot-1"), ("id-hot-0", "id-hot-2"),
                                                    ("id-hot-20", "id-hot-21"), ("id-hot-20", "id-hot-22")]
    # the spans say a payment has no cause (its span is a root)
    spans = {"p0": (None, ()), "p1": (None, ())}
    assert pairs(_cut(rows, spans=spans)) == [("id-hot-0", "id-hot-1"), ("id-hot-20", "id-hot-21")]


def test_each_end_of_a_cut_trace_splits_its_redis_hops_by_the_lag_history():
    def redis(sec, topic, offset, service):
        return ev("hot", sec, topic=topic, offset=offset, broker="redis", kind="redis", service=service)
    rows = [redis(0, "orders", "1-0", "order-service"), redis(80, "payments", "2-0", "payment-service"),
            redis(100, "x", "3-0", "other"), redis(200, "orders", "4-0", "order-service"),
            redis(280, "payments", "5-0", "payment-service")]
    # payment-service on orders: entry 10 unread at 20 s, read at 60 s; entry 11 unread at 220 s, read at 260 s
    samples = _group_samples([(-3, 9, 9), (20, 10, 9), (60, 10, 10), (197, 10, 10), (220, 11, 10), (260, 11, 11)])
    from test_trace_index import T0 as ADDED
    samples = samples.assign(sampled_at=samples["sampled_at"] - ADDED + T0)  # seconds after this file's T0
    found = traces.from_rows(frame(rows), lag_history=samples, now=T0 + pd.Timedelta(minutes=10), max_events=4)
    assert found["events_each_end"] == 2
    assert [(h["from_event_id"], h["split"], h["broker_wait_ms"], h["service_ms"], h["split_error_ms"])
            for h in found["hops"]] == [("id-hot-0", "estimated", 40000.0, 40000.0, 20000.0),
                                        ("id-hot-200", "estimated", 40000.0, 40000.0, 20000.0)]


def test_a_trace_without_correlation_ids_has_none():
    rows = frame([ev(None, 0, trace_id="ab" * 16), ev(None, 1, topic="payments", trace_id="ab" * 16)])
    found = traces.find(rows, "ab" * 16, now=T0 + pd.Timedelta(minutes=5))
    assert found["correlation_id"] is None and found["events_total"] == 2


def _links(rows, **kw):
    found = traces.from_rows(frame(rows), now=T0 + pd.Timedelta(minutes=5), **kw)
    return [(h["from_event_id"], h["to_event_id"]) for h in found["hops"]]


def test_a_dead_letter_follows_the_event_it_copies_by_event_id_before_its_original_topic():
    # A and B on orders, then the dead letter of A (A's event ID, no original offset), twice
    rows = [ev("a", 0, event_id="A"), ev("a", 1, event_id="B"), ev("a", 2, topic="payments", event_id="P"),
            ev("a", 3, topic="orders.DLT", dead=True, event_id="A", original_topic="orders"),
            ev("a", 4, topic="orders.DLT", dead=True, event_id="A", original_topic="orders")]
    assert _links(rows) == [("B", "P"), ("A", "A"), ("A", "A")]
    hops = traces.from_rows(frame(rows), now=T0 + pd.Timedelta(minutes=5))["hops"]
    assert [(h["from_topic"], h["latency_ms"]) for h in hops[1:]] == [("orders", 3000.0), ("orders", 4000.0)]


def test_a_dead_letter_without_a_known_event_follows_the_last_event_on_its_original_topic():
    rows = [ev("a", 0, event_id="O"), ev("a", 1, topic="payments", event_id="P"),
            ev("a", 2, topic="orders.DLT", dead=True, event_id="X", original_topic="orders")]
    assert _links(rows) == [("O", "P"), ("O", "X")]
    # no original topic named: the latest earlier event elsewhere, as for any event
    rows[2] = ev("a", 2, topic="orders.DLT", dead=True, event_id="X")
    assert _links(rows) == [("O", "P"), ("P", "X")]


def test_no_event_is_caused_by_a_dead_letter_or_by_an_event_of_its_own_topic():
    rows = [ev("a", 0, event_id="O1"), ev("a", 1, event_id="O2"),
            ev("a", 2, topic="orders.DLT", dead=True, event_id="D", original_topic="orders"),
            ev("a", 3, topic="payments", event_id="P1", service="pay"),
            ev("a", 4, topic="payments", event_id="P2", service="pay")]
    # O2 follows nothing (only orders before it); P1 and P2 follow O2, not the dead letter or P1
    assert _links(rows) == [("O2", "D"), ("O2", "P1"), ("O2", "P2")]
    # learned: the payment service reads orders and payments; still not its own topic
    consumes = {("pay", "E"): {("kafka", "orders"), ("kafka", "payments")}}
    assert _links(rows, consumes=consumes) == [("O2", "D"), ("O2", "P1"), ("O2", "P2")]


def test_an_event_without_a_time_has_none():
    rows = frame([ev("a", 0), {**ev("a", 1, topic="payments"), "at": None, "broker_at": None}])
    found = traces.from_rows(rows, now=T0 + pd.Timedelta(minutes=5))
    assert [e["at"] for e in found["events"]] == ["2026-12-01T09:00:00Z", None]


def test_slowest_keeps_chains_of_equal_duration_newest_first_in_a_longer_table():
    ids = [f"c{i:02d}" for i in range(20)]  # the summary's order: newest first
    table = pd.DataFrame({"correlation_id": ids, "first_at": T0, "last_at": T0, "events": 2,
                          "duration_ms": [float(i % 3) for i in range(20)], "outcome": "completed"})
    expected = [c for d in (2.0, 1.0, 0.0) for c, i in zip(ids, range(20)) if i % 3 == d]
    assert traces.slowest(table)["correlation_id"].tolist() == expected


def test_no_id_names_no_trace_whatever_the_events_ids_are():
    rows = frame([ev("XXXX", 0, event_id="XXXX"), ev("a", 1)])
    assert traces.resolve(rows, None).empty and traces.find(rows, None) is None
