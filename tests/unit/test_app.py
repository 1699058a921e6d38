"""The Streamlit app renders every page without an exception: populated, empty and hostile.

Each test points the app at its own temporary store through ``EVENTSCOPE_STORE`` and
turns the dashboard's own collector off, so the pages show exactly the synthetic
frames written here (an order pipeline with a dead-lettering payment step and a
stalled analytics consumer).
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from eventscope import schemas
from eventscope.analysis import lag as lag_analysis
from eventscope.recorder import Recorder
from eventscope.store import Store

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGES = {"pages/overview.py": "Overview", "pages/lag.py": "Consumer lag",
         "pages/dead_letters.py": "Dead letters", "pages/traces.py": "Traces",
         "pages/flow_graph.py": "Flow graph", "pages/catalog.py": "Event catalog",
         "pages/alerts.py": "Alerts"}
HOSTILE = "<script>alert(1)</script>"
HOSTILE_VERSION = "![pixel](http://127.0.0.1:9/pixel.png)"  # Markdown that would fetch an image
# the hostile store's other attacker-chosen names: each one would run a script, were it markup
HOSTILE_GROUP = "<img src=x onerror=alert(2)>"  # the stalled consumer group
HOSTILE_REASON = "<svg onload=alert(3)>"  # opens the dead-letter reason
HOSTILE_CID = "<img src=y onerror=alert(4)>"  # opens every correlation ID
#: the hostile name each page shows (``synthetic_frames(hostile=True)``), literally, as text
HOSTILE_SHOWN = {"pages/overview.py": [HOSTILE_GROUP, HOSTILE_CID], "pages/lag.py": [HOSTILE_GROUP],
                 "pages/dead_letters.py": [HOSTILE_REASON], "pages/traces.py": [HOSTILE_CID],
                 "pages/flow_graph.py": [HOSTILE, HOSTILE_GROUP], "pages/catalog.py": [HOSTILE],
                 "pages/alerts.py": [HOSTILE_GROUP]}


def synthetic_frames(now: pd.Timestamp | None = None, orders: int = 120,
                     hostile: bool = False) -> dict[str, pd.DataFrame]:
    """Ten minutes of an order pipeline: orders → payments → shipments, with a DLQ."""
    now = now or pd.Timestamp.now(tz="UTC").floor("s")
    payer = HOSTILE if hostile else "payment-service"
    analytics = HOSTILE_GROUP if hostile else "analytics"
    reason = f"{HOSTILE_REASON if hostile else 'TimeoutException'}: inventory did not answer"
    events, start = [], now - pd.Timedelta(minutes=10)
    for i in range(orders):
        t, cid = start + pd.Timedelta(seconds=5 * i), f"{HOSTILE_CID if hostile else ''}order-{i:04d}"
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
                "dlq_reason": reason if dead else None,
                "original_topic": "payments" if dead else None, "size_bytes": 310,
                "schema_version": HOSTILE_VERSION if hostile else "2",
                "headers": '{"x-correlation-id": "%s"}' % cid,
                "payload": json.dumps({"event_type": kind, "schema_version": 2, "source": service,
                                       "correlation_id": cid, "data": {"order_id": f"ord_{i}",
                                                                       "amount": 10.5 + i}})})
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
                    "reasons": json.dumps({reason: (done + 2) // 10})})
        health.append({"sampled_at": at, "source": "replay", "collector": "replay", "ok": True,
                       "error": "", "duration_ms": 12.5, "rows": 40, "last_success": at})
    return {"events": schemas.conform("events", events), "lag": schemas.conform("lag", lag),
            "dlq": schemas.conform("dlq", dlq), "health": schemas.conform("health", health)}


def write_synthetic_store(root: Path, hostile: bool = False) -> Path:
    """Fill a store directory with :func:`synthetic_frames`, through the collectors' write path
    (the recorder: raw rows, snapshots and rollups)."""
    Recorder(Store(root)).record(synthetic_frames(hostile=hostile))
    return root


CLUSTERS = ("prod-eu", "prod-us")  # two Kafka clusters with the same topics, groups and DLQ


def two_cluster_frames(now: pd.Timestamp | None = None) -> dict[str, pd.DataFrame]:
    """:func:`synthetic_frames` on each of two Kafka clusters named ``prod-eu`` and ``prod-us``:
    the same topics, groups and DLQ on both (so only the cluster tells two rows apart); the
    correlation and event IDs say their cluster. On prod-us nothing is dead-lettered after
    the first minute, so the two DLQs differ in depth."""
    now = now or pd.Timestamp.now(tz="UTC").floor("s")
    parts: dict[str, list] = {}
    for name in CLUSTERS:
        frames = synthetic_frames(now, orders=60)
        for frame, rows in frames.items():
            rows = rows.assign(source=name)
            if "broker" in rows:
                rows = rows.assign(broker=name, kind="kafka")
            if frame == "events":
                rows = rows.assign(correlation_id=f"{name}-" + rows["correlation_id"].astype(str),
                                   event_id=f"{name}-" + rows["event_id"].astype(str),
                                   payload=rows["payload"].str.replace('"correlation_id": "', f'"correlation_id": "{name}-'),
                                   headers=rows["headers"].str.replace('": "', f'": "{name}-'))
            if frame == "dlq" and name == "prod-us":
                rows = rows.assign(depth=1, reasons=rows["reasons"].iloc[:1].tolist() * len(rows))
            parts.setdefault(frame, []).append(rows)
    return {frame: schemas.conform(frame, pd.concat(rows, ignore_index=True)) for frame, rows in parts.items()}


def write_two_cluster_store(root: Path) -> Path:
    """A store holding :func:`two_cluster_frames`, written by the recorder."""
    Recorder(Store(root)).record(two_cluster_frames())
    return root


def _app(monkeypatch, store_dir: Path, script: str = APP) -> AppTest:
    monkeypatch.setenv("EVENTSCOPE_STORE", str(store_dir))
    monkeypatch.setenv("EVENTSCOPE_DASHBOARD_COLLECT", "off")
    for name in ("EVENTSCOPE_KAFKA_BOOTSTRAP", "EVENTSCOPE_REDIS_URL", "EVENTSCOPE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    # not run here: every test opens its page with _visit, and the landing page (the Overview,
    # the costliest) has tests of its own
    return AppTest.from_file(script, default_timeout=60)


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


#: elements whose value Streamlit renders as Markdown (every element's label is Markdown too)
MARKDOWN_VALUES = {"markdown", "caption", "title", "header", "subheader", "error", "warning",
                   "info", "success", "page_link", "toast"}


def _shown_strings(at: AppTest) -> tuple[list[str], list[str]]:
    """The page's text as (Markdown it renders, plain text it shows as is): labels and the
    values of Markdown elements; cells, options and the values of every other element."""
    markdown, plain = [], []

    def walk(node) -> None:
        children = getattr(node, "children", None)
        for child in (children.values() if isinstance(children, dict) else ()):
            walk(child)
        kind, value, label = getattr(node, "type", ""), getattr(node, "value", None), getattr(node, "label", None)
        if isinstance(label, str):
            markdown.append(label)
        if isinstance(value, str):
            (markdown if kind in MARKDOWN_VALUES else plain).append(value)
        elif isinstance(value, pd.DataFrame):
            plain.extend(value.astype(str).to_numpy().ravel().tolist())
        plain.extend(str(o) for o in getattr(node, "options", None) or ())

    walk(at.main)
    walk(at.sidebar)
    return markdown, plain


@pytest.mark.parametrize("page", list(PAGES))
def test_hostile_names_render(monkeypatch, tmp_path, page):
    """Each page shows the attacker-chosen names of its data literally: as plain text, or
    Markdown-escaped where it renders Markdown; never as markup (the browser's view of the
    same: tests/browser/test_browser.py::test_hostile_names_fire_no_script)."""
    from eventscope.ui.format import md
    at = _visit(_app(monkeypatch, write_synthetic_store(tmp_path / "hostile", hostile=True)), page)
    markdown, plain = _shown_strings(at)
    for name in HOSTILE_SHOWN[page]:
        assert any(name in text for text in plain) or any(md(name) in text for text in markdown), \
            f"{page} does not show {name!r}"
        raw = [text for text in markdown if name in text]
        assert raw == [], f"{page} renders {name!r} as Markdown, unescaped"


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


# -- Lag page: table, filters, drill-down, stale banner ---------------------------------
def _redis_frames(now: pd.Timestamp, group: str = "billing-worker", stream: str = "invoices",
                  consumers: tuple[str, ...] = ("worker-1", "worker-2"),
                  stuck: bool = True) -> dict[str, pd.DataFrame]:
    """Five minutes of a Redis group that stopped acknowledging, with consumers and stuck
    entries in its newest sample (and an older stuck entry that is no longer current)."""
    lag, members, entries = [], [], []
    times = [now - pd.Timedelta(seconds=s) for s in range(300, -1, -15)]
    for i, at in enumerate(times):
        lag.append({"sampled_at": at, "source": "redis", "broker": "redis", "group": group,
                    "topic": stream, "partition": 0, "committed": 100 + i, "end": 100 + 3 * i,
                    "lag": 2 * i, "lag_seconds": 5.0 * i, "group_state": "n/a",
                    "members": len(consumers), "pending": 4})
        members += [{"sampled_at": at, "source": "redis", "broker": "redis", "group": group,
                     "topic": stream, "consumer": c, "host": "", "assignment": "",
                     "pending": 2, "idle_ms": 1000 * (n + 1) + i} for n, c in enumerate(consumers)]
    entries.append({"sampled_at": times[0], "source": "redis", "broker": "redis", "topic": stream,
                    "group": group, "entry_id": "1-0", "consumer": consumers[0], "idle_ms": 5,
                    "deliveries": 9})  # gone by the newest sample
    if stuck:
        entries += [{"sampled_at": now, "source": "redis", "broker": "redis", "topic": stream,
                     "group": group, "entry_id": eid, "consumer": c, "idle_ms": idle,
                     "deliveries": d}
                    for eid, c, idle, d in [("1700000000000-0", consumers[0], 104_000, 7),
                                            ("1700000000001-0", consumers[-1], 65_000, 3)]]
    return {"lag": schemas.conform("lag", lag), "consumers": schemas.conform("consumers", members),
            "stuck": schemas.conform("stuck", entries)}


def _kafka_members(now: pd.Timestamp) -> pd.DataFrame:
    return schemas.conform("consumers", [
        {"sampled_at": now, "source": "replay", "broker": "kafka", "group": "payment-service",
         "topic": "orders", "consumer": f"payment-{n}", "host": f"/10.0.0.{n}",
         "assignment": f"orders:{n}"} for n in (1, 2)])


def _lag_store(root: Path, now: pd.Timestamp | None = None, health_error: str = "",
               **redis) -> Path:
    """The synthetic pipeline plus a Redis group and Kafka member details, all at ``now``."""
    now = now or pd.Timestamp.now(tz="UTC").floor("s")
    store = Store(root)
    frames = synthetic_frames(now)
    frames["consumers"] = _kafka_members(now)
    for name, frame in _redis_frames(now, **redis).items():
        frames[name] = pd.concat([frames[name], frame], ignore_index=True) if name in frames else frame
    if health_error:
        frames["health"] = pd.concat([frames["health"], schemas.conform("health", [
            {"sampled_at": now - pd.Timedelta(seconds=1), "source": "redis",
             "collector": "redis.streams", "ok": False, "error": health_error,
             "duration_ms": 3.0, "rows": 0, "last_success": now - pd.Timedelta(minutes=9)}])])
    Recorder(store).record(frames)
    return root


def _frames_with(at: AppTest, column: str) -> list[pd.DataFrame]:
    return [d.value for d in at.dataframe if column in getattr(d.value, "columns", [])]


def _group_table(at: AppTest) -> pd.DataFrame:
    return _frames_with(at, "max_lag")[0]


def _pick(at: AppTest, broker: str, group: str) -> AppTest:
    at.selectbox(key="lag_group").set_value(f"{group}  ·  {broker}").run()
    assert not at.exception, at.exception
    return at


def test_lag_table_worst_first_with_max_lag_and_words(monkeypatch, tmp_path):
    at = _visit(_app(monkeypatch, _lag_store(tmp_path / "s")), "pages/lag.py")
    table = _group_table(at)
    assert set(table["group"]) == {"payment-service", "shipping-service", "analytics",
                                   "billing-worker"}
    severity = table["status"].map(lag_analysis.SEVERITY).tolist()
    assert severity == sorted(severity, reverse=True), table[["group", "status"]]
    billing = table.set_index("group").loc["billing-worker"]
    assert billing["max_lag"] == 40 and billing["lag"] == 40 and billing["behind"] == "1 min 40 s"
    assert not any("Stale" in w.value for w in at.warning)


def test_lag_drilldown_redis_group(monkeypatch, tmp_path):
    at = _pick(_visit(_app(monkeypatch, _lag_store(tmp_path / "s")), "pages/lag.py"),
               "redis", "billing-worker")
    parts = _frames_with(at, "committed")
    assert len(parts) == 1 and parts[0]["partition"].tolist() == [0]
    assert parts[0]["lag"].tolist() == [40] and parts[0]["end"].tolist() == [160]
    members = _frames_with(at, "pending")[0]
    assert members["consumer"].tolist() == ["worker-1", "worker-2"]
    assert members["idle"].tolist() == ["1 s", "2 s"]  # the newest sample's idle times
    stuck = _frames_with(at, "entry_id")[0]
    assert stuck["entry_id"].tolist() == ["1700000000000-0", "1700000000001-0"]  # not "1-0"
    assert stuck["deliveries"].tolist() == [7, 3] and stuck["idle"].tolist()[0] == "1 min 44 s"
    assert {m.label: m.value for m in at.metric}["Stuck entries"] == "2"
    assert any("Seconds behind" in m.value for m in at.markdown)


def test_lag_drilldown_redis_group_without_stuck_entries(monkeypatch, tmp_path):
    at = _pick(_visit(_app(monkeypatch, _lag_store(tmp_path / "s", stuck=False)), "pages/lag.py"),
               "redis", "billing-worker")
    assert not _frames_with(at, "entry_id")
    assert any("No stuck entries" in s.value for s in at.success)


def test_lag_drilldown_kafka_members(monkeypatch, tmp_path):
    at = _pick(_visit(_app(monkeypatch, _lag_store(tmp_path / "s")), "pages/lag.py"),
               "kafka", "payment-service")
    members = _frames_with(at, "assignment")[0]
    assert members["consumer"].tolist() == ["payment-1", "payment-2"]
    assert members["assignment"].tolist() == ["orders:1", "orders:2"]
    assert not _frames_with(at, "entry_id")  # stuck entries are a Redis thing
    assert "Stuck entries" not in {m.label for m in at.metric}


def test_lag_drilldown_member_count_without_details(monkeypatch, tmp_path):
    at = _pick(_visit(_app(monkeypatch, _lag_store(tmp_path / "s")), "pages/lag.py"),
               "kafka", "shipping-service")
    assert not _frames_with(at, "assignment")
    assert any("1 member(s)" in c.value for c in at.caption)


def test_lag_filters(monkeypatch, tmp_path):
    at = _visit(_app(monkeypatch, _lag_store(tmp_path / "s")), "pages/lag.py")
    # the sidebar's cluster selector filters the table, and the group picker with it
    # (tests/browser/test_browser.py clicks it; AppTest only keeps the main script's elements until
    # a fragment reruns, so the choice is set in the session here)
    assert at.multiselect(key="clusters").options == ["kafka · kafka", "redis · redis"]
    at.session_state["clusters"] = ["redis"]
    at.switch_page("pages/lag.py").run()
    assert set(_group_table(at)["broker"]) == {"redis"}
    assert at.selectbox(key="lag_group").value == "billing-worker  ·  redis"
    at.session_state["clusters"] = []
    at.switch_page("pages/lag.py").run()
    assert set(_group_table(at)["broker"]) == {"kafka", "redis"}
    at.text_input(key="lag_filter").input("SHIP").run()  # group or topic, any case
    table = _group_table(at)
    assert set(table["group"]) == {"shipping-service"}
    at.text_input(key="lag_filter").input("orders").run()
    assert set(_group_table(at)["topic"]) == {"orders"}
    at.text_input(key="lag_filter").input("").run()
    at.button_group(key="lag_status").set_value(["STALL"]).run()
    table = _group_table(at)
    assert len(table) and set(table["status"]) == {"STALL"}
    at.text_input(key="lag_filter").input("no-such-group").run()
    assert not at.exception
    assert any("No group matches" in i.value for i in at.info)


def test_lag_stale_warning_for_an_old_store(monkeypatch, tmp_path):
    old = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=10)
    store = _lag_store(tmp_path / "s", now=old,
                       health_error="ConnectionError: Error 111 connecting to redis:6379")
    at = _visit(_app(monkeypatch, store), "pages/lag.py")
    stale = [w.value for w in at.warning if "Stale" in w.value]
    assert len(stale) == 1 and "last sample 10 min" in stale[0]
    assert "Error 111 connecting to redis" in stale[0].replace("\\", "")
    assert len(_group_table(at)), "stale numbers are still shown"


def test_lag_no_stale_warning_for_a_fresh_store(monkeypatch, tmp_path):
    at = _visit(_app(monkeypatch, _lag_store(tmp_path / "s")), "pages/lag.py")
    assert not any("Stale" in w.value for w in at.warning)


def test_lag_page_on_an_empty_store(monkeypatch, tmp_path):
    at = _visit(_app(monkeypatch, tmp_path / "empty"), "pages/lag.py")
    assert any("Nothing to show yet" in i.value for i in at.info)
    assert not at.warning and not at.dataframe


def test_lag_hostile_names_stay_data(monkeypatch, tmp_path):
    store = _lag_store(tmp_path / "s", group=HOSTILE, stream="<img src=x onerror=alert(3)>",
                       consumers=("href=javascript:alert(4)", "[x](javascript:alert(5))"),
                       health_error=HOSTILE)
    at = _pick(_visit(_app(monkeypatch, store), "pages/lag.py"), "redis", HOSTILE)
    assert _frames_with(at, "entry_id")[0]["consumer"].iloc[0] == "href=javascript:alert(4)"
    # the status badge (":red-badge[STALL] ") is the page's own markup, not a name
    texts = [re.sub(r"^:[a-z]+-badge\[[A-Z]+\] ", "", m.value) for m in at.markdown]
    texts += [w.value for w in at.warning]
    assert any("script" in t for t in texts) and any("img src" in t for t in texts)
    for text in texts:  # names arrive Markdown-escaped: no bare tag or link syntax
        assert not re.search(r"(?<!\\)[<>\[\]]", text), text


# -- Dead letters page: overview, drill-down, trace links, masking ------------------------
def _dlq_store(root: Path) -> Path:
    """The synthetic pipeline plus a Redis DLQ whose messages carry hostile values: an
    unmasked e-mail in a preview, ``<script>`` in a reason, a huge header, non-UTF-8
    bytes, a correlation ID needing URL encoding and one without a correlation ID."""
    now = pd.Timestamp.now(tz="UTC").floor("s")
    frames = synthetic_frames(now)
    rows = []
    for i, (cid, reason, preview, headers) in enumerate([
            ("cid a&b/c #1", f"{HOSTILE}: boom", '{"email": "alice@example.com", "n": 1}',
             '{"x-error": "' + "y" * 50_000 + '"}'),
            (None, "MalformedMessageError: payload is not valid UTF-8 JSON",
             "<12 bytes, not UTF-8: 0xfffe00…>", '{"bin": "0xdeadbeef"}'),
            ("order-9001", "PaymentDeclinedError: card declined for bob@example.org",
             "card 4111 1111 1111 1111 of bob@example.org", "{}")]):
        at = now - pd.Timedelta(seconds=30 - i)
        rows.append({"observed_at": at, "source": "redis", "broker": "redis", "topic": "orders:dlq",
                     "partition": 0, "offset": f"{1700000000000 + i}-0", "at": at, "broker_at": at,
                     "event_type": "OrderPlaced" if i != 1 else "<undecodable>",
                     "correlation_id": cid, "dead_letter": True, "dlq_reason": reason,
                     "original_topic": "orders", "dlq_class": reason.split(":")[0],
                     "headers": headers, "preview": preview, "size_bytes": 12,
                     "decode_error": "not JSON" if i == 1 else ""})
    frames["events"] = pd.concat([frames["events"], schemas.conform("events", rows)],
                                 ignore_index=True)
    frames["dlq"] = pd.concat([frames["dlq"], schemas.conform("dlq", [
        {"sampled_at": now - pd.Timedelta(seconds=s), "source": "redis", "broker": "redis",
         "dlq": "orders:dlq", "source_topic": "orders", "depth": 3 if s == 0 else 1,
         "oldest_at": now - pd.Timedelta(seconds=30),
         "reasons": '{"%s: boom": 1, "PaymentDeclinedError: card declined": 2}' % HOSTILE}
        for s in (60, 0)] + [
        {"sampled_at": now, "source": "replay", "broker": "kafka", "dlq": "idle.DLT",
         "depth": 0, "reasons": "{}"}])], ignore_index=True)
    Recorder(Store(root)).record(frames)
    return root


def _dlq_pick(at: AppTest, broker: str, dlq: str) -> AppTest:
    at.selectbox(key="dlq_pick").set_value(f"{dlq}  ·  {broker}").run()
    assert not at.exception, at.exception
    return at


def _page_text(at: AppTest) -> str:
    """Everything the page shows as text: elements' values and dataframes' cells."""
    parts = [str(getattr(e, "value", "")) for e in at.main]
    parts += [d.value.to_csv() for d in at.dataframe]
    parts += [str(m.value) + str(m.label) for m in at.metric]
    return "\n".join(parts)


def test_dlq_overview_depth_growth_reasons(monkeypatch, tmp_path):
    at = _visit(_app(monkeypatch, _dlq_store(tmp_path / "s")), "pages/dead_letters.py")
    table = at.dataframe[0].value.set_index("dlq")
    assert table.index.tolist()[-1] == "idle.DLT"  # the empty queue comes last
    payments = table.loc["payments.DLT"]
    assert payments["depth"] == 12 and payments["growth_per_min"] > 0
    assert payments["reasons"] == "TimeoutException: inventory did not answer ×12"
    assert len(payments["history"]) >= 10 and payments["history"][-1] == 12  # sparkline
    assert payments["oldest"].endswith(("s", "min"))
    redis = table.loc["orders:dlq"]
    assert redis["depth"] == 3 and redis["reasons"].startswith("PaymentDeclinedError")
    assert HOSTILE in redis["reasons"]  # shown as data in a cell, not markup
    at.toggle(key="dlq_hide_empty").set_value(True).run()
    assert "idle.DLT" not in at.dataframe[0].value["dlq"].tolist()


def test_dlq_drilldown_messages_links_and_masking(monkeypatch, tmp_path):
    at = _visit(_app(monkeypatch, _dlq_store(tmp_path / "s")), "pages/dead_letters.py")
    assert at.selectbox(key="dlq_pick").value == "payments.DLT  ·  kafka"  # fullest first
    messages = _frames_with(at, "preview")[0]
    assert len(messages) == 12 and messages["trace"].str.startswith("/traces?id=order-").all()
    at = _dlq_pick(at, "redis", "orders:dlq")
    messages = _frames_with(at, "preview")[0].set_index("offset")
    assert "headers" not in messages.columns
    assert messages.loc["1700000000000-0", "trace"] == "/traces?id=cid%20a%26b%2Fc%20%231"
    assert pd.isna(messages.loc["1700000000001-0", "trace"])  # no correlation ID, no link
    assert messages.loc["1700000000002-0", "trace"] == "/traces?id=order-9001"
    preview = messages.loc["1700000000000-0", "preview"]
    assert "alice" not in preview and '"email": "***"' in preview  # the value under a personal key
    assert "****" in messages.loc["1700000000002-0", "preview"]
    reasons = _frames_with(at, "share")[0]
    assert reasons["count"].sum() == 3 and abs(reasons["share"].sum() - 1) < 1e-9
    assert {m.label: m.value for m in at.metric}["Depth"] == "3"
    at.toggle(key="dlq_show_headers").set_value(True).run()
    assert not at.exception
    headers = _frames_with(at, "headers")[0]["headers"]
    assert headers.str.len().max() <= 2000  # a 50 kB header is cut
    text = _page_text(at)
    for secret in ("alice@example.com", "bob@example.org", "4111 1111 1111 1111"):
        assert secret not in text, secret


def test_traces_page_takes_the_id_from_the_url(monkeypatch, populated):
    monkeypatch.setenv("EVENTSCOPE_STORE", str(populated))
    monkeypatch.setenv("EVENTSCOPE_DASHBOARD_COLLECT", "off")
    at = _visit(_app(monkeypatch, populated), "pages/traces.py")
    at.query_params["id"] = "order-0007"
    at.run()
    assert not at.exception
    assert at.text_input(key="trace_id").value == "order-0007"
    assert any("Died in" in e.value for e in at.error)
    at.text_input(key="trace_id").input("evt-0003-1").run()  # a later edit stands
    assert at.text_input(key="trace_id").value == "evt-0003-1"
    assert any("completed" in s.value for s in at.success)
    assert at.query_params["id"] == ["evt-0003-1"] or at.query_params["id"] == "evt-0003-1"


def test_dead_letters_page_on_an_empty_store(monkeypatch, tmp_path):
    at = _visit(_app(monkeypatch, tmp_path / "empty"), "pages/dead_letters.py")
    assert any("Nothing to show yet" in i.value for i in at.info)
    assert not at.dataframe and not at.selectbox


def test_lag_drilldown_of_a_group_on_hundreds_of_streams_stays_readable(monkeypatch, tmp_path):
    """A Redis group reading 600 streams: the header names ten, the partition table lists
    the 500 worst, and the charts draw the 8 worst streams and one series for the rest."""
    store = Store(tmp_path / "s")
    recorder = Recorder(store)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    for back in (120, 60, 0):
        at = now - pd.Timedelta(seconds=back)
        recorder.record({"lag": schemas.conform("lag", [
            {"sampled_at": at, "source": "redis", "broker": "redis", "group": "fan-in",
             "topic": f"tenant:{t:04d}", "partition": 0, "committed": 100, "end": 100 + t % 97,
             "lag": t % 97, "lag_seconds": float(t % 97), "members": 1, "group_state": "n/a"}
            for t in range(600)])})
    at = _pick(_visit(_app(monkeypatch, tmp_path / "s"), "pages/lag.py"), "redis", "fan-in")
    header = next(m.value for m in at.markdown if "600 topics:" in m.value)
    assert "and 590 more (worst first)" in header
    assert header.count("tenant") == 10
    parts = _frames_with(at, "committed")[0]
    assert len(parts) == 500 and parts["lag"].max() == 96 and parts["lag"].min() >= 600 // 97 - 1
    assert any("500 worst of 600" in m.value for m in at.markdown)
    assert any("other 592 topics" in c.value for c in at.caption)


def test_the_catalog_says_when_every_event_seen_was_undecodable(monkeypatch, tmp_path):
    """Raw bytes on every topic: no event type to list, but not "nothing to show yet" either:
    the page says how many events it saw and that none could be decoded."""
    now = pd.Timestamp.now(tz="UTC")
    rows = [{"observed_at": now - pd.Timedelta(seconds=i), "source": "kafka", "broker": "kafka",
             "topic": f"raw-{i % 3}", "partition": 0, "offset": str(i), "at": now - pd.Timedelta(seconds=i),
             "event_type": "<undecodable>", "dead_letter": False} for i in range(7)]
    Store(tmp_path / "store").append("events", schemas.conform("events", rows))
    at = _visit(_app(monkeypatch, tmp_path / "store"), "pages/catalog.py")
    texts = [i.value for i in at.info]
    assert any("7 events seen in this window, 7 of them not decodable" in t for t in texts), texts
    assert not any("Nothing to show yet" in t for t in texts)


def test_the_catalog_says_when_its_counts_come_from_a_share(monkeypatch, populated, tmp_path):
    """Past the events a page reads, the catalog counts a share of the correlation IDs and says so."""
    from eventscope import query

    def said(at):
        return [c.value for c in at.get("caption") if "correlation IDs (all events of each), scaled up" in c.value]
    rows = sum(p["rows"] for p in Store(populated).part_entries("events"))
    with monkeypatch.context() as patch:
        patch.setattr(query, "GRAPH_EVENTS", rows // 2 + 1)  # the hour holds twice as many
        shares = said(_visit(_app(monkeypatch, populated), "pages/catalog.py"))
    assert len(shares) == 1 and "from 1 in 2 correlation IDs" in shares[0], shares
    assert not said(_visit(_app(monkeypatch, write_synthetic_store(tmp_path / "other")), "pages/catalog.py"))
