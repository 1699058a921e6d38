"""The Alerts page and the Overview front door, driven by AppTest on synthetic stores."""
from __future__ import annotations

import pandas as pd

from eventscope.alerting import AlertEvaluator
from eventscope.config import AlertsConfig
from eventscope.recorder import Recorder
from eventscope.store import Store
from test_app import _app, _visit, write_synthetic_store, write_two_cluster_store


def _links(at) -> list[tuple[str, str, str]]:
    return [(link.proto.label, link.proto.page, link.proto.query_string) for link in at.get("page_link")]


def test_overview_is_the_incident_front_door(monkeypatch, tmp_path):
    at = _visit(_app(monkeypatch, write_synthetic_store(tmp_path / "s")), "pages/overview.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Firing alerts"] == "3"
    links = _links(at)
    # what fires now, one click from the group and the DLQ it is about
    assert any("critical" in label and page == "lag" and query == "broker=kafka&group=analytics"
               for label, page, query in links), links
    assert any("dlq\\_depth" in label and page == "dead_letters" and query == "broker=kafka&dlq=payments.DLT"
               for label, page, query in links), links
    # the worst group, the filling DLQ, the latest failed traces
    assert any(label.startswith("analytics \\(kafka\\) · STALL") and page == "lag" for label, page, _ in links), links
    assert any(label.startswith("payments\\.DLT \\(kafka\\) · 12 msgs") for label, _, _ in links), links
    traces = [query for _, page, query in links if page == "traces"]
    assert traces and all(q.startswith("id=order-") and int(q[-2:]) % 10 == 7 for q in traces)
    assert at.get("graphviz_chart"), "the small health graph"


def test_links_work_from_the_entry_script_an_installed_dashboard_runs(monkeypatch, tmp_path):
    """``eventscope dashboard`` runs ``eventscope/app.py``, not the checkout's ``app.py``:
    a link Streamlit resolved against the entry script's folder broke every page that links
    to another while an alert fired (the Overview and the Alerts page)."""
    import eventscope.app
    from eventscope.ui.widgets import PAGES_DIR

    root = write_synthetic_store(tmp_path / "s")
    for page in ("overview.py", "alerts.py"):
        at = _app(monkeypatch, root, script=eventscope.app.__file__)
        at.switch_page(str(PAGES_DIR / page)).run()
        assert not at.exception, (page, at.exception)
        pages = {p for _, p, _ in _links(at)}
        assert {"lag", "dead_letters"} <= pages, (page, pages)


def test_alerts_page_firing_timeline_and_rules(monkeypatch, tmp_path):
    at = _visit(_app(monkeypatch, write_synthetic_store(tmp_path / "s")), "pages/alerts.py")
    assert [e.value for e in at.error] == ["**3 alerts firing**, 2 critical"]
    firing = at.dataframe[0].value
    assert list(firing["rule"]) == ["lag_seconds", "group_stall", "dlq_depth"]
    assert list(firing["value"]) == ["7 min 30 s", "STALL", "12 msgs"]
    rules = at.dataframe[1].value
    row = rules[(rules["rule"] == "lag_seconds") & (rules["subject"] == "kafka:payment-service/orders")].iloc[0]
    assert (row["value"], row["warning"], row["critical"], row["state"]) == ("0 s", "60 s", "5 min 0 s", "ok")
    assert "silenced" not in set(rules["state"])
    assert at.get("plotly_chart"), "the timeline"


def test_what_if_replays_the_last_hour_and_offers_toml(monkeypatch, tmp_path):
    at = _visit(_app(monkeypatch, write_synthetic_store(tmp_path / "s")), "pages/alerts.py")
    at.selectbox(key="whatif_rule").set_value("lag_seconds").run()
    at.number_input(key="whatif_w_lag_seconds").set_value(1000.0)
    at.number_input(key="whatif_c_lag_seconds").set_value(2000.0)
    at.number_input(key="whatif_clear_lag_seconds").set_value(0.0)
    at.button(key="whatif_run").click().run()
    assert not at.exception, at.exception
    said = " ".join(m.value for m in at.markdown)
    assert "fired **1** time(s) as configured, and would have fired **0** time(s)" in said, said
    snippet = at.code[0].value
    assert "[[alerts.rules]]" in snippet and "warning = 1000" in snippet and "critical = 2000" in snippet
    at.number_input(key="whatif_w_lag_seconds").set_value(100.0)
    at.number_input(key="whatif_c_lag_seconds").set_value(0.0)
    at.button(key="whatif_run").click().run()
    said = " ".join(m.value for m in at.markdown)
    assert "would have fired **1** time(s) with these settings (0 critical)" in said, said


def test_what_if_rejects_an_invalid_rule(monkeypatch, tmp_path):
    at = _visit(_app(monkeypatch, write_synthetic_store(tmp_path / "s")), "pages/alerts.py")
    at.selectbox(key="whatif_rule").set_value("dlq_depth").run()
    at.number_input(key="whatif_w_dlq_depth").set_value(50.0)
    at.number_input(key="whatif_c_dlq_depth").set_value(10.0).run()
    assert any("Not a valid rule" in e.value and "critical must be" in e.value for e in at.error), at.error


def test_pages_read_the_collectors_evaluation(monkeypatch, tmp_path):
    """With an evaluated store the pages show the stored state, not a replay of their own."""
    root = write_synthetic_store(tmp_path / "s")
    evaluator = AlertEvaluator(Store(root), AlertsConfig(for_s=0))
    evaluator.evaluate()
    at = _visit(_app(monkeypatch, root), "pages/alerts.py")
    firing = at.dataframe[0].value
    assert set(firing["rule"]) == {"lag_seconds", "group_stall", "dlq_depth"}
    history = Store(root).read("alerts")
    # the first evaluation judged the samples the store already held (pending → firing in them)
    assert {"pending", "firing"} <= set(history["transition"]) and history["at"].nunique() > 1
    # a store the collector evaluated and found healthy shows no replayed alert
    healthy = tmp_path / "healthy"
    Recorder(Store(healthy)).record(
        {"lag": Store(root).read("lag").assign(lag=0, lag_seconds=0.0, committed=10, end=10)})
    AlertEvaluator(Store(healthy), AlertsConfig(for_s=0)).evaluate()
    at = _visit(_app(monkeypatch, healthy), "pages/alerts.py")
    assert [s.value for s in at.success] == ["No alert is firing."]


def test_lag_and_dead_letters_pages_open_what_the_link_names(monkeypatch, tmp_path):
    root = write_synthetic_store(tmp_path / "s")
    at = _app(monkeypatch, root)
    at.query_params["broker"] = "kafka"
    at.query_params["group"] = "analytics"
    at = _visit(at, "pages/lag.py")
    assert at.selectbox(key="lag_group").value == "analytics  ·  kafka"
    at = _app(monkeypatch, root)
    at.query_params["broker"] = "kafka"
    at.query_params["dlq"] = "payments.DLT"
    at = _visit(at, "pages/dead_letters.py")
    assert at.selectbox(key="dlq_pick").value == "payments.DLT  ·  kafka"


def test_history_times_are_utc(tmp_path):
    root = write_synthetic_store(tmp_path / "s")
    AlertEvaluator(Store(root), AlertsConfig(for_s=0)).evaluate()
    history = Store(root).read("alerts")
    assert str(history["at"].dt.tz) == "UTC" and (history["since"] <= pd.Timestamp.now(tz="UTC")).all()


def test_a_link_opens_its_cluster_even_when_the_selector_left_it_out(monkeypatch, tmp_path):
    """Two clusters with the same group: the link's cluster is the one opened, and a
    selection of the other cluster gets the linked one added (else the row would be hidden)."""
    root = write_two_cluster_store(tmp_path / "s")
    at = _app(monkeypatch, root)
    at.session_state["clusters"] = ["prod-eu"]
    at.query_params["broker"] = "prod-us"
    at.query_params["group"] = "analytics"
    at = _visit(at, "pages/lag.py")
    assert at.multiselect(key="clusters").value == ["prod-eu", "prod-us"]
    assert at.selectbox(key="lag_group").value == "analytics  ·  prod-us"
    at = _app(monkeypatch, root)
    at.query_params["broker"] = "prod-eu"
    at.query_params["dlq"] = "payments.DLT"
    at = _visit(at, "pages/dead_letters.py")
    assert at.multiselect(key="clusters").value == []  # every cluster shown already
    assert at.selectbox(key="dlq_pick").value == "payments.DLT  ·  prod-eu"
