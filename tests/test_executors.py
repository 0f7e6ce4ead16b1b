"""Executors: inline, process pool and a real Dask cluster on loopback give serial results."""

from __future__ import annotations

from concurrent.futures import as_completed

import numpy as np
import pytest

from archrank.datasets import ArrayDataset
from archrank.errors import ArchrankError
from archrank.executors import DaskExecutor, InlineExecutor, make_executor
from archrank.oracles.training import TrainingOracle, TrainRecipe
from archrank.spaces import get_space

pytest.importorskip("distributed")


def _oracle() -> TrainingOracle:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 1, 12)).astype(np.float32)
    y = (x[:, 0, :6].sum(1) > 0).astype(np.int64)
    data = ArrayDataset.from_arrays("tiny", {"x_train": x[:60], "y_train": y[:60],
                                             "x_val": x[60:], "y_val": y[60:]})
    return TrainingOracle("nb201", data, width=4, depth=1, seed=3,
                          recipe=TrainRecipe(epochs=1, batch_size=20))


@pytest.fixture(scope="module")
def serial():
    oracle = _oracle()
    archs = get_space("nb201").sample(3, np.random.default_rng(7))
    return oracle, archs, [_strip(oracle.evaluate(a)) for a in archs]


def _strip(evaluation) -> dict:  # type: ignore[no-untyped-def]
    assert evaluation.ok, evaluation.error
    return {k: v for k, v in evaluation.metrics.items() if k != "train_seconds"}


def _run(executor, oracle, archs) -> list[dict]:  # type: ignore[no-untyped-def]
    futures = {executor.submit(oracle.evaluate, a): i for i, a in enumerate(archs)}
    results: list[dict] = [{}] * len(archs)
    for future in as_completed(futures):
        results[futures[future]] = _strip(future.result())
    return results


def test_inline_executor(serial) -> None:  # type: ignore[no-untyped-def]
    oracle, archs, expected = serial
    with make_executor("inline") as ex:
        assert isinstance(ex, InlineExecutor)
        assert _run(ex, oracle, archs) == expected
        failing = ex.submit(int, "x")
        assert isinstance(failing.exception(), ValueError)


def test_dask_local_cluster_on_loopback_matches_serial(serial) -> None:  # type: ignore[no-untyped-def]
    oracle, archs, expected = serial
    ex = DaskExecutor(workers=2, processes=False)
    try:
        assert ex.address.startswith("tcp://127.0.0.1:")
        assert len(ex.client.scheduler_info()["workers"]) == 2
        assert _run(ex, oracle, archs) == expected
        # a second client reaching the same scheduler by address (--scheduler ADDRESS)
        with make_executor("dask", scheduler=ex.address) as remote:
            assert _run(remote, oracle, archs[:1]) == expected[:1]
    finally:
        ex.shutdown()


def test_process_pool_matches_serial(serial) -> None:  # type: ignore[no-untyped-def]
    oracle, archs, expected = serial
    with make_executor("process", workers=2) as ex:
        assert _run(ex, oracle, archs) == expected


def test_executor_errors() -> None:
    with pytest.raises(ArchrankError, match="unknown executor 'mpi'"):
        make_executor("mpi")
    with pytest.raises(ArchrankError, match="workers must be at least 1"):
        make_executor("process", workers=0)
    with pytest.raises(ArchrankError, match="only meaningful with --executor dask"):
        make_executor("process", scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ArchrankError, match="cannot connect to the Dask scheduler"):
        DaskExecutor("tcp://127.0.0.1:9", timeout=1)


@pytest.mark.slow
def test_dask_worker_processes_match_serial(serial) -> None:  # type: ignore[no-untyped-def]
    """``--executor dask`` without a scheduler: a LocalCluster of 2 worker processes."""
    oracle, archs, expected = serial
    with make_executor("dask", workers=2) as ex:
        pids = ex.client.run(lambda: __import__("os").getpid())
        assert len(set(pids.values())) == 2
        assert _run(ex, oracle, archs) == expected


def test_a_dask_scheduler_without_workers_is_a_one_line_error() -> None:
    """A search on it waited forever, silently."""
    distributed = pytest.importorskip("distributed")
    from archrank.executors import DaskExecutor

    with distributed.LocalCluster(n_workers=0, host="127.0.0.1", protocol="tcp://",
                                  dashboard_address=None, processes=False) as empty, \
            pytest.warns(UserWarning, match="no Dask worker has joined"), \
            pytest.raises(ArchrankError, match=r"has no workers .*dask worker"):
        DaskExecutor(empty.scheduler_address, timeout=2, workers_timeout=6)
    with distributed.LocalCluster(n_workers=0, host="127.0.0.1", protocol="tcp://",
                                  dashboard_address=None, processes=False) as empty, \
            pytest.raises(ArchrankError, match=r"none joined within 2 s"):
        DaskExecutor(empty.scheduler_address, timeout=2, workers_timeout=2)  # no endless wait


def test_an_oracle_is_unpickled_once_per_worker_not_per_evaluation(serial) -> None:
    """Every evaluation shipped the whole oracle (the nb201 table: 2.4 MB, a third of a second
    to unpickle); a tabular search on 2 processes took 12 s for 80 cells, 3.6 s now."""
    import pickle

    from archrank.runs.loop import ShippedOracle, for_executor

    oracle, archs, expected = serial
    shipped = for_executor(oracle, make_executor("process", 1))
    assert isinstance(shipped, ShippedOracle)
    assert for_executor(oracle, make_executor("inline")) is oracle
    first = pickle.loads(pickle.dumps(shipped))
    assert pickle.loads(pickle.dumps(shipped)) is first  # the worker's copy, kept
    assert _strip(first.evaluate(archs[0])) == expected[0]
    other = pickle.loads(pickle.dumps(ShippedOracle(oracle)))
    assert other is not first  # another oracle (or another run) is its own
