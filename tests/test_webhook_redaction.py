"""A webhook's URL is its credential: every place eventscope names a webhook (log lines of
every kind, reprs, labels) shows it redacted (README, "Alerts"; ``notify``'s docstring)."""
from __future__ import annotations

import logging
import socket

import pytest

from eventscope.analysis.rules import Webhook, parse_webhook, redact_webhook_url
from eventscope.config import AlertsConfig
from eventscope.notify import Notifier, _shown

TOKEN = "T0SECRET/B0SECRET/ZZZZSECRET"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def _transition(i=0):
    return {"transition": "firing", "rule": "r", "metric": "lag", "severity": "critical",
            "subject": "kafka:g/t", "episode": f"r|kafka:g/t|{i}", "value": 1.0}


@pytest.mark.parametrize("url, shown", [
    ("https://hooks.slack.com/services/T0/B0/XYZ", "https://hooks.slack.com/services/***"),
    ("https://example.com/hook?token=abc", "https://example.com/hook?***"),
    ("https://user:pw@example.com:8443/a", "https://***@example.com:8443/a"),
    ("https://user@example.com/", "https://***@example.com"),
    ("http://127.0.0.1:5000/hook", "http://127.0.0.1:5000/hook"),
    ("https://example.com", "https://example.com"),
    ("https://example.com/a/b/c/d", "https://example.com/a/***"),
    ("http://[::1]:99999/x", "***"),  # not a URL: nothing of it is shown
])
def test_redaction_keeps_the_host_and_first_segment_only(url, shown):
    assert redact_webhook_url(url) == shown


def test_webhook_repr_label_and_config_repr_never_carry_the_token():
    hook = Webhook(url=f"https://hooks.slack.com/services/{TOKEN}")
    named = Webhook(url=f"https://hooks.slack.com/services/{TOKEN}", name="on-call")
    for text in (repr(hook), hook.label, hook.shown, _shown(hook), _shown(named), repr([hook, named])):
        assert "SECRET" not in text
    assert hook.label == "https://hooks.slack.com/services/***" and named.label == "on-call"
    assert _shown(named) == "on-call (https://hooks.slack.com/services/***)"
    assert _shown(hook) == "https://hooks.slack.com/services/***"
    cfg = AlertsConfig(webhook_url=f"https://hooks.slack.com/services/{TOKEN}")
    assert "SECRET" not in repr(cfg) and "hooks.slack.com/services/***" in repr(cfg)
    assert "SECRET" not in repr(cfg.all_webhooks())


def test_parsed_webhook_keeps_the_real_url_for_delivery():
    hook = parse_webhook(f"https://hooks.slack.com/services/{TOKEN}", "alerts.webhook_url")
    assert hook.url.endswith(TOKEN) and hook.format == "slack"


def test_a_refused_connection_is_logged_without_the_token(tmp_path, caplog):
    hook = Webhook(url=f"http://127.0.0.1:{_closed_port()}/services/{TOKEN}")
    notifier = Notifier([hook], state_dir=tmp_path, retries=1, backoff_s=0.01, timeout_s=2)
    try:
        with caplog.at_level(logging.INFO, logger="eventscope.notify"):
            notifier.submit([_transition()])
            assert notifier.flush(20)
    finally:
        notifier.close()
    assert notifier.failed == 1 and notifier.sent == 0
    text = caplog.text
    assert "retry in" in text and "gave up after 2 attempts" in text and "/services/***" in text
    assert "SECRET" not in text


def test_a_full_queue_is_logged_without_the_token(tmp_path, caplog):
    hook = Webhook(url=f"http://127.0.0.1:{_closed_port()}/services/{TOKEN}")
    notifier = Notifier([hook], state_dir=tmp_path, retries=0, backoff_s=0, timeout_s=1, queue_size=1)
    try:
        with caplog.at_level(logging.WARNING, logger="eventscope.notify"):
            notifier.submit([_transition(i) for i in range(30)])
            notifier.flush(20)
    finally:
        notifier.close()
    text = caplog.text
    assert "full: dropped firing r" in text and "/services/***" in text
    assert "SECRET" not in text
