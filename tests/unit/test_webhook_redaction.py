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
    ("http://[::1]:99999/x", "***"),
    ("http:///local/hook/x", "http:///local/***"),  # no host: none is made up  # not a URL: nothing of it is shown
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


# -- webhook tables: parsing and who gets what ----------------------------------------------------
def test_webhook_table_defaults_and_format_by_host():
    from eventscope.analysis.rules import RuleError
    slack = parse_webhook({"url": "https://hooks.slack.com/services/T/B/x"}, "w")
    assert (slack.format, slack.name, slack.min_severity, slack.match) == ("slack", "", "warning", ("*",))
    generic = parse_webhook("http://alerts.internal/hook", "w")
    assert generic.format == "generic"
    forced = parse_webhook({"url": "https://hooks.slack.com/x", "format": "generic", "name": "n",
                            "min_severity": "critical", "match": "orders*"}, "w")
    assert (forced.format, forced.name, forced.min_severity, forced.match) == ("generic", "n", "critical",
                                                                              ("orders*",))
    for raw, message in [
        (["https://x"], "w: must be a table"),
        ({"url": "https://x", "colour": "red"}, "unknown config key w.colour"),
        ({"url": "ftp://x/y"}, "w.url must start with http:// or https://"),
        ({"url": 42}, "w.url must start with http:// or https://"),
        ({"url": "https://x", "format": "teams"}, "w.format must be 'slack' or 'generic'"),
        ({"url": "https://x", "min_severity": "info"}, "w.min_severity must be 'warning' or 'critical'"),
        ({"url": "https://x", "name": 7}, "w.name: expected a string"),
        ({"url": "https://x", "match": []}, "w.match: expected a glob or a list of globs"),
        ({"url": "https://x", "match": [""]}, "w.match: expected a glob or a list of globs"),
    ]:
        with pytest.raises(RuleError) as err:
            parse_webhook(raw, "w")
        assert str(err.value) == message


def test_webhook_wants_by_severity_and_subject_names():
    hook = parse_webhook({"url": "https://x", "min_severity": "critical", "match": ["orders*", "billing"]}, "w")
    assert hook.wants("critical", ["kafka:billing/orders-eu", "billing"])
    assert hook.wants("critical", [None, "orders-eu"])
    assert not hook.wants("warning", ["orders-eu"])  # below its minimum severity
    assert not hook.wants("critical", ["payments", None])
    assert not hook.wants("critical", ["Orders"])  # globs are case-sensitive
    everyone = parse_webhook("https://x", "w")
    assert everyone.wants("warning", ["anything"]) and everyone.wants("critical", ["anything"])
