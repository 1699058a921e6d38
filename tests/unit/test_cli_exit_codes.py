"""The CLI's exit codes, in process (``main(argv)`` returns what the process exits with).

README, "CLI": 0 when a command did its job; ``alerts --exit-code`` exits 1 only while a
*critical* alert fires; 1 for an unknown trace ID or AsyncAPI service; 2 for a bad config
or a second collector on the same store."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from eventscope import schemas
from eventscope.cli import main
from eventscope.recorder import Recorder
from eventscope.store import Store


def _store(root, lag_seconds: float):
    """A Kafka group behind by ``lag_seconds`` (and moving: no stall) for the last 90 s."""
    now = pd.Timestamp.now(tz="UTC").floor("s")
    recorder = Recorder(Store(root))
    for i in range(4):
        at = now - pd.Timedelta(seconds=30 * (3 - i))
        recorder.record({"lag": schemas.conform("lag", [
            {"sampled_at": at, "source": "kafka", "broker": "kafka", "group": "billing", "topic": "orders",
             "partition": 0, "committed": 100 + 10 * i, "end": 120 + 10 * i, "lag": 20,
             "lag_seconds": lag_seconds, "group_state": "Stable", "members": 1}]),
            "health": schemas.conform("health", [
                {"sampled_at": at, "source": "kafka", "collector": "kafka.offsets", "ok": True, "error": "",
                 "duration_ms": 1.0, "rows": 1, "last_success": at}])})
    return root


def _config(tmp_path, rule: str) -> str:
    path = tmp_path / "eventscope.toml"
    path.write_text("[alerts]\ndefaults = false\nfor_s = 0\n\n[[alerts.rules]]\n" + rule)
    return str(path)


WARNING_ONLY = 'name = "slow"\nmetric = "lag_seconds"\nwarning = 10\n'
CRITICAL = 'name = "slow"\nmetric = "lag_seconds"\nwarning = 10\ncritical = 30\n'


def _alerts(tmp_path, capsys, rule, lag_seconds, *flags):
    store = _store(tmp_path / "store", lag_seconds)
    code = main(["--config", _config(tmp_path, rule), "alerts", "--json", *flags, "--store", str(store)])
    return code, json.loads(capsys.readouterr().out)


def test_a_firing_critical_alert_exits_1_with_exit_code(tmp_path, capsys):
    code, rows = _alerts(tmp_path, capsys, CRITICAL, 60.0, "--exit-code")
    assert [(r["rule"], r["severity"]) for r in rows] == [("slow", "critical")]
    assert code == 1


def test_without_exit_code_a_critical_alert_still_exits_0(tmp_path, capsys):
    code, rows = _alerts(tmp_path, capsys, CRITICAL, 60.0)
    assert [r["severity"] for r in rows] == ["critical"]
    assert code == 0


def test_warnings_alone_exit_0_even_with_exit_code(tmp_path, capsys):
    code, rows = _alerts(tmp_path, capsys, WARNING_ONLY, 60.0, "--exit-code")
    assert [(r["rule"], r["severity"]) for r in rows] == [("slow", "warning")]
    assert code == 0


def test_nothing_firing_exits_0_with_exit_code(tmp_path, capsys):
    code, rows = _alerts(tmp_path, capsys, CRITICAL, 5.0, "--exit-code")
    assert rows == []
    assert code == 0


def test_a_bad_config_exits_2_and_says_why(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[alerts]\nfor_s = 'soon'\n")
    assert main(["--config", str(bad), "lag", "--store", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eventscope: config error:") and "for_s" in err


def test_an_unknown_trace_id_exits_1(tmp_path, capsys):
    assert main(["trace", "no-such-id", "--store", str(tmp_path)]) == 1
    assert "no event carries the ID 'no-such-id'" in capsys.readouterr().err


def test_lag_and_dlq_on_an_empty_store_exit_0(tmp_path, capsys):
    assert main(["lag", "--json", "--store", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["dlq", "--json", "--store", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_a_second_collector_on_the_same_store_exits_2(tmp_path, capsys):
    from eventscope.runner import StoreLock
    lock = StoreLock(tmp_path)
    assert lock.acquire()
    try:
        assert main(["collect", "--once", "--store", str(tmp_path)]) == 2
        assert "another collector already writes" in capsys.readouterr().err
    finally:
        lock.release()


def test_a_closed_pipe_is_not_an_error(tmp_path, monkeypatch):
    import eventscope.cli as cli

    def broken(*_args, **_kwargs):
        raise BrokenPipeError
    monkeypatch.setattr(cli, "cmd_lag", broken)
    assert main(["lag", "--store", str(tmp_path)]) == 0


@pytest.mark.parametrize("argv", [["graph", "--format", "asyncapi", "--service", "nobody"]])
def test_an_unknown_asyncapi_service_exits_1(tmp_path, capsys, argv):
    assert main([*argv, "--store", str(tmp_path)]) == 1
    assert "no service 'nobody'" in capsys.readouterr().err


def test_collect_once_exits_1_when_a_collector_fails(tmp_path, capsys, monkeypatch):
    for name in ("EVENTSCOPE_KAFKA_BOOTSTRAP", "EVENTSCOPE_REDIS_URL", "EVENTSCOPE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "refused.toml"
    config.write_text('[redis]\nurl = "redis://127.0.0.1:1/0"\ntimeout_s = 1.0\n')  # nothing listens on port 1
    assert main(["--config", str(config), "collect", "--once", "--store", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert "redis/redis.streams: FAILED: ConnectionError" in err
    assert "collecting redis (redis://127.0.0.1:1/0)" in err


def test_collect_once_exits_0_when_every_collector_succeeds(tmp_path, capsys, monkeypatch):
    for name in ("EVENTSCOPE_KAFKA_BOOTSTRAP", "EVENTSCOPE_REDIS_URL", "EVENTSCOPE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    # no broker configured: the sample data is replayed, and succeeds
    assert main(["collect", "--once", "--store", str(tmp_path / "s")]) == 0
    err = capsys.readouterr().err
    assert "replay/replay: ok (" in err
    from eventscope.runner import StoreLock
    lock = StoreLock(tmp_path / "s")
    assert lock.acquire()  # released on the way out
    lock.release()


from test_cli import store  # noqa: E402,F401 - the CLI contract's store: a dead-lettered order-42


def test_a_found_trace_exits_0_with_its_events_and_hops(store, capsys):  # noqa: F811
    assert main(["trace", "order-42", "--json", "--store", str(store)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["correlation_id"] == "order-42" and doc["outcome"] == "dead_lettered"
    assert [e["topic"] for e in doc["events"]] == ["orders", "payments", "payments.DLT"]
    assert [(h["from_topic"], h["to_topic"], h["service"]) for h in doc["hops"]] == [
        ("orders", "payments", "payment-service"), ("payments", "payments.DLT", "dead-letter")]
    # by its trace ID too, and as a table
    assert main(["trace", "f" * 32, "--store", str(store)]) == 0
    table = capsys.readouterr().out
    assert "PaymentCharged" in table and "payments.DLT" in table


def test_asyncapi_documents_one_service_or_files_exit_0(store, tmp_path, capsys):  # noqa: F811
    assert main(["graph", "--format", "asyncapi", "--json", "--store", str(store)]) == 0
    compact = capsys.readouterr().out
    docs = json.loads(compact)
    assert set(docs) == {"order-service", "payment-service", "email-service"}
    assert "\n" not in compact.strip()  # --json: one line
    assert main(["graph", "--format", "asyncapi", "--service", "payment-service", "--store", str(store)]) == 0
    one = capsys.readouterr().out
    assert json.loads(one) == docs["payment-service"] and '\n  "asyncapi"' in one  # indented by 2
    assert main(["graph", "--format", "asyncapi", "--store", str(store)]) == 0
    assert json.loads(capsys.readouterr().out) == docs
    assert main(["graph", "--format", "asyncapi", "--service", "nobody", "--store", str(store)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("eventscope: no service 'nobody' in the observed traffic; known: ")
    assert err.rstrip().endswith("known: " + ", ".join(docs))
    out = tmp_path / "specs" / "deeper"
    assert main(["graph", "--format", "asyncapi", "--out", str(out), "--store", str(store)]) == 0
    written = json.loads(capsys.readouterr().out)
    assert {k: v.rsplit("/", 1)[1] for k, v in written.items()} == {
        name: f"{name}.asyncapi.json" for name in docs}
    for name, path in written.items():
        text = (out / f"{name}.asyncapi.json").read_text(encoding="utf-8")
        assert text.endswith("}\n") and json.loads(text) == docs[name] and path == str(out / f"{name}.asyncapi.json")
    assert main(["graph", "--format", "asyncapi", "--service", "order-service", "--out", str(tmp_path / "one"),
                 "--store", str(store)]) == 0
    assert list(json.loads(capsys.readouterr().out)) == ["order-service"]
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["order-service.asyncapi.json"]


def test_asyncapi_files_of_services_with_the_same_key_do_not_overwrite(tmp_path, capsys, monkeypatch):
    import eventscope.graph.asyncapi as asyncapi
    monkeypatch.setattr(asyncapi, "asyncapi_documents", lambda g, events, hosts, **_: {
        "Billing Service": {"n": 1}, "billing-service": {"n": 2}, "billing/service": {"n": 3}})
    monkeypatch.setattr(asyncapi, "component_key", lambda name: "billing-service")
    assert main(["graph", "--format", "asyncapi", "--out", str(tmp_path / "o"), "--store", str(tmp_path)]) == 0
    written = json.loads(capsys.readouterr().out)
    names = {k: v.rsplit("/", 1)[1] for k, v in written.items()}
    assert names == {"Billing Service": "billing-service.asyncapi.json",
                     "billing-service": "billing-service-2.asyncapi.json",
                     "billing/service": "billing-service-3.asyncapi.json"}
    assert json.loads((tmp_path / "o" / "billing-service-3.asyncapi.json").read_text()) == {"n": 3}


def test_asyncapi_servers_come_from_the_configured_brokers(store, tmp_path, capsys):  # noqa: F811
    config = tmp_path / "brokers.toml"
    config.write_text('[kafka]\nbootstrap = "kafka-1.internal:9092,kafka-2.internal:9092"\n'
                      '[redis]\nurl = "redis://:secret@redis.internal:6380/0"\n')
    argv = ["--config", str(config), "graph", "--format", "asyncapi", "--service", "order-service",
            "--store", str(store)]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["servers"]["kafka"]["host"] == "kafka-1.internal:9092"
    assert "secret" not in json.dumps(doc)
    out = tmp_path / "again"
    for _ in range(2):  # writing into a directory that exists is fine
        assert main(["graph", "--format", "asyncapi", "--out", str(out), "--store", str(store)]) == 0
    text = (out / "order-service.asyncapi.json").read_text(encoding="utf-8")
    assert text.startswith('{\n  "asyncapi": "3.0.0"')  # indented by 2 for people and diffs
    assert capsys.readouterr().out.startswith('{\n  "')  # the written files, indented too


def test_a_trace_still_waiting_on_a_lagging_group_is_in_flight(tmp_path, capsys):
    now = pd.Timestamp.now(tz="UTC").floor("s")
    store = Store(tmp_path)
    ev = {"observed_at": now, "source": "kafka", "broker": "kafka", "topic": "orders", "partition": 0,
          "offset": "5", "at": now - pd.Timedelta(seconds=120), "event_type": "OrderPlaced", "event_id": "e5",
          "service": "order-service", "correlation_id": "o-1", "trace_id": "c" * 32, "dead_letter": False}
    store.append("events", schemas.conform("events", [ev]))
    lag_row = {"source": "kafka", "broker": "kafka", "group": "billing", "topic": "orders", "partition": 0,
               "end": 6, "lag_seconds": 5.0, "group_state": "Stable", "members": 1}
    Recorder(store).record({"lag": schemas.conform("lag", [
        dict(lag_row, sampled_at=now - pd.Timedelta(seconds=10), committed=3, lag=3),
        dict(lag_row, sampled_at=now, committed=4, lag=2)])})  # billing has not read offset 5 yet
    assert main(["trace", "o-1", "--json", "--store", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == "in_flight"


def test_alerts_table_shows_values_and_thresholds_for_people(tmp_path, capsys):
    store = _store(tmp_path / "store", 150.0)
    config = _config(tmp_path, CRITICAL)
    assert main(["--config", config, "alerts", "--store", str(store)]) == 0
    out = capsys.readouterr()
    header, row = out.out.splitlines()[:2]
    assert header.split() == ["severity", "rule", "subject", "value", "threshold", "since", "firing", "since"]
    assert row.split()[:9] == ["critical", "slow", "kafka:billing/orders", "2", "min", "30", "s", "30", "s"]
    assert "is `eventscope collect` running?" not in out.err  # the samples are fresh


def test_alerts_say_when_the_newest_sample_is_old(tmp_path, capsys):
    root = tmp_path / "store"
    old = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=20)
    Recorder(Store(root)).record({"health": schemas.conform("health", [
        {"sampled_at": old, "source": "kafka", "collector": "kafka.offsets", "ok": True, "error": "",
         "duration_ms": 1.0, "rows": 1, "last_success": old}])})
    assert main(["alerts", "--json", "--store", str(root)]) == 0
    err = capsys.readouterr().err
    assert f"the newest sample in {root} is 20 min old" in err and "is `eventscope collect` running?" in err


def test_a_status_alert_shows_its_statuses_as_the_threshold(tmp_path, capsys):
    now = pd.Timestamp.now(tz="UTC").floor("s")
    recorder = Recorder(Store(tmp_path / "store"))
    for i in range(4):  # committed offset never moves while the end does: STALL
        at = now - pd.Timedelta(seconds=30 * (3 - i))
        recorder.record({"lag": schemas.conform("lag", [
            {"sampled_at": at, "source": "kafka", "broker": "kafka", "group": "billing", "topic": "orders",
             "partition": 0, "committed": 100, "end": 110 + 10 * i, "lag": 10 + 10 * i, "lag_seconds": 5.0,
             "group_state": "Stable", "members": 1}])})
    config = _config(tmp_path, 'name = "stuck"\nmetric = "lag_status"\ncritical = ["STALL", "STOP"]\n')
    assert main(["--config", config, "alerts", "--store", str(tmp_path / "store")]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[:5] == ["critical", "stuck", "kafka:billing/orders", "STALL", "STALL/STOP"]


def test_collect_for_a_while_or_until_interrupted_exits_0(tmp_path, capsys, monkeypatch):
    import eventscope.runner as runner_module
    for name in ("EVENTSCOPE_KAFKA_BOOTSTRAP", "EVENTSCOPE_REDIS_URL", "EVENTSCOPE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    seen = []

    def run(self, duration_s=None, parent=None):
        seen.append((duration_s, parent, self.interval_s))
        if duration_s is None:
            raise KeyboardInterrupt  # Ctrl-C
    monkeypatch.setattr(runner_module.Runner, "run", run)
    store = str(tmp_path / "s")
    assert main(["collect", "--duration", "2.5", "--interval", "7", "--parent", "4242", "--store", store]) == 0
    assert main(["collect", "--store", store]) == 0
    assert seen[0] == (2.5, 4242, 7.0) and seen[1][:2] == (None, None)
    from eventscope.runner import StoreLock
    lock = StoreLock(tmp_path / "s")
    assert lock.acquire()  # released after an interrupt too
    lock.release()
