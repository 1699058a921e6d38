"""Two clusters of one kind in a real browser: every row names its cluster, and the
sidebar's cluster selector hides the other cluster's rows on every page it reaches.

The store holds ``prod-eu`` and ``prod-us`` (both Kafka) with the same topics, consumer
groups and dead-letter queue (``test_app.two_cluster_frames``, written by the recorder),
so only the cluster tells two rows apart. Screenshots land in ``artifacts/screenshots/``.
"""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from test_app import write_two_cluster_store
from test_browser import SHOTS, _open, _settle, _start, _stop, browser  # noqa: F401  (a fixture)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def two_clusters(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clusters")
    proc, url = _start(write_two_cluster_store(tmp / "store"), tmp / "streamlit.log")
    yield url
    _stop(proc)


def _rows(page, index: int = 0) -> list[list[str]]:
    """The rows of the ``index``-th data grid on the page, each a list of its cells' text
    (the grid is drawn on a canvas; its accessible table holds the text)."""
    grid = page.locator('[data-testid="stDataFrame"]').nth(index)
    grid.locator('td[role="gridcell"]').first.wait_for(state="attached", timeout=15_000)
    return [[c.strip() for c in row.locator('td[role="gridcell"]').all_text_contents()]
            for row in grid.locator('tbody tr[role="row"]').all()]


def _picked(page) -> str:
    """What the page's first select box shows."""
    return page.locator('[data-testid="stSelectbox"]').first.locator("input").input_value()


def _go(page, label: str, title: str) -> None:
    """Open another page through the sidebar's navigation (the same session, so the same choice)."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text(label, exact=True).click()
    _settle(page, title)


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"clusters-{name}.png"), full_page=True)


def _choose(page, option: str) -> None:
    """Pick ``option`` in the sidebar's cluster selector."""
    page.locator('[data-testid="stSidebar"] [data-testid="stMultiSelect"]').click()
    page.get_by_role("option", name=option, exact=True).click()
    page.keyboard.press("Escape")


def test_two_clusters_are_labelled_rows_and_the_selector_hides_one(browser, two_clusters):  # noqa: F811
    dialogs: list[str] = []
    page = _open(browser, f"{two_clusters}/lag", dialogs)
    _settle(page, "Consumer lag")
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert sidebar.get_by_text("Clusters", exact=True).is_visible()
    assert sidebar.get_by_text("Showing all 2 clusters.").is_visible()

    # Lag: the same group on the same topic, once per cluster, each row naming its cluster and kind
    rows = _rows(page)
    header = page.locator('[data-testid="stDataFrame"]').first.locator('th[role="columnheader"]').all_text_contents()
    assert "cluster" in [h.strip() for h in header] and "kind" in [h.strip() for h in header]
    lag = {(r[1], r[2], r[3], r[4]) for r in rows}  # status, cluster, kind, group, topic ...
    assert ("prod-eu", "kafka", "analytics", "orders") in lag
    assert ("prod-us", "kafka", "analytics", "orders") in lag
    picker = _picked(page)  # the group detail opens on the worst group, named with its cluster
    assert "analytics" in picker and ("prod-eu" in picker or "prod-us" in picker), picker
    _shot(page, "lag-both")

    _go(page, "Dead letters", "Dead letters")
    dlq = {(r[0], r[1], r[2]) for r in _rows(page)}
    assert {("prod-eu", "kafka", "payments.DLT"), ("prod-us", "kafka", "payments.DLT")} <= dlq
    _shot(page, "dead_letters-both")

    _go(page, "Overview", "Overview")
    per_cluster = {r[0]: r for r in _rows(page)}
    assert set(per_cluster) == {"prod-eu", "prod-us"}
    assert per_cluster["prod-eu"][1] == "kafka" and per_cluster["prod-eu"][5] == "12"  # DLQ messages
    assert per_cluster["prod-us"][5] == "1"
    assert page.get_by_text("analytics (prod-eu)", exact=False).first.is_visible()
    assert page.get_by_text("analytics (prod-us)", exact=False).first.is_visible()
    _shot(page, "overview-both")

    # choose prod-us: every page the session reaches shows its rows only
    _choose(page, "prod-us · kafka")
    _settle(page, "Overview")
    assert sidebar.get_by_text("Showing 1 of 2 clusters: every page hides the rest.").is_visible()
    # (the elements of the run before the choice may linger a moment: wait for them to go)
    expect(page.get_by_text("analytics (prod-eu)", exact=False)).to_have_count(0, timeout=15_000)
    expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(0)  # no per-cluster table for one cluster
    assert page.get_by_text("analytics (prod-us)", exact=False).first.is_visible()
    assert page.get_by_text("DLQ messages").first.is_visible()
    _shot(page, "overview-prod-us")

    _go(page, "Lag", "Consumer lag")
    clusters = {r[1] for r in _rows(page)}  # status, cluster, ...
    assert clusters == {"prod-us"}
    picker = _picked(page)
    assert "prod-us" in picker and "prod-eu" not in picker, picker
    _shot(page, "lag-prod-us")

    _go(page, "Dead letters", "Dead letters")
    assert {(r[0], r[2]) for r in _rows(page)} == {("prod-us", "payments.DLT")}
    _shot(page, "dead_letters-prod-us")

    _go(page, "Traces", "Traces")
    cids = [r[0] for r in _rows(page)]
    assert cids and all(c.startswith("prod-us-") for c in cids)
    # a trace names the cluster of each event and hop
    page.get_by_label("Correlation ID, W3C trace ID or event ID").fill("prod-us-order-0057")
    page.keyboard.press("Enter")
    page.get_by_text("Died in").wait_for(timeout=30_000)
    _settle(page, "Traces")
    events = _rows(page, 0) + _rows(page, 1)  # the trace's hops, then its events
    dead = [r for r in events if "payments.DLT" in r]
    assert len(dead) == 2 and all("prod-us" in r for r in dead), dead  # the hop into the DLQ and the dead letter
    assert ["prod-us", "kafka", "payments.DLT"] == dead[1][2:5], dead[1]  # +ms, time, cluster, kind, topic
    assert "prod-eu" not in "\n".join("\t".join(r) for r in events)
    banner = page.get_by_text("Died in").first.inner_text()
    assert "Died in payments.DLT (prod-us)" in banner, banner
    _shot(page, "traces-prod-us")

    _go(page, "Flow graph", "Flow graph")
    edges = "\n".join("\t".join(r) for r in _rows(page))
    assert "topic:prod-us:orders" in edges and "prod-eu" not in edges
    _shot(page, "flow_graph-prod-us")

    _go(page, "Event catalog", "Event catalog")
    catalog = _rows(page)
    assert catalog and {r[1] for r in catalog} == {"prod-us"}  # event type, clusters, ...
    assert "prod-eu" not in "\n".join("\t".join(r) for r in catalog)
    _shot(page, "catalog-prod-us")

    _go(page, "Alerts", "Alerts")
    firing = _rows(page)
    assert firing and {r[2] for r in firing} == {"prod-us"}  # severity, rule, cluster, subject ...
    _shot(page, "alerts-prod-us")
    assert page.locator('[data-testid="stException"]').count() == 0
    assert not dialogs
    page.close()


def test_the_selector_appears_when_a_second_cluster_arrives(browser, tmp_path):  # noqa: F811
    """A page opened on an empty store refreshes itself in fragments; once the store holds
    two clusters, the sidebar offers the selector without a reload."""
    proc, url = _start(tmp_path / "store", tmp_path / "streamlit.log")
    try:
        dialogs: list[str] = []
        page = _open(browser, f"{url}/lag", dialogs)
        _settle(page, "Consumer lag")
        page.get_by_text("Nothing to show yet").wait_for(timeout=15_000)
        sidebar = page.locator('[data-testid="stSidebar"]')
        assert sidebar.get_by_text("Clusters", exact=True).count() == 0
        write_two_cluster_store(tmp_path / "store")
        sidebar.get_by_text("Showing all 2 clusters.").wait_for(timeout=30_000)
        expect(page.get_by_text("Nothing to show yet")).to_have_count(0, timeout=15_000)
        assert not dialogs
        page.close()
    finally:
        _stop(proc)
