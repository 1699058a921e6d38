"""Dead letters: every DLQ with depth, growth, oldest message, source topic and reasons.

The overview table lists every dead-letter queue (filling ones first, empty ones last or
hidden), with a sparkline of its depth over the hour. One DLQ in detail: headline
numbers, reasons per minute, the reasons' shares and the newest messages with their
metadata, the masked payload preview, optionally the headers, and a link to the trace
lookup of each message's correlation ID. Broker-provided text only ever reaches the
page through ``st.dataframe``, chart data, widget options or :func:`fmt.md`; never as HTML.
"""
from __future__ import annotations

from urllib.parse import quote

import pandas as pd
import streamlit as st

from eventscope import queues_view
from eventscope.ui import data, format as fmt, session, widgets

cfg = session.config()
st.title("Dead letters")

TABLE_CONFIG = {
    "broker": st.column_config.TextColumn("cluster", width="small", help="the cluster's configured name"),
    "kind": st.column_config.TextColumn("kind", width="small", help="kafka, redis or rabbitmq"),
    "dlq": st.column_config.TextColumn("dead-letter queue"),
    "source_topic": st.column_config.TextColumn("failures from",
                                                help="topic the dead letters came from"),
    "depth": st.column_config.NumberColumn("depth", format="%d", width="small",
                                           help="messages held now"),
    "growth_per_min": st.column_config.NumberColumn("growth/min", format="%+.1f", width="small",
                                                    help="change in depth per minute, last 5 min"),
    "history": st.column_config.LineChartColumn("depth, last hour", y_min=0, width="small",
                                                help="depth at the end of each minute"),
    "oldest": st.column_config.TextColumn("oldest", width="small",
                                          help="age of the oldest message held"),
    "reasons": st.column_config.TextColumn("top reasons", width="medium",
                                           help="exception class and message, most frequent first"),
    "unread": st.column_config.NumberColumn(
        "not in reasons", format="%d", width="small",
        help="messages held older than where eventscope started reading this queue (see `dlq_read_max`)"),
    "unprocessed": st.column_config.NumberColumn(
        "unprocessed", format="%d", width="small",
        help="messages a reprocessing group consuming this DLQ has not processed yet; "
             "empty when no group consumes it"),
    "pre_dlq_pressure": st.column_config.NumberColumn(
        "pre-DLQ", format="%d", width="small",
        help="Redis: stuck pending entries in the source stream (retries in progress that "
             "may end up here)"),
}
MESSAGE_CONFIG = {
    "at": st.column_config.DatetimeColumn("dead-lettered (UTC)", format="HH:mm:ss"),
    "trace": st.column_config.LinkColumn("trace", display_text="open trace ↗", width="small",
                                         help="the trace lookup for this correlation ID"),
    "partition": st.column_config.NumberColumn("part.", format="%d", width="small"),
    "offset": st.column_config.TextColumn("offset / entry ID", width="small"),
    "event_type": "event type",
    "correlation_id": "correlation ID",
    "reason": st.column_config.TextColumn("reason", width="medium"),
    "dlq_class": st.column_config.TextColumn("exception", width="medium"),
    "original_topic": st.column_config.TextColumn("original message", width="medium",
                                                  help="topic (and partition and offset, when the DLQ "
                                                       "publisher names them) of the message that failed"),
    "size_bytes": st.column_config.NumberColumn("bytes", format="%d", width="small"),
    "decode_error": "decode error",
    "preview": st.column_config.TextColumn("payload (masked)", width="large",
                                           help="first ~300 characters; e-mails, card numbers "
                                                "and personal fields masked"),
    "headers": st.column_config.TextColumn("headers (JSON)", width="large"),
}


def _reasons(reasons: list[dict]) -> str:
    """Top reasons as one line: ``timeout ×12, bad schema ×3``."""
    if not reasons:
        return ""
    top = [f"{r['reason']} ×{r['count']}" for r in reasons[:3]]
    more = f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else ""
    return ", ".join(top) + more


def _label(row) -> str:
    return widgets.link_label(row["dlq"], row["broker"])


def _pick(key: str, table: pd.DataFrame) -> None:
    """A click on an overview row opens that DLQ below."""
    rows = st.session_state[key].selection.rows
    if rows and rows[0] < len(table):
        st.session_state["dlq_pick"] = _label(table.iloc[rows[0]])


def _overview(table: pd.DataFrame) -> pd.DataFrame:
    """The DLQ table (empty queues last, or hidden); returns the rows it shows."""
    empty = int(table["empty"].sum())
    hide = False
    if empty:
        hide = st.toggle(f"Hide the {empty} empty queue(s)", key="dlq_hide_empty",
                         help="queues that held no message in the last hour")
    shown = table[~table["empty"]] if hide else table
    shown = shown.assign(reasons=shown["reasons"].map(_reasons)).reset_index(drop=True)
    view = shown.drop(columns=["empty", "oldest_age_seconds"]
                      + (["unread"] if "unread" in shown and not shown["unread"].any() else []))
    st.dataframe(view, hide_index=True, placeholder="—", key="dlq_table",
                 height=min(38 + 35 * max(len(view), 1), 460), column_config=TABLE_CONFIG,
                 on_select=lambda: _pick("dlq_table", shown), selection_mode="single-row")
    filling = len(table) - empty
    st.caption(f"{filling} queue(s) holding or receiving dead letters"
               + (f"; {empty} empty one(s) {'hidden' if hide else 'listed last'}" if empty else "")
               + " · click a row to open it below.")
    growing = table[table["growth_per_min"] > 0]
    if not growing.empty:
        st.warning(f"{len(growing)} dead-letter queue(s) growing right now: "
                   + ", ".join(f"{fmt.md(n)} ({fmt.md(b)})" for n, b in zip(growing["dlq"].head(5), growing["broker"])),
                   icon=":material/trending_up:")
    return shown


def _original(topic, partition, offset) -> str | None:
    """Where the original message was: ``orders · partition 2 · offset 1041`` when the DLQ
    publisher said (Spring, Kafka Connect), else its topic."""
    if topic is None or pd.isna(topic):
        return None
    if offset is None or pd.isna(offset):
        return str(topic)
    return f"{topic} · partition {int(partition) if pd.notna(partition) else '?'} · offset {int(offset)}"


def _trace_link(cid) -> str | None:
    if cid is None or pd.isna(cid) or not str(cid).strip():
        return None
    return "/traces?id=" + quote(str(cid).strip(), safe="")


def _drilldown(table: pd.DataFrame) -> None:
    st.subheader("Queue detail", divider="gray")
    labels = {_label(r): (r["broker"], r["dlq"]) for _, r in table.iterrows()}
    widgets.open_from_link("dlq", "dlq_pick", labels)
    choice = st.selectbox("Dead-letter queue", list(labels), key="dlq_pick",
                          help="fullest first; empty queues last")
    broker, dlq = labels.get(choice, next(iter(labels.values())))
    row = table[(table["broker"] == broker) & (table["dlq"] == dlq)].iloc[0]

    source = row["source_topic"] if pd.notna(row["source_topic"]) else "an unknown topic"
    st.markdown(f"**{fmt.md(dlq)}** on cluster **{fmt.md(fmt.cluster(broker, row['kind']))}** · "
                f"failures from **{fmt.md(source)}**")
    stats = st.columns(5)
    stats[0].metric("Depth", fmt.number(row["depth"]), help="messages held now")
    stats[1].metric("Growth / min", f"{row['growth_per_min']:+.1f}"
                    if pd.notna(row["growth_per_min"]) else "—", help="last 5 minutes")
    stats[2].metric("Oldest", row["oldest"], help="age of the oldest message held")
    stats[3].metric("Unprocessed", fmt.number(row["unprocessed"]),
                    help="not yet processed by a group consuming this DLQ; — when none does")
    stats[4].metric("Pre-DLQ pressure", fmt.number(row["pre_dlq_pressure"]),
                    help="Redis stuck pending entries in the source stream")

    reasons = pd.DataFrame(row["reasons"], columns=["reason", "count"])
    over_time = data.dlq_reasons_over_time(broker, dlq)
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**Reasons over time** (dead letters per minute)")
        if over_time.empty:
            st.caption("No dead-lettered message of this queue was read in the last hour.")
        else:
            st.bar_chart(over_time, x="minute", y="count", color="reason", stack=True, height=260,
                         x_label="time (UTC)", y_label="dead letters")
    with right:
        st.markdown("**Depth over the last hour** (messages held, per minute)")
        history = pd.DataFrame({"minute": range(1 - len(row["history"]), 1),
                                "depth": row["history"]})
        if history.empty:
            st.caption("No depth samples yet.")
        else:
            st.area_chart(history, x="minute", y="depth", height=260,
                          x_label="minutes (0 = now)", y_label="messages held")

    st.markdown("**Reasons** (over the messages seen, most frequent first)")
    if not queues_view.dlq_notice(broker, dlq, row.get("kind")) and row.get("unread", 0):  # RabbitMQ: its own
        counted = int(reasons["count"].sum()) if not reasons.empty else 0
        st.warning(f"These reasons cover part of the queue: {row['unread']:,} of the {int(row['depth']):,} "
                   f"messages it holds are older than where eventscope started reading it "
                   f"({counted:,} counted). A queue seen for the first time is read from its oldest "
                   f"message up to `dlq_read_max` messages (kafka/redis settings).",
                   icon=":material/rule:")
    if reasons.empty:
        st.caption("No reason recorded.")
    else:
        reasons["share"] = reasons["count"] / max(int(reasons["count"].sum()), 1)
        st.dataframe(reasons, hide_index=True, key="dlq_reasons", placeholder="—",
                     height=min(38 + 35 * len(reasons), 250), column_config={
                         "reason": st.column_config.TextColumn("reason", width="large"),
                         "count": st.column_config.NumberColumn("count", format="%d", width="small"),
                         "share": st.column_config.ProgressColumn(
                             "share", format="percent", min_value=0.0, max_value=1.0,
                             width="medium")})

    _messages(broker, dlq)


def _messages(broker: str, dlq: str) -> None:
    messages = data.dlq_messages(broker, dlq, limit=100)
    top = st.columns([4, 1], vertical_alignment="bottom")
    top[0].markdown(f"**Recent messages** (newest {len(messages)}; payload masked)")
    headers = top[1].toggle("Show headers", key="dlq_show_headers",
                            help="the message headers as JSON (binary values as hex, "
                                 "personal data masked)")
    if messages.empty:
        st.caption("No dead-lettered message of this queue was read in the last hour "
                   "(the queue may hold older ones).")
        return
    view = messages.assign(trace=messages["correlation_id"].map(_trace_link),
                           original_topic=[_original(t, p, o) for t, p, o in zip(
                               messages["original_topic"], messages["original_partition"],
                               messages["original_offset"])])
    columns = ["at", "trace", "correlation_id", "event_type", "reason", "preview", "dlq_class",
               "original_topic", "partition", "offset", "size_bytes", "decode_error"]
    if headers:
        columns.append("headers")
    st.dataframe(view[columns], hide_index=True, placeholder="—", key="dlq_messages",
                 height=min(38 + 35 * len(view), 420), column_config=MESSAGE_CONFIG)


@st.fragment(run_every=cfg.dashboard.refresh_s)
def dead_letters() -> None:
    """DLQ table and one DLQ in detail; refreshes itself."""
    table = data.dlq_table()
    if table.empty:
        widgets.empty_state("This page lists every dead-letter queue (Kafka `*.DLT`, "
                       "`__connect.errors.*`, Redis `*:dlq` …) with its depth, growth per "
                       "minute, oldest message, the topic the failures came from and why "
                       "they failed; and for one queue its reasons over time and its newest "
                       "messages, each linked to its trace.")
        return
    _overview(table)
    _drilldown(table)


dead_letters()
