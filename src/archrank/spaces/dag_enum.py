"""Exact enumeration of op-on-node DAG cells (NAS-Bench-101 style), vectorised with numpy.

Brute force over every (matrix, labels) pair and hashing each would take hours for NB101.
Instead:

1. For each vertex count ``n``, every strictly upper-triangular 0/1 matrix is an integer whose
   bits are the ``n(n-1)/2`` possible edges.  Keep those with at most ``max_edges`` edges whose
   every vertex lies on an input -> output path (pruned cells; a cell that needs pruning is the
   same cell as its pruned form, enumerated at its own smaller ``n``).
2. Two such matrices are the same unlabelled cell iff a permutation of the interior vertices
   maps one onto the other; the canonical form of a matrix is the minimum, over those
   permutations, of its permuted ``n*n``-bit code (computed for all matrices at once with
   per-permutation lookup tables).  One representative is kept per canonical form.
3. The permutations that fix a representative are its automorphisms; of the ``k^(n-2)``
   labellings of its interior vertices with ``k`` ops, one per orbit under them is kept
   (the labelling whose base-``k`` code is the smallest in its orbit).
4. The NB101 module hash of each survivor is computed (in a few processes; the md5 chain is
   the costly part) and the cells are deduplicated by hash, exactly as the benchmark counts.

Steps 1-3 take about a second for NB101; step 4 dominates.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from archrank.spaces.graph_hash import INPUT_LABEL, OUTPUT_LABEL

# Above this many upper-triangular bits the brute-force step 1 (2**bits matrices) is too big.
MAX_ENUM_BITS = 28


@dataclass(frozen=True)
class EnumeratedCells:
    """A whole cell space as arrays, one row per unique cell, sorted by hash.

    matrices:     uint8 [M, V, V]  adjacency, padded with zeros after ``num_vertices``
    labels:       int8  [M, V]     interior op index 0..k-1, ``-1`` input, ``-2`` output,
                                   ``-3`` padding (the labels of the module hash)
    num_vertices: int8  [M]
    hashes:       ``S32`` [M]      NB101 module hash, hex
    """

    matrices: np.ndarray
    labels: np.ndarray
    num_vertices: np.ndarray
    hashes: np.ndarray

    def __len__(self) -> int:
        return int(self.num_vertices.shape[0])


PAD_LABEL = -3


def _pairs(n: int) -> list[tuple[int, int]]:
    """Edge (i, j), i < j, of each bit of an ``n``-vertex upper-triangular code (row-major)."""
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def popcount(x: np.ndarray) -> np.ndarray:
    """Number of set bits of each int64 (SWAR bit tricks, no Python loop)."""
    x = x.astype(np.uint64)
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return ((x * np.uint64(0x0101010101010101)) >> np.uint64(56)).astype(np.int64)


def valid_dags(n: int, max_edges: int) -> np.ndarray:
    """Codes of the ``n``-vertex upper-triangular DAGs with every vertex on an in->out path."""
    pairs = _pairs(n)
    bits = len(pairs)
    if bits > MAX_ENUM_BITS:
        raise ValueError(f"{n} vertices is too many to enumerate ({bits} edge bits)")
    if n == 1:
        return np.zeros(0, dtype=np.int64)
    codes = np.arange(1 << bits, dtype=np.int64)
    codes = codes[popcount(codes) <= max_edges]
    # in_mask[v] / out_mask[v]: bitmask of v's predecessors / successors, per code.
    pred = [np.zeros(codes.shape, dtype=np.int64) for _ in range(n)]
    succ = [np.zeros(codes.shape, dtype=np.int64) for _ in range(n)]
    for b, (i, j) in enumerate(pairs):
        bit = (codes >> b) & 1
        pred[j] |= bit << i
        succ[i] |= bit << j
    from_in = np.ones(codes.shape, dtype=np.int64)  # bit 0: the input reaches itself
    for v in range(1, n):
        from_in |= ((pred[v] & from_in) != 0).astype(np.int64) << v
    to_out = np.full(codes.shape, 1 << (n - 1), dtype=np.int64)
    for v in range(n - 2, -1, -1):
        to_out |= ((succ[v] & to_out) != 0).astype(np.int64) << v
    full = (1 << n) - 1
    return codes[(from_in & to_out) == full]


def codes_to_matrices(codes: np.ndarray, n: int, size: int | None = None) -> np.ndarray:
    """uint8 [M, size, size] adjacency matrices of ``n``-vertex codes (zero padded)."""
    size = n if size is None else size
    out = np.zeros((len(codes), size, size), dtype=np.uint8)
    for b, (i, j) in enumerate(_pairs(n)):
        out[:, i, j] = (codes >> b) & 1
    return out


def _interior_perms(n: int) -> np.ndarray:
    """All vertex permutations fixing input (0) and output (n-1): int [P, n]."""
    inner = list(itertools.permutations(range(1, n - 1)))
    return np.array([(0, *p, n - 1) for p in inner], dtype=np.int64).reshape(len(inner), n)


def _permuted_full_codes(codes: np.ndarray, n: int, perms: np.ndarray) -> np.ndarray:
    """int64 [P, M]: ``n*n``-bit row-major code of ``P A P^T`` for each permutation and code.

    Each permutation maps edge bit (i, j) to bit ``perm[i] * n + perm[j]``; the code is
    assembled from 7-bit chunks with one lookup table per chunk and permutation.
    """
    pairs = _pairs(n)
    chunk = 7
    out = np.zeros((len(perms), len(codes)), dtype=np.int64)
    for start in range(0, len(pairs), chunk):
        width = min(chunk, len(pairs) - start)
        sub = (codes >> start) & ((1 << width) - 1)
        for p, perm in enumerate(perms):
            table = np.zeros(1 << width, dtype=np.int64)
            for b in range(width):
                i, j = pairs[start + b]
                pos = int(perm[i]) * n + int(perm[j])
                table |= ((np.arange(1 << width) >> b) & 1).astype(np.int64) << pos
            out[p] |= table[sub]
    return out


def unique_graphs(n: int, max_edges: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """One code per isomorphism class of valid ``n``-vertex DAGs, and each one's automorphisms.

    Returns ``(codes [G], autos)`` where ``autos[g]`` is an int [A_g, n-2] array of the
    interior permutations (as positions 0..n-3) that map graph ``g`` onto itself.
    """
    codes = valid_dags(n, max_edges)
    if n <= 2:
        return codes, [np.zeros((1, 0), dtype=np.int64) for _ in codes]
    perms = _interior_perms(n)
    permuted = _permuted_full_codes(codes, n, perms)  # [P, M]
    canon = permuted.min(axis=0)
    _, first = np.unique(canon, return_index=True)
    reps = np.sort(codes[first])  # the smallest upper-triangular code of each class
    rep_perm = _permuted_full_codes(reps, n, perms)  # [P, G]
    identity = rep_perm[0]  # perms[0] is the identity
    is_auto = rep_perm == identity[None, :]
    inner = perms[:, 1:-1] - 1
    autos = [inner[is_auto[:, g]] for g in range(len(reps))]
    return reps, autos


def orbit_labellings(num_ops: int, autos: np.ndarray) -> np.ndarray:
    """One interior labelling per orbit under ``autos`` (int [A, m]): int8 [L, m]."""
    m = autos.shape[1]
    if m == 0:
        return np.zeros((1, 0), dtype=np.int8)
    grid = np.indices((num_ops,) * m).reshape(m, -1).T  # [k^m, m], lexicographic
    weights = num_ops ** np.arange(m - 1, -1, -1)
    own = grid @ weights
    # Relabelling by an automorphism sigma: vertex sigma(i) gets the label of vertex i.
    best = own.copy()
    for sigma in autos:
        moved = np.empty_like(grid)
        moved[:, sigma] = grid
        best = np.minimum(best, moved @ weights)
    return grid[own == best].astype(np.int8)


# -- the NB101 module hash, batched -------------------------------------------------------------


def _hash_task(task: tuple[list[list[int]], list[tuple[int, ...]]]) -> list[str]:
    """Module hashes of one graph under many labellings (same result as ``module_hash``).

    Faster than calling ``module_hash`` per cell: neighbour lists, degrees and the first
    round of vertex hashes are computed once per graph; the second round's inputs depend on
    a vertex's and its neighbours' labels only, so their md5s repeat across labellings and
    are computed once each; one neighbour is taken as is, not sorted.
    """
    matrix, label_rows = task
    md5 = hashlib.md5
    n = len(matrix)
    preds = [tuple(u for u in range(n) if matrix[u][v]) for v in range(n)]
    succs = [tuple(w for w in range(n) if matrix[v][w]) for v in range(n)]
    out_deg = [len(s) for s in succs]
    in_deg = [len(p) for p in preds]
    start: dict[tuple[int, int], str] = {}
    first: dict[str, str] = {}  # the first round's md5 of each input text
    results = []
    later = range(1, n)
    verts = list(zip(range(n), preds, succs, strict=True))

    def joined(hashes: list[str], ws: tuple[int, ...]) -> str:
        if len(ws) > 1:
            return "".join(sorted([hashes[w] for w in ws]))
        return hashes[ws[0]] if ws else ""

    for labels in label_rows:
        hashes = []
        for v in range(n):
            key = (v, labels[v])
            h = start.get(key)
            if h is None:
                text = str((out_deg[v], in_deg[v], labels[v]))
                h = start[key] = md5(text.encode()).hexdigest()
            hashes.append(h)
        new = []
        for v, p, s in verts:
            text = joined(hashes, p) + "|" + joined(hashes, s) + "|" + hashes[v]
            h = first.get(text)
            if h is None:
                h = first[text] = md5(text.encode()).hexdigest()
            new.append(h)
        hashes = new
        for _ in later:  # joined(), inlined: the hot loop
            hashes = [
                md5(
                    (
                        ("".join(sorted([hashes[w] for w in p])) if len(p) > 1
                         else hashes[p[0]] if p else "")
                        + "|"
                        + ("".join(sorted([hashes[w] for w in s])) if len(s) > 1
                           else hashes[s[0]] if s else "")
                        + "|"
                        + hashes[v]
                    ).encode()
                ).hexdigest()
                for v, p, s in verts
            ]
        results.append(md5(str(sorted(hashes)).encode()).hexdigest())
    return results


def module_hashes(
    tasks: Sequence[tuple[list[list[int]], list[tuple[int, ...]]]], workers: int | None = None
) -> list[str]:
    """Module hashes for ``(matrix, [labels, ...])`` tasks, in order, over ``workers`` processes."""
    total = sum(len(t[1]) for t in tasks)
    if workers is None:
        workers = available_cpus()
    if workers <= 1 or total < 20_000:
        return [h for t in tasks for h in _hash_task(t)]
    # fork: the workers need nothing but this function, so they start instantly (no re-import
    # of torch); they never touch torch or threads of the parent.
    ctx = get_context("fork") if "fork" in _start_methods() else get_context()
    chunk = max(1, len(tasks) // (workers * 16))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                parts = list(pool.map(_hash_task, tasks, chunksize=chunk))
    except (OSError, BrokenProcessPool):  # no process support here: do it in-process
        return [h for t in tasks for h in _hash_task(t)]
    return [h for part in parts for h in part]


def _start_methods() -> list[str]:
    import multiprocessing

    return multiprocessing.get_all_start_methods()


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# -- the whole space ----------------------------------------------------------------------------


def enumerate_cells(
    num_ops: int, max_vertices: int, max_edges: int, workers: int | None = None
) -> EnumeratedCells:
    """Every unique pruned cell with ``2..max_vertices`` vertices and ``<= max_edges`` edges."""
    size = max_vertices
    mats, labs, nverts, tasks = [], [], [], []
    for n in range(2, max_vertices + 1):
        reps, autos = unique_graphs(n, max_edges)
        if len(reps) == 0:
            continue
        dense = codes_to_matrices(reps, n, size)
        for g in range(len(reps)):
            inner = orbit_labellings(num_ops, autos[g])
            count = len(inner)
            lab = np.full((count, size), PAD_LABEL, dtype=np.int8)
            lab[:, 0] = INPUT_LABEL
            lab[:, 1 : n - 1] = inner
            lab[:, n - 1] = OUTPUT_LABEL
            mats.append(np.broadcast_to(dense[g], (count, size, size)))
            labs.append(lab)
            nverts.append(np.full(count, n, dtype=np.int8))
            small = dense[g, :n, :n].tolist()
            tasks.append((small, [tuple(row) for row in lab[:, :n].tolist()]))
    matrices = np.concatenate(mats)
    labels = np.concatenate(labs)
    num_vertices = np.concatenate(nverts)
    hashes = np.array(module_hashes(tasks, workers), dtype="S32")
    # Deduplicate by hash (as NB101 counts cells) and sort by it for binary search.
    _, keep = np.unique(hashes, return_index=True)
    return EnumeratedCells(
        np.ascontiguousarray(matrices[keep]), labels[keep], num_vertices[keep], hashes[keep]
    )
