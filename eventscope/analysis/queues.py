"""Lag verdicts for RabbitMQ queues, which have no committed offsets to judge by.

The verdicts of :mod:`eventscope.analysis.lag` watch a committed offset move. A classic or
quorum queue has none: a consumed message is simply gone. What the management API does
give is the backlog (``ready``), the consumers attached and the rates at which messages are
published, delivered and acknowledged (averaged by RabbitMQ over its last few seconds). So a
queue is judged on one sample of those (:func:`queue_status`), with the same words:

* ``UNKNOWN`` — the backlog is not known (a stream: readers keep their own offsets), or
  there is a backlog and consumers but no rates to tell whether it moves (statistics off);
* ``OK`` — nothing ready, or messages are delivered at least as fast as they arrive;
* ``STOP`` — messages ready and no consumer;
* ``STALL`` — messages ready, consumers attached, and nothing delivered or acknowledged
  (consumers that hang on unacknowledged messages, or whose prefetch is full);
* ``WARN`` — delivered, but slower than published: the backlog grows;
* ``ERR`` — as WARN, and the head message has waited longer than the window.

:func:`queue_statuses` puts these verdicts on the ``rabbitmq`` rows of a judged lag frame
(``lag_latest``), whose generic verdict would call any backlog without offsets STALL/STOP.
"""
from __future__ import annotations

import math

import pandas as pd


def _num(value) -> float:
    """A frame value as a float; NaN for NA/None."""
    return math.nan if value is None or pd.isna(value) else float(value)


def queue_status(ready, consumers, publish_rate, deliver_rate, ack_rate, lag_seconds,
                 window_s: float = 300.0) -> str:
    """The verdict of one RabbitMQ queue from one sample (see the module docstring)."""
    ready, consumers = _num(ready), _num(consumers)
    publish, deliver, ack = _num(publish_rate), _num(deliver_rate), _num(ack_rate)
    if math.isnan(ready):
        return "UNKNOWN"
    if ready == 0:
        return "OK"
    if math.isnan(consumers) or consumers == 0:
        return "STOP"
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
    :func:`queue_status` from the newest ``queues`` row of each queue; other rows unchanged.
    A queue row is matched by source and its lag key (``vhost/queue``, or the name in ``/``)."""
    if latest.empty or queues.empty or "status" not in latest.columns:
        return latest
    mine = latest["broker"] == "rabbitmq"
    if not mine.any():
        return latest
    newest = queues.sort_values("sampled_at", kind="stable").drop_duplicates(["source", "vhost", "queue"], keep="last")
    keys = [q if v == "/" else f"{v}/{q}" for v, q in zip(newest["vhost"], newest["queue"])]
    by_key = {(s, k): r for s, k, r in zip(newest["source"], keys, newest.itertuples(index=False))}
    out = latest.copy()
    statuses = out["status"].astype(object).to_numpy(copy=True)
    for i in mine.to_numpy().nonzero()[0]:
        row = out.iloc[i]
        q = by_key.get((row["source"], row["topic"]))
        if q is None:
            statuses[i] = "UNKNOWN"
            continue
        statuses[i] = queue_status(row["lag"], q.consumers, q.publish_rate, q.deliver_rate, q.ack_rate,
                                   row["lag_seconds"], window_s)
    out["status"] = pd.Series(statuses, index=out.index, dtype=latest["status"].dtype)
    return out
