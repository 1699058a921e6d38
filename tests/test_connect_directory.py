"""Reading Kafka Connect's DLQ configuration: the REST answer's shapes, authentication,
and workers that answer badly. The real worker is exercised in test_real_clients."""
from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from eventscope.collectors.kafka.connect import ConnectDirectory, connectors_from


def test_connectors_with_a_dlq_and_what_they_read():
    answer = {
        "orders-sink": {"info": {"config": {"topics": "orders, payments", "errors.deadletterqueue.topic.name": "x"}}},
        "by-regex": {"info": {"config": {"topics.regex": "shop\\..*", "errors.deadletterqueue.topic.name": "y",
                                         "consumer.override.group.id": "custom"}}},
        "no-dlq": {"info": {"config": {"topics": "orders"}}},
        "source": {"info": {"config": {"errors.deadletterqueue.topic.name": ""}}},
        "odd": {"info": None}, "odder": "text",
    }
    found = {c.connector: c for c in connectors_from(answer)}
    assert set(found) == {"orders-sink", "by-regex"}
    assert found["orders-sink"].dlq == "x" and found["orders-sink"].topics == ("orders", "payments")
    assert found["orders-sink"].group == "connect-orders-sink" and found["by-regex"].group == "custom"
    known = ["shop.a", "shop.b", "shopping", "y", "shop.y"]
    assert found["by-regex"].sources(known) == ["shop.a", "shop.b", "shop.y"]
    assert connectors_from({}) == [] and connectors_from(None) == []


class _Worker(BaseHTTPRequestHandler):
    body = b"{}"
    status = 200
    seen: list = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).seen.append((self.command, self.path, self.headers.get("Authorization")))
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def worker():
    class Handler(_Worker):
        seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, Handler
    server.shutdown()
    server.server_close()


def test_credentials_go_in_a_header_and_only_gets_are_sent(worker):
    server, handler = worker
    handler.body = json.dumps({"s": {"info": {"config": {"topics": "a", "errors.deadletterqueue.topic.name": "a-bad"}}}}).encode()
    directory = ConnectDirectory([f"http://ops:pa55@127.0.0.1:{server.server_port}/"])
    assert directory.collect() == {}
    assert directory.is_dlq("a-bad") and directory.sources("a-bad", []) == ["a"]
    method, path, auth = handler.seen[-1]
    assert (method, path) == ("GET", "/connectors?expand=info")
    assert base64.b64decode(auth.split()[1]) == b"ops:pa55"


@pytest.mark.parametrize("status, body, said", [
    (401, b"{}", "HTTP 401"),
    (200, b"<html>login</html>", "not JSON"),
])
def test_a_bad_answer_is_one_line_and_the_last_good_one_is_kept(worker, status, body, said):
    server, handler = worker
    handler.body = json.dumps({"s": {"info": {"config": {"topics": "a", "errors.deadletterqueue.topic.name": "a-bad"}}}}).encode()
    directory = ConnectDirectory([f"http://ops:pa55@127.0.0.1:{server.server_port}"])
    directory.collect()
    handler.status, handler.body = status, body
    with pytest.raises(ConnectionError) as failure:
        directory.collect()
    message = str(failure.value)
    assert said in message and "pa55" not in message and "\n" not in message
    assert directory.is_dlq("a-bad")  # what the worker said before still holds
