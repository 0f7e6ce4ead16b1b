"""Graph utilities shared by the cell spaces: pruning and the NAS-Bench-101 module hash.

The hash is the iterative (Weisfeiler-Lehman style) md5 hash of NAS-Bench-101, so that our
canonical hash of an NB101 cell equals the benchmark's own key; other cell spaces reuse it
with their own labels, which makes isomorphic cells hash alike in every space.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

INPUT_LABEL = -1
OUTPUT_LABEL = -2


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def module_hash(matrix: np.ndarray, labels: Sequence[int]) -> str:
    """NAS-Bench-101 module hash of a DAG (upper-triangular 0/1 ``matrix``, one label a vertex).

    Each vertex starts as md5 of ``(out_degree, in_degree, label)``; then, as many times as
    there are vertices, becomes md5 of its sorted in-neighbour hashes, ``|``, its sorted
    out-neighbour hashes, ``|``, its own hash. The cell hash is md5 of the sorted list.
    """
    matrix = np.asarray(matrix)
    n = matrix.shape[0]
    out_deg = matrix.sum(axis=1).tolist()
    in_deg = matrix.sum(axis=0).tolist()
    hashes = [_md5(str((int(out_deg[v]), int(in_deg[v]), int(labels[v])))) for v in range(n)]
    preds = [np.flatnonzero(matrix[:, v]).tolist() for v in range(n)]
    succs = [np.flatnonzero(matrix[v, :]).tolist() for v in range(n)]
    for _ in range(n):
        hashes = [
            _md5(
                "".join(sorted(hashes[w] for w in preds[v]))
                + "|"
                + "".join(sorted(hashes[w] for w in succs[v]))
                + "|"
                + hashes[v]
            )
            for v in range(n)
        ]
    return _md5(str(sorted(hashes)))


def reachable_mask(matrix: np.ndarray) -> np.ndarray:
    """Vertices on some path from vertex 0 (input) to the last vertex (output)."""
    matrix = np.asarray(matrix, dtype=bool)
    n = matrix.shape[0]
    from_input = np.zeros(n, dtype=bool)
    from_input[0] = True
    to_output = np.zeros(n, dtype=bool)
    to_output[n - 1] = True
    for v in range(1, n):  # topological order: edges go from lower to higher index
        from_input[v] = bool((from_input[:v] & matrix[:v, v]).any())
    for v in range(n - 2, -1, -1):
        to_output[v] = bool((to_output[v + 1 :] & matrix[v, v + 1 :]).any())
    return from_input & to_output


def prune(matrix: np.ndarray, labels: Sequence) -> tuple[np.ndarray, list] | None:
    """Drop vertices not on an input-to-output path; ``None`` if input and output are cut off."""
    matrix = np.asarray(matrix)
    keep = reachable_mask(matrix)
    if not (keep[0] and keep[-1]):
        return None
    idx = np.flatnonzero(keep)
    return matrix[np.ix_(idx, idx)], [labels[i] for i in idx]
