"""The CLI contract: field names and types of every --json command, exit codes."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from eventscope import schemas
from eventscope.recorder import Recorder
from eventscope.store import Store



def run(store, *args):
    proc = subprocess.run([sys.executable, "-m", "eventscope.cli", *args, "--store", str(store)],
                          capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    return proc


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    global NOW
    NOW = pd.Timestamp.now(tz="UTC").floor("s")
    root = tmp_path_factory.mktemp("store")
    s = Store(root)
    recorder = Recorder(s)  # the collectors' write path: raw rows, snapshots and rollups
    for i in range(4):
        at = NOW - pd.Timedelta(seconds=30 * (3 - i))
        recorder.record({"lag": schemas.conform("lag", [
            {"sampled_at": at, "source": "kafka", "broker": "kafka", "group": "payment-service",
             "topic": "orders", "partition": 0, "committed": 10, "end": 10 + 100 * i, "lag": 100 * i,
             "lag_seconds": 120.0 * i, "group_state": "Stable", "members": 1},
            {"sampled_at": at, "source": "redis", "broker": "redis", "group": "email-service",
             "topic": "shipments", "partition": 0, "committed": None, "end": 5, "lag": None,
             "lag_seconds": None, "group_state": "n/a", "members": 0}]),
            "dlq": schemas.conform("dlq", [
            {"sampled_at": at, "source": "kafka", "broker": "kafka", "dlq": "payments.DLT",
             "source_topic": "payments", "depth": 50 * i, "oldest_at": NOW - pd.Timedelta(minutes=5),
             "reasons": json.dumps({"card declined": 3})}])})
    ev = lambda sec, topic, etype, svc, off, dead=False: {  # noqa: E731
        "observed_at": NOW, "source": "kafka", "broker": "kafka", "topic": topic, "partition": 0,
        "offset": str(off), "at": NOW - pd.Timedelta(minutes=2) + pd.Timedelta(seconds=sec),
        "event_type": etype, "event_id": f"evt_{off}_{topic}", "service": svc, "correlation_id": "order-42",
        "trace_id": "f" * 32, "dead_letter": dead, "dlq_reason": "card declined" if dead else None}
    s.append("events", schemas.conform("events", [
        ev(0, "orders", "OrderPlaced", "order-service", 7),
        ev(0.5, "payments", "PaymentCharged", "payment-service", 3),
        ev(1.0, "payments.DLT", "PaymentCharged", "payment-service", 0, dead=True)]))
    return root


def test_lag_json_contract(store):
    proc = run(store, "lag", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 2
    for row in rows:
        assert {"broker", "group", "topic", "partition", "committed", "end", "lag", "lag_seconds",
                "status", "sampled_at"} <= set(row)
        assert row["broker"] in ("kafka", "redis")
        assert row["status"] in ("OK", "WARN", "ERR", "STOP", "STALL", "REWIND", "UNKNOWN")
        assert row["sampled_at"].endswith("Z")
    kafka = next(r for r in rows if r["broker"] == "kafka")
    assert (kafka["lag"], kafka["status"]) == (300, "STALL")
    redis = next(r for r in rows if r["broker"] == "redis")
    assert redis["lag"] is None and redis["status"] == "UNKNOWN" and redis["partition"] == 0


def test_dlq_json_contract(store):
    rows = json.loads(run(store, "dlq", "--json").stdout)
    assert rows == [{"broker": "kafka", "kind": "kafka", "dlq": "payments.DLT", "source_topic": "payments", "depth": 150,
                     "growth_per_min": 100.0, "oldest_age_seconds": rows[0]["oldest_age_seconds"],
                     "reasons": [{"reason": "card declined", "count": 3}], "unread": 0,
                     "unprocessed": None, "pre_dlq_pressure": None}]
    age_now = (pd.Timestamp.now(tz="UTC") - (NOW - pd.Timedelta(minutes=5))).total_seconds()
    assert 300 <= rows[0]["oldest_age_seconds"] <= age_now + 1


def test_trace_json_contract_and_unknown_id(store):
    proc = run(store, "trace", "order-42", "--json")
    doc = json.loads(proc.stdout)
    assert set(doc) >= {"correlation_id", "outcome", "events", "hops"}
    assert doc["outcome"] == "dead_lettered"
    assert [e["event_type"] for e in doc["events"]] == ["OrderPlaced", "PaymentCharged", "PaymentCharged"]
    for e in doc["events"]:
        assert {"at", "broker", "topic", "partition", "offset", "event_type", "event_id", "source",
                "trace_id", "dead_letter"} <= set(e)
        assert isinstance(e["offset"], str)
    contract = ("from_topic", "to_topic", "service", "latency_ms")
    assert [tuple(h[k] for k in contract) for h in doc["hops"]] == [
        ("orders", "payments", "payment-service", 500.0), ("payments", "payments.DLT", "dead-letter", 500.0)]
    assert doc["hops"][1]["dead_letter"] and not doc["hops"][0]["dead_letter"]
    # Kafka commits after processing: no broker/service split is claimed
    assert doc["hops"][0]["broker_wait_ms"] is None and doc["hops"][0]["split"] is None
    assert json.loads(run(store, "trace", "f" * 32, "--json").stdout)["correlation_id"] == "order-42"
    missing = run(store, "trace", "no-such-id", "--json")
    assert missing.returncode == 1 and missing.stdout == "" and "no-such-id" in missing.stderr


def test_alerts_json_and_exit_code(store):
    proc = run(store, "alerts", "--json", "--exit-code")
    rows = json.loads(proc.stdout)
    assert proc.returncode == 1
    for row in rows:
        assert set(row) >= {"rule", "severity", "subject", "value", "threshold", "since"}
    lag_alert = next(r for r in rows if r["rule"] == "lag_seconds")
    assert (lag_alert["severity"], lag_alert["value"]) == ("critical", 360.0)
    assert {r["rule"] for r in rows} >= {"lag_seconds", "dlq_depth", "group_stall"}
    # every row names its cluster and kind: the subject's BROKER part, the kind the store holds for it
    assert {(r["broker"], r["kind"]) for r in rows} == {("kafka", "kafka")}


def test_graph_json_contract(store):
    doc = json.loads(run(store, "graph", "--format", "json").stdout)
    assert set(doc) == {"nodes", "edges"}
    ids = {n["id"] for n in doc["nodes"]}
    assert {"service:order-service", "topic:kafka:orders", "dlq:kafka:payments.DLT"} <= ids
    for n in doc["nodes"]:
        assert n["kind"] in ("service", "topic", "group", "dlq")
    for e in doc["edges"]:
        assert e["kind"] in ("produces", "consumes", "dead_letters", "causes")
        assert {"source", "target", "kind", "events", "rate_per_s"} <= set(e)
    dot = run(store, "graph", "--format", "dot").stdout
    assert dot.lstrip().startswith("digraph")


def test_empty_store_answers_calmly(tmp_path):
    proc = run(tmp_path, "lag", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == []
    proc = run(tmp_path, "lag")
    assert "nothing yet" in proc.stdout


def test_graph_asyncapi_one_document_per_service(store, tmp_path):
    docs = json.loads(run(store, "graph", "--format", "asyncapi", "--json").stdout)
    # producers are services; a group that belongs to no producing service stands alone
    assert set(docs) == {"order-service", "payment-service", "email-service"}
    for doc in docs.values():
        assert doc["asyncapi"] == "3.0.0"
        for op in doc["operations"].values():  # every reference resolves inside the document
            channel = op["channel"]["$ref"].split("/")[-1]
            assert channel in doc["channels"]
            for ref in op["messages"]:
                assert ref["$ref"].split("/")[-1] in doc["channels"][channel]["messages"]
        for channel in doc["channels"].values():
            for ref in channel["messages"].values():
                assert ref["$ref"].split("/")[-1] in doc["components"]["messages"]
    order = docs["order-service"]
    assert order["channels"]["kafka.orders"]["address"] == "orders"
    assert set(order["channels"]["kafka.orders"]["messages"]) == {"OrderPlaced"}
    assert [op["action"] for op in order["operations"].values()] == ["send"]
    payment = docs["payment-service"]  # sends payments; receives orders (its group and its causes)
    actions = {(op["action"], op["channel"]["$ref"]) for op in payment["operations"].values()}
    assert actions == {("send", "#/channels/kafka.payments"), ("receive", "#/channels/kafka.orders")}
    assert set(payment["servers"]) == {"kafka"}

    one = run(store, "graph", "--format", "asyncapi", "--service", "payment-service")
    assert json.loads(one.stdout) == payment
    unknown = run(store, "graph", "--format", "asyncapi", "--service", "nobody")
    assert unknown.returncode == 1 and "payment-service" in unknown.stderr
    out = run(store, "graph", "--format", "asyncapi", "--out", str(tmp_path / "specs"))
    written = json.loads(out.stdout)
    assert sorted(p.rsplit("/", 1)[1] for p in written.values()) == [
        "email-service.asyncapi.json", "order-service.asyncapi.json", "payment-service.asyncapi.json"]
    assert json.loads((tmp_path / "specs" / "order-service.asyncapi.json").read_text()) == order

def test_table_output_never_sends_terminal_escapes(tmp_path):
    """A group named with escape sequences (retitle the window, turn the text red) prints as
    visible text in the table output; JSON escapes them itself."""
    evil = "pay\x1b]0;pwned\x07\x1b[31mred\x9b2J"
    now = pd.Timestamp.now(tz="UTC")
    Recorder(Store(tmp_path)).record({"lag": schemas.conform("lag", [
        {"sampled_at": now, "source": "kafka", "broker": "kafka", "group": evil, "topic": "orders",
         "partition": 0, "committed": 1, "end": 2, "lag": 1, "lag_seconds": 1.0, "group_state": "Stable",
         "members": 1}])})
    table = run(tmp_path, "lag")
    assert table.returncode == 0, table.stderr
    assert not any(c in table.stdout for c in "\x1b\x07\x9b")
    assert "pay\\x1b]0;pwned\\x07\\x1b[31mred\\x9b2J" in table.stdout
    as_json = run(tmp_path, "lag", "--json")
    assert json.loads(as_json.stdout)[0]["group"] == evil and "\x1b" not in as_json.stdout


# -- --host: a server beyond loopback warns that it has no authentication ------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "localhost", "LOCALHOST", "::1", "[::1]"])
def test_loopback_binds_need_no_warning(host):
    from eventscope.cli import exposure_warning, is_loopback
    assert is_loopback(host)
    assert exposure_warning("the dashboard", host, 8501) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.5", "fe80::1", "dashboard.example.com"])
def test_binds_beyond_loopback_warn(host):
    from eventscope.cli import exposure_warning, is_loopback
    assert not is_loopback(host)
    warning = exposure_warning("the dashboard", host, 8501)
    assert warning.startswith("eventscope: WARNING: the dashboard listens on")
    assert (f"[{host}]:8501" if ":" in host else f"{host}:8501") in warning
    assert "no authentication" in warning and "127.0.0.1" in warning
    assert "reverse proxy with authentication" in warning


class _Execed(Exception):
    """Raised in place of exec'ing Streamlit."""


def _dashboard(monkeypatch, tmp_path, *args) -> list[str]:
    """``eventscope dashboard ARGS`` up to the exec of Streamlit; returns its command."""
    from eventscope import cli

    def execve(path, argv, env):
        raise _Execed(argv)
    monkeypatch.setattr(cli.os, "execve", execve)
    monkeypatch.delenv("EVENTSCOPE_CONFIG", raising=False)
    with pytest.raises(_Execed) as execed:
        cli.main(["dashboard", "--store", str(tmp_path), *args])
    return execed.value.args[0]


def test_dashboard_on_all_interfaces_prints_the_warning(monkeypatch, tmp_path, capsys):
    command = _dashboard(monkeypatch, tmp_path, "--host", "0.0.0.0", "--port", "8765")
    assert command[command.index("--server.address") + 1] == "0.0.0.0"
    assert command[command.index("--server.port") + 1] == "8765"
    err = capsys.readouterr().err
    assert "WARNING: the dashboard listens on 0.0.0.0:8765" in err and "no authentication" in err


def test_dashboard_binds_loopback_by_default_without_a_warning(monkeypatch, tmp_path, capsys):
    command = _dashboard(monkeypatch, tmp_path)
    assert command[command.index("--server.address") + 1] == "127.0.0.1"
    assert "WARNING" not in capsys.readouterr().err


def test_exporter_on_all_interfaces_prints_the_warning(monkeypatch, tmp_path, capsys):
    from eventscope import cli, exporter
    served = {}
    monkeypatch.setattr(exporter, "serve", lambda store, config, host, port, timeout_s, stale_after_s:
                        served.update(host=host, port=port, timeout_s=timeout_s, stale_after_s=stale_after_s))
    monkeypatch.delenv("EVENTSCOPE_CONFIG", raising=False)
    assert cli.main(["exporter", "--store", str(tmp_path), "--host", "::", "--port", "9999"]) == 0
    assert served == {"host": "::", "port": 9999, "timeout_s": 10.0, "stale_after_s": 120.0}
    assert "WARNING: the Prometheus exporter listens on [::]:9999" in capsys.readouterr().err


def test_exporter_listens_where_the_config_says_by_default(monkeypatch, tmp_path, capsys):
    from eventscope import cli, exporter
    served = {}
    monkeypatch.setattr(exporter, "serve", lambda store, config, host, port, timeout_s, stale_after_s:
                        served.update(host=host, port=port, timeout_s=timeout_s, stale_after_s=stale_after_s))
    monkeypatch.delenv("EVENTSCOPE_CONFIG", raising=False)
    assert cli.main(["exporter", "--store", str(tmp_path)]) == 0
    assert served == {"host": "127.0.0.1", "port": exporter.DEFAULT_PORT, "timeout_s": 10.0, "stale_after_s": 120.0}
    assert "http://127.0.0.1:10087/metrics" in capsys.readouterr().err
    for name, value in (("PORT", "10123"), ("HOST", "::1"), ("TIMEOUT_S", "2.5"), ("STALE_AFTER_S", "30")):
        monkeypatch.setenv(f"EVENTSCOPE_EXPORTER_{name}", value)
    assert cli.main(["exporter", "--store", str(tmp_path)]) == 0
    assert served == {"host": "::1", "port": 10123, "timeout_s": 2.5, "stale_after_s": 30.0}
    monkeypatch.setenv("EVENTSCOPE_EXPORTER_PORT", "70000")
    assert cli.main(["exporter", "--store", str(tmp_path)]) != 0
    assert "exporter.port must be between 0 and 65535" in capsys.readouterr().err


def test_verbose_logs_at_info_level_with_time_level_and_logger(tmp_path):
    """``-v``: the root logger at INFO, each line ``DATE TIME,ms LEVEL LOGGER: message``;
    without it, warnings only. Read from a fresh interpreter: a test runner's own log
    handlers would make the CLI's logging setup a no-op in process."""
    probe = ("import logging, sys; from eventscope.cli import main; main(sys.argv[1:]); root = logging.getLogger(); "
             "print(logging.getLevelName(root.level), root.handlers[0].formatter._fmt)")
    config = tmp_path / "eventscope.toml"
    config.write_text("[collect]\ninterval_s = 0\n")  # refused: the command stops after setting up its logging

    def levels(*argv):
        done = subprocess.run([sys.executable, "-c", probe, "--config", str(config), *argv], capture_output=True,
                              text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
        assert "config error" in done.stderr, done.stderr
        return done.stdout.strip()
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    assert levels("collect", "-v") == f"INFO {fmt}"
    assert levels("collect", "--verbose") == f"INFO {fmt}"
    assert levels("collect") == f"WARNING {fmt}"
    assert levels("lag") == f"WARNING {fmt}"  # query commands have no -v
