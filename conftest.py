"""Run-wide rule: a skipped test is a failure, not a pass.

``make test`` (and so CI) exports ``STRICT_REAL_BROKERS=1``. Under it, any skipped (or
xfailed) test fails the run (a broker, a browser or a program it needs was missing), and
a run that executed no broker test at all fails too.
"""
from __future__ import annotations

import os

import pytest

_skipped: list[str] = []
_ran: dict[str, int] = {"broker": 0, "browser": 0}


def _strict() -> bool:
    return os.environ.get("STRICT_REAL_BROKERS", "") not in ("", "0")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)
        return
    kinds = [k for k in ("broker", "browser") if k in report.keywords]
    if report.when == "call":
        for kind in kinds:
            _ran[kind] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _strict():
        return
    problems = []
    if _skipped:
        problems.append(f"{len(_skipped)} test(s) skipped: " + ", ".join(_skipped[:10]))
    if session.testscollected and _ran["broker"] == 0:
        problems.append("no broker-backed test ran")
    if problems:
        for p in problems:
            print(f"\nSTRICT_REAL_BROKERS: {p}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
