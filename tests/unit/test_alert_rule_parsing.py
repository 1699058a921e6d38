"""``[[alerts.rules]]`` tables by example: defaults, every error message, thresholds, clear
(hysteresis), silencing, matching, and the TOML a rule writes back (``analysis.rules``)."""
from __future__ import annotations

import tomllib

import pytest

from eventscope.analysis.rules import Rule, RuleError, default_rules, effective_rules, parse_rule, select
from eventscope.config import AlertsConfig


def rule(**raw):
    return parse_rule(raw, "alerts.rules[0]", 60.0, 0.8)


def test_defaults_name_match_for_and_clear():
    r = rule(metric="lag", warning=100)
    assert (r.name, r.match, r.for_s, r.critical, r.clear) == ("lag", ("*",), 60.0, None, 80.0)
    assert rule(metric="lag", warning=100, critical=300).clear == 80.0  # ratio x the lowest threshold
    assert rule(metric="lag", critical=300).clear == 240.0
    assert rule(metric="lag", warning=3, clear=1).clear == 1.0
    assert rule(metric="lag", warning=3, clear=0).clear == 0.0
    assert rule(metric="lag", warning=3, clear=3).clear == 3.0
    assert rule(metric="lag", warning=1 / 3).clear == round(0.8 / 3, 6)
    assert rule(metric="lag", for_s=0).for_s == 0.0
    assert rule(metric="lag").silent and rule(metric="lag").clear is None
    assert rule(metric="lag", match="orders*").match == ("orders*",)
    assert rule(metric="lag", name="mine").name == "mine"


@pytest.mark.parametrize("raw, message", [
    ({"metric": "lag", "colour": 1}, "unknown config key alerts.rules[0].colour"),
    ({"metric": "latency"}, "alerts.rules[0].metric: expected one of lag, lag_seconds, lag_status, dlq_depth, "
                            "dlq_growth_per_min, stuck_entries, collector_stale_s, got 'latency'"),
    ({}, "alerts.rules[0].metric: expected one of lag, lag_seconds, lag_status, dlq_depth, "
         "dlq_growth_per_min, stuck_entries, collector_stale_s, got None"),
    ({"metric": "lag", "warning": "high"}, "alerts.rules[0].warning: expected a number, got 'high'"),
    ({"metric": "lag", "warning": True}, "alerts.rules[0].warning: expected a number, got True"),
    ({"metric": "lag", "warning": 0}, "alerts.rules[0].warning must be > 0"),
    ({"metric": "lag", "critical": -1}, "alerts.rules[0].critical must be > 0"),
    ({"metric": "lag", "for_s": -1}, "alerts.rules[0].for_s must be >= 0"),
    ({"metric": "lag", "warning": 10, "critical": 5}, "alerts.rules[0].critical must be >= alerts.rules[0].warning"),
    ({"metric": "lag", "warning": 10, "clear": 11}, "alerts.rules[0].clear must be between 0 and the lowest threshold"),
    ({"metric": "lag", "warning": 10, "clear": -1}, "alerts.rules[0].clear must be between 0 and the lowest threshold"),
    ({"metric": "lag", "name": ""}, "alerts.rules[0].name: expected a non-empty string"),
    ({"metric": "lag", "name": 3}, "alerts.rules[0].name: expected a non-empty string"),
    ({"metric": "lag_status", "critical": ["STALL", "SLOW"]},
     "alerts.rules[0].critical: expected statuses from OK, WARN, ERR, STOP, STALL, REWIND, UNKNOWN"),
    ({"metric": "lag_status", "warning": 3},
     "alerts.rules[0].warning: expected statuses from OK, WARN, ERR, STOP, STALL, REWIND, UNKNOWN"),
])
def test_every_error_names_the_key(raw, message):
    with pytest.raises(RuleError) as err:
        parse_rule(raw, "alerts.rules[0]", 60.0, 0.8)
    assert str(err.value) == message


def test_a_rule_must_be_a_table():
    with pytest.raises(RuleError, match=r"^alerts.rules\[0\]: must be a table$"):
        parse_rule(["lag"], "alerts.rules[0]", 60.0, 0.8)


def test_warning_equal_to_critical_is_allowed():
    r = rule(metric="lag", warning=10, critical=10)
    assert r.level(10) == "critical" and r.level(9.99) is None


def test_levels_are_inclusive_and_unknown_never_fires():
    r = rule(metric="lag_seconds", warning=60, critical=300)
    assert [r.level(v) for v in (59.9, 60, 299, 300, 1e9)] == [None, "warning", "warning", "critical", "critical"]
    assert r.level(None) is None and r.level(float("nan")) is None


def test_clear_is_strictly_below_and_unknown_is_not_clear():
    r = rule(metric="lag_seconds", warning=60, critical=300)
    assert r.clear_threshold == 48.0
    assert r.cleared(47.9) and not r.cleared(48.0) and not r.cleared(None) and not r.cleared(float("nan"))


def test_status_rules_fire_on_their_statuses():
    r = rule(metric="lag_status", warning="WARN", critical=["STALL", "STOP"])
    assert r.warning == ("WARN",) and r.critical == ("STALL", "STOP") and r.clear is None
    assert r.level(None, "STOP") == "critical" and r.level(None, "WARN") == "warning"
    assert r.level(None, "OK") is None and r.level(None, None) is None
    assert r.cleared(None, "OK") and not r.cleared(None, "STALL") and not r.cleared(None, None)
    assert r.clear_threshold is None
    assert rule(metric="lag_status", critical=["ERR"], clear=5).clear is None


def test_match_tries_every_name_and_skips_unknown_ones():
    r = rule(metric="lag", warning=1, match=["billing-*", "*.DLT"])
    assert r.matches(["kafka:billing-eu/orders", "billing-eu", "orders"])
    assert r.matches([None, "payments.DLT"])
    assert not r.matches(["kafka:g/t", "g", "t", None])
    assert not r.matches(["Billing-eu"])


def test_the_last_matching_rule_of_the_metric_applies():
    general = rule(metric="lag", warning=100, name="general")
    narrow = rule(metric="lag", warning=5, match="billing", name="narrow")
    other = rule(metric="lag_seconds", warning=1, name="other")
    assert select([general, narrow, other], "lag", ["billing"]).name == "narrow"
    assert select([general, narrow, other], "lag", ["orders"]).name == "general"
    assert select([narrow, general], "lag", ["billing"]).name == "general"
    assert select([general], "dlq_depth", ["x"]) is None


def test_to_toml_round_trips():
    for r in (rule(metric="lag", warning=100, critical=250.5, name='quote " me', match=["a*", "b"]),
              rule(metric="lag_status", critical=["STALL", "STOP"], for_s=0),
              rule(metric="dlq_depth", critical=7, clear=2)):
        text = r.to_toml()
        assert text.startswith("[[alerts.rules]]\n")
        table = tomllib.loads(text)["alerts"]["rules"][0]
        assert parse_rule(table, "x", 60.0, 0.8) == r
    assert rule(metric="lag", warning=100).to_toml() == (
        '[[alerts.rules]]\nname = "lag"\nmetric = "lag"\nmatch = ["*"]\nwarning = 100\nfor_s = 60\nclear = 80')
    assert "clear" not in rule(metric="lag_status", critical=["STOP"]).to_toml()


def test_threshold_as_shown():
    assert rule(metric="lag_status", critical=["STALL", "STOP"]).threshold("critical") == "STALL,STOP"
    assert rule(metric="lag", warning=5).threshold("warning") == 5.0
    assert rule(metric="lag", warning=5).threshold("critical") is None


def test_built_in_rules_follow_the_config():
    cfg = AlertsConfig(lag_seconds_warn=30.0, lag_seconds_crit=90.0, dlq_depth_warn=2, dlq_depth_crit=20,
                       for_s=15.0, clear_ratio=0.5)
    rules = {r.name: r for r in default_rules(cfg)}
    assert list(rules) == ["lag_seconds", "group_stall", "lag_messages", "dlq_depth", "dlq_growth",
                           "stuck_entries", "collector_stale"]
    assert (rules["lag_seconds"].warning, rules["lag_seconds"].critical, rules["lag_seconds"].clear) == (30, 90, 15)
    assert rules["group_stall"].critical == ("STALL", "STOP") and rules["group_stall"].metric == "lag_status"
    assert rules["lag_messages"].silent and rules["lag_messages"].metric == "lag"
    assert (rules["dlq_depth"].warning, rules["dlq_depth"].critical) == (2, 20)
    assert (rules["dlq_growth"].warning, rules["dlq_growth"].critical) == (10, 100)
    assert (rules["stuck_entries"].warning, rules["stuck_entries"].critical) == (1, 100)
    assert (rules["collector_stale"].warning, rules["collector_stale"].critical) == (120, 600)
    assert {r.for_s for r in rules.values()} == {15.0}
    mine = rule(metric="lag", warning=1)
    with_defaults = AlertsConfig(rules=[mine])
    assert effective_rules(with_defaults)[-1] == mine and len(effective_rules(with_defaults)) == 8
    assert effective_rules(AlertsConfig(rules=[mine], defaults=False)) == [mine]


def test_rule_objects_are_values():
    assert Rule(name="a", metric="lag") == Rule(name="a", metric="lag")
    assert Rule(name="a", metric="lag").for_s == 60.0 and Rule(name="a", metric="lag").match == ("*",)


def test_to_toml_writes_no_clear_for_silent_or_status_rules():
    assert rule(metric="lag").to_toml().splitlines()[-1] == "for_s = 60"
    status = Rule(name="s", metric="lag_status", critical=("STOP",), clear=5.0)  # clear means nothing here
    assert "clear" not in status.to_toml() and 'critical = ["STOP"]' in status.to_toml()
