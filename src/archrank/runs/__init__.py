"""Durable searches: the run store (SQLite), the search loop, configurations, benchmarks."""

from archrank.runs.config import SearchConfig, build_oracle, build_strategy
from archrank.runs.loop import SearchResult, SyncExecutor, make_executor, replay, run_search
from archrank.runs.store import EvalRecord, RunStore

__all__ = [
    "EvalRecord",
    "RunStore",
    "SearchConfig",
    "SearchResult",
    "SyncExecutor",
    "build_oracle",
    "build_strategy",
    "make_executor",
    "replay",
    "run_search",
]
