"""Run every benchmark and print its figures."""
from bench import graph_bench, lag_bench, store_bench, trace_bench

if __name__ == "__main__":
    store_bench.main()
    lag_bench.main()
    graph_bench.main()
    trace_bench.main()
