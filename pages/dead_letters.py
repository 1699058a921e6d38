"""Dead letters: every DLQ with depth, growth, oldest message, source topic and reasons."""
from __future__ import annotations

import streamlit as st

from eventscope import dashboard as ui
from eventscope.analysis import dlq as dlq_analysis

cfg = ui.config()
st.title("Dead letters")


def _reasons(reasons: list[dict]) -> str:
    """Top reasons as one line: ``timeout ×12, bad schema ×3``."""
    if not reasons:
        return ""
    top = [f"{r['reason']} ×{r['count']}" for r in reasons[:3]]
    more = f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else ""
    return ", ".join(top) + more


@st.fragment(run_every=cfg.dashboard.refresh_s)
def dead_letters() -> None:
    """DLQ table and depth chart; refreshes itself."""
    summary = ui.dlq_summary()
    if summary.empty:
        ui.empty_state("This page lists every dead-letter queue (Kafka `*.DLT`, "
                       "`__connect.errors.*`, Redis `*:dlq` …) with its depth, growth per "
                       "minute, oldest message, the topic the failures came from and why "
                       "they failed.")
        return
    table = summary.assign(reasons=summary["reasons"].map(_reasons))
    st.dataframe(table, hide_index=True, placeholder="—", key="dlq_table",
                 column_config={
                     "depth": st.column_config.NumberColumn("depth", format="%d"),
                     "growth_per_min": st.column_config.NumberColumn("growth / min", format="%+.1f"),
                     "oldest_age_seconds": st.column_config.NumberColumn("oldest (s)", format="%.0f s"),
                     "source_topic": "failures from", "reasons": "top reasons"})
    growing = summary[summary["growth_per_min"] > 0]
    if not growing.empty:
        st.warning(f"{len(growing)} dead-letter queue(s) growing right now: "
                   + ", ".join(ui.md(n) for n in growing["dlq"].head(5)))
    st.subheader("Depth over the last hour")
    history = dlq_analysis.depth_history(ui.frame("dlq"))
    if history.empty:
        st.caption("No depth samples yet.")
        return
    ui.history_chart(history, "depth", "messages held", height=280)


dead_letters()
