"""The Traces page's outcome banner keeps a hostile dead-letter reason as data.

A DLQ reason is whatever the failing consumer wrote (an exception message can carry any
text a producer put in an event). The banner escapes it like every other name, so Markdown
in it (links, emphasis, HTML) is shown as the characters it is."""
from __future__ import annotations

import pandas as pd

from eventscope import schemas
from eventscope.analysis import traces
from eventscope.ui.format import md
from test_traces_page import _app, _store_with_payloads, _visit

HOSTILE = "ValueError: <script>alert(1)</script>"


def test_a_hostile_dlq_reason_is_escaped_in_the_banner(monkeypatch, tmp_path):
    at = _visit(_app(monkeypatch, _store_with_payloads(tmp_path / "s")), "pages/traces.py")
    at.text_input(key="trace_id").input("pii-1").run()
    assert not at.exception, at.exception
    banners = [e.value for e in at.error if "Died in" in e.value]
    assert len(banners) == 1
    banner = banners[0]
    assert banner.endswith(": " + md(HOSTILE))  # the reason, escaped, ends the banner
    assert "<script>" not in banner and r"\<script\>" in banner
    assert "**orders\\.DLT**" in banner  # the queue's name: bold markup around an escaped name


def test_a_trace_waits_only_on_the_groups_of_its_own_cluster():
    """A topic of the same name on two Kafka clusters: the trace's event was consumed on its
    own cluster; the other cluster's group behind that offset (sampled later) is not its wait."""
    t0 = pd.Timestamp("2026-12-01T10:00:00Z")
    event = schemas.conform("events", [{"observed_at": t0, "source": "prod-eu", "broker": "prod-eu", "kind": "kafka",
                                        "topic": "orders", "partition": 0, "offset": "5", "at": t0,
                                        "event_type": "OrderPlaced", "correlation_id": "c1"}])
    lag = schemas.conform("lag", [
        {"sampled_at": t0 + pd.Timedelta(seconds=60), "source": "prod-eu", "broker": "prod-eu", "kind": "kafka",
         "group": "billing", "topic": "orders", "partition": 0, "committed": 10, "end": 10, "lag": 0},
        {"sampled_at": t0 + pd.Timedelta(seconds=62), "source": "prod-us", "broker": "prod-us", "kind": "kafka",
         "group": "billing", "topic": "orders", "partition": 0, "committed": 3, "end": 9, "lag": 6}])
    later = t0 + pd.Timedelta(minutes=5)
    assert traces.outcome(event, lag, quiet_s=30, now=later) == "completed"
    # its own cluster's group still behind the event: in flight
    behind = lag.assign(committed=pd.array([4, 3], dtype="Int64"))
    assert traces.outcome(event, behind, quiet_s=30, now=later) == "in_flight"
