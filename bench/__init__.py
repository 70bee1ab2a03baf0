"""Benchmarks: `make bench` runs them (quick mode) and rewrites docs/benchmarks.md."""
