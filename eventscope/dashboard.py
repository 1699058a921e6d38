"""Dashboard plumbing shared by the pages: loaders, the sidebar, formatting helpers.

Pages only render: they get data through these loaders, which ask the query layer
(:mod:`eventscope.query`, one per store and process): it reads only what a page shows and
caches results, within a memory budget, on the store versions of the frames they came
from. ``app.py`` loads the config once per run and hands it over with :func:`set_config`.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st

from eventscope import alerts_view
from eventscope import pages as page_files
from eventscope.analysis import alerts as alert_rules
from eventscope.analysis import traces as trace_analysis
from eventscope.analysis.trace_index import StoreTraceIndex
from eventscope.config import Config
from eventscope.graph.asyncapi import applications, asyncapi_documents, server_hosts
from eventscope.graph.build import build_graph
from eventscope.graph.catalog import event_catalog as catalog_table
from eventscope.graph.catalog import event_shapes
from eventscope.graph.infer import SAMPLES as SHAPE_SAMPLES
from eventscope.mask import mask_text
from eventscope.query import Queries, ResultCache
from eventscope.store import Retention, Store

WINDOW_S = 3600.0  # history the charts and the graph look at
CACHE_BYTES = 96 * 1024 * 1024  # the query results one dashboard process keeps
_RED, _AMBER, _GREEN = "#f9c0c0", "#fde3a7", "#d9f0d3"
STATUS_COLORS = {"OK": _GREEN, "WARN": _AMBER, "ERR": _RED, "STOP": _RED, "STALL": _RED,
                 "REWIND": _RED, "UNKNOWN": "#e8e8e8", "completed": _GREEN, "in_flight": "#dbe8f7",
                 "dead_lettered": _RED, "critical": _RED, "warning": _AMBER}
_CONFIG_KEY, _COLLECTOR_KEY = "_eventscope_config", "_eventscope_collector"  # session_state
#: the pages' folder, wherever the package sits (a checkout or site-packages)
PAGES_DIR = Path(next(iter(page_files.__path__)))


def page_link(page: str, **kwargs) -> None:
    """``st.page_link`` to ``page`` named as ``pages/<file>.py``. The dashboard registers
    its pages by absolute path (:mod:`eventscope.app`), and Streamlit resolves a relative
    link against the entry script, which is not beside ``pages/`` once installed: so the
    link is made absolute here."""
    st.page_link(str(PAGES_DIR / Path(page).name), **kwargs)


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
        from streamlit.runtime.pages_manager import PagesManager  # Streamlit internals: only here
        PagesManager.uses_pages_directory = False
        st.rerun()
    return st.session_state[_CONFIG_KEY]


def _key(cfg: Config) -> tuple:
    return (str(cfg.store_dir.resolve()), float(cfg.store.retention_hours), int(cfg.store.max_rows),
            float(cfg.store.raw_window_s))


@st.cache_resource(show_spinner=False)
def _queries(key: tuple) -> Queries:
    """One store and query layer (with its result cache) per store directory and process."""
    store = Store(key[0], Retention(max_age_s=key[1] * 3600.0, max_rows=key[2], raw_window_s=key[3]))
    return Queries(store, ResultCache(CACHE_BYTES))


def queries() -> Queries:
    """The query layer of this run's store."""
    return _queries(_key(config()))


def _since(window_s: float = WINDOW_S) -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=window_s)


# -- lag ---------------------------------------------------------------------------
LAG_TABLE_COLUMNS = ["status", "broker", "group", "topic", "partitions", "lag", "max_lag",
                     "lag_seconds", "behind", "members", "group_state"]


def _lag_view(rows: pd.DataFrame) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in LAG_TABLE_COLUMNS})
    return rows.assign(behind=rows["lag_seconds"].map(duration_short))[LAG_TABLE_COLUMNS]


def lag_table() -> pd.DataFrame:
    """Per broker/group/topic: worst status, total and max partition lag, seconds behind
    (``lag_seconds`` and as words in ``behind``), members; worst first."""
    return _lag_view(queries().lag_groups())


def lag_page(search: str = "", statuses: tuple = (), brokers: tuple = (), offset: int = 0,
             limit: int = 50) -> tuple[pd.DataFrame, int]:
    """One page of :func:`lag_table` matching the filters, and how many rows match."""
    rows, total = queries().lag_page(search, tuple(statuses), tuple(brokers), offset, limit)
    return _lag_view(rows), total


def status_counts() -> pd.DataFrame:
    """Group-topic rows per broker and status now."""
    return queries().status_counts()


def lag_groups() -> pd.DataFrame:
    """Lag per broker/group/topic with the worst status (worst first)."""
    return queries().lag_groups()


def lag_partitions(broker: str | None = None, group: str | None = None) -> pd.DataFrame:
    """The newest lag row per partition with its ``status``, of one group if asked."""
    return queries().lag_partitions(broker, group)


def group_history(broker: str, group: str, window_s: float = WINDOW_S) -> pd.DataFrame:
    """Lag of one group per minute, one ``series`` per topic (messages and seconds)."""
    history = queries().group_history(str(broker), str(group), _since(window_s))
    return history.rename(columns={"topic": "series", "minute": "sampled_at"})


def worst_history(window_s: float = WINDOW_S, limit: int = 5) -> pd.DataFrame:
    """Lag per minute of the worst groups now, one ``series`` per broker:group."""
    return queries().worst_history(_since(window_s), limit).rename(columns={"minute": "sampled_at"})


def group_members(broker: str, group: str) -> pd.DataFrame:
    """Members of a group in its newest sample: Kafka client id/host/assignment, Redis
    consumer with pending entries and idle time; empty when none were reported."""
    cols = ["consumer", "host", "assignment", "topic", "pending", "idle_ms"]
    rows = queries().members(str(broker), str(group))
    return rows.sort_values(["consumer", "topic"], kind="stable")[cols].reset_index(drop=True)


def stuck_entries(broker: str, group: str) -> pd.DataFrame:
    """Redis pending entries of a group that look stuck (newest sample), idlest first."""
    cols = ["entry_id", "topic", "consumer", "deliveries", "idle_ms"]
    rows = queries().stuck(str(broker), str(group))
    return rows.sort_values(["idle_ms", "deliveries"], ascending=False, kind="stable")[cols].reset_index(drop=True)


def newest_sample(name: str = "lag") -> pd.Timestamp | None:
    """Time of the newest row of ``name`` in the store (from its manifest; any age)."""
    try:
        newest = queries().store.newest_time(name)
    except (OSError, ValueError, KeyError):
        return None
    return None if newest is None or pd.isna(newest) else pd.Timestamp(newest).tz_convert("UTC")


def stale_after_s(cfg: Config | None = None) -> float:
    """Data older than this is stale: three refreshes or collector intervals, the longer."""
    cfg = cfg or config()
    return 3.0 * max(float(cfg.dashboard.refresh_s), float(cfg.collect.interval_s))


def collector_status() -> pd.DataFrame:
    """Per source/collector: last run, ok, last success, last error and when (health frame)."""
    cols = ["source", "collector", "ok", "last_run", "last_success", "last_error", "last_error_at"]
    newest = newest_sample("health")
    if newest is None:
        return pd.DataFrame(columns=cols)
    health = queries().health(newest - pd.Timedelta(seconds=WINDOW_S))
    rows = []
    for (source, collector), runs in health.groupby(["source", "collector"], observed=True, sort=True):
        last = runs.iloc[-1]
        failed = runs[~runs["ok"] & (runs["error"].fillna("") != "")]
        rows.append({"source": source, "collector": collector, "ok": bool(last["ok"]),
                     "last_run": last["sampled_at"], "last_success": last["last_success"],
                     "last_error": failed["error"].iloc[-1] if not failed.empty else "",
                     "last_error_at": failed["sampled_at"].iloc[-1] if not failed.empty else pd.NaT})
    return pd.DataFrame(rows, columns=cols)


def history_caps() -> list[dict]:
    """Frames whose history ``store.max_rows`` cut short of the retention (see ``Store.caps``)."""
    return queries().store.caps()


def history_damage() -> list[dict]:
    """Store parts that could not be read: their rows are missing (see ``Store.damage``)."""
    return queries().store.damage()


# -- dead letters: overview, one DLQ's reasons over time and recent messages -------
def dlq_summary() -> pd.DataFrame:
    """One row per dead-letter queue (depth, growth, oldest age, reasons)."""
    return queries().dlq_summary()


DLQ_TABLE_COLUMNS = ["broker", "dlq", "source_topic", "depth", "growth_per_min", "history",
                     "oldest", "oldest_age_seconds", "reasons", "unread", "unprocessed",
                     "pre_dlq_pressure", "empty"]
DLQ_MESSAGE_COLUMNS = ["at", "partition", "offset", "event_type", "correlation_id",
                       "original_topic", "original_partition", "original_offset", "reason", "dlq_class",
                       "size_bytes", "decode_error",
                       "headers", "preview"]
TEXT_LIMIT = 2000  # longest text a DLQ cell shows (a huge header or reason is cut)


def safe_text(value, limit: int = TEXT_LIMIT, mask: bool = False):
    """Any stored value as displayable text: lone surrogates (undecodable bytes) escaped,
    cut at ``limit`` characters, optionally with e-mails and card numbers masked; None stays None."""
    if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
        return None
    if isinstance(value, bytes):
        value = "0x" + value[:32].hex() + ("…" if len(value) > 32 else "")
    text = str(value).encode("utf-8", "backslashreplace").decode("utf-8")
    if mask:
        text = mask_text(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def text_frame(df: pd.DataFrame, columns, mask=()) -> pd.DataFrame:
    """``df`` with ``columns`` as displayable text (see :func:`safe_text`)."""
    out = df.copy()
    for col in columns:
        if col in out:
            out[col] = out[col].map(lambda v, m=col in mask: safe_text(v, mask=m)).astype("object")
    return out


def dlq_table() -> pd.DataFrame:
    """One row per DLQ: depth, growth/min, depth per minute over the hour (``history``),
    oldest age (seconds and words), reasons (list, biggest first), ``unprocessed``,
    ``pre_dlq_pressure`` and ``empty`` (never held a message this hour); filling ones first."""
    summary = dlq_summary()
    if summary.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in DLQ_TABLE_COLUMNS})
    out = summary.copy()
    for col in ("unprocessed", "pre_dlq_pressure"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("Int64")
    per_minute = queries().dlq_history(_since())
    history = {k: [int(v) for v in rows["depth"].tolist()]
               for k, rows in per_minute.groupby(["broker", "dlq"], observed=True)}
    out["history"] = [history.get((b, d), []) for b, d in zip(out["broker"], out["dlq"])]
    out["empty"] = [(int(depth) == 0 and max(h or [0]) == 0 and not reasons)
                    for depth, h, reasons in zip(out["depth"], out["history"], out["reasons"])]
    out["oldest"] = [duration(a) if not e else "—"
                     for a, e in zip(out["oldest_age_seconds"], out["empty"])]
    out["reasons"] = out["reasons"].map(lambda r: [{"reason": safe_text(x["reason"], 300),
                                                    "count": x["count"]} for x in r])
    out = text_frame(out, ["broker", "dlq", "source_topic"])
    # filling queues first (deepest, then fastest growing), empty ones last
    out = out.assign(_g=-out["growth_per_min"].fillna(0)).sort_values(
        ["empty", "depth", "_g", "broker", "dlq"], ascending=[True, False, True, True, True],
        kind="stable")
    return out[DLQ_TABLE_COLUMNS].reset_index(drop=True)


def dlq_reasons_over_time(broker: str, dlq: str) -> pd.DataFrame:
    """Dead letters of one DLQ per minute and reason (``minute, reason, count``)."""
    out = queries().dlq_reasons_over_time(str(broker), str(dlq), _since())
    return text_frame(out, ["reason"]) if not out.empty else out


def dlq_messages(broker: str, dlq: str, limit: int = 100) -> pd.DataFrame:
    """The newest dead letters of one DLQ (metadata, reason, masked headers and preview)."""
    out = queries().dlq_messages(str(broker), str(dlq), _since(), limit=int(limit))
    if out.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in DLQ_MESSAGE_COLUMNS})
    out = out.reindex(columns=DLQ_MESSAGE_COLUMNS).reset_index(drop=True)
    # the payload preview is masked upstream; masking again here costs little and means an
    # address never reaches the page even from a row written before masking existed
    return text_frame(out, ["offset", "event_type", "correlation_id", "original_topic", "reason",
                            "dlq_class", "decode_error", "headers", "preview"],
                      mask=("headers", "preview", "decode_error", "reason"))


# -- traces ------------------------------------------------------------------------
def trace_summary() -> pd.DataFrame:
    """Per correlation ID of the last hour: first/last time, events, duration, outcome (newest first)."""
    return queries().trace_summary(_since(), float(config().traces.quiet_s))


def recent_traces(limit: int = 50) -> pd.DataFrame:
    """The newest correlation IDs with their outcome."""
    return trace_summary().head(limit).reset_index(drop=True)


@st.cache_resource(show_spinner=False)
def _trace_index(key: tuple) -> StoreTraceIndex:
    """One incremental trace index per store and process (see ``analysis/trace_index.py``)."""
    return StoreTraceIndex(_queries(key).store)


CAUSALITY_WINDOW_S = 3600.0  # the traffic what each service reads is learned from (the graph's default)


def find_trace(some_id: str) -> dict | None:
    """The trace ``some_id`` names (correlation, trace or event ID), or None."""
    cfg = config()
    q = queries()

    def compute():
        rows = _trace_index(_key(cfg)).lookup(some_id)
        if rows.empty:
            return None
        history = q.scan("lag", since=rows["at"].min() - pd.Timedelta(seconds=60),
                               until=rows["at"].max() + pd.Timedelta(seconds=300),
                               where={"topic": sorted(set(rows["topic"].astype(str)))})
        lag = q.lag_partitions(topics=tuple(sorted(set(rows["topic"].astype(str)))))
        return trace_analysis.from_rows(rows, lag=lag, lag_history=history,
                                        quiet_s=float(cfg.traces.quiet_s), details=True,
                                        consumes=q.consumed_topics(_since(CAUSALITY_WINDOW_S)),
                                        spans=q.trace_spans(rows["trace_id"], rows["observed_at"].min()),
                                        max_events=PAGE_TRACE_EVENTS)
    return q.cached("find_trace", ("events", "lag_latest", "spans"), (some_id,), compute)


# -- alerts ------------------------------------------------------------------------
def _alerts() -> dict:
    """Firing alerts, the rule table and the hour's transitions, computed once per data version."""
    cfg = config()
    q = queries()

    def compute():
        observations = q.observations(pd.Timestamp.now(tz="UTC").floor("5s"))
        if alerts_view.evaluated(q.store):
            history = q.store.read("alerts", since=_since())
            state = alerts_view.stored_state(q.store)
        else:  # nobody evaluates this store (collector off or an old one): replay the rules
            state, history = alerts_view.fallback(q.store, cfg.alerts, queries=q)
        return {"firing": alert_rules.firing_frame(state, observations), "history": history,
                "rules": alert_rules.rule_table(cfg.alerts.all_rules(), observations, state)}
    return q.cached("alerts_view", ("lag_groups", "dlq", "stuck_latest", "health", "alerts", "alerts_active"),
                     (repr(cfg.alerts),), compute)


def firing_alerts() -> pd.DataFrame:
    """Alerts firing now (rule, severity, subject, value, threshold, since, metric, fired_at, ...)."""
    return _alerts()["firing"]


def alert_history() -> pd.DataFrame:
    """Alert transitions (``alerts`` frame) over the last hour."""
    return _alerts()["history"]


def alert_rules_now() -> pd.DataFrame:
    """Every rule and subject: current value against its thresholds, and its alert state."""
    return _alerts()["rules"]


def what_if_transitions(rules: list) -> pd.DataFrame:
    """Transitions ``rules`` would have made over the last hour of stored rollups."""
    return alerts_view.what_if(queries().store, rules, config().alerts, window_s=WINDOW_S,
                               queries=queries())[1]


# -- flow graph and event catalog (graph/): built per time window, drawn by the pages --
GRAPH_EVENT_COLUMNS = ("observed_at", "broker", "topic", "at", "broker_at", "event_type", "service",
                       "correlation_id", "dead_letter", "original_topic", "causation_id")


def flow_graph(window_s: float = WINDOW_S):
    """The flow graph (networkx) of the last ``window_s`` seconds of traffic."""
    q = queries()
    since = _since(window_s)

    def compute():
        consumed = q.scan("lag_1m", since=since, columns=["minute", "broker", "group", "topic", "consumed"])
        dlq = q.scan("dlq_1m", since=since).rename(columns={"minute": "sampled_at"})
        events = q.events(since, GRAPH_EVENT_COLUMNS)
        extra = ()
        if events["causation_id"].notna().any():  # event IDs only when some event names its cause
            extra += ("event_id",)
        spans = q.span_links(since)
        if spans:  # message spans only when spans were collected
            extra += ("parent_span_id",)
        if extra:
            events = q.events(since, GRAPH_EVENT_COLUMNS + extra)
        return build_graph(events, None, dlq, groups=q.lag_groups(), consumed=consumed, spans=spans,
                           bindings=q.store.get("bindings_latest"), queues=q.store.get("queues_latest"))
    return q.cached("flow_graph", ("events", "lag_groups", "lag_1m", "dlq_1m", "spans", "bindings_latest",
                                   "queues_latest"),
                    (since.floor("10s"),),
                    compute)


def asyncapi(window_s: float = WINDOW_S) -> tuple[list[str], Callable[[str | None], dict]]:
    """The services that get an AsyncAPI 3.0 document, and a function that builds them (all,
    or one by name) as ``eventscope graph --format asyncapi`` prints them.

    Building reads every event of the window, so it waits for a download to ask for it; the
    function holds what it needs and may run outside the page's script thread."""
    cfg = config()
    q = queries()
    since = _since(window_s)
    hosts = server_hosts(cfg.kafka.bootstrap, cfg.redis.url)
    graph = flow_graph(window_s)

    def build(service: str | None = None) -> dict:
        docs = q.cached("asyncapi", ("events", "lag_groups", "lag_1m", "dlq_1m"),
                        (since.floor("10s"), tuple(sorted(hosts.items()))),
                        lambda: asyncapi_documents(graph, q.events(since), hosts))
        return docs if service is None else {service: docs[service]} if service in docs else {}
    return list(applications(graph)), build


PAGE_TRACE_EVENTS = 200  # events of one trace the page draws: the first and the last 100 of a longer one
CATALOG_EVENT_COLUMNS = ("event_type", "schema_version", "service", "broker", "topic", "dead_letter", "at", "broker_at")


def event_catalog(window_s: float = WINDOW_S) -> tuple[pd.DataFrame, dict]:
    """(one row per event type, inferred shape per (event type, schema version))."""
    q = queries()
    since = _since(window_s)

    def compute():
        # the table needs a few columns of every event; the shapes only the newest payloads
        events = q.events(since, CATALOG_EVENT_COLUMNS)
        return catalog_table(events, flow_graph(window_s)), event_shapes(q.event_samples(since, SHAPE_SAMPLES))
    return q.cached("catalog", ("events", "lag_groups", "lag_1m", "dlq_1m"), (since.floor("10s"),), compute)


# -- formatting ------------------------------------------------------------------
def ago(ts, now: pd.Timestamp | None = None) -> str:
    """``ts`` relative to now in plain words: ``12 s ago``, ``3 min ago``, ``never``."""
    if ts is None or pd.isna(ts):
        return "never"
    seconds = ((now or pd.Timestamp.now(tz="UTC")) - pd.Timestamp(ts)).total_seconds()
    return duration(max(0.0, seconds)) + " ago"


def duration(seconds) -> str:
    """Seconds in plain words: ``850 ms``, ``42 s``, ``4 min 10 s``, ``2 h 5 min``."""
    if seconds is None or pd.isna(seconds):
        return "unknown"
    seconds = float(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def duration_short(seconds) -> str:
    """Like :func:`duration` but sub-second lag reads ``< 1 s`` and unknown reads ``—``."""
    if seconds is None or pd.isna(seconds):
        return "—"
    if float(seconds) == 0:
        return "0 s"
    return "< 1 s" if float(seconds) < 1 else duration(seconds)


def number(value) -> str:
    """A measured value as short text: ``12``, ``1,234``, ``97.5``, ``—`` when unknown."""
    if value is None or pd.isna(value):
        return "—"
    value = float(value)
    return f"{value:,.0f}" if value.is_integer() or abs(value) >= 100 else f"{value:.1f}"


def md(value) -> str:
    """``value`` with Markdown punctuation backslash-escaped (names are data, not markup)."""
    return re.sub(r"([\\`*_{}\[\]()<>#+\-.!|:~$])", r"\\\1", str(value))


def history_chart(history: pd.DataFrame, value: str, y_label: str, height: int = 260) -> None:
    """Line chart of ``value`` per ``series`` over ``sampled_at`` (names stay data, not encodings)."""
    data = history[["sampled_at", "series", value]].dropna(subset=[value])
    st.line_chart(data, x="sampled_at", y=value, color="series", height=height,
                  x_label="time (UTC)", y_label=y_label)


def styled(df: pd.DataFrame, column: str = "status"):
    """``df`` with its status-like ``column`` colored (for ``st.dataframe``)."""
    if df.empty or column not in df:
        return df
    return df.style.map(lambda v: f"background-color: {STATUS_COLORS.get(v, 'transparent')}",
                        subset=[column])


def empty_state(what: str) -> None:
    """Say what this page will show and how data gets into the store (config and collector)."""
    cfg = config()
    state, detail = st.session_state.get(_COLLECTOR_KEY, ("running", ""))
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


# -- sidebar ---------------------------------------------------------------------
def sidebar(cfg: Config, collecting: str) -> None:
    """Mode, then each source with its health and how fresh its data is, in plain words."""
    mode = "live brokers" if cfg.live else "sample data replay (no broker configured)"
    st.markdown(f"**Mode:** {mode}  \n**Collector:** {md(collecting)}")
    st.caption(f"Store: {md(cfg.store_dir.resolve())}")
    q = queries()
    health = q.health(_since(900.0))
    data = pd.concat([q.store.get("lag_groups", columns=["source", "sampled_at"]),
                      q.events(_since(900.0), ("source", "observed_at")).rename(
                          columns={"observed_at": "sampled_at"})])
    newest_data = data.groupby("source")["sampled_at"].max() if not data.empty else pd.Series()
    for src in cfg.sources_summary():
        name = src["source"]
        st.markdown(f"**{md(name)}** · {md(src['address'])}")
        runs = health[health["source"] == name].drop_duplicates("collector", keep="last")
        for run in runs.itertuples(index=False):
            verdict = ":green[ok]" if run.ok else ":red[failing]"
            st.caption(f"{md(run.collector)}: {verdict} · last success {ago(run.last_success)} · "
                       f"took {duration(run.duration_ms / 1000.0)}")
            if not run.ok:
                st.caption(f":red[{md(run.error)}]")
        quiet = " · waiting for the first collector run to finish" if runs.empty else ""
        st.caption(f"newest data: {ago(newest_data.get(name))}{quiet}")
    for cap in history_caps():
        st.caption(f":orange[**{md(cap['frame'])}** history starts {ago(cap['kept_since'])}: "
                   f"`store.max_rows` ({cap['max_rows']:,}) cut it short of the "
                   f"{cap['retention_hours']:g} h retention]")
    for lost in history_damage():
        rows = "some" if lost["rows"] is None else f"{lost['rows']:,}"
        st.caption(f":orange[**{md(lost['frame'])}**: {rows} rows from {ago(lost['tmin'])} to "
                   f"{ago(lost['tmax'])} are missing: a store file could not be read "
                   f"({md(lost['error'][:120])})]")


def open_from_link(param: str, key: str, labels) -> None:
    """A link from Overview or Alerts (``?<param>=NAME&broker=B``) picks that item in the
    select box under ``key`` once; the parameter is then dropped so the user's choice sticks."""
    wanted = f"{st.query_params.get(param)}  ·  {st.query_params.get('broker', 'kafka')}"
    if param in st.query_params and wanted in labels:
        st.session_state[key] = wanted
        del st.query_params[param]
