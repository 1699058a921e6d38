"""The event catalog shows a registered schema beside the inferred one, in real Chromium.

Events read through the Schema Registry name their schema in ``schema_version``; the page asks
the registry (``tests/registry_server.py``, a stand-in for its REST API, with basic auth) for the
subject, versions and schema text. The schema's ``doc`` is hostile: it must read literally, as
code, and run nothing.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from eventscope import schemas
from eventscope.recorder import Recorder
from eventscope.store import Store
from test_browser import SHOTS, _open, _settle, _start, _stop, browser  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from registry_server import RegistryStandIn  # noqa: E402 - the tests' stand-in, beside conftest.py

pytestmark = pytest.mark.browser
HOSTILE = '<img src=x onerror=alert("doc")>'
PASSWORD = "pw-not-shown-7"


@pytest.fixture(scope="module")
def registry_dashboard(tmp_path_factory):
    registry = RegistryStandIn(user="catalog", password=PASSWORD)
    fields = [{"name": "correlation_id", "type": "string"}, {"name": "amount", "type": "double"}]
    record = {"type": "record", "name": "OrderPlaced", "namespace": "shop", "doc": HOSTILE}
    registry.register("orders-value", {"schema": json.dumps({**record, "fields": fields[:1]})})
    schema_id = registry.register("orders-value", {"schema": json.dumps({**record, "fields": fields})})
    tmp = tmp_path_factory.mktemp("registry-catalog")
    now = pd.Timestamp.now(tz="UTC")
    rows = [{"observed_at": now, "source": "kafka", "broker": "kafka", "kind": "kafka", "topic": "orders",
             "partition": 0, "offset": str(i), "at": now - pd.Timedelta(seconds=i), "broker_at": now,
             "event_type": "shop.OrderPlaced", "service": "order-service", "correlation_id": f"c{i}",
             "schema_version": f"orders-value v2 (id {schema_id})", "headers": "{}", "preview": "",
             "payload": json.dumps({"correlation_id": f"c{i}", "amount": 1.5}), "dead_letter": False,
             "size_bytes": 30, "decode_error": ""} for i in range(5)]
    Recorder(Store(tmp / "store")).record({"events": schemas.conform("events", rows)})
    saved = {k: os.environ.get(k) for k in ("EVENTSCOPE_SCHEMA_REGISTRY_URL", "EVENTSCOPE_SCHEMA_REGISTRY_BASIC_AUTH_USER",
                                            "EVENTSCOPE_SCHEMA_REGISTRY_BASIC_AUTH_PASSWORD")}
    os.environ.update(EVENTSCOPE_SCHEMA_REGISTRY_URL=registry.url, EVENTSCOPE_SCHEMA_REGISTRY_BASIC_AUTH_USER="catalog",
                      EVENTSCOPE_SCHEMA_REGISTRY_BASIC_AUTH_PASSWORD=PASSWORD)
    try:
        proc, url = _start(tmp / "store", tmp / "streamlit.log")
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    yield url, registry
    _stop(proc)
    registry.stop()


def test_catalog_shows_the_registered_schema_literally(browser, registry_dashboard):  # noqa: F811
    url, registry = registry_dashboard
    SHOTS.mkdir(parents=True, exist_ok=True)
    dialogs: list[str] = []
    page = _open(browser, f"{url}/catalog", dialogs)
    _settle(page, "Event catalog")
    page.get_by_text("Registered schema").first.wait_for(timeout=20_000)
    page.screenshot(path=str(SHOTS / "catalog-registered-schema.png"), full_page=True)
    page.locator('[data-testid="stCode"]').first.scroll_into_view_if_needed()  # the app scrolls inside itself
    page.screenshot(path=str(SHOTS / "catalog-registered-schema-code.png"))
    code = page.locator('[data-testid="stCode"]').first.inner_text()
    assert f'"doc": "{HOSTILE.replace(chr(34), chr(92) + chr(34))}"' in code and '"name": "amount"' in code, code
    grid = page.locator('[data-testid="stDataFrame"]').last  # drawn on a canvas; its accessible table holds the text
    grid.locator('td[role="gridcell"]').first.wait_for(state="attached", timeout=15_000)
    cells = [c.strip() for c in grid.locator('tbody tr[role="row"]').first.locator('td[role="gridcell"]').all_text_contents()]
    assert cells[-5:] == ["orders-value", "2", "AVRO", "2", "1, 2"], cells  # subject, ID, type, version, versions
    assert PASSWORD not in page.content()
    assert page.locator('[data-testid="stException"]').count() == 0
    # asked once (then cached for a minute): the schema, its subject-versions, the subject's versions
    assert registry.count(r"^GET /schemas/ids/2$") == 1 and registry.count(r"^GET /subjects/orders-value/versions$") == 1
    page.close()
    assert dialogs == [], f"a hostile schema ran a script: {dialogs}"
