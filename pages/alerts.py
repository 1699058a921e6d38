"""Alerts: what fires now, and the thresholds the rules use."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from eventscope import dashboard as ui

cfg = ui.config()
st.title("Alerts")


def _messages(count: int) -> str:
    """``1 message``, ``100 messages``."""
    return f"{count} message" + ("" if count == 1 else "s")


@st.fragment(run_every=cfg.dashboard.refresh_s)
def alerts_page() -> None:
    """Firing alerts, worst first; refreshes itself."""
    firing = ui.firing_alerts()
    if firing.empty:
        if ui.frame("lag").empty and ui.frame("dlq").empty:
            ui.empty_state("This page lists firing alerts (lag, dead letters, collector "
                           "failures) with their value, threshold and since when.")
        else:
            st.success("No alert is firing.", icon=":material/check_circle:")
        return
    order = firing["severity"].map({"critical": 0, "warning": 1}).fillna(2)
    firing = firing.assign(_order=order).sort_values(["_order", "since"]).drop(columns="_order")
    firing = firing.assign(value=firing["value"].map(ui.number),
                           threshold=firing["threshold"].map(ui.number))
    st.dataframe(ui.styled(firing, "severity"), hide_index=True, placeholder="—", key="alerts_table",
                 column_config={"since": st.column_config.DatetimeColumn(
                     "firing since (UTC)", format="YYYY-MM-DD HH:mm:ss")})


alerts_page()

st.subheader("Active thresholds")
a = cfg.alerts
st.dataframe(pd.DataFrame([
    {"rule": "consumer lag (seconds behind)", "warning": f"{a.lag_seconds_warn:g} s",
     "critical": f"{a.lag_seconds_crit:g} s"},
    {"rule": "dead-letter queue depth", "warning": _messages(a.dlq_depth_warn),
     "critical": _messages(a.dlq_depth_crit)},
]), hide_index=True, placeholder="—", key="alert_thresholds")
st.caption("Set them under `[alerts]` in the config file or with `EVENTSCOPE_ALERTS_*`. "
           f"Webhook notifications: {'configured' if a.webhook_url else 'not configured'}. "
           "`eventscope alerts --json --exit-code` exits 1 when a critical alert fires.")
