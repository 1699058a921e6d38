"""The order-pipeline services: what each consumes and what it emits.

Broker-independent. A handler gets the consumed envelope and a `HandlerContext`,
and returns the events to publish as `Emit`s, or raises to have the message
retried (with backoff) and finally dead-lettered. Decisions that must not change
between attempts of one message (is this card declined?) go through `ctx.chance`,
which remembers them per message.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

from .envelope import new_id
from .config import INVENTORY, ORDERS, PAYMENTS, SHIPMENTS, SimulatorConfig


class PaymentDeclinedError(RuntimeError):
    """The card was declined: retries never help (ends in the DLQ)."""


class PaymentGatewayTimeoutError(RuntimeError):
    """The payment provider did not answer in time: a retry usually succeeds."""


@dataclass
class Emit:
    """An event a handler wants published (envelope built by the worker)."""

    topic: str          # unprefixed pipeline topic
    event_type: str
    data: dict[str, Any]


@dataclass
class HandlerContext:
    config: SimulatorConfig
    rng: random.Random
    attempt: int = 1
    memo: dict[str, Any] = field(default_factory=dict)  # survives retries of one message

    def chance(self, name: str, probability: float) -> bool:
        """A per-message coin flip, decided once and kept across retries."""
        if name not in self.memo:
            self.memo[name] = self.rng.random() < probability
        return self.memo[name]

    def pick(self, name: str, options: list[Any]) -> Any:
        """A per-message choice, decided once and kept across retries."""
        if name not in self.memo:
            self.memo[name] = self.rng.choice(options)
        return self.memo[name]


# --- fake but plausible order data --------------------------------------------------

FIRST = ["Ada", "Grace", "Alan", "Margaret", "Linus", "Barbara", "Ken", "Frances", "Dennis",
         "Radia", "Edsger", "Hedy", "Tim", "Katherine", "Donald", "Sophie"]
LAST = ["Lovelace", "Hopper", "Turing", "Hamilton", "Torvalds", "Liskov", "Thompson",
        "Allen", "Ritchie", "Perlman", "Dijkstra", "Lamarr", "Berners-Lee", "Johnson", "Knuth"]
CATALOG = [("sku_kbd_001", "Mechanical keyboard", 89.00), ("sku_mse_014", "Wireless mouse", 24.50),
           ("sku_mon_027", "27-inch monitor", 279.99), ("sku_hub_003", "USB-C hub", 39.90),
           ("sku_cam_008", "1080p webcam", 59.00),
           ("sku_hds_011", "Noise-cancelling headset", 149.00),
           ("sku_dsk_002", "Standing desk mat", 34.95), ("sku_lmp_019", "LED desk lamp", 42.00)]
CITIES = ["Lisbon", "Berlin", "Austin", "Toronto", "Lyon", "Osaka", "Dublin", "Melbourne"]
DECLINES = ["card declined: insufficient funds", "card declined: expired card",
            "card declined: suspected fraud"]
CARRIERS = ["DHL", "UPS", "FedEx", "PostNL"]


def customer(index: int) -> dict[str, str]:
    """Return customer number `index` of a fixed, consistent pool (id, name, email)."""
    first, last = FIRST[index % len(FIRST)], LAST[(index * 7 + index // len(FIRST)) % len(LAST)]
    return {
        "customer_id": f"cus_{index * 2654435761 % 2 ** 32:08x}",
        "customer_name": f"{first} {last}",
        "customer_email": f"{first.lower()}.{last.lower().replace('-', '')}{index}@example.com",
    }


def make_order(rng: random.Random) -> dict[str, Any]:
    """Return the `data` of a new OrderPlaced (IDs random, values from `rng`)."""
    items = []
    for sku, name, price in rng.sample(CATALOG, rng.randint(1, 3)):
        items.append({"sku": sku, "name": name, "quantity": rng.randint(1, 3), "unit_price": price})
    return {
        "order_id": new_id("ord"),
        **customer(rng.randrange(240)),
        "shipping_city": rng.choice(CITIES),
        "amount": round(sum(i["quantity"] * i["unit_price"] for i in items), 2),
        "currency": "EUR",
        "items": items,
    }


def _pick(data: dict[str, Any], *names: str) -> dict[str, Any]:
    return {n: data[n] for n in names if n in data}


# --- handlers -------------------------------------------------------------------------

def charge_payment(event: dict, ctx: HandlerContext) -> list[Emit]:
    data = event["data"]
    if ctx.chance("declined", ctx.config.payment_failure_rate):
        raise PaymentDeclinedError(ctx.pick("decline", DECLINES))
    if ctx.attempt == 1 and ctx.chance("gateway_timeout", ctx.config.transient_failure_rate):
        raise PaymentGatewayTimeoutError("payment gateway timed out after 2000 ms")
    charged = _pick(data, "order_id", "customer_id", "customer_email", "amount", "currency",
                    "items")
    charged.update(payment_id=new_id("pay"), method="card",
                   card_last4=f"{ctx.rng.randint(0, 9999):04d}")
    return [Emit(PAYMENTS, "PaymentCharged", charged)]


def reserve_inventory(event: dict, ctx: HandlerContext) -> list[Emit]:
    data = event["data"]
    base = _pick(data, "order_id", "customer_id", "customer_email", "payment_id", "amount",
                 "currency")
    if ctx.chance("out_of_stock", ctx.config.inventory_failure_rate):
        sku = (data.get("items") or [{"sku": "sku_unknown"}])[0].get("sku")
        return [Emit(INVENTORY, "InventoryReservationFailed",
                     {**base, "reason": "out_of_stock", "sku": sku})]
    reserved = {**base, "items": data.get("items", []),
                "reservation_id": new_id("res"),
                "warehouse": ctx.rng.choice(["wh-eu-1", "wh-eu-2", "wh-us-1"])}
    return [Emit(INVENTORY, "InventoryReserved", reserved)]


def refund_payment(event: dict, ctx: HandlerContext) -> list[Emit]:
    data = event["data"]
    refund = _pick(data, "order_id", "customer_id", "payment_id", "amount", "currency")
    refund.update(refund_id=new_id("ref"),
                  reason=f"inventory reservation failed: {data.get('reason', 'unknown')}")
    return [Emit(PAYMENTS, "PaymentRefunded", refund)]


def create_shipment(event: dict, ctx: HandlerContext) -> list[Emit]:
    data = event["data"]
    shipment = _pick(data, "order_id", "customer_id", "customer_email", "items", "warehouse")
    shipment.update(shipment_id=new_id("shp"),
                    carrier=ctx.rng.choice(CARRIERS),
                    tracking_number=f"TRK{ctx.rng.getrandbits(48):012d}"[:15])
    return [Emit(SHIPMENTS, "ShipmentCreated", shipment)]


def send_email(event: dict, ctx: HandlerContext) -> list[Emit]:
    return []  # terminal: a real service would send a confirmation / refund email


def record_analytics(event: dict, ctx: HandlerContext) -> list[Emit]:
    return []  # terminal: a real service would update its read model


Handler = Callable[[dict, HandlerContext], list[Emit]]


@dataclass(frozen=True)
class ConsumerSpec:
    """One consumer group of one service: the topics it reads and its handlers."""

    service: str
    group: str                      # unprefixed
    topics: tuple[str, ...]         # unprefixed
    handlers: dict[str, Handler]    # event_type -> handler; other types are skipped


_PAYMENTS = ConsumerSpec("payment-service", "payment-service", (ORDERS,), {"OrderPlaced": charge_payment})
_COMPENSATION = ConsumerSpec("payment-service", "payment-compensation", (INVENTORY,),
                             {"InventoryReservationFailed": refund_payment})
_SHIPPING = ConsumerSpec("shipping-service", "shipping-service", (INVENTORY,),
                         {"InventoryReserved": create_shipment})
_EMAIL = ConsumerSpec("email-service", "email-service", (SHIPMENTS, PAYMENTS),
                      {"ShipmentCreated": send_email, "PaymentRefunded": send_email})

CONSUMERS: tuple[ConsumerSpec, ...] = (
    _PAYMENTS,
    ConsumerSpec("inventory-service", "inventory-service", (PAYMENTS,),
                 {"PaymentCharged": reserve_inventory}),
    _COMPENSATION, _SHIPPING, _EMAIL,
    ConsumerSpec("analytics-service", "analytics-service", (ORDERS,),
                 {"OrderPlaced": record_analytics}),
)

#: the fan-out shape (``SimulatorConfig.shape = "fanout"``): three services read ``orders``
#: at once, so payments and inventory events of one order race, as on many real systems
FANOUT_CONSUMERS: tuple[ConsumerSpec, ...] = (
    _PAYMENTS,
    ConsumerSpec("inventory-service", "inventory-service", (ORDERS,),
                 {"OrderPlaced": reserve_inventory}),
    _COMPENSATION, _SHIPPING, _EMAIL,
    ConsumerSpec("analytics-service", "analytics-service", (ORDERS, PAYMENTS),
                 {"OrderPlaced": record_analytics, "PaymentCharged": record_analytics}),
)


def consumers(config: SimulatorConfig) -> tuple[ConsumerSpec, ...]:
    """The consumer groups of the configured shape."""
    return FANOUT_CONSUMERS if config.shape == "fanout" else CONSUMERS
