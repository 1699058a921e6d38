"""The causes rule (eventscope.analysis.causality) where a mutation run found it unchecked:
the consumer groups handed to the learning, the horizon's one-second floor in real time, and
the sort of an enormous window. Expected answers are written out from the module docstring."""
from __future__ import annotations

import numpy as np
import pandas as pd

from eventscope.analysis import causality as c

T0 = pd.Timestamp("2026-12-01T09:00:00Z")


def _events(rows):
    frame = pd.DataFrame(rows, columns=["broker", "topic", "service", "event_type", "correlation_id", "at",
                                        "dead_letter"])
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame


def _chains(steps, chains=10, every_s=10.0):
    """``steps``: (broker, topic, service, event type, ms after the chain's first event)."""
    rows = []
    for i in range(chains):
        at = T0 + pd.Timedelta(seconds=every_s * i)
        rows += [(b, t, s, e, f"c{i}", at + pd.Timedelta(milliseconds=ms), False) for b, t, s, e, ms in steps]
    return _events(rows)


def test_a_hop_within_a_second_is_within_the_horizon_however_fast_the_others_are():
    # three hops of 1 ms, then one of 800 ms: 50 × the median gap is 50 ms, but the cap is
    # never below one second, so the audit event 0.8 s before each shipment is its input
    steps = [("kafka", "orders", "order-service", "OrderPlaced", 0),
             ("kafka", "payments", "payment-service", "PaymentCharged", 1),
             ("kafka", "emails", "email-service", "EmailQueued", 2),
             ("kafka", "audit", "audit-service", "Audited", 3),
             ("kafka", "shipments", "shipping-service", "Shipped", 803)]
    learned = c.consumed_topics(_chains(steps))
    assert learned[("shipping-service", "Shipped")] == frozenset({("kafka", "audit")})
    assert learned[("payment-service", "PaymentCharged")] == frozenset({("kafka", "orders")})
    # 1.2 s after: beyond the floor (and beyond 50 × 1 ms): its events start their chains
    steps[-1] = ("kafka", "shipments", "shipping-service", "Shipped", 1203)
    assert c.consumed_topics(_chains(steps))[("shipping-service", "Shipped")] == frozenset()


def test_a_services_own_groups_name_its_inputs_even_when_another_event_always_lands_between():
    # audit-service and payment-service both read orders; the audit event always lands first,
    # so from traffic alone the payments look caused by it
    steps = [("kafka", "orders", "order-service", "OrderPlaced", 0),
             ("kafka", "audit", "audit-service", "Audited", 5),
             ("kafka", "payments", "payment-service", "PaymentCharged", 10)]
    events = _chains(steps)
    assert c.consumed_topics(events)[("payment-service", "PaymentCharged")] == frozenset({("kafka", "audit")})
    groups = pd.DataFrame({"group": ["payment-service", "audit-service"], "broker": ["kafka", "kafka"],
                           "topic": ["orders", "orders"]})
    learned = c.consumed_topics(events, groups)
    assert learned[("payment-service", "PaymentCharged")] == frozenset({("kafka", "orders")})
    assert learned[("audit-service", "Audited")] == frozenset({("kafka", "orders")})


def test_groups_of_one_broker_say_nothing_about_another_brokers_topics():
    # consumer groups are known for kafka only: a Redis stream nobody's group is known for
    # still causes events
    steps = [("kafka", "orders", "order-service", "OrderPlaced", 0),
             ("redis", "payments", "payment-service", "PaymentCharged", 10),
             ("kafka", "emails", "email-service", "EmailQueued", 20)]
    groups = pd.DataFrame({"group": ["billing"], "broker": ["kafka"], "topic": ["orders"]})
    learned = c.consumed_topics(_chains(steps), groups)
    assert learned[("payment-service", "PaymentCharged")] == frozenset({("kafka", "orders")})
    assert learned[("email-service", "EmailQueued")] == frozenset({("redis", "payments")})


def test_cause_rows_hands_the_groups_on_to_the_learning():
    # rows in chain order: per chain orders, audit, payments (as above)
    n = 10
    chain = np.repeat(np.arange(n), 3)
    at_us = (np.repeat(np.arange(n) * 10_000_000, 3) + np.tile([0, 5_000, 10_000], n)).astype(np.int64)
    place = np.tile([0, 1, 2], n)  # 0 orders, 1 audit, 2 payments
    producer = np.tile([0, 1, 2], n)
    # from traffic alone: each payment's cause is the audit event just before it
    assert c.cause_rows(chain, at_us, place, producer)[2::3].tolist() == list(range(1, 3 * n, 3))
    # payment-service's groups read orders only
    allowed = {2: np.array([True, False, False]), 1: np.array([True, False, False])}
    causes = c.cause_rows(chain, at_us, place, producer, allowed=allowed)
    assert causes[2::3].tolist() == list(range(0, 3 * n, 3))
    assert causes[1::3].tolist() == list(range(0, 3 * n, 3))
    # no group reads audit: it causes nothing, whatever the traffic says (and orders, never
    # seen right before a payment, is no candidate for one)
    read = np.array([True, False, True])
    causes = c.cause_rows(chain, at_us, place, producer, topics_read=read)
    assert causes[2::3].tolist() == [-1] * n
    assert causes[1::3].tolist() == list(range(0, 3 * n, 3))


def test_an_enormous_window_sorts_by_chain_then_time_then_where_a_type_usually_stands():
    # chain codes up to 5 million over 12 days in µs: the one-key sort would overflow
    big = 5_000_000
    day = 86_400_000_000
    chain = np.array([big, 0, big, 0, 0, big, 0])
    at_us = np.array([12 * day, 5, 7, 5, 1, 7, 3], dtype=np.int64)
    # kinds: 0 usually first, 1 second, 2 third (rows 4, 6 in chain 0 show 0 then 1)
    kind = np.array([2, 2, 1, 1, 0, 0, 1])
    order = c.chain_order(chain, at_us, kind)
    # chain 0: row 4 (t=1), row 6 (t=3), rows 1 and 3 tie at t=5: kind 1 (row 3) before kind 2 (row 1)
    # chain big: rows 2 and 5 tie at t=7: kind 0 (row 5) before kind 1 (row 2), then row 0
    assert order.tolist() == [4, 6, 3, 1, 5, 2, 0]


def test_ties_in_an_ordinary_window_follow_where_a_type_usually_stands():
    chain = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    at_us = np.array([1, 2, 3, 1, 2, 3, 9, 9])
    kind = np.array([0, 1, 2, 0, 1, 2, 2, 0])
    assert c.chain_order(chain, at_us, kind).tolist() == [0, 1, 2, 3, 4, 5, 7, 6]
    # without ties the order is by chain then time only
    assert c.chain_order(np.array([1, 0, 1, 0]), np.array([4, 3, 2, 1]), np.array([0, 0, 0, 0])).tolist() == \
        [3, 1, 2, 0]


def test_names_with_spaces_and_separator_characters_come_back_whole():
    """Redis stream keys and event types are free text: a space, or even the unit separator
    eventscope joins names with, belongs to the name."""
    steps = [("redis", "orders stream", "order service", "Order Placed", 0),
             ("redis", "pay\x1fments", "payment-service", "Payment\x1fCharged", 10),
             ("redis", "emails", "email-service", "EmailQueued", 20)]
    groups = pd.DataFrame({"group": ["payment-service", "email-service"], "broker": ["redis", "redis"],
                           "topic": ["orders stream", "pay\x1fments"]})
    for learned in (c.consumed_topics(_chains(steps)), c.consumed_topics(_chains(steps), groups)):
        assert learned[("payment-service", "Payment\x1fCharged")] == frozenset({("redis", "orders stream")})
        assert learned[("email-service", "EmailQueued")] == frozenset({("redis", "pay\x1fments")})
        # the chains' first events: nothing before them to learn from
        assert ("order service", "Order Placed") in learned and learned[("order service", "Order Placed")] is None


def test_a_chain_of_two_events_has_its_cause():
    # one chain: an order, then the payment it caused (too few events to learn from: the
    # event before on another topic is the cause); a lone event has none
    chain, place, producer = np.array([0, 0]), np.array([0, 1]), np.array([0, 1])
    assert c.cause_rows(chain, np.array([0, 10]), place, producer).tolist() == [-1, 0]
    assert c.cause_rows(np.array([0]), np.array([0]), np.array([0]), np.array([0])).tolist() == [-1]
