"""Overview: who is behind, what is failing, what fires, and the latest traces, at a glance."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from eventscope import dashboard as ui
from eventscope.analysis import lag as lag_analysis

cfg = ui.config()
st.title("Overview")


def _attention(alerts) -> None:
    """The worst firing alerts, one plain line each, with a link to the full list."""
    worst = alerts.assign(_order=alerts["severity"].map({"critical": 0}).fillna(1))
    lines = []
    for a in worst.sort_values("_order", kind="stable").head(4).itertuples(index=False):
        threshold = "" if pd.isna(a.threshold) else f" (threshold {ui.number(a.threshold)})"
        value = "" if pd.isna(a.value) else f" = {ui.number(a.value)}"
        color = "red" if a.severity == "critical" else "orange"
        lines.append(f"- :{color}[**{a.severity}**] {ui.md(a.subject)} · "
                     f"{ui.md(a.rule)}{value}{threshold}")
    st.markdown("**Needs attention**\n" + "\n".join(lines))
    if len(alerts) > 4:
        st.page_link("pages/alerts.py", label=f"All {len(alerts)} firing alerts",
                     icon=":material/arrow_forward:")


@st.fragment(run_every=cfg.dashboard.refresh_s)
def overview() -> None:
    """Headline metrics, a lag chart and recent traces; refreshes itself."""
    groups, dlqs, alerts = ui.lag_groups(), ui.dlq_summary(), ui.firing_alerts()
    if groups.empty and dlqs.empty and ui.frame("events").empty:
        ui.empty_state("This page sums up consumer lag, dead-letter queues, firing alerts "
                       "and the latest request traces.")
        return
    behind = groups[groups["lag"].fillna(0) > 0]
    critical = int((alerts["severity"] == "critical").sum()) if not alerts.empty else 0
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Groups behind", f"{behind[['broker', 'group']].drop_duplicates().shape[0]}"
              f" of {groups[['broker', 'group']].drop_duplicates().shape[0]}",
              help="consumer groups with unconsumed messages on any topic", border=True)
    c2.metric("Worst lag", ui.duration(groups["lag_seconds"].max() if not groups.empty else None),
              help="age of the oldest unconsumed message, over all groups", border=True)
    c3.metric("DLQ messages", f"{int(dlqs['depth'].sum()) if not dlqs.empty else 0:,}",
              help="messages held in dead-letter queues", border=True)
    c4.metric("Firing alerts", f"{len(alerts)}", delta=f"{critical} critical" if critical else None,
              delta_color="inverse", delta_arrow="off", border=True)
    if not alerts.empty:
        _attention(alerts)
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Lag over the last hour (messages)")
        st.caption("The five groups that fell furthest behind; all of them on the Lag page.")
        history = lag_analysis.lag_history(ui.frame("lag"))
        if history.empty:
            st.caption("No lag samples yet.")
        else:
            worst = history.groupby("series")["lag"].max().nlargest(5).index
            ui.history_chart(history[history["series"].isin(worst)], "lag", "messages behind",
                             height=280)
    with right:
        st.subheader("Recent traces")
        recent = ui.recent_traces(limit=12)
        if recent.empty:
            st.caption("No traced events yet.")
        else:
            st.dataframe(ui.styled(recent[["outcome", "last_at", "events", "correlation_id"]],
                                   "outcome"),
                         hide_index=True, placeholder="—", height=280, key="overview_traces",
                         column_config={"correlation_id": "correlation ID",
                                        "last_at": st.column_config.DatetimeColumn(
                                            "last event", format="HH:mm:ss")})
            st.page_link("pages/traces.py", label="Look up one trace's timeline",
                         icon=":material/arrow_forward:")


overview()
