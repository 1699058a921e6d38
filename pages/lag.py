"""Lag: consumer lag per group and topic, in messages and seconds, with a status verdict."""
from __future__ import annotations

import streamlit as st

from eventscope import dashboard as ui
from eventscope.analysis import lag as lag_analysis

cfg = ui.config()
st.title("Consumer lag")
st.caption("Status needs no threshold: OK = keeping up · WARN = lag growing · ERR = growing and "
           "old · STALL = members present but not committing · STOP = no members and not "
           "committing · REWIND = offset went backwards · UNKNOWN = group has no committed offset.")


@st.fragment(run_every=cfg.dashboard.refresh_s)
def lag_page() -> None:
    """Per-group table, a broker filter and a chart for one group; refreshes itself."""
    groups = ui.lag_groups()
    if groups.empty:
        ui.empty_state("This page lists every consumer group with its lag per topic (messages "
                       "and seconds) and charts one group's lag over time.")
        return
    brokers = sorted(groups["broker"].dropna().unique())
    broker = st.segmented_control("Broker", ["all", *brokers], default="all", key="lag_broker")
    shown = groups if broker in (None, "all") else groups[groups["broker"] == broker]
    order = shown["status"].map(lag_analysis.SEVERITY).fillna(0)
    shown = shown.assign(_order=-order).sort_values(["_order", "lag_seconds"],
                                                    ascending=[True, False]).drop(columns="_order")
    st.dataframe(ui.styled(shown), hide_index=True, placeholder="—", key="lag_table",
                 height=min(36 + 35 * len(shown), 600),
                 column_config={
                     "lag": st.column_config.NumberColumn("lag (messages)", format="%d"),
                     "lag_seconds": st.column_config.NumberColumn("lag (seconds)", format="%.1f s"),
                     "members": st.column_config.NumberColumn("members", format="%d")})
    names = list(dict.fromkeys(shown["group"].astype(str)))
    group = st.selectbox("Group to chart", names, key="lag_group")
    history = lag_analysis.lag_history(ui.frame("lag"), group=group)
    if broker not in (None, "all"):
        history = history[history["series"].str.startswith(f"{broker}:")]
    if history.empty:
        st.caption("No history for this group yet.")
        return
    left, right = st.columns(2)
    with left:
        st.markdown(f"**{ui.md(group)}: messages behind**")
        ui.history_chart(history, "lag", "messages")
    with right:
        st.markdown(f"**{ui.md(group)}: seconds behind** (age of the oldest unconsumed message)")
        if history["lag_seconds"].dropna().empty:
            st.caption("Time lag is not known for this group (no message timestamps yet).")
        else:
            ui.history_chart(history, "lag_seconds", "seconds")


lag_page()
