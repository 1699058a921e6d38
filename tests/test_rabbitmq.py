"""RabbitMQ: a real node (Debian's rabbitmq-server, management plugin), watched through its
management API by a user with the `monitoring` tag and no AMQP rights.

Each test builds its topology in a vhost of its own, as the node's administrator, with a
real AMQP client (pika): publishing, consuming, acknowledging and rejecting are done by the
test, never by the collector.
"""
from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import quote

import pandas as pd
import pika
import pytest

from eventscope import schemas
from eventscope.analysis.queues import queue_status, queue_statuses
from eventscope.collectors.rabbitmq.management import RabbitMQCollector, RabbitMQError, lag_row, queue_key, queue_row
from eventscope.graph.rabbitmq import bindings_graph_edges
from eventscope.simulator import SimulatorConfig, run_simulation
from eventscope.recorder import Recorder
from eventscope.store import Store
from eventscope.localbrokers import (NO_RIGHTS, RABBITMQ_ADMIN, _exists, add_rabbitmq_user, free_port, rabbitmq_api,
                                     start_rabbitmq)

SETTLE_S = 30  # the management API's numbers trail the queues by a few seconds


def _vhost(broker, ro_user: str, name: str | None = None, ro_permissions: dict | None = NO_RIGHTS) -> str:
    """A fresh vhost where the administrator may do anything and eventscope what it is given
    (by default a permission entry that allows nothing: what the management API needs to
    show it the vhost)."""
    vhost = name or f"test-{uuid.uuid4().hex[:8]}"
    rabbitmq_api(broker, "PUT", f"/api/vhosts/{quote(vhost, safe='')}", {})
    rabbitmq_api(broker, "PUT", f"/api/permissions/{quote(vhost, safe='')}/{RABBITMQ_ADMIN[0]}",
                 {"configure": ".*", "write": ".*", "read": ".*"})
    if ro_permissions is not None:
        rabbitmq_api(broker, "PUT", f"/api/permissions/{quote(vhost, safe='')}/{ro_user}", ro_permissions)
    return vhost


def _connect(broker, vhost: str, credentials=RABBITMQ_ADMIN) -> pika.BlockingConnection:
    host, port = broker.amqp_address.rsplit(":", 1)
    return pika.BlockingConnection(pika.ConnectionParameters(
        host, int(port), virtual_host=vhost, credentials=pika.PlainCredentials(*credentials),
        connection_attempts=3, retry_delay=0.5))


def _settled(collector: RabbitMQCollector, ready: callable, timeout: float = SETTLE_S) -> dict:
    """Collect until ``ready(frames)`` holds (the API's statistics catch up), then return the frames."""
    deadline = time.monotonic() + timeout
    while True:
        frames = collector.collect()
        try:
            if ready(frames):
                return frames
        except (KeyError, IndexError):
            pass
        if time.monotonic() > deadline:
            return frames
        time.sleep(0.5)


def _by(frame: pd.DataFrame, column: str, vhost: str | None = None) -> dict:
    """Rows by ``column``; with ``vhost``, by queue name (the lag key without ``vhost/``)."""
    rows = {row[column]: row for row in frame.to_dict("records")}
    return rows if vhost is None else {key.removeprefix(vhost + "/"): row for key, row in rows.items()}


class RecordingOpener(urllib.request.OpenerDirector):
    """An opener that notes the method and URL of every request before sending it."""

    def __init__(self):
        super().__init__()
        self.inner = urllib.request.build_opener()
        self.requests: list[tuple[str, str]] = []

    def open(self, request, data=None, timeout=None):
        self.requests.append((request.get_method(), request.full_url))
        return self.inner.open(request, data, timeout)


@pytest.fixture
def shop(rabbitmq_broker, rabbitmq_ro):
    """The order pipeline in a vhost of its own:

    - exchange ``orders`` (topic) → ``payments`` (quorum, argument ``x-dead-letter-exchange:
      dlx``, at-least-once dead-lettering) on ``order.placed``, and → ``shipping`` (classic;
      its dead-letter exchange ``shipping-dlx`` comes from a policy) on ``order.#``;
    - ``dlx`` (fanout) → ``payment-failures`` (classic) and ``payments-audit`` (stream);
    - ``shipping-dlx`` (fanout) → ``shipping-parked`` (classic);
    - ``manual.dlq`` (classic, a DLQ by its name only) and ``idle`` (classic, nothing).

    10 ``order.placed`` messages stamped a minute ago and 2 ``order.shipped`` are published;
    of ``payments``, 2 are rejected (dead-lettered), 2 consumed and acknowledged, 3 held
    unacknowledged by a consumer that stays attached; of ``shipping``, 1 is rejected.
    eventscope may only read the stream ``payments-audit`` over AMQP.
    """
    user, _ = rabbitmq_ro
    vhost = _vhost(rabbitmq_broker, user, ro_permissions={"configure": "^$", "write": "^$",
                                                          "read": "^payments-audit$"})
    rabbitmq_api(rabbitmq_broker, "PUT", f"/api/policies/{quote(vhost, safe='')}/shipping-dlx",
                 {"pattern": "^shipping$", "definition": {"dead-letter-exchange": "shipping-dlx"},
                  "apply-to": "queues"})
    conn = _connect(rabbitmq_broker, vhost)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare("orders", "topic", durable=True)
    ch.exchange_declare("dlx", "fanout", durable=True)
    ch.exchange_declare("shipping-dlx", "fanout", durable=True)
    ch.queue_declare("payments", durable=True, arguments={
        "x-queue-type": "quorum", "x-dead-letter-exchange": "dlx",
        "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"})
    ch.queue_declare("shipping", durable=True)
    ch.queue_declare("payment-failures", durable=True)
    ch.queue_declare("payments-audit", durable=True, arguments={"x-queue-type": "stream"})
    ch.queue_declare("shipping-parked", durable=True)
    ch.queue_declare("manual.dlq", durable=True)
    ch.queue_declare("idle", durable=True)
    ch.queue_bind("payments", "orders", "order.placed")
    ch.queue_bind("shipping", "orders", "order.#")
    ch.queue_bind("payment-failures", "dlx")
    ch.queue_bind("payments-audit", "dlx")
    ch.queue_bind("shipping-parked", "shipping-dlx")
    stamped = int(time.time()) - 60
    for i in range(10):
        ch.basic_publish("orders", "order.placed", json.dumps({"order": i}).encode(),
                         pika.BasicProperties(timestamp=stamped, delivery_mode=2))
    for i in range(2):
        ch.basic_publish("orders", "order.shipped", b"{}", pika.BasicProperties(delivery_mode=2))
    for _ in range(2):
        method, _, _ = ch.basic_get("payments")
        ch.basic_reject(method.delivery_tag, requeue=False)
    method, _, _ = ch.basic_get("shipping")
    ch.basic_reject(method.delivery_tag, requeue=False)
    taken = []
    ch.basic_qos(prefetch_count=2)
    tag = ch.basic_consume("payments", lambda c, m, p, b: taken.append(m.delivery_tag))
    while len(taken) < 2:
        conn.process_data_events(time_limit=0.5)
    ch.basic_cancel(tag)
    for delivery in taken:
        ch.basic_ack(delivery)
    # a second connection holds 3 unacknowledged messages for as long as the test runs
    holder = _connect(rabbitmq_broker, vhost)
    held_ch = holder.channel()
    held_ch.basic_qos(prefetch_count=3)
    held = []
    held_ch.basic_consume("payments", lambda c, m, p, b: held.append(m.delivery_tag), consumer_tag="holder-1")
    while len(held) < 3:
        holder.process_data_events(time_limit=0.5)
    yield {"vhost": vhost, "stamped": stamped}
    holder.close()
    conn.close()
    rabbitmq_api(rabbitmq_broker, "DELETE", f"/api/vhosts/{quote(vhost, safe='')}")


def _collector(broker, ro, vhost, **kwargs) -> RabbitMQCollector:
    return RabbitMQCollector(broker.address, *ro, vhosts=[vhost], timeout_s=5, **kwargs)


def test_queues_lag_consumers_and_bindings(rabbitmq_broker, rabbitmq_ro, shop):
    collector = _collector(rabbitmq_broker, rabbitmq_ro, shop["vhost"])

    def ready(frames):
        q = _by(frames["queues"], "queue")
        return (q["payments"]["ready"] == 3 and q["payments"]["unacked"] == 3 and q["shipping"]["ready"] == 11
                and q["payment-failures"]["messages"] == 2 and q["payments-audit"]["messages"] == 2
                and q["shipping-parked"]["messages"] == 1 and q["payments"]["consumers"] == 1)
    frames = _settled(collector, ready)
    for name, frame in frames.items():
        assert list(frame.columns) == list(schemas.SCHEMAS[name]), name
    queues = _by(frames["queues"], "queue")
    assert set(queues) == {"payments", "shipping", "payment-failures", "payments-audit", "shipping-parked",
                           "manual.dlq", "idle"}
    payments, shipping = queues["payments"], queues["shipping"]
    assert (payments["type"], payments["ready"], payments["unacked"], payments["consumers"]) == ("quorum", 3, 3, 1)
    assert (shipping["type"], shipping["ready"], shipping["unacked"], shipping["consumers"]) == ("classic", 11, 0, 0)
    assert queues["payments-audit"]["type"] == "stream"
    assert payments["dead_letter_exchange"] == "dlx" and payments["policy"] == ""
    assert shipping["dead_letter_exchange"] == "shipping-dlx" and shipping["policy"] == "shipping-dlx"
    assert {q for q, row in queues.items() if row["is_dlq"]} == {
        "payment-failures", "payments-audit", "shipping-parked", "manual.dlq"}
    assert all(row["state"] == "running" for row in queues.values())
    assert payments["publish_rate"] >= 0 and payments["ack_rate"] >= 0

    lag = _by(frames["lag"], "topic", shop["vhost"])
    assert lag["payments"]["group"] == queue_key(shop["vhost"], "payments") and lag["payments"]["partition"] == 0
    assert (lag["payments"]["lag"], lag["payments"]["pending"], lag["payments"]["members"]) == (3, 3, 1)
    assert pd.isna(lag["payments"]["committed"]) and pd.isna(lag["payments"]["end"])
    assert math.isnan(lag["payments"]["lag_seconds"])  # a quorum queue reports no head timestamp
    age = time.time() - shop["stamped"]
    assert age - 3 <= lag["shipping"]["lag_seconds"] <= age + 2  # the head message's timestamp property
    assert lag["idle"]["lag"] == 0 and lag["idle"]["lag_seconds"] == 0.0
    assert pd.isna(lag["payments-audit"]["lag"])  # a stream's readers keep their own offsets
    assert lag["shipping"]["group_state"] == "running"

    consumers = frames["consumers"]
    key = queue_key(shop["vhost"], "payments")
    assert consumers[["group", "topic", "consumer"]].values.tolist() == [[key, key, "holder-1"]]
    assert consumers["host"].iloc[0] == "127.0.0.1"

    rows = {(r["route"], r["exchange"], r["queue"], r["routing_key"], r["exchange_type"])
            for r in frames["bindings"].to_dict("records")}
    assert rows == {("binding", "orders", "payments", "order.placed", "topic"),
                    ("binding", "orders", "shipping", "order.#", "topic"),
                    ("binding", "dlx", "payment-failures", "payment-failures", "fanout"),
                    ("binding", "dlx", "payments-audit", "payments-audit", "fanout"),
                    ("binding", "shipping-dlx", "shipping-parked", "shipping-parked", "fanout"),
                    ("dlx", "dlx", "payments", "", "fanout"),  # from the queue's argument
                    ("dlx", "shipping-dlx", "shipping", "", "fanout")}  # from the policy
    topics = _by(frames["topics"], "topic", shop["vhost"])
    assert topics["shipping"]["end"] == 11 and pd.isna(topics["shipping"]["start"])


def test_dead_letter_queues_and_their_reasons(rabbitmq_broker, rabbitmq_ro, shop):
    collector = _collector(rabbitmq_broker, rabbitmq_ro, shop["vhost"], amqp_address=rabbitmq_broker.amqp_address)

    def ready(frames):
        d = _by(frames["dlq"], "dlq", shop["vhost"])
        return (d["payment-failures"]["depth"] == 2 and d["payments-audit"]["depth"] == 2
                and d["shipping-parked"]["depth"] == 1 and json.loads(d["payments-audit"]["reasons"]))
    frames = _settled(collector, ready)
    dlq = _by(frames["dlq"], "dlq", shop["vhost"])
    assert set(dlq) == {"payment-failures", "payments-audit", "shipping-parked", "manual.dlq"}
    # a stream DLQ is read from an offset, which takes nothing: its reasons are known
    audit = dlq["payments-audit"]
    assert (audit["depth"], json.loads(audit["reasons"]), audit["unread"], audit["source_topic"]) == (
        2, {"rejected": 2}, 0, queue_key(shop["vhost"], "payments"))
    # a classic DLQ cannot be read without consuming it: reasons unknown, every message unread
    failures = dlq["payment-failures"]
    assert (failures["depth"], json.loads(failures["reasons"]), failures["unread"], failures["source_topic"]) == (
        2, {}, 2, queue_key(shop["vhost"], "payments"))  # the one queue dead-lettering into `dlx`
    parked = dlq["shipping-parked"]  # a DLQ because a policy names its exchange
    assert (parked["depth"], parked["unread"], parked["source_topic"]) == (1, 1, queue_key(shop["vhost"], "shipping"))
    assert dlq["manual.dlq"]["depth"] == 0 and pd.isna(dlq["manual.dlq"]["source_topic"])
    # the next sample reads only what is new: nothing, so the counts stay as they are
    again = _by(collector.collect()["dlq"], "dlq", shop["vhost"])
    assert json.loads(again["payments-audit"]["reasons"]) == {"rejected": 2}
    assert again["payments-audit"]["unread"] == 0
    # watching some queues only: their dead-letter sources are still found among the others
    narrow = _collector(rabbitmq_broker, rabbitmq_ro, shop["vhost"], queues_pattern=r"-(failures|parked)$")
    frames = narrow.collect()
    assert set(frames["queues"]["queue"]) == set(frames["bindings"]["queue"]) == {"payment-failures",
                                                                                   "shipping-parked"}
    narrowed = _by(frames["dlq"], "dlq", shop["vhost"])
    assert narrowed["shipping-parked"]["source_topic"] == queue_key(shop["vhost"], "shipping")


def test_stream_dlq_without_read_permission_stays_unread(rabbitmq_broker, rabbitmq_ro):
    user, _ = rabbitmq_ro
    vhost = _vhost(rabbitmq_broker, user)
    conn = _connect(rabbitmq_broker, vhost)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("audit.dlq", durable=True, arguments={"x-queue-type": "stream"})
    ch.basic_publish("", "audit.dlq", b"x", pika.BasicProperties(headers={"x-first-death-reason": "expired"}))
    conn.close()
    try:
        collector = _collector(rabbitmq_broker, rabbitmq_ro, vhost, amqp_address=rabbitmq_broker.amqp_address)
        frames = _settled(collector, lambda f: _by(f["dlq"], "dlq", vhost)["audit.dlq"]["depth"] == 1)
        row = _by(frames["dlq"], "dlq", vhost)["audit.dlq"]
        assert (row["depth"], json.loads(row["reasons"]), row["unread"]) == (1, {}, 1)
    finally:
        rabbitmq_api(rabbitmq_broker, "DELETE", f"/api/vhosts/{quote(vhost, safe='')}")


def test_collector_only_reads(rabbitmq_broker, rabbitmq_ro, shop):
    """Every request is a GET; the queues' counters are what they were; and the monitoring
    user can neither declare, publish nor consume."""
    opener = RecordingOpener()
    collector = _collector(rabbitmq_broker, rabbitmq_ro, shop["vhost"], opener=opener,
                           amqp_address=rabbitmq_broker.amqp_address)
    frames = _settled(collector, lambda f: _by(f["queues"], "queue")["payments"]["unacked"] == 3)
    path = f"/api/queues/{quote(shop['vhost'], safe='')}/payments"
    deadline = time.monotonic() + SETTLE_S
    while True:  # the fixture's own traffic fully counted: 2 got, 2 + 3 delivered, 2 acked
        before = rabbitmq_api(rabbitmq_broker, "GET", path)
        stats = before.get("message_stats", {})
        if (stats.get("deliver_get"), stats.get("ack")) == (7, 2) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for _ in range(3):
        collector.collect()
    time.sleep(2.5)  # let the statistics of anything the collector might have done show
    after = rabbitmq_api(rabbitmq_broker, "GET", path)
    assert opener.requests and {method for method, _ in opener.requests} == {"GET"}
    assert all(url.startswith(rabbitmq_broker.address + "/api/") for _, url in opener.requests)
    assert (before["message_stats"]["deliver_get"], before["message_stats"]["ack"]) == (7, 2)
    for counter in ("deliver_get", "ack", "redeliver", "get"):
        assert before["message_stats"].get(counter) == after["message_stats"].get(counter), counter
    assert (after["messages_ready"], after["messages_unacknowledged"]) == (3, 3)
    assert frames["queues"]["queue"].nunique() == 7

    user, password = rabbitmq_ro
    conn = _connect(rabbitmq_broker, shop["vhost"], (user, password))
    try:
        for attempt in (lambda ch: ch.queue_declare("intruder"),
                        lambda ch: ch.exchange_declare("intruder", "fanout"),
                        lambda ch: ch.basic_get("payments"),
                        lambda ch: ch.basic_consume("shipping", lambda *a: None),
                        lambda ch: (ch.confirm_delivery(), ch.basic_publish("orders", "order.placed", b"x"))):
            ch = conn.channel()
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
                attempt(ch)
            assert refused.value.reply_code == 403 and "ACCESS_REFUSED" in refused.value.reply_text
    finally:
        conn.close()
    # and it cannot change anything through the management API either
    with pytest.raises(urllib.error.HTTPError) as denied:
        rabbitmq_api(rabbitmq_broker, "PUT", f"/api/queues/{quote(shop['vhost'], safe='')}/intruder", {},
                     auth=(user, password))
    assert denied.value.code in (401, 403)


def test_a_vhost_is_seen_once_eventscope_has_a_permission_entry_there(rabbitmq_broker, rabbitmq_ro):
    """The monitoring tag shows the queues of every vhost where the user has a permission
    entry, even one that allows nothing (``^$``); without one, the vhost stays hidden."""
    user, _ = rabbitmq_ro
    vhost = _vhost(rabbitmq_broker, user, ro_permissions=None)  # no entry for eventscope yet
    conn = _connect(rabbitmq_broker, vhost)
    conn.channel().queue_declare("orders-in", durable=True)
    conn.close()
    try:
        everywhere = RabbitMQCollector(rabbitmq_broker.address, *rabbitmq_ro, timeout_s=5)
        assert vhost not in set(everywhere.collect()["queues"]["vhost"])
        with pytest.raises(RabbitMQError) as hidden:
            _collector(rabbitmq_broker, rabbitmq_ro, vhost).collect()
        assert "permission entry" in str(hidden.value) and "\n" not in str(hidden.value)
        rabbitmq_api(rabbitmq_broker, "PUT", f"/api/permissions/{quote(vhost, safe='')}/{user}", NO_RIGHTS)
        frames = everywhere.collect()
        queues = frames["queues"]
        assert ((queues["vhost"] == vhost) & (queues["queue"] == "orders-in")).sum() == 1
        assert f"{vhost}/orders-in" in set(frames["lag"]["topic"])
    finally:
        rabbitmq_api(rabbitmq_broker, "DELETE", f"/api/vhosts/{quote(vhost, safe='')}")


HOSTILE = ["<script>alert(1)</script>", "ünïcødé ✓ 注文", "with space", "%2F", "a/b", "?x=1&y#z"]


def test_hostile_vhost_and_queue_names(rabbitmq_broker, rabbitmq_ro):
    user, _ = rabbitmq_ro
    vhost = _vhost(rabbitmq_broker, user, name="shop/%2F <x> ü")
    conn = _connect(rabbitmq_broker, vhost)
    ch = conn.channel()
    ch.exchange_declare("<img src=x>", "direct")
    for name in HOSTILE:
        ch.queue_declare(name, durable=True)
        ch.queue_bind(name, "<img src=x>", name)
    ch.confirm_delivery()
    ch.basic_publish("<img src=x>", HOSTILE[0], b"x")
    conn.close()
    try:
        collector = _collector(rabbitmq_broker, rabbitmq_ro, vhost)
        frames = _settled(collector, lambda f: _by(f["queues"], "queue")[HOSTILE[0]]["ready"] == 1)
        queues = frames["queues"]
        assert sorted(queues["queue"]) == sorted(HOSTILE) and set(queues["vhost"]) == {vhost}
        assert set(frames["lag"]["topic"]) == {queue_key(vhost, name) for name in HOSTILE}
        assert set(frames["bindings"]["exchange"]) == {"<img src=x>"}
        assert _by(queues, "queue")[HOSTILE[0]]["ready"] == 1
    finally:
        rabbitmq_api(rabbitmq_broker, "DELETE", f"/api/vhosts/{quote(vhost, safe='')}")


def test_unreachable_api_and_wrong_password_say_so_in_one_line(rabbitmq_broker, rabbitmq_ro):
    user, password = rabbitmq_ro
    wrong = "not-the-password-" + uuid.uuid4().hex
    with pytest.raises(RabbitMQError) as refused:
        RabbitMQCollector(rabbitmq_broker.address, user, wrong, timeout_s=5).collect()
    message = str(refused.value)
    assert "401" in message and user in message and "\n" not in message
    assert wrong not in message and password not in message
    port = free_port()
    with pytest.raises(RabbitMQError) as unreachable:
        RabbitMQCollector(f"http://127.0.0.1:{port}", user, wrong, timeout_s=2).collect()
    message = str(unreachable.value)
    assert "unreachable" in message and str(port) in message and "\n" not in message and wrong not in message


def test_a_node_stops_with_its_epmd(tmp_path):
    started = time.monotonic()
    broker = start_rabbitmq(tmp_path)
    boot_s = time.monotonic() - started
    assert boot_s < 60
    assert broker.amqp_address and broker.address.startswith("http://127.0.0.1:")
    assert _exists(broker.pid) and _exists(broker.epmd_pid)
    add_rabbitmq_user(broker, "watcher", "pw")
    assert rabbitmq_api(broker, "GET", "/api/whoami", auth=("watcher", "pw"))["tags"] in (["monitoring"], "monitoring")
    broker.stop()
    assert not _exists(broker.pid) and not _exists(broker.epmd_pid)
    with pytest.raises(ProcessLookupError):
        os.killpg(broker.pid, 0)  # nothing of the node's process group is left


def test_the_simulator_runs_the_order_pipeline_on_rabbitmq(rabbitmq_broker, rabbitmq_ro):
    """The simulator's RabbitMQ leg, watched by the collector: every group has its queue, half
    the payments fail and RabbitMQ dead-letters them (reasons read from the stream DLQ, not
    from the classic one), and a stalled analytics-service holds its messages unacknowledged."""
    user, _ = rabbitmq_ro
    prefix = "sim."
    vhost = _vhost(rabbitmq_broker, user, ro_permissions={
        "configure": "^$", "write": "^$", "read": r"^sim\.payment-service\.audit$"})
    host, port = rabbitmq_broker.amqp_address.rsplit(":", 1)
    url = f"amqp://{quote(RABBITMQ_ADMIN[0])}:{quote(RABBITMQ_ADMIN[1])}@{host}:{port}/{quote(vhost, safe='')}"
    cfg = SimulatorConfig(rate=8, duration=3, seed=21, prefix=prefix, drain=5, payment_failure_rate=0.5,
                          inventory_failure_rate=0.0, transient_failure_rate=0.0, malformed_rate=0.0,
                          backoff_base=0.02, stall={"analytics-service"})
    try:
        stats = run_simulation(cfg, rabbitmq_url=url)
        assert stats["brokers"] == ["rabbitmq"]
        dead = stats["dead_lettered"].get("sim.payment-service.dlq", 0)
        placed = stats["published"]["OrderPlaced"]
        assert dead > 0 and placed > dead
        collector = _collector(rabbitmq_broker, rabbitmq_ro, vhost, amqp_address=rabbitmq_broker.amqp_address)

        def ready(frames):
            d = _by(frames["dlq"], "dlq", vhost)
            q = _by(frames["queues"], "queue")
            return (d["sim.payment-service.dlq"]["depth"] == dead and d["sim.payment-service.audit"]["depth"] == dead
                    and json.loads(d["sim.payment-service.audit"]["reasons"]) == {"rejected": dead}
                    and q["sim.analytics-service"]["ready"] == placed)
        frames = _settled(collector, ready)
        queues = _by(frames["queues"], "queue")
        groups = {"sim.payment-service", "sim.inventory-service", "sim.payment-compensation",
                  "sim.shipping-service", "sim.email-service", "sim.analytics-service"}
        assert groups <= set(queues)
        assert queues["sim.payment-service"]["type"] == "quorum"
        assert queues["sim.payment-service.audit"]["type"] == "stream"
        dlq = _by(frames["dlq"], "dlq", vhost)
        classic, stream = dlq["sim.payment-service.dlq"], dlq["sim.payment-service.audit"]
        assert (classic["depth"], json.loads(classic["reasons"]), classic["unread"]) == (dead, {}, dead)
        assert (stream["depth"], json.loads(stream["reasons"]), stream["unread"]) == (dead, {"rejected": dead}, 0)
        assert stream["source_topic"] == queue_key(vhost, "sim.payment-service")
        # the stalled consumer is gone with the simulator; what it held is back in the queue
        assert queues["sim.analytics-service"]["ready"] == placed
        lag = _by(frames["lag"], "topic", vhost)
        assert lag["sim.analytics-service"]["lag"] == placed and lag["sim.analytics-service"]["members"] == 0
        assert queue_status(placed, 0, 0.0, 0.0, 0.0, math.nan) == "STOP"
        edges = {(a, b) for a, b, _ in bindings_graph_edges(frames["bindings"])}
        assert (f"exchange:rabbitmq:{vhost}/sim.orders", f"topic:rabbitmq:{vhost}/sim.payment-service") in edges
        assert (f"topic:rabbitmq:{vhost}/sim.payment-service", f"exchange:rabbitmq:{vhost}/sim.dlx") in edges
    finally:
        rabbitmq_api(rabbitmq_broker, "DELETE", f"/api/vhosts/{quote(vhost, safe='')}")


# -- pure parts ----------------------------------------------------------------------------------
@pytest.mark.parametrize("ready, consumers, publish, deliver, ack, age, expected", [
    (None, 1, 1.0, 1.0, 1.0, math.nan, "UNKNOWN"),  # a stream: no backlog to judge
    (0, 0, 0.0, 0.0, 0.0, 0.0, "OK"),
    (5, 0, 1.0, 0.0, 0.0, 10.0, "STOP"),  # nobody to take them
    (5, 2, 1.0, 0.0, 0.0, 10.0, "STALL"),  # consumers attached, nothing moves
    (5, 2, math.nan, math.nan, math.nan, 10.0, "UNKNOWN"),  # statistics off: cannot say
    (5, 2, 1.0, 2.0, 2.0, 10.0, "OK"),  # draining
    (5, 2, 9.0, 2.0, 2.0, 10.0, "WARN"),  # filling up
    (5, 2, 9.0, 2.0, 2.0, 900.0, "ERR"),  # filling up and the head has waited past the window
    (5, 2, math.nan, 0.0, 3.0, math.nan, "OK"),  # acknowledging, no publish rate
])
def test_queue_status(ready, consumers, publish, deliver, ack, age, expected):
    assert queue_status(ready, consumers, publish, deliver, ack, age, window_s=300) == expected


def test_a_dlq_nobody_consumes_is_not_stopped():
    """Dead letters wait for people: a DLQ with messages and no consumer is OK as a queue (its
    depth and growth are judged on the Dead letters page); a reprocessor that hangs is not."""
    assert queue_status(5, 0, 1.0, 0.0, 0.0, 10.0, is_dlq=True) == "OK"
    assert queue_status(5, 2, 1.0, 0.0, 0.0, 10.0, is_dlq=True) == "STALL"
    now = pd.Timestamp("2026-01-01", tz="UTC")
    latest = schemas.conform("lag_latest", [
        {"sampled_at": now, "source": "r", "broker": "r", "kind": "rabbitmq", "group": q, "topic": q,
         "partition": 0, "lag": 4, "members": 0, "status": "STOP"} for q in ("orders", "orders.dlq")])
    queues = schemas.conform("queues", [
        {"sampled_at": now, "source": "r", "broker": "r", "kind": "rabbitmq", "vhost": "/", "queue": q,
         "type": "classic", "ready": 4, "consumers": 0, "is_dlq": dlq} for q, dlq in (("orders", False), ("orders.dlq", True))])
    judged = queue_statuses(latest, queues)
    assert dict(zip(judged["topic"], judged["status"])) == {"orders": "STOP", "orders.dlq": "OK"}


def test_queue_statuses_judge_only_rabbitmq_rows():
    now = pd.Timestamp("2026-01-01", tz="UTC")
    latest = schemas.conform("lag_latest", [
        {"sampled_at": now, "source": "rabbitmq", "broker": "rabbitmq", "group": "payments", "topic": "payments",
         "partition": 0, "lag": 4, "lag_seconds": 3.0, "members": 1, "status": "STALL"},
        {"sampled_at": now, "source": "rabbitmq", "broker": "rabbitmq", "group": "shop/orders",
         "topic": "shop/orders", "partition": 0, "lag": 4, "lag_seconds": 3.0, "members": 0, "status": "STALL"},
        {"sampled_at": now, "source": "kafka", "broker": "kafka", "group": "g", "topic": "payments",
         "partition": 0, "committed": 1, "end": 5, "lag": 4, "status": "STALL"}])
    queues = schemas.conform("queues", [
        {"sampled_at": now, "source": "rabbitmq", "broker": "rabbitmq", "vhost": "/", "queue": "payments",
         "ready": 4, "consumers": 1, "publish_rate": 1.0, "deliver_rate": 2.0, "ack_rate": 2.0},
        {"sampled_at": now, "source": "rabbitmq", "broker": "rabbitmq", "vhost": "shop", "queue": "orders",
         "ready": 4, "consumers": 0, "publish_rate": 1.0, "deliver_rate": 0.0, "ack_rate": 0.0}])
    judged = queue_statuses(latest, queues)
    assert judged["status"].tolist() == ["OK", "STOP", "STALL"]
    assert str(judged["status"].dtype) == str(latest["status"].dtype)


def test_the_recorder_judges_queues_by_their_rates(tmp_path):
    """A queue with a backlog that drains is OK, one whose consumers take nothing is STALL,
    in the samples and in lag_latest, where offsets alone would call both stalled."""
    recorder = Recorder(Store(tmp_path), window_s=300.0)
    start = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(seconds=20)
    for i, at in enumerate([start, start + pd.Timedelta(seconds=10)]):
        lag, queues = [], []
        for name, deliver in (("draining", 5.0), ("hung", 0.0)):
            lag.append({"sampled_at": at, "source": "rabbitmq", "broker": "rabbitmq", "group": name, "topic": name,
                        "partition": 0, "lag": 40 - i, "lag_seconds": 4.0, "members": 2, "pending": 2,
                        "group_state": "running"})
            queues.append({"sampled_at": at, "source": "rabbitmq", "broker": "rabbitmq", "vhost": "/", "queue": name,
                           "type": "classic", "ready": 40 - i, "consumers": 2, "publish_rate": 1.0,
                           "deliver_rate": deliver, "ack_rate": deliver})
        recorder.record({"lag": schemas.conform("lag", lag), "queues": schemas.conform("queues", queues)})
    latest = recorder.store.get("lag_latest").set_index("group")["status"]
    assert latest.to_dict() == {"draining": "OK", "hung": "STALL"}
    samples = recorder.store.read("lag_samples")
    newest = samples[samples["sampled_at"] == samples["sampled_at"].max()].set_index("group")["status"]
    assert newest.to_dict() == {"draining": "OK", "hung": "STALL"}
    assert set(recorder.store.get("queues_latest")["queue"]) == {"draining", "hung"}


@pytest.mark.parametrize("stamp, expected", [
    (None, math.nan), (1_700_000_000, None), (1_700_000_000_000, math.nan),  # milliseconds: unknown
    (10**20, math.nan), (-5, None), ("yesterday", math.nan), (True, math.nan), (float("nan"), math.nan)])
def test_head_timestamps_publishers_set_badly_are_unknown(stamp, expected):
    now = pd.Timestamp.now(tz="UTC")
    q = {"name": "q", "vhost": "/", "type": "classic", "state": "running", "messages": 3, "messages_ready": 3,
         "messages_unacknowledged": 0, "consumers": 1, "head_message_timestamp": stamp}
    row = queue_row(now, "rabbitmq", q, is_dlq=False)
    lag_s = lag_row(now, "rabbitmq", q, row)["lag_seconds"]
    if expected is None:  # a readable time: its age
        assert lag_s == pytest.approx((now - pd.Timestamp(stamp, unit="s", tz="UTC")).total_seconds())
    else:
        assert math.isnan(lag_s)
    schemas.conform("queues", [row])


def test_bindings_graph_edges():
    now = pd.Timestamp("2026-01-01", tz="UTC")
    bindings = schemas.conform("bindings", [
        {"sampled_at": now, "source": "rabbitmq", "broker": "rabbitmq", "vhost": "/", "exchange": "orders",
         "exchange_type": "topic", "queue": "payments", "routing_key": "order.placed", "route": "binding"},
        {"sampled_at": now, "source": "rabbitmq", "broker": "rabbitmq", "vhost": "/", "exchange": "orders",
         "exchange_type": "topic", "queue": "payments", "routing_key": "order.placed", "route": "binding"},
        {"sampled_at": now, "source": "rabbitmq", "broker": "rabbitmq", "vhost": "/", "exchange": "dlx",
         "exchange_type": "fanout", "queue": "payments", "routing_key": "", "route": "dlx"},
        {"sampled_at": now, "source": "rabbitmq", "broker": "rabbitmq", "vhost": "shop", "exchange": "",
         "exchange_type": "direct", "queue": "orders", "routing_key": "orders.dlq", "route": "dlx"}])
    assert bindings_graph_edges(bindings) == [
        ("exchange:rabbitmq:orders", "topic:rabbitmq:payments",
         {"kind": "binds", "routing_key": "order.placed", "exchange_type": "topic"}),
        ("topic:rabbitmq:payments", "exchange:rabbitmq:dlx", {"kind": "dead_letters_to", "routing_key": ""}),
        ("topic:rabbitmq:shop/orders", "exchange:rabbitmq:shop/(default)",
         {"kind": "dead_letters_to", "routing_key": "orders.dlq"}),
    ]
    # a queue named as a DLQ is drawn as one: the node its DLQ rows make
    assert bindings_graph_edges(bindings, {("rabbitmq", "payments")})[0][1] == "dlq:rabbitmq:payments"
    assert bindings_graph_edges(bindings, {("rabbitmq", "shop/orders")})[2][0] == "dlq:rabbitmq:shop/orders"


def test_rates_come_from_the_counters_over_the_window():
    """The API's own rate reads 0 between its statistics steps; the counters' difference over
    the collector's window does not. Too short a span, no stats, or counters that went back
    (a re-declared queue) leave the API's rate."""
    from eventscope.collectors.rabbitmq.management import RateWindow
    window, key, t0 = RateWindow(window_s=30, min_span_s=8), ("/", "payments"), pd.Timestamp("2026-01-01", tz="UTC")

    def at(s, publish, deliver, ack):
        return window.rates(key, t0 + pd.Timedelta(seconds=s), {"publish": publish, "deliver_get": deliver, "ack": ack})
    assert at(0, 100, 90, 80) is None  # the first sample: nothing to compare with
    assert at(5, 100, 90, 80) is None  # 5 s apart: too short to say
    assert at(10, 130, 110, 80) == {"publish_rate": 3.0, "deliver_rate": 2.0, "ack_rate": 0.0}
    assert at(20, 130, 110, 80) == {"publish_rate": 1.5, "deliver_rate": 1.0, "ack_rate": 0.0}  # a flat step
    assert at(40, 190, 110, 80) == {"publish_rate": 2.0, "deliver_rate": 0.0, "ack_rate": 0.0}  # only the last 30 s
    assert at(45, 3, 3, 3) is None  # counters went back: a new queue, start over
    assert window.rates(key, t0 + pd.Timedelta(seconds=60), None) is None and key not in window.seen
    window.rates(("/", "gone"), t0, {"publish": 1})
    window.keep({key})
    assert ("/", "gone") not in window.seen


def test_dlq_sources_on_a_direct_exchange_follow_the_routing_key():
    import re
    from eventscope.collectors.rabbitmq.management import dead_letter_queues, dead_letter_routes
    queues = [{"vhost": "/", "name": n, "arguments": a} for n, a in (
        ("payments", {"x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "payments"}),
        ("refunds", {"x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "refunds"}),
        ("orders", {"x-dead-letter-exchange": "dlx"}),  # keeps the message's own key: may reach any
        ("payments.dlq", {}), ("refunds.dlq", {}), ("fan.dlq", {}))] + [
        {"vhost": "/", "name": "fanned", "arguments": {"x-dead-letter-exchange": "fan"}}]
    bindings = [{"vhost": "/", "source": "dlx", "destination": "payments.dlq", "routing_key": "payments"},
                {"vhost": "/", "source": "dlx", "destination": "refunds.dlq", "routing_key": "refunds"},
                {"vhost": "/", "source": "fan", "destination": "fan.dlq", "routing_key": "payments"}]
    routes = dead_letter_routes(queues)
    types = {("/", "dlx"): "direct", ("/", "fan"): "fanout"}
    found = dead_letter_queues(queues, bindings, routes, re.compile(r"^$"), types)
    assert found == {("/", "payments.dlq"): {"payments", "orders"}, ("/", "refunds.dlq"): {"refunds", "orders"},
                     ("/", "fan.dlq"): {"fanned"}}
    # without the exchanges' types every sender of the exchange counts, as before
    assert dead_letter_queues(queues, bindings, routes, re.compile(r"^$"))[("/", "payments.dlq")] == {
        "payments", "refunds", "orders"}
