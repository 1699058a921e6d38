"""Flow graph: producers → topics → consumer groups, reconstructed from observed traffic."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from eventscope.ui import data, session, widgets
from eventscope.graph.export import to_dot, to_json
from eventscope.graph.render import LEGEND_HEIGHT, canvas_size, drawn, to_html
from eventscope.graph.view import filter_graph, neighbourhood, readable

WINDOWS = {"last 15 minutes": 900.0, "last hour": 3600.0, "last 6 hours": 21600.0,
           "last 24 hours": 86400.0}
MAX_NODES = 120  # past this, shards and name prefixes are collapsed unless asked otherwise

cfg = session.config()
st.title("Flow graph")
st.caption("Built from observed traffic, not from documentation: who produces to which topic, "
           "which consumer groups read it, where failures are dead-lettered, and which topic "
           "leads to which through which service. Colour = health, line width = event rate. "
           "Hover a node or an edge for its numbers; drag nodes to untangle. The clusters drawn are "
           "the ones chosen in the sidebar; with more than one, each node names its cluster.")

window_col, name_col, focus_col, hops_col = st.columns([1.2, 1.6, 2.6, 0.8])
window = window_col.selectbox("Time window", list(WINDOWS), index=1, key="graph_window")
full = data.flow_graph(WINDOWS[window])
built = [full]  # the drawing's first run (this one) draws this graph; its own reruns load anew
pattern = name_col.text_input("Name filter", key="graph_pattern", placeholder="pay* or orders",
                              help="A glob (pay*) or a part of a name; matches are shown with "
                                   "their direct neighbours.")
labels = {f"{a.get('label')} · {a.get('kind')}" + (f" · {a['broker']}" if a.get("broker") else ""): n
          for n, a in full.nodes(data=True)}  # what the picker shows -> node ID
picked = focus_col.selectbox("Focus on", sorted(labels, key=str.lower), index=None, key="graph_focus",
                             placeholder="a service, topic, group or DLQ")
focus = labels.get(picked)
hops = hops_col.number_input("Hops", min_value=1, max_value=6, value=1, key="graph_hops",
                             help="How far from the focused node to draw.")
everything = st.toggle("Show every node (no collapsing)", value=False, key="graph_everything",
                       help=f"Past {MAX_NODES} nodes, healthy consumer groups are drawn as one node "
                            "per topic (or per broker), then shards of one stream and names sharing a "
                            "prefix as one node each. Groups in trouble are always drawn on their own; "
                            "focus on any node to see its neighbourhood in full.")


def _view(graph):
    """The graph as chosen above: name filter, focus, collapsing; and what was done (the
    chosen clusters' traffic is all the graph holds)."""
    view = filter_graph(graph, None, pattern)
    if focus:
        view = neighbourhood(view if focus in view else graph, focus, int(hops))
    steps = []
    if not everything:
        view, steps = readable(view, MAX_NODES)
    return view, steps


@st.fragment(run_every=max(cfg.dashboard.refresh_s, 15))
def flow_graph() -> None:
    """The pyvis graph and its edge table; refreshes itself (at most every 15 s)."""
    # newest data on each refresh (cached per store version); the page's own run has it already:
    # while a collector writes, the store changes within a run and asking again builds it again
    full = built.pop() if built else data.flow_graph(WINDOWS[window])
    if not full.number_of_nodes():
        widgets.empty_state("This page draws which service produces to which topic, which consumer "
                       "group reads it, where failures are dead-lettered, and how one topic's "
                       "events cause the next.")
        return
    view, steps = _view(full)
    if not view.number_of_nodes():
        st.info("No node matches these filters.", icon=":material/filter_alt_off:")
        return
    shown = drawn(view).number_of_nodes()
    note = f"{shown} of {full.number_of_nodes()} nodes drawn"
    if full.graph.get("share", 1.0) < 1:
        note += (f" · event counts and rates from 1 in {round(1 / full.graph['share'])} correlation IDs "
                 "of the window, scaled up (latencies are theirs)")
    if steps:
        note += (" · " + ", ".join(steps) + " (focus on a node, or turn on “Show every node”, "
                 "to expand)")
    st.caption(note)
    height = canvas_size(view)[1] + LEGEND_HEIGHT + 40
    widgets.html_frame(to_html(view), height)
    edges = pd.DataFrame(to_json(view)["edges"])
    st.subheader("Edges")
    st.dataframe(edges.sort_values(["kind", "rate_per_s"], ascending=[True, False]),
                 hide_index=True, key="graph_edges", placeholder="—",
                 column_config={"rate_per_s": st.column_config.NumberColumn("rate", format="%.2f /s"),
                                "p50_latency_ms": st.column_config.NumberColumn("p50", format="%.0f ms"),
                                "p95_latency_ms": st.column_config.NumberColumn("p95", format="%.0f ms")})


flow_graph()


@st.fragment
def downloads() -> None:
    """Export buttons: the drawn graph as JSON and DOT, AsyncAPI 3.0 per service."""
    if not full.number_of_nodes():
        return
    view, _ = _view(full)
    st.subheader("Export")
    json_col, dot_col, service_col, asyncapi_col = st.columns([1, 1, 2, 1.3],
                                                             vertical_alignment="bottom")
    # each file is made when its button is clicked (no rerun), not on every run of the page
    json_col.download_button("Download JSON", lambda: json.dumps(to_json(view), indent=2),
                             "eventscope-graph.json", "application/json", key="graph_json",
                             on_click="ignore")
    dot_col.download_button("Download DOT", lambda: to_dot(view), "eventscope-graph.dot",
                            "text/vnd.graphviz", key="graph_dot", on_click="ignore")
    services, build = data.asyncapi(WINDOWS[window], full)
    service = service_col.selectbox("AsyncAPI 3.0 for", ["every service"] + services,
                                    key="graph_asyncapi_service")
    chosen = None if service == "every service" else service
    asyncapi_col.download_button("Download AsyncAPI", lambda: json.dumps(build(chosen), indent=2),
                                 "eventscope-asyncapi.json", "application/json",
                                 key="graph_asyncapi", on_click="ignore")
    st.caption("The same documents as `eventscope graph --format json|dot|asyncapi`; JSON and "
               "DOT hold what is drawn above, AsyncAPI one document per service.")


downloads()
