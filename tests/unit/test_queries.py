"""The query layer's aggregates equal the same arithmetic done on the rows they stand for."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eventscope import schemas
from eventscope.query import Queries, other_series
from eventscope.recorder import Recorder
from eventscope.store import Store


def wide_group_samples(start: pd.Timestamp, count: int, topics: int = 30) -> list[pd.DataFrame]:
    """A Redis-like group reading ``topics`` streams (each lagging by its own amount) and a
    Kafka group on two topics, one sample every 20 s."""
    rng = np.random.default_rng(3)
    frames = []
    for i in range(count):
        at = start + pd.Timedelta(seconds=20 * i)
        rows = []
        for t in range(topics):
            end = 500 + 10 * i
            lag = int(rng.integers(0, 40)) + t * (i % 4)
            rows.append({"sampled_at": at, "source": "redis", "broker": "redis", "group": "wide",
                         "topic": f"stream:{t:03d}", "partition": 0, "committed": end - lag, "end": end,
                         "lag": lag, "lag_seconds": float(rng.uniform(0, 60)), "members": 1,
                         "group_state": "n/a"})
        for topic in ("orders", "payments"):
            rows.append({"sampled_at": at, "source": "kafka", "broker": "kafka", "group": "narrow",
                         "topic": topic, "partition": 0, "committed": 100 + i, "end": 100 + 2 * i,
                         "lag": i, "lag_seconds": float(i), "members": 1, "group_state": "Stable"})
        frames.append(schemas.conform("lag", rows))
    return frames


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    start = pd.Timestamp.now(tz="UTC").floor("1min") - pd.Timedelta(minutes=5)
    store = Store(tmp_path_factory.mktemp("store"))
    recorder = Recorder(store)
    for frame in wide_group_samples(start, 17):  # five closed minutes and an open one
        recorder.record({"lag": frame})
    return store


@pytest.mark.parametrize("engine", ["duckdb", "pyarrow"])
def test_a_wide_group_charts_its_worst_topics_and_sums_the_rest(store, engine):
    queries = Queries(store, engine=engine)
    since = pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=1)
    history = queries.group_history("redis", "wide", since, top=5)
    minutes = pd.concat([store.read("lag_1m"), store.get("lag_1m_open")], ignore_index=True)
    minutes = minutes[minutes["group"] == "wide"]
    worst = list(queries.lag_groups().query("group == 'wide'")["topic"].head(5))
    other = other_series(25)

    assert set(history["topic"]) == {*worst, other}
    assert history["minute"].nunique() == minutes["minute"].nunique() == 6
    for topic in worst:  # each kept topic is its own rollup rows, unchanged
        mine = history[history["topic"] == topic].set_index("minute")
        theirs = minutes[minutes["topic"] == topic].set_index("minute")
        assert mine["lag"].astype("int64").to_dict() == theirs["lag"].astype("int64").to_dict()
        assert mine["lag_seconds"].to_dict() == pytest.approx(theirs["lag_seconds"].to_dict())
    rest = minutes[~minutes["topic"].isin(worst)].groupby("minute")
    mine = history[history["topic"] == other].set_index("minute")
    assert mine["lag"].astype("int64").to_dict() == rest["lag"].sum().astype("int64").to_dict()
    assert mine["lag_seconds"].to_dict() == pytest.approx(rest["lag_seconds"].max().to_dict())
    assert mine["lag_max"].astype("int64").to_dict() == rest["lag_max"].max().astype("int64").to_dict()
    assert str(history["lag"].dtype) == "Int64" and str(history["minute"].dtype) == "datetime64[ns, UTC]"


def test_a_narrow_group_charts_every_topic(store):
    queries = Queries(store)
    since = pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=1)
    history = queries.group_history("kafka", "narrow", since, top=1)  # two topics: no "other" of one
    assert set(history["topic"]) == {"orders", "payments"}
    assert len(history) == 12


def test_the_result_cache_counts_what_results_hold_and_drops_stale_versions():
    import networkx as nx

    from eventscope.query import ResultCache, size_of

    graph = nx.DiGraph()
    for i in range(2000):
        graph.add_edge(f"group-{i:04d}", f"topic-{i % 50:02d}", kind="consumes", count=i,
                       label=f"consumes {i} events per minute")
    assert size_of(graph) > 1_000_000  # not a flat 1 KB: it holds thousands of edges' attributes
    assert size_of({"a": graph, "b": graph}) < 1.1 * size_of(graph)  # one object counted once
    frame = pd.DataFrame({"text": ["x" * 100] * 1000})
    assert size_of((frame, {"shape": "y" * 5000})) > 100_000 + 5000

    cache = ResultCache(budget=3 * size_of(graph))
    for version in range(20):  # a new sample every time: only the newest version is kept
        for args in ("1 h", "6 h"):
            cache.get(("flow_graph", (f"v{version}",), (args,)), lambda: nx.DiGraph(graph))
    assert len(cache) == 2 and cache.used <= cache.budget
    assert {k[1] for k in cache._items} == {("v19",)}
    calls = []
    cache.get(("flow_graph", ("v19",), ("1 h",)), lambda: calls.append(1))
    assert not calls  # the newest results are still served from the cache
    for i in range(10):  # results that differ only in their arguments: the budget evicts
        cache.get(("other", ("v",), (i,)), lambda: nx.DiGraph(graph))
    assert cache.used <= cache.budget and len(cache) <= 3


@pytest.mark.parametrize("engine", ["duckdb", "pyarrow"])
def test_event_samples_are_the_newest_of_each_type_and_version(tmp_path, engine):
    """What the catalog infers shapes from, picked in DuckDB, equals the newest live decoded
    events of each (type, version) picked from the whole frame (``graph.infer.samples``)."""
    from eventscope.graph.infer import samples
    rng = np.random.default_rng(3)
    store = Store(tmp_path / "store")
    start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=30)
    for part in range(6):  # several parts: the newest of a type may sit in any of them
        n = 400
        types = rng.choice(["OrderPlaced", "PaymentCharged", "<undecodable>", None], n, p=[0.5, 0.3, 0.1, 0.1])
        store.append("events", schemas.conform("events", pd.DataFrame({
            "observed_at": start + pd.to_timedelta(part * 60 + np.arange(n) * 0.1, unit="s"),
            "at": start + pd.to_timedelta(part * 60 + np.arange(n) * 0.1, unit="s"),
            "source": "kafka", "broker": "kafka", "topic": rng.choice(["orders", "orders.DLT"], n),
            "partition": 0, "offset": [str(part * n + i) for i in range(n)],
            "event_type": types, "schema_version": rng.choice(["1", "2", None], n),
            "dead_letter": rng.random(n) < 0.2, "service": "shop", "correlation_id": "c",
            "payload": [f'{{"n": {part * n + i}}}' for i in range(n)], "headers": "{}"})))
    since = start - pd.Timedelta(minutes=1)
    picked = Queries(store, engine=engine).event_samples(since, 25)
    expected = samples(store.read("events", since=since), 25)
    key = ["event_type", "schema_version", "payload"]
    assert len(picked) == len(expected) == 2 * 3 * 25
    assert sorted(map(tuple, picked[key].astype(str).values)) == sorted(map(tuple, expected[key].astype(str).values))


def test_a_big_container_is_sized_from_a_sample_close_to_its_full_count(monkeypatch):
    """Sizing 7,000 alerts item by item cost 0.4 s on every new sample; an evenly spaced
    sample of 256 must land near the full count, for uneven items too."""
    from eventscope import query

    rows = {(f"rule-{i % 7}", f"subject-{i:05d}"): [f"detail {i}" * (1 + i % 13), i, None, float(i)]
            for i in range(10_000)}
    sampled = query.size_of(rows)
    monkeypatch.setattr(query, "SIZE_SAMPLE", 10**9)
    exact = query.size_of(rows)
    assert exact > 1_500_000
    assert abs(sampled - exact) < 0.05 * exact
    assert query.size_of(list(range(100))) == 64 + 100 * (32 + 8)  # small containers: every item


def _chains(store: Store, ids: int, start: pd.Timestamp) -> None:
    """``ids`` orders, each OrderPlaced → PaymentAuthorized → Shipped over three services,
    plus one uncorrelated heartbeat per ten orders, written in five appends."""
    rows = []
    for i in range(ids):
        at = start + pd.Timedelta(milliseconds=7 * i)
        for step, (topic, service, kind) in enumerate((("orders", "order-svc", "OrderPlaced"),
                                                       ("payments", "pay-svc", "PaymentAuthorized"),
                                                       ("shipments", "ship-svc", "Shipped"))):
            t = at + pd.Timedelta(milliseconds=40 * step + i % 5)
            rows.append({"observed_at": t, "source": "kafka", "broker": "kafka", "topic": topic,
                         "partition": i % 3, "offset": str(i), "at": t, "event_type": kind,
                         "event_id": f"e-{i}-{step}", "service": service, "correlation_id": f"order-{i:05d}",
                         "dead_letter": False})
        if i % 10 == 0:
            rows.append({"observed_at": at, "source": "kafka", "broker": "kafka", "topic": "heartbeats",
                         "partition": 0, "offset": str(i), "at": at, "event_type": "Beat",
                         "service": "monitor", "correlation_id": None, "dead_letter": False})
    frame = schemas.conform("events", rows)
    for part in np.array_split(np.arange(len(frame)), 5):
        store.append("events", frame.iloc[part].reset_index(drop=True))


def test_past_its_budget_a_window_reads_a_share_of_whole_correlation_ids(tmp_path, monkeypatch):
    """A big cluster's hour of events is millions of rows: the flow graph and the catalog read
    a power-of-½ share of the correlation IDs (every event of each), the same ones each time,
    and scale counts and rates back up; under the budget they read everything."""
    from eventscope import query
    from eventscope.graph.build import build_graph, scale_counts
    from eventscope.graph.catalog import event_catalog

    start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=10)
    store = Store(tmp_path / "store")
    _chains(store, 4000, start)  # 12,000 chained events and 400 heartbeats
    queries = Queries(store)
    since = start - pd.Timedelta(minutes=1)
    assert queries.events_share(since) == 1.0  # 12,400 rows: under the default budget
    monkeypatch.setattr(query, "GRAPH_EVENTS", 3000)
    share = queries.events_share(since)
    assert share == 0.125  # 12,400 × ⅛ = 1,550 ≤ 3,000 < 12,400 × ¼
    assert Queries(store, engine="pyarrow").events_share(since) == 1.0  # it reads windows whole
    whole = queries.events(since)
    part = queries.events(since, share=share)
    def rows(frame):
        return set(zip(frame["topic"], frame["partition"], frame["offset"]))
    assert rows(part) == rows(Queries(store).events(since, share=share))  # the same rows on every read
    kept = part["correlation_id"].dropna()
    per_id = whole[whole["correlation_id"].isin(set(kept))].groupby("correlation_id").size()
    assert (per_id == 3).all() and kept.value_counts().eq(3).all()  # chains kept whole
    assert 0.09 < kept.nunique() / 4000 < 0.16  # about an eighth of the IDs
    assert 10 < int((part["topic"] == "heartbeats").sum()) < 100  # uncorrelated ones sampled too
    assert part["observed_at"].is_monotonic_increasing

    full_graph = scale_counts(build_graph(whole, None), 1.0)
    graph = scale_counts(build_graph(part, None), share)
    assert graph.graph["share"] == share and full_graph.graph["share"] == 1.0
    for a, b, attrs in full_graph.edges(data=True):
        if attrs["kind"] in ("produces", "causes"):
            assert graph.has_edge(a, b), (a, b)
            assert abs(graph.edges[a, b]["events"] - attrs["events"]) < 0.25 * attrs["events"], (a, b)
            assert graph.edges[a, b]["rate_per_s"] == pytest.approx(
                graph.edges[a, b]["events"] / (attrs["events"] / attrs["rate_per_s"]), rel=0.3)
    assert abs(graph.nodes["topic:kafka:orders"]["events"] - 4000) < 1000
    assert graph.nodes["topic:kafka:orders"]["events"] % 8 == 0  # a count of the sample, times 8
    table = event_catalog(part, graph, share).set_index("event_type")
    assert abs(int(table.at["OrderPlaced", "events"]) - 4000) < 1000
    assert int(table.at["OrderPlaced", "events"]) == 8 * int((part["event_type"] == "OrderPlaced").sum())


def test_the_trace_summary_aggregated_by_duckdb_equals_the_one_made_in_pandas(tmp_path):
    """The Traces page's summary (one row per correlation ID) is aggregated where the events
    are, not by reading every event of the hour; the answer is the pandas one, row for row:
    dead letters at their broker time, events without a correlation ID left out, times kept
    to the nanosecond, newest first."""
    from eventscope.analysis import traces as trace_analysis

    start = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=5)
    store = Store(tmp_path / "store")
    _chains(store, 300, start)
    extra = []
    for i in range(6):  # dead letters: three with a broker time far from their event time
        at = start + pd.Timedelta(seconds=30, nanoseconds=i * 1001)
        extra.append({"observed_at": at, "source": "kafka", "broker": "kafka", "topic": "payments.DLT",
                      "partition": 0, "offset": str(900 + i), "at": at - pd.Timedelta(seconds=20),
                      "broker_at": at if i % 2 else None, "event_type": "PaymentAuthorized",
                      "service": "pay-svc", "correlation_id": f"order-{i:05d}", "dead_letter": True})
    extra.append({"observed_at": start, "source": "kafka", "broker": "kafka", "topic": "orders", "partition": 1,
                  "offset": "999", "at": start, "event_type": "OrderPlaced", "correlation_id": "",
                  "dead_letter": False})
    store.append("events", schemas.conform("events", extra))
    since = start - pd.Timedelta(minutes=1)
    now = pd.Timestamp.now(tz="UTC")
    columns = ["correlation_id", "at", "broker_at", "dead_letter", "offset"]
    expected = trace_analysis.summary(store.read("events", since=since, columns=columns), now=now)
    from eventscope.query import _scanner
    got = trace_analysis.summary_of(_scanner().per_trace(store, since), now=now)
    assert len(got) == 300 and list(got.columns) == trace_analysis.SUMMARY_COLUMNS
    assert got["correlation_id"].tolist() == expected["correlation_id"].tolist()
    for column in ("first_at", "last_at"):
        assert [pd.Timestamp(t) for t in got[column]] == [pd.Timestamp(t) for t in expected[column]]
    assert got["events"].astype(int).tolist() == expected["events"].astype(int).tolist()
    assert got["duration_ms"].tolist() == expected["duration_ms"].tolist()
    assert got["outcome"].tolist() == expected["outcome"].tolist()
    assert set(got.loc[got["outcome"] == "dead_lettered", "correlation_id"]) == {f"order-{i:05d}" for i in range(6)}
    assert (got.set_index("correlation_id").loc["order-00001", "duration_ms"]
            > got.set_index("correlation_id").loc["order-00000", "duration_ms"] + 10_000)  # at its broker time
    on_page = Queries(store).trace_summary(since, 30.0)  # what the pages ask goes this way
    assert on_page["correlation_id"].tolist() == got["correlation_id"].tolist()
