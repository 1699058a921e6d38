"""The dashboard's Streamlit script: config, background collector, sidebar, page navigation.

``eventscope dashboard`` runs this file with Streamlit; in a checkout, ``streamlit run app.py``
runs the same :func:`main` through the top-level ``app.py``. Pages live in
:mod:`eventscope.pages` (the repository's ``pages/``) and only render; data comes from the
store through the loaders of ``eventscope.ui.data``.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from eventscope.ui import session, widgets
from eventscope.ui.format import md
from eventscope import memory
from eventscope.config import Config, ConfigError, load_config
from eventscope.runner import ChildCollector, ensure_background_collector, one_line

# The pages in navigation order: file in eventscope.pages, title, icon.
PAGES = (
    ("overview.py", "Overview", ":material/dashboard:"),
    ("lag.py", "Lag", ":material/hourglass_bottom:"),
    ("dead_letters.py", "Dead letters", ":material/report:"),
    ("traces.py", "Traces", ":material/timeline:"),
    ("flow_graph.py", "Flow graph", ":material/account_tree:"),
    ("catalog.py", "Event catalog", ":material/menu_book:"),
    ("alerts.py", "Alerts", ":material/notifications_active:"),
)
# Absolute paths: the same list serves a checkout and an installed package, wherever it sits.
PAGES_DIR = widgets.PAGES_DIR
SCRIPT = Path(__file__).resolve()


@st.cache_resource(show_spinner=False)
def _collector(store_dir: str, _config: Config) -> tuple[str, str, ChildCollector | None]:
    """Start the background collector once per server process and store; say what it does."""
    try:
        child = ensure_background_collector(_config)
    except Exception as exc:  # a broken collector must not take the dashboard down: show it
        return "error", one_line(exc), None
    if child is not None:
        return "running", child.describe(), child
    if _config.dashboard.collect == "off":
        return "off", "off in this dashboard (dashboard.collect = off); showing what is in the store", None
    return "elsewhere", "another process (eventscope collect) is filling the store", None


def main() -> None:
    """Render one run of the dashboard: sidebar, then the page the URL names."""
    st.set_page_config(page_title="eventscope", layout="wide")
    try:
        config = load_config()
    except ConfigError as exc:
        st.error(f"**eventscope cannot start: configuration error.**\n\n{md(exc)}\n\n"
                 "Fix the config file or the `EVENTSCOPE_*` environment variable it names, then reload.")
        st.stop()

    state, collecting, child = _collector(str(config.store_dir.resolve()), config)
    session.set_config(config, (state, collecting))
    if state == "error":
        st.warning(f"The background collector could not start: {md(collecting)}")

    pages = st.navigation([
        st.Page(PAGES_DIR / file, title=title, icon=icon, default=file == PAGES[0][0])
        for file, title, icon in PAGES])

    @st.fragment(run_every=config.dashboard.refresh_s)
    def _sidebar() -> None:
        if widgets.clusters_changed():  # the selector (outside this fragment) must offer them
            st.rerun()
        widgets.sidebar(config, "not running" if state == "error" else child.describe() if child else collecting)

    with st.sidebar:
        widgets.cluster_selector()  # outside the fragment: a new choice reruns the page
        _sidebar()

    pages.run()
    memory.release()  # what rendering this page freed goes back to the OS (a few ms)


if __name__ == "__main__":
    main()
