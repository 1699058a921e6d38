"""RabbitMQ on the pages (eventscope/queues_view.py): a queue's numbers and verdict in the Lag
page's group detail; on the Dead letters page, what a classic or quorum DLQ cannot show
without consuming, and a stream DLQ's reasons."""
from __future__ import annotations

import json
import math

import pandas as pd

from eventscope import queues_view, schemas
from eventscope.recorder import Recorder
from eventscope.store import Store
from test_app import _app, _frames_with, _pick, _visit

B = "rabbit-eu"


def _queue(at, name, vhost="/", kind="classic", ready=0, unacked=0, consumers=1, rates=(1.0, 1.0, 1.0),
           utilisation=1.0, is_dlq=False):
    return {"sampled_at": at, "source": B, "broker": B, "kind": "rabbitmq", "vhost": vhost, "queue": name,
            "type": kind, "state": "running", "ready": ready, "unacked": unacked, "messages": ready + unacked,
            "consumers": consumers, "consumer_utilisation": utilisation, "publish_rate": rates[0],
            "deliver_rate": rates[1], "ack_rate": rates[2], "is_dlq": is_dlq}


def _store(root):
    """A RabbitMQ cluster ``rabbit-eu`` sampled twice: ``payments`` stalled (100 unacked, 40
    ready, nothing delivered), ``shop/orders`` keeping up, ``payments.dlq`` (classic) and
    ``payments.audit`` (stream, reasons read) holding 7 dead letters each."""
    now = pd.Timestamp.now(tz="UTC").floor("s")
    recorder = Recorder(Store(root))
    for at in (now - pd.Timedelta(seconds=30), now):
        queues = [_queue(at, "payments", ready=40, unacked=100, rates=(2.5, 0.0, 0.0), utilisation=0.0),
                  _queue(at, "orders", vhost="shop", ready=2, rates=(3.0, 3.0, 3.0)),
                  _queue(at, "payments.dlq", ready=7, consumers=0, rates=(0.1, math.nan, math.nan), is_dlq=True),
                  _queue(at, "payments.audit", kind="stream", ready=7, consumers=0, is_dlq=True)]
        lag = [{"sampled_at": at, "source": B, "broker": B, "kind": "rabbitmq", "group": key, "topic": key,
                "partition": 0, "lag": None if q["type"] == "stream" else q["ready"], "lag_seconds": 0.0,
                "members": q["consumers"], "pending": q["unacked"], "group_state": "running"}
               for q in queues for key in [queues_view.queue_key(q["vhost"], q["queue"])]]
        dlq = [{"sampled_at": at, "source": B, "broker": B, "kind": "rabbitmq", "dlq": "payments.dlq",
                "source_topic": "payments", "depth": 7, "reasons": "{}", "unread": 7},
               {"sampled_at": at, "source": B, "broker": B, "kind": "rabbitmq", "dlq": "payments.audit",
                "source_topic": "payments", "depth": 7, "reasons": json.dumps({"rejected": 7}), "unread": 0}]
        recorder.record({"lag": schemas.conform("lag", lag), "queues": schemas.conform("queues", queues),
                         "dlq": schemas.conform("dlq", dlq)})
    return root


# -- pure parts ----------------------------------------------------------------------------------
def test_queue_for_finds_a_queue_by_its_lag_name_on_its_cluster():
    now = pd.Timestamp("2026-01-01", tz="UTC")
    queues = schemas.conform("queues", [_queue(now, "orders", vhost="shop", ready=3),
                                        _queue(now + pd.Timedelta(seconds=5), "orders", vhost="shop", ready=4),
                                        _queue(now, "orders", ready=9),
                                        {**_queue(now, "orders", vhost="shop", ready=8), "broker": "other"}])
    assert queues_view.queue_for(queues, B, "shop/orders")["ready"] == 4  # the newest
    assert queues_view.queue_for(queues, B, "orders")["ready"] == 9
    assert queues_view.queue_for(queues, "other", "shop/orders")["ready"] == 8
    assert queues_view.queue_for(queues, "kafka", "orders") is None
    assert queues_view.queue_for(schemas.empty("queues"), B, "orders") is None


def test_queue_facts_say_unknown_where_rabbitmq_does_not_report():
    facts = queues_view.queue_facts(_queue(None, "q", ready=1234, unacked=5, consumers=2, rates=(2.5, 0.0, math.nan),
                                           utilisation=0.42))
    assert facts == {"Ready": "1,234", "Unacked": "5", "Consumers": "2", "Consumer utilisation": "42%",
                     "Publish": "2.50/s", "Deliver": "0.00/s", "Ack": "—"}
    assert queues_view.queue_facts({"ready": None})["Ready"] == "—"


def test_verdict_reasons():
    assert queues_view.verdict_reason(_queue(None, "s", kind="stream"), "UNKNOWN").startswith("UNKNOWN: a stream")
    assert "no consumer" in queues_view.verdict_reason(_queue(None, "q", ready=3, consumers=0), "STOP")
    assert "nothing is ready" in queues_view.verdict_reason(_queue(None, "q"), "OK")
    assert "Dead letters page" in queues_view.verdict_reason(_queue(None, "q", ready=3, consumers=0, is_dlq=True), "OK")
    assert "prefetch" in queues_view.verdict_reason(_queue(None, "q", ready=3), "STALL")


def test_dlq_notices():
    assert queues_view.dlq_notice_text(None, "kafka") is None
    level, text = queues_view.dlq_notice_text(_queue(None, "d", kind="quorum"), "rabbitmq")
    assert level == "warning" and text.startswith("A quorum queue") and "never consumes" in text
    level, text = queues_view.dlq_notice_text(_queue(None, "d", kind="stream"), "rabbitmq")
    assert level == "info" and "removes nothing" in text and "x-death" in text
    assert queues_view.dlq_notice_text(None, "rabbitmq")[0] == "warning"  # no queue sample yet


# -- the pages -----------------------------------------------------------------------------------
def test_lag_page_shows_a_rabbitmq_queue(monkeypatch, tmp_path):
    at = _pick(_visit(_app(monkeypatch, _store(tmp_path / "s")), "pages/lag.py"), B, "payments")
    metrics = {m.label: m.value for m in at.metric}
    assert {k: metrics[k] for k in ("Ready", "Unacked", "Consumers", "Consumer utilisation", "Publish",
                                    "Deliver", "Ack")} == {
        "Ready": "40", "Unacked": "100", "Consumers": "1", "Consumer utilisation": "0%",
        "Publish": "2.50/s", "Deliver": "0.00/s", "Ack": "0.00/s"}
    assert any("RabbitMQ **classic** queue **payments**" in m.value for m in at.markdown)
    assert any(c.value.startswith("STALL: consumers are attached") for c in at.caption)
    assert any("eventscope never consumes" in c.value for c in at.caption)


def test_lag_page_shows_a_stream_as_unknown_and_a_queue_in_a_vhost(monkeypatch, tmp_path):
    at = _pick(_visit(_app(monkeypatch, _store(tmp_path / "s")), "pages/lag.py"), B, "payments.audit")
    assert any(c.value.startswith("UNKNOWN: a stream") for c in at.caption)
    at = _pick(at, B, "shop/orders")
    assert {m.label: m.value for m in at.metric}["Deliver"] == "3.00/s"
    assert any(c.value.startswith("OK: messages are delivered") for c in at.caption)


def test_dead_letters_page_says_what_a_rabbitmq_dlq_cannot_show(monkeypatch, tmp_path):
    at = _visit(_app(monkeypatch, _store(tmp_path / "s")), "pages/dead_letters.py")
    at.selectbox(key="dlq_pick").set_value(f"payments.dlq  ·  {B}").run()
    assert not at.exception, at.exception
    assert any("RabbitMQ shows none of its messages" in w.value for w in at.warning)
    assert not any("dlq_read_max" in w.value for w in at.warning)  # Kafka/Redis' partial-read notice
    at.selectbox(key="dlq_pick").set_value(f"payments.audit  ·  {B}").run()
    assert not at.exception, at.exception
    assert any("A stream DLQ" in i.value for i in at.info)
    reasons = _frames_with(at, "share")[0]
    assert reasons[["reason", "count"]].values.tolist() == [["rejected", 7]]


def test_a_rabbitmq_dlq_is_unprocessed_only_while_a_consumer_reads_it():
    from eventscope.analysis import dlq as dlq_analysis
    now = pd.Timestamp("2026-01-01", tz="UTC")
    dlq = schemas.conform("dlq", [{"sampled_at": now, "source": B, "broker": B, "kind": "rabbitmq",
                                   "dlq": "payments.dlq", "depth": 7}])

    def lag(members):
        return schemas.conform("lag_latest", [{"sampled_at": now, "source": B, "broker": B, "kind": "rabbitmq",
                                               "group": "payments.dlq", "topic": "payments.dlq", "partition": 0,
                                               "lag": 7, "members": members, "status": "OK"}])
    assert dlq_analysis.summary(dlq, lag=lag(0))["unprocessed"].iloc[0] is None  # nobody reprocesses it
    assert dlq_analysis.summary(dlq, lag=lag(2))["unprocessed"].iloc[0] == 7
