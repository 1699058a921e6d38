"""The ``/metrics`` server under slow clients (no broker: an empty store answers too).

A client that opens a connection and sends half a request line, then waits, must not
hold up anyone else's scrape, and the server must drop it after its timeout."""
import inspect
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from eventscope.exporter import make_server_for
from eventscope.store import Store


@pytest.fixture
def serving(tmp_path):
    """Start the exporter on a free port with the given client timeout; yields a starter."""
    servers = []

    def start(timeout_s=None):
        kwargs = {} if timeout_s is None else {"timeout_s": timeout_s}
        server = make_server_for(Store(tmp_path), port=0, **kwargs)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _slowloris(port: int) -> socket.socket:
    """A connection holding half a request line (no newline: the server waits for more)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /metr")
    return sock


def _scrape(port: int, path: str = "/metrics", timeout: float = 2.0) -> tuple[int, bytes, float]:
    began = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        return response.status, response.read(), time.monotonic() - began


def test_a_slow_client_does_not_block_a_scrape(serving):
    server = serving()
    slow = _slowloris(server.server_port)
    try:
        time.sleep(0.2)  # the server has accepted it and sits reading its request line
        status, body, took = _scrape(server.server_port)
        assert status == 200 and b"kafka_consumergroup_group_lag" in body
        assert took < 2.0
    finally:
        slow.close()


def test_a_client_that_connects_and_sends_nothing_does_not_block_a_scrape_and_is_dropped(serving):
    server = serving(timeout_s=3.0)
    silent = socket.create_connection(("127.0.0.1", server.server_port), timeout=10)
    try:
        time.sleep(0.2)
        status, body, took = _scrape(server.server_port)
        assert status == 200 and b"# TYPE" in body and took < 1.0
        began = time.monotonic()
        try:
            data = silent.recv(1024)
        except ConnectionResetError:
            data = b""
        assert data == b"" and time.monotonic() - began < 6.0  # dropped after its 3 s of silence
    finally:
        silent.close()


def test_several_slow_clients_at_once_do_not_block_scrapes(serving):
    server = serving()
    slow = [_slowloris(server.server_port) for _ in range(8)]
    try:
        time.sleep(0.2)
        for _ in range(3):
            status, body, took = _scrape(server.server_port)
            assert status == 200 and b"# TYPE" in body and took < 2.0
    finally:
        for sock in slow:
            sock.close()


def test_the_server_drops_a_slow_client_after_its_timeout(serving):
    assert inspect.signature(make_server_for).parameters["timeout_s"].default == 10.0
    server = serving(timeout_s=0.5)
    slow = _slowloris(server.server_port)
    try:
        slow.settimeout(5)
        began = time.monotonic()
        # the server closes the connection (EOF; a reset counts too) well before 5 s
        try:
            data = slow.recv(1024)
        except ConnectionResetError:
            data = b""
        assert data == b"" and time.monotonic() - began < 4.0
    finally:
        slow.close()
    assert _scrape(server.server_port)[0] == 200  # and keeps serving


def test_healthz_answers_beside_a_slow_client(serving):
    server = serving()
    slow = _slowloris(server.server_port)
    try:
        time.sleep(0.2)
        with pytest.raises(urllib.error.HTTPError) as answer:  # an empty store: nothing collected yet
            _scrape(server.server_port, "/healthz")
        assert answer.value.code == 503 and answer.value.headers.get_content_type() == "text/plain"
        assert answer.value.read() == b"stale: no collector run in the store yet"
    finally:
        slow.close()
