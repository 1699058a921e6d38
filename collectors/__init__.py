"""Sources: the only code that talks to brokers, one folder per broker kind.

The contract every kind follows (``collectors/kafka``, ``collectors/redis``,
``collectors/rabbitmq``; README "Architecture"):

* **What a source returns.** A collector has a ``name``, a ``source`` (the cluster's
  configured name) and a ``kind``, and ``collect()`` returns ``{frame name: DataFrame}``
  conformed to :mod:`eventscope.schemas`: any of ``lag``, ``dlq``, ``events``, ``topics``,
  ``consumers``, ``stuck``, ``queues``, ``bindings``, ``reading_state``. Every row's
  ``source`` and ``broker`` are the cluster's name; the runner sets ``kind``.
* **How it reports health.** ``collect()`` raises on failure with a one-line message that
  names no secret; the runner turns it into a ``health`` row, backs that collector off and
  keeps the others going. A part of the cluster that cannot be read (a deleted stream)
  is left out of the frames, not raised.
* **How it is configured.** A kind registers a :class:`SourceKind`: its settings dataclass
  (the ``[kind]`` section's keys and defaults, which every ``[[sources]]`` entry of that
  kind starts from), a ``check`` of those settings that returns one-line problems, and the
  module whose ``build(name, settings, context)`` makes its collectors. That module, and so
  the kind's client library, is imported only when a source of the kind is configured.
* **Read-only.** No group joins, no commits, no XREADGROUP/XACK/XCLAIM, no declares or
  acks, no topic or group creation.

Kinds are found through :func:`kinds`: the built-in ones register on import exactly as a
new one would, and a package outside this repository can add one through the
``eventscope.sources`` entry point group (its value: a module that calls :func:`register`).
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Callable, Protocol

import pandas as pd

from eventscope.decode import Decoder


class Collector(Protocol):
    """One unit of sampling; ``collect`` may raise, the runner records it as health."""

    name: str
    source: str
    kind: str

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
        self.source, self.broker = parent.source, parent.broker
        self.kind = getattr(parent, "kind", None)
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


# -- the registry of broker kinds ----------------------------------------------------------
@dataclass(frozen=True)
class BuildContext:
    """What every source's collectors share, from the sections that are not a kind's."""

    decoder: Decoder
    lookback_s: float = 300.0
    sample_ratio: float = 1.0
    payload_max_chars: int = 4000
    interval_s: float = 5.0
    events_interval_s: float = 5.0
    trace_globs: dict = field(default_factory=dict)  # kind -> globs of topics whose events are read

    def events(self) -> dict:
        """Keyword arguments of an event reader."""
        return {"lookback_s": self.lookback_s, "sample_ratio": self.sample_ratio,
                "decoder": self.decoder, "payload_max_chars": self.payload_max_chars}


@dataclass(frozen=True)
class SourceKind:
    """A broker kind: how its sources are configured and built.

    ``settings`` is a dataclass whose fields are the kind's configuration keys with their
    defaults; ``SECRETS`` (a class attribute) names the fields that hold secrets, and the
    optional ``env_shortcuts`` map an environment variable to one field (a single cluster's
    address). ``configured(settings)`` says whether the ``[kind]`` section alone describes a
    source (its address is set), ``address(settings)`` what may be shown of where it is (no
    secret), ``check(settings, where)`` returns the settings' problems as one-line messages
    naming ``where.key``. ``builder`` is the module whose ``build(name, settings, context)``
    returns the source's collectors."""

    name: str
    settings: type
    builder: str
    configured: Callable[[object], bool]
    address: Callable[[object], str]
    check: Callable[[object, str], list] = lambda settings, where: []
    frames: tuple = ()
    env_shortcuts: dict = field(default_factory=dict)
    protocol: str = ""  # AsyncAPI's protocol name


def regex_problems(settings, keys: tuple, where: str) -> list[str]:
    """For a kind's ``check``: each of ``keys`` that is not a valid regular expression, one line each."""
    problems = []
    for key in keys:
        try:
            re.compile(getattr(settings, key))
        except re.error as exc:
            problems.append(f"{where}.{key}: invalid regular expression: {exc}")
    return problems


_KINDS: dict[str, SourceKind] = {}
BUILTIN = ("kafka", "redis", "rabbitmq")
_loaded = False


def register(kind: SourceKind) -> SourceKind:
    """Make ``kind`` known (a kind's package calls this when imported)."""
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"broker kind {kind.name!r} is registered twice")
    _KINDS[kind.name] = kind
    return kind


def kinds() -> dict[str, SourceKind]:
    """Every registered kind by name: the built-in ones, then those of installed plugins."""
    global _loaded
    if not _loaded:
        _loaded = True
        for name in BUILTIN:
            importlib.import_module(f"{__name__}.{name}")
        for entry in entry_points(group="eventscope.sources"):
            importlib.import_module(entry.value)
    return dict(_KINDS)


def build(kind: str, name: str, settings, context: BuildContext) -> list[Collector]:
    """The collectors of one configured source."""
    return list(importlib.import_module(kinds()[kind].builder).build(name, settings, context))
