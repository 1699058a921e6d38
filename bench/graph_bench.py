"""Flow graph: build time from 1,000,000 observed events, and a 300-node graph drawn in Chromium.

Build: one hour of a 40-topic pipeline on Kafka and Redis, 1 M events in chains of
five (one correlation ID per chain), 5 % dead-lettered, with a lag frame of 60
groups; the frames are read from a real store first, so the figure is what the
dashboard and ``eventscope graph`` pay (median of 3 builds). Render: a graph of 300
nodes drawn by pyvis into a page that headless Chromium loads from disk; the clock
stops when vis-network has drawn the network once.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from eventscope import schemas

EVENTS = 1_000_000
CHAIN = 5
TOPICS = 40
SPAN_S = 3600
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def synthetic_events(n: int = EVENTS, topics: int = TOPICS, seed: int = 1,
                     end: pd.Timestamp | None = None) -> pd.DataFrame:
    """``n`` events in chains of five hops through ``topics`` topics in eight domains (both brokers)."""
    rng = np.random.default_rng(seed)
    chains = n // CHAIN
    end = end or pd.Timestamp.now(tz="UTC").floor("s")
    start_ns = (end - pd.Timedelta(seconds=SPAN_S)).value
    domains = 8  # independent pipelines; a chain stays inside its domain
    per = max(CHAIN, topics // domains)
    domain = rng.integers(0, domains, chains)
    first = domain * per + rng.integers(0, per - CHAIN + 1, chains)
    begin = start_ns + rng.integers(0, SPAN_S * 10**9, chains)
    step = np.repeat(np.arange(CHAIN)[None, :], chains, axis=0)
    topic = (first[:, None] + step).ravel()
    topics = domains * per
    at = (begin[:, None] + step * rng.integers(2, 40, (chains, CHAIN)) * 10**6).ravel()
    chain = np.repeat(np.arange(chains), CHAIN)
    broker = np.where(chain % 4 == 0, "redis", "kafka")
    dead = rng.random(len(topic)) < 0.05
    names = np.array([f"domain{t // per}.topic-{t:02d}" for t in range(topics)])
    services = np.array([f"service-{t:02d}" for t in range(topics)])
    topic_names = np.where(dead, np.char.add(names[topic], ".DLT"), names[topic])
    frame = pd.DataFrame({
        "observed_at": pd.to_datetime(at + 50 * 10**6, utc=True),
        "source": broker, "broker": broker, "topic": topic_names,
        "partition": chain % 6, "offset": chain.astype(str),
        "at": pd.to_datetime(at, utc=True), "broker_at": pd.to_datetime(at, utc=True),
        "event_type": np.char.add("Event", topic.astype(str)), "event_id": np.arange(len(topic)).astype(str),
        "service": services[topic], "correlation_id": np.char.add("c-", chain.astype(str)),
        "dead_letter": dead, "original_topic": np.where(dead, names[topic], None),
        "schema_version": "1", "payload": '{"event_type":"Event","data":{"order_id":"o"}}',
        "size_bytes": 120})
    return schemas.conform("events", frame)


def synthetic_lag(topics: int = TOPICS, end: pd.Timestamp | None = None) -> pd.DataFrame:
    """Sixty groups (1.5 per topic) sampled every 15 s for the hour."""
    end = end or pd.Timestamp.now(tz="UTC").floor("s")
    rows = []
    for s in range(0, SPAN_S + 1, 15):
        at = end - pd.Timedelta(seconds=SPAN_S - s)
        for g in range(60):
            rows.append({"sampled_at": at, "source": "kafka", "broker": "kafka",
                         "group": f"group-{g:02d}", "topic": f"domain{g % topics // max(CHAIN, topics // 8)}.topic-{g % topics:02d}",
                         "partition": 0, "committed": s * 10, "end": s * 10 + g % 3, "lag": g % 3,
                         "lag_seconds": 0.5 * (g % 3), "group_state": "Stable", "members": 1})
    return schemas.conform("lag", rows)


def bench_build() -> float:
    from eventscope.store import Retention, Store
    from eventscope.graph.build import build_graph
    root = tempfile.mkdtemp(prefix="eventscope-graph-bench-")
    store = Store(root, Retention(max_age_s=7 * 3600, max_rows=3_000_000))
    end = pd.Timestamp.now(tz="UTC").floor("s")
    store.append("events", synthetic_events(end=end))
    store.append("lag", synthetic_lag(end=end))
    events, lag = store.read("events"), store.read("lag")
    times, cpu = [], []
    for _ in range(3):
        started, started_cpu = time.perf_counter(), time.process_time()
        graph = build_graph(events, lag)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    median = statistics.median(times)
    # the CPU time and load say whether other work on the machine stretched the wall time
    print(f"graph: build from {len(events):,} events + {len(lag):,} lag rows: "
          f"{median:.2f} s median of 3 (CPU {statistics.median(cpu):.2f} s, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {graph.number_of_nodes()} nodes, "
          f"{graph.number_of_edges()} edges)")
    return median


def graph_of(nodes: int = 300):
    """A synthetic flow graph of about ``nodes`` nodes (services, topics, groups, DLQs)."""
    from eventscope.graph.build import build_graph
    topics = nodes // 6  # each: a service, a group, and a topic and a DLQ on both brokers
    end = pd.Timestamp.now(tz="UTC").floor("s")
    events = synthetic_events(n=CHAIN * 4000, topics=topics, end=end)
    lag = []
    for s in (0, 60):
        for t in range(topics):
            lag.append({"sampled_at": end - pd.Timedelta(seconds=60 - s), "source": "kafka",
                        "broker": "kafka", "group": f"group-{t:03d}",
                        "topic": f"domain{t // max(CHAIN, topics // 8)}.topic-{t:02d}", "partition": 0,
                        "committed": s, "end": s + 1, "lag": 1, "lag_seconds": 0.5, "members": 1})
    return build_graph(events, schemas.conform("lag", lag))


def bench_render(nodes: int = 300) -> float | None:
    from eventscope.graph.render import to_html
    graph = graph_of(nodes)
    started = time.perf_counter()
    page = to_html(graph)
    html_s = time.perf_counter() - started
    if not Path(CHROMIUM).exists():
        print("graph: render skipped in the browser: Debian's chromium is not installed")
        return None
    from playwright.sync_api import sync_playwright
    path = Path(tempfile.mkdtemp(prefix="eventscope-graph-render-")) / "graph.html"
    path.write_text(page.replace("network = new vis.Network(container, data, options);",
                                 "window.__t0 = performance.now();\n"
                                 "network = new vis.Network(container, data, options);\n"
                                 "network.once('afterDrawing', function () {"
                                 " window.__drawn = performance.now(); });"), encoding="utf-8")
    times = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for _ in range(3):
            tab = browser.new_page(viewport={"width": 1400, "height": 900})
            started = time.perf_counter()
            tab.goto(path.as_uri(), wait_until="domcontentloaded")
            tab.wait_for_function("() => window.__drawn !== undefined", timeout=60_000)
            times.append(time.perf_counter() - started)
            tab.close()
        browser.close()
    median = statistics.median(times)
    print(f"graph: {graph.number_of_nodes()} nodes / {graph.number_of_edges()} edges: HTML built in "
          f"{html_s * 1000:.0f} ms ({len(page) / 1e6:.1f} MB); drawn in Chromium {median:.2f} s after "
          f"navigation (median of 3, page load included)")
    return median


def main() -> None:
    bench_build()
    bench_render()


if __name__ == "__main__":
    main()
