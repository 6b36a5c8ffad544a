"""Benchmark entries, one module per area (see scripts/benchmark.py)."""
