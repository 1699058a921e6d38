"""The building blocks of the causes rule (eventscope.analysis.causality), by small examples
whose expected rows are written out by hand from the docstrings."""
from __future__ import annotations

import numpy as np
import pandas as pd

from eventscope.analysis import causality as c


def test_chain_order_sorts_by_chain_then_time_and_breaks_ties_by_where_a_type_usually_stands():
    # kinds: 0 = OrderPlaced, 1 = PaymentCharged, 2 = EmailQueued; chains 0 and 1 show the usual
    # order 0, 1, 2; in chain 2 the charge and the e-mail share an instant (rows 6 and 7)
    chain = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    at_us = np.array([10, 20, 30, 15, 25, 35, 90, 90, 40])
    kind = np.array([0, 1, 2, 0, 1, 2, 2, 1, 0])
    assert c.chain_order(chain, at_us, kind).tolist() == [0, 1, 2, 3, 4, 5, 8, 7, 6]


def test_previous_other_place_is_the_newest_earlier_event_of_the_chain_on_another_topic():
    chain = np.array([0, 0, 0, 0, 1, 1])
    place = np.array([0, 1, 1, 2, 0, 1])
    assert c.previous_other_place(chain, place).tolist() == [-1, 0, 0, 2, -1, 4]
    empty = c.previous_other_place(np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    assert empty.tolist() == [] and empty.dtype == np.int64


def test_rows_by_place_lists_each_places_rows_in_order():
    got = c._rows_by_place(np.array([2, 0, 2, 1, 0]))
    assert {k: v.tolist() for k, v in got.items()} == {0: [1, 4], 1: [3], 2: [0, 2]}


def test_a_causation_id_names_an_earlier_event_of_the_same_chain_only():
    chain = np.array([0, 0, 1, 1, 1])
    ids = ["a", "b", "c", "d", ""]
    causes = [None, "a", "a", "c", "zzz"]  # row 2 names "a" of another chain; row 4 an unknown ID
    assert c.explicit_causes(chain, ids, causes).tolist() == [-1, 0, -1, 2, -1]
    # a causation ID that names a later event is not a cause
    assert c.explicit_causes(np.array([0, 0]), ["a", "b"], ["b", None]).tolist() == [-1, -1]


def test_span_index_reads_parent_and_links():
    rows = pd.DataFrame({"span_id": ["s1", "s2", "s3", None], "parent_span_id": [None, "s1", "", "s1"],
                         "links": ["", "l1 l2", None, "x"]})
    assert c.span_index(rows) == {"s1": (None, ()), "s2": ("s1", ("l1", "l2")), "s3": (None, ())}
    assert c.span_index(None) == {}
    assert c.span_index(rows.iloc[:0]) == {}


def test_span_causes_walks_parents_and_links_to_an_earlier_message():
    spans = {"a": (None, ()), "b": ("a", ()), "p": (None, ("b",)), "q": ("gone", ())}
    chain = np.zeros(7, dtype=np.int64)
    span_ids = ["a", "b", "p", "z", "a", None, "q"]
    # a: a root, no message before it (NO_CAUSE); b: child of a's span; p: links to b's;
    # z: nobody exported it; the second "a": the first message carrying it; None: nothing;
    # q: its parent was never exported
    assert c.span_causes(chain, span_ids, spans).tolist() == [c.NO_CAUSE, 0, 1, -1, 0, -1, -1]
    # another chain does not see the first chain's messages
    assert c.span_causes(np.array([0, 1]), ["a", "b"], spans).tolist() == [c.NO_CAUSE, c.NO_CAUSE]
    # nothing to go on
    assert c.span_causes(np.array([0, 0]), [None, None], {}).tolist() == [-1, -1]


def test_span_causes_walks_up_sixteen_ancestors_at_most():
    def walk(levels):  # a message on span "d<levels>", then one whose span is "d0"
        spans = {f"d{i}": (f"d{i + 1}", ()) for i in range(levels)}
        spans[f"d{levels}"] = (None, ())
        return c.span_causes(np.array([0, 0]), [f"d{levels}", "d0"], spans).tolist()

    assert c.SPAN_DEPTH == 16
    assert walk(16) == [c.NO_CAUSE, 0]
    assert walk(17) == [c.NO_CAUSE, -1]


def test_cause_rows_takes_the_event_just_before_when_too_few_and_the_messages_override():
    chain = np.array([0, 0, 0])
    at_us = np.array([1, 2, 3])
    place = np.array([0, 1, 2])
    producer = np.array([0, 1, 2])
    assert c.cause_rows(chain, at_us, place, producer).tolist() == [-1, 0, 1]
    explicit = np.array([-1, c.NO_CAUSE, 0])
    assert c.cause_rows(chain, at_us, place, producer, explicit=explicit).tolist() == [-1, -1, 0]
    assert c.cause_rows(chain[:1], at_us[:1], place[:1], producer[:1]).tolist() == [-1]


def test_group_names_name_services_by_their_words():
    assert c._tokens("prod-payment-service") == ["prod", "payment"]
    assert c._tokens("Payment_Consumer") == ["payment"]
    assert c._tokens("service") == ["service"]
    assert c._service_like("email-service") and c._service_like("payments.worker")
    assert not c._service_like("service") and not c._service_like("payment-compensation")
    assert c._named_after("prod-payment-consumer", "payment-service")
    assert c._named_after("payment-compensation", "payment-service")
    assert not c._named_after("payments", "payment-service")
    assert not c._named_after("prod", "payment-service")


def test_service_reads_its_own_groups_topics_and_those_of_groups_named_after_no_service():
    services = ["email-service", "payment-service"]
    places = [("kafka", "orders"), ("kafka", "payments"), ("kafka", "inventory"), ("kafka", "shipments")]
    groups = pd.DataFrame({"group": ["payment-service", "prod-email-consumer", "shipping-service", "audit",
                                     "audit"],
                           "broker": ["kafka"] * 5,
                           "topic": ["orders", "payments", "shipments", "inventory", "elsewhere"]})
    got = c.service_reads(services, places, groups)
    assert {k: v.tolist() for k, v in got.items()} == {0: [False, True, True, False],
                                                       1: [True, False, True, False]}
    assert c.service_reads(services, places, None) == {}
    assert c.service_reads(services, places, groups.iloc[:0]) == {}


def test_span_causes_skips_messages_without_a_span_and_walks_on_without_exported_spans():
    spans = {"a": (None, ()), "b": ("a", ())}
    # a message with no span (None or empty) causes nothing and is nobody's cause
    assert c.span_causes(np.zeros(4, dtype=np.int64), [None, "a", "", "b"], spans).tolist() == \
        [-1, c.NO_CAUSE, -1, 1]
    assert c.span_causes(np.zeros(2, dtype=np.int64), ["", ""], spans).tolist() == [-1, -1]
    # no span exported at all: a span carried on unchanged still names the first message with it
    assert c.span_causes(np.zeros(2, dtype=np.int64), ["a", "a"], {}).tolist() == [-1, 0]


def _events(rows):
    frame = pd.DataFrame(rows, columns=["broker", "topic", "service", "event_type", "correlation_id", "at",
                                        "dead_letter"])
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame


def test_consumed_topics_learns_only_from_usable_events():
    t = "2026-12-01T09:00:0{}Z"
    usable = [("kafka", "orders", "order-service", "OrderPlaced", "c1", t.format(0), False),
              ("kafka", "payments", "payment-service", "PaymentCharged", "c1", t.format(1), None)]
    left_out = [  # a dead letter, no time, no service, no correlation ID, undecodable
        ("kafka", "orders.DLT", "dlq-service", "OrderPlaced", "c1", t.format(2), True),
        ("kafka", "late", "late-service", "Late", "c1", None, False),
        ("kafka", "x", None, "NoService", "c1", t.format(3), False),
        ("kafka", "x", "", "EmptyService", "c1", t.format(3), False),
        ("kafka", "y", "y-service", "NoChain", None, t.format(4), False),
        ("kafka", "y", "z-service", "EmptyChain", "", t.format(4), False),
        ("kafka", "z", "bad-service", "<undecodable>", "c1", t.format(5), False),
    ]
    # two usable events: too few to learn from, but each producer is named (None: cannot tell)
    assert c.consumed_topics(_events(usable + left_out)) == {("order-service", "OrderPlaced"): None,
                                                             ("payment-service", "PaymentCharged"): None}
    assert c.consumed_topics(_events(usable[:1] + left_out)) == {}


def _pipeline(chains=10):
    t0 = pd.Timestamp("2026-12-01T09:00:00Z")
    rows = []
    for i in range(chains):
        at = t0 + pd.Timedelta(seconds=10 * i)
        rows += [("kafka", "orders", "order-service", "OrderPlaced", f"c{i}", at, False),
                 ("kafka", "payments", "payment-service", "PaymentCharged", f"c{i}",
                  at + pd.Timedelta(milliseconds=10), False),
                 ("kafka", "audit", "audit-service", "Audited", f"c{i}", at + pd.Timedelta(milliseconds=20), False)]
    return _events(rows)


def test_consumed_topics_from_traffic_and_from_consumer_groups():
    assert c.consumed_topics(_pipeline()) == {
        ("order-service", "OrderPlaced"): None,  # first of every chain: nothing before it to judge
        ("payment-service", "PaymentCharged"): frozenset({("kafka", "orders")}),
        ("audit-service", "Audited"): frozenset({("kafka", "payments")})}
    # the groups of broker "kafka" are known and none reads "payments": it causes nothing
    groups = pd.DataFrame({"group": ["payment-service"], "broker": ["kafka"], "topic": ["orders"]})
    assert c.consumed_topics(_pipeline(), groups) == {
        ("order-service", "OrderPlaced"): None,  # first of every chain: nothing before it to judge
        ("payment-service", "PaymentCharged"): frozenset({("kafka", "orders")}),
        ("audit-service", "Audited"): frozenset()}
