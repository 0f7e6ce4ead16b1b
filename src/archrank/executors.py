"""Where evaluations run: any ``concurrent.futures.Executor``.

``make_executor(kind, workers, scheduler)`` gives

``"inline"``   the calling process, synchronously (the default; no pickling, easy to debug)
``"process"``  a pool of ``workers`` fresh processes on this machine ("spawn" start, so no
               forked torch state; the oracle and architectures are pickled to them)
``"dask"``     a Dask distributed cluster: the scheduler at ``scheduler`` (``tcp://host:port``)
               when given, else a ``LocalCluster`` of ``workers`` single-threaded processes on
               the loopback interface without dashboard. Needs ``pip install 'archrank[dask]'``;
               remote workers need archrank installed.

Every executor hands back standard ``concurrent.futures.Future`` objects, so the search keeps
N evaluations in flight with ``concurrent.futures.wait`` whatever runs them. Close executors
with ``shutdown()`` or a ``with`` block (the Dask one also closes its client and cluster).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any

from archrank.errors import ArchrankError

EXECUTORS: tuple[str, ...] = ("inline", "process", "dask")


class InlineExecutor(Executor):
    """Runs each call when it is submitted, in this process; the future is already done."""

    def __init__(self) -> None:
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if self._shutdown:
            raise RuntimeError("cannot submit to an executor that was shut down")
        future: Future = Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # the future carries it, as a pool's would
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True


def die_with_parent(parent: int, pdeathsig: bool = True) -> None:
    """End this worker process when its parent ends, even by SIGKILL: on Linux the kernel
    sends it SIGKILL (``PR_SET_PDEATHSIG``), elsewhere a daemon thread polls the parent.
    A worker whose parent is already gone exits at once."""
    import os
    import time

    armed = False
    if pdeathsig and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:  # the parent died before we could ask
        os._exit(1)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="archrank-parent-watch", daemon=True).start()


def worker_init(parent: int, threads: int = 1, pdeathsig: bool = True) -> None:
    """Initializer of archrank's worker processes: ``threads`` torch threads (workers share
    the machine's cores), Ctrl-C left to the parent (which stops the job cleanly and keeps
    what finished), and the worker ends with its parent (``die_with_parent``)."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent, pdeathsig)
    torch.set_num_threads(threads)


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, not the host's total)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def process_pool(workers: int, threads: int = 1,
                 option: str = "--workers") -> ProcessPoolExecutor:
    """A pool of ``workers`` fresh ("spawn") processes set up by ``worker_init``."""
    import os

    # PR_SET_PDEATHSIG fires when the *thread* that started the worker ends: only arm it when
    # that is the main thread (the pool starts workers from the thread that submits).
    main = threading.current_thread() is threading.main_thread()
    cores = available_cores()
    if workers * threads > cores:  # allowed (a worker may wait on I/O), but rarely meant
        warnings.warn(f"{workers} worker processes x {threads} thread(s) on {cores} core(s): "
                      f"they share the cores (slower each, more memory; {option} sets how "
                      "many)", stacklevel=2)
    return ProcessPoolExecutor(max_workers=workers,
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=worker_init, initargs=(os.getpid(), threads, main))


def stop_pool(executor: Executor) -> None:
    """Stop a process pool now: terminate running workers (they ignore Ctrl-C) instead of
    waiting for their tasks, and cancel the queued ones. Other executors are left alone."""
    if isinstance(executor, ProcessPoolExecutor):
        for proc in list((getattr(executor, "_processes", None) or {}).values()):
            proc.terminate()
        executor.shutdown(wait=False, cancel_futures=True)
        # Let the pool's manager thread finish closing its wake-up pipe now: at interpreter
        # exit CPython 3.11 wakes every such thread, and a pipe closed between its "closed?"
        # check and its write printed an OSError traceback after Ctrl-C (seen once in a
        # test run). The workers are gone, so the thread ends at once; the timeout is a guard.
        manager = getattr(executor, "_executor_manager_thread", None)
        if manager is not None and manager.is_alive():
            manager.join(timeout=10)


def close_now(executor: Executor) -> None:
    """Close an executor without waiting for work in flight (after Ctrl-C: a process pool's
    workers ignore it, so a plain shutdown would wait for their trainings and then drop
    them); a finished job loses nothing."""
    if isinstance(executor, ProcessPoolExecutor):
        stop_pool(executor)
    else:
        executor.shutdown(wait=False, cancel_futures=True)


class DaskExecutor(Executor):
    """A Dask distributed client seen as an ``Executor`` (owns its client and cluster)."""

    def __init__(self, scheduler: str | None = None, workers: int = 2, *,
                 processes: bool = True, timeout: float = 30.0,
                 workers_timeout: float = 300.0) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ArchrankError(
                "the dask executor needs Dask distributed: pip install 'archrank[dask]'"
            ) from None
        self.cluster = None
        self.client = None
        # the client side's own logs: a lost scheduler printed a 35-line traceback before the
        # one-line error of the search
        for name in ("distributed", "distributed.client", "distributed.worker",
                     "distributed.core", "distributed.comm", "distributed.batched"):
            logging.getLogger(name).setLevel(logging.CRITICAL)  # Dask sets some of its own
        try:
            if scheduler:
                self.client = Client(scheduler, timeout=timeout)
                self._wait_for_workers(scheduler, workers_timeout)
            else:
                # local workers leave Ctrl-C to this process (each printed a traceback), as
                # process_pool's do: they inherit the ignored signal when they start
                previous = signal.signal(signal.SIGINT, signal.SIG_IGN) \
                    if threading.current_thread() is threading.main_thread() else None
                try:
                    self.cluster = LocalCluster(
                        n_workers=workers, threads_per_worker=1, processes=processes,
                        host="127.0.0.1", protocol="tcp://", dashboard_address=None,
                        silence_logs=logging.CRITICAL,
                    )
                finally:
                    if previous is not None:
                        signal.signal(signal.SIGINT, previous)
                self.client = Client(self.cluster, timeout=timeout)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:  # also a bad address
            self._close()
            where = scheduler or "a local cluster"
            raise ArchrankError(f"cannot connect to the Dask scheduler {where} ({exc})") from None
        except ArchrankError:
            self._close()
            raise
        self._executor = self.client.get_executor(pure=False)

    def _wait_for_workers(self, scheduler: str, limit: float) -> None:
        """A scheduler without workers would take the tasks and never answer: wait for one
        (a batch queue may start them minutes later), saying so, up to ``limit`` seconds."""
        import warnings

        assert self.client is not None
        try:  # (a timeout of 0 would mean no deadline to distributed)
            self.client.wait_for_workers(1, timeout=max(0.1, min(5.0, limit)))
            return
        except TimeoutError:
            pass
        error = ArchrankError(f"the Dask scheduler {scheduler} has no workers (none joined "
                              f"within {limit:g} s); start some with: dask worker {scheduler}")
        if limit <= 5.0:
            raise error
        warnings.warn(f"no Dask worker has joined {scheduler} yet; waiting up to {limit:g} s "
                      f"(start some with: dask worker {scheduler})", stacklevel=3)
        try:  # (a timeout of 0 would mean no deadline to distributed)
            self.client.wait_for_workers(1, timeout=limit - 5.0)
        except TimeoutError:
            raise error from None

    def _close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    @property
    def address(self) -> str:
        return str(self.client.scheduler.address)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        try:
            self._executor.shutdown(wait=wait)
        finally:
            self._close()


def make_executor(kind: str = "inline", workers: int = 1,
                  scheduler: str | None = None) -> Executor:
    """The executor ``kind`` with ``workers`` workers (see the module docstring)."""
    if kind not in EXECUTORS:
        raise ArchrankError(f"unknown executor {kind!r}; choose from {', '.join(EXECUTORS)}")
    if workers < 1:
        raise ArchrankError(f"workers must be at least 1, got {workers}")
    if scheduler and kind != "dask":
        raise ArchrankError("--scheduler is only meaningful with --executor dask")
    if kind == "inline":
        return InlineExecutor()
    if kind == "process":
        return process_pool(workers)
    return DaskExecutor(scheduler, workers)
