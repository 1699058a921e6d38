"""eventscope dashboard entry point: config, background collector, sidebar, page navigation.

Run with ``make run`` (``streamlit run app.py``). Pages live in ``pages/`` and only
render; data comes from the store through ``eventscope.dashboard``'s cached loaders.
"""
from __future__ import annotations

import streamlit as st

from eventscope import dashboard as ui
from eventscope.config import Config, ConfigError, load_config
from eventscope.runner import ensure_background_collector, one_line

st.set_page_config(page_title="eventscope", layout="wide")


@st.cache_resource(show_spinner=False)
def _collector(store_dir: str, _config: Config) -> tuple[str, str]:
    """Start the background collector once per server process and store; say what it does."""
    try:
        runner = ensure_background_collector(_config)
    except Exception as exc:  # a broken collector must not take the dashboard down: show it
        return "error", one_line(exc)
    if runner is not None:
        return "running", "collecting in this dashboard process"
    if _config.dashboard.collect == "off":
        return "off", "off in this dashboard (dashboard.collect = off); showing what is in the store"
    return "elsewhere", "another process (eventscope collect) is filling the store"


try:
    config = load_config()
except ConfigError as exc:
    st.error(f"**eventscope cannot start: configuration error.**\n\n{ui.md(exc)}\n\n"
             "Fix the config file or the `EVENTSCOPE_*` environment variable it names, then reload.")
    st.stop()

state, collecting = _collector(str(config.store_dir.resolve()), config)
ui.set_config(config, (state, collecting))
if state == "error":
    st.warning(f"The background collector could not start: {ui.md(collecting)}")

pages = st.navigation([
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/lag.py", title="Lag", icon=":material/hourglass_bottom:"),
    st.Page("pages/dead_letters.py", title="Dead letters", icon=":material/report:"),
    st.Page("pages/traces.py", title="Traces", icon=":material/timeline:"),
    st.Page("pages/flow_graph.py", title="Flow graph", icon=":material/account_tree:"),
    st.Page("pages/catalog.py", title="Event catalog", icon=":material/menu_book:"),
    st.Page("pages/alerts.py", title="Alerts", icon=":material/notifications_active:"),
])


@st.fragment(run_every=config.dashboard.refresh_s)
def _sidebar() -> None:
    ui.sidebar(config, "not running" if state == "error" else collecting)


with st.sidebar:
    _sidebar()

pages.run()
