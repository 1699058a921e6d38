"""Traces: paste a correlation, trace or event ID and see every event that carried it."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from eventscope.ui import data, format as fmt, session, widgets
from eventscope.analysis import traces as trace_analysis
from eventscope.trace_view import waterfall
from eventscope.palette import RED_FILL

cfg = session.config()
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
    """Copy the correlation ID picked in one of the side tables into the lookup box."""
    rows = st.session_state[key].selection.rows
    table = st.session_state.get("_table_" + key)
    if rows and table is not None and rows[0] < len(table):
        st.session_state["trace_id"] = str(table.iloc[rows[0]]["correlation_id"])
        _to_url()


def _banner(trace: dict, events: pd.DataFrame) -> None:
    path = " → ".join(fmt.md(t) for t in dict.fromkeys(events["topic"].astype(str)))
    outcome = trace["outcome"]
    total = trace.get("events_total", len(events))
    words = (f"**{OUTCOME_WORDS.get(outcome, outcome)}** · {total:,} events · "
             f"{fmt.duration(events['after'].max() / 1000)} end to end  \n{path}")
    if outcome == "dead_lettered" and not events["dead_letter"].any():  # cut out of a long trace
        st.error(f"{words}  \nDied in a dead-letter queue", icon=":material/error:")
    elif outcome == "dead_lettered":
        dead = events[events["dead_letter"]].iloc[0]
        reason = dead.get("dlq_reason") or "no reason recorded"
        hop = next((h for h in trace["hops"] if h.get("dead_letter")), None)
        known = hop and hop.get("service") and hop["service"] != "dead-letter"
        by = f" by **{fmt.md(hop['service'])}**" if known else ""
        st.error(f"{words}  \nDied in **{fmt.md(dead['topic'])}** ({fmt.md(dead['broker'])}){by} "
                 f"as {fmt.md(dead['event_type'])}: {fmt.md(reason)}", icon=":material/error:")
    elif outcome == "in_flight":
        st.info(words, icon=":material/pending:")
    else:
        st.success(words, icon=":material/check_circle:")
    if total > len(events):
        half = trace.get("events_each_end", len(events) // 2)
        st.warning(f"This ID is carried by {total:,} events: the first {half:,} and the last {half:,} are shown "
                   "(and where it died, if in between), with the hops among them; the outcome counts all of them.",
                   icon=":material/content_cut:")


def _timeline(trace: dict) -> None:
    """Outcome banner, the waterfall, the events and hops, and each event's headers and payload."""
    events = pd.DataFrame(trace["events"])
    events["at"] = pd.to_datetime(events["at"], utc=True, format="ISO8601")
    events.insert(0, "after", (events["at"] - events["at"].min()).dt.total_seconds() * 1000)
    _banner(trace, events)
    st.plotly_chart(waterfall(trace), key="trace_waterfall", config={"displaylogo": False})
    if trace["hops"]:
        hops = pd.DataFrame(trace["hops"]).reindex(columns=["broker", "from_topic", "to_topic", "service", "latency_ms",
                                                            "broker_wait_ms", "service_ms", "split", "dead_letter"])
        hops = fmt.text_frame(hops, ["broker", "from_topic", "to_topic", "service", "split"])
        st.markdown("**Hops**: from one event to the next one it caused. Broker and service time are "
                    "split only where the lag samples show when the group took the event (estimated); "
                    "blank where the data cannot tell.")
        st.dataframe(hops.style.apply(lambda row: [f"background-color: {RED_FILL}" if row["dead_letter"]
                                                   else "" for _ in row], axis=1),
                     hide_index=True, placeholder="—", key="trace_hops",
                     column_config={"broker": st.column_config.TextColumn("cluster", help="the cluster of the event the hop ends at"),
                                    "from_topic": "from topic", "to_topic": "to topic",
                                    "latency_ms": st.column_config.NumberColumn("latency", format="%.0f ms"),
                                    "broker_wait_ms": st.column_config.NumberColumn("in broker", format="%.0f ms"),
                                    "service_ms": st.column_config.NumberColumn("in service", format="%.0f ms"),
                                    "dead_letter": "into DLQ"})
    shown = fmt.text_frame(events.reindex(columns=["after", "at", "broker", "kind", "topic", "event_type", "source",
                                                   "offset", "partition", "event_id", "dead_letter"]),
                           ["broker", "kind", "topic", "offset", "event_type", "source", "event_id"])
    st.dataframe(shown.style.apply(lambda row: [f"background-color: {RED_FILL}" if row["dead_letter"]
                                                else "" for _ in row], axis=1),
                 hide_index=True, placeholder="—", key="trace_events",
                 column_config={"after": st.column_config.NumberColumn("+ms", format="%.0f"),
                                "at": st.column_config.DatetimeColumn("time (UTC)",
                                                                      format="HH:mm:ss.SSS"),
                                "broker": "cluster", "source": "service", "dead_letter": "dead letter",
                                "event_type": "event type", "event_id": "event ID"})
    _details(trace)


def _details(trace: dict) -> None:
    """One event's headers and payload, as stored: personal data masked at collection."""
    options = list(range(len(trace["events"])))
    names = [f"{i + 1}. {e['topic']} · {e['event_type']} · offset {e['offset']}"
             + (" · dead letter" if e["dead_letter"] else "") for i, e in enumerate(trace["events"])]
    # open on the dead letter when there is one: that is the payload an on-call engineer wants
    first_dead = next((i for i, e in enumerate(trace["events"]) if e["dead_letter"]), 0)
    pick = st.selectbox("Event headers and payload", options, index=first_dead,
                        key=f"trace_event_pick:{str(trace['correlation_id'])[:80]}",
                        format_func=lambda i: fmt.safe_text(names[i], 200))
    event = trace["events"][pick if pick is not None and pick < len(options) else first_dead]
    st.caption("E-mail addresses, card-like and phone numbers and personal fields (name, e-mail, address, "
               "card, … and `mask.fields`) were masked when the event was stored.")
    left, right = st.columns([2, 3])
    with left:
        st.markdown("**Headers**")
        try:
            headers = json.loads(event.get("headers") or "{}")
        except ValueError:
            headers = {"(unreadable)": fmt.safe_text(event.get("headers"))}
        st.json({fmt.safe_text(k, 200): fmt.safe_text(v, mask=True) for k, v in headers.items()},
                expanded=True)
    with right:
        st.markdown("**Payload**")
        body = event.get("payload") or ""
        if body:
            try:
                body = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
            except ValueError:
                pass
            st.code(fmt.safe_text(body, 20_000, mask=True), language="json", wrap_lines=True)
        elif event.get("decode_error"):
            st.caption(f"Not decodable: {fmt.md(fmt.safe_text(event['decode_error'], 300))}. First characters:")
            st.code(fmt.safe_text(event.get("preview") or "(empty)", 2000, mask=True), language="text",
                    wrap_lines=True)
        elif event.get("preview"):
            st.caption("Only the first 300 characters were stored (the payload was over "
                       "`collect.payload_max_chars`, or stored before full payloads were kept):")
            st.code(fmt.safe_text(event["preview"], 2000, mask=True), language="text", wrap_lines=True)
        else:
            st.caption("No payload was stored for this event.")


def _side_table(table: pd.DataFrame, key: str, columns: list[str], empty: str) -> None:
    st.session_state["_table_" + key] = table
    if table.empty:
        st.caption(empty)
        return
    st.dataframe(fmt.styled(fmt.text_frame(table, ["correlation_id"]), "outcome"), hide_index=True,
                 placeholder="—", key=key, on_select=lambda: _pick(key), selection_mode="single-row",
                 height=min(36 * (len(table) + 1) + 4, 420),
                 column_order=columns,
                 column_config={"correlation_id": "correlation ID",
                                "duration_ms": st.column_config.NumberColumn("took", format="%.0f ms"),
                                "last_at": st.column_config.DatetimeColumn("last", format="HH:mm:ss")})


def _lists() -> None:
    """Recent, slowest and failed chains of the last hour, one click from the lookup."""
    table = data.trace_summary()
    st.subheader("Last hour")
    if table.empty:
        widgets.empty_state("Traces are built from the events eventscope reads; each correlation ID "
                       "becomes a timeline across topics and brokers.")
        return
    st.caption("Click a row to look it up.")
    recent_tab, slow_tab, failed_tab = st.tabs(["Recent", "Slowest", "Failed"])
    with recent_tab:
        counts = table["outcome"].value_counts()
        outcome = st.segmented_control(
            "Outcome", list(OUTCOME_WORDS), key="trace_outcome",
            format_func=lambda o: f"{OUTCOME_WORDS[o]} ({counts.get(o, 0)})")
        recent = table[table["outcome"] == outcome] if outcome else table
        _side_table(recent.head(50).reset_index(drop=True), "recent_traces",
                    ["correlation_id", "outcome", "last_at"], "None with this outcome.")
    with slow_tab:
        _side_table(trace_analysis.slowest(table, 20), "slow_traces", ["correlation_id", "duration_ms", "outcome"],
                    "No finished chain yet.")
    with failed_tab:
        _side_table(trace_analysis.failed(table, 20), "failed_traces", ["correlation_id", "last_at", "events"],
                    "No dead-lettered chain this hour.")


@st.fragment(run_every=cfg.dashboard.refresh_s)
def traces() -> None:
    """The lookup box and the found trace beside the recent/slowest/failed lists; refreshes itself."""
    main, side = st.columns([2, 1], gap="large")
    with main:
        some_id = st.text_input("Correlation ID, W3C trace ID or event ID", key="trace_id",
                                on_change=_to_url,
                                placeholder="e.g. 4f1c… (or pick one from the lists beside)")
        some_id = (some_id or "").strip()
        if some_id:
            trace = data.find_trace(some_id)
            if trace is None:
                st.warning(f"No event carrying **{fmt.md(some_id)}** in the stored history "
                           f"(last {cfg.store.retention_hours:g} h). Check for a typo, or the trace "
                           "may be older than the retention.", icon=":material/search_off:")
            else:
                _timeline(trace)
        else:
            st.caption("Paste an ID, or pick a chain from the lists: every event that carried it, across "
                       "topics and brokers, as a waterfall with the time of each hop.")
    with side:
        _lists()


_from_url()
traces()
