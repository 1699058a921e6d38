"""Alert rules and the state machine (pure): for, hysteresis, no flapping, overrides, config."""
import pandas as pd
import pytest

from eventscope.analysis import alert_state, alerts
from eventscope.analysis.rules import Rule, parse_rule, redact_webhook_url, select
from eventscope.config import AlertsConfig, ConfigError, load_config
from tests import alert_reference

T0 = pd.Timestamp("2026-11-28T10:00:00Z")
LAG = Rule(name="lag_seconds", metric="lag_seconds", warning=60.0, critical=300.0, for_s=30.0, clear=40.0)


def obs(value, subject="kafka:g/t", metric="lag_seconds", detail=""):
    return pd.DataFrame([{"metric": metric, "subject": subject, "names": (subject, "g", "t"),
                          "value": value, "detail": detail}], columns=alert_state.OBSERVATION_COLUMNS)


def drive(values, rules=(LAG,), every_s=10, metric="lag_seconds"):
    """Feed one value per step; returns (state, transitions as (seconds, transition, severity))."""
    state, seen = {}, []
    for i, v in enumerate(values):
        detail = v if isinstance(v, str) else ""
        value = None if isinstance(v, str) else v
        state, out = alert_state.step(state, obs(value, metric=metric, detail=detail), list(rules),
                                      T0 + pd.Timedelta(seconds=every_s * i))
        seen += [(every_s * i, t["transition"], t["severity"]) for t in out]
    return state, seen


def test_fires_only_after_for_and_resolves_below_clear():
    state, seen = drive([10, 70, 70, 70, 70, 50, 50, 30])
    assert seen == [(10, "pending", "warning"), (40, "firing", "warning"), (70, "resolved", "warning")]
    assert state == {}


def test_a_dip_during_pending_restarts_the_for_clock():
    _, seen = drive([70, 70, 59, 70, 70, 70])
    assert seen == [(0, "pending", "warning"), (20, "cancelled", "warning"), (30, "pending", "warning")]


def test_hovering_at_the_line_does_not_flap():
    # fired, then oscillating around the threshold but above `clear`: one firing, nothing else
    values = [70, 70, 70, 70] + [59, 61] * 10
    _, seen = drive(values)
    assert [t for _, t, _ in seen] == ["pending", "firing"]


def test_escalates_once_and_never_downgrades_until_resolved():
    _, seen = drive([70, 70, 70, 70, 400, 100, 400, 10])
    assert [(t, s) for _, t, s in seen] == [("pending", "warning"), ("firing", "warning"),
                                            ("escalated", "critical"), ("resolved", "critical")]


def test_unknown_value_neither_fires_nor_resolves():
    _, seen = drive([70, 70, 70, 70, float("nan"), float("nan"), 70])
    assert [t for _, t, _ in seen] == ["pending", "firing"]


def test_status_rule_and_episode_is_stable():
    stall = Rule(name="group_stall", metric="lag_status", critical=("STALL", "STOP"), for_s=15)
    state, seen = drive(["STALL", "STALL", "STOP", "OK"], rules=(stall,), metric="lag_status")
    assert [(t, s) for _, t, s in seen] == [("pending", "critical"), ("firing", "critical"),
                                            ("resolved", "critical")]
    _, again = drive(["STALL", "STALL", "STOP", "OK"], rules=(stall,), metric="lag_status")
    assert seen == again


def test_history_round_trip_restores_state():
    state = {}
    rows = []
    for i, v in enumerate([70, 70, 70, 70]):
        state, out = alert_state.step(state, obs(v), [LAG], T0 + pd.Timedelta(seconds=10 * i))
        rows += out
    restored = alert_state.from_history(alert_state.transitions_frame(rows))
    assert restored.keys() == state.keys()
    key = next(iter(state))
    assert restored[key].episode == state[key].episode and restored[key].state == "firing"
    # the restored state continues exactly as the live one would
    _, out = alert_state.step(restored, obs(10), [LAG], T0 + pd.Timedelta(seconds=50))
    assert [t["transition"] for t in out] == ["resolved"]


def test_history_restores_the_live_state_of_many_subjects():
    """Restoring from history takes each alert's newest transition: it must give the state
    stepping gave, whatever mix of pending, firing, escalated, cancelled and resolved runs
    the subjects went through. Not kept between transitions, and brought back by the next
    observation: the value and detail seen since, and a pending alert's current severity."""
    import numpy as np
    rng = np.random.default_rng(7)
    stall = Rule(name="group_stall", metric="lag_status", critical=("STALL",), for_s=20)
    subjects = [f"kafka:g{i}/t" for i in range(40)]
    state, rows = {}, []
    for i in range(60):
        values = rng.choice([10.0, 50.0, 70.0, 350.0, float("nan")], size=len(subjects))
        statuses = rng.choice(["OK", "STALL"], size=len(subjects), p=[0.6, 0.4])
        frame = pd.concat([obs(v, subject=s) for v, s in zip(values, subjects)]
                          + [obs(0.0, subject=s, metric="lag_status", detail=d) for d, s in zip(statuses, subjects)],
                          ignore_index=True)
        state, out = alert_state.step(state, frame, [LAG, stall], T0 + pd.Timedelta(seconds=10 * i))
        rows += out
    history = alert_state.transitions_frame(rows)
    assert set(history["transition"]) == {"pending", "firing", "escalated", "cancelled", "resolved"}
    assert {s.state for s in state.values()} == {"pending", "firing"}
    restored = alert_state.from_history(history.sample(frac=1.0, random_state=1))

    def settled(states: dict) -> dict:
        return {k: (a.state, a.since, a.fired_at, a.clear, a.episode,
                    a.severity if a.state == "firing" else None) for k, a in states.items()}
    assert restored.keys() == state.keys() and settled(restored) == settled(state)


def test_overrides_by_glob_and_silencing():
    default = Rule(name="lag_seconds", metric="lag_seconds", warning=60.0)
    slow_ok = Rule(name="analytics_lag", metric="lag_seconds", match=("analytics-*",), warning=600.0)
    quiet = Rule(name="mute", metric="lag_seconds", match=("kafka:batch-*",))
    rules = [default, slow_ok, quiet]
    assert select(rules, "lag_seconds", ("kafka:payments/orders", "payments", "orders")).name == "lag_seconds"
    assert select(rules, "lag_seconds", ("kafka:analytics-x/orders", "analytics-x", "orders")).name == \
        "analytics_lag"
    assert select(rules, "lag_seconds", ("kafka:batch-1/orders", "batch-1", "orders")).silent
    state, out = alert_state.step({}, obs(100.0, subject="kafka:batch-1/orders"), rules, T0)
    assert state == {} and out == []


def test_rule_parsing_defaults_and_errors():
    rule = parse_rule({"metric": "dlq_depth", "warning": 10, "match": "payments*"}, "alerts.rules[0]",
                      default_for_s=30, clear_ratio=0.5)
    assert (rule.name, rule.for_s, rule.clear, rule.match) == ("dlq_depth", 30.0, 5.0, ("payments*",))
    assert "warning = 10" in rule.to_toml()
    import tomllib
    odd = parse_rule({"metric": "lag", "warning": 5, "match": ['a"b\\c*', "x"]}, "r", 60, 0.8)
    again = tomllib.loads(odd.to_toml())["alerts"]["rules"][0]
    assert parse_rule(again, "r", 60, 0.8) == odd  # the snippet round-trips, whatever the globs hold


@pytest.mark.parametrize("toml, expected", [
    ('[[alerts.rules]]\nmetric = "lag"\ntreshold = 3\n', "unknown config key alerts.rules[0].treshold"),
    ('[[alerts.rules]]\nmetric = "lagg"\n', "alerts.rules[0].metric: expected one of"),
    ('[[alerts.rules]]\nmetric = "lag"\nwarning = "x"\n', "alerts.rules[0].warning: expected a number"),
    ('[[alerts.rules]]\nmetric = "lag"\nwarning = 10\ncritical = 5\n', "critical must be >="),
    ('[[alerts.rules]]\nmetric = "lag_status"\ncritical = ["STUCK"]\n', "expected statuses"),
    ('[[alerts.rules]]\nmetric = "lag"\nwarning = 10\nclear = 20\n', "clear must be between"),
    ('[[alerts.webhooks]]\nurl = "ftp://x"\n', "alerts.webhooks[0].url must start with http"),
    ('[[alerts.webhooks]]\nurl = "http://x/y"\nformat = "teams"\n', "format must be 'slack' or 'generic'"),
    ('[[alerts.webhooks]]\nurl = "http://x/y"\nheaders = 1\n', "unknown config key alerts.webhooks[0].headers"),
])
def test_bad_rules_give_one_line_errors(tmp_path, toml, expected):
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(str(path), env={})
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_rules_and_webhooks_from_toml_and_env(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[alerts]\nfor_s = 5\n[[alerts.rules]]\nmetric = "lag"\nwarning = 100\n'
                    '[[alerts.webhooks]]\nurl = "https://hooks.slack.com/services/T1/B2/sekrit"\n')
    cfg = load_config(str(path), env={})
    assert cfg.alerts.rules[0].for_s == 5.0 and cfg.alerts.rules[0].clear == 80.0
    assert cfg.alerts.webhooks[0].format == "slack"
    assert "sekrit" not in repr(cfg)
    env = {"EVENTSCOPE_ALERTS_RULES": '[{"metric": "dlq_depth", "critical": 3}]',
           "EVENTSCOPE_ALERTS_WEBHOOK_URL": "http://u:pw@127.0.0.1:9/hook/abc?token=zzz"}
    cfg = load_config(None, env=env)
    assert cfg.alerts.rules[0].critical == 3.0
    assert [w.format for w in cfg.alerts.all_webhooks()] == ["generic"]
    shown = repr(cfg) + repr(cfg.alerts.all_webhooks())
    assert "pw" not in shown and "zzz" not in shown and "abc" not in shown


def test_webhook_urls_are_redacted():
    assert redact_webhook_url("https://hooks.slack.com/services/T0/B0/XYZ") == \
        "https://hooks.slack.com/services/***"
    assert redact_webhook_url("http://user:pw@h:8080/a/b?k=v") == "http://***@h:8080/a/***?***"
    assert redact_webhook_url("http://127.0.0.1:5000/hook") == "http://127.0.0.1:5000/hook"


def test_every_metric_is_observed_from_frames():
    from eventscope import schemas
    at = T0 + pd.Timedelta(seconds=20)
    lag = schemas.conform("lag", [
        {"sampled_at": T0 + pd.Timedelta(seconds=10 * i), "source": "redis", "broker": "redis",
         "group": "g", "topic": "s", "partition": 0, "committed": 5, "end": 5 + 10 * i, "lag": 10 * i,
         "lag_seconds": 30.0 * i, "members": 1} for i in range(3)])
    dlq = schemas.conform("dlq", [{"sampled_at": T0 + pd.Timedelta(seconds=60 * i - 100), "source": "redis",
                                   "broker": "redis", "dlq": "s.dlq", "depth": 4 * i} for i in range(3)])
    stuck = schemas.conform("stuck", [{"sampled_at": at, "source": "redis", "broker": "redis", "topic": "s",
                                       "group": "g", "entry_id": f"1-{i}", "idle_ms": 1, "deliveries": 5}
                                      for i in range(2)])
    health = schemas.conform("health", [{"sampled_at": at, "source": "redis", "collector": "redis.streams",
                                         "ok": False, "error": "boom", "last_success": T0}])
    o = alert_reference.observe(lag, dlq, stuck, health, at=at).set_index(["metric", "subject"])
    assert o.loc[("lag", "redis:g/s"), "value"] == 20
    assert o.loc[("lag_seconds", "redis:g/s"), "value"] == 60.0
    assert o.loc[("lag_status", "redis:g/s"), "detail"] == "STALL"
    assert o.loc[("dlq_depth", "redis:s.dlq"), "value"] == 8
    assert o.loc[("dlq_growth_per_min", "redis:s.dlq"), "value"] == 4.0
    assert o.loc[("stuck_entries", "redis:g/s"), "value"] == 2
    assert o.loc[("collector_stale_s", "redis/redis.streams"), "value"] == 20.0
    rules = AlertsConfig().all_rules()
    table = alerts.rule_table(rules, o.reset_index(), {})
    assert set(table["rule"]) >= {"lag_seconds", "group_stall", "dlq_depth", "dlq_growth",
                                  "stuck_entries", "collector_stale", "lag_messages"}


def test_readme_lists_every_exported_metric_and_metric_kind():
    from pathlib import Path

    from eventscope.analysis.rules import METRICS
    from eventscope.exporter import METRICS as EXPORTED
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name, (_, labels) in EXPORTED.items():
        shown = f"| `{name}` | `{', '.join(labels)}`" if labels else f"| `{name}` |"
        assert shown in readme, name
    for metric in METRICS:
        assert f"| `{metric}` |" in readme, metric


def test_notifier_dedupes_and_never_blocks(tmp_path):
    from eventscope.analysis.rules import Webhook
    from eventscope.notify import Notifier
    hook = Webhook(url="http://127.0.0.1:9/unreachable/token")  # nothing listens: every attempt fails
    notifier = Notifier([hook], state_dir=tmp_path, retries=0, backoff_s=0, timeout_s=1, queue_size=2)
    t = {"transition": "firing", "rule": "r", "metric": "lag", "severity": "critical", "subject": "kafka:g/t",
         "episode": "r|kafka:g/t|x", "value": 1.0}
    many = [dict(t, episode=f"r|kafka:g/t|{i}") for i in range(50)]
    assert notifier.submit([t, t]) == 1  # the same message twice is queued once
    notifier.submit(many)  # a full queue drops (and logs) instead of waiting
    assert notifier.flush(30)
    assert notifier.sent == 0 and notifier.failed >= 1
    assert not (tmp_path / "alerts-delivered.json").exists()
    notifier.close()


def test_a_selector_answers_what_select_answers_and_asks_once_per_subject(monkeypatch):
    from eventscope.analysis import rules as rules_module

    rules = [Rule(name="all", metric="lag", warning=10.0), Rule(name="orders", metric="lag", match=("orders-*",),
                                                                warning=5.0),
             Rule(name="dlq", metric="dlq_depth", warning=1.0)]
    asked = []
    real = rules_module.select
    monkeypatch.setattr(rules_module, "select", lambda *a: asked.append(a[1:]) or real(*a))
    selector = rules_module.Selector(rules)
    cases = [("lag", ("k:orders-a/t", "orders-a", "t", "k")), ("lag", ("k:billing/t", "billing", "t", "k")),
             ("dlq_depth", ("k:x.DLT", "x.DLT", None, "k")), ("stuck_entries", ("r:g/s", "g", "s", "r"))]
    for metric, names in cases * 3:
        assert selector(metric, names) == real(rules, metric, names)
    assert [selector(m, n).name if selector(m, n) else None for m, n in cases] == ["orders", "all", "dlq", None]
    assert asked == cases  # each (metric, names) asked once
    assert selector("lag", ["k:orders-b/t", "orders-b"]).name == "orders"  # names that cannot be a key
    selector.MAX_ENTRIES = 2
    selector("lag", ("a",))
    assert len(selector._chosen) <= 2 and selector("lag", ("a",)).name == "all"
