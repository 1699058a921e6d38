"""The pipeline's declared topology: which edges its configuration can produce.

This is the architecture diagram a team would draw by hand, derived from the same tables
the simulator runs on (its consumers, ``services.consumers``, and what each handler may emit), so that the flow
graph eventscope reconstructs from traffic can be checked edge for edge. Node IDs follow
the ``eventscope graph`` contract: ``service:NAME``, ``topic:BROKER:NAME``,
``group:BROKER:NAME``, ``dlq:BROKER:NAME``.

An edge is declared when the configuration gives it a chance to carry traffic: a refund
(inventory → payments through payment-service) needs ``inventory_failure_rate > 0``, a
dead letter on ``orders`` needs failing or malformed orders, and so on.
"""
from __future__ import annotations

from typing import NamedTuple

from .config import (INVENTORY, KAFKA_DLQ_SUFFIX, ORDERS, PAYMENTS, REDIS_DLQ_SUFFIX, SHIPMENTS,
                     SimulatorConfig)
from .orders import SCRIPT
from .orders import SERVICE as ORDER_SERVICE
from .services import (charge_payment, consumers, create_shipment, record_analytics,
                       refund_payment, reserve_inventory, send_email)


class Edge(NamedTuple):
    """One declared edge; ``service`` is set for ``causes`` edges only."""

    source: str
    target: str
    kind: str
    service: str | None = None


def _emits(config: SimulatorConfig) -> dict:
    """handler -> [(topic, event_type)] it can publish under ``config``."""
    charged = config.payment_failure_rate < 1.0
    return {
        charge_payment: [(PAYMENTS, "PaymentCharged")] if charged else [],
        reserve_inventory: ([(INVENTORY, "InventoryReserved")] if config.inventory_failure_rate < 1
                            else []) + ([(INVENTORY, "InventoryReservationFailed")]
                                        if config.inventory_failure_rate > 0 else []),
        refund_payment: [(PAYMENTS, "PaymentRefunded")],
        create_shipment: [(SHIPMENTS, "ShipmentCreated")],
        send_email: [],
        record_analytics: [],
    }


def _fails(config: SimulatorConfig) -> dict:
    """handler -> True when it can dead-letter a well-formed message under ``config``."""
    transient_only = config.transient_failure_rate > 0 and config.max_attempts == 1
    return {charge_payment: config.payment_failure_rate > 0 or transient_only}


def declared_topology(config: SimulatorConfig, broker: str) -> set[Edge]:
    """Every edge the pipeline can produce on ``broker`` (``kafka`` or ``redis``)."""
    suffix = KAFKA_DLQ_SUFFIX if broker == "kafka" else REDIS_DLQ_SUFFIX

    def topic(name: str) -> str:
        return f"topic:{broker}:{config.topic(name)}"

    emits, fails = _emits(config), _fails(config)
    edges = {Edge(f"service:{ORDER_SERVICE}", topic(ORDERS), "produces")}
    if config.malformed_rate > 0:  # one hostile kind is a valid order from a `<script>` source
        edges.add(Edge(f"service:{SCRIPT}", topic(ORDERS), "produces"))
    # event types that can appear on each topic (to know which handlers ever run)
    present = {ORDERS: {"OrderPlaced"}}
    changed = True
    while changed:  # follow the chain: a handler runs only if its input type can appear
        changed = False
        for spec in consumers(config):
            for name in spec.topics:
                for event_type, handler in spec.handlers.items():
                    if event_type not in present.get(name, set()):
                        continue
                    for out_topic, out_type in emits[handler]:
                        if out_type not in present.setdefault(out_topic, set()):
                            present[out_topic].add(out_type)
                            changed = True
    for spec in consumers(config):
        for name in spec.topics:
            edges.add(Edge(topic(name), f"group:{broker}:{config.group(spec.group)}", "consumes"))
            for event_type, handler in spec.handlers.items():
                if event_type not in present.get(name, set()):
                    continue
                for out_topic, _ in emits[handler]:
                    edges.add(Edge(f"service:{spec.service}", topic(out_topic), "produces"))
                    edges.add(Edge(topic(name), topic(out_topic), "causes", spec.service))
                if fails.get(handler) or (name == ORDERS and config.malformed_rate > 0):
                    dlq = f"dlq:{broker}:{config.topic(name)}{suffix}"
                    edges.add(Edge(topic(name), dlq, "dead_letters"))
    return edges

