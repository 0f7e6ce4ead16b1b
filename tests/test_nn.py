"""The benchmark networks: parameter counts equal the published ones, FLOPs match NB201's table."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from archrank.errors import InvalidArchitecture
from archrank.nn import build_network
from archrank.nn.counting import (
    count_flops,
    count_params,
    nb101_costs,
    nb101_param_counts,
    nb201_costs,
)
from archrank.nn.nb101 import NB101Network, vertex_channels
from archrank.nn.nb201 import NB201_OPS, NB201Network
from archrank.spaces import get_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _nb201_ops(text: str) -> list[str]:
    return list(get_space("nb201").parse(text).ops)


def _nb101_rows(path: Path) -> tuple[list[np.ndarray], list[list[str]], np.ndarray]:
    matrices, ops, params = [], [], []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            n = int(row["num_vertices"])
            bits = np.frombuffer(row["adjacency"].encode(), dtype=np.uint8) - ord("0")
            matrices.append(bits.reshape(n, n))
            ops.append(row["ops"].split(","))
            params.append(int(row["params"]))
    return matrices, ops, np.array(params)


# -- NB101 ---------------------------------------------------------------------------------------
def test_nb101_params_equal_the_table_for_every_row(nb101_csv: Path) -> None:
    matrices, ops, expected = _nb101_rows(nb101_csv)
    assert len(expected) == 10_000
    counts = nb101_param_counts(matrices, ops)  # benchmark setting: 3x32x32, 128, 3x3 cells
    wrong = np.flatnonzero(counts != expected)
    assert wrong.size == 0, f"{wrong.size} rows differ, first: line {wrong[:5] + 2}"


def test_nb101_modules_have_the_table_params(nb101_csv: Path) -> None:
    """The formula above is the real network's count: build a varied sample and count."""
    matrices, ops, expected = _nb101_rows(nb101_csv)
    sizes = np.array([len(m) for m in matrices])
    in_out = np.array([m[0, -1] for m in matrices])
    rng = np.random.default_rng(0)
    picks = []
    for n in np.unique(sizes):  # every vertex count, with and without input->output
        for flag in (0, 1):
            idx = np.flatnonzero((sizes == n) & (in_out == flag))
            picks.extend(rng.choice(idx, min(2, idx.size), replace=False).tolist())
    assert len(picks) >= 12
    for i in picks:
        net = NB101Network(matrices[i], ops[i])
        assert count_params(net) == expected[i], f"row {i + 2}"
    # the vectorised MACs are the hooks' count, at a small size (odd input: rounding up)
    sub = [matrices[i] for i in picks]
    costs = nb101_costs(sub, [ops[i] for i in picks], stem_channels=8, cells_per_stack=1,
                        input_size=(9, 9))
    for k, i in enumerate(picks):
        net = NB101Network(matrices[i], ops[i], stem_channels=8, cells_per_stack=1)
        assert count_params(net) == costs["params"][k]
        assert count_flops(net, (3, 9, 9)) == costs["flops"][k], f"row {i + 2}"


def test_nb101_forward_on_images_and_signals() -> None:
    space = get_space("nb101")
    matrix = [[0, 1, 1, 0, 1], [0, 0, 0, 1, 0], [0, 0, 0, 1, 1], [0, 0, 0, 0, 1], [0] * 5]
    cell = space.make(matrix, ["input", "conv3x3-bn-relu", "maxpool3x3", "conv1x1-bn-relu",
                               "output"])
    img = build_network("nb101", cell, width=8, depth=1, num_classes=7)
    assert img(torch.randn(2, 3, 16, 16)).shape == (2, 7)
    sig = build_network(space, cell, width=8, depth=2, in_channels=2, input_kind="1d")
    out = sig(torch.randn(3, 2, 23))  # odd lengths are fine
    out.sum().backward()
    assert out.shape == (3, 10)
    assert isinstance(sig.cells[0].vertex_ops[0], torch.nn.Module)


def test_nb101_vertex_channels_follow_the_benchmark_rule() -> None:
    # input -> a, b, c -> output: 128 split as 43, 43, 42
    m = np.zeros((5, 5), dtype=int)
    m[0, 1:4] = 1
    m[1:4, 4] = 1
    assert vertex_channels(64, 128, m) == [64, 43, 43, 42, 128]
    # input -> a -> b -> output: a takes b's channels
    chain = np.eye(4, k=1, dtype=int)
    assert vertex_channels(32, 64, chain) == [32, 64, 64, 64]
    # a feeds the output and b; b feeds the output: two outputs of 32
    m = np.array([[0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]])
    assert vertex_channels(8, 64, m) == [8, 32, 32, 64]


def test_nb101_rejects_invalid_cells() -> None:
    with pytest.raises(InvalidArchitecture, match="unknown NB101 op"):
        NB101Network(np.eye(3, k=1), ["input", "conv5x5", "output"])
    with pytest.raises(InvalidArchitecture, match="no path"):
        NB101Network(np.zeros((3, 3)), ["input", "maxpool3x3", "output"])


# -- NB201 ---------------------------------------------------------------------------------------
def _nb201_rows(path: Path, dataset: str) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["dataset"] == dataset]


@pytest.mark.parametrize(("dataset", "classes"), [("cifar10", 10), ("cifar100", 100)])
def test_nb201_params_and_flops_equal_the_table(nb201_zc_csv: Path, dataset: str,
                                                classes: int) -> None:
    """Every row: params (millions, 6 decimals) and flops (MFLOPs, torchstat convention)."""
    rows = _nb201_rows(nb201_zc_csv, dataset)
    assert len(rows) == 725
    costs = nb201_costs([_nb201_ops(r["arch"]) for r in rows], num_classes=classes,
                        convention="torchstat")
    params = np.array([float(r["params"]) for r in rows])
    flops = np.array([float(r["flops"]) for r in rows])
    assert np.array_equal(np.round(costs["params"] / 1e6, 6), params)
    assert np.abs(costs["flops"] / 1e6 - flops).max() < 1e-9


def test_nb201_modules_match_the_formulas(nb201_zc_csv: Path) -> None:
    """Hooks on the real modules give the formulas' numbers (benchmark setting, both rules)."""
    rows = _nb201_rows(nb201_zc_csv, "cifar10")
    for r in rows[:6]:
        ops = _nb201_ops(r["arch"])
        net = NB201Network(ops)
        assert round(count_params(net) / 1e6, 6) == float(r["params"])
        assert count_flops(net, (3, 32, 32), "torchstat") / 1e6 == pytest.approx(
            float(r["flops"]), abs=1e-9)
        macs = nb201_costs([ops])["flops"][0]
        assert count_flops(net, (3, 32, 32)) == macs


@pytest.mark.parametrize(("kind", "size", "channels"),
                         [("2d", (8, 8), 1), ("2d", (9, 7), 3), ("1d", (40,), 1),
                          ("1d", (37,), 2)])
def test_nb201_formulas_at_other_sizes(kind: str, size: tuple[int, ...], channels: int) -> None:
    rng = np.random.default_rng(len(size) * 100 + size[0])
    for _ in range(3):
        ops = [str(o) for o in rng.choice(NB201_OPS, 6)]
        kw = {"channels": int(rng.integers(3, 12)), "cells_per_stage": int(rng.integers(1, 3)),
              "num_classes": 5, "in_channels": channels}
        net = NB201Network(ops, input_kind=kind, **kw)
        for convention in ("macs", "torchstat"):
            want = nb201_costs([ops], input_size=size, convention=convention, **kw)
            assert want["params"][0] == count_params(net)
            assert want["flops"][0] == count_flops(net, (channels, *size), convention)
        assert net(torch.randn(2, channels, *size)).shape == (2, 5)


def test_nb201_cell_semantics() -> None:
    torch.manual_seed(0)
    dead = build_network("nb201", ["none"] * 6, width=4, depth=1, in_channels=1,
                         input_kind="1d").eval()
    x = torch.randn(4, 1, 12)
    out = dead(x)
    assert torch.allclose(out, out[:1].expand_as(out))  # output cut off from the input
    # skip everywhere: node 3 = x + x + (x + x) = 4x, so the cell is a pure scaling
    skip = build_network("nb201", get_space("nb201").parse(
        "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|"
        "skip_connect~2|"), width=4, depth=1)
    cell = skip.cells[0]
    y = torch.randn(2, 4, 5, 5)
    assert torch.allclose(cell(y), 4 * y)


def test_nb201_rejects_invalid_cells() -> None:
    with pytest.raises(InvalidArchitecture, match="6 edge ops"):
        NB201Network(["none"] * 5)
    with pytest.raises(InvalidArchitecture, match="unknown NB201 op"):
        NB201Network(["none"] * 5 + ["conv_7x7"])


def test_flops_conventions_on_a_small_module() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                              torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 4))
    macs = 27 * 8 * 64 + 8 * 4
    assert count_flops(net, (3, 8, 8)) == macs
    # + conv bias, BN 2/element, ReLU 1/element, adaptive pool (8+1)*(8+1) per channel
    assert count_flops(net, (3, 8, 8), "torchstat") == macs + 512 + 1024 + 512 + 8 * 81
    with pytest.raises(ValueError, match="unknown FLOPs convention"):
        count_flops(net, (3, 8, 8), "bogus")
    assert net.training  # mode restored


def test_nb101_analytic_counts_refuse_cells_that_are_not_pruned() -> None:
    """NB101Network prunes a cell itself, so counts of an unpruned one disagreed with the
    network (3,809 vs 15,042 parameters) and a cell without a path got a cost."""
    import numpy as np

    from archrank.errors import ArchrankError
    from archrank.nn.counting import nb101_costs

    ops = ["input", "conv1x1-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu",
           "conv1x1-bn-relu", "output"]
    dead = np.array([[0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0],
                     [0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 1], [0] * 6])  # vertex 1 unreachable
    no_path = np.array([[0, 1, 0], [0, 0, 0], [0, 0, 0]])
    chain = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    three = ["input", "conv3x3-bn-relu", "output"]
    for mats, names in (([chain, dead], [three, ops]), ([no_path], [three])):
        with pytest.raises(ArchrankError, match="is not a pruned NB101 cell"):
            nb101_costs(mats, names)
    assert nb101_costs([chain], [three])["params"][0] > 0


def test_a_cell_as_text_or_a_space_without_networks_is_a_one_line_error() -> None:
    """A cell's text was read character by character ("an NB201 cell has 6 edge ops, got
    87"; a ValueError for nb101), and nbgraph's defaults were a bare KeyError."""
    from archrank.errors import ArchrankError
    from archrank.oracles.training import TrainingOracle, default_setup

    for name in ("nb201", "nb101", "darts"):
        space = get_space(name)
        text = space.format(space.sample(1, np.random.default_rng(0))[0])
        with pytest.raises(ArchrankError, match=rf"got the {name} cell as text \(str\); read "
                           rf"it with get_space\('{name}'\)\.parse\(text\) first"):
            build_network(name, text)
    oracle = TrainingOracle("nb201", "digits", width=4, depth=1)
    assert "cell as text" in (oracle.evaluate("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|"
                                              "none~1|none~2|").error or "")
    with pytest.raises(ArchrankError, match=r"no network skeleton for space 'nbgraph'; "
                       r"networks exist for nb201, nb101, darts"):
        default_setup("nbgraph", "digits")
