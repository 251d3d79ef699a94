"""Benchmarks and answer-quality evaluations (see bench/README.md)."""
