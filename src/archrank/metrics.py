"""Ranking metrics for predictors and searches: Kendall tau-b, Spearman rho, P@K%, N@K, regret.

All functions take plain sequences or numpy arrays, ignore pairs where either value is NaN,
and are vectorised (O(n log n) for the rank correlations): tens of milliseconds for the
15,625 cells of nb201, a couple of seconds for the 423,624 of nb101 on one core. Higher
values are better for both ``y_true`` and ``y_pred``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from archrank.errors import ArchrankError, first_line

ArrayLike = Sequence[float] | np.ndarray


def _floats(x: ArrayLike | float, name: str) -> np.ndarray:
    """``x`` as a float array; a one-line error naming ``name`` for text or ragged lists
    (numpy's own error named neither the argument nor the metric)."""
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ArchrankError(f"{name} must be numbers: {first_line(exc, 120)}") from None


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Two aligned float arrays with the positions where either is NaN removed."""
    a, b = _floats(y_true, "true values"), _floats(y_pred, "predictions")
    for name, x in (("true values", a), ("predictions", b)):  # [n] or [n, 1], not a matrix
        if x.ndim > 2 or (x.ndim == 2 and x.shape[1] != 1):
            raise ArchrankError(f"{name} have shape {x.shape}: give one number per "
                                f"architecture, shape (n,)")
    a, b = a.reshape(-1), b.reshape(-1)
    if a.shape != b.shape:
        raise ArchrankError(f"got {a.size} true values but {b.size} predictions")
    keep = ~(np.isnan(a) | np.isnan(b))
    if not keep.all():
        a, b = a[keep], b[keep]
    return a, b


def _dense_rank(x: np.ndarray) -> np.ndarray:
    """0-based dense ranks (equal values share a rank, ranks are consecutive)."""
    _, inverse = np.unique(x, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


def _tie_pairs(ranks: np.ndarray) -> int:
    """Number of pairs with equal values: sum over tie groups of t*(t-1)/2."""
    counts = np.bincount(ranks)
    return int((counts * (counts - 1) // 2).sum())


def _count_inversions(r: np.ndarray) -> int:
    """Pairs i < j with r[i] > r[j], by a vectorised bottom-up merge count.

    At each level the sequence is cut into blocks of size ``s``; blocks 2p and 2p+1 form
    pair ``p``. Every pair of positions is split into a left and a right block at exactly one
    level, where we count, for each right element, the left elements of its pair that are
    larger with one ``searchsorted`` on keys ``p * M + value``.
    """
    n = r.size
    if n < 2:
        return 0
    m = int(r.max()) + 1
    idx = np.arange(n, dtype=np.int64)
    total = 0
    s = 1
    while s < n:
        block = idx // s
        pair = block >> 1
        right = (block & 1).astype(bool)
        left_keys = np.sort(pair[~right] * m + r[~right])
        rp = pair[right]
        rv = r[right]
        upto_pair = np.searchsorted(left_keys, (rp + 1) * m, side="left")
        upto_value = np.searchsorted(left_keys, rp * m + rv, side="right")
        total += int((upto_pair - upto_value).sum())
        s *= 2
    return total


def kendall_tau(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Kendall's tau-b (ties in either variable corrected), as ``scipy.stats.kendalltau``.

    NaN when fewer than two pairs remain or either side is constant.
    """
    a, b = _pair(y_true, y_pred)
    n = a.size
    if n < 2:
        return float("nan")
    ra, rb = _dense_rank(a), _dense_rank(b)
    n0 = n * (n - 1) // 2
    ties_a = _tie_pairs(ra)
    ties_b = _tie_pairs(rb)
    # Joint ties: pairs equal in both.
    joint = _tie_pairs(_dense_rank(ra * (int(rb.max()) + 1) + rb))
    if ties_a == n0 or ties_b == n0:
        return float("nan")
    # Sort by (a, b); ties in a are then ordered by b, so strict inversions of b are exactly
    # the discordant pairs.
    order = np.lexsort((rb, ra))
    discordant = _count_inversions(rb[order])
    concordant_minus_discordant = n0 - ties_a - ties_b + joint - 2 * discordant
    denom = np.sqrt(float(n0 - ties_a) * float(n0 - ties_b))
    return float(np.clip(concordant_minus_discordant / denom, -1.0, 1.0))


def rankdata(x: ArrayLike) -> np.ndarray:
    """Average ranks, 1-based (ties get the mean of the ranks they span), like scipy's."""
    v = _floats(x, "values").reshape(-1)
    n = v.size
    order = np.argsort(v, kind="mergesort")
    sorted_v = v[order]
    starts = np.r_[True, sorted_v[1:] != sorted_v[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], n] - 1
    avg = (first + last) / 2.0 + 1.0
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = avg[group]
    return ranks


def spearman(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Spearman's rho: Pearson correlation of average ranks. NaN when a side is constant."""
    a, b = _pair(y_true, y_pred)
    if a.size < 2:
        return float("nan")
    ra = rankdata(a) - (a.size + 1) / 2.0
    rb = rankdata(b) - (b.size + 1) / 2.0
    denom = np.sqrt(float(ra @ ra) * float(rb @ rb))
    if denom == 0.0:
        return float("nan")
    return float(np.clip((ra @ rb) / denom, -1.0, 1.0))


def top_k_count(n: int, k_fraction: float) -> int:
    """K for a top-K% set of ``n`` items: ``floor(k_fraction * n)``, at least 1."""
    if not 0.0 < k_fraction <= 1.0:
        raise ArchrankError(f"k_fraction must be in (0, 1], got {k_fraction} (use 0.05 for 5%)")
    return max(1, int(np.floor(k_fraction * n + 1e-9)))


def top_k_membership(values: np.ndarray, k: int) -> np.ndarray:
    """Each item's probability of being among the ``k`` largest when ties are broken at
    random: 1 above the k-th value, 0 below, and for the items tied with it the share of
    the remaining places they split (so a result never depends on the order of rows)."""
    above, tied = _split_at_k(np.asarray(values, dtype=np.float64), k)
    out = above.astype(np.float64)
    out[tied] = (k - above.sum()) / tied.sum()
    return out


def _split_at_k(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the values above the k-th largest and of those tied with it."""
    kth = np.sort(values)[::-1][k - 1]
    return values > kth, values == kth


def precision_at_k(y_true: ArrayLike, y_pred: ArrayLike, k_fraction: float) -> float:
    """Fraction of the predicted top-K% that is in the true top-K% (K = ``top_k_count``).

    Values tied at either boundary count fractionally: the expected precision over random
    tie-breaks (``top_k_membership``), not an order of rows (a cost such as FLOPs ties
    whole groups of cells). Before session 12 ties were broken by row position.
    """
    a, b = _pair(y_true, y_pred)
    if a.size == 0:
        return float("nan")
    k = top_k_count(a.size, k_fraction)
    return float(top_k_membership(a, k) @ top_k_membership(b, k) / k)


def true_ranks(y_true: ArrayLike) -> np.ndarray:
    """1-based rank of each value, 1 = best; tied values share the better (min) rank."""
    a = _floats(y_true, "true values").reshape(-1)
    # Number of values strictly larger, + 1.
    return a.size - np.searchsorted(np.sort(a), a, side="right") + 1


def n_at_k(y_true: ArrayLike, y_pred: ArrayLike, k: int) -> float:
    """N@K: the best true rank (1-based, 1 = the best architecture) among the predicted top-k.

    This is what a user gets by evaluating the predictor's k favourites: 1 means the true
    best is among them. Predictions tied at the k-th place are drawn at random: the value is
    the expectation over those draws (order-free; before session 12 ties went by row order).
    """
    a, b = _pair(y_true, y_pred)
    if a.size == 0:
        raise ArchrankError("n_at_k needs at least one value")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ArchrankError(f"k must be a whole number of at least 1, got {k!r}")
    k = min(int(k), a.size)
    ranks = true_ranks(a).astype(np.float64)
    above, at_k = _split_at_k(b, k)
    sure = ranks[above]
    best_sure = float(sure.min()) if sure.size else math.inf
    tied = np.sort(ranks[at_k])  # the k-th predicted value's group: m of them are taken
    m, t = k - sure.size, tied.size
    # predictions tied at the boundary are taken at random (the result is the expectation,
    # never an order of rows): surv[j] = P(the best of m drawn from t sits at sorted position
    # >= j) = C(t - j, m) / C(t, m), each step the ratio (t - j - m + 1) / (t - j + 1)
    j = np.arange(1, t)
    surv = np.cumprod(np.r_[1.0, np.clip((t - j - m + 1) / (t - j + 1), 0.0, None)])
    pmf = surv - np.r_[surv[1:], 0.0]
    return round(float(np.sum(np.minimum(best_sure, tied) * pmf)), 9)  # no float noise


def regret(best_found: float | ArrayLike, optimum: float) -> float | np.ndarray:
    """How far below the optimum the best found value is (``optimum - best_found``, >= 0
    when the optimum really is the best). Works on scalars and arrays (e.g. a curve)."""
    out = float(_floats(optimum, "optimum")) - _floats(best_found, "best values")
    return float(out) if out.ndim == 0 else out


def ranking_report(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """The standard set reported by ``archrank bench predictor`` (NaN each where no pair of
    values is left, as the correlations are)."""
    a, _ = _pair(y_true, y_pred)
    return {
        "kendall_tau": kendall_tau(y_true, y_pred),
        "spearman": spearman(y_true, y_pred),
        "precision_at_5pct": precision_at_k(y_true, y_pred, 0.05),
        "n_at_10": float(n_at_k(y_true, y_pred, 10)) if a.size else math.nan,
    }
