"""Structural signals (``archrank.structure``): hand-counted cells of nb101 and nb201, one
batched call equal to one call per cell, the signals through ``archrank.signals`` as arch
inputs, and their rank correlation with nb101's real accuracies."""

from __future__ import annotations

import numpy as np
import pytest

from archrank.errors import ArchrankError
from archrank.signals import arch_matrix
from archrank.spaces import get_space
from archrank.structure import structure_matrix, structure_names

C3, C1, MP = "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"


def signals_of(space, arch) -> dict[str, float]:
    names = structure_names(space)
    return dict(zip(names, structure_matrix(space, [arch], names)[0].tolist(), strict=True))


def test_nb101_cell_counted_by_hand() -> None:
    nb101 = get_space("nb101")
    # input -> conv3x3 -> conv1x1 -> output, input -> maxpool -> output, input -> output
    cell = nb101.make([[0, 1, 0, 1, 1],
                       [0, 0, 1, 0, 0],
                       [0, 0, 0, 0, 1],
                       [0, 0, 0, 0, 1],
                       [0, 0, 0, 0, 0]], ["input", C3, C1, MP, "output"])
    s = signals_of(nb101, cell)
    assert s == {"depth": 3, "shortest": 1, "wdepth": 2, "fanout": 3, "fanin": 3,
                 f"n_{C3}": 1, f"n_{C1}": 1, f"n_{MP}": 1}


def test_nb201_cell_counted_by_hand() -> None:
    nb201 = get_space("nb201")
    # edges 0->1 pool, 0->2 pool, 1->2 conv1x1, 0->3 none, 1->3 pool, 2->3 conv3x3
    cell = nb201.parse("|avg_pool_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|"
                       "avg_pool_3x3~1|nor_conv_3x3~2|")
    s = signals_of(nb201, cell)
    assert s == {"depth": 3, "shortest": 2, "wdepth": 2, "fanout": 2, "fanin": 2,
                 "n_skip_connect": 0, "n_nor_conv_1x1": 1, "n_nor_conv_3x3": 1,
                 "n_avg_pool_3x3": 3}
    # the output unreachable: every path signal says so with -1, and no edge is live
    dead = signals_of(nb201, nb201.parse("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|"
                                         "none~2|"))
    assert dead["depth"] == dead["shortest"] == dead["wdepth"] == -1
    assert dead["fanout"] == dead["fanin"] == dead["n_nor_conv_3x3"] == 0
    # an edge into a dead end (node 2 feeds nothing) is not counted
    stub = signals_of(nb201, nb201.parse("|skip_connect~0|+|nor_conv_3x3~0|none~1|+|none~0|"
                                         "avg_pool_3x3~1|none~2|"))
    assert stub == {"depth": 2, "shortest": 2, "wdepth": 0, "fanout": 1, "fanin": 1,
                    "n_skip_connect": 1, "n_nor_conv_1x1": 0, "n_nor_conv_3x3": 0,
                    "n_avg_pool_3x3": 1}


@pytest.mark.parametrize("name", ["nb101", "nb201", "nbgraph"])
def test_batched_equals_one_by_one(name: str) -> None:
    space = get_space(name)
    cells = space.sample(40, np.random.default_rng(0))
    names = structure_names(space)
    batched = structure_matrix(space, cells, names)
    single = np.stack([structure_matrix(space, [c], names)[0] for c in cells])
    np.testing.assert_array_equal(batched, single)
    assert batched.shape == (40, len(names)) and np.isfinite(batched).all()


def test_darts_has_none() -> None:
    # a darts genotype joins a normal and a reduction cell, two inputs each: pooled paths and
    # op counts would not say which cell an op sits in
    darts = get_space("darts")
    with pytest.raises(ArchrankError, match="one cell with one input node"):
        structure_names(darts)
    cells = darts.sample(2, np.random.default_rng(0))
    with pytest.raises(ArchrankError, match="neither a known signal nor a column of a table"):
        arch_matrix(darts, cells, ["depth"])


def test_cells_hashed_alike_get_the_same_signals() -> None:
    from archrank.tables import load_benchmark
    from conftest import shared_file

    nb201 = get_space("nb201")
    table = load_benchmark(str(shared_file("nb201.csv")), nb201)
    m = structure_matrix(nb201, table.archs, structure_names(nb201))
    first: dict[str, int] = {}
    groups = 0
    for i, h in enumerate(nb201.hash_many(table.archs)):
        if h in first:
            groups += 1
            np.testing.assert_array_equal(m[i], m[first[h]])
        else:
            first[h] = i
    assert groups > 1000 and len(first) == 8765  # nb201's 6,860 duplicates of 8,765 cells


def test_arch_inputs_resolve_structural_signals() -> None:
    nb201 = get_space("nb201")
    cells = nb201.sample(5, np.random.default_rng(1))
    m = arch_matrix(nb201, cells, ["params", "wdepth", "n_nor_conv_3x3"])
    np.testing.assert_array_equal(m[:, 1:], structure_matrix(nb201, cells,
                                                             ["wdepth", "n_nor_conv_3x3"]))
    with pytest.raises(ArchrankError, match="structural signals: depth"):
        arch_matrix(nb201, cells, ["depthx"])
    with pytest.raises(ArchrankError, match="unknown structural signal 'n_none'"):
        structure_matrix(nb201, cells, ["n_none"])


def test_nb101_signals_rank_real_accuracy() -> None:
    from scipy.stats import kendalltau

    from archrank.tables import load_benchmark
    from conftest import shared_file

    nb101 = get_space("nb101")
    table = load_benchmark(str(shared_file("nb101_10k.csv")), nb101)
    y = np.asarray(table.values("val_acc_108"))
    m = structure_matrix(nb101, table.archs, ["n_conv3x3-bn-relu", "n_maxpool3x3",
                                              "shortest"])
    taus = [kendalltau(m[:, k], y)[0] for k in range(3)]
    # more 3x3 convolutions better, more pooling and a shortcut to the output worse
    assert taus[0] > 0.35 and taus[1] < -0.3 and taus[2] < -0.3


def test_structure_stands_for_every_structural_signal() -> None:
    from archrank.predictors.base import make_predictor

    nb201 = get_space("nb201")
    model = make_predictor("gates++", nb201, arch_inputs="flops,structure,depth")
    assert model.arch_inputs == ("flops", *structure_names(nb201))
    # by the space's name: signal_names was given the raw argument, a str (AttributeError
    # 'str' object has no attribute 'op_on')
    named = make_predictor("gates++", "nb201", arch_inputs="flops,structure")
    assert named.arch_inputs == ("flops", *structure_names(nb201))


def test_a_table_column_named_like_a_structural_signal_is_refused(tmp_path) -> None:
    from archrank.tables import load_benchmark

    nb201 = get_space("nb201")
    cells = nb201.sample(3, np.random.default_rng(2))
    path = tmp_path / "t.csv"
    path.write_text("arch,acc,depth\n" + "".join(f"{nb201.format(c)},{i},{i}\n"
                                                  for i, c in enumerate(cells)))
    table = load_benchmark(str(path), nb201)
    rows = np.arange(len(cells))
    assert arch_matrix(nb201, table.archs, ["acc"], table=table, rows=rows).shape == (3, 1)
    with pytest.raises(ArchrankError, match="both a structural signal and a column"):
        arch_matrix(nb201, table.archs, ["depth"], table=table, rows=rows)
