"""A Redis consumer group's lag row, by example, from the rules (README, "Consumer lag"):

Redis 7 counts a group's lag itself (``XINFO GROUPS``: entries added minus entries read). Its
lag in seconds is the age of the oldest entry the group has not been delivered (the
millisecond part of that entry's ID). A lag of 0 is 0 s behind. When Redis cannot count (a
group made at ``$`` on a stream that had entries deleted) but nothing lies past the group's
last-delivered ID, the group is caught up: 0 and 0 s. Otherwise what is not known stays
unknown (None, NaN), never a made-up number. A Redis stream is one partition, 0; a Redis group
has no state like Kafka's ("n/a"); its members are the consumers active within the stuck
time (0 when none is)."""
import math

import pandas as pd
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from eventscope.collectors.redis.streams import RedisStreamsCollector, entry_ms, entry_time

NOW = pd.Timestamp("2026-11-28T10:00:00Z")


def _row(group: dict, first_unread: dict | None = None, active: dict | None = None, added=40):
    collector = RedisStreamsCollector(redis.Redis(), source="shop")  # never connects here
    name = group["name"]
    return collector._lag_row(NOW, "orders", {"entries-read": 30, "pending": 2, **group}, added,
                              first_unread or {}, active or {}), name


def test_a_group_behind_is_as_many_seconds_behind_as_its_oldest_undelivered_entry_is_old():
    row, _ = _row({"name": "billing", "lag": 10}, {("orders", "billing"): NOW - pd.Timedelta(seconds=12.5)},
                  {("orders", "billing"): 2})
    assert row == {"sampled_at": NOW, "source": "shop", "broker": "shop", "group": "billing", "topic": "orders",
                   "partition": 0, "committed": 30, "end": 40, "lag": 10, "lag_seconds": 12.5,
                   "group_state": "n/a", "members": 2, "pending": 2}


def test_one_entry_behind_is_dated_too():
    row, _ = _row({"name": "billing", "lag": 1}, {("orders", "billing"): NOW - pd.Timedelta(seconds=3)})
    assert (row["lag"], row["lag_seconds"]) == (1, 3.0)


def test_caught_up_is_zero_seconds_whatever_else_is_known():
    row, _ = _row({"name": "billing", "lag": 0}, {("orders", "billing"): NOW - pd.Timedelta(seconds=99)})
    assert (row["lag"], row["lag_seconds"]) == (0, 0.0)


def test_redis_could_not_count_and_nothing_lies_past_the_last_delivered_entry():
    row, _ = _row({"name": "late", "lag": None}, {("orders", "late"): None})
    assert (row["lag"], row["lag_seconds"]) == (0, 0.0)


def test_redis_could_not_count_but_an_entry_waits():
    row, _ = _row({"name": "late", "lag": None}, {("orders", "late"): NOW - pd.Timedelta(seconds=7)})
    assert row["lag"] is None and row["lag_seconds"] == 7.0


@pytest.mark.parametrize("lag", [None, -3])
def test_what_is_not_known_stays_unknown(lag):
    row, _ = _row({"name": "x", "lag": lag})
    assert row["lag"] is None and math.isnan(row["lag_seconds"])


def test_a_known_lag_without_a_dated_entry_has_unknown_seconds():
    row, _ = _row({"name": "x", "lag": 5})
    assert row["lag"] == 5 and math.isnan(row["lag_seconds"])


def test_an_entry_dated_after_now_is_zero_seconds_behind_not_negative():
    row, _ = _row({"name": "x", "lag": 2}, {("orders", "x"): NOW + pd.Timedelta(seconds=4)})
    assert row["lag_seconds"] == 0.0


def test_no_active_consumer_is_zero_members():
    row, _ = _row({"name": "x", "lag": 0}, active={("orders", "other"): 3})
    assert row["members"] == 0


def test_an_entry_id_is_its_milliseconds():
    assert entry_ms("1764324000000-3") == 1764324000000
    assert entry_ms(b"1764324000000-0") == 1764324000000
    assert entry_ms("not-an-id") is None
    assert entry_time("1764324000000-3") == pd.Timestamp("2025-11-28T10:00:00Z")
    assert entry_time("99999999999999999999-0") is None  # set by hand, beyond a timestamp
    assert entry_time("junk") is None


def test_a_failure_is_explained_in_one_line_when_the_settings_can_say_why():
    closed = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1,  # nothing listens on port 1
                         retry=Retry(NoBackoff(), 0))
    told = []
    explained = RedisStreamsCollector(closed, explain=lambda exc: told.append(exc) or "redis: nothing at 127.0.0.1:1")
    with pytest.raises(ConnectionError, match=r"^redis: nothing at 127\.0\.0\.1:1$"):
        explained.collect()
    assert isinstance(told[0], redis.ConnectionError)
    with pytest.raises(redis.ConnectionError):  # nothing to add: the client's own error
        RedisStreamsCollector(closed, explain=lambda exc: None).collect()
