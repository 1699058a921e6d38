"""RabbitMQ on the dashboard's pages: a queue's numbers in the Lag page's group detail, and
what a RabbitMQ DLQ can and cannot show in the Dead letters page's queue detail.

A RabbitMQ queue is one "group" of the lag table (group and topic: the queue, ``vhost/name``
outside ``/``); its numbers come from the newest ``queues`` sample (``queues_latest``).
The pure parts (:func:`queue_for`, :func:`queue_facts`, :func:`verdict_reason`,
:func:`dlq_notice_text`) take frames and rows and return text; :func:`queue_detail` and
:func:`dlq_notice` draw them with Streamlit. Queue names come from the broker: they only
reach the page through :func:`eventscope.ui.format.md` (Markdown-escaped) or ``st.metric``.
"""
from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from eventscope.ui.format import md
from eventscope.ui.session import queries

UNSEEN = ("RabbitMQ shows no message of a queue without taking it off the queue, and eventscope "
          "never consumes: there are no events, payloads or traces from RabbitMQ queues.")


def _num(value) -> float:
    return math.nan if value is None or pd.isna(value) else float(value)


def _flag(value) -> bool:
    return False if value is None or pd.isna(value) else bool(value)


def queue_key(vhost, queue) -> str:
    """The lag and DLQ rows' name of a queue: its name in ``/``, else ``vhost/name``."""
    return str(queue) if vhost == "/" else f"{vhost}/{queue}"


def queue_for(queues: pd.DataFrame, broker: str, key: str) -> dict | None:
    """The newest ``queues`` row of the queue named ``key`` (a lag group or DLQ name) on
    ``broker``, as a dict; None when ``broker`` has no such RabbitMQ queue."""
    if queues is None or queues.empty:
        return None
    mine = queues[(queues["broker"].astype(str) == str(broker)).to_numpy(dtype=bool, na_value=False)]
    keys = [queue_key(v, q) for v, q in zip(mine["vhost"], mine["queue"])]
    found = mine[[k == key for k in keys]]
    if found.empty:
        return None
    return found.sort_values("sampled_at", kind="stable").iloc[-1].to_dict()


def _rate(value) -> str:
    value = _num(value)
    return "—" if math.isnan(value) else f"{value:.2f}/s"


def queue_facts(q: dict) -> dict[str, str]:
    """Label -> shown value of a queue's numbers (— where RabbitMQ does not report one)."""
    def count(name):
        value = _num(q.get(name))
        return "—" if math.isnan(value) else f"{int(value):,}"
    utilisation = _num(q.get("consumer_utilisation"))
    return {"Ready": count("ready"), "Unacked": count("unacked"), "Consumers": count("consumers"),
            "Consumer utilisation": "—" if math.isnan(utilisation) else f"{utilisation:.0%}",
            "Publish": _rate(q.get("publish_rate")), "Deliver": _rate(q.get("deliver_rate")),
            "Ack": _rate(q.get("ack_rate"))}


def verdict_reason(q: dict, status: str) -> str:
    """Why a queue has its verdict (:func:`eventscope.analysis.queues.queue_status`), in words."""
    if q.get("type") == "stream":
        return ("UNKNOWN: a stream keeps its messages for every reader, and each reader's offset is "
                "its own: the management API shows none, so its lag is unknown.")
    ready, consumers = _num(q.get("ready")), _num(q.get("consumers"))
    reasons = {
        "OK": ("OK: nothing is ready for a consumer." if ready == 0 else
               "OK: a DLQ with nobody consuming it; its depth and growth are judged on the Dead letters page."
               if _flag(q.get("is_dlq")) and (math.isnan(consumers) or consumers == 0) else
               "OK: messages are delivered at least as fast as they are published."),
        "STOP": "STOP: messages are ready and no consumer is attached.",
        "STALL": ("STALL: consumers are attached but nothing is delivered or acknowledged "
                  "(a hung consumer, or a prefetch full of unacknowledged messages)."),
        "WARN": "WARN: messages are delivered more slowly than they are published: the backlog grows.",
        "ERR": "ERR: the backlog grows and the head message has waited longer than the window.",
        "UNKNOWN": ("UNKNOWN: a backlog with consumers, but no rates to tell whether it moves "
                    "(message statistics are off, or not sampled yet)."),
    }
    return reasons.get(status, f"{status}.")


def dlq_notice_text(q: dict | None, kind: str | None) -> tuple[str, str] | None:
    """(level, text) of what the Dead letters page says about a RabbitMQ DLQ's messages and
    reasons (level ``warning`` or ``info``); None for a DLQ of another broker."""
    if kind != "rabbitmq" and q is None:
        return None
    if q is not None and q.get("type") == "stream":
        return ("info", "A stream DLQ: its dead letters are read from an offset, which removes nothing, "
                        "and each one's `x-death` reason (rejected, expired, maxlen, delivery_limit) is "
                        "counted below. Payloads are not kept. It needs the collector's `amqp_address` "
                        "and `read` permission on this stream; without them the reasons stay unknown.")
    queue_type = (q or {}).get("type") or "classic"
    return ("warning", f"A {queue_type} queue: RabbitMQ shows none of its messages, nor their reasons "
                       "(`x-death`), without taking them off the queue, and eventscope never consumes. "
                       "Its depth, growth and age are known; what failed is not: every message it holds "
                       "counts as not in reasons. To see reasons, also dead-letter into a stream "
                       "(`x-queue-type: stream`) bound to the same exchange.")


# -- drawing (Streamlit) -------------------------------------------------------------------
def _queues() -> pd.DataFrame:
    q = queries()
    return q.cached("queues_latest", ("queues_latest",), (), lambda: q.store.get("queues_latest"))


def queue_detail(broker: str, group: str, status: str | None = None) -> bool:
    """Draw a RabbitMQ queue's numbers and its verdict's reason under the Lag page's group
    header; False (nothing drawn) when ``group`` is not a RabbitMQ queue of ``broker``."""
    q = queue_for(_queues(), broker, group)
    if q is None:
        return False
    facts = queue_facts(q)
    st.markdown(f"RabbitMQ **{md(q.get('type') or 'classic')}** queue **{md(q.get('queue'))}** "
                f"in vhost **{md(q.get('vhost'))}** · state {md(q.get('state') or '—')}"
                + (" · a dead-letter queue" if _flag(q.get("is_dlq")) else ""))
    columns = st.columns(len(facts))
    helps = {"Ready": "messages waiting for a consumer (the lag)",
             "Unacked": "delivered to a consumer, not acknowledged yet",
             "Consumer utilisation": "share of time the queue could deliver to its consumers at once",
             "Publish": "messages published into the queue, per second (last 30 s)",
             "Deliver": "messages delivered to consumers, per second (last 30 s)",
             "Ack": "messages acknowledged, per second (last 30 s)"}
    for column, (label, value) in zip(columns, facts.items()):
        column.metric(label, value, help=helps.get(label))
    if status:
        st.caption(verdict_reason(q, status))
    st.caption(UNSEEN + " Behind = the head message's age from its `timestamp` property, where the "
               "publisher set it (classic queues), else unknown.")
    return True


def dlq_notice(broker: str, dlq: str, kind: str | None = None) -> bool:
    """Draw what a RabbitMQ DLQ's messages and reasons can show; False (nothing drawn) for a
    DLQ of another broker."""
    notice = dlq_notice_text(queue_for(_queues(), broker, dlq), kind)
    if notice is None:
        return False
    level, text = notice
    (st.warning if level == "warning" else st.info)(text, icon=":material/visibility_off:"
                                                    if level == "warning" else ":material/info:")
    return True
