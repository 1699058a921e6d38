"""Give freed memory back to the operating system between collector passes.

A pass allocates and frees hundreds of thousands of small objects (decoded events,
offsets, row values). glibc keeps the freed pages in its heap and pyarrow's allocator keeps
its own, so a process's RSS would stay at its busiest pass's high-water mark forever:
measured on a 2,000-stream Redis, 330 MiB after a pass whose live Python objects were 2 MiB,
200 MiB after trimming. Both calls are cheap (a few milliseconds) and safe at any time.

pyarrow's own allocator (mimalloc or jemalloc in its wheels) keeps freed pages longer than
glibc does after a trim: reading a big cluster's five minutes of raw lag parts left 146 MiB
with it and 122 MiB with the system allocator. ``eventscope/__init__.py`` sets
``ARROW_DEFAULT_MEMORY_POOL=system`` before pyarrow loads (the only way to reach the pool
Arrow's C++ readers use); importing this module also makes it pyarrow's Python-side default,
unless that variable chooses another.
"""
from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import gc
import os

import pyarrow as pa


def _libc_function(name: str):
    found = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(found) if found else None
        return getattr(libc, name) if libc is not None and hasattr(libc, name) else None
    except OSError:  # not glibc: nothing to call this way
        return None


_MALLOC_TRIM = _libc_function("malloc_trim")
_MALLOPT = _libc_function("mallopt")
M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_arenas(arenas: int = 2) -> bool:
    """At most ``arenas`` glibc heaps for the threads this process starts from now on (what
    ``MALLOC_ARENA_MAX`` does when set before a process starts). glibc gives threads up to
    8 × cores heaps of their own, each keeping what it freed; a collector runs a thread per
    collector and librdkafka's threads, so its busiest samples left their peaks in several
    heaps at once. True when the limit was set (glibc), False elsewhere."""
    return bool(_MALLOPT is not None and _MALLOPT(M_ARENA_MAX, arenas) == 1)
if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
    pa.set_memory_pool(pa.system_memory_pool())


GC_THRESHOLDS = (10_000, 20, 10)  # Python's own: (700, 10, 10)


def tune_gc() -> None:
    """Fewer cyclic garbage collections for a process that handles big frames: call once, at
    start, after the imports.

    Python starts a young collection every 700 new container objects and a full one after
    100 of those, when what survived them is a quarter of the heap. A big cluster's alert
    evaluation alone makes ~70,000 (its 16,000 observations' keys and rows), so each one ran a
    full collection over the whole heap (35-260 ms of a 150 ms evaluation). Young collections
    every 10,000 objects and a full one after 200 of them: one full collection every twenty
    or so evaluations. Almost every object is freed by its reference count at once anyway;
    the thresholds only say how often Python looks for cycles among the rest.

    What the imports made (modules, classes, functions: ~90,000 objects) lives as long as the
    process: ``gc.freeze`` leaves it out of every full collection from now on. At exit it is
    thawed, so the interpreter's last collection frees what it holds in cycles (DuckDB's
    bindings otherwise report their objects as leaked)."""
    gc.collect()
    if not gc.get_freeze_count():
        atexit.register(gc.unfreeze)
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def release() -> None:
    """Return free heap pages (glibc) and pyarrow's unused pool memory to the OS."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
    pa.default_memory_pool().release_unused()
