"""Durable searches: the run store (SQLite), the search loop, configurations, benchmarks."""

from archrank.runs.config import SearchConfig, build_oracle, build_strategy
from archrank.runs.loop import SearchResult, executor_for, replay, run_search
from archrank.runs.store import EvalRecord, RunStore

__all__ = [
    "EvalRecord",
    "RunStore",
    "SearchConfig",
    "SearchResult",
    "build_oracle",
    "build_strategy",
    "executor_for",
    "replay",
    "run_search",
]
