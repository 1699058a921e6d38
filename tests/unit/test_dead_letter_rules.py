"""Dead letters and sampling, by example: which names are DLQs, where a DLQ's failures came
from, what a DLQ row says, how reading resumes after a restart, and which correlation IDs a
sampled read keeps (README, "Dead-letter queues" and "Traces")."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from eventscope.collectors.events_common import (BOOK_PARTITION, DeadLetterBook, glob_filter, in_sample,
                                                 offset_key, reading_rows, restore_reading,
                                                 source_topic_from_name)
from eventscope.config import KafkaConfig, RedisConfig, dlq_regex

T0 = pd.Timestamp("2026-11-28T10:00:00Z")

# -- sampling: CRC-32 of the UTF-8 correlation ID, the same in every process --------------------
# zlib.crc32 / 2**32 of each ID: order-1 0.878, order-2 0.475, order-3 0.058, abc 0.208, ü-7 0.068


def test_sampling_keeps_an_id_by_its_crc32():
    assert in_sample("order-3", 0.06) and not in_sample("order-3", 0.05)
    assert in_sample("order-2", 0.48) and not in_sample("order-2", 0.47)
    assert in_sample("order-1", 0.88) and not in_sample("order-1", 0.87)
    assert in_sample("ü-7", 0.07) and not in_sample("ü-7", 0.068)  # the UTF-8 bytes are hashed
    kept = {c for c in ("order-1", "order-2", "order-3", "abc") if in_sample(c, 0.25)}
    assert kept == {"order-3", "abc"}


def test_sampling_line_is_strict_and_exact():
    crc = 247275203  # zlib.crc32(b"order-3")
    assert not in_sample("order-3", crc / 2**32)  # kept only below the line (crc / 2**32 is exact)
    assert in_sample("order-3", (crc + 1) / 2**32)


def test_an_id_that_is_not_valid_unicode_is_hashed_not_refused():
    lone = "order-\ud800"  # a lone surrogate (JSON can carry one); encoded with "?" in its place
    assert not in_sample(lone, 0.02) and not in_sample("order-?", 0.02)  # crc32(b"order-?") / 2**32: 0.0275
    assert in_sample(lone, 0.03) and in_sample("order-?", 0.03)


def test_sampling_keeps_everything_at_ratio_one_and_events_without_an_id():
    assert in_sample("", 0.0) and in_sample(None, 0.0)
    assert in_sample("order-1", 1.0) and in_sample("order-1", 1.5)
    assert in_sample(None, 0.01) and in_sample("", 0.01) and in_sample(42, 0.01)
    assert not in_sample("order-3", 0.0)


def test_sampling_is_the_same_in_another_process():
    """Python's own ``hash()`` of a str changes per process (PYTHONHASHSEED); the choice must not."""
    from eventscope.collectors import events_common
    code = ("import importlib.util as u;"
            f"s = u.spec_from_file_location('events_common', {events_common.__file__!r});"
            "import sys; m = sys.modules['events_common'] = u.module_from_spec(s); s.loader.exec_module(m);"
            "print(''.join('1' if m.in_sample(f'cid-{i}', 0.5) else '0' for i in range(64)))")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}).stdout.strip()
            for seed in ("1", "2", "3")}
    here = "".join("1" if in_sample(f"cid-{i}", 0.5) else "0" for i in range(64))
    assert runs == {here}
    assert 16 < here.count("1") < 48


# -- which names are DLQs ---------------------------------------------------------------------
DLQ_NAMES = ["orders.DLT", "orders-dlt", "orders.dlq", "orders-dlq", "orders.dead-letter", "dlq.orders",
             "dlq-orders"]
NOT_DLQ = ["orders", "dlqueue", "orders.dlt.archive", "my-dlq-topic", "payments", "DLQs", "orders_dlq"]


@pytest.mark.parametrize("name", DLQ_NAMES + ["__connect.errors", "__connect.errors.sink", "dlq"])
def test_kafka_default_pattern_knows_the_documented_dlq_names(name):
    assert re.search(KafkaConfig().dlq_pattern, name)


@pytest.mark.parametrize("name", DLQ_NAMES + ["orders:dlq", "dlq:orders"])
def test_redis_default_pattern_knows_the_documented_dlq_names(name):
    assert re.search(RedisConfig().dlq_pattern, name)


@pytest.mark.parametrize("name", NOT_DLQ)
def test_default_patterns_leave_ordinary_names_alone(name):
    assert not re.search(KafkaConfig().dlq_pattern, name)
    assert not re.search(RedisConfig().dlq_pattern, name)


def test_listed_names_widen_the_pattern_exactly():
    pattern = dlq_regex(r"\.DLT$", ["errors.sink", "a+b"])
    assert re.search(pattern, "orders.DLT") and re.search(pattern, "errors.sink") and re.search(pattern, "a+b")
    assert not re.search(pattern, "errors.sink.old") and not re.search(pattern, "aab")
    assert dlq_regex(r"\.DLT$", []) == r"\.DLT$"


@pytest.mark.parametrize("dlq, source", [
    ("orders.DLT", "orders"), ("orders-dlt", "orders"), ("orders.dlq", "orders"), ("orders-dlq", "orders"),
    ("orders:dlq", "orders"), ("orders.dead-letter", "orders"), ("dlq.orders", "orders"),
    ("dlq-orders", "orders"), ("dlq:orders", "orders"), ("ORDERS.dlt", "ORDERS"), ("DLQ.orders", "orders"),
    ("dlq.orders.DLT", "orders"),
])
def test_source_topic_from_the_dlq_name(dlq, source):
    assert source_topic_from_name(dlq) == source


@pytest.mark.parametrize("dlq", ["orders", "dlq", ".DLT", "errors.sink", "orders.DLT.old"])
def test_a_name_that_does_not_say_gives_no_source(dlq):
    assert source_topic_from_name(dlq) is None


def test_glob_filter_matches_whole_names_and_empty_means_all():
    f = glob_filter(["orders*", "*.DLT"])
    assert f.match("orders") and f.match("orders-eu") and f.match("payments.DLT")
    assert not f.match("payments") and not f.match("xorders")
    everything = glob_filter([])
    assert everything.match("anything") and glob_filter(None).match("x") and glob_filter([""]).match("y")


# -- what a DLQ row says --------------------------------------------------------------------------
def test_book_counts_reasons_origins_and_the_oldest():
    book = DeadLetterBook()
    book.count("card declined", "payments", T0 + pd.Timedelta(seconds=5))
    book.count("card declined", "payments", T0)
    book.count(None, "refunds", T0 + pd.Timedelta(seconds=9))
    book.count("timeout", None, None)
    assert book.reasons == {"card declined": 2, "unknown": 1, "timeout": 1}
    assert book.source_topics == {"payments": 2, "refunds": 1}
    assert book.oldest_seen == T0
    row = book.row(T0, "kafka", "kafka", "payments.DLT", depth=4, oldest_at=None, unread=9)
    assert row == {"sampled_at": T0, "source": "kafka", "broker": "kafka", "dlq": "payments.DLT",
                   "source_topic": "payments", "depth": 4, "oldest_at": T0,
                   "reasons": json.dumps({"card declined": 2, "unknown": 1, "timeout": 1}),
                   "unread": 4}  # never more unread than held
    assert book.row(T0, "kafka", "kafka", "d", depth=4, oldest_at=T0 - pd.Timedelta(1, "h"))["oldest_at"] \
        == T0 - pd.Timedelta(1, "h")  # the broker's answer wins over the book
    assert book.row(T0, "kafka", "kafka", "d", depth=0, oldest_at=None)["oldest_at"] is None  # empty: no age
    assert book.row(T0, "kafka", "kafka", "d", depth=4, oldest_at=None, unread=2)["unread"] == 2
    assert book.row(T0, "kafka", "kafka", "d", depth=4, oldest_at=None)["unread"] == 0  # all read unless said


def test_book_source_falls_back_to_a_single_declared_topic():
    book = DeadLetterBook()
    assert book.row(T0, "k", "kafka", "d", 1, None, declared=["orders"])["source_topic"] == "orders"
    assert book.row(T0, "k", "kafka", "d", 1, None, declared=["a", "b"])["source_topic"] is None
    assert book.row(T0, "k", "kafka", "d", 1, None)["source_topic"] is None
    book.count("x", "payments", None)
    assert book.row(T0, "k", "kafka", "d", 1, None, declared=["orders"])["source_topic"] == "payments"


def test_book_keeps_the_fifty_most_common_reasons_in_a_row():
    book = DeadLetterBook()
    for i in range(60):
        for _ in range(i + 1):
            book.count(f"reason {i}", None, None)
    reasons = json.loads(book.row(T0, "k", "kafka", "d", 1, None)["reasons"])
    assert len(reasons) == 50 and "reason 59" in reasons and "reason 9" not in reasons


# -- reading state across a restart ---------------------------------------------------------------
def test_offset_keys_order_kafka_offsets_and_redis_ids():
    assert offset_key("kafka", "10") == 10 and offset_key("kafka", "9") < offset_key("kafka", "10")
    assert offset_key("redis", "1700000000000-2") == (1700000000000, 2)
    assert offset_key("redis", "1700000000000") == (1700000000000, 0)
    assert offset_key("redis", "99-10") > offset_key("redis", "99-9")


def _events(rows):
    base = {"topic": "orders", "partition": 0, "dead_letter": False, "dlq_reason": None,
            "original_topic": None, "broker_at": pd.NaT}
    return pd.DataFrame([dict(base, **r) for r in rows])


def test_saved_reading_round_trips_and_moves_past_events_stored_after_the_save():
    book = DeadLetterBook()
    book.count("boom", "orders", T0)
    book.unread_until = {0: "12"}
    book.unread = 3
    saved = pd.DataFrame(reading_rows(T0, "kafka", "kafka", {("orders", 0): "5"}, {"orders.DLT": book}))
    assert set(saved["partition"]) == {0, BOOK_PARTITION}
    events = _events([
        {"offset": "4"},  # read before the save: already in the position
        {"offset": "6"},
        {"offset": "5"},
        {"topic": "orders.DLT", "offset": "0", "dead_letter": True, "dlq_reason": "late", "original_topic": "orders",
         "broker_at": T0 - pd.Timedelta(seconds=1)},
    ])
    positions, books = restore_reading(saved, events, "kafka")
    assert positions == {("orders", 0): "7", ("orders.DLT", 0): "1"}
    restored = books["orders.DLT"]
    assert restored.reasons == {"boom": 1, "late": 1} and restored.source_topics == {"orders": 2}
    assert restored.oldest_seen == T0 - pd.Timedelta(seconds=1)
    assert restored.unread_until == {0: "12"} and restored.unread == 3


def test_redis_positions_are_the_last_id_read():
    saved = pd.DataFrame(reading_rows(T0, "redis", "redis", {("s", 0): "100-0"}, {}))
    events = _events([{"topic": "s", "offset": "100-0"}, {"topic": "s", "offset": "100-1"},
                      {"topic": "s", "offset": "99-5"}])
    positions, books = restore_reading(saved, events, "redis")
    assert positions == {("s", 0): "100-1"} and books == {}
    assert restore_reading(saved, None, "redis") == ({("s", 0): "100-0"}, {})


def test_a_damaged_saved_book_restores_empty_not_crashing():
    saved = pd.DataFrame([{"saved_at": T0, "source": "k", "broker": "kafka", "topic": "d.DLT",
                           "partition": BOOK_PARTITION, "position": None, "reasons": "{not json",
                           "source_topics": None, "oldest_seen": pd.NaT, "unread_until": None,
                           "unread": float("nan")}])
    _, books = restore_reading(saved, None, "kafka")
    book = books["d.DLT"]
    assert not book.reasons and not book.source_topics and book.oldest_seen is None
    assert book.unread_until == {} and book.unread == 0


def test_reading_rows_are_the_reading_state_frame():
    book = DeadLetterBook()
    book.count("boom", "orders", T0)
    rows = reading_rows(T0, "kafka", "kafka", {("orders", 1): 17}, {"orders.DLT": book})
    assert rows[0] == {"saved_at": T0, "source": "kafka", "broker": "kafka", "topic": "orders", "partition": 1,
                       "position": "17"}
    assert rows[1] == {"saved_at": T0, "source": "kafka", "broker": "kafka", "topic": "orders.DLT",
                       "partition": BOOK_PARTITION, "reasons": '{"boom": 1}', "source_topics": '{"orders": 1}',
                       "oldest_seen": T0, "unread_until": None, "unread": 0}


def test_a_saved_book_keeps_its_500_most_frequent_reasons():
    book = DeadLetterBook()
    for i in range(501):
        book.reasons[f"r{i}"] = i + 1
        book.source_topics[f"t{i}"] = i + 1
    row = reading_rows(T0, "kafka", "kafka", {}, {"d": book})[0]
    reasons, topics = json.loads(row["reasons"]), json.loads(row["source_topics"])
    assert len(reasons) == len(topics) == 500 and "r0" not in reasons and "t0" not in topics


def test_restore_keeps_the_saved_oldest_and_counts_dead_letters_at_the_saved_position():
    book = DeadLetterBook()
    book.count("old", "orders", T0 - pd.Timedelta(hours=1))
    saved = pd.DataFrame(reading_rows(T0, "kafka", "kafka", {("orders.DLT", 0): "3"}, {"orders.DLT": book})
                         + [{"saved_at": T0, "source": "kafka", "broker": "kafka", "topic": "orders", "partition": 1,
                             "position": float("nan")}])
    dead = {"topic": "orders.DLT", "dead_letter": True}
    events = _events([
        dict(dead, offset="2", dlq_reason="read before the save"),
        dict(dead, offset="3", dlq_reason=None, broker_at=T0),  # the saved position is the next to read
        # a DLQ with no saved book, its dead letters out of order: both counted
        dict(dead, topic="new.DLT", offset="1", dlq_reason="b", original_topic="payments"),
        dict(dead, topic="new.DLT", offset="0", dlq_reason="a", broker_at=pd.NaT),
    ])
    positions, books = restore_reading(saved, events, "kafka")
    assert positions == {("orders.DLT", 0): "4", ("new.DLT", 0): "2"}  # the NaN position is no position
    assert books["orders.DLT"].reasons == {"old": 1, "unknown": 1}
    assert books["orders.DLT"].source_topics == {"orders": 1}  # no original topic: nothing counted
    assert books["orders.DLT"].oldest_seen == T0 - pd.Timedelta(hours=1)
    assert books["new.DLT"].reasons == {"a": 1, "b": 1} and books["new.DLT"].source_topics == {"payments": 1}
    assert books["new.DLT"].oldest_seen is None  # an unknown time is no time


def test_redis_restore_skips_the_entry_at_the_saved_id():
    saved = pd.DataFrame(reading_rows(T0, "redis", "redis", {("q:dlq", 0): "5-0"}, {"q:dlq": DeadLetterBook()}))
    events = _events([{"topic": "q:dlq", "offset": "5-0", "dead_letter": True, "dlq_reason": "seen"},
                      {"topic": "q:dlq", "offset": "5-1", "dead_letter": True, "dlq_reason": "new"}])
    positions, books = restore_reading(saved, events, "redis")
    assert positions == {("q:dlq", 0): "5-1"} and books["q:dlq"].reasons == {"new": 1}


def _restore_one_by_one(saved_positions: dict, events: pd.DataFrame, broker: str) -> tuple[dict, dict]:
    """The rule, event by event in offset order: an event at or past its partition's saved
    position (Kafka: the next offset to read; Redis: the last ID read) moves the position past
    it, and a dead letter among them is counted once; one stored twice counts once."""
    def order(offset):
        if broker == "redis":
            ms, _, seq = offset.partition("-")
            return int(ms), int(seq or 0)
        return int(offset)
    positions, counted = dict(saved_positions), {}
    for i in sorted(range(len(events)), key=lambda i: order(events["offset"].iat[i])):
        r = events.iloc[i]
        key = (r["topic"], int(r["partition"]))
        if key in positions:
            at, mine = order(r["offset"]), order(positions[key])
            if (at <= mine) if broker == "redis" else (at < mine):
                continue
        positions[key] = r["offset"] if broker == "redis" else str(int(r["offset"]) + 1)
        if r["dead_letter"]:
            counted.setdefault(r["topic"], []).append(r["dlq_reason"])
    return positions, counted


@pytest.mark.parametrize("broker", ["kafka", "redis"])
def test_restoring_many_stored_events_follows_the_rule_event_by_event(broker):
    import random  # noqa: PLC0415 - this test's own data
    rng = random.Random(7)
    topics = [("orders", 0), ("orders", 1), ("pay.DLT", 0), ("pay.DLT", 1), ("ship", 0)]
    saved_positions = {}
    for topic, partition in topics[:4]:  # "ship" has no saved position
        saved_positions[(topic, partition)] = (f"{rng.randrange(1000, 1010)}-{rng.randrange(3)}"
                                               if broker == "redis" else str(rng.randrange(20, 40)))
    rows = []
    for _ in range(3000):
        topic, partition = rng.choice(topics)
        offset = (f"{rng.randrange(995, 1020)}-{rng.randrange(4)}" if broker == "redis"
                  else str(rng.randrange(10, 60)))
        if broker == "redis" and rng.random() < 0.1:
            offset = offset.split("-")[0]  # an ID without its sequence: sequence 0
        dead = topic.endswith(".DLT")
        rows.append({"topic": topic, "partition": partition, "offset": offset, "dead_letter": dead,
                     "dlq_reason": f"reason {rng.randrange(5)}" if dead else None,
                     "original_topic": "orders" if dead else None, "broker_at": T0})
    events = _events(rows)
    saved = pd.DataFrame(reading_rows(T0, broker, broker, saved_positions, {}))
    positions, books = restore_reading(saved, events, broker)
    expected_positions, counted = _restore_one_by_one(saved_positions, events, broker)
    assert positions == expected_positions
    assert {t: dict(b.reasons) for t, b in books.items()} == \
        {t: dict(pd.Series(reasons).value_counts()) for t, reasons in counted.items()}
    assert all(b.source_topics == {"orders": sum(b.reasons.values())} for b in books.values())
    assert 0 < sum(len(r) for r in counted.values()) < 3000  # some moved past, some not
