"""Benchmarks for painterly, kept out of the test suite: ``python -m benchmarks.speed`` writes BENCHMARKS.md."""
