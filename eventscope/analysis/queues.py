"""Lag verdicts for RabbitMQ queues, which have no committed offsets to judge by.

The verdicts of :mod:`eventscope.analysis.lag` watch a committed offset move. A classic or
quorum queue has none: a consumed message is simply gone. What the management API does
give is the backlog (``ready``), the consumers attached and the rates at which messages are
published, delivered and acknowledged (from the API's message counters over the collector's
last 30 s: :class:`eventscope.collectors.rabbitmq.management.RateWindow`). So a
queue is judged on one sample of those (:func:`queue_status`), with the same words:

* ``UNKNOWN`` — the backlog is not known (a stream: readers keep their own offsets), or
  there is a backlog and consumers but no rates to tell whether it moves (statistics off);
* ``OK`` — nothing ready, or messages are delivered at least as fast as they arrive;
* ``STOP`` — messages ready and no consumer (but ``OK`` for a DLQ: nobody need consume its
  dead letters; its depth and growth are judged as a DLQ's);
* ``STALL`` — messages ready, consumers attached, and nothing delivered or acknowledged
  (consumers that hang on unacknowledged messages, or whose prefetch is full);
* ``WARN`` — delivered, but slower than published: the backlog grows;
* ``ERR`` — as WARN, and the head message has waited longer than the window.

:func:`queue_statuses` puts these verdicts on the ``rabbitmq`` rows of a judged lag frame
(the recorder's samples and ``lag_latest``), whose generic verdict would call any backlog
without offsets STALL or STOP.
"""
from __future__ import annotations

import bisect
import math

import pandas as pd


def _num(value) -> float:
    """A frame value as a float; NaN for NA/None."""
    return math.nan if value is None or pd.isna(value) else float(value)


def _flag(value) -> bool:
    return False if value is None or pd.isna(value) else bool(value)


def queue_status(ready, consumers, publish_rate, deliver_rate, ack_rate, lag_seconds,
                 window_s: float = 300.0, is_dlq: bool = False) -> str:
    """The verdict of one RabbitMQ queue from one sample (see the module docstring)."""
    ready, consumers = _num(ready), _num(consumers)
    publish, deliver, ack = _num(publish_rate), _num(deliver_rate), _num(ack_rate)
    if math.isnan(ready):
        return "UNKNOWN"
    if ready == 0:
        return "OK"
    if math.isnan(consumers) or consumers == 0:
        # dead letters are kept for people to look at: their depth and growth are the DLQ's verdict
        return "OK" if is_dlq else "STOP"
    if math.isnan(deliver) and math.isnan(ack):
        return "UNKNOWN"
    flowing = max(0.0 if math.isnan(deliver) else deliver, 0.0 if math.isnan(ack) else ack)
    if flowing == 0:
        return "STALL"
    if not math.isnan(publish) and publish > flowing:
        too_old = not math.isnan(_num(lag_seconds)) and _num(lag_seconds) > window_s
        return "ERR" if too_old else "WARN"
    return "OK"


def queue_statuses(latest: pd.DataFrame, queues: pd.DataFrame, window_s: float = 300.0) -> pd.DataFrame:
    """``latest`` (lag rows with ``status``) with the ``rabbitmq`` rows judged by
    :func:`queue_status`, each from the newest ``queues`` row of its queue sampled at or before
    it (matched by source and lag key: ``vhost/queue``, or the name in ``/``); a row with no
    such queue row is ``UNKNOWN``. Other rows are returned unchanged."""
    if latest.empty or "status" not in latest.columns:
        return latest
    mine = (latest["kind"] == "rabbitmq").to_numpy(dtype=bool, na_value=False)
    if not mine.any():
        return latest
    history: dict[tuple, list] = {}
    if not queues.empty:
        ordered = queues.sort_values("sampled_at", kind="stable")
        keys = [q if v == "/" else f"{v}/{q}" for v, q in zip(ordered["vhost"], ordered["queue"])]
        for source, key, row in zip(ordered["source"], keys, ordered.itertuples(index=False)):
            history.setdefault((source, key), []).append(row)
    statuses = latest["status"].astype(object).to_numpy(copy=True)
    rows = latest[mine]
    for i, source, topic, at, lag, lag_s in zip(mine.nonzero()[0], rows["source"], rows["topic"],
                                                rows["sampled_at"], rows["lag"], rows["lag_seconds"]):
        seen = history.get((source, topic), [])
        # the newest queue row not newer than the lag row (one sample: the same sampled_at)
        at_or_before = bisect.bisect_right([q.sampled_at for q in seen], at)
        if at_or_before == 0:
            statuses[i] = "UNKNOWN"
            continue
        q = seen[at_or_before - 1]
        statuses[i] = queue_status(lag, q.consumers, q.publish_rate, q.deliver_rate, q.ack_rate, lag_s, window_s,
                                   is_dlq=_flag(getattr(q, "is_dlq", False)))
    out = latest.copy()
    out["status"] = pd.Series(statuses, index=out.index, dtype=latest["status"].dtype)
    return out
