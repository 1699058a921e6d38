"""Run every benchmark and print its figures."""
from bench import store_bench

if __name__ == "__main__":
    store_bench.main()
