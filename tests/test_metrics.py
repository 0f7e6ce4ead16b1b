"""Ranking metrics against scipy (random data with ties) and small cases worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from archrank.errors import ArchrankError
from archrank.metrics import (
    kendall_tau,
    n_at_k,
    precision_at_k,
    rankdata,
    ranking_report,
    regret,
    spearman,
    true_ranks,
)


def random_pairs(seed: int, count: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(2, 80))
        levels_a, levels_b = int(rng.integers(1, 12)), int(rng.integers(1, 12))
        a = rng.integers(0, levels_a, n).astype(float)  # few levels: many ties
        b = rng.integers(0, levels_b, n) + rng.normal(0, 0.1 * int(rng.integers(0, 2)), n)
        yield a, b


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_kendall_and_spearman_match_scipy_with_ties() -> None:
    for a, b in random_pairs(0, 400):
        want_tau = stats.kendalltau(a, b).statistic
        want_rho = stats.spearmanr(a, b).statistic
        got_tau, got_rho = kendall_tau(a, b), spearman(a, b)
        if math.isnan(want_tau):
            assert math.isnan(got_tau)
        else:
            assert got_tau == pytest.approx(want_tau, abs=1e-12)
        if math.isnan(want_rho):
            assert math.isnan(got_rho)
        else:
            assert got_rho == pytest.approx(want_rho, abs=1e-12)


def test_large_continuous_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=20_000)
    b = a + rng.normal(size=a.size)
    assert kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b).statistic, abs=1e-12)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)


def test_rank_correlation_known_cases() -> None:
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # One discordant pair out of 6: (5 - 1) / 6.
    assert kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    # tau-b with a tie in x: n0=3, ties_x=1: concordant 2, discordant 0 -> 2/sqrt(2*3).
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert spearman([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(0.8)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))  # constant side
    assert math.isnan(spearman([5], [5]))
    # NaN pairs are dropped.
    assert kendall_tau([1, 2, np.nan, 3], [1, 2, 0, 3]) == 1.0
    with pytest.raises(ArchrankError, match="3 true values but 2"):
        kendall_tau([1, 2, 3], [1, 2])


def test_rankdata_matches_scipy() -> None:
    x = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5])
    np.testing.assert_array_equal(rankdata(x), stats.rankdata(x))


def test_precision_at_k() -> None:
    y = np.arange(100, dtype=float)
    assert precision_at_k(y, y, 0.05) == 1.0
    assert precision_at_k(y, -y, 0.05) == 0.0
    pred = y.copy()
    pred[[99, 0]] = pred[[0, 99]]  # the best is predicted worst, the worst best
    assert precision_at_k(y, pred, 0.05) == pytest.approx(4 / 5)  # K = 5
    assert precision_at_k(y, pred, 0.10) == pytest.approx(9 / 10)
    assert precision_at_k([1, 2, 3], [3, 2, 1], 0.01) == 0.0  # K is at least 1
    # ties at the boundary count fractionally, whatever the order of the rows: a constant
    # score picks the true best with probability 1/n
    true = np.array([5.0, 1.0, 2.0, 3.0, 4.0])
    flat = np.ones(5)
    assert precision_at_k(true, flat, 0.2) == pytest.approx(1 / 5)
    assert precision_at_k(true[::-1], flat, 0.2) == pytest.approx(1 / 5)
    # two cells tie for the top place of the score; one is the true best: 1/2
    assert precision_at_k(true, [9.0, 0.0, 0.0, 9.0, 0.0], 0.2) == pytest.approx(1 / 2)
    with pytest.raises(ArchrankError, match="k_fraction"):
        precision_at_k(y, y, 5)


def test_n_at_k_of_tied_predictions_is_the_expectation_over_their_order() -> None:
    """Twenty cells tied at the predicted top, ten taken: the expected best true rank among
    ten drawn from ranks 1..20 (21/11), whatever the order of the rows."""
    y = np.arange(100.0)
    pred = np.r_[np.zeros(80), np.full(20, 5.0)]
    perm = np.random.default_rng(0).permutation(100)
    assert n_at_k(y, pred, 10) == pytest.approx(21 / 11)
    assert n_at_k(y[perm], pred[perm], 10) == pytest.approx(21 / 11)
    assert n_at_k(y, np.ones(100), 1) == pytest.approx(50.5)  # one of a hundred at random


def test_n_at_k_and_true_ranks() -> None:
    y = [0.9, 0.5, 0.7, 0.9, 0.1]
    np.testing.assert_array_equal(true_ranks(y), [1, 4, 3, 1, 5])
    assert n_at_k(y, [0, 1, 0, 0, 0], 1) == 4  # picks the 4th best
    assert n_at_k(y, [0, 1, 2, 0, 0], 2) == 3
    assert n_at_k(y, y, 1) == 1
    assert n_at_k(y, [5, 4, 3, 2, 1], 10) == 1  # k larger than n: everything is picked
    with pytest.raises(ArchrankError, match="k must be"):
        n_at_k(y, y, 0)


def test_regret_and_report() -> None:
    assert regret(94.0, 94.3733) == pytest.approx(0.3733)
    np.testing.assert_allclose(regret([90, 94.3733], 94.3733), [4.3733, 0.0])
    rng = np.random.default_rng(5)
    y = rng.normal(size=500)
    report = ranking_report(y, y + rng.normal(scale=0.1, size=500))
    assert set(report) == {"kendall_tau", "spearman", "precision_at_5pct", "n_at_10"}
    assert report["kendall_tau"] > 0.8 and report["n_at_10"] <= 3


def test_a_matrix_is_refused_and_an_empty_report_is_nan() -> None:
    """A [2, 2] matrix was flattened into four values in silence; a report over values that
    are all NaN gave NaN correlations but an error from N@K."""
    from archrank.metrics import ranking_report

    with pytest.raises(ArchrankError, match=r"true values have shape \(2, 2\)"):
        kendall_tau([[1, 2], [3, 4]], [1, 2, 3, 4])
    assert kendall_tau(np.array([[1.0], [2.0], [3.0]]), [1, 2, 3]) == 1.0  # a column is fine
    report = ranking_report([np.nan] * 3, [1, 2, 3])
    assert all(np.isnan(v) for v in report.values())


def test_text_values_are_a_one_line_error_naming_the_argument() -> None:
    """spearman(["a"], [1]) raised numpy's bare ValueError naming neither argument."""
    with pytest.raises(ArchrankError, match=r"true values must be numbers: could not convert"):
        spearman(["a"], [1])
    with pytest.raises(ArchrankError, match=r"predictions must be numbers"):
        kendall_tau([1, 2], [1, "x"])
    with pytest.raises(ArchrankError, match=r"values must be numbers"):
        rankdata(["b"])
    with pytest.raises(ArchrankError, match=r"best values must be numbers"):
        regret("high", 1.0)
