"""Flow graph and event catalog in real Chromium with hostile service names and event types.

Service names and event types come from untrusted payloads. Here a producing service is
called ``<img src=x onerror=alert(1)>`` and an event type ``<script>alert("type")</script>``:
no dialog may fire on either page, and both names must read literally, in the graph's
tooltips (inside the pyvis iframe), in the focus picker and on the catalog page.
"""
from __future__ import annotations

import pytest

from eventscope.recorder import Recorder
from eventscope.store import Store
from test_app import HOSTILE, synthetic_frames
from test_browser import SHOTS, _hover_every_node, _open, _settle, _start, _stop, browser  # noqa: F401

pytestmark = pytest.mark.browser
IMG = "<img src=x onerror=alert(1)>"
TYPE = '<script>alert("type")</script>'


@pytest.fixture(scope="module")
def hostile_dashboard(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile-graph")
    frames = synthetic_frames(hostile=True)  # payer service `<script>alert(1)</script>`
    events = frames["events"]
    events["service"] = events["service"].replace("shipping-service", IMG)
    events["event_type"] = events["event_type"].replace("PaymentAuthorized", TYPE)
    Recorder(Store(tmp / "store")).record(frames)
    proc, url = _start(tmp / "store", tmp / "streamlit.log")
    yield url
    _stop(proc)


def test_flow_graph_shows_hostile_names_literally(browser, hostile_dashboard):  # noqa: F811
    SHOTS.mkdir(parents=True, exist_ok=True)
    dialogs: list[str] = []
    page = _open(browser, f"{hostile_dashboard}/flow_graph", dialogs)
    _settle(page, "Flow graph")
    tooltips = _hover_every_node(page)
    assert any(IMG in t for t in tooltips), tooltips
    assert any(HOSTILE in t for t in tooltips), tooltips
    page.screenshot(path=str(SHOTS / "hostile-graph-tooltips.png"), full_page=True)
    page.locator('[data-testid="stSelectbox"]').nth(1).click()  # the focus picker
    option = page.locator('[role="option"]', has_text=IMG + " · service")
    option.first.wait_for(timeout=10_000)
    assert option.first.inner_text().startswith(IMG)
    option.first.click()  # focus on it: the page reruns with the hostile node in the middle
    _settle(page, "Flow graph")
    page.get_by_text("nodes drawn").first.wait_for(timeout=15_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.close()
    assert dialogs == [], f"a hostile name ran a script: {dialogs}"


def test_catalog_shows_hostile_names_literally(browser, hostile_dashboard):  # noqa: F811
    dialogs: list[str] = []
    page = _open(browser, f"{hostile_dashboard}/catalog", dialogs)
    _settle(page, "Event catalog")
    page.locator('[data-testid="stSelectbox"]').nth(1).click()  # the event type picker
    page.locator('[role="option"]', has_text=TYPE).first.click()
    _settle(page, "Event catalog")
    page.get_by_text(f"Event type: {TYPE}", exact=True).wait_for(timeout=15_000)
    page.screenshot(path=str(SHOTS / "hostile-catalog.png"), full_page=True)
    producer = page.locator('[data-testid="stText"]', has_text=HOSTILE)  # its producer
    assert producer.count() >= 1 and producer.first.is_visible()
    assert producer.first.inner_text().strip() == HOSTILE
    assert page.locator('[data-testid="stException"]').count() == 0
    page.close()
    assert dialogs == [], f"a hostile name ran a script: {dialogs}"
