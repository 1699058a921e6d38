"""RabbitMQ end to end through the configuration: a ``[rabbitmq]`` section, or a
``[[sources]]`` entry of kind ``rabbitmq`` with a name of its own, then ``eventscope collect
--once`` against the real node, then what ``eventscope lag``, ``dlq`` and ``graph`` print.

The topology is built by the node's administrator in a vhost of its own; eventscope reads as
the monitoring user, with ``read`` on the stream DLQ only.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from urllib.parse import quote

import pika
import pytest

from eventscope.localbrokers import rabbitmq_api
from test_rabbitmq import _connect, _vhost

pytestmark = pytest.mark.broker


@pytest.fixture
def pipeline(rabbitmq_broker, rabbitmq_ro):
    """``orders`` (topic) → ``payments`` (quorum; dead letters to ``dlx``, direct, key
    ``payments``) → ``payments.dlq`` (classic) and ``payments.audit`` (stream), both bound
    to ``dlx`` with ``payments``; ``refunds`` also dead-letters into ``dlx``, with key
    ``refunds`` and no queue bound to it. 6 orders are published, 2 of them rejected:
    4 wait in ``payments`` with no consumer."""
    user, _ = rabbitmq_ro
    vhost = _vhost(rabbitmq_broker, user, ro_permissions={"configure": "^$", "write": "^$",
                                                          "read": r"^payments\.audit$"})
    conn = _connect(rabbitmq_broker, vhost)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare("orders", "topic", durable=True)
    ch.exchange_declare("dlx", "direct", durable=True)
    ch.queue_declare("payments", durable=True, arguments={
        "x-queue-type": "quorum", "x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "payments",
        "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"})
    ch.queue_declare("refunds", durable=True, arguments={"x-dead-letter-exchange": "dlx",
                                                         "x-dead-letter-routing-key": "refunds"})
    ch.queue_declare("payments.dlq", durable=True)
    ch.queue_declare("payments.audit", durable=True, arguments={"x-queue-type": "stream"})
    ch.queue_bind("payments", "orders", "order.placed")
    ch.queue_bind("payments.dlq", "dlx", "payments")
    ch.queue_bind("payments.audit", "dlx", "payments")
    for i in range(6):
        ch.basic_publish("orders", "order.placed", json.dumps({"order": i}).encode(),
                         pika.BasicProperties(timestamp=int(time.time()), delivery_mode=2))
    for _ in range(2):
        method, _, _ = ch.basic_get("payments")
        ch.basic_reject(method.delivery_tag, requeue=False)
    conn.close()
    # the management API's statistics trail the queues by a second or so
    deadline, counts = time.monotonic() + 90, {}
    while time.monotonic() < deadline:
        counts = {q["name"]: q.get("messages") for q in rabbitmq_api(
            rabbitmq_broker, "GET", f"/api/queues/{quote(vhost, safe='')}")}
        if counts.get("payments") == 4 and counts.get("payments.dlq") == 2 and counts.get("payments.audit") == 2:
            break
        time.sleep(0.5)
    assert counts.get("payments.audit") == 2, f"the management API never showed the dead letters: {counts}"
    yield vhost
    rabbitmq_api(rabbitmq_broker, "DELETE", f"/api/vhosts/{quote(vhost, safe='')}")


def _cli(config, store, *args):
    proc = subprocess.run([sys.executable, "-m", "eventscope.cli", "--config", str(config), *args,
                           "--store", str(store)], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin"})
    return proc


@pytest.mark.parametrize("layout", ["section", "sources"])
def test_collect_once_then_lag_dlq_and_graph(tmp_path, rabbitmq_broker, rabbitmq_ro, pipeline, layout):
    user, password = rabbitmq_ro
    vhost = pipeline
    keys = (f'url = "{rabbitmq_broker.address}"\nusername = "{user}"\npassword = "{password}"\n'
            f'vhosts = ["{vhost}"]\namqp_address = "{rabbitmq_broker.amqp_address}"\n')
    if layout == "section":
        broker, toml = "rabbitmq", "[rabbitmq]\n" + keys
    else:
        broker, toml = "rabbit-eu", '[[sources]]\nname = "rabbit-eu"\nkind = "rabbitmq"\n' + keys
    config, store = tmp_path / "eventscope.toml", tmp_path / "store"
    config.write_text(toml)

    collect = _cli(config, store, "collect", "--once")
    assert collect.returncode == 0, collect.stderr
    assert f"collecting {broker} ({rabbitmq_broker.address})" in collect.stderr
    assert f"{broker}/rabbitmq.queues: ok" in collect.stderr
    assert password not in collect.stderr + collect.stdout

    lag = _cli(config, store, "lag", "--json")
    assert lag.returncode == 0, lag.stderr
    rows = {r["topic"]: r for r in json.loads(lag.stdout)}
    assert set(rows) == {f"{vhost}/{q}" for q in ("payments", "refunds", "payments.dlq", "payments.audit")}
    assert {(r["broker"], r["kind"]) for r in rows.values()} == {(broker, "rabbitmq")}
    payments = rows[f"{vhost}/payments"]
    assert (payments["group"], payments["lag"], payments["members"], payments["committed"]) == (
        f"{vhost}/payments", 4, 0, None)
    assert payments["status"] == "STOP"  # messages ready, no consumer
    assert rows[f"{vhost}/refunds"]["status"] == "OK" and rows[f"{vhost}/refunds"]["lag"] == 0
    assert rows[f"{vhost}/payments.audit"]["lag"] is None  # a stream's readers keep their own offsets
    # dead letters wait for people, not for a consumer: judged as a DLQ, not as a stopped queue
    assert (rows[f"{vhost}/payments.dlq"]["lag"], rows[f"{vhost}/payments.dlq"]["status"]) == (2, "OK")

    dlq = _cli(config, store, "dlq", "--json")
    assert dlq.returncode == 0, dlq.stderr
    dlqs = {r["dlq"]: r for r in json.loads(dlq.stdout)}
    assert set(dlqs) == {f"{vhost}/payments.dlq", f"{vhost}/payments.audit"}
    classic, stream = dlqs[f"{vhost}/payments.dlq"], dlqs[f"{vhost}/payments.audit"]
    assert (classic["broker"], classic["kind"], classic["depth"]) == (broker, "rabbitmq", 2)
    # the direct exchange routes only `payments` to these DLQs: refunds is not their source
    assert classic["source_topic"] == f"{vhost}/payments"
    assert (classic["reasons"], classic["unread"]) == ([], 2)  # not readable without consuming
    assert (stream["reasons"], stream["unread"], stream["depth"]) == ([{"reason": "rejected", "count": 2}], 0, 2)

    graph = _cli(config, store, "graph", "--format", "json")
    assert graph.returncode == 0, graph.stderr
    document = json.loads(graph.stdout)
    kinds = {n["id"]: n["kind"] for n in document["nodes"]}
    assert kinds[f"exchange:{broker}:{vhost}/orders"] == "exchange"
    assert kinds[f"exchange:{broker}:{vhost}/dlx"] == "exchange"
    assert kinds[f"topic:{broker}:{vhost}/payments"] == "topic"
    assert kinds[f"dlq:{broker}:{vhost}/payments.dlq"] == "dlq"
    assert kinds[f"dlq:{broker}:{vhost}/payments.audit"] == "dlq"
    assert {n["broker"] for n in document["nodes"]} == {broker}
    edges = {(e["source"], e["target"]): e for e in document["edges"]}
    binds = edges[(f"exchange:{broker}:{vhost}/orders", f"topic:{broker}:{vhost}/payments")]
    assert (binds["kind"], binds["routing_key"], binds["exchange_type"]) == ("binds", "order.placed", "topic")
    route = edges[(f"topic:{broker}:{vhost}/payments", f"exchange:{broker}:{vhost}/dlx")]
    assert (route["kind"], route["routing_key"]) == ("dead_letters_to", "payments")
    assert edges[(f"exchange:{broker}:{vhost}/dlx", f"dlq:{broker}:{vhost}/payments.dlq")]["kind"] == "binds"
    assert edges[(f"topic:{broker}:{vhost}/payments", f"group:{broker}:{vhost}/payments")]["kind"] == "consumes"
    # reached through its dead-letter exchange: no direct dead_letters edge as well
    assert (f"topic:{broker}:{vhost}/payments", f"dlq:{broker}:{vhost}/payments.dlq") not in edges
