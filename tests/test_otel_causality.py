"""Causes named by OpenTelemetry spans: the walk from a message's span to the message it was
made from, the OTLP JSON file reader, and a pipeline traced by OpenTelemetry's own Kafka
instrumentation and file exporter on the real Kafka."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from eventscope.analysis import causality
from eventscope.cli import main as cli
from eventscope.collectors.otlp.files import OtlpFilesCollector, spans_of
from real_clients import collect_until

CLIENTS = Path(__file__).parent / "clients"


# -- the walk ----------------------------------------------------------------------------------
def _spans(**links):
    """``{span: (parent, links)}`` from ``span="parent|link1,link2"``."""
    out = {}
    for span, text in links.items():
        parent, _, linked = text.partition("|")
        out[span] = (parent or None, tuple(x for x in linked.split(",") if x))
    return out


def test_a_send_span_under_a_process_span_that_links_to_the_consumed_message():
    # m0 (span a) is consumed; the process span p links to a; the send span s2 of m1 is p's child
    spans = _spans(s2="p|", p="recv|a", recv="|")
    found = causality.span_causes(np.zeros(2, dtype=np.int64), ["a", "s2"], spans)
    assert found.tolist() == [-1, 0]


def test_spans_pass_a_context_on_unchanged_and_walk_through_internal_spans():
    # m1 carries m0's own span (a context passed on without a span of its own); m2's send
    # span sits under an internal span under the process span that links to m1's span... which is a
    spans = _spans(s2="work|", work="p2|", p2="|a")
    found = causality.span_causes(np.zeros(3, dtype=np.int64), ["a", "a", "s2"], spans)
    # the first message carrying a span stands for it: m1 and m2 both come from m0
    assert found.tolist() == [-1, 0, 0]


def test_spans_never_link_across_chains_or_forward_in_time():
    spans = _spans(s1="p|a", s0="p0|s1")
    # a row of another chain carries the linked span: not a cause
    assert causality.span_causes(np.array([0, 1]), ["a", "s1"], spans).tolist() == [-1, -1]
    # the linked message comes later in the chain: not a cause of an earlier one
    assert causality.span_causes(np.array([0, 0]), ["s0", "s1"], spans).tolist() == [-1, -1]


def test_spans_that_reach_a_root_say_there_is_no_cause():
    # an order placed over HTTP: its send span under the request's root span, no message met
    spans = _spans(s0="http|", http="|", s1="p|", p="gap|")
    found = causality.span_causes(np.zeros(3, dtype=np.int64), ["x", "s0", "s1"], spans)
    # x: never exported, s1: walks into a span nobody exported: the spans say nothing
    assert found.tolist() == [-1, causality.NO_CAUSE, -1]
    # and the rule takes it: no cause, though an event came just before
    cause = causality.cause_rows(np.zeros(3, dtype=np.int64), np.array([0, 10, 20]), np.array([0, 1, 2]),
                                 np.array([0, 1, 2]), explicit=found)
    assert cause[1] == -1 and cause[2] >= 0


def test_a_cycle_in_spans_ends_the_walk():
    spans = _spans(x="y|", y="x|")
    assert causality.span_causes(np.zeros(2, dtype=np.int64), ["a", "x"], spans).tolist() == [-1, -1]


# -- the OTLP JSON file reader -------------------------------------------------------------------
def _request(*spans, service="svc", b64=False):
    def ident(hexid):
        return base64.b64encode(bytes.fromhex(hexid)).decode() if b64 else hexid
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                               "scopeSpans": [{"spans": [
                                   {"traceId": ident("ab" * 16), "spanId": ident(s), "name": "n", "kind": 4,
                                    "parentSpanId": ident(p) if p else "",
                                    "links": [{"traceId": ident("cd" * 16), "spanId": ident(l)} for l in links],
                                    "startTimeUnixNano": "1796477379846281344"}
                                   for s, p, links in spans]}]}]}


def test_otlp_lines_hex_or_base64_ids():
    rows = spans_of(_request(("11" * 8, "22" * 8, ["33" * 8]), ("44" * 8, None, []), b64=True))
    assert [(r["span_id"], r["parent_span_id"], r["links"]) for r in rows] == [
        ("11" * 8, "22" * 8, "33" * 8), ("44" * 8, None, None)]
    assert rows[0]["service"] == "svc" and rows[0]["kind"] == "PRODUCER" and rows[0]["trace_id"] == "ab" * 16
    assert spans_of({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "11" * 8}]}]}]}) == []
    assert spans_of({"resourceSpans": "nonsense"}) == [] and spans_of({}) == []


def test_otlp_files_are_read_once_across_restarts_rotation_and_garbage(tmp_path):
    path = tmp_path / "spans.jsonl"
    line = lambda *s: json.dumps(_request(*s)) + "\n"
    path.write_text(line(("01" * 8, None, [])) + "not json at all\n" + line(("02" * 8, None, [])))
    with open(path, "a") as f:
        f.write(line(("03" * 8, None, []))[:40])  # a line still being written
    reader = OtlpFilesCollector([str(tmp_path / "*.jsonl")])
    first = reader.collect()["spans"]
    assert first["span_id"].tolist() == ["01" * 8, "02" * 8] and reader.skipped == 1
    with open(path, "a") as f:
        f.write(line(("03" * 8, None, []))[40:])
    # a restart goes on from the saved position: the finished line once, nothing again
    again = OtlpFilesCollector([str(tmp_path / "*.jsonl")])
    again.restore(pd.DataFrame(reader.reading_state(pd.Timestamp.now(tz="UTC"))))
    assert again.collect()["spans"]["span_id"].tolist() == ["03" * 8]
    assert again.collect()["spans"].empty
    # rotated: a new file under the same name is read from its start
    path.rename(tmp_path / "spans.jsonl.1")
    (tmp_path / "spans.jsonl").write_text(line(("04" * 8, None, [])))
    assert again.collect()["spans"]["span_id"].tolist() == ["04" * 8]
    # truncated in place: from its start again
    (tmp_path / "spans.jsonl").write_text("")
    again.collect()
    (tmp_path / "spans.jsonl").write_text(line(("05" * 8, None, [])))
    assert again.collect()["spans"]["span_id"].tolist() == ["05" * 8]


def test_a_huge_file_seen_first_is_read_from_its_last_part(tmp_path):
    path = tmp_path / "big.jsonl"
    lines = [json.dumps(_request((f"{i:016x}", None, []))) + "\n" for i in range(1, 2001)]
    path.write_text("".join(lines))
    reader = OtlpFilesCollector([str(path)], first_read_bytes=len(lines[0]) * 10 + 5)
    got = reader.collect()["spans"]["span_id"].tolist()
    assert 9 <= len(got) <= 10 and got[-1] == f"{2000:016x}"  # whole lines from the tail only


# -- a pipeline traced by OpenTelemetry's own Kafka instrumentation --------------------------
@pytest.mark.broker
def test_instrumented_pipeline_causes_follow_the_spans(tmp_path, kafka_bootstrap, redis_url, capsys):
    prefix = f"ot{uuid.uuid4().hex[:5]}-"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(prefix + t, 1, 1) for t in ("orders", "profiles", "mails")]).values():
        future.result()
    spans_dir = tmp_path / "spans"
    spans_dir.mkdir()
    chains = 12
    run = subprocess.run([sys.executable, str(CLIENTS / "otel_pipeline.py"), kafka_bootstrap, prefix, str(spans_dir),
                          str(chains)], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]

    env = {"EVENTSCOPE_KAFKA_BOOTSTRAP": kafka_bootstrap, "EVENTSCOPE_KAFKA_TOPICS": "^" + prefix,
           "EVENTSCOPE_STORE": str(tmp_path / "store"), "EVENTSCOPE_TRACES_OTLP_FILES": str(spans_dir / "*.jsonl"),
           "EVENTSCOPE_TRACES_LOOKBACK_S": "3600"}
    def everything_read(store) -> bool:
        events = store.read("events")  # every message read, its send span exported and read
        return (events["topic"] == prefix + "mails").sum() == chains and not store.get("lag_groups").empty \
            and set(events["parent_span_id"]) <= set(store.read("spans")["span_id"])

    store = collect_until(env, everything_read, timeout_s=60)
    events = store.read("events")
    spans = store.read("spans")
    assert len(events) == 3 * chains and events["parent_span_id"].notna().all()
    assert set(spans["service"]) == {"shop", "mailer"} and {"PRODUCER", "CONSUMER"} <= set(spans["kind"])

    def causes(*extra) -> dict:
        assert cli(["graph", "--format", "json", *extra]) == 0
        edges = json.loads(capsys.readouterr().out)["edges"]
        return {(e["source"].split(":")[-1], e["target"].split(":")[-1]): e["events"]
                for e in edges if e["kind"] == "causes"}

    os.environ.update(env)
    try:
        by_spans = causes()
        # each mail was sent while its order was processed, though the profile update is newer
        assert by_spans == {(prefix + "orders", prefix + "mails"): chains}, by_spans
        cid = store.read("events").query("topic == @prefix + 'mails'")["correlation_id"].iloc[0]
        assert cli(["trace", cid, "--json"]) == 0
        hops = json.loads(capsys.readouterr().out)["hops"]
        into_mails = [h["from_topic"] for h in hops if h["to_topic"] == prefix + "mails"]
        assert into_mails and set(into_mails) == {prefix + "orders"}, hops
    finally:
        for key in env:
            os.environ.pop(key, None)

    # without the spans, time alone draws the edge from the newer profile update: what the
    # spans corrected (so this test can tell the two apart)
    from eventscope.graph.build import build_graph
    blind = build_graph(store.read("events"), None, None, groups=store.get("lag_groups"))
    assert blind.has_edge(f"topic:kafka:{prefix}profiles", f"topic:kafka:{prefix}mails")
