"""Lag: consumer lag per group and topic, in messages and seconds, with a status verdict.

Worst groups first, filters for status and a name (the clusters are chosen in the sidebar;
each row names its cluster and kind), then one group in detail:
its partitions, lag over time, members and (Redis) stuck pending entries. A banner says
when the newest lag sample is stale, with what the collectors last reported.
Broker-provided names only ever reach the page through ``st.dataframe``, widget
labels' options or :func:`fmt.md` (Markdown-escaped); never as HTML.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from eventscope import queues_view
from eventscope.ui import data, format as fmt, session, widgets
from eventscope.analysis import lag as lag_analysis

cfg = session.config()
st.title("Consumer lag")
st.caption("Status needs no threshold: OK = keeping up · WARN = lag growing · ERR = growing and "
           "old · STALL = members present but not committing · STOP = no members and not "
           "committing · REWIND = offset went backwards · UNKNOWN = group has no committed offset.")

#: statuses worst first (the filter's order)
STATUSES = sorted(lag_analysis.STATUSES, key=lambda s: -lag_analysis.SEVERITY.get(s, 0))
TABLE_CONFIG = {
    "broker": st.column_config.TextColumn("cluster", help="the cluster's configured name"),
    "kind": st.column_config.TextColumn("kind", width="small", help="kafka, redis or rabbitmq"),
    "status": st.column_config.TextColumn("status", width="small",
                                          help="worst partition's verdict"),
    "partitions": st.column_config.NumberColumn("partitions", format="%d", width="small"),
    "lag": st.column_config.NumberColumn("total lag (msgs)", format="%d",
                                         help="messages behind, summed over partitions"),
    "max_lag": st.column_config.NumberColumn("max partition lag", format="%d",
                                             help="the most messages any one partition is behind"),
    "lag_seconds": st.column_config.NumberColumn("behind (s)", format="%.1f",
                                                 help="age of the oldest unconsumed message, seconds"),
    "behind": st.column_config.TextColumn("behind", help="age of the oldest unconsumed message"),
    "members": st.column_config.NumberColumn("members", format="%d",
                                             help="Kafka members / Redis consumers"),
    "group_state": st.column_config.TextColumn("state", help="group state the broker reports"),
}


def _stale_banner() -> None:
    """Warn when the newest lag sample is older than three refreshes; say why if known."""
    newest = data.newest_sample("lag")
    if newest is None:
        return
    now = pd.Timestamp.now(tz="UTC")
    age = (now - newest).total_seconds()
    limit = data.stale_after_s(cfg)
    if age <= limit:
        return
    lines = [f"**Stale: last sample {fmt.ago(newest, now)}** (at {newest:%H:%M:%S} UTC; "
             f"expected every {max(cfg.dashboard.refresh_s, cfg.collect.interval_s):g} s, "
             f"stale after {limit:g} s). The numbers below are as of then.\n"]
    status = data.collector_status()
    for run in status.itertuples(index=False):
        name = f"{fmt.md(run.source)} / {fmt.md(run.collector)}"
        state = "ok" if run.ok else "failing"
        line = f"- {name}: {state}, last run {fmt.ago(run.last_run, now)}"
        if run.last_error:
            line += f"; last error ({fmt.ago(run.last_error_at, now)}): {fmt.md(run.last_error)}"
        else:
            line += "; no error reported"
        lines.append(line)
    if status.empty:
        lines.append("- No collector has reported health yet.")
    elif status["ok"].all():
        lines.append("\nCollectors reported no failure: check that `eventscope collect` (or the "
                     "dashboard's own collector) is still running.")
    st.warning("\n".join(lines), icon=":material/schedule:")


PAGE_SIZE = 50
HEADER_TOPICS = 10  # topics named in a group's header; the rest are counted
PARTITION_ROWS = 500  # partitions listed for one group: its worst, when it has more


def _filters(counts: pd.DataFrame) -> tuple[str, tuple]:
    """Name and status filters above the table (the clusters' are in the sidebar): (search, statuses)."""
    text = st.columns([1, 1])[0].text_input("Group or topic contains", key="lag_filter",
                                            placeholder="e.g. payment", help="case-insensitive substring")
    per_status = counts.groupby("status")["count"].sum()
    # the statuses present now, plus any still selected (a selection never vanishes)
    offered = [s for s in STATUSES if s in per_status.index or s in st.session_state.get("lag_status", ())]
    statuses = st.pills("Status", offered, selection_mode="multi", key="lag_status",
                        format_func=lambda s: f"{s} · {int(per_status.get(s, 0)):,}",
                        help="none selected = every status; the number is how many rows have it")
    return (text or "").strip(), tuple(statuses or ())


def _group_table(search: str, statuses: tuple, total: int) -> pd.DataFrame:
    """The rows matching the filters, one page at a time, worst first; returns the page."""
    _, matched = data.lag_page(search, statuses, 0, 1)
    if matched == 0:
        st.info(f"No group matches these filters (of {total:,} group/topic rows).",
                icon=":material/filter_alt_off:")
        return pd.DataFrame(columns=data.LAG_TABLE_COLUMNS)
    pages = max(1, -(-matched // PAGE_SIZE))
    if st.session_state.get("lag_page_no", 1) > pages:
        st.session_state["lag_page_no"] = 1  # the filters shrank the list under the reader
    page_no = st.session_state.get("lag_page_no", 1) if pages > 1 else 1
    shown, _ = data.lag_page(search, statuses, (page_no - 1) * PAGE_SIZE, PAGE_SIZE)
    st.dataframe(fmt.styled(shown), hide_index=True, placeholder="—", key="lag_table",
                 height=min(38 + 35 * len(shown), 565), column_config=TABLE_CONFIG)
    first = (page_no - 1) * PAGE_SIZE + 1
    cols = st.columns([3, 1], vertical_alignment="center")
    cols[0].caption(f"Rows {first:,}–{first + len(shown) - 1:,} of {matched:,} matching "
                    f"({total:,} group/topic rows in all) · worst status first, then longest behind.")
    if pages > 1:
        cols[1].number_input(f"Page (of {pages:,})", min_value=1, max_value=pages, step=1,
                             key="lag_page_no")
    return shown


def _drilldown(shown: pd.DataFrame, table: pd.DataFrame) -> None:
    """One group in detail; ``shown`` (this page of the table) offers the groups, ``table``
    has all its topics. A link from another page (``?group=``) adds its group."""
    st.subheader("Group detail", divider="gray")
    pairs = list(dict.fromkeys(zip(shown["broker"].astype(str), shown["group"].astype(str))))
    linked = (st.query_params.get("broker", "kafka"), st.query_params.get("group"))
    if linked[1] and linked not in pairs and ((table["broker"] == linked[0]) & (table["group"] == linked[1])).any():
        pairs.insert(0, linked)
    if not pairs:
        st.caption("Pick a group above: no group matches the filters.")
        return
    labels = {widgets.link_label(group, broker): (broker, group) for broker, group in pairs}
    widgets.open_from_link("group", "lag_group", labels)
    choice = st.selectbox("Group", list(labels), key="lag_group",
                          help="groups on this page of the table, worst first; each named with its cluster")
    broker, group = labels.get(choice, pairs[0])
    parts = data.lag_partitions(broker, group)
    rows = table[(table["broker"] == broker) & (table["group"] == group)]
    members = data.group_members(broker, group)
    kind = data.kind_of().get(broker, broker)
    stuck = data.stuck_entries(broker, group) if kind == "redis" else None

    worst = max(rows["status"], key=lambda s: lag_analysis.SEVERITY.get(s, 0)) if len(rows) else "UNKNOWN"
    color = {"OK": "green", "WARN": "orange", "UNKNOWN": "gray"}.get(worst, "red")
    names = rows["topic"].astype(str)
    listed = ", ".join(fmt.md(t) for t in names.head(HEADER_TOPICS))
    if len(names) > HEADER_TOPICS:
        listed += f" and {len(names) - HEADER_TOPICS:,} more (worst first)"
    st.markdown(f":{color}-badge[{worst}] **{fmt.md(group)}** on cluster **{fmt.md(fmt.cluster(broker, kind))}** · "
                f"{len(names):,} topic{'s' if len(names) != 1 else ''}: {listed}")
    queues_view.queue_detail(broker, group, worst)  # a RabbitMQ queue: ready, unacked, rates, why
    behind = rows["lag_seconds"].max() if len(rows) else None
    pending = pd.to_numeric(parts["pending"], errors="coerce").sum(min_count=1)
    stats = st.columns(6 if stuck is not None else 4)
    stats[0].metric("Total lag", fmt.number(pd.to_numeric(rows["lag"], errors="coerce").sum(min_count=1)),
                    help="messages behind, all partitions")
    stats[1].metric("Max partition lag", fmt.number(pd.to_numeric(rows["max_lag"], errors="coerce").max()))
    stats[2].metric("Behind", fmt.duration_short(behind),
                    help="age of the oldest unconsumed message")
    stats[3].metric("Members", fmt.number(pd.to_numeric(rows["members"], errors="coerce").max()))
    if stuck is not None:
        stats[4].metric("Pending", fmt.number(pending), help="delivered, not acknowledged (PEL)")
        stats[5].metric("Stuck entries", f"{len(stuck)}",
                        help=f"pending entries delivered ≥ {cfg.redis.stuck_min_deliveries} times "
                             f"or idle ≥ {fmt.duration(cfg.redis.stuck_idle_s)}")

    table = parts[["topic", "partition", "committed", "end", "lag", "lag_seconds", "status"]]
    if len(table) > PARTITION_ROWS:
        st.markdown(f"**Partitions** (newest sample): the {PARTITION_ROWS:,} worst of "
                    f"{len(table):,}, most behind first")
        severity = table["status"].map(lag_analysis.SEVERITY).fillna(0)
        table = (table.assign(_sev=severity, _lag=pd.to_numeric(table["lag"], errors="coerce"))
                 .sort_values(["_sev", "lag_seconds", "_lag"], ascending=False, kind="stable")
                 .head(PARTITION_ROWS).drop(columns=["_sev", "_lag"]))
    else:
        st.markdown("**Partitions** (newest sample)")
        table = table.sort_values(["topic", "partition"], kind="stable")
    st.dataframe(fmt.styled(table), hide_index=True, placeholder="—", key="lag_partitions",
                 height=min(38 + 35 * len(table), 400),
                 column_config={"partition": st.column_config.NumberColumn("partition", format="%d"),
                                "committed": st.column_config.NumberColumn("committed", format="%d"),
                                "end": st.column_config.NumberColumn("end", format="%d"),
                                "lag": st.column_config.NumberColumn("lag (msgs)", format="%d"),
                                "lag_seconds": st.column_config.NumberColumn(
                                    "behind", format="%.1f s",
                                    help="age of the oldest unconsumed message")})

    _members(kind, members, rows)
    if stuck is not None:
        _stuck(stuck, pending)
    _charts(broker, group)


def _members(kind: str, members: pd.DataFrame, rows: pd.DataFrame) -> None:
    st.markdown("**Members** (newest sample)")
    if members.empty:
        count = pd.to_numeric(rows["members"], errors="coerce").max()
        if pd.isna(count) or count == 0:
            st.caption("No members: nobody is consuming for this group right now.")
        else:
            st.caption(f"The broker reports {fmt.number(count)} member(s); no member details "
                       "were recorded for this group in the newest sample (client ids, hosts, "
                       "assignments and idle times come from the live Kafka and Redis collectors).")
        return
    if kind == "redis":
        view = members[["consumer", "topic", "pending"]].assign(
            idle=members["idle_ms"].map(lambda v: fmt.duration_short(None if pd.isna(v) else v / 1000)))
        config = {"consumer": "consumer", "topic": "stream",
                  "pending": st.column_config.NumberColumn("pending", format="%d",
                                                           help="delivered, not acknowledged")}
    else:
        view = members[["consumer", "host", "assignment"]]
        config = {"consumer": "client id", "assignment": "assigned partitions"}
    st.dataframe(view, hide_index=True, placeholder="—", key="lag_members",
                 height=min(38 + 35 * len(view), 320), column_config=config)


def _stuck(stuck: pd.DataFrame, pending) -> None:
    st.markdown("**Stuck pending entries** (newest sample)")
    if stuck.empty:
        if pd.isna(pending) or pending == 0:
            why = "nothing is pending (every delivered entry was acknowledged)."
        else:
            why = (f"{fmt.number(pending)} pending, none delivered ≥ "
                   f"{cfg.redis.stuck_min_deliveries} times or idle ≥ "
                   f"{fmt.duration(cfg.redis.stuck_idle_s)}.")
        st.success(f"No stuck entries: {why}", icon=":material/check_circle:")
        return
    view = stuck[["entry_id", "consumer", "deliveries"]].assign(
        idle=stuck["idle_ms"].map(lambda v: fmt.duration_short(v / 1000)), stream=stuck["topic"])
    st.dataframe(view, hide_index=True, key="lag_stuck", height=min(38 + 35 * len(view), 320),
                 column_config={"entry_id": "entry id",
                                "deliveries": st.column_config.NumberColumn("deliveries", format="%d")})


HISTORY = {"1 h": 3600.0, "6 h": 6 * 3600.0, "24 h": 24 * 3600.0}


def _charts(broker: str, group: str) -> None:
    span = st.segmented_control("History", [k for k, v in HISTORY.items()
                                            if v <= cfg.store.retention_hours * 3600 or k == "1 h"],
                                default="1 h", key="lag_history_span")
    history = data.group_history(broker, group, HISTORY.get(span or "1 h"))
    if history.empty:
        st.caption("No history for this group yet.")
        return
    others = history["series"].astype(str).str.startswith("(other ")
    if others.any():
        st.caption(f"{fmt.md(history.loc[others, 'series'].iloc[0])} are one series: their lag "
                   f"summed, their seconds behind the most of them; the {history.loc[~others, 'series'].nunique()} "
                   "worst topics now have a line each.")
    left, right = st.columns(2)
    with left:
        st.markdown(f"**Messages behind**, per topic and minute (last {span or '1 h'})")
        widgets.history_chart(history, "lag", "messages")
    with right:
        st.markdown("**Seconds behind**, per topic (age of the oldest unconsumed message)")
        if history["lag_seconds"].dropna().empty:
            st.caption("Time lag is not known for this group (no message timestamps yet).")
        else:
            widgets.history_chart(history, "lag_seconds", "seconds")


@st.fragment(run_every=cfg.dashboard.refresh_s)
def lag_page() -> None:
    """Stale banner, filters, the group table and one group's detail; refreshes itself."""
    _stale_banner()
    counts = data.status_counts()
    if counts.empty:
        widgets.empty_state("This page lists every consumer group with its lag per topic (messages "
                       "and seconds), and for one group its partitions, members and stuck "
                       "entries, and its lag over time.")
        return
    search, statuses = _filters(counts)
    shown = _group_table(search, statuses, int(counts["count"].sum()))
    _drilldown(shown, data.lag_table())


lag_page()
