"""The fault soak, short: two minutes of `bench/soak.py` (Kafka and Redis killed and
restarted, a truncated store part, a full disk, hostile traffic, slow /metrics clients and
a dead webhook) lose no acknowledged event and crash nothing."""
from __future__ import annotations

import os

import pytest

from bench.soak import run_soak

pytestmark = pytest.mark.broker


@pytest.mark.skipif(os.geteuid() != 0, reason="the soak mounts a small filesystem for its store (root)")
def test_a_short_soak_loses_nothing_and_recovers_from_every_fault(tmp_path):
    figures = run_soak(2.0, tmp_path)
    assert figures["collector crashes"] == 0 and figures["exporter crashes"] == 0, figures
    assert figures["collector exit code"] == 0
    assert figures["events lost"] == 0 and figures["events stored twice"] == 0, figures
    assert all(n > 500 for n in figures["events acknowledged"].values()), figures
    # the store names the part it could not read, and only its events are missing
    assert figures["store names damaged rows"] >= figures["truncated part ledger events"] > 0, figures
    for fault, seconds in figures["faults"].items():
        assert seconds is not None and seconds < 60, (fault, figures)
    # the faults happened and were reported as such
    assert {"ConnectionError", "KafkaException", "StoreWriteFailed"} <= set(figures["errors seen"]), figures
    ok, total = map(int, figures["scrapes ok"].split("/"))
    assert total > 20 and ok == total, figures  # slow clients on /metrics never stopped a scrape
    assert figures["webhook deliveries (live)"] > 0, figures  # the dead webhook held up nobody
    assert all(n > 100 for n in figures["hostile messages sent"].values()), figures
