"""Traces: paste a correlation, trace or event ID and see every event that carried it."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from eventscope import dashboard as ui

cfg = ui.config()
st.title("Traces")
OUTCOME_WORDS = {"completed": "completed", "in_flight": "still in flight",
                 "dead_lettered": "dead-lettered"}


def _from_url() -> None:
    """``/traces?id=…`` (the Dead letters page links here): pre-fill the lookup once per ID.

    Only a new ``id`` (or a fresh visit, when the box's state is gone) writes the box, so
    the user's later edits stand; an edit keeps the URL in step (see :func:`_to_url`)."""
    wanted = st.query_params.get("id")
    if not wanted or not wanted.strip():
        return
    if st.session_state.get("_trace_url_id") != wanted or "trace_id" not in st.session_state:
        st.session_state["trace_id"] = wanted.strip()[:500]
        st.session_state["_trace_url_id"] = wanted


def _to_url() -> None:
    """Keep ``?id=`` in step with the lookup box, so a reload shows what the user typed."""
    value = (st.session_state.get("trace_id") or "").strip()
    if value:
        st.query_params["id"] = value
        st.session_state["_trace_url_id"] = value
    elif "id" in st.query_params:
        del st.query_params["id"]
        st.session_state.pop("_trace_url_id", None)


def _pick(key: str) -> None:
    """Copy the correlation ID picked in the recent table into the lookup box."""
    rows = st.session_state[key].selection.rows
    table = st.session_state.get("_recent_traces")
    if rows and table is not None and rows[0] < len(table):
        st.session_state["trace_id"] = str(table.iloc[rows[0]]["correlation_id"])
        _to_url()


def _timeline(trace: dict) -> None:
    """Outcome banner, the event timeline and the hops of one trace."""
    events = pd.DataFrame(trace["events"])
    events["at"] = pd.to_datetime(events["at"], utc=True, format="ISO8601")
    events.insert(0, "after", (events["at"] - events["at"].min()).dt.total_seconds() * 1000)
    path = " → ".join(ui.md(t) for t in dict.fromkeys(events["topic"].astype(str)))
    outcome = trace["outcome"]
    words = (f"**{OUTCOME_WORDS.get(outcome, outcome)}** · {len(events)} events · "
             f"{ui.duration(events['after'].max() / 1000)} end to end  \n{path}")
    if outcome == "dead_lettered":
        dead = events[events["dead_letter"]].iloc[0]
        reason = dead.get("dlq_reason") or "no reason recorded"
        st.error(f"{words}  \nDied in **{ui.md(dead['topic'])}** ({ui.md(dead['broker'])}) "
                 f"as {ui.md(dead['event_type'])}: {ui.md(reason)}", icon=":material/error:")
    elif outcome == "in_flight":
        st.info(words, icon=":material/pending:")
    else:
        st.success(words, icon=":material/check_circle:")
    shown = events[["after", "at", "broker", "topic", "partition", "offset", "event_type",
                    "source", "event_id", "dead_letter"]]
    st.dataframe(shown.style.apply(lambda row: ["background-color: #f9c0c0" if row["dead_letter"]
                                                else "" for _ in row], axis=1),
                 hide_index=True, placeholder="—", key="trace_events",
                 column_config={"after": st.column_config.NumberColumn("+ms", format="%.0f"),
                                "at": st.column_config.DatetimeColumn("time (UTC)",
                                                                      format="HH:mm:ss.SSS"),
                                "source": "service", "dead_letter": "dead letter",
                                "event_type": "event type", "event_id": "event ID"})
    if trace["hops"]:
        st.markdown("**Hops** (time from one event to the next one it caused)")
        st.dataframe(pd.DataFrame(trace["hops"]), hide_index=True, placeholder="—", key="trace_hops",
                     column_config={"from_topic": "from topic", "to_topic": "to topic",
                                    "latency_ms": st.column_config.NumberColumn(
                                        "latency", format="%.0f ms")})


@st.fragment(run_every=cfg.dashboard.refresh_s)
def traces() -> None:
    """The lookup box, the found trace and the recent correlation IDs; refreshes itself."""
    some_id = st.text_input("Correlation ID, W3C trace ID or event ID", key="trace_id",
                            on_change=_to_url,
                            placeholder="e.g. 4f1c… (or pick one from the recent list below)")
    some_id = (some_id or "").strip()
    if some_id:
        trace = ui.find_trace(some_id)
        if trace is None:
            st.warning(f"No event carrying **{ui.md(some_id)}** in the stored history "
                       f"(last {cfg.store.retention_hours:g} h). Check for a typo, or the trace "
                       "may be older than the retention.", icon=":material/search_off:")
        else:
            _timeline(trace)
    recent = ui.recent_traces(limit=1000)
    st.subheader("Recent correlation IDs")
    if recent.empty:
        ui.empty_state("Traces are built from the events eventscope reads; each correlation ID "
                       "becomes a timeline across topics and brokers.")
        return
    counts = recent["outcome"].value_counts()
    outcome = st.segmented_control(
        "Outcome", list(OUTCOME_WORDS), key="trace_outcome",
        format_func=lambda o: f"{OUTCOME_WORDS[o]} ({counts.get(o, 0)})")
    if outcome:
        recent = recent[recent["outcome"] == outcome]
    recent = recent.head(50).reset_index(drop=True)
    st.session_state["_recent_traces"] = recent
    st.caption("The newest 50 of the last hour; click a row to look it up.")
    st.dataframe(ui.styled(recent, "outcome"), hide_index=True, placeholder="—", key="recent_traces",
                 on_select=lambda: _pick("recent_traces"), selection_mode="single-row",
                 height=320, column_config={
                     "correlation_id": "correlation ID",
                     "first_at": st.column_config.DatetimeColumn("first", format="HH:mm:ss"),
                     "last_at": st.column_config.DatetimeColumn("last", format="HH:mm:ss")})


_from_url()
traces()
