"""What ``eventscope collect`` carries: only the libraries it uses, and a bounded number of
glibc heaps for its many threads (README, "Sized for real clusters": ≤ 300 MiB alone)."""
import subprocess
import sys

# the modules `eventscope collect` runs: the CLI, the runner and recorder, alerting and the
# query layer, every collector kind
COLLECT = ("eventscope.cli", "eventscope.runner", "eventscope.recorder", "eventscope.alerting",
           "eventscope.query", "eventscope.collectors.kafka.build", "eventscope.collectors.redis",
           "eventscope.collectors.rabbitmq", "eventscope.collectors.otlp")


def test_collecting_imports_no_drawing_or_dashboard_library():
    """networkx alone is 12 MiB of a collector's memory; pyvis, plotly, Streamlit and DuckDB
    more. The collector imports the graph package for ``infer`` only."""
    code = ("import importlib, sys\n"
            f"for m in {COLLECT!r}: importlib.import_module(m)\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split())
    assert {"eventscope", "pandas", "pyarrow", "confluent_kafka"} <= loaded
    assert not loaded & {"networkx", "pyvis", "plotly", "streamlit", "duckdb"}


def test_the_graph_package_still_offers_build_graph():
    import eventscope.graph
    from eventscope.graph.build import build_graph
    assert eventscope.graph.build_graph is build_graph
    try:
        eventscope.graph.nothing_here  # noqa: B018
    except AttributeError as exc:
        assert "nothing_here" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


HEAPS = """
import ctypes, os, sys, tempfile, threading
from eventscope import memory
if sys.argv[1] == "limited":
    assert memory.limit_arenas(1)
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
held, ready = [], threading.Barrier(9)
def work():
    held.append([ctypes.create_string_buffer(4096) for _ in range(64)])  # malloc'ed on this thread
    ready.wait()
    ready.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in threads]
ready.wait()  # every thread holds its buffers now
path = tempfile.mktemp()
fh = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(fh))
libc.fclose(ctypes.c_void_p(fh))
ready.wait()
[t.join() for t in threads]
print(open(path).read().count("<heap nr="))
os.unlink(path)
"""


def test_limit_arenas_keeps_threads_to_the_heaps_it_allows():
    """Eight threads allocating at once get heaps of their own (glibc allows 8 × cores);
    after ``limit_arenas(1)`` they share one (beside a heap a library's thread may have made
    while pyarrow was imported, before the limit)."""
    def heaps(mode):
        out = subprocess.run([sys.executable, "-c", HEAPS, mode], capture_output=True, text=True, timeout=60,
                             env={k: v for k, v in __import__("os").environ.items() if k != "MALLOC_ARENA_MAX"})
        assert out.returncode == 0, out.stderr
        return int(out.stdout)
    assert heaps("limited") <= 2 < 8 <= heaps("free")


def test_the_query_engine_is_capped_and_gives_back_what_it_freed():
    """The dashboard's DuckDB: 256 MB for scans, two threads, and at most 16 MB of freed
    memory kept by its allocator after a query (its default keeps 128 MB), purged in the
    background."""
    from eventscope.query import Scanner
    scanner = Scanner()
    settings = dict(scanner.connection.execute(
        "select name, value from duckdb_settings() where name in ('memory_limit', 'threads', "
        "'allocator_flush_threshold', 'allocator_background_threads')").fetchall())
    assert settings["threads"] == "2"
    assert settings["allocator_background_threads"] == "true"
    assert settings["allocator_flush_threshold"] == "16MB"  # as given: DuckDB shows this one unparsed
    assert settings["memory_limit"] in ("244.1 MiB", "256.0 MB", "256.0 MiB")
