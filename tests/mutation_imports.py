"""Pytest plugin for mutation testing (``make mutation``): import ``eventscope.collectors``
from this checkout's top-level ``collectors/`` package, as the very same module objects.

Installed, ``collectors/`` is the sub-package ``eventscope.collectors`` (pyproject's
package-dir). mutmut copies the checkout to ``mutants/`` and names each mutant by its file's
path (``collectors.kafka.offsets.…``); its trampolines compare that with the running
function's ``__module__``. Aliasing ``eventscope.collectors.X`` to ``collectors.X`` makes the
two agree, and makes the mutated copy (not an editable install elsewhere) the code under test.
Load it with ``-p tests.mutation_imports``.

It also turns off Hypothesis's example database for the run: an example that failed against
one mutant would otherwise be replayed against every later one (and against the unmutated
code, where a test's own oracle may disagree with the product on it), counting kills that no
test of that mutant earned.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import json
import sys

from hypothesis import settings

ALIASED = "eventscope.collectors"

settings.register_profile("mutation", database=None)
settings.load_profile("mutation")


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self.own_spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        # the import system set the alias spec on the shared module: give it its own back
        module.__spec__ = self.own_spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != ALIASED and not fullname.startswith(ALIASED + "."):
            return None
        real = "collectors" + fullname[len(ALIASED):]
        if importlib.util.find_spec(real) is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(real))


if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _AliasFinder())


def pytest_collection_modifyitems(session, config, items):
    """Quickest tests first: each mutant's run stops at its first failure (``-x``), so a mutant
    the one-second documentation test catches is not first run through every slower test.
    Durations come from mutmut's own measurement of the clean run (``mutmut-stats.json`` in
    ``mutants/``); tests it did not time keep their place after the timed ones."""
    try:
        with open("mutmut-stats.json", encoding="utf-8") as stats:
            took = json.load(stats).get("duration_by_test", {})
    except (OSError, ValueError):
        return
    items.sort(key=lambda item: took.get(item.nodeid, float("inf")))
