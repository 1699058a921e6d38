"""External programs the tests run: found, or a clear failure naming what is missing."""
from __future__ import annotations

import os
import shutil

import pytest


def require_program(name: str) -> str:
    """The path of an external program a test needs (scripts/system-programs.tsv lists it).

    Missing, the test skips, except under STRICT_REAL_BROKERS=1 (``make test``, CI), where
    it fails naming the program: a green run must never hide a missing install step.
    """
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make system-deps installs it)"
        if os.environ.get("STRICT_REAL_BROKERS", "") not in ("", "0"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path
