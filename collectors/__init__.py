"""Collectors: the only code that talks to brokers.

A collector is anything with a ``name`` and a ``collect()`` that returns
``{frame name: DataFrame}`` using the schemas in :mod:`eventscope.schemas`.
Collectors take their client as an argument, so tests can hand them a real
broker client and the replay source can stand in for all of them.

Collectors are read-only towards the watched system: no group joins, no commits,
no XREADGROUP/XACK/XCLAIM, no topic or group creation.
"""
from __future__ import annotations

from typing import Protocol

import pandas as pd


class Collector(Protocol):
    """One unit of sampling; ``collect`` may raise, the runner records it as health."""

    name: str
    source: str

    def collect(self) -> dict[str, pd.DataFrame]:
        """Sample once and return frames keyed by schema name."""
        ...

    def close(self) -> None:
        """Release clients."""
        ...


class EventsTail:
    """The event-reading half of a collector, run on its own shorter interval.

    ``parent.collect_events()`` reads only what is new on what the parent already
    tails; the parent's full ``collect()`` still discovers streams and samples lag.
    """

    def __init__(self, parent, interval_s: float):
        self.parent = parent
        self.source = parent.source
        self.name = parent.name.split(".")[0] + ".events"
        self.interval_s = interval_s

    def collect(self) -> dict[str, pd.DataFrame]:
        """New events since the last read."""
        return self.parent.collect_events()

    def close(self) -> None:
        """The parent owns the client."""


def unique_names(collectors: list[Collector]) -> list[Collector]:
    """Fail at registration when two collectors share a source/name pair."""
    seen = set()
    for collector in collectors:
        key = (collector.source, collector.name)
        if key in seen:
            raise ValueError(f"duplicate collector {collector.source}/{collector.name}")
        seen.add(key)
    return collectors
