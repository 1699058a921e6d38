"""The query layer: the one place pages, the CLI, the exporter and alerts read the store.

Each method reads only what its caller shows: the snapshot frames the recorder keeps
(``lag_groups``, ``lag_latest``, ``*_latest``), a rollup over a time range, or a filtered
slice of ``events`` — with the filters and columns pushed down to the Parquet files —
and returns a small pandas frame. Results are cached per store version of the frames
they read, within a memory budget (:class:`ResultCache`); callers treat them as
read-only.

Two readers, chosen by what they read (``bench/QUERY_ENGINES.md`` has the measurements):
a snapshot is one small file, read with pyarrow (``Store.get``: a few milliseconds, no
engine to start); a range over many parts (rollups, raw rows, ``events``) is scanned by
DuckDB (:class:`Scanner`), which filters before it decodes wide columns: 2–7× faster than
pyarrow datasets there and a quarter of the memory on ``events``, with a memory cap of
its own.
"""
from __future__ import annotations

import random
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from eventscope import schemas
from eventscope.analysis import alerts, causality
from eventscope.analysis import dlq as dlq_analysis
from eventscope.analysis import lag as lag_analysis
from eventscope.analysis import traces as trace_analysis
from eventscope.graph import infer
from eventscope.store import UNREADABLE, Store, file_columns

CACHE_BYTES = 64 * 1024 * 1024
SIZE_SAMPLE = 256  # items of one container a size estimate looks at
CLUSTER_FRAMES = ("lag_groups", "dlq_latest", "topics_latest")  # where the clusters in a store are named
DUCKDB_FLUSH = "16MB"  # freed memory DuckDB's allocator may keep once a query is done
DUCKDB_MEMORY = "256MB"  # what one process's scans may hold before DuckDB spills to disk
DLQ_WINDOW_S = 300.0  # what a DLQ's growth is measured over
#: events of a window the flow graph and the event catalog read at most: past it, a share of
#: the correlation IDs (a power of 2), all events of each, and counts scaled back up. A big
#: cluster's hour is millions of events: read whole, ~700 MB and seconds per page
GRAPH_EVENTS = 250_000
#: what picks an event for a share: its correlation ID, else its place in the log (DuckDB's
#: hash is the same in every process and version of a store's reader)
SAMPLE_KEY = ("hash(coalesce(nullif(\"correlation_id\", ''), "
              "concat_ws(':', \"topic\", \"partition\", \"offset\")))")
HISTORY_SERIES = 8  # topics of one group charted one by one; the rest are one series
LAG_TABLE_COLUMNS = ["status", "broker", "group", "topic", "partitions", "lag", "max_lag",
                     "lag_seconds", "members", "group_state", "sampled_at"]


class ResultCache:
    """Least recently used results, evicted once their estimated size passes ``budget`` bytes.

    A key is ``(name, versions, args)`` (see :meth:`Queries.cached`): once a result of
    ``name`` is stored for newer store versions, the results for older ones can never be
    asked for again and are dropped at once, not when the budget runs out."""

    def __init__(self, budget: int = CACHE_BYTES):
        self.budget = budget
        self.used = 0
        self._items: OrderedDict[tuple, tuple[object, int]] = OrderedDict()
        self._versions: dict[object, object] = {}  # name -> the versions its entries are for
        self._lock = threading.Lock()

    def get(self, key: tuple, compute: Callable[[], object]) -> object:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit[0]
        value = compute()
        size = size_of(value)
        with self._lock:
            if len(key) == 3 and self._versions.get(key[0], key[1]) != key[1]:
                self._drop([k for k in self._items if k[0] == key[0] and len(k) == 3 and k[1] != key[1]])
            if len(key) == 3:
                self._versions[key[0]] = key[1]
            if key not in self._items and size <= self.budget:
                self._items[key] = (value, size)
                self.used += size
                while self.used > self.budget:
                    _, (_, dropped) = self._items.popitem(last=False)
                    self.used -= dropped
        return value

    def _drop(self, keys: list) -> None:
        for k in keys:
            self.used -= self._items.pop(k)[1]

    def __len__(self) -> int:
        return len(self._items)


def size_of(value, _seen: set | None = None, _depth: int = 0) -> int:
    """Estimated bytes ``value`` holds: frames by pandas' deep count, text by length, arrays
    by their buffers, containers, graphs and plain objects by what they contain (each object
    counted once). A cached flow graph counted as a fixed 1 KB let results of many MB pile up
    far past the cache's budget."""
    seen = set() if _seen is None else _seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, (pd.DataFrame, pd.Series, pd.Index)):
        usage = value.memory_usage(index=True, deep=True)
        return int(usage.sum() if hasattr(usage, "sum") else usage)
    if isinstance(value, (str, bytes, bytearray)):
        return len(value) + 50
    if hasattr(value, "nbytes") and not callable(value.nbytes):
        return int(value.nbytes) + 100
    if value is None or isinstance(value, (int, float, bool, complex, pd.Timestamp)):
        return 32
    if _depth > 12:
        return 1024
    if isinstance(value, dict):
        picked, scale = _sample(value.items(), len(value))
        return 64 + int(scale * sum(size_of(k, seen, _depth + 1) + size_of(v, seen, _depth + 1) + 40
                                    for k, v in picked))
    if isinstance(value, (tuple, list, set, frozenset)):
        picked, scale = _sample(value, len(value))
        return 64 + int(scale * sum(size_of(v, seen, _depth + 1) + 8 for v in picked))
    state = getattr(value, "__dict__", None)
    if isinstance(state, dict):  # a networkx graph, a dataclass: what its attributes hold
        return 64 + size_of(state, seen, _depth + 1)
    return 1024


def _sample(items, count: int) -> tuple[list, float]:
    """Up to :data:`SIZE_SAMPLE` of a container's ``count`` items, picked at random (the same
    on every call; evenly spaced picks would follow any period in the items), and how many
    items each stands for: the alert state of a big cluster (7,000 alerts, each an object of
    a dozen fields) took 0.4 s to count item by item on every new sample."""
    if count <= SIZE_SAMPLE:
        return list(items), 1.0
    every = list(items)
    return [every[i] for i in sorted(random.Random(count).sample(range(count), SIZE_SAMPLE))], count / SIZE_SAMPLE


class Scanner:
    """Reads a time range of a log or raw frame with DuckDB, over the parts its manifest names.

    One in-memory DuckDB per process, capped in memory and threads; each thread gets its own
    cursor (a DuckDB connection refuses concurrent queries rather than queue them). Files are
    the manifest's explicit list, never a glob, so a compaction that deletes parts after its
    grace period cannot break a scan; a part that vanished anyway sends the scan back to the
    new manifest, once."""

    def __init__(self, memory_limit: str = DUCKDB_MEMORY, threads: int = 2):
        import duckdb  # here, not at the top: a collector that only writes never loads it (30 MB)
        self._io_error = duckdb.IOException
        self._error = duckdb.Error
        self._spill = tempfile.mkdtemp(prefix="eventscope-duckdb-")
        self.connection = duckdb.connect(":memory:", config={
            "threads": threads, "memory_limit": memory_limit, "temp_directory": self._spill,
            # DuckDB's allocator keeps up to 128 MB after a query by default; the dashboard's
            # server cycling the big cluster's pages held ~30 MB less with these
            "allocator_flush_threshold": DUCKDB_FLUSH, "allocator_background_threads": True})
        self._local = threading.local()

    def _cursor(self):
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self.connection.cursor()
            cursor.execute("SET TimeZone='UTC'")  # timestamps come back as UTC, not local time
        return cursor

    def scan(self, store: Store, name: str, since: pd.Timestamp | None = None,
             until: pd.Timestamp | None = None, columns: list[str] | None = None,
             where: dict | None = None, share: float = 1.0) -> pd.DataFrame:
        """Rows of ``name`` in [since, until] (within its retention), oldest first; with
        ``share`` < 1 (``events`` only) that share of its correlation IDs, each with all its
        events (:data:`SAMPLE_KEY`), the same ones on every read."""
        tcol = schemas.TIME_COLUMN[name]
        sampled = (f"AND ({SAMPLE_KEY}) % 1000000 < {int(round(share * 1_000_000))} " if share < 1 else "")
        wanted = list(schemas.SCHEMAS[name]) if columns is None else list(columns)
        select = wanted if tcol in wanted else [*wanted, tcol]
        def quoted(files: list[str]) -> str:  # `group`, `offset`, `end` are SQL words
            # a column no part in range holds (a store written by an older eventscope) is null
            present = frozenset().union(*(file_columns(Path(f)) for f in files))
            return ", ".join(f'"{c}"' if c in present else f'NULL AS "{c}"' for c in select)
        table = self._run(store, name, since, until, where, quoted, [], f'{sampled}ORDER BY "{tcol}"')
        if table is None:
            return schemas.empty(name)[wanted]
        out = schemas.conform(name, table.to_pandas(), columns=select)
        return out[wanted]

    def newest_per(self, store: Store, name: str, keys: list[str], per: int, columns: list[str],
                   since: pd.Timestamp | None = None, condition: str = "TRUE",
                   where: dict | None = None) -> pd.DataFrame:
        """The newest ``per`` rows of ``name`` (since ``since``) for each value of ``keys``
        (nulls as ``''``), where the SQL ``condition`` holds: ``columns`` only, oldest first.
        DuckDB picks them (``QUALIFY row_number()``), so only those rows are decoded."""
        tcol = schemas.TIME_COLUMN[name]
        wanted = list(dict.fromkeys([*columns, *keys, tcol]))
        def select(files: list[str]) -> str:
            present = frozenset().union(*(file_columns(Path(f)) for f in files))
            return ", ".join((f'COALESCE("{c}", \'\') AS "{c}"' if c in keys else f'"{c}"') if c in present
                             else f'NULL AS "{c}"' for c in wanted)
        partition = ", ".join(f'COALESCE("{k}", \'\')' for k in keys)
        table = self._run(store, name, since, None, where, select, [],
                          f'AND ({condition}) QUALIFY row_number() OVER (PARTITION BY {partition} '
                          f'ORDER BY "{tcol}" DESC) <= {int(per)} ORDER BY "{tcol}"')
        if table is None:
            return schemas.empty(name)[wanted]
        return table.to_pandas()

    def grouped(self, store: Store, name: str, keys: list[str], aggregates: dict[str, str],
                since: pd.Timestamp | None = None, where: dict | None = None,
                relabel: tuple[str, list, str] | None = None) -> pd.DataFrame:
        """``name``'s rows since ``since`` aggregated in DuckDB: one row per ``keys``, each of
        ``aggregates`` (column → ``sum``/``max``/``min``) over the rows it stands for.
        ``relabel = (column, kept, other)`` first renames every value of ``column`` outside
        ``kept`` to ``other`` (so the long tail of a column becomes one row per key)."""
        params: list = []
        exprs = []
        for key in keys:
            if relabel is not None and key == relabel[0] and relabel[1]:
                marks = ", ".join("?" * len(relabel[1]))
                exprs.append(f'CASE WHEN "{key}" IN ({marks}) THEN "{key}" ELSE ? END AS "{key}"')
                params += [*relabel[1], relabel[2]]
            elif relabel is not None and key == relabel[0]:
                exprs.append(f'?::VARCHAR AS "{key}"')
                params.append(relabel[2])
            else:
                exprs.append(f'"{key}"')
        exprs += [f'{fn}("{column}") AS "{column}"' for column, fn in aggregates.items()]
        group = ", ".join(str(i + 1) for i in range(len(keys)))
        table = self._run(store, name, since, None, where, ", ".join(exprs), params,
                          f"GROUP BY {group} ORDER BY {group}")
        if table is None:
            return pd.DataFrame(columns=[*keys, *aggregates])
        return table.to_pandas()

    def per_trace(self, store: Store, since: pd.Timestamp | None = None, where: dict | None = None) -> pd.DataFrame:
        """Per correlation ID of the ``events`` since ``since``: ``first_at``, ``last_at`` (a
        dead letter at its broker time when it has one), ``events``, ``dead`` (any dead
        letter), aggregated by DuckDB (:func:`eventscope.analysis.traces.summary` does the same
        in pandas)."""
        def select(files: list[str]) -> str:
            present = frozenset().union(*(file_columns(Path(f)) for f in files))
            broker_at = '"broker_at"' if "broker_at" in present else "NULL::TIMESTAMPTZ_NS"
            at = (f'CASE WHEN coalesce("dead_letter", FALSE) AND {broker_at} IS NOT NULL '
                  f'THEN {broker_at} ELSE "at" END')
            return (f'"correlation_id", min({at}) AS first_at, max({at}) AS last_at, count(*) AS events, '
                    'bool_or(coalesce("dead_letter", FALSE)) AS dead')
        table = self._run(store, "events", since, None, where, select, [],
                          "AND \"correlation_id\" IS NOT NULL AND \"correlation_id\" <> '' GROUP BY \"correlation_id\"")
        if table is None:
            return pd.DataFrame(columns=["correlation_id", "first_at", "last_at", "events", "dead"])
        return table.to_pandas()

    def _run(self, store: Store, name: str, since, until, where: dict | None, select,
             select_params: list, tail: str):
        """Runs ``SELECT select FROM name's parts WHERE time range and where tail``; None when
        no part holds the range (or a ``where`` list is empty)."""
        tcol = schemas.TIME_COLUMN[name]
        floor = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=store.retention.age_s(name))
        since = floor if since is None else max(pd.Timestamp(since), floor)
        clauses, params = [f'"{tcol}" >= ?::TIMESTAMPTZ_NS'], [since.isoformat()]
        if until is not None:
            clauses.append(f'"{tcol}" <= ?::TIMESTAMPTZ_NS')
            params.append(pd.Timestamp(until).isoformat())
        for column, value in (where or {}).items():
            values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
            if not values:
                return None
            clauses.append(f'"{column}" IN ({", ".join("?" * len(values))})')
            params += values
        for attempt in range(3):
            files = [str(store.part_path(name, p["file"])) for p in store.readable(name, store.part_entries(name))
                     if pd.Timestamp(p["tmax"]) >= since
                     and (until is None or pd.Timestamp(p["tmin"]) <= pd.Timestamp(until))]
            if not files:
                return None
            try:
                sql = (f"SELECT {select(files) if callable(select) else select} "
                       f"FROM read_parquet(?, union_by_name=true) "
                       f'WHERE {" AND ".join(clauses)} {tail}')
                return self._cursor().sql(sql, params=[*select_params, files, *params]).to_arrow_table()
            except (self._error, *UNREADABLE) as exc:
                # a part compacted away meanwhile (read the manifest again), or a damaged part:
                # the store names it, and the query runs again without it
                if attempt == 2 or not (store.find_damaged(name, files)
                                        or isinstance(exc, (self._io_error, FileNotFoundError))):
                    raise
        return None


class Queries:
    """Questions the dashboard, CLI, exporter and alerts ask of one store."""

    def __init__(self, store: Store, cache: ResultCache | None = None, engine: str = "duckdb"):
        """``engine="pyarrow"`` reads ranges with pyarrow too: for a process that only asks
        small questions (the collector's alert evaluation) and should not hold a DuckDB."""
        self.store = store
        self.cache = cache or ResultCache()
        self.engine = engine

    def scan(self, name: str, since: pd.Timestamp | None = None, until: pd.Timestamp | None = None,
             columns: list[str] | None = None, where: dict | None = None) -> pd.DataFrame:
        """A time range of a log or raw frame (DuckDB over its parts; see :class:`Scanner`)."""
        if self.engine == "pyarrow":
            return self.store.read(name, since, until, columns=columns, where=where)
        return _scanner().scan(self.store, name, since, until, columns, where)

    def cached(self, name: str, frames: tuple[str, ...], args: tuple, compute: Callable[[], object]):
        """``compute()``'s result, cached on ``name``, ``args`` and the store versions of ``frames``
        (the frames it reads): a new sample in any of them means a new answer."""
        versions = tuple(self.store.version(f) for f in frames)
        return self.cache.get((name, versions, args), compute)

    # -- lag ------------------------------------------------------------------------
    def clusters(self) -> pd.DataFrame:
        """Every cluster the store holds rows of now (``broker``, ``kind``), by name: from
        the snapshots of groups, dead-letter queues and topics (a few columns of each)."""
        def compute():
            frames = [self.store.get(name, columns=["broker", "kind"]) for name in CLUSTER_FRAMES]
            rows = pd.concat([f for f in frames if not f.empty] or [pd.DataFrame(columns=["broker", "kind"])],
                             ignore_index=True)
            rows = rows.dropna(subset=["broker"]).astype({"broker": str})
            rows["kind"] = rows["kind"].fillna(rows["broker"]).astype(str)
            return (rows.drop_duplicates("broker").sort_values("broker", kind="stable")
                    [["broker", "kind"]].reset_index(drop=True))
        return self.cached("clusters", CLUSTER_FRAMES, (), compute)

    def lag_groups(self, brokers: tuple[str, ...] = ()) -> pd.DataFrame:
        """Every group and topic now (``lag_groups``), worst first: status, then seconds behind;
        of the clusters ``brokers`` names when given (read from the file filtered)."""
        return self.cached("lag_groups", ("lag_groups",), (tuple(brokers),),
                           lambda: worst_first(self.store.get("lag_groups", where=_on(brokers))))

    def lag_page(self, search: str = "", statuses: tuple[str, ...] = (), brokers: tuple[str, ...] = (),
                 offset: int = 0, limit: int = 50) -> tuple[pd.DataFrame, int]:
        """One page of :meth:`lag_groups` matching a name search, statuses and brokers, and
        how many rows match in all."""
        def compute():
            rows = self.lag_groups(brokers)
            keep = pd.Series(True, index=rows.index)
            if search:
                needle = search.lower()
                keep &= (rows["group"].str.lower().str.contains(needle, regex=False)
                         | rows["topic"].str.lower().str.contains(needle, regex=False)).fillna(False)
            if statuses:
                keep &= rows["status"].isin(statuses).fillna(False)
            matched = rows[keep.to_numpy()]
            return matched.iloc[offset:offset + limit].reset_index(drop=True), int(len(matched))
        return self.cached("lag_page", ("lag_groups",), (search, statuses, brokers, offset, limit), compute)

    def status_counts(self, brokers: tuple[str, ...] = ()) -> pd.DataFrame:
        """Group-topics per broker and status now (of ``brokers`` when given)."""
        def compute():
            rows = self.store.get("lag_groups", columns=["broker", "status"], where=_on(brokers))
            return rows.groupby(["broker", "status"], observed=True).size().rename("count").reset_index()
        return self.cached("status_counts", ("lag_groups",), (tuple(brokers),), compute)

    def lag_partitions(self, broker: str | None = None, group: str | None = None,
                       topics: tuple[str, ...] = ()) -> pd.DataFrame:
        """The newest row of every partition (``lag_latest``), of one group or topics if asked."""
        where = {k: v for k, v in (("broker", broker), ("group", group)) if v is not None}
        if topics:
            where["topic"] = list(topics)
        return self.cached("lag_partitions", ("lag_latest",), (broker, group, topics),
                            lambda: self.store.get("lag_latest", where=where))

    def group_history(self, broker: str, group: str, since: pd.Timestamp,
                      top: int = HISTORY_SERIES) -> pd.DataFrame:
        """One group's lag per minute and topic since ``since`` (``lag_1m`` and the open
        minute). A group on more than ``top`` + 1 topics (a Redis group reading thousands
        of streams) gets its ``top`` worst topics now, and one series for the rest
        (:func:`other_series`: lag summed, seconds behind the most), aggregated by DuckDB."""
        def compute():
            columns = ["minute", "topic", "lag", "lag_max", "lag_seconds"]
            where = {"broker": broker, "group": group}
            now = self.lag_groups()
            topics = list(now.loc[(now["broker"] == broker) & (now["group"] == group), "topic"])
            open_rows = self.store.get("lag_1m_open", columns=columns, where=where)
            if len(topics) <= top + 1:
                closed = self.scan("lag_1m", since=since, columns=columns, where=where)
                out = pd.concat([closed, open_rows], ignore_index=True) if not open_rows.empty else closed
                return out.sort_values("minute", kind="stable").reset_index(drop=True)
            kept, other = topics[:top], other_series(len(topics) - top)
            sums = {"lag": "sum", "lag_max": "max", "lag_seconds": "max"}
            if self.engine == "pyarrow":
                closed = _fold(self.scan("lag_1m", since=since, columns=columns, where=where), kept, other, sums)
            else:
                closed = _scanner().grouped(self.store, "lag_1m", ["minute", "topic"], sums, since=since,
                                            where=where, relabel=("topic", kept, other))
            out = pd.concat([closed, _fold(open_rows, kept, other, sums)], ignore_index=True)
            out = schemas.conform("lag_1m", out, columns=columns)
            return out.sort_values(["minute", "topic"], kind="stable").reset_index(drop=True)
        return self.cached("group_history", ("lag_groups", "lag_1m", "lag_1m_open"),
                            (broker, group, since.floor("1min"), top), compute)

    def worst_history(self, since: pd.Timestamp, limit: int = 10, brokers: tuple[str, ...] = ()) -> pd.DataFrame:
        """Lag per minute of the ``limit`` worst groups now (the Overview's chart): one
        ``series`` per broker:group, summed over its topics; of ``brokers`` when given."""
        def compute():
            worst = self.lag_groups(brokers).drop_duplicates(["broker", "group"]).head(limit)
            if worst.empty:
                return pd.DataFrame(columns=["minute", "series", "lag", "lag_seconds"])
            where = {"group": list(worst["group"]), "broker": sorted(set(worst["broker"]))}
            columns = ["minute", "broker", "group", "lag", "lag_seconds"]
            rows = pd.concat([self.scan("lag_1m", since=since, columns=columns, where=where),
                              self.store.get("lag_1m_open", columns=columns, where=where)], ignore_index=True)
            rows = rows.merge(worst[["broker", "group"]], on=["broker", "group"])
            rows["series"] = rows["broker"] + ":" + rows["group"]
            out = rows.groupby(["minute", "series"], observed=True).agg(
                lag=("lag", "sum"), lag_seconds=("lag_seconds", "max")).reset_index()
            return out
        return self.cached("worst_history", ("lag_groups", "lag_1m", "lag_1m_open"),
                            (since.floor("1min"), limit, tuple(brokers)), compute)

    def members(self, broker: str, group: str) -> pd.DataFrame:
        """A group's members in its newest sample."""
        return self.cached("members", ("consumers_latest",), (broker, group),
                            lambda: self.store.get("consumers_latest", where={"broker": broker, "group": group}))

    def stuck(self, broker: str | None = None, group: str | None = None) -> pd.DataFrame:
        """Stuck pending entries in the newest sample (of one group if asked)."""
        where = {k: v for k, v in (("broker", broker), ("group", group)) if v is not None}
        return self.cached("stuck", ("stuck_latest",), (broker, group),
                            lambda: self.store.get("stuck_latest", where=where))

    def partition_history(self, broker: str, group: str, since: pd.Timestamp) -> pd.DataFrame:
        """Raw per-partition lag rows of one group (within the store's raw window)."""
        return self.cached("partition_history", ("lag",), (broker, group, since.floor("10s")),
                            lambda: self.scan("lag", since=since, where={"broker": broker, "group": group}))

    # -- dead letters --------------------------------------------------------------------
    def dlq_summary(self, now: pd.Timestamp | None = None, brokers: tuple[str, ...] = ()) -> pd.DataFrame:
        """One row per DLQ: depth, growth over 5 minutes, oldest age, reasons, unprocessed and
        pre-DLQ pressure (``analysis.dlq.summary``), and ``sampled_at`` of its newest sample;
        of the clusters ``brokers`` names when given."""
        def compute():
            start = _newest(self.store, "dlq", DLQ_WINDOW_S)
            dlq = self.scan("dlq", since=start, where=_on(brokers))
            dlq = dlq[dlq["sampled_at"] > start]  # the window is (newest - 5 min, newest], as the alerts see it
            if dlq.empty:
                return dlq_analysis.summary(dlq).assign(sampled_at=pd.Series(dtype="datetime64[ns, UTC]"))
            lag = self.store.get("lag_latest", where={"topic": sorted(set(dlq["dlq"].astype(str))),
                                                      **_on(brokers)})
            out = dlq_analysis.summary(dlq, window_s=DLQ_WINDOW_S, now=now, lag=lag,
                                       stuck=self.store.get("stuck_latest", where=_on(brokers)))
            newest = dlq.groupby(["broker", "dlq"], observed=True)["sampled_at"].max().rename("sampled_at")
            return out.join(newest, on=["broker", "dlq"])
        return self.cached("dlq_summary", ("dlq", "lag_latest", "stuck_latest"), (now, tuple(brokers)), compute)

    def dlq_history(self, since: pd.Timestamp, brokers: tuple[str, ...] = ()) -> pd.DataFrame:
        """Depth per minute of every DLQ since ``since`` (``dlq_1m`` and the open minute), of
        ``brokers`` when given."""
        def compute():
            columns = ["minute", "broker", "dlq", "depth", "depth_max"]
            rows = pd.concat([self.scan("dlq_1m", since=since, columns=columns, where=_on(brokers)),
                              self.store.get("dlq_1m_open", columns=columns, where=_on(brokers))],
                             ignore_index=True)
            return rows.sort_values("minute", kind="stable").reset_index(drop=True)
        return self.cached("dlq_history", ("dlq_1m", "dlq_1m_open"), (since.floor("1min"), tuple(brokers)),
                           compute)

    def dead_letters(self, broker: str, dlq: str, since: pd.Timestamp) -> pd.DataFrame:
        """The dead letters of one DLQ read since ``since`` (``events`` rows, filtered in the files)."""
        return self.cached("dead_letters", ("events",), (broker, dlq, since.floor("10s")),
                            lambda: self.scan("events", since=since,
                                              where={"broker": broker, "topic": dlq, "dead_letter": True}))

    def dlq_reasons_over_time(self, broker: str, dlq: str, since: pd.Timestamp) -> pd.DataFrame:
        """Dead letters of one DLQ per minute and reason."""
        return dlq_analysis.reasons_over_time(self.dead_letters(broker, dlq, since), broker, dlq)

    def dlq_messages(self, broker: str, dlq: str, since: pd.Timestamp, limit: int = 100) -> pd.DataFrame:
        """The newest dead letters of one DLQ."""
        return dlq_analysis.recent_messages(self.dead_letters(broker, dlq, since), broker, dlq, limit=limit)

    # -- events, traces, health ----------------------------------------------------------
    def events(self, since: pd.Timestamp, columns: tuple[str, ...] | None = None,
               brokers: tuple[str, ...] = (), share: float = 1.0) -> pd.DataFrame:
        """``events`` since ``since``, only ``columns`` if given, of ``brokers`` when given;
        ``share`` < 1: that share of the correlation IDs (see :meth:`events_share`)."""
        def compute():
            if share < 1:
                return _scanner().scan(self.store, "events", since, None, list(columns) if columns else None,
                                       _on(brokers), share=share)
            return self.scan("events", since=since, columns=list(columns) if columns else None, where=_on(brokers))
        return self.cached("events", ("events",), (since.floor("10s"), columns, tuple(brokers), share), compute)

    def events_share(self, since: pd.Timestamp) -> float:
        """What share of the events since ``since`` a whole-window view reads: 1 when the
        parts in range hold at most :data:`GRAPH_EVENTS` rows, else the largest power of ½
        that brings them under it (a power of 2, so the IDs kept stay the same as the
        window fills up, and a chart does not change its sample on every refresh). Always 1
        with the pyarrow engine, which reads whole windows."""
        if self.engine != "duckdb":
            return 1.0
        rows = sum(p.get("rows") or 0 for p in self.store.part_entries("events")
                   if p.get("tmax") is not None and pd.Timestamp(p["tmax"]) >= since)
        share = 1.0
        while rows * share > GRAPH_EVENTS:
            share /= 2
        return share

    def event_samples(self, since: pd.Timestamp, per_type: int, brokers: tuple[str, ...] = ()) -> pd.DataFrame:
        """The newest ``per_type`` live, decoded events of each (event type, schema version)
        since ``since``, with their masked payload and headers: what the catalog infers
        shapes from, without decoding every payload of the window."""
        columns = ["event_type", "schema_version", "payload", "headers", "correlation_id", "broker", "topic",
                   "service", "at", "dead_letter"]
        condition = """NOT coalesce("dead_letter", FALSE) AND "event_type" IS NOT NULL AND "event_type" <> '<undecodable>'"""
        def compute():
            if self.engine == "duckdb":
                return _scanner().newest_per(self.store, "events", ["event_type", "schema_version"], per_type,
                                             columns, since=since, condition=condition, where=_on(brokers))
            return infer.samples(self.scan("events", since=since, columns=columns, where=_on(brokers)), per_type)
        return self.cached("event_samples", ("events",), (since.floor("10s"), per_type, tuple(brokers)), compute)

    def trace_summary(self, since: pd.Timestamp, quiet_s: float, brokers: tuple[str, ...] = ()) -> pd.DataFrame:
        """Per correlation ID since ``since``: first/last time, events, duration, outcome; of
        the events on ``brokers`` when given."""
        columns = ("correlation_id", "at", "broker_at", "dead_letter", "offset")

        def compute():
            if self.engine == "duckdb":  # one row per ID comes back, not every event of the window
                return trace_analysis.summary_of(_scanner().per_trace(self.store, since, _on(brokers)),
                                                 quiet_s=quiet_s)
            return trace_analysis.summary(self.events(since, columns, brokers), quiet_s=quiet_s)
        return self.cached("trace_summary", ("events",), (since.floor("10s"), quiet_s, tuple(brokers)), compute)

    def consumed_topics(self, since: pd.Timestamp) -> dict:
        """What each producer (service, event type) reads, learned from the events since
        ``since`` and the consumer groups now (``analysis.causality``): the trace page's hops
        follow it, as the flow graph's ``causes`` edges do."""
        columns = ("broker", "topic", "service", "event_type", "correlation_id", "at", "dead_letter")
        return self.cached("consumed_topics", ("events", "lag_groups"), (since.floor("10s"),),
                           lambda: causality.consumed_topics(self.events(since, columns), self.lag_groups()))

    def span_links(self, since: pd.Timestamp) -> dict:
        """OpenTelemetry spans read since ``since`` (and a few minutes before: a send span is
        exported before the spans that point at it): ``{span_id: (parent_span_id, links)}``,
        what :func:`eventscope.analysis.causality.span_causes` walks. Empty without spans."""
        def compute():
            rows = self.scan("spans", since=since - pd.Timedelta(minutes=5),
                             columns=["span_id", "parent_span_id", "links"])
            return causality.span_index(rows)
        return self.cached("span_links", ("spans",), (since.floor("10s"),), compute)

    def trace_spans(self, trace_ids, since: pd.Timestamp) -> dict:
        """:meth:`span_links` of the spans of ``trace_ids`` only (a message's span and the
        spans above it share its trace), read since ``since``: what one trace's hops need."""
        wanted = sorted({t for t in trace_ids if isinstance(t, str) and t})
        if not wanted:
            return {}
        return self.cached("trace_spans", ("spans",), (tuple(wanted), since.floor("10s")), lambda: causality.span_index(
            self.scan("spans", since=since - pd.Timedelta(minutes=5), columns=["span_id", "parent_span_id", "links"],
                      where={"trace_id": wanted})))

    def health(self, since: pd.Timestamp) -> pd.DataFrame:
        """Collector runs since ``since``."""
        return self.cached("health", ("health",), (since.floor("10s"),),
                            lambda: self.scan("health", since=since))

    def observations(self, at: pd.Timestamp, metrics: frozenset | None = None) -> pd.DataFrame:
        """Every (metric, subject) the alert rules judge, as of ``at`` (``analysis.alerts``).

        Not cached: each evaluation asks at a new moment, and the rows (a tuple of names
        each) are large for what a cache could save."""
        return alerts.observe_now(self.store.get("lag_groups"), self.dlq_summary(),
                                  self.store.get("stuck_latest"),
                                  self.health(at - pd.Timedelta(seconds=900)), at=at, metrics=metrics)

    def replay_rules(self, rules: list, since: pd.Timestamp, key: str) -> tuple[dict, pd.DataFrame]:
        """What ``rules`` would have done since ``since`` (``key`` names the rules for the
        cache): sample by sample within the raw window, minute by minute further back."""
        raw_floor = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=self.store.retention.raw_window_s)
        if since >= raw_floor - pd.Timedelta(minutes=1):  # (the floor moved on a moment since)
            return self.cached("replay_samples", ("lag_samples", "dlq", "health"), (since.floor("5s"), key),
                                lambda: alerts.replay_samples(self.scan("lag_samples", since=since),
                                                              self.scan("dlq", since=since), rules,
                                                              health=self.health(since), since=since))

        def compute():
            # the minute in progress too: a store nobody evaluates is judged up to its newest sample
            lag_1m = pd.concat([self.scan("lag_1m", since=since), self.store.get("lag_1m_open")],
                               ignore_index=True)
            dlq_1m = pd.concat([self.scan("dlq_1m", since=since), self.store.get("dlq_1m_open")],
                               ignore_index=True)
            return alerts.replay_minutes(lag_1m, dlq_1m, rules, health=self.health(since), since=since,
                                         now=pd.Timestamp.now(tz="UTC"))
        return self.cached("replay_rules", ("lag_1m", "lag_1m_open", "dlq_1m", "dlq_1m_open", "health"),
                            (since.floor("1min"), key), compute)

    def topics(self) -> pd.DataFrame:
        """The newest offsets of every partition (``topics_latest``)."""
        return self.cached("topics", ("topics_latest",), (), lambda: self.store.get("topics_latest"))

    def consumers(self) -> pd.DataFrame:
        """Every group's members (Kafka) or consumers (Redis) in its newest sample
        (``consumers_latest``)."""
        return self.cached("consumers", ("consumers_latest",), (), lambda: self.store.get("consumers_latest"))


def _on(brokers) -> dict:
    """The ``where`` that keeps the rows of the clusters ``brokers`` names (none: every row)."""
    return {"broker": sorted(brokers)} if brokers else {}


_SCANNER: Scanner | None = None
_SCANNER_LOCK = threading.Lock()


def _scanner() -> Scanner:
    """The process's DuckDB scanner (made on first use)."""
    global _SCANNER
    with _SCANNER_LOCK:
        if _SCANNER is None:
            _SCANNER = Scanner()
        return _SCANNER


def worst_first(groups: pd.DataFrame) -> pd.DataFrame:
    """``lag_groups`` rows ordered for people: worst status, then the oldest unconsumed
    message, then the most messages behind."""
    if groups.empty:
        return groups.reset_index(drop=True)
    severity = groups["status"].map(lag_analysis.SEVERITY).fillna(0)
    out = groups.assign(_sev=-severity, _sec=-groups["lag_seconds"].fillna(-1.0),
                        _lag=-groups["lag"].astype("float64").fillna(-1.0))
    out = out.sort_values(["_sev", "_sec", "_lag", "broker", "group", "topic"], kind="stable")
    return out.drop(columns=["_sev", "_sec", "_lag"]).reset_index(drop=True)


def _newest(store: Store, name: str, window_s: float) -> pd.Timestamp:
    newest = store.newest_time(name)
    if newest is None:
        return pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=window_s)
    return newest - pd.Timedelta(seconds=window_s)


def other_series(count: int) -> str:
    """The name of the series that stands for ``count`` topics not charted one by one."""
    return f"(other {count:,} topics)"


def _fold(rows: pd.DataFrame, kept: list, other: str, aggregates: dict[str, str]) -> pd.DataFrame:
    """``rows`` per minute and topic, with topics outside ``kept`` summed into ``other``."""
    if rows.empty:
        return pd.DataFrame(columns=["minute", "topic", *aggregates])
    topic = rows["topic"].astype(object).where(rows["topic"].isin(kept), other)
    return (rows.assign(topic=topic).groupby(["minute", "topic"], sort=True, observed=True)
            .agg(aggregates).reset_index())
