"""This run's config, the query layer of its store, and the clusters the reader chose.

``app.py`` loads the config once per run and hands it over with :func:`set_config`; the
query layer (:mod:`eventscope.query`) is one per store directory and process, with its
result cache. The cluster selector in the sidebar (:func:`eventscope.ui.widgets.cluster_selector`)
keeps its choice under :data:`CLUSTERS_KEY`; :func:`chosen` is what every loader filters on.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st
# Streamlit internals, for the one case :func:`config` explains (a deep link as a new
# server's very first request); no public API switches the multipage mode.
from streamlit.runtime.pages_manager import PagesManager

from eventscope.config import Config
from eventscope.query import Queries, ResultCache
from eventscope.store import Retention, Store
from eventscope.trace_index import StoreTraceIndex

WINDOW_S = 3600.0  # history the charts and the graph look at
CACHE_BYTES = 96 * 1024 * 1024  # the query results one dashboard process keeps
_CONFIG_KEY, _COLLECTOR_KEY = "_eventscope_config", "_eventscope_collector"  # session_state
CLUSTERS_KEY = "clusters"  # session_state: the clusters the sidebar's selector holds (none = every one)


def set_config(config: Config, collector: tuple[str, str] = ("running", "")) -> None:
    """Remember this run's config and collector (state, words); state: running/off/elsewhere/error."""
    st.session_state[_CONFIG_KEY] = config
    st.session_state[_COLLECTOR_KEY] = collector


def config() -> Config:
    """The config ``app.py`` loaded for this run (re-entering through ``app.py`` if it did not run)."""
    if _CONFIG_KEY not in st.session_state:
        # With a pages/ folder beside app.py, a new server starts in Streamlit's folder-based
        # multipage mode until app.py calls st.navigation: a deep link as the first request
        # (/lag bookmarked, server restarted) runs the page alone. Switch modes and rerun;
        # app.py then runs first and the URL still names the page.
        PagesManager.uses_pages_directory = False
        st.rerun()
    return st.session_state[_CONFIG_KEY]


def collector_state() -> tuple[str, str]:
    """What the dashboard's collector does: (running/off/elsewhere/error, words)."""
    return st.session_state.get(_COLLECTOR_KEY, ("running", ""))


def store_key(cfg: Config) -> tuple:
    """What identifies one store and its retention (the key of the per-process resources)."""
    return (str(cfg.store_dir.resolve()), float(cfg.store.retention_hours), int(cfg.store.max_rows),
            float(cfg.store.raw_window_s))


@st.cache_resource(show_spinner=False)
def _queries(key: tuple) -> Queries:
    """One store and query layer (with its result cache) per store directory and process."""
    store = Store(key[0], Retention(max_age_s=key[1] * 3600.0, max_rows=key[2], raw_window_s=key[3]))
    return Queries(store, ResultCache(CACHE_BYTES))


def queries() -> Queries:
    """The query layer of this run's store."""
    return _queries(store_key(config()))


@st.cache_resource(show_spinner=False)
def _trace_index(key: tuple) -> StoreTraceIndex:
    """One incremental trace index per store and process (see ``eventscope/trace_index.py``)."""
    return StoreTraceIndex(_queries(key).store)


def trace_index() -> StoreTraceIndex:
    """The trace index of this run's store."""
    return _trace_index(store_key(config()))


def since(window_s: float = WINDOW_S) -> pd.Timestamp:
    """``window_s`` seconds ago (UTC)."""
    return pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=window_s)


def clusters() -> pd.DataFrame:
    """The clusters the store holds rows of (``broker``, ``kind``), by name."""
    return queries().clusters()


def chosen() -> tuple[str, ...]:
    """The clusters chosen in the sidebar, sorted; ``()`` when every cluster is shown."""
    picked = st.session_state.get(CLUSTERS_KEY) or ()
    return tuple(sorted(str(b) for b in picked))
