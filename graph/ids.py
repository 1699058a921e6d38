"""Node IDs of the flow graph (the CLI contract): ``service:NAME``, ``KIND:BROKER:NAME``."""
from __future__ import annotations


def node_id(kind: str, name: str, broker: str | None = None) -> str:
    """The stable node ID of the CLI contract."""
    return f"service:{name}" if kind == "service" else f"{kind}:{broker}:{name}"
