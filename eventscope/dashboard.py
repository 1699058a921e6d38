"""Dashboard plumbing shared by the pages: cached loaders, the sidebar, formatting helpers.

Pages only render: they get data through these loaders, which read the store (never a
broker), cached on ``Store.version`` so a rerun without new data costs a lookup.
``app.py`` loads the config once per run and hands it over with :func:`set_config`.
"""
from __future__ import annotations

import re
import pandas as pd
import streamlit as st

from eventscope.analysis import alerts as alert_rules
from eventscope.analysis import dlq as dlq_analysis
from eventscope.analysis import lag as lag_analysis
from eventscope.analysis import traces as trace_analysis
from eventscope.config import AlertsConfig, Config
from eventscope.mask import mask_text
from eventscope.store import Retention, Store

WINDOW_S = 3600.0  # history the charts and the graph look at
CACHE_TTL_S = 300  # safety net only: the version in the key changes with new data
_RED, _AMBER, _GREEN = "#f9c0c0", "#fde3a7", "#d9f0d3"
STATUS_COLORS = {"OK": _GREEN, "WARN": _AMBER, "ERR": _RED, "STOP": _RED, "STALL": _RED,
                 "REWIND": _RED, "UNKNOWN": "#e8e8e8", "completed": _GREEN, "in_flight": "#dbe8f7",
                 "dead_lettered": _RED, "critical": _RED, "warning": _AMBER}
_CONFIG_KEY, _COLLECTOR_KEY = "_eventscope_config", "_eventscope_collector"  # session_state


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
        from streamlit.runtime.pages_manager import PagesManager
        PagesManager.uses_pages_directory = False
        st.rerun()
    return st.session_state[_CONFIG_KEY]


def _key(cfg: Config) -> tuple[str, float, int]:
    return (str(cfg.store_dir.resolve()), float(cfg.store.retention_hours), int(cfg.store.max_rows))


@st.cache_resource(show_spinner=False)
def _store(key: tuple[str, float, int]) -> Store:
    """One Store per directory and process (it caches decoded Parquet parts)."""
    return Store(key[0], Retention(max_age_s=key[1] * 3600.0, max_rows=key[2]))


def versions(*names: str) -> tuple[str, ...]:
    """Cache key: the store versions of ``names``."""
    store = _store(_key(config()))
    return tuple(store.version(n) for n in names)


# cache_resource, not cache_data: a hit returns the same frame instead of unpickling a copy
# of hours of events. Callers treat frames as read-only (assign/copy, never in-place), and
# only the newest version of each (frame, window) matters, so a dozen entries suffice.
@st.cache_resource(ttl=120, max_entries=12, show_spinner=False)
def _read(key: tuple, name: str, version: str, window_s: float) -> pd.DataFrame:
    since = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=window_s)
    return _store(key).read(name, since=since)


def frame(name: str, window_s: float = WINDOW_S) -> pd.DataFrame:
    """Rows of frame ``name`` over the last ``window_s`` seconds (cached)."""
    return _read(_key(config()), name, *versions(name), window_s)


@st.cache_data(ttl=CACHE_TTL_S, max_entries=16, show_spinner=False)
def _lag_groups(key: tuple, version: str) -> pd.DataFrame:
    return lag_analysis.group_summary(lag_analysis.latest_lag(_read(key, "lag", version, WINDOW_S)))


def lag_groups() -> pd.DataFrame:
    """Lag per broker/group/topic with the worst status."""
    return _lag_groups(_key(config()), *versions("lag"))


@st.cache_data(ttl=CACHE_TTL_S, max_entries=16, show_spinner=False)
def _lag_partitions(key: tuple, version: str) -> pd.DataFrame:
    return lag_analysis.latest_lag(_read(key, "lag", version, WINDOW_S))


def lag_partitions() -> pd.DataFrame:
    """The newest lag row per partition with its ``status`` (``latest_lag``)."""
    return _lag_partitions(_key(config()), *versions("lag"))


LAG_TABLE_COLUMNS = ["status", "broker", "group", "topic", "partitions", "lag", "max_lag",
                     "lag_seconds", "behind", "members", "group_state"]


@st.cache_data(ttl=CACHE_TTL_S, max_entries=16, show_spinner=False)
def _lag_table(key: tuple, version: str) -> pd.DataFrame:
    latest = _lag_partitions(key, version)
    if latest.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in LAG_TABLE_COLUMNS})
    by = ["broker", "group", "topic"]
    summary = lag_analysis.group_summary(latest)
    extra = latest.groupby(by, observed=True, sort=False).agg(
        max_lag=("lag", "max"),
        group_state=("group_state", lambda s: ", ".join(sorted({str(v) for v in s.dropna()}))))
    out = summary.merge(extra.reset_index(), on=by, how="left")
    out["lag"] = pd.to_numeric(out["lag"], errors="coerce").astype("Int64")
    out["max_lag"] = pd.to_numeric(out["max_lag"], errors="coerce").astype("Int64")
    out["members"] = pd.to_numeric(out["members"], errors="coerce").astype("Int64")
    out["lag_seconds"] = pd.to_numeric(out["lag_seconds"], errors="coerce").astype("float64")
    out["behind"] = out["lag_seconds"].map(duration_short)
    # top laggards first: worst status, then the oldest unconsumed message
    severity = out["status"].map(lag_analysis.SEVERITY).fillna(0)
    out = out.assign(_sev=-severity, _sec=-out["lag_seconds"].fillna(-1.0)).sort_values(
        ["_sev", "_sec", "lag", "broker", "group", "topic"], kind="stable", na_position="last")
    return out[LAG_TABLE_COLUMNS].reset_index(drop=True)


def lag_table() -> pd.DataFrame:
    """Per broker/group/topic: worst status, total and max partition lag, seconds behind
    (``lag_seconds`` and as words in ``behind``), members; worst first."""
    return _lag_table(_key(config()), *versions("lag"))


@st.cache_data(ttl=CACHE_TTL_S, max_entries=32, show_spinner=False)
def _group_history(key: tuple, version: str, broker: str, group: str) -> pd.DataFrame:
    lag = _read(key, "lag", version, WINDOW_S)
    lag = lag[(lag["broker"] == broker) & (lag["group"] == group)]
    if lag.empty:
        return pd.DataFrame(columns=["sampled_at", "series", "lag", "lag_seconds"])
    out = lag.groupby(["sampled_at", "topic"], observed=True).agg(
        lag=("lag", "sum"), lag_seconds=("lag_seconds", "max")).reset_index()
    return out.rename(columns={"topic": "series"})


def group_history(broker: str, group: str) -> pd.DataFrame:
    """Lag of one group over time, one ``series`` per topic (messages and seconds)."""
    return _group_history(_key(config()), *versions("lag"), str(broker), str(group))


def _current(key: tuple, stamp: tuple, name: str, broker: str, group: str) -> pd.DataFrame:
    """Rows of ``name`` (consumers/stuck) for a group taken with its newest lag sample.

    A collector writes the lag, consumers and stuck rows of one run with the same time and
    writes nothing for an empty frame, so only rows at the group's newest lag time are
    current: older ones describe members or entries that may be long gone."""
    lag = _read(key, "lag", stamp[0], WINDOW_S)
    rows = _read(key, name, stamp[1], WINDOW_S)
    lag = lag[(lag["broker"] == broker) & (lag["group"] == group)]
    rows = rows[(rows["broker"] == broker) & (rows["group"] == group)]
    if lag.empty or rows.empty:
        return rows.iloc[0:0]
    newest = lag.groupby("source", observed=True)["sampled_at"].max().rename("_newest")
    rows = rows.join(newest, on="source")
    return rows[rows["sampled_at"] == rows["_newest"]].drop(columns="_newest")


@st.cache_data(ttl=CACHE_TTL_S, max_entries=32, show_spinner=False)
def _group_members(key: tuple, stamp: tuple, broker: str, group: str) -> pd.DataFrame:
    rows = _current(key, stamp, "consumers", broker, group)
    cols = ["consumer", "host", "assignment", "topic", "pending", "idle_ms"]
    return rows.sort_values(["consumer", "topic"], kind="stable")[cols].reset_index(drop=True)


def group_members(broker: str, group: str) -> pd.DataFrame:
    """Members of a group in its newest sample: Kafka client id/host/assignment, Redis
    consumer with pending entries and idle time; empty when none were reported."""
    return _group_members(_key(config()), versions("lag", "consumers"), str(broker), str(group))


@st.cache_data(ttl=CACHE_TTL_S, max_entries=32, show_spinner=False)
def _stuck_entries(key: tuple, stamp: tuple, broker: str, group: str) -> pd.DataFrame:
    rows = _current(key, stamp, "stuck", broker, group)
    cols = ["entry_id", "topic", "consumer", "deliveries", "idle_ms"]
    return rows.sort_values(["idle_ms", "deliveries"], ascending=False,
                            kind="stable")[cols].reset_index(drop=True)


def stuck_entries(broker: str, group: str) -> pd.DataFrame:
    """Redis pending entries of a group that look stuck (newest sample), idlest first."""
    return _stuck_entries(_key(config()), versions("lag", "stuck"), str(broker), str(group))


def newest_sample(name: str = "lag") -> pd.Timestamp | None:
    """Time of the newest row of ``name`` in the store (from its manifest; any age)."""
    try:
        newest = _store(_key(config())).newest_time(name)
    except (OSError, ValueError, KeyError):
        return None
    return None if newest is None or pd.isna(newest) else pd.Timestamp(newest).tz_convert("UTC")


def stale_after_s(cfg: Config | None = None) -> float:
    """Data older than this is stale: three refreshes or collector intervals, the longer."""
    cfg = cfg or config()
    return 3.0 * max(float(cfg.dashboard.refresh_s), float(cfg.collect.interval_s))


@st.cache_data(ttl=CACHE_TTL_S, max_entries=8, show_spinner=False)
def _collector_status(key: tuple, version: str) -> pd.DataFrame:
    cols = ["source", "collector", "ok", "last_run", "last_success", "last_error", "last_error_at"]
    store = _store(key)
    newest = store.newest_time("health")
    if newest is None:
        return pd.DataFrame(columns=cols)
    health = store.read("health", since=pd.Timestamp(newest) - pd.Timedelta(seconds=WINDOW_S))
    if health.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for (source, collector), runs in health.groupby(["source", "collector"], observed=True, sort=True):
        last = runs.iloc[-1]
        failed = runs[~runs["ok"] & (runs["error"].fillna("") != "")]
        rows.append({"source": source, "collector": collector, "ok": bool(last["ok"]),
                     "last_run": last["sampled_at"], "last_success": last["last_success"],
                     "last_error": failed["error"].iloc[-1] if not failed.empty else "",
                     "last_error_at": failed["sampled_at"].iloc[-1] if not failed.empty else pd.NaT})
    return pd.DataFrame(rows, columns=cols)


def collector_status() -> pd.DataFrame:
    """Per source/collector: last run, ok, last success, last error and when (health frame)."""
    return _collector_status(_key(config()), *versions("health"))


@st.cache_data(ttl=CACHE_TTL_S, max_entries=16, show_spinner=False)
def _dlq_summary(key: tuple, version: str) -> pd.DataFrame:
    return dlq_analysis.summary(_read(key, "dlq", version, WINDOW_S))


def dlq_summary() -> pd.DataFrame:
    """One row per dead-letter queue (depth, growth, oldest age, reasons)."""
    return _dlq_summary(_key(config()), *versions("dlq"))


# -- dead letters: overview, one DLQ's reasons over time and recent messages -------
DLQ_TABLE_COLUMNS = ["broker", "dlq", "source_topic", "depth", "growth_per_min", "history",
                     "oldest", "oldest_age_seconds", "reasons", "unprocessed",
                     "pre_dlq_pressure", "empty"]
DLQ_MESSAGE_COLUMNS = ["at", "partition", "offset", "event_type", "correlation_id",
                       "original_topic", "reason", "dlq_class", "size_bytes", "decode_error",
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


def _text_columns(df: pd.DataFrame, columns, mask=()) -> pd.DataFrame:
    out = df.copy()
    for col in columns:
        if col in out:
            out[col] = out[col].map(lambda v, m=col in mask: safe_text(v, mask=m)).astype("object")
    return out


def text_frame(df: pd.DataFrame, columns, mask=()) -> pd.DataFrame:
    """``df`` with ``columns`` as displayable text (see :func:`safe_text`)."""
    return _text_columns(df, columns, mask)


@st.cache_data(ttl=CACHE_TTL_S, max_entries=16, show_spinner=False)
def _dlq_table(key: tuple, stamp: tuple) -> pd.DataFrame:
    dlq, lag, stuck = (_read(key, n, v, WINDOW_S) for n, v in zip(("dlq", "lag", "stuck"), stamp))
    summary = dlq_analysis.summary(dlq, lag=lag, stuck=stuck)
    if summary.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in DLQ_TABLE_COLUMNS})
    out = summary.copy()
    for col in ("unprocessed", "pre_dlq_pressure"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("Int64")
    # depth per minute over the hour (the sparkline) and whether it ever held a message
    dlq = dlq.assign(_minute=dlq["sampled_at"].dt.floor("1min"))
    per_minute = (dlq.sort_values("sampled_at", kind="stable")
                  .groupby(["broker", "dlq", "_minute"], observed=True)["depth"].last())
    history = {k: [int(v) for v in s.tolist()]
               for k, s in per_minute.groupby(level=[0, 1], observed=True)}
    out["history"] = [history.get((b, d), []) for b, d in zip(out["broker"], out["dlq"])]
    out["empty"] = [(int(depth) == 0 and max(h or [0]) == 0 and not reasons)
                    for depth, h, reasons in zip(out["depth"], out["history"], out["reasons"])]
    out["oldest"] = [duration(a) if not e else "—"
                     for a, e in zip(out["oldest_age_seconds"], out["empty"])]
    out["reasons"] = out["reasons"].map(lambda r: [{"reason": safe_text(x["reason"], 300),
                                                    "count": x["count"]} for x in r])
    out = _text_columns(out, ["broker", "dlq", "source_topic"])
    # filling queues first (deepest, then fastest growing), empty ones last
    out = out.assign(_g=-out["growth_per_min"].fillna(0)).sort_values(
        ["empty", "depth", "_g", "broker", "dlq"], ascending=[True, False, True, True, True],
        kind="stable")
    return out[DLQ_TABLE_COLUMNS].reset_index(drop=True)


def dlq_table() -> pd.DataFrame:
    """One row per DLQ: depth, growth/min, depth per minute over the hour (``history``),
    oldest age (seconds and words), reasons (list, biggest first), ``unprocessed``,
    ``pre_dlq_pressure`` and ``empty`` (never held a message this hour); filling ones first."""
    return _dlq_table(_key(config()), versions("dlq", "lag", "stuck"))


@st.cache_data(ttl=CACHE_TTL_S, max_entries=32, show_spinner=False)
def _dlq_reasons_over_time(key: tuple, version: str, broker: str, dlq: str) -> pd.DataFrame:
    events = _read(key, "events", version, WINDOW_S)
    out = dlq_analysis.reasons_over_time(events, broker, dlq, freq="1min")
    return _text_columns(out, ["reason"]) if not out.empty else out


def dlq_reasons_over_time(broker: str, dlq: str) -> pd.DataFrame:
    """Dead letters of one DLQ per minute and reason (``minute, reason, count``)."""
    return _dlq_reasons_over_time(_key(config()), *versions("events"), str(broker), str(dlq))


@st.cache_data(ttl=CACHE_TTL_S, max_entries=32, show_spinner=False)
def _dlq_messages(key: tuple, version: str, broker: str, dlq: str, limit: int) -> pd.DataFrame:
    events = _read(key, "events", version, WINDOW_S)
    out = dlq_analysis.recent_messages(events, broker, dlq, limit=limit)
    if out.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in DLQ_MESSAGE_COLUMNS})
    out = out.reindex(columns=DLQ_MESSAGE_COLUMNS).reset_index(drop=True)
    # the payload preview is masked upstream; masking again here costs little and means an
    # address never reaches the page even from a row written before masking existed
    return _text_columns(out, ["offset", "event_type", "correlation_id", "original_topic", "reason",
                               "dlq_class", "decode_error", "headers", "preview"],
                         mask=("headers", "preview", "decode_error", "reason"))


def dlq_messages(broker: str, dlq: str, limit: int = 100) -> pd.DataFrame:
    """The newest dead letters of one DLQ (metadata, reason, masked headers and preview)."""
    return _dlq_messages(_key(config()), *versions("events"), str(broker), str(dlq), int(limit))


@st.cache_data(ttl=CACHE_TTL_S, max_entries=16, show_spinner=False)
def _trace_summary(key: tuple, version: str, quiet_s: float) -> pd.DataFrame:
    return trace_analysis.summary(_read(key, "events", version, WINDOW_S), quiet_s=quiet_s)


def trace_summary() -> pd.DataFrame:
    """Per correlation ID of the last hour: first/last time, events, duration, outcome (newest first)."""
    cfg = config()
    return _trace_summary(_key(cfg), *versions("events"), float(cfg.traces.quiet_s))


def recent_traces(limit: int = 50) -> pd.DataFrame:
    """The newest correlation IDs with their outcome."""
    return trace_summary().head(limit).reset_index(drop=True)


@st.cache_resource(show_spinner=False)
def _trace_index(key: tuple):
    """One incremental trace index per store and process (see ``analysis/trace_index.py``)."""
    from eventscope.analysis.trace_index import StoreTraceIndex
    return StoreTraceIndex(_store(key))


@st.cache_data(ttl=CACHE_TTL_S, max_entries=32, show_spinner=False)
def _find_trace(key: tuple, stamp: tuple, some_id: str, quiet_s: float) -> dict | None:
    rows = _trace_index(key).lookup(some_id)
    if rows.empty:
        return None
    store = _store(key)
    history = store.read("lag", since=rows["at"].min() - pd.Timedelta(seconds=60),
                         until=rows["at"].max() + pd.Timedelta(seconds=300))
    return trace_analysis.from_rows(rows, lag=_read(key, "lag", stamp[1], 120.0), lag_history=history,
                                    quiet_s=quiet_s, details=True)


def find_trace(some_id: str) -> dict | None:
    """The trace ``some_id`` names (correlation, trace or event ID), or None."""
    cfg = config()
    return _find_trace(_key(cfg), versions("events", "lag"), some_id, float(cfg.traces.quiet_s))


@st.cache_resource(ttl=CACHE_TTL_S, max_entries=4, show_spinner=False)
def _alerts(key: tuple, stamp: tuple, rules_key: str, _cfg: AlertsConfig) -> dict:
    """Firing alerts, the rule table and the hour's transitions, computed once per data version."""
    from eventscope import alerts_view
    store = _store(key)
    observations = alerts_view.current_observations(store, _cfg)
    if alerts_view.evaluated(store):
        history = store.read("alerts", since=pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=WINDOW_S))
        state = alerts_view.alert_state.from_history(store.read("alerts"))
    else:  # nobody evaluates this store (collector off or an old one): replay the rules
        state, history = alerts_view.fallback(store, _cfg)
    return {"firing": alert_rules.firing_frame(state, observations), "history": history,
            "rules": alert_rules.rule_table(_cfg.all_rules(), observations, state)}


def _alert_view(part: str) -> pd.DataFrame:
    cfg = config()
    return _alerts(_key(cfg), versions("lag", "dlq", "stuck", "health", "alerts"), repr(cfg.alerts),
                   cfg.alerts)[part]


def firing_alerts() -> pd.DataFrame:
    """Alerts firing now (rule, severity, subject, value, threshold, since, metric, fired_at, ...)."""
    return _alert_view("firing")


def alert_history() -> pd.DataFrame:
    """Alert transitions (``alerts`` frame) over the last hour."""
    return _alert_view("history")


def alert_rules_now() -> pd.DataFrame:
    """Every rule and subject: current value against its thresholds, and its alert state."""
    return _alert_view("rules")


@st.cache_data(ttl=CACHE_TTL_S, max_entries=8, show_spinner=False)
def _what_if(key: tuple, stamp: tuple, rules_key: str, _rules: list, _cfg: AlertsConfig) -> pd.DataFrame:
    from eventscope.alerts_view import what_if
    return what_if(_store(key), _rules, _cfg, window_s=WINDOW_S, max_steps=180)[1]


def what_if_transitions(rules: list) -> pd.DataFrame:
    """Transitions ``rules`` would have made over the last hour of stored frames."""
    cfg = config()
    return _what_if(_key(cfg), versions("lag", "dlq", "stuck", "health"), repr(rules), rules, cfg.alerts)


# -- flow graph and event catalog (graph/): built per time window, drawn by the pages --
@st.cache_data(ttl=CACHE_TTL_S, max_entries=8, show_spinner=False)
def _graph(key: tuple, stamp: tuple, window_s: float):
    from eventscope.graph.build import build_graph
    events, lag, dlq = (_read(key, n, v, window_s) for n, v in zip(("events", "lag", "dlq"), stamp))
    return build_graph(events, lag, dlq)


def flow_graph(window_s: float = WINDOW_S):
    """The flow graph (networkx) of the last ``window_s`` seconds of traffic."""
    return _graph(_key(config()), versions("events", "lag", "dlq"), float(window_s))


@st.cache_data(ttl=CACHE_TTL_S, max_entries=8, show_spinner=False)
def _asyncapi(key: tuple, stamp: tuple, window_s: float, hosts: tuple) -> dict:
    from eventscope.graph.asyncapi import asyncapi_documents
    return asyncapi_documents(_graph(key, stamp, window_s), _read(key, "events", stamp[0], window_s),
                              dict(hosts))


def asyncapi(window_s: float = WINDOW_S) -> dict[str, dict]:
    """AsyncAPI 3.0 document per service, as ``eventscope graph --format asyncapi`` prints."""
    from eventscope.graph.asyncapi import server_hosts
    cfg = config()
    hosts = tuple(sorted(server_hosts(cfg.kafka.bootstrap, cfg.redis.url).items()))
    return _asyncapi(_key(cfg), versions("events", "lag", "dlq"), float(window_s), hosts)


@st.cache_data(ttl=CACHE_TTL_S, max_entries=8, show_spinner=False)
def _catalog(key: tuple, stamp: tuple, window_s: float) -> tuple[pd.DataFrame, dict]:
    from eventscope.graph.catalog import event_catalog, event_shapes
    events = _read(key, "events", stamp[0], window_s)
    return event_catalog(events, _graph(key, stamp, window_s)), event_shapes(events)


def event_catalog(window_s: float = WINDOW_S) -> tuple[pd.DataFrame, dict]:
    """(one row per event type, inferred shape per (event type, schema version))."""
    return _catalog(_key(config()), versions("events", "lag", "dlq"), float(window_s))


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
    health = frame("health", 900.0)
    data = pd.concat([frame("lag", 900.0)[["source", "sampled_at"]],
                      frame("events", 900.0)[["source", "observed_at"]].rename(
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


def open_from_link(param: str, key: str, labels) -> None:
    """A link from Overview or Alerts (``?<param>=NAME&broker=B``) picks that item in the
    select box under ``key`` once; the parameter is then dropped so the user's choice sticks."""
    wanted = f"{st.query_params.get(param)}  ·  {st.query_params.get('broker', 'kafka')}"
    if param in st.query_params and wanted in labels:
        st.session_state[key] = wanted
        del st.query_params[param]
