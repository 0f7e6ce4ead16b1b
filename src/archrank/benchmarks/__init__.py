"""Benchmarks: tabular oracles read from files users bring (CSV, JSON Lines, official formats)."""
