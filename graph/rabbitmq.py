"""RabbitMQ's routing as flow-graph edges (pure: the ``bindings`` frame in, edges out).

Nodes are ``exchange:BROKER:NAME`` and ``queue:BROKER:NAME`` (BROKER: the rows' ``broker``,
names in a vhost other than ``/`` as ``vhost/name``). Edges:

- ``binds``          exchange → queue, one per binding (attrs ``routing_key``, ``exchange_type``);
- ``dead_letters_to`` queue → exchange, the queue's dead-letter route (attr ``routing_key``:
  the dead-letter routing key, empty when the message's own is kept).
"""
from __future__ import annotations

import pandas as pd

from eventscope.graph.build import node_id

DEFAULT_EXCHANGE = "(default)"  # the nameless exchange, as RabbitMQ's own UI shows it


def _name(vhost: str, name: str) -> str:
    return name if vhost == "/" else f"{vhost}/{name}"


def bindings_graph_edges(bindings: pd.DataFrame) -> list[tuple[str, str, dict]]:
    """``(from node, to node, attrs)`` for every binding and dead-letter route, each once."""
    edges, seen = [], set()
    for row in bindings.itertuples(index=False):
        exchange = node_id("exchange", _name(row.vhost, row.exchange or DEFAULT_EXCHANGE), row.broker)
        queue = node_id("queue", _name(row.vhost, row.queue), row.broker)
        key = "" if pd.isna(row.routing_key) else row.routing_key
        if row.route == "dlx":
            edge = (queue, exchange, {"kind": "dead_letters_to", "routing_key": key})
        else:
            edge = (exchange, queue, {"kind": "binds", "routing_key": key,
                                      "exchange_type": "" if pd.isna(row.exchange_type) else row.exchange_type})
        ident = (edge[0], edge[1], edge[2]["kind"], key)
        if ident not in seen:
            seen.add(ident)
            edges.append(edge)
    return edges
