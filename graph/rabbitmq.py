"""RabbitMQ's routing as flow-graph edges (pure: the ``bindings`` frame in, edges out).

A queue is drawn as the node its lag and DLQ rows already make: ``topic:BROKER:NAME`` (what
its consumers read: its ``consumes`` edge to ``group:BROKER:NAME``), or ``dlq:BROKER:NAME``
when it is a dead-letter queue. Exchanges are ``exchange:BROKER:NAME``. BROKER is the rows'
``broker`` (the cluster's name); names in a vhost other than ``/`` are ``vhost/name``, as in
the lag rows; the nameless default exchange is ``(default)``. Edges:

- ``binds``           exchange → queue, one per binding (attrs ``routing_key``, ``exchange_type``);
- ``dead_letters_to`` queue → exchange, the queue's dead-letter route, from its arguments or
  its policy (attr ``routing_key``: the dead-letter routing key, empty when the message's own
  is kept).
"""
from __future__ import annotations

import pandas as pd

from eventscope.graph.ids import node_id

DEFAULT_EXCHANGE = "(default)"  # the nameless exchange, as RabbitMQ's own UI shows it


def _name(vhost: str, name: str) -> str:
    return name if vhost == "/" else f"{vhost}/{name}"


def queue_node(broker: str, vhost: str, queue: str, dlq_names: set | frozenset = frozenset()) -> str:
    """The node ID of a queue: ``dlq:…`` when ``(broker, vhost/name)`` is in ``dlq_names``,
    else ``topic:…``."""
    name = _name(vhost, queue)
    return node_id("dlq" if (str(broker), name) in dlq_names else "topic", name, broker)


def bindings_graph_edges(bindings: pd.DataFrame, dlq_names: set | frozenset = frozenset()
                         ) -> list[tuple[str, str, dict]]:
    """``(from node, to node, attrs)`` for every binding and dead-letter route, each once.
    ``dlq_names``: ``(broker, name)`` of the queues to draw as DLQs."""
    edges, seen = [], set()
    for row in bindings.itertuples(index=False):
        exchange = node_id("exchange", _name(row.vhost, row.exchange or DEFAULT_EXCHANGE), row.broker)
        queue = queue_node(row.broker, row.vhost, row.queue, dlq_names)
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
