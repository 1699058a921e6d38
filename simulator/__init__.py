"""The demo system eventscope watches: an order pipeline on Kafka and Redis Streams.

order-service -> orders -> payment-service -> payments -> inventory-service ->
inventory -> shipping-service -> shipments -> email-service, with analytics-service
on orders and a refund saga (payment-compensation) on inventory failures. This is
the only code in the project that joins consumer groups and commits / XACKs.
"""
from .config import SimulatorConfig
from .runner import SimulationError, run_simulation

__all__ = ["SimulatorConfig", "SimulationError", "run_simulation"]
