"""AsyncAPI 3.0 from observed traffic: what the system does, not what a doc says.

One channel per topic/stream (address = its name), one message per event type seen
on it (with the envelope fields observed), one ``send`` operation per producing
service and channel, one ``receive`` operation per consumer group and channel. The
broker kinds become servers. Only names and counts leave the store: no payloads.
"""
from __future__ import annotations

import re

import networkx as nx
import pandas as pd

ENVELOPE = {"type": "object", "properties": {
    "event_type": {"type": "string"}, "event_id": {"type": "string"},
    "timestamp": {"type": "string", "format": "date-time"}, "source": {"type": "string"},
    "correlation_id": {"type": "string"}, "data": {"type": "object"}}}


def _key(text: str) -> str:
    """A component key AsyncAPI accepts (``^[a-zA-Z0-9.\\-_]+$``)."""
    return re.sub(r"[^A-Za-z0-9.\-_]", "_", str(text))[:120] or "_"


def to_asyncapi(graph: nx.DiGraph, events: pd.DataFrame, title: str = "Observed event flows") -> dict:
    """The AsyncAPI 3.0 document for the graph, messages named by the event types seen."""
    doc = {"asyncapi": "3.0.0",
           "info": {"title": title, "version": "observed",
                    "description": "Reconstructed by eventscope from observed traffic."},
           "servers": {}, "channels": {}, "operations": {}, "components": {"messages": {}}}
    types = {}
    if not events.empty:
        seen = events[events["event_type"] != "<undecodable>"].dropna(subset=["event_type"])
        for (broker, topic), group in seen.groupby(["broker", "topic"], observed=True):
            types[(broker, topic)] = sorted(group["event_type"].unique())
    for nid, attrs in sorted(graph.nodes(data=True)):
        if attrs.get("kind") not in ("topic", "dlq"):
            continue
        broker, name = attrs.get("broker"), nid.split(":", 2)[2]
        doc["servers"].setdefault(broker, {"host": "observed", "protocol": "kafka" if broker == "kafka" else "redis",
                                           "description": f"the {broker} source eventscope watches"})
        channel = _key(f"{broker}.{name}")
        messages = {}
        for event_type in types.get((broker, name), []):
            key = _key(event_type)
            doc["components"]["messages"].setdefault(key, {"name": str(event_type), "payload": ENVELOPE})
            messages[key] = {"$ref": f"#/components/messages/{key}"}
        doc["channels"][channel] = {"address": name, "servers": [{"$ref": f"#/servers/{broker}"}],
                                    "messages": messages,
                                    "x-eventscope-kind": attrs.get("kind")}
        for src, _, edge in graph.in_edges(nid, data=True):
            if edge.get("kind") == "produces":
                _operation(doc, "send", src, channel, messages, edge)
        for _, dst, edge in graph.out_edges(nid, data=True):
            if edge.get("kind") == "consumes":
                _operation(doc, "receive", dst, channel, messages, edge)
    return doc


def _operation(doc: dict, action: str, actor: str, channel: str, messages: dict, edge: dict) -> None:
    name = _key(f"{actor.split(':')[-1]}.{action}.{channel}")
    doc["operations"][name] = {
        "action": action, "channel": {"$ref": f"#/channels/{channel}"},
        "messages": [{"$ref": f"#/channels/{channel}/messages/{k}"} for k in messages],
        "x-eventscope-actor": actor, "x-eventscope-rate-per-s": edge.get("rate_per_s")}
