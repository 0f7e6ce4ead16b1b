"""The search loop: a strategy proposes, an oracle evaluates through an Executor, a store records.

``run_search`` keeps up to ``max_in_flight`` evaluations running on any
``concurrent.futures.Executor`` (``InlineExecutor`` in-process by default, a process pool, Dask),
records each result in the ``RunStore`` the moment it arrives, and tells the strategy.

Determinism. With ``ordered=True`` (the default) results are told to the strategy in the order
the architectures were proposed, and the strategy is asked for new work only right after a
tell, for as many as there are free slots; the sequence of ask/tell calls, hence the whole
search, then depends on the seed and ``max_in_flight`` (``--workers``) alone, not on which
worker finishes first, so with the same number in flight a process pool and a Dask cluster
evaluate the same cells (one in flight, as in a serial run, asks for one cell at a time:
another sequence). ``ordered=False`` tells results as
they arrive (no worker waits for a slow one; not reproducible across executors).

Resume. The store records every ask call (how many tells preceded it, how many it requested)
and the position of every tell; ``replay`` rebuilds a fresh strategy with the same seed by
repeating those calls in order, checking that it proposes what was recorded, so it reaches
exactly the state of the interrupted run. Results that were recorded but not yet told are
told without re-evaluation; proposals whose evaluation was in flight are submitted again.
"""

from __future__ import annotations

import pickle
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from archrank.errors import ArchrankError, first_line
from archrank.executors import InlineExecutor, make_executor, stop_pool
from archrank.oracles.base import Evaluation, Oracle
from archrank.runs.store import EvalRecord, RunStore
from archrank.strategies.base import Strategy


def executor_for(workers: int, kind: str | None = None,
                 scheduler: str | None = None) -> Executor:
    """In-process for one worker, else a process pool, or ``kind`` (see archrank.executors)."""
    if kind is None:
        kind = "dask" if scheduler else ("inline" if workers <= 1 else "process")
    return make_executor(kind, workers, scheduler)


def _unshippable(exc: BaseException) -> ArchrankError | None:
    """The error to raise when ``exc`` says the oracle (or a cell) cannot be pickled for a
    worker process: a setting that fails the same way on every resume, not a lost worker;
    else ``None``."""
    text = str(exc).lower()
    if isinstance(exc, pickle.PicklingError | TypeError | AttributeError) and (
            "cannot pickle" in text or "can't pickle" in text or "not picklable" in text):
        return ArchrankError(f"the oracle cannot be sent to worker processes "
                             f"({first_line(exc)}); evaluate in this process (--workers 1, "
                             "or --executor inline)")
    return None


def _worker_lost(exc: BaseException) -> bool:
    """Whether ``exc`` from a future comes from the machinery rather than the evaluation: its
    worker process is gone (a broken process pool, a future cancelled when Dask lost its
    scheduler, a closed connection to it), or the task could not be shipped to a worker or
    read there (a client and cluster with other environments). ``evaluate_arch`` turns an
    oracle's own errors (OSError included) into failed evaluations."""
    from concurrent.futures import BrokenExecutor, CancelledError

    text = str(exc).lower()
    return (isinstance(exc, BrokenExecutor | CancelledError | OSError | pickle.PicklingError)
            or "serializ" in text or "pickl" in text)


def _killed_worker(exc: BaseException) -> bool:
    """Dask's verdict that this task killed several workers (it is the cell, not chance)."""
    return type(exc).__name__ == "KilledWorker"


class ShippedOracle:
    """An oracle on its way to worker processes: pickled once here, unpickled once per worker
    (kept there by a key), not once per evaluation. A table oracle is megabytes of pickle
    (nb201: 2.4 MB, a third of a second to unpickle), a training oracle its whole dataset.
    Unpickled, it is the oracle itself."""

    def __init__(self, oracle: Oracle) -> None:
        self.oracle = oracle
        self.key = uuid.uuid4().hex
        self._blob: bytes | None = None

    def evaluate(self, arch: Any) -> Evaluation:  # an executor that does not pickle
        return self.oracle.evaluate(arch)

    def __reduce__(self) -> tuple[Any, tuple[str, bytes]]:
        if self._blob is None:
            self._blob = pickle.dumps(self.oracle, protocol=pickle.HIGHEST_PROTOCOL)
        return _unship, (self.key, self._blob)


_WORKER_ORACLES: OrderedDict[str, Oracle] = OrderedDict()  # a worker's oracles, by key


def _unship(key: str, blob: bytes) -> Oracle:
    oracle = _WORKER_ORACLES.get(key)
    if oracle is None:
        oracle = _WORKER_ORACLES[key] = pickle.loads(blob)
        while len(_WORKER_ORACLES) > 4:  # a few at once (bench table: one per training seed)
            _WORKER_ORACLES.popitem(last=False)
    return oracle


def for_executor(oracle: Oracle, executor: Executor) -> Oracle | ShippedOracle:
    """What to submit with each evaluation: the oracle itself in this process, else the
    oracle shipped once (``ShippedOracle``)."""
    return oracle if isinstance(executor, InlineExecutor) else ShippedOracle(oracle)


def evaluate_arch(oracle: Oracle | ShippedOracle, arch: Any
                  ) -> tuple[Evaluation, float, float]:
    """Evaluate one architecture in a worker: ``(evaluation, started, finished)``.

    An exception becomes a failed evaluation, so one bad architecture never stops a search.
    """
    started = time.time()
    try:
        evaluation = oracle.evaluate(arch)
    except ArchrankError as exc:
        evaluation = Evaluation(status="failed", error=str(exc))
    except Exception as exc:
        evaluation = Evaluation(status="failed", error=f"{type(exc).__name__}: {exc}")
    return evaluation, started, time.time()


@dataclass
class SearchResult:
    """What a search evaluated, in proposal order (the order queries were spent)."""

    records: list[EvalRecord]
    objective: str
    interrupted: bool = False
    exhausted: bool = False
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> list[EvalRecord]:
        return [r for r in self.records if r.done]

    @property
    def n_evaluated(self) -> int:
        return len(self.finished)

    @property
    def n_failed(self) -> int:
        return sum(r.status == "failed" for r in self.records)

    @property
    def best(self) -> EvalRecord | None:
        ok = [r for r in self.records if r.status == "ok" and r.objective is not None]
        return max(ok, key=lambda r: r.objective) if ok else None  # type: ignore[arg-type,return-value]

    def values(self) -> np.ndarray:
        """Objective of each finished evaluation in proposal order (-inf when failed)."""
        return np.array([r.objective if r.status == "ok" and r.objective is not None
                         else -np.inf for r in self.finished], dtype=np.float64)

    def best_curve(self) -> np.ndarray:
        """Best objective after 1, 2, ... evaluations."""
        v = self.values()
        return np.maximum.accumulate(v) if len(v) else v

    def queries_to(self, target: float, tol: float = 1e-9) -> int | None:
        """Number of evaluations until one reached ``target`` (``None`` if none did)."""
        hit = np.flatnonzero(self.values() >= target - tol)
        return int(hit[0]) + 1 if len(hit) else None


@dataclass
class _Slot:
    """A proposal whose result has not been told yet."""

    seq: int
    arch: Any
    future: Future | None = None
    result: Evaluation | None = None


@dataclass
class ReplayState:
    """Where a replayed run stands: counters and the proposals not yet told."""

    n_told: int = 0
    next_batch: int = 0
    records: list[EvalRecord] = field(default_factory=list)
    untold: list[EvalRecord] = field(default_factory=list)
    diverged: int = 0


def replay(strategy: Strategy, store: RunStore) -> ReplayState:
    """Bring a fresh ``strategy`` to the state of the run in ``store`` (see module doc)."""
    space = strategy.space
    records = store.records()
    by_seq = {r.seq: r for r in records}
    by_batch: dict[int, list[EvalRecord]] = {}
    for r in records:
        by_batch.setdefault(r.batch, []).append(r)
    told = sorted((r for r in records if r.tell_seq is not None), key=lambda r: r.tell_seq)
    if [r.tell_seq for r in told] != list(range(len(told))):
        raise ArchrankError(f"{store.run_dir}: run database is inconsistent (tell order)")
    state = ReplayState(records=records)
    t = 0

    def tell_upto(n: int) -> None:
        nonlocal t
        while t < n:
            rec = told[t]
            strategy.tell(space.parse(rec.arch), rec.evaluation())
            t += 1

    for ask in store.asks():
        if ask.asked_after > len(told):
            raise ArchrankError(f"{store.run_dir}: run database is inconsistent (ask order)")
        tell_upto(ask.asked_after)
        expected = sorted(by_batch.get(ask.batch, []), key=lambda r: r.seq)
        proposed = strategy.ask(ask.requested) if ask.requested else []
        if [space.hash(a) for a in proposed] != [r.hash for r in expected]:
            # The strategy no longer reproduces the recording (another archrank version, or a
            # non-deterministic predictor): keep the recorded proposals and carry on.
            state.diverged += 1
            strategy.retract(proposed)  # unseen again: neither evaluated nor awaited
            strategy.adopt([space.parse(r.arch) for r in expected])
        state.next_batch = ask.batch + 1
    tell_upto(len(told))
    state.n_told = len(told)
    state.untold = [by_seq[s] for s in sorted(by_seq) if by_seq[s].tell_seq is None]
    if state.diverged:
        warnings.warn(
            f"resumed run: the strategy proposed other cells than recorded in "
            f"{state.diverged} step(s); the recorded ones were kept", stacklevel=2)
    return state


Callback = Callable[[EvalRecord, int, "EvalRecord | None"], None]


class TooManyFailures(ArchrankError):
    """The search stopped after too many failed evaluations in a row; ``result()`` is what
    was recorded until then (for the summary)."""

    def __init__(self, message: str, result: Callable[[], SearchResult]) -> None:
        super().__init__(message)
        self.result = result


def run_search(
    strategy: Strategy,
    oracle: Oracle,
    store: RunStore,
    *,
    budget: int,
    executor: Executor | None = None,
    max_in_flight: int = 1,
    ordered: bool = True,
    on_result: Callback | None = None,
    max_consecutive_failures: int | None = 50,
    target: float | None = None,
) -> SearchResult:
    """Run (or resume) the search recorded in ``store`` until ``budget`` evaluations are done.

    ``on_result(record, n_done, best)`` is called after each result is recorded (``best``:
    the best record so far). Ctrl-C stops
    cleanly: what was recorded stays, the result says ``interrupted``. After
    ``max_consecutive_failures`` failed evaluations in a row the search stops with an error
    (a misconfigured oracle would otherwise burn the whole budget). With ``target``, no new
    evaluation starts once one reached it (benchmarks that know the optimum).
    """
    if budget < 1:
        raise ArchrankError(f"budget must be positive, not {budget}")
    if strategy.objective is None:
        strategy.objective = oracle.objective
    t0 = time.perf_counter()
    counts = store.counts()
    if counts["pending"] == 0 and counts["ok"] + counts["failed"] >= budget:
        # a finished run: nothing to propose, so no replay of its predictor fits (a gates
        # run's resume spent as long as the search to print its summary)
        finished = SearchResult(store.records(), oracle.objective, info={"diverged": False})
        finished.seconds = time.perf_counter() - t0
        return finished
    executor = executor or InlineExecutor()
    space = strategy.space
    try:  # a resume first replays every recorded step (refits included): seconds
        state = replay(strategy, store)
    except KeyboardInterrupt:  # nothing new happened: the run stands as recorded
        stopped = SearchResult(store.records(), oracle.objective)  # in proposal order
        stopped.interrupted = True
        stopped.seconds = time.perf_counter() - t0
        return stopped
    records: dict[int, EvalRecord] = {r.seq: r for r in state.records}
    result = SearchResult([], oracle.objective, info={"diverged": state.diverged})
    n_told = state.n_told
    next_batch = state.next_batch
    next_seq = max(records, default=-1) + 1
    slots: dict[int, _Slot] = {}
    arrivals: list[int] = []  # seqs with a result, in arrival order (unordered mode)
    done_records = [r for r in records.values() if r.done]
    n_done = len(done_records)
    # the failures in a row a resumed run ended with still count (a misconfigured oracle
    # would otherwise get another max_consecutive_failures evaluations on every resume)
    failures = 0
    for rec in sorted(done_records, key=lambda r: (r.finished or 0.0, r.seq), reverse=True):
        if rec.status != "failed":
            break
        failures += 1
    best = max((r for r in done_records if r.status == "ok" and r.objective is not None),
               key=lambda r: r.objective, default=None)  # type: ignore[arg-type,return-value]

    def snapshot() -> SearchResult:
        result.records = [records[s] for s in sorted(records)]
        result.seconds = time.perf_counter() - t0
        return result

    payload = for_executor(oracle, executor)

    def submit(slot: _Slot) -> None:
        try:
            slot.future = executor.submit(evaluate_arch, payload, slot.arch)
        except Exception as exc:  # a pool already broken refuses new work at once
            setting = _unshippable(exc)
            if setting is not None:
                raise setting from None
            if _worker_lost(exc):
                raise _lost(exc) from None
            raise

    def collect(seqs: Iterable[int]) -> None:
        """Record the results of finished futures (in proposal order)."""
        nonlocal failures, n_done, best
        for seq in sorted(seqs):
            slot = slots[seq]
            assert slot.future is not None
            try:
                evaluation, started, finished = slot.future.result()
            except Exception as exc:
                setting = _unshippable(exc)  # the same on every resume: no lost worker
                if setting is not None:
                    raise setting from None
                if _worker_lost(exc) and not _killed_worker(exc):
                    raise _lost(exc) from None
                # anything else (Dask's KilledWorker: this task killed its workers) is that
                # evaluation's failure
                evaluation = Evaluation(status="failed",
                                        error=f"{type(exc).__name__}: {exc}"[:500])
                started, finished = None, time.time()
            value = evaluation.metrics.get(oracle.objective) if evaluation.ok else None
            if value is not None and not np.isfinite(value):  # e.g. a custom oracle's NaN
                evaluation = Evaluation(metrics=evaluation.metrics, cost=evaluation.cost,
                                        status="failed",
                                        error=f"{oracle.objective} is {value}")
                value = None
            slot.future, slot.result = None, evaluation
            store.record_result(seq, evaluation, value, started, finished)
            rec = records[seq]
            rec.status, rec.metrics, rec.objective = evaluation.status, evaluation.metrics, value
            rec.cost, rec.error = evaluation.cost, evaluation.error
            rec.started, rec.finished = started if started is not None else rec.started, finished
            arrivals.append(seq)
            failures = failures + 1 if not evaluation.ok else 0
            n_done += 1
            if value is not None and (best is None or value > best.objective):  # type: ignore[operator]
                best = rec
            if on_result is not None:
                on_result(rec, n_done, best)
            if max_consecutive_failures and failures >= max_consecutive_failures:
                raise TooManyFailures(
                    f"{failures} evaluations in a row failed; stopping "
                    f"(last error: {evaluation.error})", snapshot)

    def _lost(exc: BaseException) -> ArchrankError:
        """A worker died (killed for memory...) or the task could not reach one: the
        machinery, not the cell, so the cells in flight stay pending and a resume evaluates
        them again (recording them as failures would lose them for good). They are marked
        as suspects, which a resume evaluates one at a time first; a worker that dies
        while one cell alone is in flight (a broken pool, not a lost scheduler) is pinned on
        that cell, and a cell pinned twice is recorded as failed, so that one that kills its
        worker every time cannot stop every resume, and no other cell pays for it."""
        from concurrent.futures import BrokenExecutor

        now = time.time()
        flying = sorted(s for s, slot in slots.items()
                        if slot.future is not None and slot.result is None)
        # only a dead worker process can be pinned on a cell (a lost scheduler or
        # connection is nobody's): only then are the cells suspects, re-run alone
        broken = isinstance(exc, BrokenExecutor)
        pinned = broken and len(flying) == 1
        repeated = []
        marked = store.mark_lost(flying, pinned) if broken else {}
        for seq, losses in marked.items():
            if losses >= 2:
                error = (f"its evaluation worker stopped {losses} times while it alone was "
                         f"in flight ({type(exc).__name__})")
                store.record_result(seq, Evaluation(status="failed", error=error), None,
                                    None, now)
                repeated.append(seq)
        cells = ", ".join(f"#{s} {records[s].arch}" for s in flying)
        kept = len(flying) - len(repeated)
        # proposals recorded but not yet sent are unfinished too (runs show counts them)
        waiting = sum(not r.done for s, r in records.items() if s not in flying)
        why = first_line(exc) or ("the Dask scheduler or its worker was lost"
                                  if "Cancelled" in type(exc).__name__ else "no message")
        return ArchrankError(
            f"an evaluation worker stopped ({type(exc).__name__}: {why}) with "
            f"{len(flying)} evaluation(s) in flight ({cells[:300]}); {kept} kept pending"
            + (f" (and {waiting} proposal(s) not yet sent)" if waiting else "")
            + (f", {len(repeated)} recorded as failed (its worker stopped with it alone in "
               "flight twice)" if repeated else "") + ": continue the run with --resume")

    def fill() -> bool:
        """Ask for as many proposals as there are free slots; False when none came."""
        nonlocal next_batch, next_seq
        want = min(max_in_flight - len(slots), budget - len(records))
        if target is not None and best is not None and best.objective >= target - 1e-9:
            want = 0
        if want <= 0:
            return True
        archs = strategy.ask(want)
        rows = [(next_seq + i, space.hash(a), space.format(a)) for i, a in enumerate(archs)]
        store.add_ask(next_batch, n_told, want, rows)
        now = time.time()
        for (seq, h, text), arch in zip(rows, archs, strict=True):
            records[seq] = EvalRecord(seq=seq, hash=h, arch=text, batch=next_batch,
                                      status="pending", started=now)
            slots[seq] = _Slot(seq, arch)
        next_batch += 1
        next_seq += len(archs)
        for seq, _, _ in rows:
            submit(slots[seq])
            if slots[seq].future is not None and slots[seq].future.done():
                collect([seq])
        return bool(archs)

    def next_to_tell() -> int:
        """The proposal to tell next, waiting for results as needed."""
        while True:
            if ordered:
                head = min(slots)
                if slots[head].result is not None:
                    return head
            else:
                ready = [s for s in arrivals if s in slots]
                if ready:
                    return ready[0]
            running = {s.future: s.seq for s in slots.values() if s.future is not None}
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            collect(running[f] for f in done)

    try:
        # Proposals of the interrupted run: recorded results are told, the rest re-submitted.
        for rec in state.untold:
            slot = _Slot(rec.seq, space.parse(rec.arch))
            slots[rec.seq] = slot
            if rec.done:
                slot.result = rec.evaluation()
                arrivals.append(rec.seq)
        # Cells in flight when a worker stopped go first, one at a time: if one stops its
        # worker again, the stop is pinned on it (``_lost``).
        suspects = store.suspects()
        pending = [s for s in sorted(slots) if slots[s].result is None]
        for seq in sorted(pending, key=lambda s: s not in suspects):
            store.mark_started(seq, time.time())
            submit(slots[seq])
            future = slots[seq].future
            assert future is not None
            if seq in suspects:
                wait([future])
            if future.done():
                collect([seq])
        while True:
            got = fill()
            if not slots:
                result.exhausted = not got and len(records) < budget
                break
            seq = next_to_tell()
            slot = slots.pop(seq)
            assert slot.result is not None
            store.mark_told(seq, n_told)
            records[seq].tell_seq = n_told
            n_told += 1
            strategy.tell(slot.arch, slot.result)
    except KeyboardInterrupt:
        result.interrupted = True
        for slot in slots.values():
            if slot.future is not None:
                slot.future.cancel()
        stop_pool(executor)
    return snapshot()
