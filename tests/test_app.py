"""The Streamlit app renders every page without an exception: populated, empty and hostile.

Each test points the app at its own temporary store through ``EVENTSCOPE_STORE`` and
turns the dashboard's own collector off, so the pages show exactly the synthetic
frames written here (an order pipeline with a dead-lettering payment step and a
stalled analytics consumer).
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from eventscope import schemas
from eventscope.store import Store

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGES = {"pages/overview.py": "Overview", "pages/lag.py": "Consumer lag",
         "pages/dead_letters.py": "Dead letters", "pages/traces.py": "Traces",
         "pages/flow_graph.py": "Flow graph", "pages/alerts.py": "Alerts"}
HOSTILE = "<script>alert(1)</script>"


def synthetic_frames(now: pd.Timestamp | None = None, orders: int = 120,
                     hostile: bool = False) -> dict[str, pd.DataFrame]:
    """Ten minutes of an order pipeline: orders → payments → shipments, with a DLQ."""
    now = now or pd.Timestamp.now(tz="UTC").floor("s")
    payer = HOSTILE if hostile else "payment-service"
    analytics = "href=javascript:alert(2)" if hostile else "analytics"
    events, start = [], now - pd.Timedelta(minutes=10)
    for i in range(orders):
        t, cid = start + pd.Timedelta(seconds=5 * i), f"order-{i:04d}"
        chain = [("orders", "OrderPlaced", "order-service", 0, False),
                 ("payments", "PaymentAuthorized", payer, 130, False)]
        if i % 10 == 7:
            chain.append(("payments.DLT", "PaymentAuthorized", "shipping-service", 420, True))
        elif t < now - pd.Timedelta(seconds=20):
            chain.append(("shipments", "OrderShipped", "shipping-service", 310 + i % 40, False))
        for step, (topic, kind, service, delay_ms, dead) in enumerate(chain):
            at = t + pd.Timedelta(milliseconds=delay_ms)
            events.append({
                "observed_at": at + pd.Timedelta(milliseconds=5), "source": "replay",
                "broker": "kafka", "topic": topic, "partition": i % 3 if topic == "orders" else 0,
                "offset": str(i), "at": at, "broker_at": at, "event_type": kind,
                "event_id": f"evt-{i:04d}-{step}", "service": service, "correlation_id": cid,
                "trace_id": f"{i:032x}", "dead_letter": dead,
                "dlq_reason": "TimeoutException: inventory did not answer" if dead else None,
                "original_topic": "payments" if dead else None, "size_bytes": 310})
    lag, dlq, health = [], [], []
    for s in range(0, 601, 15):
        at = start + pd.Timedelta(seconds=s)
        done = s // 5
        for group, topic, committed, members, seconds in [
                ("payment-service", "orders", done, 2, 0.4),
                ("shipping-service", "payments", done, 1, 0.8),
                (analytics, "orders", min(done, 30), 1, max(0.0, s - 150.0))]:
            lag.append({"sampled_at": at, "source": "replay", "broker": "kafka", "group": group,
                        "topic": topic, "partition": 0, "committed": committed, "end": done,
                        "lag": done - committed, "lag_seconds": seconds if done > committed else 0.0,
                        "group_state": "Stable", "members": members})
        dlq.append({"sampled_at": at, "source": "replay", "broker": "kafka", "dlq": "payments.DLT",
                    "source_topic": "payments", "depth": (done + 2) // 10,
                    "oldest_at": start + pd.Timedelta(seconds=35),
                    "reasons": '{"TimeoutException: inventory did not answer": %d}' % ((done + 2) // 10)})
        health.append({"sampled_at": at, "source": "replay", "collector": "replay", "ok": True,
                       "error": "", "duration_ms": 12.5, "rows": 40, "last_success": at})
    return {"events": schemas.conform("events", events), "lag": schemas.conform("lag", lag),
            "dlq": schemas.conform("dlq", dlq), "health": schemas.conform("health", health)}


def write_synthetic_store(root: Path, hostile: bool = False) -> Path:
    """Fill a store directory with :func:`synthetic_frames`."""
    store = Store(root)
    for name, frame in synthetic_frames(hostile=hostile).items():
        store.append(name, frame)
    return root


def _app(monkeypatch, store_dir: Path) -> AppTest:
    monkeypatch.setenv("EVENTSCOPE_STORE", str(store_dir))
    monkeypatch.setenv("EVENTSCOPE_DASHBOARD_COLLECT", "off")
    for name in ("EVENTSCOPE_KAFKA_BOOTSTRAP", "EVENTSCOPE_REDIS_URL", "EVENTSCOPE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def _visit(at: AppTest, page: str) -> AppTest:
    started = time.perf_counter()
    at.switch_page(page).run()
    elapsed = time.perf_counter() - started
    assert not at.exception, f"{page}: {at.exception}"
    assert at.title and at.title[0].value == PAGES[page]
    print(f"{page}: rendered in {elapsed * 1000:.0f} ms")
    return at


@pytest.fixture
def populated(tmp_path):
    return write_synthetic_store(tmp_path / "store")


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders_with_data(monkeypatch, populated, page):
    at = _visit(_app(monkeypatch, populated), page)
    assert not any("Nothing to show yet" in i.value for i in at.info), "empty state on a full store"


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_explains_an_empty_store(monkeypatch, tmp_path, page):
    at = _visit(_app(monkeypatch, tmp_path / "empty"), page)
    texts = [i.value for i in at.info] + [s.value for s in at.success]
    assert texts, "an empty page must say what it will show"


@pytest.mark.parametrize("page", list(PAGES))
def test_hostile_names_render(monkeypatch, tmp_path, page):
    _visit(_app(monkeypatch, write_synthetic_store(tmp_path / "hostile", hostile=True)), page)


def test_overview_metrics(monkeypatch, populated):
    at = _visit(_app(monkeypatch, populated), "pages/overview.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Groups behind"] == "1 of 3"
    assert metrics["DLQ messages"] == "12"


def test_trace_lookup_known_id(monkeypatch, populated):
    at = _visit(_app(monkeypatch, populated), "pages/traces.py")
    at.text_input(key="trace_id").input("order-0007").run()
    assert not at.exception
    shown = [e.value.replace("\\", "") for e in at.error]  # names are Markdown-escaped
    assert any("dead-lettered" in v and "Died in **payments.DLT**" in v for v in shown), shown
    timelines = [d.value for d in at.dataframe if "event_type" in d.value.columns]
    assert [len(t) for t in timelines] == [3]  # OrderPlaced, PaymentAuthorized, dead letter


def test_trace_lookup_by_event_id(monkeypatch, populated):
    at = _visit(_app(monkeypatch, populated), "pages/traces.py")
    at.text_input(key="trace_id").input("evt-0003-1").run()
    assert not at.exception
    assert any("completed" in s.value for s in at.success)


def test_trace_lookup_unknown_id(monkeypatch, populated):
    at = _visit(_app(monkeypatch, populated), "pages/traces.py")
    at.text_input(key="trace_id").input("no-such-id").run()
    assert not at.exception
    assert any("No event carrying" in w.value for w in at.warning)


def test_config_error_is_shown_not_raised(monkeypatch, tmp_path):
    monkeypatch.setenv("EVENTSCOPE_STORE", str(tmp_path))
    monkeypatch.setenv("EVENTSCOPE_DASHBOARD_REFRESH_S", "0")
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert not at.exception
    assert any("configuration error" in e.value for e in at.error)


def test_recent_traces_filter_by_outcome(monkeypatch, populated):
    at = _visit(_app(monkeypatch, populated), "pages/traces.py")
    at.button_group(key="trace_outcome").set_value("dead_lettered").run()
    assert not at.exception
    recent = [d.value for d in at.dataframe if "correlation_id" in d.value.columns][-1]
    assert len(recent) == 12 and set(recent["outcome"]) == {"dead_lettered"}


def test_dlq_reasons_stay_with_their_queue(monkeypatch, tmp_path):
    now = pd.Timestamp.now(tz="UTC").floor("s")
    rows = [("a.DLT", 5, '{"boom": 5}', 0), ("b.DLT", 0, "{}", 0), ("b.DLT", 0, "{}", 5),
            ("a.DLT", 6, '{"boom": 6}', 6)]  # newest samples come in the other order
    Store(tmp_path).append("dlq", schemas.conform("dlq", [
        {"sampled_at": now + pd.Timedelta(seconds=s), "source": "t", "broker": "kafka", "dlq": d,
         "depth": depth, "reasons": reasons} for d, depth, reasons, s in rows]))
    at = _visit(_app(monkeypatch, tmp_path), "pages/dead_letters.py")
    table = at.dataframe[0].value.set_index("dlq")
    assert table.loc["a.DLT", "reasons"] == "boom ×6" and table.loc["b.DLT", "reasons"] == ""
