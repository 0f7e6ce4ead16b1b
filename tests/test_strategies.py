"""Search strategies: ask/tell contract, never a repeated cell, basic behaviour of each."""

from __future__ import annotations

import numpy as np
import pytest

from archrank.errors import ArchrankError
from archrank.oracles.base import Evaluation
from archrank.spaces import get_space
from archrank.strategies import (
    CandidateSet,
    GuidedSearch,
    LocalSearch,
    RandomSearch,
    RegularizedEvolution,
    make_strategy,
    resolve_strategy,
)

SPACE = get_space("nb201")
FAST_GATES = {"epochs": 15, "threads": 1}


def conv_score(arch) -> float:
    """A synthetic objective with one optimum (all six edges nor_conv_3x3) that hill climbing
    reaches: conv3x3 edges count most, conv1x1 a little."""
    return sum(1.0 if op == "nor_conv_3x3" else 0.1 if op == "nor_conv_1x1" else 0.0
               for op in arch.ops)


def drive(strategy, steps: int, objective=conv_score, n: int = 1) -> list:
    """Ask/tell loop; returns the architectures in proposal order."""
    asked = []
    while len(asked) < steps:
        batch = strategy.ask(min(n, steps - len(asked)))
        if not batch:
            break
        asked.extend(batch)
        for arch in batch:
            strategy.tell(arch, Evaluation({"score": objective(arch)}))
    return asked


def make(name: str, seed: int = 0, **kw):
    if name == "gates":
        kw.setdefault("predictor_params", FAST_GATES)
        kw.setdefault("n_init", 5)
        kw.setdefault("batch", 10)
    return make_strategy(name, SPACE, seed=seed, objective="score", **kw)


@pytest.mark.parametrize("name", ["random", "rea", "ls", "gates"])
def test_never_repeats_a_canonical_cell(name):
    strategy = make(name)
    asked = drive(strategy, 60, n=3)
    hashes = [SPACE.hash(a) for a in asked]
    assert len(asked) == 60
    assert len(set(hashes)) == len(hashes)
    assert strategy.n_asked == strategy.n_told == 60


@pytest.mark.parametrize("name", ["random", "rea", "ls", "gates"])
def test_same_seed_same_proposals(name):
    a = [SPACE.format(x) for x in drive(make(name, seed=3), 30)]
    b = [SPACE.format(x) for x in drive(make(name, seed=3), 30)]
    c = [SPACE.format(x) for x in drive(make(name, seed=4), 30)]
    assert a == b
    assert a != c


@pytest.mark.parametrize("name", ["random", "rea", "ls", "gates"])
def test_restricted_search_exhausts_its_candidates(name):
    rng = np.random.default_rng(0)
    cells = SPACE.sample(80, rng)
    cands = CandidateSet(SPACE, cells)
    strategy = make(name, candidates=cands)
    asked = drive(strategy, 10_000, n=2)
    assert {SPACE.hash(a) for a in asked} == set(cands.hashes)
    assert len(asked) == len(cands)
    assert strategy.ask(1) == []


def test_told_cells_are_never_proposed():
    strategy = make("random", candidates=SPACE.sample(30, np.random.default_rng(1)))
    told = strategy.candidates.archs[:10]
    for arch in told:
        strategy.tell(arch, 1.0)
    asked = drive(strategy, 100)
    assert not {SPACE.hash(a) for a in asked} & {SPACE.hash(a) for a in told}
    assert len(asked) == len(strategy.candidates) - 10


def test_random_search_is_uniform_over_candidates():
    cands = CandidateSet(SPACE, SPACE.sample(10, np.random.default_rng(2)))
    first = [make("random", seed=s, candidates=cands).ask(1)[0] for s in range(400)]
    counts = np.unique([SPACE.hash(a) for a in first], return_counts=True)[1]
    assert len(counts) == 10
    assert counts.min() > 15  # 40 expected per cell


def test_failed_results_are_remembered_but_not_learned():
    strategy = make("rea", population=5, tournament=2)
    drive(strategy, 5, objective=lambda a: float("nan"))
    assert not strategy.population
    assert len(strategy.seen) == 5
    strategy.tell(strategy.ask(1)[0], Evaluation(status="failed", error="diverged"))
    assert not strategy.observed


def test_regularized_evolution_ages_and_mutates_the_tournament_winner():
    strategy = make("rea", population=10, tournament=3)
    asked = drive(strategy, 10)  # the random initial population
    assert [h for _, h, _ in strategy.population] == [SPACE.hash(a) for a in asked]
    for _ in range(30):
        child = strategy.ask(1)[0]
        members = {SPACE.hash(a) for a, _, _ in strategy.population}
        parents = [a for a, _, _ in strategy.population]
        # a child is one edit away from a member of the population
        assert any(sum(x != y for x, y in zip(child.ops, p.ops, strict=True)) == 1
                   for p in parents)
        strategy.tell(child, conv_score(child))
        assert len(strategy.population) == 10
        assert SPACE.hash(child) in {h for _, h, _ in strategy.population}
        assert len(members - {h for _, h, _ in strategy.population}) == 1  # oldest died
    best = max(conv_score(a) for a in asked)
    assert strategy.best[1] > best  # evolution improved on the random population


@pytest.mark.parametrize("mode", ["best", "first"])
def test_local_search_climbs_to_the_optimum(mode):
    strategy = make("ls", mode=mode)
    asked = drive(strategy, 400)
    scores = [conv_score(a) for a in asked]
    assert max(scores) == 6.0  # all six edges nor_conv_3x3
    # once the start is told, its neighbours are proposed next
    start = asked[0]
    nbrs = {SPACE.hash(n) for n in SPACE.neighbours(start)}
    assert SPACE.hash(asked[1]) in nbrs


def test_local_search_restarts_at_a_local_optimum():
    # a flat objective: no neighbour ever improves, so every neighbourhood ends in a restart
    strategy = make("ls")
    drive(strategy, 100, objective=lambda a: 0.0)
    assert strategy.restarts >= 4


def test_guided_search_beats_its_random_start():
    strategy = make("gates", seed=0, n_init=10, batch=10, explore=0.0)
    asked = drive(strategy, 30)
    init = max(conv_score(a) for a in asked[:10])
    guided = max(conv_score(a) for a in asked[10:])
    assert strategy.n_fits == 2
    assert guided > init
    assert isinstance(strategy, GuidedSearch)
    assert strategy.candidates is not None and len(strategy.candidates) == len(
        CandidateSet.of_space(SPACE))


def test_guided_search_stays_random_while_every_value_is_alike():
    """Cells that all score alike (all failed at chance, say) teach no ranking: the search
    keeps proposing random cells rather than fitting a predictor to them."""
    strategy = make("gates", seed=0, n_init=3, batch=3)
    asked = drive(strategy, 12, objective=lambda a: 10.0)
    assert strategy.n_fits == 0 and len({SPACE.hash(a) for a in asked}) == 12


def test_guided_search_pool_mode_for_large_spaces():
    # max_enumerate=0 forces the pool of sampled cells + mutations of the best (as for nb101)
    strategy = make("gates", max_enumerate=0, pool_size=500, n_init=5, batch=5)
    assert strategy.candidates is None
    asked = drive(strategy, 20)
    assert len({SPACE.hash(a) for a in asked}) == 20
    assert strategy.n_fits >= 2


def test_strategy_names_and_errors():
    assert resolve_strategy("gates") == ("guided", "gates")
    assert resolve_strategy("guided") == ("guided", "gates")
    assert resolve_strategy("guided", "mlp") == ("guided", "mlp")
    assert resolve_strategy("REA") == ("rea", None)
    with pytest.raises(ArchrankError, match="unknown strategy 'bogus'"):
        resolve_strategy("bogus")
    with pytest.raises(ArchrankError, match="guided search only"):
        resolve_strategy("rea", "gates")
    assert isinstance(make("random"), RandomSearch)
    assert isinstance(make("rea"), RegularizedEvolution)
    assert isinstance(make("ls"), LocalSearch)
    with pytest.raises(ValueError, match="mode"):
        make("ls", mode="sideways")


@pytest.mark.parametrize("space_name", ["nb101", "nbgraph"])
@pytest.mark.parametrize("name", ["random", "rea", "ls", "gates"])
def test_strategies_work_in_op_on_node_spaces(space_name, name):
    space = get_space(space_name)
    kw: dict = {"population": 5, "tournament": 2} if name == "rea" else {}
    if name == "gates":
        kw = {"predictor_params": FAST_GATES, "n_init": 4, "batch": 4, "pool_size": 200}
    strategy = make_strategy(name, space, seed=0, objective="score", **kw)
    if name == "gates" and space_name == "nb101":
        assert strategy.candidates is None  # 423,624 cells: a pool, not the whole space

    def score(arch) -> float:
        return float(space.to_graphs([arch]).adj.sum()) + len(space.format(arch)) % 7 / 10

    asked = drive(strategy, 16, objective=score, n=2)
    assert len(asked) == 16
    assert len({space.hash(a) for a in asked}) == 16


def test_ask_and_tell_refuse_misuse_and_ask_stays_within_the_space() -> None:
    """A second tell of one cell was taken (evolution's population then held it twice, and
    best disagreed with values); ask(-3) returned nothing and ask(10**8) tried to sample
    10**8 cells at once."""
    from archrank.errors import ArchrankError as Error
    from archrank.spaces import get_space
    from archrank.strategies import make_strategy

    space = get_space("nb201")
    strategy = make_strategy("rea", space, seed=0, population=5, tournament=2)
    cells = strategy.ask(3)
    strategy.tell(cells[0], 90.0)
    with pytest.raises(Error, match="was told already"):
        strategy.tell(cells[0], 10.0)
    with pytest.raises(Error, match="n must be at least 0"):
        strategy.ask(-3)
    assert strategy.ask(0) == []
    every = make_strategy("random", space, seed=0).ask(10**8)
    assert len(every) == space.distinct_cells() == 8765


def test_a_bad_result_is_refused_before_the_cell_counts_as_told() -> None:
    """tell marked the cell as told before reading the result: a multi-metric Evaluation
    without objective (a bare ValueError), a missing metric or text such as "abc" (a bare
    ValueError) or [1.0] (TypeError) lost the cell, and telling it again said "told
    already"."""
    strategy = make_strategy("random", SPACE, seed=0)
    cell = strategy.ask(1)[0]
    bad = [(Evaluation({"acc": 1.0, "loss": 2.0}), r"has metrics acc, loss: pass objective="),
           ("abc", r"must be a number, got 'abc'"), ([1.0], r"must be a number, got \[1.0\]"),
           (Evaluation({"acc": "x"}), "must be a number, got 'x'")]
    for result, message in bad:
        with pytest.raises(ArchrankError, match=message):
            strategy.tell(cell, result)
    assert strategy.n_told == 0 and not strategy.observed
    named = make_strategy("random", SPACE, seed=0, objective="acc")
    other = named.ask(1)[0]
    with pytest.raises(ArchrankError, match=r"no metric 'acc' \(it has loss\)"):
        named.tell(other, Evaluation({"loss": 1.0}))
    strategy.tell(cell, np.float32(2.5))  # the cell is still to be told; numpy scalars do
    assert strategy.n_told == 1 and strategy.best == (cell, 2.5)


def test_ask_and_seed_take_integers_only() -> None:
    """ask(1.5) raised a TypeError deep inside sampling; seed=1.7 became 1 and seed="5" was
    taken, unlike a predictor's seed."""
    strategy = RandomSearch(SPACE, seed=0)
    with pytest.raises(ArchrankError, match=r"n must be an integer, got 1.5"):
        strategy.ask(1.5)  # type: ignore[arg-type]
    for seed in (1.7, "5", True):
        with pytest.raises(ArchrankError, match=r"seed must be an integer"):
            RandomSearch(SPACE, seed=seed)  # type: ignore[arg-type]
    assert RandomSearch(SPACE, seed=np.int64(3)).seed == 3


def test_guided_search_built_directly_gives_one_line_errors() -> None:
    """GuidedSearch(space, n_init=0) raised a bare ValueError (make_strategy wrapped it)."""
    from archrank.errors import InvalidOption

    with pytest.raises(InvalidOption, match=r"n_init, batch and pool_size must be at least 1"):
        GuidedSearch(SPACE, n_init=0)
    with pytest.raises(InvalidOption, match=r"strategy 'gates': n_init"):
        make_strategy("guided", SPACE, n_init=0)
