"""Event catalog: every event type seen, its schema versions and inferred schema, who sends and reads it."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from eventscope.ui import data, format as fmt, session, widgets
from eventscope.graph.infer import schema_fields
from eventscope.registry import version_schema_id

WINDOWS = {"last 15 minutes": 900.0, "last hour": 3600.0, "last 6 hours": 21600.0,
           "last 24 hours": 86400.0}

session.config()
st.title("Event catalog")
st.caption("Every event type observed on the watched topics and streams, with its schema "
           "versions, producers (envelope source), consumer groups, rate and when it was first "
           "and last seen. Schemas are inferred from sampled payloads (personal data masked); "
           "payloads read through the Schema Registry also show their registered schema.")

window = st.columns([1, 3])[0].selectbox("Time window", list(WINDOWS), index=1, key="catalog_window")
table, shapes = data.event_catalog(WINDOWS[window])
share = table.attrs.get("share", 1.0)  # below 1: counted from that share of the correlation IDs
if table.empty:
    # events seen but none with a type (raw bytes, no envelope) is not "nothing yet": say so
    topics = [a for _, a in data.flow_graph(WINDOWS[window]).nodes(data=True) if a.get("kind") == "topic"]
    seen, bad = sum(a.get("events") or 0 for a in topics), sum(a.get("undecodable") or 0 for a in topics)
    if seen:
        st.info(f"**{seen:,} events seen in this window, {bad:,} of them not decodable**: no JSON, "
                "Avro, Protobuf or JSON Schema envelope with an event type that eventscope can read, so "
                "there is no event type to list. The Flow graph page still counts them per topic.",
                icon=":material/help:")
    else:
        widgets.empty_state("This page lists every event type that flows, who produces and consumes it, "
                            "and the JSON Schema inferred from its payloads.")
    st.stop()

LISTS = ("schema_versions", "producers", "clusters", "topics", "consumers")
# topics and consumers are named ``cluster:name``; the clusters an event type flows on, first
table = table.assign(clusters=table["topics"].map(lambda places: sorted({str(p).split(":", 1)[0] for p in places})))
shown = table.assign(event_type=table["event_type"].map(fmt.safe_text),
                     **{c: table[c].map(lambda v: fmt.safe_text(", ".join(v))) for c in LISTS})
shown = shown[["event_type", "clusters", *[c for c in shown.columns if c not in ("event_type", "clusters")]]]
st.dataframe(shown, hide_index=True, key="catalog_table", placeholder="—",
             column_config={
                 "event_type": st.column_config.TextColumn("event type"),
                 "schema_versions": st.column_config.TextColumn("versions"),
                 "clusters": st.column_config.TextColumn("clusters", help="the clusters it was seen on"),
                 "topics": st.column_config.TextColumn("on (cluster:topic)"),
                 "consumers": st.column_config.TextColumn("consumers (cluster:group)"),
                 "rate_per_s": st.column_config.NumberColumn("rate", format="%.2f /s"),
                 "dead_lettered": st.column_config.NumberColumn("dead-lettered"),
                 "first_seen": st.column_config.DatetimeColumn("first seen", format="MM-DD HH:mm:ss"),
                 "last_seen": st.column_config.DatetimeColumn("last seen", format="MM-DD HH:mm:ss")})

st.subheader("Event type details")
event_type = st.selectbox("Event type", list(table["event_type"]), key="catalog_type")
row = table[table["event_type"] == event_type].iloc[0]
st.text(f"Event type: {event_type}")
left, right = st.columns(2)
with left:
    st.markdown("**Produced by**")
    st.text("\n".join(row["producers"]) or "—")
    st.markdown("**On** (cluster:topic)")
    st.text("\n".join(row["topics"]) or "—")
with right:
    st.markdown("**Consumed by**")
    st.text("\n".join(row["consumers"]) or "—")
    st.markdown("**Seen**")
    st.text(f"{row['events']} events ({row['rate_per_s']:g}/s), "
            f"{row['dead_lettered']} dead-lettered\nfirst {row['first_seen']}\nlast {row['last_seen']}")

versions = sorted(v for (t, v) in shapes if t == event_type)
if not versions:
    st.info("No payload of this type was sampled yet.", icon=":material/data_object:")
for version in versions:
    shape = shapes[(event_type, version)]
    with st.expander(f"Schema version {fmt.md(version) if version else '(none)'} · {shape['sampled']} payloads sampled",
                     expanded=version == versions[-1]):
        where = shape.get("correlation_id")
        st.text(f"Correlation ID: {where or 'not found in payload or headers'}")
        if shape.get("payload"):
            fields = pd.DataFrame(schema_fields(shape["payload"]), columns=["field", "type", "required"])
            st.dataframe(fields.assign(field=fields["field"].map(fmt.safe_text)), hide_index=True,
                         key=f"catalog_fields_{version}", placeholder="—")
        else:
            st.text("No decodable payload in the sample.")
        if shape.get("headers"):
            st.text("Headers: " + ", ".join(sorted(shape["headers"].get("properties", {}))))
        st.caption("JSON Schema (genson)")
        st.json({"payload": shape.get("payload"), "headers": shape.get("headers")}, expanded=False)
        schema_id = version_schema_id(version)
        if schema_id is not None:  # read through the Schema Registry: its schema beside the inferred one
            # schema IDs belong to a registry: the one of the first cluster the type was seen on
            registered = data.registered_schema(schema_id, (row["clusters"] or [None])[0])
            st.markdown("**Registered schema** (Schema Registry)")
            st.dataframe(pd.DataFrame([{
                "subject": fmt.safe_text(registered["subject"] or "—"), "schema ID": str(schema_id),
                "type": registered["type"] or "—",
                "version": str(registered["version"]) if registered["version"] is not None else "—",
                "versions": ", ".join(map(str, registered["versions"])) or "—"}]),
                hide_index=True, key=f"catalog_registered_{version}")
            if registered["error"]:
                st.text(f"Registry: {registered['error']}")
            if registered["schema"]:
                st.code(registered["schema"], language="json" if registered["type"] in ("AVRO", "JSON") else None)
st.caption("Rates divide by the span of all events in the window, so event types compare."
           + (f" This window holds more events than one page reads: counts and rates come from 1 in "
              f"{round(1 / share)} correlation IDs (all events of each), scaled up." if share < 1 else ""))
