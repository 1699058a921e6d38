"""Streamlit pieces every page shares: the sidebar (the cluster selector and each source's
health), links between pages, line charts and the empty state."""
from __future__ import annotations

import urllib.parse
from pathlib import Path

import pandas as pd
import streamlit as st

from eventscope import pages as page_files
from eventscope.config import Config
from eventscope.ui.format import ago, duration, md
from eventscope.ui.session import CLUSTERS_KEY, clusters, collector_state, config, queries, since

#: the pages' folder, wherever the package sits (a checkout or site-packages)
PAGES_DIR = Path(next(iter(page_files.__path__)))
_SEEN_KEY = "_eventscope_clusters_offered"  # session_state: the clusters the selector last offered


def page_link(page: str, **kwargs) -> None:
    """``st.page_link`` to ``page`` named as ``pages/<file>.py``. The dashboard registers
    its pages by absolute path (:mod:`eventscope.app`), and Streamlit resolves a relative
    link against the entry script, which is not beside ``pages/`` once installed: so the
    link is made absolute here."""
    st.page_link(str(PAGES_DIR / Path(page).name), **kwargs)


def cluster_selector() -> None:
    """The sidebar's cluster selector, shared by every page: none picked shows every cluster.

    Shown only when the store holds rows of more than one cluster. A link that names a
    cluster (``?broker=prod-us``) adds it to a selection that left it out, so the page
    shows what the link points at."""
    table = clusters()
    st.session_state[_SEEN_KEY] = tuple(table["broker"])
    if len(table) < 2:
        st.session_state.pop(CLUSTERS_KEY, None)
        return
    kinds = dict(zip(table["broker"], table["kind"]))
    picked = [b for b in st.session_state.get(CLUSTERS_KEY) or () if b in kinds]
    linked = st.query_params.get("broker")
    if picked and linked in kinds and linked not in picked:
        picked.append(linked)
    st.session_state[CLUSTERS_KEY] = picked
    st.multiselect("Clusters", list(kinds), key=CLUSTERS_KEY, placeholder="all clusters",
                   format_func=lambda b: f"{b} · {kinds[b]}",
                   help="The clusters every page shows (none picked: all of them). "
                        "Each row names its cluster.")
    if not picked:
        st.caption(f"Showing all {len(kinds)} clusters.")
    else:
        st.caption(f":orange[Showing {len(picked)} of {len(kinds)} clusters: every page hides the rest.]")


def clusters_changed() -> bool:
    """True when the store's clusters are no longer the ones :func:`cluster_selector` offered
    (a first sample arrived, or a new cluster): the page should run again to offer them. The
    sidebar's self-refreshing fragment asks, as only a full run redraws the selector."""
    return tuple(clusters()["broker"]) != st.session_state.get(_SEEN_KEY)


def sidebar(cfg: Config, collecting: str) -> None:
    """Mode, then each source with its health and how fresh its data is, in plain words."""
    mode = "live brokers" if cfg.live else "sample data replay (no broker configured)"
    st.markdown(f"**Mode:** {mode}  \n**Collector:** {md(collecting)}")
    st.caption(f"Store: {md(cfg.store_dir.resolve())}")
    q = queries()
    health = q.health(since(900.0))
    data = pd.concat([q.store.get("lag_groups", columns=["source", "sampled_at"]),
                      q.events(since(900.0), ("source", "observed_at")).rename(
                          columns={"observed_at": "sampled_at"})])
    newest_data = data.groupby("source")["sampled_at"].max() if not data.empty else pd.Series()
    for src in cfg.sources_summary():
        name = src["source"]
        kind = "" if src["kind"] == name else f" ({md(src['kind'])})"
        st.markdown(f"**{md(name)}**{kind} · {md(src['address'])}")
        runs = health[health["source"] == name].drop_duplicates("collector", keep="last")
        for run in runs.itertuples(index=False):
            verdict = ":green[ok]" if run.ok else ":red[failing]"
            st.caption(f"{md(run.collector)}: {verdict} · last success {ago(run.last_success)} · "
                       f"took {duration(run.duration_ms / 1000.0)}")
            if not run.ok:
                st.caption(f":red[{md(run.error)}]")
        quiet = " · waiting for the first collector run to finish" if runs.empty else ""
        st.caption(f"newest data: {ago(newest_data.get(name))}{quiet}")
    for cap in q.store.caps():
        st.caption(f":orange[**{md(cap['frame'])}** history starts {ago(cap['kept_since'])}: "
                   f"`store.max_rows` ({cap['max_rows']:,}) cut it short of the "
                   f"{cap['retention_hours']:g} h retention]")
    for lost in q.store.damage():
        rows = "some" if lost["rows"] is None else f"{lost['rows']:,}"
        st.caption(f":orange[**{md(lost['frame'])}**: {rows} rows from {ago(lost['tmin'])} to "
                   f"{ago(lost['tmax'])} are missing: a store file could not be read "
                   f"({md(lost['error'][:120])})]")


def link_label(name, broker) -> str:
    """How a select box names an item of a cluster (what :func:`open_from_link` looks for)."""
    return f"{name}  ·  {broker}"


def open_from_link(param: str, key: str, labels) -> None:
    """A link from Overview or Alerts (``?<param>=NAME&broker=CLUSTER``) picks that item in
    the select box under ``key`` once; the parameter is then dropped so the user's choice sticks."""
    wanted = link_label(st.query_params.get(param), st.query_params.get("broker", "kafka"))
    if param in st.query_params and wanted in labels:
        st.session_state[key] = wanted
        del st.query_params[param]


def history_chart(history: pd.DataFrame, value: str, y_label: str, height: int = 260) -> None:
    """Line chart of ``value`` per ``series`` over ``sampled_at`` (names stay data, not encodings)."""
    data = history[["sampled_at", "series", value]].dropna(subset=[value])
    st.line_chart(data, x="sampled_at", y=value, color="series", height=height,
                  x_label="time (UTC)", y_label=y_label)


def empty_state(what: str) -> None:
    """Say what this page will show and how data gets into the store (config and collector)."""
    cfg = config()
    state, detail = collector_state()
    if state == "off":
        how = (f"This dashboard does not collect (`dashboard.collect = off`). Run `eventscope "
               f"collect` with the same store ({md(cfg.store_dir.resolve())}) to fill it.")
    elif state == "elsewhere":
        how = (f"Another process collects into {md(cfg.store_dir.resolve())}; data appears after "
               "its first sample. If nothing comes, check that `eventscope collect` still runs.")
    elif state == "error":
        how = f"The collector could not start: {md(detail)}"
    elif cfg.live:
        how = (f"The collector samples the configured brokers every {cfg.collect.interval_s:g} s; "
               "data appears after the first sample.")
    else:
        how = ("No broker is configured, so the dashboard replays the recorded sample data; it "
               "appears within a few seconds. To watch real brokers set "
               "`EVENTSCOPE_KAFKA_BOOTSTRAP` or `EVENTSCOPE_REDIS_URL` (or use `--config`).")
    st.info(f"**Nothing to show yet.** {what}\n\n{how}", icon=":material/hourglass_empty:")


def html_frame(html: str, height: int) -> None:
    """A document of our own (the flow graph's page) in an ``st.iframe``, not kept afterwards.

    ``st.iframe`` first asks urllib whether the text is a URL, and Python 3.11's ``urlsplit``
    remembers its last 128 answers (an ``lru_cache``), each holding the text twice: on a big
    cluster, 128 flow graphs of 1.5 MB each, the dashboard's server growing by ~400 MB over
    its first 20 minutes. The cache only saves re-parsing URLs, so it is emptied here."""
    st.iframe(html, height=height)
    urllib.parse.urlsplit.cache_clear()
