"""Overview, the incident front door: what fires now, the worst groups, the DLQs that fill,
the latest failed traces and a small health graph, each one click from its detail page."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from eventscope.ui import data, format as fmt, session, widgets
from eventscope.alerts_view import detail_link, format_value
from eventscope.graph.export import dot_quote
from eventscope.palette import GREEN, GREY, RED, STATUS_DOT

cfg = session.config()
st.title("Overview")
ARROW = ":material/arrow_forward:"

HEALTH_DRAWN = 12  # group/topic rows the small health drawing shows at most


def _link(page: str, label: str, query: dict | None = None) -> None:
    widgets.page_link(page, label=fmt.md(fmt.safe_text(label, 80)), icon=ARROW, query_params=query)


def _firing(alerts: pd.DataFrame) -> None:
    st.subheader("Firing now")
    if alerts.empty:
        st.success("No alert is firing.", icon=":material/check_circle:")
        return
    worst = alerts.assign(_o=alerts["severity"].map({"critical": 0}).fillna(1)).sort_values(
        ["_o", "since"], kind="stable")
    for a in worst.head(5).itertuples(index=False):
        value = format_value(a.metric, a.value, a.detail)
        limit = "" if pd.isna(a.threshold) else f" ≥ {format_value(a.metric, a.threshold)}"
        color = "red" if a.severity == "critical" else "orange"
        page, query = detail_link(a.subject) or ("pages/alerts.py", {})
        widgets.page_link(page, query_params=query, icon=":material/notifications_active:",
                     label=f":{color}[**{a.severity}**] {fmt.md(a.rule)} · "
                           f"{fmt.md(fmt.safe_text(a.subject, 70))} = {fmt.md(value)}{fmt.md(limit)}")
    more = f"All {len(alerts)} firing alerts" if len(alerts) > 5 else "Alerts: timeline and rules"
    widgets.page_link("pages/alerts.py", label=more, icon=ARROW)


def _worst_groups(table: pd.DataFrame) -> None:
    st.subheader("Worst groups")
    # a group a second or so behind is just busy: list the ones in trouble or really behind
    bad = table[table["status"].isin(["ERR", "STALL", "STOP", "REWIND", "WARN"])
                | (table["lag_seconds"].fillna(0) >= 10)]
    if bad.empty:
        st.caption("No group is stalled or more than 10 s behind.")
        return
    for r in bad.drop_duplicates(["broker", "group"]).head(5).itertuples(index=False):
        lag = format_value("lag", r.lag)
        _link("pages/lag.py", f"{r.group} ({r.broker}) · {r.status} · {r.behind} behind ({lag})",
              {"broker": r.broker, "group": r.group})


def _filling_dlqs(table: pd.DataFrame) -> None:
    st.subheader("Dead-letter queues filling")
    full = table[~table["empty"].astype(bool)] if not table.empty else table
    if full.empty:
        st.caption("No dead-letter queue holds a message.")
        return
    for r in full.head(5).itertuples(index=False):
        growth = f", +{r.growth_per_min:g}/min" if r.growth_per_min and r.growth_per_min > 0 else ""
        _link("pages/dead_letters.py", f"{r.dlq} ({r.broker}) · {format_value('dlq_depth', r.depth)}{growth}",
              {"broker": r.broker, "dlq": r.dlq})


def _failed_traces() -> None:
    st.subheader("Latest failed traces")
    recent = data.recent_traces(limit=200)
    failed = recent[recent["outcome"] == "dead_lettered"] if not recent.empty else recent
    if failed.empty:
        st.caption("No dead-lettered trace in the last hour.")
        return
    for r in failed.head(5).itertuples(index=False):
        _link("pages/traces.py", f"{r.correlation_id} · died {fmt.ago(r.last_at)}", {"id": str(r.correlation_id)})


def per_cluster(groups: pd.DataFrame, dlqs: pd.DataFrame, alerts: pd.DataFrame, kinds: dict) -> pd.DataFrame:
    """One row per cluster: its kind, firing alerts, groups behind of all, worst lag, DLQ messages."""
    names = sorted(set(groups["broker"].astype(str)) | set(dlqs["broker"].astype(str) if not dlqs.empty else ()))
    firing = alerts["subject"].map(data.subject_cluster).value_counts() if not alerts.empty else pd.Series()
    rows = []
    for name in names:
        mine = groups[groups["broker"] == name]
        pairs = mine[["group"]].drop_duplicates().shape[0]
        behind = mine[mine["lag"].fillna(0) > 0][["group"]].drop_duplicates().shape[0]
        held = dlqs[dlqs["broker"] == name]["depth"].sum() if not dlqs.empty else 0
        rows.append({"cluster": name, "kind": kinds.get(name, name), "firing alerts": int(firing.get(name, 0)),
                     "groups behind": f"{behind} of {pairs}",
                     "worst lag": fmt.duration(mine["lag_seconds"].max() if not mine.empty else None),
                     "DLQ messages": int(held)})
    return pd.DataFrame(rows, columns=["cluster", "kind", "firing alerts", "groups behind", "worst lag",
                                       "DLQ messages"])


def health_dot(groups: pd.DataFrame, dlqs: pd.DataFrame, clusters: bool = False) -> str:
    """A small DOT graph: topic → group colored by status, topic → DLQ red when it holds messages;
    with ``clusters``, each name says its cluster (``orders · prod-eu``)."""
    def name(text, broker) -> str:
        label = fmt.safe_text(text, 40)
        return f"{label}\n{fmt.safe_text(broker, 30)}" if clusters else label
    lines = ["digraph health {", "  rankdir=LR; bgcolor=transparent;",
             '  node [fontname="Helvetica", fontsize=10, style=filled, fillcolor=white, height=0.3];',
             f"  edge [color=\"{GREY}\", arrowsize=0.6];"]
    for r in groups.itertuples(index=False):
        topic, group = f"t:{r.broker}:{r.topic}", f"g:{r.broker}:{r.group}"
        color = STATUS_DOT.get(r.status, RED)
        lines.append(f"  {dot_quote(topic)} [label={dot_quote(name(r.topic, r.broker))}, shape=box];")
        lines.append(f"  {dot_quote(group)} [label={dot_quote(name(r.group, r.broker))}, shape=ellipse, "
                     f"color=\"{color}\", penwidth=2];")
        lines.append(f"  {dot_quote(topic)} -> {dot_quote(group)};")
    for r in dlqs.itertuples(index=False):
        if r.source_topic is None or pd.isna(r.source_topic):
            continue
        dlq, topic = f"d:{r.broker}:{r.dlq}", f"t:{r.broker}:{r.source_topic}"
        color = RED if r.depth > 0 else GREEN
        lines.append(f"  {dot_quote(topic)} [label={dot_quote(name(r.source_topic, r.broker))}, shape=box];")
        lines.append(f"  {dot_quote(dlq)} [label={dot_quote(name(r.dlq, r.broker))}, shape=octagon, "
                     f"color=\"{color}\", penwidth=2];")
        lines.append(f"  {dot_quote(topic)} -> {dot_quote(dlq)} [style=dashed, color=\"{color}\"];")
    lines.append("}")
    return "\n".join(lines)


@st.fragment(run_every=cfg.dashboard.refresh_s)
def overview() -> None:
    """Headline metrics, then the incident front door; refreshes itself."""
    groups, dlqs, alerts = data.lag_groups(), data.dlq_summary(), data.firing_alerts()
    if groups.empty and dlqs.empty and data.newest_sample("events") is None:
        widgets.empty_state("This page sums up firing alerts, consumer lag, dead-letter queues "
                       "and the latest failed request traces.")
        return
    behind = groups[groups["lag"].fillna(0) > 0]
    critical = int((alerts["severity"] == "critical").sum()) if not alerts.empty else 0
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Firing alerts", f"{len(alerts)}", delta=f"{critical} critical" if critical else None,
              delta_color="inverse", delta_arrow="off", border=True)
    c2.metric("Groups behind", f"{behind[['broker', 'group']].drop_duplicates().shape[0]}"
              f" of {groups[['broker', 'group']].drop_duplicates().shape[0]}",
              help="consumer groups with unconsumed messages on any topic", border=True)
    c3.metric("Worst lag", fmt.duration(groups["lag_seconds"].max() if not groups.empty else None),
              help="age of the oldest unconsumed message, over all groups", border=True)
    c4.metric("DLQ messages", f"{int(dlqs['depth'].sum()) if not dlqs.empty else 0:,}",
              help="messages held in dead-letter queues", border=True)
    several = len(data.shown_clusters()) > 1
    if several:
        st.dataframe(per_cluster(groups, dlqs, alerts, data.kind_of()), hide_index=True, key="overview_clusters",
                     column_config={"firing alerts": st.column_config.NumberColumn(format="%d"),
                                    "DLQ messages": st.column_config.NumberColumn(format="%d")})
    left, right = st.columns(2)
    with left:
        _firing(alerts)
        _worst_groups(data.lag_table().head(200))
    with right:
        _filling_dlqs(data.dlq_table())
        _failed_traces()
    graph_col, chart_col = st.columns([2, 3])
    with graph_col:
        st.subheader("Health")
        # only what is unwell, so the drawing stays legible on a big system
        sick = groups[~groups["status"].isin(["OK", "UNKNOWN"]) | (groups["lag_seconds"].fillna(0) >= 10)]
        full = dlqs[dlqs["depth"] > 0] if not dlqs.empty else dlqs
        healthy = groups[["broker", "group"]].drop_duplicates().shape[0] - \
            sick[["broker", "group"]].drop_duplicates().shape[0]
        if sick.empty and full.empty:
            st.success(f"All {healthy} consumer groups are keeping up and no DLQ holds a message.",
                       icon=":material/check_circle:")
        else:
            # the worst first (lag_groups is ordered so): a big incident stays a small drawing
            drawn, dead = sick.head(HEALTH_DRAWN), full.head(HEALTH_DRAWN)
            # the drawing is scaled to fit its frame: give each node on the right (a group or
            # a DLQ, two lines when clusters are named) its height, or twelve come out unreadable
            right = drawn[["broker", "group"]].drop_duplicates().shape[0] + len(dead)
            st.graphviz_chart(health_dot(drawn, dead, clusters=several),
                              height=max(260, 40 + (46 if several else 34) * right))
            more = len(sick) - len(drawn)
            st.caption("Topics → the groups in trouble (amber WARN, red stalled or failing) and → the "
                       f"DLQs holding messages; {healthy} healthy group(s) not drawn"
                       + (f", nor {more} more group/topic row(s) in trouble (see Lag)." if more > 0 else "."))
        widgets.page_link("pages/flow_graph.py", label="The full flow graph", icon=ARROW)
    with chart_col:
        st.subheader("Lag over the last hour (messages)")
        history = data.worst_history(limit=5)
        if history.empty:
            st.caption("No lag samples yet.")
        else:
            widgets.history_chart(history, "lag", "messages behind", height=260)
            st.caption("The five groups in the worst state now, per minute.")


overview()
