"""Webhook delivery against local HTTP servers: a dead webhook delays only itself, an
endless answer body is cut at the cap, redirects are not followed, and logs never show
a webhook URL's secret path."""
import json
import logging
import socket
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from eventscope.analysis.rules import Webhook
from eventscope.notify import MAX_BODY_BYTES, Notifier

SECRET = "XXXXSECRET"


def transition(i: int = 0, subject: str = "kafka:g/t") -> dict:
    return {"transition": "firing", "rule": f"r{i}", "metric": "lag", "severity": "critical",
            "subject": subject, "episode": f"r{i}|{subject}|{i}", "value": float(i)}


class Target:
    """A local webhook endpoint; ``answer(handler, body)`` writes the response."""

    def __init__(self, answer=None):
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                outer.requests.append((self.command, self.path))
                if self.headers["Content-Length"]:
                    outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                if answer is None:
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                else:
                    answer(self)

            do_GET = do_POST  # noqa: N815 - a followed 302 turns the POST into a GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = f"/services/T000/B000/{SECRET}") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class DeadTarget:
    """Accepts connections (the kernel's backlog does) and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/T111/B111/{SECRET}"

    def stop(self):
        self.sock.close()


@pytest.fixture
def cleanup():
    things = []
    yield things.append
    for thing in reversed(things):
        thing() if callable(thing) else thing.stop()


def test_a_dead_webhook_does_not_delay_a_healthy_one(tmp_path, cleanup):
    dead, healthy = DeadTarget(), Target()
    cleanup(dead)
    cleanup(healthy)
    # the dead one first: with one worker for all, its messages were sent first and held the rest
    notifier = Notifier([Webhook(url=dead.url()), Webhook(url=healthy.url())], state_dir=tmp_path,
                        retries=2, backoff_s=0.5, timeout_s=4)
    cleanup(notifier.close)
    began = time.monotonic()
    assert notifier.submit([transition(i) for i in range(5)]) == 10
    deadline = began + 2.0
    while (len(healthy.bodies) < 5 or notifier.sent < 5) and time.monotonic() < deadline:
        time.sleep(0.02)  # a body arrives before its sender counts the answer
    assert [b["rule"] for b in healthy.bodies] == [f"r{i}" for i in range(5)]  # all, in order
    assert time.monotonic() - began < 2.0
    assert notifier.sent == 5 and notifier.failed == 0  # the dead one is still waiting on its first
    assert not notifier.flush(0.1)


def test_an_endless_answer_body_is_cut_at_the_cap(tmp_path, cleanup):
    wrote = {"bytes": 0}

    def endless(handler):
        handler.send_response(200)
        handler.end_headers()  # no Content-Length: the body ends when the connection does
        chunk = b"x" * 65536
        try:
            while True:
                handler.wfile.write(chunk)
                wrote["bytes"] += len(chunk)
        except OSError:
            pass

    target = Target(endless)
    cleanup(target)
    notifier = Notifier([Webhook(url=target.url())], state_dir=tmp_path, retries=0, timeout_s=3)
    cleanup(notifier.close)
    tracemalloc.start()
    try:
        began = time.monotonic()
        notifier.submit([transition()])
        assert notifier.flush(10)
        took = time.monotonic() - began
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert notifier.sent == 1 and took < 5
    assert peak < 8 * MAX_BODY_BYTES + 2 * 1024 * 1024  # the read stopped at the cap
    assert json.loads((tmp_path / "alerts-delivered.json").read_text())


def test_a_redirect_is_not_followed(tmp_path, cleanup, caplog):
    elsewhere = Target()
    cleanup(elsewhere)

    def redirect(handler):
        handler.send_response(302)
        handler.send_header("Location", elsewhere.url("/collect/T999/B999/OTHERSECRET"))
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    redirecting = Target(redirect)
    cleanup(redirecting)
    notifier = Notifier([Webhook(url=redirecting.url())], state_dir=tmp_path, retries=2, backoff_s=0.1,
                        timeout_s=3)
    cleanup(notifier.close)
    with caplog.at_level(logging.INFO, logger="eventscope.notify"):
        notifier.submit([transition()])
        assert notifier.flush(10)
        time.sleep(0.2)
    assert elsewhere.requests == []  # neither the POST nor a GET in its place
    assert len(redirecting.bodies) == 1  # a redirect is a failed delivery, not retried
    assert notifier.sent == 0 and notifier.failed == 1
    assert not (tmp_path / "alerts-delivered.json").exists()
    text = caplog.text
    assert "302" in text and f"127.0.0.1:{redirecting.port}/services/***" in text
    assert SECRET not in text and "OTHERSECRET" not in text


def test_a_failed_delivery_is_logged_without_the_url_token(tmp_path, cleanup, caplog):
    def fail(handler):
        handler.send_response(500)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    target = Target(fail)
    cleanup(target)
    hook = Webhook(url=target.url(), name="on-call")
    notifier = Notifier([hook], state_dir=tmp_path, retries=1, backoff_s=0.05, timeout_s=3)
    cleanup(notifier.close)
    with caplog.at_level(logging.INFO, logger="eventscope.notify"):
        notifier.submit([transition()])
        assert notifier.flush(10)
    assert notifier.failed == 1 and len(target.bodies) == 2
    text = caplog.text
    assert "gave up" in text and "500" in text
    # the configured name, and the URL redacted: which webhook it was, without its token
    assert "on-call" in text and f"127.0.0.1:{target.port}/services/***" in text
    assert SECRET not in text and "T000" not in text


def test_the_delivered_file_is_private_and_left_without_temporary_files(tmp_path, cleanup):
    target = Target()
    cleanup(target)
    notifier = Notifier([Webhook(url=target.url())], state_dir=tmp_path, retries=0, timeout_s=3)
    cleanup(notifier.close)
    notifier.submit([transition(i) for i in range(3)])
    assert notifier.flush(10) and notifier.sent == 3
    delivered = tmp_path / "alerts-delivered.json"
    assert len(json.loads(delivered.read_text())) == 3
    assert delivered.stat().st_mode & 0o077 == 0
    assert [p.name for p in tmp_path.iterdir()] == ["alerts-delivered.json"]
