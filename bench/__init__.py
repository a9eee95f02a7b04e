"""Benchmarks, run by hand (never in CI). Each prints a table and writes JSON."""
