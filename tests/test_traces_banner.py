"""The Traces page's outcome banner keeps a hostile dead-letter reason as data.

A DLQ reason is whatever the failing consumer wrote (an exception message can carry any
text a producer put in an event). The banner escapes it like every other name, so Markdown
in it (links, emphasis, HTML) is shown as the characters it is."""
from __future__ import annotations

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
