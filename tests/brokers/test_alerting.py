"""Alerts on the real brokers: a stalled consumer fires after `for` and resolves on resume,
a DLQ burst fires, a webhook gets exactly one firing and one resolve (even when its first
attempt fails, and across a restart), the CLI gate exits 1, and /metrics parses."""
import json
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from eventscope.alerting import build_evaluator
from eventscope.config import load_config
from eventscope.runner import build_collectors, build_runner
from eventscope.store import Store
from eventscope.simulator import SimulatorConfig, run_simulation

pytestmark = pytest.mark.broker
FOR_S = 4.0
STALL_AT, RESUME_AT, BURST_AT = 1.0, 24.0, 6.0


class Receiver:
    """A webhook endpoint that fails its first request with HTTP 500."""

    def __init__(self):
        self.requests: list[tuple[int, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                code = 500 if not outer.requests else 200
                outer.requests.append((code, body))
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok" if code == 200 else b"try again")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/on-call?token=s3cret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> list[dict]:
        return [body for code, body in self.requests if code == 200]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, kafka_bootstrap):
    """Stall analytics at 1 s, resume at 24 s; payments start failing at 6 s. Collect every 0.5 s."""
    prefix = f"al{uuid.uuid4().hex[:5]}-"
    root = tmp_path_factory.mktemp("alert-store")
    receiver = Receiver()
    stalled = f"kafka:{prefix}analytics-service/{prefix}orders"
    rules = [{"name": "analytics_stalled", "metric": "lag_status", "match": stalled,
              "critical": ["STALL", "STOP"], "for_s": FOR_S},
             {"name": "payments_dlq", "metric": "dlq_depth", "match": f"{prefix}orders.DLT",
              "critical": 3, "for_s": 1}]
    env = {"EVENTSCOPE_KAFKA_BOOTSTRAP": kafka_bootstrap, "EVENTSCOPE_KAFKA_TOPICS": "^" + prefix,
           "EVENTSCOPE_STORE": str(root), "EVENTSCOPE_ALERTS_DEFAULTS": "false",
           "EVENTSCOPE_ALERTS_RULES": json.dumps(rules), "EVENTSCOPE_ALERTS_STALL_AFTER_S": "3",
           "EVENTSCOPE_ALERTS_NOTIFY_BACKOFF_S": "0.2",
           "EVENTSCOPE_ALERTS_WEBHOOKS": json.dumps([{"url": receiver.url, "format": "generic",
                                                      "match": [f"{prefix}analytics-service"]}])}
    cfg = load_config(env=env)
    sim = SimulatorConfig(rate=10, duration=30, seed=11, prefix=prefix, payment_failure_rate=0.0,
                          transient_failure_rate=0.0,
                          schedule=[(STALL_AT, {"stall": {"analytics-service"}}), (RESUME_AT, {"stall": set()}),
                                    (BURST_AT, {"payment_failure_rate": 0.9})])
    store = Store(root)
    runner = build_runner(cfg, store, build_collectors(cfg))  # as `eventscope collect` builds it
    runner.interval_s = 0.5
    evaluator = runner.evaluator
    sim_thread = threading.Thread(target=run_simulation, args=(sim,), kwargs={"kafka_bootstrap": kafka_bootstrap})
    started = pd.Timestamp.now(tz="UTC")
    sim_thread.start()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        runner.run_once()
        history = store.read("alerts")
        if sim_thread.is_alive() is False and (history["transition"] == "resolved").any():
            break
        time.sleep(0.5)
    sim_thread.join(30)
    evaluator.notifier.flush(30)
    runner.close()
    # a restart: a new evaluator rebuilds its state from the store and re-submits recent transitions
    again = build_evaluator(cfg, store)
    again.evaluate()
    again.notifier.flush(30)
    again.close()
    yield {"cfg": cfg, "store": store, "receiver": receiver, "started": started, "prefix": prefix,
           "root": root, "stalled": stalled}
    receiver.server.shutdown()


def test_stalled_consumer_fires_after_for_and_resolves_on_resume(scenario):
    h = scenario["store"].read("alerts")
    stall = h[h["rule"] == "analytics_stalled"]
    shown = stall[["at", "transition", "detail"]]
    # One episode fires and resolves. With stall_after_s = 3, a partition still working through
    # its backlog after the resume can look stuck for a moment: such a blip may go pending and
    # be cancelled, but must never fire.
    assert list(stall.loc[stall["transition"].isin(["firing", "resolved"]), "transition"]) == [
        "firing", "resolved"], shown
    assert set(stall["transition"]) <= {"pending", "firing", "resolved", "cancelled"}, shown
    firing, resolved = (stall[stall["transition"] == t].iloc[0] for t in ("firing", "resolved"))
    before = stall[stall["at"] <= firing["at"]]
    pending = before[before["transition"] == "pending"].iloc[-1]  # the pending this episode fired from
    assert list(before["transition"])[-2:] == ["pending", "firing"], shown
    assert firing["at"] - pending["at"] >= pd.Timedelta(seconds=FOR_S)
    assert firing["since"] == pending["at"] and firing["episode"] == resolved["episode"]
    assert pending["detail"] in ("STALL", "STOP")
    resume = scenario["started"] + pd.Timedelta(seconds=RESUME_AT)
    assert firing["at"] < resume < resolved["at"]
    assert resolved["detail"] not in ("STALL", "STOP")


def test_dlq_burst_fires_the_dlq_rule(scenario):
    h = scenario["store"].read("alerts")
    dlq = h[(h["rule"] == "payments_dlq") & (h["transition"] == "firing")]
    assert len(dlq) == 1 and dlq.iloc[0]["severity"] == "critical" and dlq.iloc[0]["value"] >= 3
    assert dlq.iloc[0]["since"] >= scenario["started"] + pd.Timedelta(seconds=BURST_AT)


def test_webhook_gets_exactly_one_firing_and_one_resolve_despite_a_failed_attempt(scenario):
    receiver = scenario["receiver"]
    assert receiver.requests[0][0] == 500  # the first attempt failed and was retried
    delivered = receiver.delivered()
    assert [(d["status"], d["rule"], d["subject"]) for d in delivered] == [
        ("firing", "analytics_stalled", scenario["stalled"]),
        ("resolved", "analytics_stalled", scenario["stalled"])]
    assert delivered[0]["episode"] == delivered[1]["episode"]
    assert delivered[0]["severity"] == "critical" and delivered[0]["detail"] in ("STALL", "STOP")


def test_cli_gate_and_webhook_secret_never_shown(scenario):
    proc = subprocess.run([sys.executable, "-m", "eventscope.cli", "alerts", "--json", "--exit-code",
                           "--store", str(scenario["root"])],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})
    rows = json.loads(proc.stdout)
    assert proc.returncode == 1, proc.stderr
    firing = {(r["rule"], r["severity"]) for r in rows}
    assert ("payments_dlq", "critical") in firing and not any(r == "analytics_stalled" for r, _ in firing)
    for row in rows:
        assert {"rule", "severity", "subject", "value", "threshold", "since"} <= set(row)
    shown = repr(scenario["cfg"]) + proc.stdout + proc.stderr
    assert "s3cret" not in shown and "on-call" not in shown


def test_metrics_endpoint_parses_with_kafka_lag_exporter_names(scenario):
    from eventscope.exporter import make_server_for
    server = make_server_for(scenario["store"], scenario["cfg"], port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10).read().decode()
    finally:
        server.shutdown()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    prefix = scenario["prefix"]
    lag = families["kafka_consumergroup_group_lag"].samples
    assert {s.labels["group"] for s in lag} >= {prefix + "analytics-service", prefix + "payment-service"}
    assert set(lag[0].labels) == {"cluster_name", "group", "topic", "partition", "member_host", "consumer_id",
                                  "client_id"}
    for name in ("kafka_consumergroup_group_lag_seconds", "kafka_consumergroup_group_max_lag",
                 "kafka_consumergroup_group_sum_lag", "kafka_partition_latest_offset"):
        assert families[name].samples, name
    depth = {s.labels["dlq"]: s.value for s in families["eventscope_dlq_depth"].samples}
    assert depth[prefix + "orders.DLT"] >= 3
    alert = [s for s in families["eventscope_alert_state"].samples if s.labels["rule"] == "payments_dlq"]
    assert alert and alert[0].labels["state"] == "firing" and alert[0].value == 1
    firing = {s.labels["severity"]: s.value for s in families["eventscope_alerts_firing"].samples}
    assert firing["critical"] >= 1
