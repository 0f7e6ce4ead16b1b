"""GATES++: the op feature table, the zero-cost cache, arch-level inputs and masked auxiliary
targets through the predictor API and the bench harness."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from archrank.errors import ArchrankError
from archrank.opinfo import COLUMNS, op_features
from archrank.predictors.base import Predictor, make_predictor
from archrank.spaces import get_space
from archrank.zc import PROXIES
from archrank.zccache import ZCCache, ZCSetting, exact_costs, signal_matrix

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"width": 4, "depth": 1, "input_shape": (3, 8, 8), "batch_size": 4}


# -- op features ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["nb201", "nb101", "nbgraph", "darts"])
def test_every_op_is_described_and_distinct_ops_differ(name: str) -> None:
    space = get_space(name)
    table = op_features(space)
    vocab = space.edge_op_names if space.op_on == "edge" else space.node_op_names
    assert table.ops == tuple(vocab)
    # darts alone has a column more (its reduction cell's output node)
    assert table.columns == (*COLUMNS, "reduces") if name == "darts" else COLUMNS
    assert table.matrix.shape == (len(vocab), len(table.columns))
    assert np.isfinite(table.matrix).all()
    # one family and one aggregation per op
    fam = [c for c in COLUMNS if c.startswith("family_")]
    agg = [c for c in COLUMNS if c.startswith("agg_")]
    for op in vocab:
        row = table.row(op)
        assert sum(row[c] for c in fam) == 1 and sum(row[c] for c in agg) == 1, op
    rows = {tuple(r) for r in table.matrix.tolist()}
    assert len(rows) == len(vocab), "two ops share a feature row"


def test_op_features_follow_the_networks() -> None:
    t201 = op_features(get_space("nb201"))
    conv3, conv1, pool = (t201.row(o) for o in ("nor_conv_3x3", "nor_conv_1x1",
                                                   "avg_pool_3x3"))
    assert conv3["flops"] == 1.0 and 0 < conv1["flops"] < 1 and pool["flops"] == 0
    assert conv3["has_params"] == conv1["has_params"] == 1 and pool["has_params"] == 0
    assert t201.row("none")["family_zero"] == 1 and t201.row("skip_connect")["params"] == 0
    t101 = op_features(get_space("nb101"))
    assert t101.row("maxpool3x3")["agg_max"] == 1 and pool["agg_mean"] == 1
    assert t101.row("conv3x3-bn-relu")["params"] > t101.row("conv1x1-bn-relu")["params"]
    # darts: separable convolutions run twice, dilated ones once, with a dilated window
    td = op_features(get_space("darts"), "linear")
    sep3, sep5, dil3, dil5 = (td.row(o) for o in ("sep_conv_3x3", "sep_conv_5x5",
                                                   "dil_conv_3x3", "dil_conv_5x5"))
    assert sep5["params"] == 1.0 > sep3["params"] > dil5["params"] > dil3["params"] > 0
    # at C=36: 2 x (36 x 9 + 36 x 36) weights and 2 x 2 x 36 BN parameters
    assert sep3["params"] * (2 * (36 * 25 + 36 * 36) + 4 * 36) == pytest.approx(
        2 * (36 * 9 + 36 * 36) + 4 * 36, rel=1e-5)
    assert dil3["dilation"] == 2 and sep3["dilation"] == 1 and sep3["separable"] == 1
    assert td.row("max_pool_3x3")["agg_max"] == 1 and td.row("skip_connect")["params"] == 0
    assert td.row("reduce_concat")["reduces"] == 1 and td.row("normal_concat")["reduces"] == 0


def test_linear_costs_and_standardised_columns_separate_similar_ops() -> None:
    """On the log scale a 1x1 convolution costs 0.86 of a 3x3 one (nearly a duplicate row on
    nb101's 5 ops); linearly it is about 1/9, and standardised columns keep every op apart."""
    from archrank.predictors.gates_pp import standardise_columns

    space = get_space("nb101")
    log, lin = op_features(space), op_features(space, "linear")
    assert log.row("conv1x1-bn-relu")["params"] > 0.8
    assert 0.08 < lin.row("conv1x1-bn-relu")["params"] < 0.15
    assert lin.row("conv3x3-bn-relu")["params"] == 1.0
    std = standardise_columns(torch.as_tensor(lin.matrix))
    assert std.shape[1] < lin.matrix.shape[1]  # constant columns (unused families) dropped
    np.testing.assert_allclose(std.mean(0).numpy(), 0, atol=1e-6)
    np.testing.assert_allclose(std.std(0).numpy(), 1, atol=1e-5)
    assert len({tuple(r) for r in std.numpy().round(4).tolist()}) == len(lin.ops)
    with pytest.raises(ArchrankError, match="op cost scale must be one of log, linear"):
        op_features(space, "cubic")
    with pytest.raises(ArchrankError, match="op_costs must be one of log, linear"):
        make_predictor("gates++", space, op_costs="cubic")


def test_projection_can_start_at_zero() -> None:
    """``proj_scale=0``: the untrained network's gates are GATES's free embeddings alone; the
    feature projection only adds what training finds."""
    space = get_space("nb101")
    model = make_predictor("gates++", space, op_info=1, proj_scale=0, free_scale=1)
    layer = model.build_model().gates.layers[0]
    assert float(layer.op_proj.weight.detach().abs().sum()) == 0.0
    free = torch.sigmoid(layer.gate(layer.op_emb.weight))
    torch.testing.assert_close(layer.gate_table(), free)


def test_op_rank_places_every_op_by_its_features_alone(tmp_path: Path) -> None:
    """``op_rank=r``: the op embedding is the features through an r-wide bottleneck, the free
    part held at zero; gates of the ops then span r directions before the sigmoid. Saved and
    loaded like any model; the settings it cannot honour are refused."""
    space = get_space("nb201")
    model = make_predictor("gates++", space, seed=0, op_rank=1, **FAST)
    layer = model.build_model().gates.layers[0]
    assert not layer.op_emb.weight.requires_grad
    assert float(layer.op_emb.weight.abs().sum()) == 0.0
    emb = layer.op_proj(layer.op_features)  # [ops, op_dim], rank 1 around its mean
    assert torch.linalg.matrix_rank((emb - emb.mean(0)).detach()) == 1
    cells, arch, y = _data()
    model.fit(cells, y, arch_features=arch)
    for net in model.models_:  # training leaves the free part at zero
        assert float(net.gates.layers[0].op_emb.weight.abs().sum()) == 0.0
    model.save(tmp_path / "r.pt")
    np.testing.assert_allclose(Predictor.load(tmp_path / "r.pt").predict(cells, arch),
                               model.predict(cells, arch), rtol=1e-6)
    for params, message in [({"op_rank": 1, "op_info": "0"}, "needs op_info=1"),
                            ({"op_rank": 2, "proj_scale": 1.0}, "drop proj_scale / free_scale")]:
        with pytest.raises(ArchrankError, match=message):
            make_predictor("gates++", space, **params)


# -- zero-cost cache -----------------------------------------------------------------------
def _cells(name: str, n: int) -> list:
    space = get_space(name)
    return space.sample(n, np.random.default_rng(3))


def test_cache_hit_invalidation_and_rebuild(tmp_path: Path) -> None:
    space = get_space("nb201")
    path = tmp_path / "zc.npz"
    setting = ZCSetting.benchmark("nb201", **TINY)
    cells = _cells("nb201", 5)
    n_unique = len({space.hash(a) for a in cells})
    cache = ZCCache(space, setting, path)
    assert cache.fill(cells, "params,flops,synflow,nwot") == n_unique
    values = signal_matrix(space, cells, ["params", "synflow", "nwot"], cache=cache)
    assert np.isfinite(values[:, :2]).all()
    # exact counts are the real networks' counts at this setting
    from archrank.nn import build_network, count_params

    net = build_network("nb201", cells[0], width=4, depth=1)
    assert values[0, 0] == count_params(net)

    again = ZCCache(space, setting, path)  # hit: nothing to compute, same values
    assert again.fill(cells, "synflow,nwot") == 0
    np.testing.assert_array_equal(
        signal_matrix(space, cells, ["params", "synflow", "nwot"], cache=again), values)

    other = ZCSetting.benchmark("nb201", **{**TINY, "seed": 1})
    with pytest.warns(UserWarning, match="another setting \\(seed 0, now 1\\)"):
        changed = ZCCache(space, other, path)
    assert changed.lookup([space.hash(cells[0])], ["synflow"]).tolist() == [[np.nan]] or \
        np.isnan(changed.lookup([space.hash(cells[0])], ["synflow"])).all()
    assert changed.fill(cells, "synflow") == n_unique

    path.write_bytes(b"not a numpy file")
    with pytest.warns(UserWarning, match="corrupt zero-cost cache \\(not an npz archive\\)"):
        rebuilt = ZCCache(space, setting, path)
    assert rebuilt.fill(cells, "synflow") == n_unique
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ZCCache(space, setting, path).fill(cells, "synflow") == 0


def test_two_fills_of_one_cache_keep_each_others_cells(tmp_path: Path) -> None:
    """Two processes filling one cache file: each save merges what the other wrote (a first
    version kept only the last writer's cells)."""
    space = get_space("nb201")
    setting = ZCSetting.benchmark("nb201", **TINY)
    cells = _cells("nb201", 12)
    first, second = ZCCache(space, setting, tmp_path / "zc.npz"), \
        ZCCache(space, setting, tmp_path / "zc.npz")  # both opened before either fills
    first.fill(cells[:6], "params,synflow")
    second.fill(cells[6:], "params,synflow")
    merged = ZCCache(space, setting, tmp_path / "zc.npz")
    assert set(merged.index) == {space.hash(a) for a in cells}
    values = merged.lookup([space.hash(a) for a in cells], ["params", "synflow"])
    assert np.isfinite(values).all()


def test_cells_that_hash_alike_get_their_representatives_proxies(tmp_path: Path) -> None:
    """Proxies are cached per hash, computed on one representative (the first cell of the
    space's order), whichever cell of the group a fill meets first: a first version scored
    the first cell met, so a table's order changed the values (dead edges change the net)."""
    space = get_space("nb201")
    setting = ZCSetting.benchmark("nb201", **TINY)
    dead = space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|nor_conv_1x1~0|none~1|"
                       "nor_conv_3x3~2|")
    pruned = space.parse("|none~0|+|nor_conv_3x3~0|none~1|+|nor_conv_1x1~0|none~1|"
                         "nor_conv_3x3~2|")
    assert space.hash(dead) == space.hash(pruned) and space.canonical(dead) == pruned
    values = []
    for k, cell in enumerate((dead, pruned)):
        cache = ZCCache(space, setting, tmp_path / f"zc{k}.npz")
        cache.fill([cell], "synflow,snip")
        values.append(cache.lookup([space.hash(cell)], ["synflow", "snip"]))
    np.testing.assert_array_equal(values[0], values[1])


def test_cache_of_another_space_and_missing_signals_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "zc.npz"
    nb101 = get_space("nb101")
    matrix = [[0, 1, 1, 0, 1], [0, 0, 0, 1, 0], [0, 0, 0, 1, 1], [0, 0, 0, 0, 1], [0] * 5]
    cell = nb101.make(matrix, ["input", "conv3x3-bn-relu", "maxpool3x3", "conv1x1-bn-relu",
                               "output"])  # one fixed cell: no (slow, cold) nb101 sampling
    ZCCache(nb101, ZCSetting.benchmark("nb101", **TINY), path).fill([cell], "params")
    with pytest.raises(ArchrankError, match="zero-cost cache of space 'nb101', not 'nb201'"):
        ZCCache(get_space("nb201"), ZCSetting.benchmark("nb201", **TINY), path)
    space = get_space("nb201")
    cells = _cells("nb201", 6)
    cache = ZCCache(space, ZCSetting.benchmark("nb201", **TINY), tmp_path / "b.npz")
    cache.fill(cells[:2], "synflow")
    missing = len({space.hash(a) for a in cells[2:]} - {space.hash(a) for a in cells[:2]})
    with pytest.raises(ArchrankError, match=f"'synflow' is missing for {missing:,} of 6 cells"
                       r".*add --table TABLE to fill only a table's cells"):
        signal_matrix(space, cells, ["synflow"], cache=cache)


def test_small_setting_has_its_own_cache_and_signal_names(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from archrank.signals import arch_matrix
    from archrank.zccache import split_signal

    space = get_space("nb201")
    cells = _cells("nb201", 4)
    base = tmp_path / "zc.npz"
    small = ZCSetting.named("nb201", "small")
    assert (small.width, small.depth, small.input_shape) == (8, 1, (3, 16, 16))
    assert ZCSetting.named("nb201", "benchmark").cache_file(base) == base
    assert small.cache_file(base) == tmp_path / "zc-small.npz"
    assert small.cache_file().name == "zc-nb201-small.npz"
    custom = ZCSetting.benchmark("nb201", **TINY)
    assert custom.cache_file(base).name.startswith("zc-") and custom.cache_file(base) != base
    assert split_signal("nwot@small") == ("nwot", "small")
    assert split_signal("synflow") == ("synflow", "benchmark")
    assert split_signal("val_acc_4") is None
    with pytest.raises(ArchrankError, match="unknown zero-cost setting 'tiny'"):
        split_signal("nwot@tiny")
    with pytest.raises(ArchrankError, match="no small zero-cost setting for space 'darts'"):
        ZCSetting.named("darts", "small")
    from archrank.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["zc", "--space", "nb201", "--fill", "--setting", "tiny"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "unknown zero-cost setting 'tiny'" in err and "Traceback" not in err
    for option in (["--setting", "small"], ["--workers", "2"], ["--table", "t.csv"]):
        with pytest.raises(SystemExit) as exit_info:  # without --fill: refused, not ignored
            main(["zc", "--space", "nb201", "--n", "5", "--out", str(tmp_path / "z.csv"),
                  *option])
        assert exit_info.value.code == 2
        assert f"{option[0]} only applies to --fill" in capsys.readouterr().err

    # the benchmark-setting file is never read for nwot@small: the small signals live in
    # their own file, and vice versa
    ZCCache(space, ZCSetting.named("nb201", "benchmark"), base).fill(cells, "nwot")
    bench_nwot = arch_matrix(space, cells, ["nwot"], zc_cache=base)
    with pytest.raises(ArchrankError, match=r"'nwot' is missing .*--setting small"):
        arch_matrix(space, cells, ["nwot@small"], zc_cache=base)
    cache = ZCCache(space, small, small.cache_file(base))
    assert cache.fill(cells, "params,synflow,nwot") == len({space.hash(a) for a in cells})
    got = arch_matrix(space, cells, ["params@small", "nwot@small", "params"], zc_cache=base)
    from archrank.nn import build_network, count_params

    assert got[0, 0] == count_params(build_network("nb201", cells[0], width=8, depth=1))
    assert got[0, 2] == count_params(build_network("nb201", cells[0]))  # benchmark network
    assert np.isfinite(got).all()
    assert not np.array_equal(got[:, 1], bench_nwot[:, 0])
    np.testing.assert_array_equal(got[:, 1], cache.lookup([space.hash(a) for a in cells],
                                                          ["nwot"])[:, 0])
    every = ZCCache(space, small, tmp_path / "every.npz")  # the small setting's default fill
    every.fill(cells)
    assert sorted(every.values) == sorted(PROXIES)
    # one signal under two names fills both columns (it left the second one NaN)
    twice = arch_matrix(space, cells, ["params", "params@benchmark", "nwot", "nwot@benchmark"],
                        zc_cache=base)
    np.testing.assert_array_equal(twice[:, 0], twice[:, 1])
    np.testing.assert_array_equal(twice[:, 2], twice[:, 3])
    np.testing.assert_array_equal(twice[:, 2], bench_nwot[:, 0])


def test_nb101_exact_costs_match_the_table(nb101_csv: Path) -> None:
    from archrank.tables import load_benchmark

    space = get_space("nb101")
    table = load_benchmark(nb101_csv, space)
    costs = exact_costs(space, table.archs[:500], ZCSetting.benchmark("nb101"))
    np.testing.assert_array_equal(costs["params"], table.values("params")[:500])
    assert (costs["flops"] > costs["params"]).all()


# -- the predictor -------------------------------------------------------------------------
def _data(n: int = 40) -> tuple[list, np.ndarray, np.ndarray]:
    space = get_space("nb201")
    cells = space.sample(n, np.random.default_rng(0))
    costs = exact_costs(space, cells, ZCSetting.benchmark("nb201"))
    arch = np.stack([costs["flops"], costs["params"]], axis=1)
    y = np.log(costs["flops"]) + np.random.default_rng(1).normal(0, 0.1, n)
    return cells, arch, y


FAST = {"epochs": 3, "ensemble": 1, "arch_inputs": "flops,params"}


def test_where_a_predictor_trained_is_not_saved(tmp_path: Path) -> None:
    """A file saved with device="cuda" stopped a CPU machine at loading (a raw assertion)."""
    space = get_space("nb201")
    cells, arch, y = _data()
    model = make_predictor("gates++", space, seed=0, device="cpu", **FAST)
    model.fit(cells, y, arch_features=arch)
    model.save(tmp_path / "m.pt")
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    assert "device" not in blob["params"]
    blob["params"]["device"] = "cuda"  # as files written before this fix carry it
    torch.save(blob, tmp_path / "gpu.pt")
    np.testing.assert_allclose(Predictor.load(tmp_path / "gpu.pt").predict(cells, arch),
                               model.predict(cells, arch), rtol=1e-6)


def test_early_stopping_tau_of_a_long_slice_is_computed_by_sorting() -> None:
    from scipy.stats import kendalltau

    from archrank.predictors.neural import kendall_tau_fast

    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=3000).astype(float)  # ties: tau-b differs from tau-a
    b = a + rng.normal(size=3000)
    long = kendall_tau_fast(torch.as_tensor(a), torch.as_tensor(b))
    assert long == pytest.approx(kendalltau(a, b)[0], abs=1e-9)  # tau-b: the sorting path
    dense = kendall_tau_fast(torch.as_tensor(a[:2000]), torch.as_tensor(b[:2000]))
    tau_b = kendalltau(a[:2000], b[:2000])[0]
    assert abs(dense - tau_b) > 0.05  # the dense path is tau-a, told apart by the ties


def test_a_foreign_predictor_file_is_a_one_line_error(tmp_path: Path) -> None:
    torch.save({"weights": 1}, tmp_path / "x.pt")
    with pytest.raises(ArchrankError, match="not an archrank predictor file"):
        Predictor.load(tmp_path / "x.pt")


def test_save_load_round_trip(tmp_path: Path) -> None:
    space = get_space("nb201")
    cells, arch, y = _data()
    aux = np.stack([y * 2, np.where(np.arange(len(y)) % 2, np.nan, -y)], axis=1)
    model = make_predictor("gates++", space, seed=0, aux_targets="a,b", **FAST)
    model.fit(cells, y, arch_features=arch, aux=aux)
    before = model.predict(cells, arch)
    model.save(tmp_path / "m.pt")
    loaded = Predictor.load(tmp_path / "m.pt")
    assert loaded.arch_inputs == ("flops", "params") and loaded.aux_targets == ("a", "b")
    np.testing.assert_allclose(loaded.predict(cells, arch), before, rtol=1e-6)
    with pytest.raises(ArchrankError, match="uses arch_features flops, params"):
        loaded.predict(cells)


def test_darts_genotypes_with_op_features_fit_save_and_load(tmp_path: Path) -> None:
    """GATES++'s defaults on darts (op features on, no arch inputs there): a first version had
    no description of darts's ops and stopped at the first fit."""
    space = get_space("darts")
    cells = space.sample(24, np.random.default_rng(0))
    y = np.random.default_rng(1).normal(size=len(cells))
    model = make_predictor("gates++", space, seed=0, **{**FAST, "arch_inputs": "auto"})
    assert model.op_info() and model.arch_inputs == ()
    model.fit(cells, y)
    before = model.predict(cells)
    assert np.isfinite(before).all() and np.unique(before.round(6)).size > 1
    model.save(tmp_path / "d.pt")
    np.testing.assert_allclose(Predictor.load(tmp_path / "d.pt").predict(cells), before,
                               rtol=1e-6)


def test_missing_aux_values_are_masked_not_zero() -> None:
    space = get_space("nb201")
    cells, arch, y = _data(12)
    aux = np.stack([y + 5.0, np.full(len(y), np.nan)], axis=1)
    aux[::3, 0] = np.nan
    model = make_predictor("gates++", space, seed=0, aux_targets="a,b", **FAST)
    model.fit(cells, y, arch_features=arch, aux=aux)
    present = ~np.isnan(aux[:, 0])
    assert model.aux_mean_[0] == pytest.approx(aux[present, 0].mean())  # not diluted by 0s
    # the auxiliary loss ignores whatever sits under the mask
    graphs = space.to_graphs(cells)
    net = model.models_[0]
    from archrank.predictors.losses import make_loss

    loss_fn = make_loss("hinge", 0.1, 1.0)
    target = torch.as_tensor(y, dtype=torch.float32)
    mask = torch.as_tensor(np.stack([present, np.zeros(len(y), bool)], 1), dtype=torch.float32)
    base = torch.as_tensor(np.nan_to_num(aux), dtype=torch.float32)
    feats = torch.zeros(len(y), 2)
    losses = []
    for fill in (0.0, 1000.0):
        values = torch.where(mask > 0, base, torch.full_like(base, fill))
        extras = {"arch": feats, "aux": values, "aux_mask": mask}
        with torch.no_grad():
            net.eval()
            losses.append(float(model._loss(net, loss_fn, graphs, target, extras)))
    assert losses[0] == pytest.approx(losses[1])
    assert np.isfinite(model.predict(cells, arch)).all()


def test_arch_inputs_change_the_model_and_can_be_switched_off() -> None:
    space = get_space("nb201")
    cells, arch, y = _data()
    off = make_predictor("gates++", space, seed=0, epochs=3, ensemble=1, arch_inputs="",
                         op_info=0)
    assert off.arch_inputs == ()
    off.fit(cells, y, arch_features=arch)  # ignored: no arch inputs selected
    # gates++ with everything off is GATES with the same head
    assert np.isfinite(off.predict(cells)).all()
    with pytest.raises(ArchrankError, match="'flops' is missing \\(NaN\\) for 1 of 40"):
        bad = arch.copy()
        bad[3, 0] = np.nan
        make_predictor("gates++", space, **FAST).fit(cells, y, arch_features=bad)
    with pytest.raises(ArchrankError, match="has no parameter 'arch_inputs'"):
        make_predictor("gates", space, arch_inputs="flops")
    # a predictor that takes no signals ignores the matrices
    gates = make_predictor("gates", space, seed=0, epochs=2, ensemble=1)
    gates.fit(cells, y, arch_features=arch, aux=arch)
    assert len(gates.predict(cells, arch)) == len(cells)


# -- harness and CLI -----------------------------------------------------------------------
def test_bench_predictor_with_signals_and_bad_columns(nb101_csv: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    from archrank.bench.predictor import bench_predictors
    from archrank.cli import main
    from archrank.structure import structure_names

    result = bench_predictors(
        "nb101", str(nb101_csv), "val_acc_108", ["gates++", "mlp"], [30], 1,
        params={"gates++": {"epochs": 2, "ensemble": 1}, "mlp": {"epochs": 2}},
        aux_targets="val_acc_4,val_acc_12")
    # nb101's default inputs: exact costs and every structural signal, resolved by name
    assert result.signals["gates++"] == {
        "arch_inputs": ["flops", "params", *structure_names(get_space("nb101"))],
        "aux_targets": ["val_acc_4", "val_acc_12"]}
    assert result.signals["mlp"] == {"arch_inputs": [], "aux_targets": []}
    assert len(result.runs) == 2
    for extra, message in (
        (["--aux-targets", "val_acc_5"], "unknown aux target column 'val_acc_5'"),
        (["--arch-inputs", "synflow"], "'synflow' is missing for 10,000 of 10,000 cells"),
        (["--arch-inputs", "flops,val_acc_108"],   # the label given as an input
         "the metric 'val_acc_108' cannot also be an arch input"),
        (["--aux-targets", "val_acc_108"], "cannot also be an auxiliary target"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["bench", "predictor", "--space", "nb101", "--bench", str(nb101_csv),
                  "--metric", "val_acc_108", "--predictors", "gates++", "--train-sizes", "20",
                  "--seeds", "1", *extra])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and "Traceback" not in err


def test_a_proxy_named_like_a_table_column_is_said(tmp_path: Path) -> None:
    """nb201_zc.csv-like tables carry published proxies under archrank's names: an arch input
    of that name is archrank's own, with a warning saying so (a first version read it in
    silence; an error refused GATES++'s default inputs on such a table); the exact counts,
    the same in both, need none."""
    from archrank.signals import arch_matrix
    from archrank.tables import load_benchmark
    from test_options import CELLS

    table_path = tmp_path / "zc.csv"
    table_path.write_text("arch,acc,synflow,params\n" + "".join(
        f"{c},{90 + i},{i},{i}\n" for i, c in enumerate(CELLS)))
    table = load_benchmark(table_path, "nb201")
    space = get_space("nb201")
    cells = [space.parse(c) for c in CELLS]
    with pytest.warns(UserWarning, match=r"'synflow' is archrank's zero-cost proxy .*not "
                                         r"the column of"), pytest.raises(ArchrankError,
                                                                          match="missing"):
        arch_matrix(space, cells, ["synflow"], table=table, rows=np.arange(len(cells)),
                    zc_cache=tmp_path / "empty.npz")  # archrank's cache, not the column
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exact = arch_matrix(space, cells, ["params"], table=table, rows=np.arange(len(cells)))
    assert (exact > 1000).all()  # archrank's exact counts, not the column's 0, 1, 2...


def test_darts_exact_costs_are_counted_on_built_networks() -> None:
    """No vectorised count for darts genotypes: each network is built and counted (a first
    version read nb101's adjacency matrices from them and crashed)."""
    from archrank.nn import BENCHMARK_SIZE, build_network, count_params
    from archrank.signals import arch_matrix

    space = get_space("darts")
    cells = space.sample(2, np.random.default_rng(0))
    costs = arch_matrix(space, cells, ["params", "flops"])
    size = BENCHMARK_SIZE["darts"]
    net = build_network("darts", cells[1], width=size["width"], depth=size["depth"])
    assert costs[1, 0] == count_params(net) and (costs[:, 1] > costs[:, 0]).all()


def test_guided_search_feeds_arch_inputs_and_refuses_aux_targets() -> None:
    from archrank.strategies import make_strategy

    space = get_space("nb201")
    params = {"epochs": 5, "threads": 1, "arch_inputs": "flops,params"}
    strategy = make_strategy("gates++", space, seed=0, objective="score", n_init=5, batch=5,
                             predictor_params=params)
    for _ in range(12):
        arch = strategy.ask(1)[0]
        strategy.tell(arch, float(sum(op == "nor_conv_3x3" for op in arch.ops)))
    assert strategy.n_fits >= 1 and strategy.model is not None
    assert strategy.model.arch_inputs == ("flops", "params")
    assert strategy.model.arch_ref_  # the inputs reached the fit
    with pytest.raises(ArchrankError, match="cannot use aux_targets val_acc_4"):
        make_strategy("gates++", space, seed=0, objective="score",
                      predictor_params={**params, "aux_targets": "val_acc_4"})


def test_op_info_auto_and_bad_values() -> None:
    assert make_predictor("gates++", get_space("nb201")).op_info()
    assert make_predictor("gates++", get_space("nb101")).op_info()  # default on everywhere
    assert not make_predictor("gates++", get_space("nb101"), op_info="auto").op_info()
    assert make_predictor("gates++", get_space("nb201"), op_info="auto").op_info()
    with pytest.raises(ArchrankError, match="op_info must be auto, 0 or 1"):
        make_predictor("gates++", get_space("nb201"), op_info="yes please")


def test_guided_search_zero_cost_warm_start() -> None:
    """init=arch (the default for a predictor with arch inputs): the first n_init cells come
    from the top init_top of the candidates by the mean quantile of those inputs; a predictor
    without arch inputs starts at random as before, and cannot be asked for init=arch."""
    from archrank.errors import InvalidOption
    from archrank.predictors.neural import rank_reference, rank_transform
    from archrank.signals import arch_matrix
    from archrank.strategies import make_strategy

    space = get_space("nb201")
    params = {"epochs": 5, "threads": 1, "arch_inputs": "flops,params"}
    cells = space.enumerate()
    feats = arch_matrix(space, cells, ("flops", "params"))
    promise = rank_transform(feats, rank_reference(feats)).mean(axis=1)
    cut = np.sort(promise)[::-1][int(np.ceil(0.02 * len(promise))) - 1]
    hashes = space.hash_many(cells)
    of = dict(zip(hashes, promise, strict=True))

    def first(strategy, n=8):
        return [strategy.ask(1)[0] for _ in range(n)]

    warm = make_strategy("gates++", space, seed=3, objective="score", n_init=8,
                         init_top=0.02, predictor_params=params)
    assert warm.init == "arch" and warm.describe()["init"] == "arch"
    picks = space.hash_many(first(warm))
    assert len(set(picks)) == 8 and all(of[h] >= cut for h in picks)
    cold = make_strategy("gates++", space, seed=3, objective="score", n_init=8, init="random",
                         predictor_params=params)
    assert sum(of[h] >= cut for h in space.hash_many(first(cold))) <= 2  # 2% of the space
    again = make_strategy("gates++", space, seed=3, objective="score", n_init=8,
                          init_top=0.02, predictor_params=params)
    assert space.hash_many(first(again)) == picks  # deterministic per seed
    assert make_strategy("gates", space, seed=0, objective="score").init == "random"
    with pytest.raises(InvalidOption, match="init=arch ranks cells by the predictor's"):
        make_strategy("gates", space, seed=0, objective="score", init="arch")


def test_guided_warm_start_on_a_sampled_pool() -> None:
    """A space not enumerated (nb201 held to a sampled pool here, as nb101 always is): the warm
    start ranks a sampled pool by FLOPs and parameters, so the first cells are among the
    space's largest networks; deterministic per seed."""
    from archrank.signals import arch_matrix
    from archrank.strategies import make_strategy

    space = get_space("nb201")
    params = {"epochs": 5, "threads": 1, "arch_inputs": "flops,params"}

    def first(seed: int) -> list:
        strategy = make_strategy("gates++", space, seed=seed, objective="score", n_init=4,
                                 pool_size=400, max_enumerate=1, predictor_params=params)
        assert strategy.candidates is None and strategy.init == "arch"
        return [strategy.ask(1)[0] for _ in range(4)]

    picks = first(0)
    reference = arch_matrix(space, space.enumerate(), ("params",))
    mine = arch_matrix(space, picks, ("params",))
    assert (mine[:, 0] >= np.quantile(reference[:, 0], 0.75)).all()
    assert space.hash_many(first(0)) == space.hash_many(picks)


def test_guided_explore_near_takes_the_best_predicted_neighbour() -> None:
    """explore_near=k: an exploration slot is the unseen neighbour of the k best told cells
    that the fitted model ranks highest."""
    from archrank.strategies import make_strategy

    space = get_space("nb201")
    params = {"epochs": 5, "threads": 1, "arch_inputs": "flops,params"}
    strategy = make_strategy("gates++", space, seed=0, objective="score", n_init=6, batch=3,
                             explore=1.0, explore_near=2, predictor_params=params)
    for _ in range(6):
        arch = strategy.ask(1)[0]
        strategy.tell(arch, float(sum(op == "nor_conv_3x3" for op in arch.ops)))
    pick = strategy.ask(1)[0]  # fits, then every slot is an exploration slot
    best = sorted(strategy.observed, key=lambda t: -t[2])[:2]
    near = {space.hash(c): c for a, _, _ in best for c in space.neighbours(a)}
    seen = {space.hash(a) for a, _, _ in strategy.observed}
    free = [c for h, c in near.items() if h not in seen]
    scores = strategy.model.predict(free, arch_matrix_of(space, free))
    mine = [k for k, c in enumerate(free) if space.hash(c) == space.hash(pick)]
    # a neighbour, and the best predicted one but for the batch's own top picks (excluded
    # from exploration: at most 3 here)
    assert mine and scores[mine[0]] >= np.sort(scores)[::-1][3]
    with pytest.raises(ArchrankError, match=r"explore_near. must be at least 0, got -1"):
        make_strategy("gates", space, seed=0, objective="score", explore_near=-1)


def test_guided_proposals_are_the_candidates_own_strings() -> None:
    """Near exploration proposed the neighbour string it generated, a twin of the candidate
    (same hash, other dead edges: other FLOPs and parameters); 8 of 40 proposals here."""
    import hashlib

    from archrank.strategies.guided import GuidedSearch

    space = get_space("nb201")
    search = GuidedSearch(space, seed=0, max_fit_steps=30, explore=1.0, explore_near=3)
    for _ in range(40):
        (arch,) = search.ask(1)
        h = space.hash(arch)
        assert arch == search.candidates.archs[search.candidates.index[h]]
        search.tell(arch, int(hashlib.md5(h.encode()).hexdigest()[:8], 16) / 2**32)


def arch_matrix_of(space, cells):
    from archrank.signals import arch_matrix

    return arch_matrix(space, cells, ("flops", "params"))


def test_guided_search_takes_the_predictors_measured_defaults() -> None:
    from archrank.strategies import make_strategy

    space = get_space("nb201")
    params = {"epochs": 2, "arch_inputs": "flops,params"}
    pp = make_strategy("guided", space, predictor="gates++", seed=0, objective="score",
                       predictor_params=params)
    assert (pp.batch, pp.explore_near) == (5, 3)  # GatesPPPredictor.guided_defaults
    assert pp.describe()["batch"] == 5  # what bench search's JSON records ("settings")
    mine = make_strategy("gates++", space, seed=0, objective="score", batch=10,
                         explore_near=0, predictor_params=params)
    assert (mine.batch, mine.explore_near) == (10, 0)  # what the user sets wins
    gates = make_strategy("gates", space, seed=0, objective="score")
    assert (gates.batch, gates.explore_near) == (10, 0)  # GATES declares none
    nb101 = make_strategy("gates++", get_space("nb101"), seed=0, objective="score",
                          predictor_params=params)
    assert (nb101.batch, nb101.explore_near) == (10, 0)  # declared for nb201 only


def test_a_run_recorded_before_guided_defaults_resumes_without_them() -> None:
    from archrank.runs.config import SearchConfig, build_strategy

    new = SearchConfig(space="nb201", metric="cifar10_test", strategy="gates++",
                       strategy_params={"predictor_params": {"arch_inputs": "flops"}})
    assert build_strategy(new).batch == 5
    recorded = new.to_dict()
    assert SearchConfig.from_dict(recorded) == new  # a run recorded now resumes as it was
    del recorded["predictor_defaults"]  # a run recorded by an earlier archrank
    old = SearchConfig.from_dict(recorded)
    assert not old.predictor_defaults and build_strategy(old).batch == 10


def test_saved_files_name_their_resolved_inputs(tmp_path: Path) -> None:
    from archrank.signals import arch_matrix

    space = get_space("nb101")
    cells = space.sample(40, np.random.default_rng(0))
    y = np.arange(40, dtype=float)
    arch2 = arch_matrix(space, cells, ("flops", "params"))
    model = make_predictor("gates++", space, seed=0, epochs=2, ensemble=1,
                           arch_inputs="flops,params")
    model.fit(cells, y, arch_features=arch2)
    before = model.predict(cells, arch2)
    model.save(tmp_path / "m.pt")
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    assert blob["signals"]["arch_inputs"] == ["flops", "params"]
    # a file of an earlier archrank: "auto" then meant flops and params on nb101, and the
    # file names no inputs; it loads with those, not with today's default
    blob["params"]["arch_inputs"] = "auto"
    del blob["signals"]
    torch.save(blob, tmp_path / "old.pt")
    old = Predictor.load(tmp_path / "old.pt")
    assert old.arch_inputs == ("flops", "params")
    np.testing.assert_allclose(old.predict(cells, arch2), before, rtol=1e-6)
    # a count that matches nothing is a clear error, not a torch size mismatch
    blob["params"]["arch_inputs"] = "flops"
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(ArchrankError, match="takes 2 arch inputs, but 1 are named"):
        Predictor.load(tmp_path / "bad.pt")


def test_a_fill_on_worker_processes_equals_one_in_this_process(tmp_path: Path) -> None:
    """The workers' pool is archrank's (one torch thread, Ctrl-C left to the parent, stopped
    at once); the proxies are the same as computed here."""
    space = get_space("nb201")
    cells = _cells("nb201", 6)
    here = ZCCache(space, ZCSetting.benchmark("nb201", **TINY), tmp_path / "a.npz")
    here.fill(cells, "synflow,nwot")
    pool = ZCCache(space, ZCSetting.benchmark("nb201", **TINY), tmp_path / "b.npz")
    pool.fill(cells, "synflow,nwot", workers=2, chunk=2)
    for name in ("synflow", "nwot"):
        np.testing.assert_allclose(pool.values[name], here.values[name], rtol=1e-6)


def test_guided_search_checks_its_signals_on_the_cells_it_may_propose(monkeypatch) -> None:
    """A search held to a table's cells needs its arch inputs for those cells only (a cache
    filled for the table): the early check reads every candidate, not a cell of the space
    (probing one candidate let a cache filled for one cell pass and the search fail later)."""
    from archrank.strategies import CandidateSet, GuidedSearch, make_strategy

    space = get_space("nb201")
    cells = space.sample(5, np.random.default_rng(7))
    probed: list = []
    monkeypatch.setattr(GuidedSearch, "_arch_features",
                        lambda self, archs: probed.extend(archs) or np.zeros((len(archs), 2)))
    make_strategy("gates++", space, seed=0, objective="score",
                  candidates=CandidateSet(space, cells),
                  predictor_params={"epochs": 5, "arch_inputs": "flops,params"})
    assert sorted(space.hash(c) for c in probed) == sorted({space.hash(c) for c in cells})


def test_guided_search_among_a_tables_cells_reads_its_columns(nb201_zc_csv: Path, cli,
                                                                 tmp_path: Path) -> None:
    """A table's own columns (published proxies) serve as arch inputs of a search held to
    its cells; a search of the whole space cannot read them and says where they work."""
    from archrank.strategies import CandidateSet, make_strategy
    from archrank.tables import load_benchmark

    space = get_space("nb201")
    bench = load_benchmark(f"{nb201_zc_csv}?dataset=cifar10", space)
    rows = np.arange(40)
    candidates = CandidateSet(space, [bench.archs[i] for i in rows], table=bench, rows=rows)
    params = {"epochs": 3, "threads": 1, "arch_inputs": "params,fisher"}
    strategy = make_strategy("gates++", space, seed=0, objective="val_acc", n_init=4,
                             batch=4, candidates=candidates, predictor_params=params)
    fisher = bench.values("fisher")
    for _ in range(10):
        arch = strategy.ask(1)[0]
        i = candidates.rows[candidates.index[space.hash(arch)]]
        strategy.tell(arch, float(bench.values("val_acc")[i]))
    assert strategy.model is not None and strategy.model.arch_ref_
    feats = strategy._candidate_features()
    np.testing.assert_array_equal(feats[:, 1], fisher[candidates.rows])  # twins dropped
    with pytest.raises(ArchrankError, match=r"'fisher' is neither a known signal nor a column "
                       r"of a table .*--space-from-bench"):
        make_strategy("gates++", space, seed=0, objective="val_acc", predictor_params=params)

    table = f"{nb201_zc_csv}?dataset=cifar10"
    code, _, err = cli("search", "--space", "nb201", "--bench", table, "--metric", "val_acc",
                         "--strategy", "guided", "--predictor", "gates++", "--space-from-bench",
                         "--budget", "8", "--set", "n_init=4", "--set", "predictor.epochs=2",
                         "--set", "predictor.arch_inputs=params,fisher",
                         "--run-dir", str(tmp_path / "run"))
    assert code == 0, err


def test_a_table_fill_from_before_session_10_is_flagged(tmp_path: Path) -> None:
    """A cache filled from a table before the representative of a hash was fixed may hold
    another string's proxies: reading it says so (a whole-space fill does not need to)."""
    import json as _json

    space = get_space("nb201")
    path = tmp_path / "zc.npz"
    setting = ZCSetting.benchmark("nb201", **TINY)
    ZCCache(space, setting, path).fill(_cells("nb201", 3), "synflow")
    with np.load(path) as blob:
        arrays = {k: blob[k] for k in blob.files}
    meta = _json.loads(str(arrays["meta"]))
    del meta["representative"]
    arrays["meta"] = np.array(_json.dumps(meta))
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.warns(UserWarning, match="filled from a table before session 10"):
        old = ZCCache(space, setting, path)
    old.fill(_cells("nb201", 6), "synflow")  # more cells filled into it: still marked
    with pytest.warns(UserWarning, match="filled from a table before session 10"):
        ZCCache(space, setting, path)


def test_darts_factorized_reductions_show_their_relu_to_hooks() -> None:
    from archrank.nn.darts import FactorizedReduce

    reduce = FactorizedReduce("2d", 4, 8)
    assert any(isinstance(m, torch.nn.ReLU) for m in reduce.modules())


def test_signal_inputs_name_bad_values(tmp_path: Path) -> None:
    """An infinite table value is refused by line (not at whichever fit draws it); a matrix
    of text is a one-line error; ``structure`` expands in ``arch_matrix`` as it does in a
    predictor's ``arch_inputs``."""
    from archrank.signals import arch_matrix, aux_matrix
    from archrank.structure import structure_names
    from archrank.tables import load_benchmark

    space = get_space("nb201")
    cells = _cells("nb201", 3)
    path = tmp_path / "t.csv"
    path.write_text("arch,acc,aux\n" + "".join(
        f"{space.format(a)},{90 + k},{'inf' if k == 2 else k}\n" for k, a in enumerate(cells)))
    bench = load_benchmark(path, space)
    with pytest.raises(ArchrankError, match=r"aux target 'aux' of .*t\.csv is inf on line 4"):
        aux_matrix(bench, np.arange(3), ["aux"], 3)
    with pytest.raises(ArchrankError, match=r"arch input 'aux' .* is inf on line 4"):
        arch_matrix(space, bench.archs, ["aux"], table=bench, rows=np.arange(3))
    assert arch_matrix(space, cells, ["structure"]).shape == (3, len(structure_names(space)))
    model = make_predictor("gates++", space, **{**FAST, "arch_inputs": "flops"})
    with pytest.raises(ArchrankError, match="arch_features must be numbers"):
        model.fit(cells, [1.0, 2.0, 3.0], arch_features=[["a"], ["b"], ["c"]])


def test_every_predictor_takes_its_space_by_name() -> None:
    """make_predictor promises a space or its name; gates++ read ``space.name`` of the name."""
    from archrank.predictors.base import PREDICTORS

    for name in sorted(PREDICTORS):
        if name.startswith("xgb"):
            pytest.importorskip("xgboost")
        model = make_predictor(name, "nb201")
        assert model.space is get_space("nb201"), name
    assert make_predictor("gates++", "nb201").arch_inputs[:3] == ("flops", "params", "synflow")
