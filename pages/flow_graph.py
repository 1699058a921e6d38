"""Flow graph: producers → topics → consumer groups, reconstructed from observed traffic."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from eventscope import dashboard as ui

cfg = ui.config()
st.title("Flow graph")
st.caption("Built from the last hour of observed traffic, not from documentation. "
           "Boxes: :blue[producing services] and :orange[consumer groups] · ovals: "
           ":green[topics/streams] and :red[dead-letter queues] · edge width = event rate · "
           "dashed grey = topic→topic causation through a service · red border = group in "
           "trouble. Hover a node or edge for details; drag nodes to untangle.")


@st.fragment(run_every=max(cfg.dashboard.refresh_s, 15))
def flow_graph() -> None:
    """The pyvis graph and its edge table; refreshes itself (at most every 15 s)."""
    document, page, _, height = ui.flow_graph()
    if not document["nodes"]:
        ui.empty_state("This page draws which service produces to which topic, which consumer "
                       "group reads it, where failures are dead-lettered, and how one topic's "
                       "events cause the next.")
        return
    st.iframe(page, height=height + 40, alt="producer, topic and consumer-group flow graph")
    edges = pd.DataFrame(document["edges"])
    st.subheader("Edges")
    st.dataframe(edges.sort_values(["kind", "rate_per_s"], ascending=[True, False]),
                 hide_index=True, key="graph_edges", placeholder="—",
                 column_config={"rate_per_s": st.column_config.NumberColumn("rate", format="%.2f /s"),
                                "p50_latency_ms": st.column_config.NumberColumn("p50", format="%.0f ms"),
                                "p95_latency_ms": st.column_config.NumberColumn("p95", format="%.0f ms")})


flow_graph()


@st.fragment
def downloads() -> None:
    """Export buttons (the same documents as ``eventscope graph --format json|dot``)."""
    document, _, dot, _ = ui.flow_graph()
    if not document["nodes"]:
        return
    left, right, _ = st.columns([1, 1, 4])
    left.download_button("Download JSON", json.dumps(document, indent=2), "eventscope-graph.json",
                         "application/json", key="graph_json")
    right.download_button("Download DOT", dot, "eventscope-graph.dot",
                          "text/vnd.graphviz", key="graph_dot")


downloads()
