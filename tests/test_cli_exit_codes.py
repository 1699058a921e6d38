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
