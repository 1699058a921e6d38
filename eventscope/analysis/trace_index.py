"""Moved to :mod:`eventscope.trace_index` (it reads and writes files beside the store's parts,
so it belongs to the store layer, not to the pure analysis). This name forwards to it until
``eventscope/dashboard.py`` imports it from there; nothing else uses it."""
from eventscope.trace_index import INDEX_SUFFIX, KEYS, PartIndex, StoreTraceIndex, TraceIndex

__all__ = ["INDEX_SUFFIX", "KEYS", "PartIndex", "StoreTraceIndex", "TraceIndex"]
