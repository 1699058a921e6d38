"""Benchmarks: `make bench` (or `python -m bench`) prints figures; nothing here asserts."""
