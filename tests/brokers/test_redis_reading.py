"""How the Redis collector reads, against the real Redis: a DLQ seen for the first time, a
stream with more news than one sample reads, the events-only reads between full samples, and a
restart from the saved reading state (README, "Dead-letter queues": a DLQ first seen with more than
``dlq_read_max`` entries is read from its newest ``dlq_read_max``; the rest are counted as
unread, not as reasons, until they leave the stream)."""
import json

import pandas as pd
import pytest
import redis

from eventscope import schemas
from eventscope.collectors.redis.streams import RedisStreamsCollector
from eventscope.decode import DecodeConfig, Decoder

pytestmark = pytest.mark.broker


def _dead_letter(i: int) -> dict:
    return {"envelope": json.dumps({"event_type": "PaymentFailed", "event_id": f"evt_{i}",
                                    "correlation_id": f"c-{i}"}),
            "error": f"card declined for order {i}", "original_stream": "payments"}


def test_a_big_dlq_first_seen_is_read_from_its_newest_entries_and_the_rest_counted_unread(redis_client, redis_url):
    ids = [redis_client.xadd("payments.dlq", _dead_letter(i)) for i in range(12)]
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url), dlq_read_max=5)
    out = collector.collect()
    events = out["events"]
    assert sorted(events["offset"]) == sorted(ids[-5:])
    assert events["dead_letter"].all() and set(events["dlq_reason"]) == {"card declined for order #"}
    dlq = out["dlq"].set_index("dlq").loc["payments.dlq"]
    assert (dlq["depth"], dlq["unread"], dlq["source_topic"]) == (12, 7, "payments")
    assert json.loads(dlq["reasons"]) == {"card declined for order #": 5}
    assert dlq["oldest_at"] == pd.Timestamp(int(ids[0].split("-")[0]), unit="ms", tz="UTC")  # the oldest held
    stream = out["topics"].set_index("topic").loc["payments.dlq"]
    assert (stream["partition"], stream["start"], stream["end"]) == (0, 12, 12)
    state = [r for r in collector.reading_state(out["dlq"]["sampled_at"].iloc[0]) if r["topic"] == "payments.dlq"]
    assert {r["partition"] for r in state} == {0, -1}  # its position and its book

    ids.append(redis_client.xadd("payments.dlq", _dead_letter(12)))
    again = collector.collect()
    assert list(again["events"]["offset"]) == [ids[-1]]
    dlq = again["dlq"].set_index("dlq").loc["payments.dlq"]
    assert (dlq["depth"], dlq["unread"]) == (13, 7)  # the old seven are still there, still unread
    assert json.loads(dlq["reasons"]) == {"card declined for order #": 6}

    redis_client.xtrim("payments.dlq", minid=ids[-6], approximate=False)  # the owner trims what nobody read
    dlq = collector.collect()["dlq"].set_index("dlq").loc["payments.dlq"]
    assert (dlq["depth"], dlq["unread"]) == (6, 0)


def test_a_dlq_within_the_first_read_is_read_whole(redis_client, redis_url):
    ids = [redis_client.xadd("payments.dlq", _dead_letter(i)) for i in range(5)]
    out = RedisStreamsCollector(redis.Redis.from_url(redis_url), dlq_read_max=5).collect()
    assert sorted(out["events"]["offset"]) == sorted(ids)
    assert out["dlq"].set_index("dlq").loc["payments.dlq", "unread"] == 0


def test_a_stream_with_more_news_than_a_sample_reads_is_read_over_several_samples(redis_client, redis_url):
    ids = [redis_client.xadd("orders", {"envelope": json.dumps({"event_id": f"e{i}"})}) for i in range(130)]
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url), max_events=100)
    first = collector.collect()["events"]
    second = collector.collect()["events"]
    assert list(first["offset"]) == ids[:100] and list(second["offset"]) == ids[100:]


def test_between_full_samples_only_the_new_entries_of_known_streams_are_read(redis_client, redis_url):
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url))
    with pytest.raises(ConnectionError, match="not been sampled"):
        collector.collect_events()  # nothing asked of Redis yet: not a success
    ids = [redis_client.xadd("orders", {"envelope": json.dumps({"event_id": f"e{i}"})}) for i in range(3)]
    assert list(collector.collect()["events"]["offset"]) == ids
    assert collector.collect_events()["events"].empty  # no news
    ids += [redis_client.xadd("orders", {"envelope": json.dumps({"event_id": f"e{i}"})}) for i in range(3, 5)]
    redis_client.xadd("refunds", {"envelope": "{}"})  # a new stream waits for the next full sample
    events = collector.collect_events()["events"]
    assert list(events["offset"]) == ids[3:] and set(events["topic"]) == {"orders"}
    redis_client.delete("orders")
    assert collector.collect_events()["events"].empty  # deleted since: nothing, no failure


def test_a_new_collector_goes_on_from_the_saved_reading_state(redis_client, redis_url):
    ids = [redis_client.xadd("orders", {"envelope": json.dumps({"event_id": f"e{i}"})}) for i in range(4)]
    first = RedisStreamsCollector(redis.Redis.from_url(redis_url))
    stored = first.collect()["events"]
    saved = pd.DataFrame(first.reading_state(pd.Timestamp.now(tz="UTC")))
    later = redis_client.xadd("orders", {"envelope": json.dumps({"event_id": "e4"})})

    restarted = RedisStreamsCollector(redis.Redis.from_url(redis_url))
    restarted.restore(saved)
    assert list(restarted.collect()["events"]["offset"]) == [later]

    # a store that refused the last events: back to what it holds, and those are read again
    again = RedisStreamsCollector(redis.Redis.from_url(redis_url))
    again.restore(saved)
    again.collect()
    again.rewind(saved, stored.iloc[:0])
    assert list(again.collect()["events"]["offset"]) == [later]
    assert ids == list(stored["offset"])


def test_lag_seconds_members_and_ends_over_three_samples(redis_client, redis_url):
    """Entries written 300, 200 and 100 s ago (their IDs say so); the group was delivered the
    first. Its lag is dated by the oldest entry not delivered, sample after sample, and moves on
    when the group does. Members are the consumers active within the stuck time."""
    import time  # noqa: PLC0415 - this test's own clock
    now_ms = int(time.time() * 1000)
    ids = [redis_client.xadd("orders", {"envelope": "{}"}, id=f"{now_ms - age * 1000}-0") for age in (300, 200, 100)]
    redis_client.xgroup_create("orders", "billing", id="0")
    redis_client.xreadgroup("billing", "worker-1", {"orders": ">"}, count=1)
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url), stuck_idle_s=30)

    def row(out):
        return out["lag"].set_index("group").loc["billing"]
    out = collector.collect()
    first = row(out)
    assert (first["committed"], first["end"], first["lag"], first["members"]) == (1, 3, 2, 1)
    assert 200 <= first["lag_seconds"] < 230  # the entry of 200 s ago, not the first one (300 s)
    assert out["topics"].set_index("topic").loc["orders", "end"] == 3
    consumers = out["consumers"].drop(columns=["sampled_at", "idle_ms"]).to_dict("records")
    assert consumers == [{"source": "redis", "broker": "redis", "kind": "redis", "group": "billing",
                          "topic": "orders", "consumer": "worker-1", "member_id": None, "host": "",
                          "assignment": "", "pending": 1}]
    assert out["events"]["observed_at"].notna().all()

    time.sleep(0.3)
    second = row(collector.collect())  # the group has not moved: the same entry, older now
    assert second["lag"] == 2 and first["lag_seconds"] + 0.2 < second["lag_seconds"] < first["lag_seconds"] + 30

    redis_client.xreadgroup("billing", "worker-2", {"orders": ">"}, count=1)  # a second consumer, one more entry
    third = row(collector.collect())
    assert (third["lag"], third["members"]) == (1, 2)
    assert 100 <= third["lag_seconds"] < 130  # now the entry of 100 s ago

    idle = RedisStreamsCollector(redis.Redis.from_url(redis_url), stuck_idle_s=0.05)
    time.sleep(0.2)  # both consumers idle past the stuck time: no member
    assert row(idle.collect())["members"] == 0
    assert ids[0] < ids[2]


def test_streams_named_in_the_config_are_the_only_ones_watched(redis_client, redis_url):
    redis_client.xadd("orders", {"envelope": "{}"})
    redis_client.xadd("audit", {"envelope": "{}"})
    out = RedisStreamsCollector(redis.Redis.from_url(redis_url), streams=["orders"]).collect()
    assert set(out["topics"]["topic"]) == {"orders"} and set(out["events"]["topic"]) == {"orders"}


def test_a_long_stream_first_seen_is_read_from_its_backlog_newest_entries(redis_client, redis_url):
    """A stream (not a DLQ) seen for the first time with more than ``backlog`` entries: its
    newest ``backlog`` are read, oldest first, then only what comes after them."""
    ids = [redis_client.xadd("orders", {"envelope": json.dumps({"event_id": f"e{i}"})}) for i in range(30)]
    redis_client.xadd("refunds", {"envelope": "{}"})
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url), backlog=10)
    events = collector.collect()["events"]
    orders = events[events["topic"] == "orders"]
    assert list(orders["offset"]) == ids[-10:]
    assert len(events[events["topic"] == "refunds"]) == 1  # within the backlog: read whole
    ids.append(redis_client.xadd("orders", {"envelope": "{}"}))
    assert list(collector.collect()["events"]["offset"]) == ids[-1:]
    # exactly as long as the backlog: read whole, from its oldest entry
    whole = RedisStreamsCollector(redis.Redis.from_url(redis_url), backlog=31, streams=["orders"]).collect()
    assert list(whole["events"]["offset"]) == ids


def test_a_stream_first_seen_with_a_lookback_is_read_from_that_long_ago(redis_client, redis_url):
    """``lookback_s``: a stream seen for the first time is read from the entries of the last
    ``lookback_s`` seconds (entry IDs are times), whatever its length."""
    import time  # noqa: PLC0415 - this test's own clock
    now_ms = int(time.time() * 1000)
    ids = [redis_client.xadd("orders", {"envelope": "{}"}, id=f"{now_ms - age * 1000}-0")
           for age in (7200, 5400, 1800, 600, 5)]
    events = RedisStreamsCollector(redis.Redis.from_url(redis_url), lookback_s=3600).collect()["events"]
    assert list(events["offset"]) == ids[2:]  # 30 min, 10 min and 5 s ago; not 2 h or 1.5 h
    late = RedisStreamsCollector(redis.Redis.from_url(redis_url), lookback_s=60).collect()["events"]
    assert list(late["offset"]) == ids[-1:]


def test_every_dlq_stream_has_its_row_an_empty_one_too(redis_client, redis_url):
    """A DLQ stream is in the ``dlq`` frame as soon as it exists, emptied or never read, with
    the sample's time and the collector's own source and cluster names."""
    redis_client.xadd("payments.dlq", _dead_letter(1))
    gone = redis_client.xadd("refunds.dlq", _dead_letter(2))
    redis_client.xdel("refunds.dlq", gone)  # emptied by its owner: the stream stays, with 0 entries
    out = RedisStreamsCollector(redis.Redis.from_url(redis_url), source="prod-cache").collect()
    dlq = out["dlq"].set_index("dlq")
    assert sorted(dlq.index) == ["payments.dlq", "refunds.dlq"]
    assert (dlq.loc["refunds.dlq", "depth"], dlq.loc["refunds.dlq", "unread"]) == (0, 0)
    assert pd.isna(dlq.loc["refunds.dlq", "oldest_at"]) and json.loads(dlq.loc["refunds.dlq", "reasons"]) == {}
    assert set(dlq["source"]) == {"prod-cache"} and set(dlq["broker"]) == {"prod-cache"}
    assert dlq["sampled_at"].notna().all() and dlq["sampled_at"].nunique() == 1
    assert dlq["sampled_at"].iloc[0] == out["topics"]["sampled_at"].iloc[0]


class _DeletesBetweenPipelines(redis.Redis):
    """A real client whose second pipeline of a sample (the reads) runs just after ``victim``
    is deleted: a stream going away mid-sample, as a stream per job or per tenant does."""

    victim = ""
    pipelines = 0

    def pipeline(self, transaction=True, shard_hint=None):
        pipe = super().pipeline(transaction, shard_hint)
        self.pipelines += 1
        if self.pipelines == 2:
            execute = pipe.execute

            def deleted_first(raise_on_error=True):
                redis.Redis(connection_pool=self.connection_pool).delete(self.victim)
                return execute(raise_on_error=raise_on_error)
            pipe.execute = deleted_first
        return pipe


def test_a_stream_deleted_mid_sample_leaves_the_others_whole(redis_client, redis_url):
    for key in ("a-jobs", "b-orders"):
        for i in range(3):
            redis_client.xadd(key, {"envelope": json.dumps({"event_id": f"{key}-{i}"})})
        redis_client.xgroup_create(key, "workers", id="0")
        redis_client.xreadgroup("workers", "w1", {key: ">"}, count=1)  # a consumer, one pending entry
    client = _DeletesBetweenPipelines.from_url(redis_url)
    client.victim = "a-jobs"  # listed first: its replies come before b-orders' ones
    out = RedisStreamsCollector(client, stuck_min_deliveries=1).collect()
    lag = out["lag"].set_index("topic")
    assert lag.loc["b-orders", "lag"] == 2 and pd.notna(lag.loc["b-orders", "lag_seconds"])
    assert list(out["consumers"]["topic"]) == ["b-orders"]  # a-jobs' consumers: gone with it
    assert list(out["stuck"]["topic"]) == ["b-orders"]
    assert set(out["events"]["topic"]) == {"b-orders"} and len(out["events"]) == 3


def test_a_sampled_redis_without_streams_has_nothing_to_read_between_samples(redis_client, redis_url):
    """After a full sample of a Redis that holds no stream, the event reader succeeds with an
    empty ``events`` frame (only before any full sample is there nothing to report)."""
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url))
    assert collector.collect()["topics"].empty
    out = collector.collect_events()
    assert list(out) == ["events"] and out["events"].empty
    assert list(out["events"].columns) == list(schemas.SCHEMAS["events"])


def test_events_read_between_samples_are_dated_named_and_counted_in_their_dlq_book(redis_client, redis_url):
    redis_client.xadd("payments.dlq", _dead_letter(0))
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url), source="prod-cache")
    collector.collect()
    ids = [redis_client.xadd("payments.dlq", _dead_letter(i)) for i in (1, 2)]
    events = collector.collect_events()["events"]
    assert list(events["offset"]) == ids and (events["partition"] == 0).all()
    assert events["observed_at"].notna().all() and set(events["source"]) == {"prod-cache"}
    assert set(events["broker"]) == {"prod-cache"} and events["dead_letter"].all()
    dlq = collector.collect()["dlq"].set_index("dlq").loc["payments.dlq"]
    assert json.loads(dlq["reasons"]) == {"card declined for order #": 3}  # the reader's two counted too


def test_the_reader_between_samples_keeps_to_the_budget(redis_client, redis_url):
    redis_client.xadd("orders", {"envelope": "{}"})
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url), max_events=100)
    collector.collect()
    ids = [redis_client.xadd("orders", {"envelope": json.dumps({"event_id": f"e{i}"})}) for i in range(130)]
    assert list(collector.collect_events()["events"]["offset"]) == ids[:100]
    assert list(collector.collect_events()["events"]["offset"]) == ids[100:]


def test_a_stream_replaced_by_another_type_between_samples_is_skipped_not_fatal(redis_client, redis_url):
    for key in ("orders", "refunds"):
        redis_client.xadd(key, {"envelope": "{}"})
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url))
    collector.collect()
    redis_client.delete("orders")
    redis_client.set("orders", "not a stream any more")  # XRANGE now answers WRONGTYPE
    new = redis_client.xadd("refunds", {"envelope": "{}"})
    assert list(collector.collect_events()["events"]["offset"]) == [new]


def test_a_restart_goes_past_the_events_stored_after_the_saved_state(redis_client, redis_url):
    """The saved position says 5-8; the store also holds 5-9 and 5-10 (read and stored, the
    position not saved yet). A restart goes on after 5-10: entry IDs order by their numbers,
    not as text ("5-10" < "5-9")."""
    for seq in range(1, 9):
        redis_client.xadd("orders", {"envelope": "{}"}, id=f"5-{seq}")
    first = RedisStreamsCollector(redis.Redis.from_url(redis_url))
    first.collect()
    saved = pd.DataFrame(first.reading_state(pd.Timestamp.now(tz="UTC")))
    for seq in (9, 10):
        redis_client.xadd("orders", {"envelope": "{}"}, id=f"5-{seq}")
    stored = first.collect()["events"]
    assert list(stored["offset"]) == ["5-9", "5-10"]
    later = redis_client.xadd("orders", {"envelope": "{}"}, id="6-0")
    restarted = RedisStreamsCollector(redis.Redis.from_url(redis_url))
    restarted.restore(saved, stored)
    assert list(restarted.collect()["events"]["offset"]) == [later]
    rewound = RedisStreamsCollector(redis.Redis.from_url(redis_url))
    rewound.collect()
    rewound.rewind(saved, stored)  # a failed store: back to what the store holds
    assert list(rewound.collect()["events"]["offset"]) == [later]


def test_the_reading_state_names_its_collector_and_time(redis_client, redis_url):
    redis_client.xadd("orders", {"envelope": "{}"}, id="7-1")
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url), source="prod-cache")
    collector.collect()
    at = pd.Timestamp("2026-12-01T10:00:00Z")
    rows = collector.reading_state(at)
    assert [(r["saved_at"], r["source"], r["broker"], r["topic"], r["partition"], r["position"]) for r in rows] == [
        (at, "prod-cache", "prod-cache", "orders", 0, "7-1")]


def test_a_big_dlq_written_within_one_millisecond_counts_its_unread_entries(redis_client, redis_url):
    """Twelve dead letters of the same millisecond (IDs 1000-1 ... 1000-12): the seven before
    the first read's start are unread, ordered by their sequence numbers."""
    for seq in range(1, 13):
        redis_client.xadd("payments.dlq", _dead_letter(seq), id=f"1000-{seq}")
    out = RedisStreamsCollector(redis.Redis.from_url(redis_url), dlq_read_max=5).collect()
    assert list(out["events"]["offset"]) == [f"1000-{seq}" for seq in range(8, 13)]
    assert out["dlq"].set_index("dlq").loc["payments.dlq", "unread"] == 7


def test_a_group_whose_name_is_not_utf8_is_shown_and_sampled(redis_client, redis_url):
    redis_client.xadd("orders", {"envelope": "{}"})
    redis_client.xgroup_create("orders", b"billing-\xff", id="0")
    lag = RedisStreamsCollector(redis.Redis.from_url(redis_url)).collect()["lag"]
    assert list(lag["group"]) == ["billing-\ufffd"] and list(lag["lag"]) == [1]


def test_a_key_that_is_not_utf8_is_reached_sample_after_sample(redis_client, redis_url):
    odd = b"orders-\xff"
    redis_client.xadd(odd, {"envelope": "{}"})
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url))
    assert list(collector.collect()["topics"]["topic"]) == ["orders-\\xff"]
    new = redis_client.xadd(odd, {"envelope": "{}"})
    again = collector.collect()
    assert list(again["topics"]["topic"]) == ["orders-\\xff"] and list(again["events"]["offset"]) == [new]
    between = redis_client.xadd(odd, {"envelope": "{}"})
    assert list(collector.collect_events()["events"]["offset"]) == [between]  # and between samples


def test_the_collector_reads_with_the_decoder_size_and_share_it_was_given(redis_client, redis_url):
    """``decoder``, ``payload_max_chars``, ``sample_ratio`` (from the config) reach the events."""
    for i in range(40):
        redis_client.xadd("orders", {"envelope": json.dumps({"orderRef": f"ref-{i}", "note": "x" * 300})})
    decoder = Decoder(DecodeConfig(correlation_id=["orderRef"]))
    whole = RedisStreamsCollector(redis.Redis.from_url(redis_url), decoder=decoder, payload_max_chars=100,
                                  source="a").collect()["events"]
    assert list(whole["correlation_id"]) == [f"ref-{i}" for i in range(40)]
    assert (whole["payload"].fillna("") == "").all()  # larger than 100 characters: not kept whole
    half = RedisStreamsCollector(redis.Redis.from_url(redis_url), decoder=decoder, sample_ratio=0.5,
                                 source="b").collect()["events"]
    assert 0 < len(half) < 40 and set(half["correlation_id"]) < set(whole["correlation_id"])
    assert half["payload"].str.contains('"orderRef"').all()  # the default size holds it whole


def test_a_dlq_without_source_fields_is_traced_to_the_stream_that_held_its_bytes(redis_client, redis_url):
    """A DLQ (here by a configured pattern) whose name and fields do not say where its entries
    came from: an entry's bytes, seen before on a watched stream, do."""
    body = json.dumps({"event_type": "OrderPlaced", "event_id": "evt-1", "correlation_id": "c-1"})
    redis_client.xadd("orders", {"envelope": body})
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url), dlq_pattern=r"^graveyard$")
    collector.collect()
    redis_client.xadd("graveyard", {"envelope": body})
    dlq = collector.collect()["dlq"].set_index("dlq")
    assert dlq.loc["graveyard", "source_topic"] == "orders"


def test_a_big_dlq_s_oldest_entry_is_the_oldest_it_holds_not_the_oldest_read(redis_client, redis_url):
    for second in range(1, 7):
        redis_client.xadd("payments.dlq", _dead_letter(second), id=f"{second * 1000}-0")
    out = RedisStreamsCollector(redis.Redis.from_url(redis_url), dlq_read_max=2).collect()
    dlq = out["dlq"].set_index("dlq").loc["payments.dlq"]
    assert list(out["events"]["offset"]) == ["5000-0", "6000-0"] and dlq["unread"] == 4
    assert dlq["oldest_at"] == pd.Timestamp(1000, unit="ms", tz="UTC")


def test_a_dlq_first_read_of_one_entry_reads_one(redis_client, redis_url):
    for i in range(3):
        redis_client.xadd("payments.dlq", _dead_letter(i), id=f"{i + 1}-0")
    out = RedisStreamsCollector(redis.Redis.from_url(redis_url), dlq_read_max=1).collect()
    assert list(out["events"]["offset"]) == ["3-0"]
    assert out["dlq"].set_index("dlq").loc["payments.dlq", "unread"] == 2


def test_streams_that_stay_busy_take_turns_within_the_budget(redis_client, redis_url):
    """Three streams that get 50 new entries before every sample, a budget of 60 a sample
    (one stream's 50 at most): each sample reads one stream, and they take turns, so none
    waits for the others to go quiet."""
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url), max_events=60)
    read = []
    for _ in range(6):
        for key in ("a", "b", "c"):
            for i in range(50):
                redis_client.xadd(key, {"envelope": "{}"})
        events = collector.collect()["events"]
        assert len(events) == 50
        read.append(events["topic"].unique().tolist())
    assert [r[0] for r in read[:3]] == ["a", "b", "c"] and read[3:] == read[:3]


def test_a_sample_reads_the_streams_with_news_not_all_of_them(redis_client, redis_url):
    """Ten quiet streams and one with 100 new entries, a budget of 100: the sample spends it
    on the one with news."""
    for s in range(10):
        redis_client.xadd(f"quiet:{s}", {"envelope": "{}"})
    redis_client.xadd("busy", {"envelope": "{}"})
    collector = RedisStreamsCollector(redis.Redis.from_url(redis_url), max_events=100)
    while not collector.collect()["events"].empty:
        pass  # two streams a sample until each has been read
    ids = [redis_client.xadd("busy", {"envelope": "{}"}) for _ in range(100)]
    assert list(collector.collect()["events"]["offset"]) == ids
