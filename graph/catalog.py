"""The event catalog: every event type seen, who produces and consumes it, and its shape.

Pure: the events frame and the flow graph (for the consumer groups of each topic) in, a
table and the inferred shapes out. Dead-lettered copies are counted apart and do not
make their DLQ a topic of the type; undecodable messages are not an event type.
"""
from __future__ import annotations

import networkx as nx
import pandas as pd

from eventscope.graph.build import node_id
from eventscope.graph.infer import SAMPLES, message_shapes

UNDECODABLE = "<undecodable>"
COLUMNS = ["event_type", "schema_versions", "producers", "topics", "consumers", "events",
           "rate_per_s", "dead_lettered", "first_seen", "last_seen"]


def event_catalog(events: pd.DataFrame | None, graph: nx.DiGraph | None = None,
                  share: float = 1.0) -> pd.DataFrame:
    """One row per event type, most frequent first (see :data:`COLUMNS`).

    ``schema_versions``, ``producers``, ``topics`` (``broker:topic``) and ``consumers``
    (``broker:group`` reading any of those topics) are sorted lists; ``rate_per_s`` divides
    ``events`` by the span of the whole frame, so rates of different types compare. ``events``
    holding ``share`` of the window's correlation IDs: counts and rates scaled back up."""
    if events is None or events.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
    typed = events[(events["event_type"].notna() & (events["event_type"] != UNDECODABLE)).to_numpy()]
    if typed.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
    at = typed["at"].fillna(typed["broker_at"]) if "broker_at" in typed else typed["at"]
    times = events["at"].dropna()
    span = max(1.0, (times.max() - times.min()).total_seconds()) if len(times) > 1 else 1.0
    dead = typed["dead_letter"].fillna(False).astype(bool)
    version = typed["schema_version"].fillna("").astype(str) if "schema_version" in typed else ""
    frame = pd.DataFrame({"event_type": typed["event_type"].astype(str), "version": version,
                          "service": typed["service"].fillna("").astype(str),
                          "place": typed["broker"].astype(str) + ":" + typed["topic"].astype(str),
                          "broker": typed["broker"].astype(str), "topic": typed["topic"].astype(str),
                          "dead": dead.to_numpy(), "at": at})
    rows = []
    for event_type, rows_of in frame.groupby("event_type", sort=False):
        live = rows_of[~rows_of["dead"]]
        places = sorted(set(live["place"]))
        consumers = set()
        if graph is not None:
            for broker, topic in set(zip(live["broker"], live["topic"])):
                for kind in ("topic", "dlq"):
                    nid = node_id(kind, topic, broker)
                    if nid in graph:
                        consumers |= {f"{broker}:{graph.nodes[g]['label']}" for g in graph.successors(nid)
                                      if graph.nodes[g].get("kind") == "group"}
        rows.append({
            "event_type": event_type,
            "schema_versions": sorted({v for v in live["version"] if v}),
            "producers": sorted({s for s in live["service"] if s}),
            "topics": places, "consumers": sorted(consumers),
            "events": int(round(len(live) / share)), "rate_per_s": round(len(live) / share / span, 4),
            "dead_lettered": int(round(int(rows_of["dead"].sum()) / share)),
            "first_seen": rows_of["at"].min(), "last_seen": rows_of["at"].max()})
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values(["events", "event_type"], ascending=[False, True],
                             kind="stable").reset_index(drop=True)


def event_shapes(events: pd.DataFrame | None, per_type: int = SAMPLES) -> dict[tuple[str, str], dict]:
    """Inferred payload/headers schema and correlation-ID location per (type, version)."""
    if events is None or events.empty:
        return {}
    return message_shapes(events, per_type)
