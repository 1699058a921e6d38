"""CLI behaviour a mutation run found unchecked, in process (``main(argv)``).

README, "CLI": ``alerts`` warns on stderr when the newest sample is older than five
minutes or three collection intervals, whichever is longer, and says how old in minutes."""
from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from eventscope import demo, memory, schemas
from eventscope.cli import is_loopback, main
from eventscope.recorder import Recorder
from eventscope.store import Retention, Store

STALE = "is `eventscope collect` running?"


def _health_store(root, age: pd.Timedelta):
    at = pd.Timestamp.now(tz="UTC").floor("s") - age
    Recorder(Store(root)).record({"health": schemas.conform("health", [
        {"sampled_at": at, "source": "kafka", "collector": "kafka.offsets", "ok": True, "error": "",
         "duration_ms": 1.0, "rows": 1, "last_success": at}])})
    return root


def _alerts_err(tmp_path, capsys, age: pd.Timedelta, interval_s: float | None = None, name="store") -> str:
    root = _health_store(tmp_path / name, age)
    argv = ["alerts", "--json", "--store", str(root)]
    if interval_s is not None:
        config = tmp_path / "eventscope.toml"
        config.write_text(f"[collect]\ninterval_s = {interval_s}\nmax_backoff_s = {max(60.0, interval_s)}\n")
        argv = ["--config", str(config), *argv]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == []
    return out.err


def test_alerts_say_nothing_of_a_sample_four_minutes_old(tmp_path, capsys):
    assert STALE not in _alerts_err(tmp_path, capsys, pd.Timedelta(minutes=4))


def test_alerts_warn_of_a_sample_older_than_five_minutes_in_whole_minutes(tmp_path, capsys):
    err = _alerts_err(tmp_path, capsys, pd.Timedelta(minutes=7, seconds=10))
    assert err.splitlines()[-1] == (f"eventscope: the newest sample in {tmp_path / 'store'} is 7 min old; "
                                    "these alerts are as of then (is `eventscope collect` running?)")


def test_alerts_give_a_long_outage_in_minutes(tmp_path, capsys):
    err = _alerts_err(tmp_path, capsys, pd.Timedelta(minutes=95, seconds=20))
    assert "is 95 min old" in err


def test_with_a_long_interval_three_intervals_are_not_stale(tmp_path, capsys):
    # interval 200 s: a sample up to 600 s old is only a few intervals late
    assert STALE not in _alerts_err(tmp_path, capsys, pd.Timedelta(minutes=9), interval_s=200.0)
    err = _alerts_err(tmp_path, capsys, pd.Timedelta(minutes=11), interval_s=200.0, name="older")
    assert "is 11 min old" in err and STALE in err


def test_alerts_on_a_store_without_samples_do_not_warn(tmp_path, capsys):
    assert main(["alerts", "--json", "--store", str(tmp_path / "empty")]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == [] and STALE not in out.err


# -- `eventscope trace`: the hops come from the stored lag samples and learned traffic ---------

def _event(at, topic, etype, service, offset, cid, broker="redis", trace_id=None):
    return {"observed_at": at, "source": broker, "broker": broker, "topic": topic, "partition": 0,
            "offset": offset, "at": at, "broker_at": at, "event_type": etype, "event_id": f"{cid}-{offset}",
            "service": service, "correlation_id": cid, "trace_id": trace_id, "dead_letter": False}


def test_trace_splits_a_redis_hop_by_the_stored_entries_read(tmp_path, capsys):
    """README, trace: a Redis hop whose consuming group's samples bracket the delivery is split
    into broker wait and service time. Here the group took entry 10 about 60 s after it was
    added and the next event came 20 s later."""
    t0 = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=5)
    store = Store(tmp_path)
    store.append("events", schemas.conform("events", [
        _event(t0, "orders", "OrderPlaced", "order-service", "1-0", "c-9"),
        _event(t0 + pd.Timedelta(seconds=80), "payments", "PaymentCharged", "payment-service", "2-0", "c-9")]))
    rows = []
    t = t0 - pd.Timedelta(seconds=2.5)
    while t <= t0 + pd.Timedelta(seconds=120):
        rows.append({"sampled_at": t, "source": "redis", "broker": "redis", "group": "payment-service",
                     "topic": "orders", "partition": 0,
                     "committed": 10 if t >= t0 + pd.Timedelta(seconds=60) else 9,
                     "end": 10 if t >= t0 else 9, "lag": 0, "lag_seconds": 0.0, "group_state": "n/a",
                     "members": 1})
        t += pd.Timedelta(seconds=5)
    Recorder(store).record({"lag": schemas.conform("lag", rows)})
    assert main(["trace", "c-9", "--json", "--store", str(tmp_path)]) == 0
    hop = json.loads(capsys.readouterr().out)["hops"][0]
    assert (hop["from_topic"], hop["to_topic"], hop["service"], hop["latency_ms"]) == (
        "orders", "payments", "payment-service", 80_000.0)
    assert hop["split"] == "estimated"
    assert hop["split_error_ms"] <= 2_500
    assert abs(hop["broker_wait_ms"] - 60_000) <= hop["split_error_ms"] + 1
    assert hop["broker_wait_ms"] + hop["service_ms"] == 80_000.0


def test_trace_hops_follow_what_each_service_reads_learned_from_the_last_hour(tmp_path, capsys):
    """orders fans out to payment-service and inventory-service: the inventory event that lands
    after the payment one was still caused by the order (learned from the other orders of the
    last hour), not by the payment just before it."""
    now = pd.Timestamp.now(tz="UTC").floor("s")
    rows = []
    for i in range(12):
        at = now - pd.Timedelta(minutes=30) + pd.Timedelta(seconds=60 * i)
        first, second = (0.010, 0.020) if i % 2 else (0.020, 0.010)  # who lands first varies
        rows += [_event(at, "orders", "OrderPlaced", "order-service", f"{i}-0", f"o-{i}", broker="kafka"),
                 _event(at + pd.Timedelta(seconds=first), "payments", "PaymentCharged", "payment-service",
                        f"{i}-1", f"o-{i}", broker="kafka"),
                 _event(at + pd.Timedelta(seconds=second), "inventory", "StockReserved", "inventory-service",
                        f"{i}-2", f"o-{i}", broker="kafka")]
    for r in rows:
        r["offset"] = str(len(r["offset"]) + rows.index(r))  # Kafka offsets: numbers as text
    Store(tmp_path).append("events", schemas.conform("events", rows))
    assert main(["trace", "o-11", "--json", "--store", str(tmp_path)]) == 0  # payments first
    doc = json.loads(capsys.readouterr().out)
    assert [e["topic"] for e in doc["events"]] == ["orders", "payments", "inventory"]
    assert [(h["from_topic"], h["to_topic"], h["service"]) for h in doc["hops"]] == [
        ("orders", "payments", "payment-service"), ("orders", "inventory", "inventory-service")]
    assert doc["outcome"] == "completed"


# -- `eventscope graph --format asyncapi` --------------------------------------------------------

from test_store_notices import _damaged_store  # noqa: E402 - three DLQ samples, one part cut
from test_cli import store  # noqa: E402,F401 - the CLI contract's store: order-42 and its groups


def test_asyncapi_documents_say_what_traffic_they_were_built_from(store, capsys):  # noqa: F811
    assert main(["graph", "--format", "asyncapi", "--service", "order-service", "--store", str(store)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "(3 events observed between " in doc["info"]["description"]
    assert "no events observed" not in doc["info"]["description"]


def test_asyncapi_servers_name_the_configured_redis_without_its_password(store, tmp_path, capsys):  # noqa: F811
    config = tmp_path / "brokers.toml"
    config.write_text('[redis]\nurl = "redis://:secret@redis.internal:6380/0"\n')
    assert main(["--config", str(config), "graph", "--format", "asyncapi", "--store", str(store)]) == 0
    docs = json.loads(capsys.readouterr().out)
    redis = [d["servers"]["redis"] for d in docs.values() if "redis" in d["servers"]]
    assert redis and all(s["host"] == "redis.internal:6380" for s in redis)
    assert "secret" not in json.dumps(docs)


def test_an_unknown_service_in_an_empty_store_lists_none_known(tmp_path, capsys):
    assert main(["graph", "--format", "asyncapi", "--service", "nobody", "--store", str(tmp_path)]) == 1
    assert capsys.readouterr().err.rstrip().endswith("no service 'nobody' in the observed traffic; known: none")


def test_asyncapi_files_of_services_whose_names_share_a_key_are_numbered(tmp_path, capsys, monkeypatch):
    # "billing service" and "billing/service" both become the key billing_service
    import eventscope.graph.asyncapi as asyncapi
    monkeypatch.setattr(asyncapi, "asyncapi_documents", lambda g, events, hosts, **kwargs: {
        "billing service": {"n": 1}, "billing/service": {"n": 2}})
    assert main(["graph", "--format", "asyncapi", "--out", str(tmp_path / "o"), "--store", str(tmp_path)]) == 0
    written = json.loads(capsys.readouterr().out)
    assert {k: v.rsplit("/", 1)[1] for k, v in written.items()} == {
        "billing service": "billing_service.asyncapi.json", "billing/service": "billing_service-2.asyncapi.json"}
    assert json.loads((tmp_path / "o" / "billing_service-2.asyncapi.json").read_text()) == {"n": 2}


def test_asyncapi_of_every_service_is_indented_for_people_and_one_line_with_json(store, capsys):  # noqa: F811
    assert main(["graph", "--format", "asyncapi", "--store", str(store)]) == 0
    text = capsys.readouterr().out
    assert text.startswith('{\n  "') and len(text.splitlines()) > 10
    assert main(["graph", "--format", "asyncapi", "--json", "--store", str(store)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1


# -- `eventscope collect`: SIGTERM and SIGHUP stop it like Ctrl-C ------------------------------

def test_sigterm_and_sighup_end_the_collection_in_progress_with_exit_0(tmp_path, monkeypatch):
    import signal

    import eventscope.runner as runner_module
    for name in ("EVENTSCOPE_KAFKA_BOOTSTRAP", "EVENTSCOPE_REDIS_URL", "EVENTSCOPE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    stopped = []

    def run(self, duration_s=None, parent=None):
        signal.raise_signal(self_signal)  # systemd, `timeout` or a container runtime stops it
        stopped.append(self.stop_event.is_set())
    monkeypatch.setattr(runner_module.Runner, "run", run)
    monkeypatch.setattr(runner_module, "build_collectors", lambda config: [])
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        for self_signal in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(self_signal, lambda *_: None)  # what was there before: ignores the signal
            assert main(["collect", "--store", str(tmp_path / "s")]) == 0
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    assert stopped == [True, True]


def _span(span_id, parent, links, trace_id, at):
    return {"observed_at": at, "source": "otel", "trace_id": trace_id, "span_id": span_id, "parent_span_id": parent,
            "links": links, "name": "x", "kind": "CONSUMER", "service": "svc", "start_at": at}


def _order_payment_email(root, cid: str, trace: str):
    """Three events of one trace, 1 s apart (orders, payments, emails), each sent from its own
    span; returns the store and the spans that say the e-mail was made from the order: its
    send span descends from a process span linked to the order's send span."""
    now = pd.Timestamp.now(tz="UTC").floor("s")
    events = []
    for i, (topic, etype, service, span) in enumerate([("orders", "OrderPlaced", "order-service", "a1"),
                                                       ("payments", "PaymentCharged", "payment-service", "b1"),
                                                       ("emails", "EmailQueued", "email-service", "c1")]):
        e = _event(now - pd.Timedelta(minutes=5) + pd.Timedelta(seconds=i), topic, etype, service, str(i), cid,
                   broker="kafka", trace_id=trace)
        e["parent_span_id"] = span
        events.append(e)
    store = Store(root)
    store.append("events", schemas.conform("events", events))
    spans = [_span("a1", None, None, trace, now), _span("b1", "q1", None, trace, now),
             _span("q1", None, "a1", trace, now), _span("c1", "p1", None, trace, now),
             _span("p1", None, "a1", trace, now)]
    return store, schemas.conform("spans", spans)


def test_trace_hops_follow_the_stored_opentelemetry_spans(tmp_path, capsys):
    """README, trace: where spans say which message an event was made from, that is its cause.
    The e-mail was made from the order, although the payment came in between."""
    store, spans = _order_payment_email(tmp_path, "s-1", "ab" * 16)
    store.append("spans", spans)
    assert main(["trace", "s-1", "--json", "--store", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(h["from_topic"], h["to_topic"]) for h in doc["hops"]] == [("orders", "payments"), ("orders", "emails")]


def test_trace_learns_from_the_last_hour_only(tmp_path, capsys):
    # the fan-out traffic is 61 to 120 minutes old: nothing of the last hour to learn from, so
    # each hop is the event just before on another topic
    now = pd.Timestamp.now(tz="UTC").floor("s")
    rows = []
    for i in range(12):
        at = now - pd.Timedelta(minutes=119) + pd.Timedelta(seconds=300 * i)
        first, second = (0.010, 0.020) if i % 2 else (0.020, 0.010)
        rows += [_event(at, "orders", "OrderPlaced", "order-service", str(3 * i), f"o-{i}", broker="kafka"),
                 _event(at + pd.Timedelta(seconds=first), "payments", "PaymentCharged", "payment-service",
                        str(3 * i + 1), f"o-{i}", broker="kafka"),
                 _event(at + pd.Timedelta(seconds=second), "inventory", "StockReserved", "inventory-service",
                        str(3 * i + 2), f"o-{i}", broker="kafka")]
    for r in rows:
        r["observed_at"] = r["at"]
    Store(tmp_path).append("events", schemas.conform("events", rows))
    assert main(["trace", "o-11", "--json", "--store", str(tmp_path)]) == 0  # 64 minutes old, payments first
    doc = json.loads(capsys.readouterr().out)
    assert [(h["from_topic"], h["to_topic"]) for h in doc["hops"]] == [("orders", "payments"),
                                                                     ("payments", "inventory")]


def test_trace_prints_one_json_line_or_a_table_of_events(store, capsys):  # noqa: F811
    assert main(["trace", "order-42", "--json", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1 and json.loads(out)["correlation_id"] == "order-42"
    assert main(["trace", "order-42", "--store", str(store)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert not lines[0].lstrip().startswith("{")
    assert lines[0].split()[:2] == ["at", "broker"] and "topic" in lines[0].split() and len(lines) == 4  # a header, three events


def test_trace_in_flight_for_the_configured_quiet_time(tmp_path, capsys):
    now = pd.Timestamp.now(tz="UTC").floor("s")
    Store(tmp_path / "s").append("events", schemas.conform("events", [
        _event(now - pd.Timedelta(minutes=2), "orders", "OrderPlaced", "order-service", "1-0", "q-1")]))
    config = tmp_path / "quiet.toml"
    config.write_text("[traces]\nquiet_s = 600\n")
    assert main(["--config", str(config), "trace", "q-1", "--json", "--store", str(tmp_path / "s")]) == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == "in_flight"  # quiet for 2 of 10 minutes
    assert main(["trace", "q-1", "--json", "--store", str(tmp_path / "s")]) == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == "completed"  # the default: 30 s


def _strict(text):
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_alerts_json_gives_numbers_and_null_for_no_threshold(tmp_path, capsys):
    """A status alert has no numeric threshold: null in the JSON (not NaN, which is no JSON),
    beside a numeric alert whose value and threshold are numbers."""
    now = pd.Timestamp.now(tz="UTC").floor("s")
    recorder = Recorder(Store(tmp_path / "store"))
    for i in range(4):  # committed offset never moves while the end does: STALL, lag 10 → 40
        at = now - pd.Timedelta(seconds=30 * (3 - i))
        recorder.record({"lag": schemas.conform("lag", [
            {"sampled_at": at, "source": "kafka", "broker": "kafka", "group": "billing", "topic": "orders",
             "partition": 0, "committed": 100, "end": 110 + 10 * i, "lag": 10 + 10 * i, "lag_seconds": 5.0,
             "group_state": "Stable", "members": 1}])})
    config = tmp_path / "eventscope.toml"
    config.write_text('[alerts]\ndefaults = false\nfor_s = 0\n\n'
                      '[[alerts.rules]]\nname = "stuck"\nmetric = "lag_status"\ncritical = ["STALL", "STOP"]\n\n'
                      '[[alerts.rules]]\nname = "big"\nmetric = "lag"\nwarning = 5\n')
    assert main(["--config", str(config), "alerts", "--json", "--store", str(tmp_path / "store")]) == 0
    rows = {r["rule"]: r for r in _strict(capsys.readouterr().out)}
    assert set(rows) == {"stuck", "big"}
    assert (rows["stuck"]["threshold"], rows["stuck"]["detail"], rows["stuck"]["value"]) == (None, "STALL", 40.0)
    assert (rows["big"]["threshold"], rows["big"]["value"], rows["big"]["severity"]) == (5.0, 40.0, "warning")
    assert rows["big"]["subject"] == "kafka:billing/orders"


def test_alerts_json_names_the_cluster_and_its_kind_of_each_subject(tmp_path, capsys):
    """Each alert row says which cluster (``broker``) its subject is about, and that cluster's
    kind where the store knows it: ``BROKER:group/topic``, ``BROKER:dlq``, ``SOURCE/collector``.
    A Redis stream's name often holds colons; a group's time lag may be unknown."""
    now = pd.Timestamp.now(tz="UTC").floor("s")
    recorder = Recorder(Store(tmp_path / "store"))
    for i in range(4):
        at = now - pd.Timedelta(seconds=30 * (3 - i))
        recorder.record({"lag": schemas.conform("lag", [
            {"sampled_at": at, "source": "east", "broker": "east", "kind": "redis", "group": "billing",
             "topic": "mail:out", "partition": 0, "committed": 100, "end": 110 + 10 * i, "lag": 10 + 10 * i,
             "lag_seconds": None, "group_state": "Stable", "members": 1}]),
            "health": schemas.conform("health", [
                {"sampled_at": at, "source": "west", "collector": "kafka.offsets", "ok": False, "error": "down",
                 "duration_ms": 1.0, "rows": 0, "last_success": now - pd.Timedelta(hours=1)}])})
    config = tmp_path / "eventscope.toml"
    config.write_text('[alerts]\ndefaults = false\nfor_s = 0\n\n'
                      '[[alerts.rules]]\nname = "big"\nmetric = "lag"\nwarning = 5\n\n'
                      '[[alerts.rules]]\nname = "stale"\nmetric = "collector_stale_s"\nwarning = 60\n')
    assert main(["--config", str(config), "alerts", "--json", "--store", str(tmp_path / "store")]) == 0
    rows = {r["rule"]: r for r in _strict(capsys.readouterr().out)}
    assert (rows["big"]["subject"], rows["big"]["broker"], rows["big"]["kind"]) == ("east:billing/mail:out", "east", "redis")
    assert (rows["stale"]["subject"], rows["stale"]["broker"], rows["stale"]["kind"]) == (
        "west/kafka.offsets", "west", None)  # no sample of west's kind in the store


# -- `lag` and `dlq` as tables, and the warning of a server bound beyond loopback -------------
def _lag_and_dlq_store(root, at: pd.Timestamp):
    lag = [{"sampled_at": at, "source": "kafka", "broker": "kafka", "group": g, "topic": "orders", "partition": p,
            "committed": 10, "end": 10 + n, "lag": n, "lag_seconds": 1.5 * n, "group_state": "Stable", "members": 1}
           for g, p, n in [("zeta", 1, 4), ("alpha", 1, 2), ("alpha", 0, 3), ("pay\x1b[31mred", 0, 0)]]
    dlq = [{"sampled_at": at, "source": "kafka", "broker": "kafka", "dlq": "orders.DLT", "source_topic": "orders",
            "depth": 3, "oldest_at": at - pd.Timedelta(minutes=10), "reasons": '{"card declined": 3}', "unread": 0}]
    Recorder(Store(root)).record({"lag": schemas.conform("lag", lag), "dlq": schemas.conform("dlq", dlq)})
    return root


def test_lag_as_a_table_is_sorted_by_group_topic_and_partition_escaped_and_without_the_source(tmp_path, capsys):
    root = _lag_and_dlq_store(tmp_path / "store", pd.Timestamp.now(tz="UTC").floor("s"))
    assert main(["lag", "--store", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert "source" not in header and {"group", "topic", "partition", "lag", "status"} <= set(header)
    shift = "sampled_at" in header  # its cells are two words: a date and a time
    groups = [line.split()[header.index("group") + shift] for line in lines[1:]]
    partitions = [line.split()[header.index("partition") + shift] for line in lines[1:]]
    assert groups == ["alpha", "alpha", "pay\\x1b[31mred", "zeta"] and partitions == ["0", "1", "0", "1"]
    assert "\x1b" not in "\n".join(lines)


def test_dlq_as_a_table_has_no_sample_time_and_ages_are_from_now(tmp_path, capsys):
    root = _lag_and_dlq_store(tmp_path / "store", pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=5))
    assert main(["dlq", "--store", str(root)]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert "sampled_at" not in header and {"dlq", "depth", "reasons", "oldest_age_seconds"} <= set(header)
    assert main(["dlq", "--json", "--store", str(root)]) == 0
    age = json.loads(capsys.readouterr().out)[0]["oldest_age_seconds"]
    assert 15 * 60 - 1 <= age < 16 * 60  # the oldest dead letter is 15 minutes old now, not 10


def test_a_table_is_printed_whole_every_row_and_column_on_one_line(tmp_path, capsys):
    at = pd.Timestamp.now(tz="UTC").floor("s")
    group = "checkout-" + "x" * 150  # a long name: no wrapping either
    Recorder(Store(tmp_path)).record({"lag": schemas.conform("lag", [
        {"sampled_at": at, "source": "kafka", "broker": "kafka", "group": group, "topic": "orders", "partition": p,
         "committed": 10, "end": 10 + p, "lag": p, "lag_seconds": 1.0, "group_state": "Stable", "members": 1}
        for p in range(700)])})
    assert main(["lag", "--store", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 701 and all(group in line for line in lines[1:])
    assert [int(line.split()[lines[0].split().index("partition") + 1]) for line in lines[1:]] == list(range(700))


def test_an_empty_store_says_nothing_is_there_yet(tmp_path, capsys):
    assert main(["lag", "--store", str(tmp_path / "empty")]) == 0
    assert capsys.readouterr().out.strip() == \
        "(nothing yet: is a collector writing this store? see `eventscope collect`)"


def test_only_text_cells_are_escaped():
    from eventscope.cli import safe_text, terminal_safe  # noqa: PLC0415 - the helpers themselves
    assert safe_text("a\x1b[2Jb\x07") == "a\\x1b[2Jb\\x07" and safe_text(7) == 7 and safe_text(None) is None
    mixed = pd.DataFrame({"name": pd.Series(["ok\x9b", 3, None], dtype=object), "n": [1, 2, 3]})
    assert terminal_safe(mixed)["name"].tolist() == ["ok\\x9b", 3, None]


def test_the_warning_of_a_server_beyond_loopback_says_it_all(capsys):
    from eventscope.cli import _warn_exposure  # noqa: PLC0415 - the helper itself
    _warn_exposure("the exporter", "[::]", 9464)
    _warn_exposure("the dashboard", "127.0.0.1", 8501)
    assert capsys.readouterr().err == (
        "eventscope: WARNING: the exporter listens on [::]:9464, beyond loopback, and has no authentication: "
        "anyone who can reach that port sees the brokers' topics, groups, services and (masked) messages. "
        "Bind it to 127.0.0.1 (the default) and put a reverse proxy with authentication and TLS in front of it "
        "(README: Security).\n")


def test_the_dashboard_is_given_its_store_its_config_and_two_heaps(monkeypatch, tmp_path):
    from eventscope import cli  # noqa: PLC0415 - its os.execve is replaced
    calls = []

    def execve(path, argv, env):
        calls.append((path, argv, env))
    monkeypatch.setattr(cli.os, "execve", execve)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("EVENTSCOPE_CONFIG", raising=False)
    config = tmp_path / "eventscope.toml"
    config.write_text("[collect]\ninterval_s = 5\n")
    monkeypatch.chdir(tmp_path)
    cli.main(["--config", "eventscope.toml", "dashboard", "--store", "/data/es-store"])
    path, argv, env = calls[-1]
    assert path == argv[0] and "streamlit" in " ".join(argv)
    assert env["EVENTSCOPE_STORE"] == "/data/es-store"
    assert env["EVENTSCOPE_CONFIG"] == str(config.resolve())  # absolute: Streamlit may change directory
    assert env["MALLOC_ARENA_MAX"] == "2"
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")  # the user's own choice stays
    cli.main(["dashboard", "--store", "/data/es-store"])
    assert calls[-1][2]["MALLOC_ARENA_MAX"] == "4" and "EVENTSCOPE_CONFIG" not in calls[-1][2]


def test_the_exporter_serves_the_store_it_was_given(monkeypatch, tmp_path):
    from eventscope import cli, exporter  # noqa: PLC0415 - its serve is replaced
    from eventscope.config import Config  # noqa: PLC0415
    served = {}
    monkeypatch.setattr(exporter, "serve", lambda store, config, **_: served.update(store=store, config=config))
    monkeypatch.delenv("EVENTSCOPE_CONFIG", raising=False)
    assert cli.main(["exporter", "--store", str(tmp_path / "s")]) == 0
    assert isinstance(served["store"], Store) and isinstance(served["config"], Config)
    assert served["store"].root == tmp_path / "s" and str(served["config"].store_dir) == str(tmp_path / "s")


# -- `graph`: the sample data, collected once in process ------------------------------------
@pytest.fixture(scope="module")
def sample_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("graph") / "store"
    assert main(["collect", "--once", "--store", str(root)]) == 0
    newest = Store(root).read("events", columns=["observed_at"])["observed_at"].max()
    wait = (newest + pd.Timedelta(seconds=1.5) - pd.Timestamp.now(tz="UTC")).total_seconds()
    time.sleep(max(0.0, wait))  # the replay dates its events up to now: let a second pass
    return root


def _graph(capsys, root, *args) -> dict:
    capsys.readouterr()
    assert main(["graph", "--json", *args, "--store", str(root)]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_graph_holds_every_kind_of_flow_the_store_knows(sample_store, capsys):
    g = _graph(capsys, sample_store)
    kinds = {e["kind"] for e in g["edges"]}
    assert {"produces", "consumes", "causes", "dead_letters", "dead_letters_to", "binds"} <= kinds
    assert {n["kind"] for n in g["nodes"]} >= {"service", "topic", "group", "dlq", "exchange"}
    # consumed counts come from the per-minute lag rollup, dead letters from the DLQ minutes
    assert any(e["events"] > 0 for e in g["edges"] if e["kind"] == "consumes")
    depth = {n["id"]: n["depth"] for n in g["nodes"] if n["kind"] == "dlq"}
    assert depth["dlq:kafka:orders.DLT"] > 0 and depth["dlq:redis:orders.dlq"] > 0


def test_a_window_keeps_only_the_last_seconds_of_traffic(sample_store, capsys):
    whole = _graph(capsys, sample_store)
    everything = _graph(capsys, sample_store, "--window", str(10 * 365 * 86400))
    assert everything == whole
    recent = _graph(capsys, sample_store, "--window", "1")  # the last second: no event in it
    assert not {e["kind"] for e in recent["edges"]} & {"produces", "causes", "dead_letters"}
    assert not [n for n in recent["nodes"] if n["kind"] == "service"]


def test_a_window_counts_only_the_consumption_of_its_own_minutes(sample_store, capsys):
    """The consumer side of a windowed graph: the groups stay (they exist now), what they
    consumed is counted over the window alone."""
    whole = [e for e in _graph(capsys, sample_store)["edges"] if e["kind"] == "consumes"]
    recent = [e for e in _graph(capsys, sample_store, "--window", "1")["edges"] if e["kind"] == "consumes"]
    assert sum(e["events"] for e in whole) > 0
    assert {(e["source"], e["target"]) for e in recent} == {(e["source"], e["target"]) for e in whole}
    assert [e["events"] for e in recent] == [0] * len(recent)


def test_rabbitmq_queue_nodes_carry_their_queue_type(sample_store, capsys):
    nodes = {n["id"]: n for n in _graph(capsys, sample_store)["nodes"]}
    assert nodes["dlq:rabbitmq:analytics-service.dlq"]["queue_type"] == "classic"
    assert not [n for n in nodes.values() if n["broker"] == "kafka" and "queue_type" in n]


def test_the_graph_as_dot_and_as_indented_json_for_people(sample_store, capsys):
    assert main(["graph", "--format", "dot", "--store", str(sample_store)]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph eventscope {\n") and dot.rstrip().endswith("}")
    assert '"topic:kafka:orders"' in dot and "->" in dot
    assert main(["graph", "--json", "--store", str(sample_store)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1  # --json: one line
    one_line = json.loads(printed)
    assert main(["graph", "--store", str(sample_store)]) == 0
    out = capsys.readouterr().out
    assert out.startswith('{\n  "nodes": [\n') and json.loads(out) == one_line


def test_graph_causes_follow_the_stored_opentelemetry_spans_with_and_without_a_window(tmp_path, capsys):
    """The graph draws orders → emails, as the spans say, not payments → emails (the event
    just before)."""
    store, spans = _order_payment_email(tmp_path, "g-1", "cd" * 16)

    def causes(*args):
        return sorted((e["source"], e["target"]) for e in _graph(capsys, tmp_path, *args)["edges"]
                      if e["kind"] == "causes")
    guessed = [("topic:kafka:orders", "topic:kafka:payments"), ("topic:kafka:payments", "topic:kafka:emails")]
    assert causes() == guessed  # no spans stored: the event just before
    store.append("spans", spans)
    told = [("topic:kafka:orders", "topic:kafka:emails"), ("topic:kafka:orders", "topic:kafka:payments")]
    assert causes() == told
    assert causes("--window", "3600") == told


def test_demo_is_given_its_port_and_store(monkeypatch):
    calls = []
    monkeypatch.setattr(demo, "run_demo", lambda **kw: calls.append(kw) or 3)
    monkeypatch.delenv("EVENTSCOPE_CONFIG", raising=False)
    assert main(["demo", "--port", "8600", "--store", "/data/demo-store"]) == 3
    assert main(["demo"]) == 3
    assert calls == [{"port": 8600, "store": "/data/demo-store"}, {"port": 8501, "store": None}]


def test_a_malformed_address_is_not_loopback():
    assert is_loopback("[::1]") and is_loopback(" LOCALHOST ") and is_loopback("127.0.0.2")
    assert not is_loopback("X127.0.0.1") and not is_loopback("127.0.0.1X") and not is_loopback("[0.0.0.0]")


# -- what the store could not keep, on standard error --------------------------------------

def test_a_history_cut_short_by_max_rows_is_said_with_its_start_the_cap_and_the_retention(tmp_path, capsys):
    root = tmp_path / "store"
    store = Store(root, Retention(max_age_s=1.5 * 3600, max_rows=1_500, compact_every=1000))
    now = pd.Timestamp.now(tz="UTC").floor("s")
    for i in range(4):
        store.append("health", pd.DataFrame({"sampled_at": [now - pd.Timedelta(minutes=40 - 10 * i)] * 500,
                                             "source": "kafka", "collector": "c", "ok": True, "rows": i}))
    store.compact("health")
    (cap,) = store.caps()
    config = tmp_path / "eventscope.toml"
    config.write_text("[store]\nretention_hours = 1.5\nmax_rows = 1500\n")
    assert main(["--config", str(config), "lag", "--json", "--store", str(root)]) == 0
    assert capsys.readouterr().err == (
        f"eventscope: health history in {root} starts {cap['kept_since']:%Y-%m-%d %H:%M:%S} UTC: "
        "store.max_rows (1,500) cut it short of the 1.5 h retention\n")
    assert cap["kept_since"] == now - pd.Timedelta(minutes=30)


def test_missing_rows_are_named_with_their_part_span_and_error(tmp_path, capsys, monkeypatch):
    root = tmp_path / "store"
    part = _damaged_store(root)
    Store(root).compact("dlq")  # the collector moves it aside and records it
    (lost,) = Store(root).damage()
    assert main(["dlq", "--json", "--store", str(root)]) == 0
    err = capsys.readouterr().err
    assert err == (f"eventscope: 1 dlq rows from {lost['tmin']:%Y-%m-%d %H:%M:%S} to {lost['tmax']:%Y-%m-%d %H:%M:%S}"
                   f" UTC are missing: {part} in {root} could not be read ({lost['error']})\n")
    assert lost["error"]
    # a part known only by name: how many rows and when are not known; control characters escaped
    monkeypatch.setattr(Store, "damage", lambda self: [
        {"frame": "events", "file": "p\x1b[2J.parquet", "rows": None, "tmin": None, "tmax": None, "error": "bad"},
        {"frame": "lag", "file": "q.parquet", "rows": 12_345, "tmin": None, "tmax": None, "error": "short"}])
    assert main(["dlq", "--json", "--store", str(root)]) == 0
    assert capsys.readouterr().err == (
        f"eventscope: some events rows are missing: p\\x1b[2J.parquet in {root} could not be read (bad)\n"
        f"eventscope: 12,345 lag rows are missing: q.parquet in {root} could not be read (short)\n")


def test_collect_limits_its_heaps_unless_told_otherwise(tmp_path, monkeypatch):
    """glibc's malloc arenas: two for the collector's threads, unless MALLOC_ARENA_MAX says."""
    calls = []
    monkeypatch.setattr(memory, "limit_arenas", calls.append)
    monkeypatch.delenv("EVENTSCOPE_CONFIG", raising=False)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert main(["collect", "--once", "--store", str(tmp_path / "a")]) == 0
    assert calls == [2]
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert main(["collect", "--once", "--store", str(tmp_path / "b")]) == 0
    assert calls == [2]
