"""Oracles: what evaluates an architecture (a benchmark table, real training, a supernet)."""

from archrank.oracles.base import Evaluation, Oracle

__all__ = ["Evaluation", "Oracle"]
