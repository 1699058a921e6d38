"""The dashboard in a real browser: every page shows its title and no exception box.

Starts the dashboard the way ``make run`` does (``eventscope dashboard``: the installed
package's entry script on loopback, headless) against a temporary store filled with the synthetic order pipeline of
``test_app.py``, then drives Debian's Chromium with Playwright. Screenshots land in
``artifacts/screenshots/`` (git-ignored) for a human to look at; with
``UPDATE_DOCS_SCREENSHOT=1`` the Overview is also saved as ``docs/screenshot.png``.
A second server with hostile names (``<script>``, ``<img onerror>``, ``<svg onload>``) proves
that every page shows them literally as text, that none became an element or ran a
script, and that a deep link as the very first request lands on its page.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from test_app import HOSTILE_SHOWN, write_synthetic_store
from programs import require_program

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGES = [("", "Overview"), ("lag", "Consumer lag"), ("dead_letters", "Dead letters"),
         ("traces", "Traces"), ("flow_graph", "Flow graph"), ("catalog", "Event catalog"),
         ("alerts", "Alerts")]
#: text each populated page shows at its very end (so the whole page has rendered)
LAST_TEXT = {"": "The full flow graph", "lag": "seconds behind", "dead_letters": "Depth over",
             "traces": "Click a row", "flow_graph": "Download DOT", "catalog": "Rates divide by",
             "alerts": "Try thresholds"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(store: Path, log: Path, collect: bool = False):
    """``make run``'s command on a free port; returns (process, base URL) once healthy.

    ``collect=False`` keeps the dashboard's own collector off, so pages show exactly the
    frames a test wrote into ``store``."""
    port = _free_port()
    env = dict(os.environ, EVENTSCOPE_STORE=str(store),
               EVENTSCOPE_DASHBOARD_COLLECT="auto" if collect else "off")
    for name in ("EVENTSCOPE_KAFKA_BOOTSTRAP", "EVENTSCOPE_REDIS_URL", "EVENTSCOPE_CONFIG"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "eventscope", "dashboard", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"dashboard exited early:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise AssertionError(f"dashboard not healthy after 60 s:\n{log.read_text()}")


def _stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser():
    require_program("chromium")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboard")
    proc, url = _start(write_synthetic_store(tmp / "store"), tmp / "streamlit.log")
    yield url
    _stop(proc)


def _settle(page, title: str) -> float:
    """Wait for the page title, then until Streamlit stops running; seconds taken."""
    started = time.perf_counter()
    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=30_000)
    print(f"{title}: title after {time.perf_counter() - started:.2f} s", end="; ")
    page.wait_for_function(  # the same signal Streamlit's own e2e tests wait for
        "() => document.querySelector('[data-testid=\"stApp\"]')"
        "?.getAttribute('data-test-script-state') === 'notRunning'"
        " && document.querySelectorAll('[data-testid=\"stSkeleton\"]').length === 0",
        timeout=30_000)
    elapsed = time.perf_counter() - started
    page.wait_for_timeout(600)  # charts and the graph iframe paint after the last delta
    return elapsed


def _open(browser, url: str, dialogs: list):
    page = browser.new_page(viewport={"width": 1440, "height": 1250})
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url, wait_until="domcontentloaded")
    return page


def _docs_screenshot(browser, page) -> None:
    """The README's image: the Overview as ``make run`` shows it on the sample recording
    (a fresh store filled by the dashboard's own replay), else this synthetic page."""
    proc, tmp = None, None
    if (ROOT / "sample_data").is_dir():
        tmp = Path(tempfile.mkdtemp(prefix="eventscope-docs-"))
        proc, url = _start(tmp / "store", tmp / "streamlit.log", collect=True)
        page = _open(browser, url, [])
        page.get_by_text("The full flow graph").wait_for(timeout=90_000)
        _settle(page, "Overview")
    try:
        page.set_viewport_size({"width": 1440, "height": 820})
        page.wait_for_timeout(800)
        # the Overview refreshes itself every few seconds: shoot between two refreshes, not
        # while one is running (Streamlit greys out the elements it is about to replace)
        for _ in range(60):
            if page.evaluate("() => document.querySelector('[data-testid=\"stApp\"]')"
                             "?.getAttribute('data-test-script-state') === 'notRunning'"
                             " && !document.querySelector('[data-stale=\"true\"]')"):
                break
            page.wait_for_timeout(250)
        page.screenshot(path=str(ROOT / "docs" / "screenshot.png"))
    finally:
        if proc is not None:
            _stop(proc)
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("path,title", PAGES, ids=[t for _, t in PAGES])
def test_page_renders(browser, dashboard, path, title):
    SHOTS.mkdir(parents=True, exist_ok=True)
    dialogs: list[str] = []
    started = time.perf_counter()
    page = _open(browser, f"{dashboard}/{path}", dialogs)
    seconds = _settle(page, title)
    page.get_by_text(LAST_TEXT[path]).first.wait_for(timeout=15_000)
    seconds_full = time.perf_counter() - started - 0.6
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.get_by_text("Nothing to show yet").count() == 0
    if path == "flow_graph":
        canvas = page.frame_locator("iframe").first.locator("canvas")
        canvas.wait_for(timeout=15_000)
    page.screenshot(path=str(SHOTS / f"{path or 'overview'}.png"), full_page=True)
    if path == "" and os.environ.get("UPDATE_DOCS_SCREENSHOT"):
        _docs_screenshot(browser, page)
    print(f"settled {seconds:.2f} s; complete {seconds_full:.2f} s after navigation")
    assert not dialogs
    page.close()


def test_flow_graph_downloads_in_the_browser(browser, dashboard):
    """The export buttons make their files when clicked: the drawn graph as JSON and DOT,
    and the AsyncAPI 3.0 documents of every service or of the one picked."""
    import json
    dialogs: list[str] = []
    page = _open(browser, f"{dashboard}/flow_graph", dialogs)
    _settle(page, "Flow graph")

    def download(name: str) -> str:
        with page.expect_download(timeout=30_000) as info:
            page.get_by_role("button", name=name).click()
        return Path(info.value.path()).read_text()

    graph = json.loads(download("Download JSON"))
    assert graph["nodes"] and graph["edges"]
    assert any(n["kind"] == "service" for n in graph["nodes"])
    assert download("Download DOT").startswith("digraph")
    every = json.loads(download("Download AsyncAPI"))
    assert "payment-service" in every and len(every) >= 2
    assert all(doc["asyncapi"] == "3.0.0" for doc in every.values())
    page.locator('[data-testid="stSelectbox"]', has_text="AsyncAPI 3.0 for").click()
    page.locator('[role="option"]', has_text="payment-service").first.click()
    _settle(page, "Flow graph")
    one = json.loads(download("Download AsyncAPI"))
    assert list(one) == ["payment-service"] and one["payment-service"] == every["payment-service"]
    assert page.locator('[data-testid="stException"]').count() == 0
    assert not dialogs
    page.close()


def test_alerts_what_if_in_the_browser(browser, dashboard):
    SHOTS.mkdir(parents=True, exist_ok=True)
    dialogs: list[str] = []
    page = _open(browser, f"{dashboard}/alerts", dialogs)
    _settle(page, "Alerts")
    page.get_by_text("alerts firing").first.wait_for(timeout=15_000)
    page.get_by_role("button", name="Replay the last hour").click()
    page.get_by_text("would have fired").wait_for(timeout=30_000)
    _settle(page, "Alerts")
    page.set_viewport_size({"width": 1440, "height": 2600})
    page.wait_for_timeout(1000)
    assert page.get_by_text("[[alerts.rules]]").count() >= 1
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(SHOTS / "alerts-what-if.png"), full_page=True)
    assert not dialogs
    page.close()


def test_trace_lookup_in_the_browser(browser, dashboard):
    """Pick a chain from the "Failed" list with a click; its waterfall and details render."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    dialogs: list[str] = []
    page = _open(browser, f"{dashboard}/traces", dialogs)
    _settle(page, "Traces")
    page.get_by_role("tab", name="Failed").click()
    table = page.locator('[data-testid="stDataFrame"]').filter(has_text="order-").last
    table.wait_for(timeout=15_000)
    box = table.bounding_box()
    page.mouse.click(box["x"] + 16, box["y"] + 35 + 17)  # the first row's selection box
    page.get_by_text("Died in").wait_for(timeout=15_000)
    field = page.get_by_label("Correlation ID, W3C trace ID or event ID")
    assert field.input_value().startswith("order-")
    page.locator(".js-plotly-plot").first.wait_for(timeout=45_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.set_viewport_size({"width": 1440, "height": 1700})
    page.wait_for_timeout(800)
    page.screenshot(path=str(SHOTS / "traces-found.png"), full_page=True)
    assert not dialogs
    page.close()


def _hover_every_node(page) -> list[str]:
    """Move the mouse onto every vis node so its tooltip opens; return the tooltip texts."""
    page.frame_locator("iframe").first.locator("canvas").wait_for(timeout=15_000)
    frame = next(f for f in page.frames if f.evaluate("typeof network !== 'undefined'"))
    box = page.locator("iframe").first.bounding_box()
    points = frame.evaluate("""() => {
        const r = document.querySelector('#mynetwork canvas').getBoundingClientRect();
        return Object.values(network.getPositions()).map(p => network.canvasToDOM(p))
            .map(p => ({x: p.x + r.left, y: p.y + r.top}));
    }""")
    texts = []
    tip = frame.locator("div.vis-tooltip")
    for point in points:
        page.mouse.move(box["x"] + 5, box["y"] + 5)  # off every node: the old tooltip closes
        page.wait_for_timeout(150)
        page.mouse.move(box["x"] + point["x"], box["y"] + point["y"], steps=3)
        page.wait_for_timeout(500)
        if tip.count() and tip.first.is_visible():
            texts.append(tip.first.inner_text())
    return texts


#: markup a hostile name would have become: an inline handler, a script, an image or a
#: link of the injected kind (the pyvis iframe's own scripts carry the names as JSON data)
INJECTED = """() => {
    const found = [];
    for (const el of document.querySelectorAll('*')) {
        for (const a of el.attributes) {
            const name = a.name.toLowerCase(), value = a.value.trim();
            if ((name.startsWith('on') && value.includes('alert('))
                || (['src', 'href', 'data', 'action', 'formaction', 'xlink:href'].includes(name)
                    && (value === 'x' || value === 'y' || value.toLowerCase().startsWith('javascript:'))))
                found.push(el.outerHTML.slice(0, 200));
        }
        if (el.tagName === 'SCRIPT' && /^\\s*alert\\(\\d\\)\\s*$/.test(el.textContent))
            found.push(el.outerHTML);
    }
    return found;
}"""


def _shown_text(page) -> str:
    """What the page shows as text: its visible text, plus the cells of its data grids
    (drawn on a canvas; their accessible table holds the text)."""
    cells = page.locator('td[role="gridcell"]').all_text_contents()
    return page.inner_text("body") + "\n" + "\n".join(cells)


def _injected(page) -> list[str]:
    """Elements a hostile name turned into, in the page and each of its frames."""
    return [html for frame in page.frames for html in frame.evaluate(INJECTED)]


def test_hostile_names_fire_no_script(browser, tmp_path):
    """Every page shows the attacker-chosen names of its data literally, as text, and none
    of them became an element or ran a script."""
    proc, url = _start(write_synthetic_store(tmp_path / "store", hostile=True),
                       tmp_path / "streamlit.log")
    try:
        dialogs: list[str] = []
        # Deep link first: a fresh server's first request is /alerts, not / (Streamlit would
        # run the page file alone if eventscope.ui.session did not re-enter through app.py).
        for path, title in reversed(PAGES):
            page = _open(browser, f"{url}/{path}", dialogs)
            _settle(page, title)
            if path == "flow_graph":  # every node's tooltip is opened in test_graph_browser.py
                page.screenshot(path=str(SHOTS / "hostile-flow_graph.png"), full_page=True)
            assert page.locator('[data-testid="stException"]').count() == 0, title
            shown = _shown_text(page)
            for name in HOSTILE_SHOWN[f"pages/{path or 'overview'}.py"]:
                assert name in shown, f"{title} does not show {name!r} as text"
            assert _injected(page) == [], title
            page.close()
        assert dialogs == [], f"a hostile name ran a script: {dialogs}"
    finally:
        _stop(proc)


def test_dead_letters_drilldown_links_to_the_trace(browser, tmp_path):
    """On the sample recording: the fullest Kafka or Redis DLQ's recent messages, then its first
    trace link (a RabbitMQ DLQ shows no message: they cannot be read without consuming)."""
    if not (ROOT / "sample_data").is_dir():
        pytest.skip("no sample_data recording")
    SHOTS.mkdir(parents=True, exist_ok=True)
    proc, url = _start(tmp_path / "store", tmp_path / "streamlit.log", collect=True)
    try:
        dialogs: list[str] = []
        page = _open(browser, f"{url}/dead_letters", dialogs)
        page.get_by_text("Recent messages").wait_for(timeout=90_000)
        _settle(page, "Dead letters")
        page.locator('[data-testid="stSelectbox"]').first.click()  # the queues, fullest first
        page.locator('[role="option"]', has_text=re.compile(r"·\s+(kafka|redis)\s*$")).first.click()
        _settle(page, "Dead letters")
        messages = page.locator('[data-testid="stDataFrame"]').last
        link = messages.locator('td[role="gridcell"]', has_text="/traces?id=").first
        link.wait_for(state="attached", timeout=15_000)
        href = link.text_content().strip()
        assert page.locator('[data-testid="stException"]').count() == 0
        page.get_by_role("heading", name="Dead letters", exact=True).click()  # blur the picker
        page.set_viewport_size({"width": 1440, "height": 2300})
        page.wait_for_timeout(1000)
        page.screenshot(path=str(SHOTS / "dead_letters-drilldown.png"), full_page=True)
        page.close()
        cid = href.split("id=", 1)[1]
        page = _open(browser, f"{url}{href}", dialogs)  # follow the link
        _settle(page, "Traces")
        box = page.get_by_label("Correlation ID, W3C trace ID or event ID")
        assert box.input_value() == urllib.parse.unquote(cid)
        page.get_by_text("Died in").wait_for(timeout=15_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=45_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        page.set_viewport_size({"width": 1440, "height": 1900})
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / "traces-recorded-dead-letter.png"), full_page=True)
        assert not dialogs
        page.close()
    finally:
        _stop(proc)
