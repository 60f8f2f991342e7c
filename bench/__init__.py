"""Benchmarks (not tests): ``python -m bench.bench_encryption``."""
