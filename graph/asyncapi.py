"""AsyncAPI 3.0 from observed traffic: one document per application, as it actually behaves.

An *application* is a producing service of the flow graph, plus the consumer groups it
owns; a consumer group that belongs to no producing service is an application of its
own (a pure consumer such as an e-mail sender). A group belongs to service S when

1. its name is S, or ends with S after a separator (``shop-payment-service``); else
2. the graph has a ``causes`` edge A → B through S, the group consumes A, and it is the
   only group on A not already owned by another service (``payment-compensation`` reads
   ``inventory`` and is the only candidate for payment-service's refunds).

Each document has the clusters its channels live on as ``servers``, one per cluster by its
configured name (host and protocol from the config: :func:`server_hosts`); one channel per
topic/stream it touches (``address`` = the topic or stream name), bound to its cluster's server; a ``send`` operation per topic it produces to
and a ``receive`` operation per topic it consumes (from its groups, or from ``causes``
edges through it); one message per (event type, schema version) seen on the channel,
with the payload and headers JSON Schema inferred by genson from sampled payloads
(``graph.infer``) and ``correlationId`` where the correlation ID was observed.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import networkx as nx
import pandas as pd

from eventscope.collectors import kinds
from eventscope.graph.infer import SAMPLES, message_shapes

UNDECODABLE = "<undecodable>"
KIND_WORDS = {"kafka": "Kafka topic", "redis": "Redis stream", "rabbitmq": "RabbitMQ queue"}
_SEPARATORS = "-._:/"


def component_key(text: str) -> str:
    """A component key AsyncAPI accepts (``^[a-zA-Z0-9.\\-_]+$``)."""
    return re.sub(r"[^A-Za-z0-9.\-_]", "_", str(text))[:120] or "_"


def _owns(group: str, service: str) -> bool:
    return group == service or (group.endswith(service)
                                and group[-len(service) - 1] in _SEPARATORS)


def applications(graph: nx.DiGraph) -> dict[str, dict]:
    """``{name: {"service": node or None, "groups": [...], "sends": [...], "receives": [...]}}``
    with topic/DLQ node IDs, sorted; see the module docstring for who owns which group."""
    kinds = nx.get_node_attributes(graph, "kind")
    labels = nx.get_node_attributes(graph, "label")
    services = sorted(n for n, k in kinds.items() if k == "service")
    groups = sorted(n for n, k in kinds.items() if k == "group")
    owner: dict[str, str] = {}
    for group in groups:
        matches = [s for s in services if _owns(str(labels[group]), str(labels[s]))]
        if matches:
            owner[group] = max(matches, key=lambda s: len(str(labels[s])))
    causes = [(a, b, d.get("service")) for a, b, d in graph.edges(data=True)
              if d.get("kind") == "causes"]
    for topic, _, service in causes:
        sid = f"service:{service}"
        readers = [g for g in graph.successors(topic) if kinds.get(g) == "group"]
        if any(owner.get(g) == sid for g in readers):
            continue
        free = [g for g in readers if g not in owner]
        if len(free) == 1 and sid in graph:
            owner[free[0]] = sid
    apps: dict[str, dict] = {}
    for sid in services:
        apps[str(labels[sid])] = {"service": sid, "groups": set(), "sends": {
            t for t in graph.successors(sid) if graph.edges[sid, t].get("kind") == "produces"},
            "receives": {a for a, _, s in causes if f"service:{s}" == sid}}
    for group in groups:
        name = str(labels[owner[group]]) if group in owner else str(labels[group])
        app = apps.setdefault(name, {"service": None, "groups": set(), "sends": set(),
                                     "receives": set()})
        app["groups"].add(group)
        app["receives"] |= {t for t in graph.predecessors(group)
                            if graph.edges[t, group].get("kind") == "consumes"}
    return {name: {k: (sorted(v) if isinstance(v, set) else v) for k, v in app.items()}
            for name, app in sorted(apps.items())}


def protocol(kind: str) -> str:
    """AsyncAPI's protocol name for a broker kind (the registry's ``SourceKind.protocol``)."""
    registered = kinds().get(str(kind))
    return (registered.protocol if registered is not None else "") or str(kind)


def host(address: str) -> str:
    """``host[:port]`` of a source's address: the first of a bootstrap list, a URL's host and
    port (no scheme, user, password or path)."""
    first = str(address).split(",")[0].strip()
    if "://" in first:
        parts = urlsplit(first)
        try:
            port = parts.port
        except ValueError:
            port = None
        return (parts.hostname or "localhost") + (f":{port}" if port else "")
    return first.rpartition("@")[2].partition("/")[0] or "localhost"


def server_hosts(sources) -> dict[str, dict]:
    """One entry per configured source (``Config.all_sources()``), by its name: ``{"host":
    host[:port], "protocol": the kind's AsyncAPI protocol, "kind": kind}`` (no credentials)."""
    return {str(s.name): {"host": host(s.address()), "protocol": protocol(s.kind), "kind": str(s.kind)}
            for s in sources}


def _observed(events: pd.DataFrame) -> pd.DataFrame:
    """Live, decodable events with their schema version as text (``""`` when absent)."""
    if events is None or events.empty:
        return pd.DataFrame(columns=["broker", "topic", "service", "event_type", "schema_version"])
    live = events[(~events["dead_letter"].fillna(False).astype(bool) & events["event_type"].notna()
                   & (events["event_type"] != UNDECODABLE)).to_numpy()]
    version = (live["schema_version"].fillna("").astype(str) if "schema_version" in live
               else pd.Series("", index=live.index))
    return pd.DataFrame({"broker": live["broker"].astype(str), "topic": live["topic"].astype(str),
                         "service": live["service"].fillna("").astype(str),
                         "event_type": live["event_type"].astype(str), "schema_version": version})


def _message_key(event_type: str, version: str) -> str:
    return component_key(f"{event_type}.v{version}" if version else event_type)


def _message(event_type: str, version: str, count: int, shape: dict | None) -> dict:
    message = {"name": str(event_type), "title": f"{event_type} v{version}" if version else str(event_type),
               "contentType": "application/json",
               "x-eventscope-events": int(count)}
    if version:
        message["x-eventscope-schema-version"] = version
    shape = shape or {}
    if shape.get("payload"):
        message["payload"] = shape["payload"]
    else:
        message["description"] = "No decodable payload was sampled for this event type."
    if shape.get("headers"):
        message["headers"] = shape["headers"]
    if shape.get("correlation_id"):
        message["correlationId"] = {"description": "The correlation ID, as observed.",
                                    "location": shape["correlation_id"]}
    return message


def asyncapi_documents(graph: nx.DiGraph, events: pd.DataFrame, servers: dict[str, dict] | None = None,
                       samples: int = SAMPLES) -> dict[str, dict]:
    """One AsyncAPI 3.0 document per application (see :func:`applications`), by name;
    ``servers`` as :func:`server_hosts` makes them. A cluster seen in the traffic but not
    configured (a recorded store) gets a server on ``localhost`` that says so, its kind
    from the events' ``kind`` column."""
    servers = dict(servers or {})
    if events is not None and not events.empty and "kind" in events:
        seen = events[["broker", "kind"]].dropna().drop_duplicates("broker")
        for broker, kind in zip(seen["broker"].astype(str), seen["kind"].astype(str)):
            servers.setdefault(broker, {"host": "localhost", "protocol": protocol(kind), "kind": kind,
                                        "configured": False})
    observed = _observed(events)
    counts = observed.groupby(["broker", "topic", "service", "event_type", "schema_version"],
                              sort=True).size()
    shapes = message_shapes(events, samples) if not observed.empty else {}
    span = _span(events)
    return {name: _document(name, app, graph, counts, shapes, servers, span)
            for name, app in applications(graph).items()}


def _span(events: pd.DataFrame) -> str:
    if events is None or events.empty or events["at"].dropna().empty:
        return "no events observed"
    at = events["at"].dropna()
    return (f"{len(events):,} events observed between {at.min().isoformat()} "
            f"and {at.max().isoformat()}")


def _server(broker: str, servers: dict) -> dict:
    """The ``servers`` entry of one cluster."""
    known = servers.get(broker)
    if known is None:  # neither configured nor named in the events: its name may be its kind's
        known = {"host": "localhost", "protocol": protocol(broker), "kind": broker, "configured": False}
    kind = known.get("kind") or broker
    words = f"the {kind} cluster {broker} eventscope watched"
    return {"host": known["host"], "protocol": known["protocol"],
            "description": words + ("" if known.get("configured", True) else " (address not configured)")}


def _document(name: str, app: dict, graph: nx.DiGraph, counts: pd.Series, shapes: dict,
              servers: dict, span: str) -> dict:
    doc = {"asyncapi": "3.0.0",
           "info": {"title": str(name), "version": "observed",
                    "description": f"What {name} was observed doing, reconstructed by eventscope "
                                   f"from live traffic ({span}). Consumer groups: "
                                   f"{', '.join(graph.nodes[g]['label'] for g in app['groups']) or 'none'}."},
           "defaultContentType": "application/json",
           "servers": {}, "channels": {}, "operations": {}, "components": {"messages": {}}}
    for action, topics in (("send", app["sends"]), ("receive", app["receives"])):
        for nid in topics:
            attrs = graph.nodes[nid]
            broker, topic = str(attrs.get("broker")), str(attrs.get("label"))
            server = _server(broker, servers)
            doc["servers"].setdefault(component_key(broker), server)
            channel_key = component_key(f"{broker}.{topic}")
            kind = (servers.get(broker) or {}).get("kind", broker)
            channel = doc["channels"].setdefault(channel_key, _channel(broker, topic, attrs, kind))
            keys = _channel_messages(doc, channel, counts, shapes, broker, topic,
                                     graph.nodes[app["service"]]["label"]
                                     if action == "send" and app["service"] else None)
            op_key = component_key(f"{action}.{channel_key}")
            edge = (graph.edges.get((app["service"], nid)) if action == "send" and app["service"]
                    else None) or {}
            doc["operations"][op_key] = {
                "action": action, "channel": {"$ref": f"#/channels/{channel_key}"},
                "title": f"{'Publish to' if action == 'send' else 'Consume from'} {topic}",
                "messages": [{"$ref": f"#/channels/{channel_key}/messages/{k}"} for k in keys],
                "x-eventscope-rate-per-s": edge.get("rate_per_s"),
                "x-eventscope-groups": [graph.nodes[g]["label"] for g in app["groups"]
                                        if graph.has_edge(nid, g)] if action == "receive" else None}
            doc["operations"][op_key] = {k: v for k, v in doc["operations"][op_key].items()
                                         if v is not None}
    return doc


def _channel(broker: str, topic: str, attrs: dict, kind: str) -> dict:
    what = "dead-letter queue" if attrs.get("kind") == "dlq" else KIND_WORDS.get(kind, f"{kind} channel")
    channel = {"address": topic, "title": topic, "description": f"{what} `{topic}` on {broker}",
               "servers": [{"$ref": f"#/servers/{component_key(broker)}"}], "messages": {}}
    if "{" in topic or "}" in topic:  # braces would read as address parameters
        channel["address"] = None
        channel["x-eventscope-address"] = topic
    return channel


def _channel_messages(doc: dict, channel: dict, counts: pd.Series, shapes: dict, broker: str,
                      topic: str, sender: str | None) -> list[str]:
    """Register the messages observed on one channel (only ``sender``'s when given)."""
    if counts.empty:
        return []
    try:
        here = counts.loc[(broker, topic)]
    except KeyError:
        return []
    if sender is not None:
        here = here[here.index.get_level_values("service") == sender]
    here = here.groupby(level=["event_type", "schema_version"]).sum()
    keys = []
    for (event_type, version), count in here.items():
        key = _message_key(event_type, version)
        doc["components"]["messages"].setdefault(
            key, _message(event_type, version, count, shapes.get((event_type, version))))
        channel["messages"][key] = {"$ref": f"#/components/messages/{key}"}
        keys.append(key)
    return keys
