"""The weight-sharing engine: supernet, SPOS training, checkpoints, scoring, hardware, fit."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from archrank.datasets import ArrayDataset
from archrank.errors import ArchrankError
from archrank.nn.counting import count_flops, count_params
from archrank.oneshot import (
    ArchSampler,
    FairSampler,
    LatencyTable,
    NetworkSetting,
    ScoreOptions,
    SubnetScorer,
    SupernetOracle,
    SupernetTrainer,
    build_supernet,
    feasible,
    fit_space,
    load_checkpoint,
    pareto_front,
    validate_latency,
)
from archrank.oracles.training import TrainRecipe

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def tiny_data(n: int = 256, length: int = 16, seed: int = 0) -> ArrayDataset:
    """A small learnable 1-D task: the class is where a bump sits in the signal."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, size in (("train", n), ("val", n // 2)):
        y = rng.integers(0, 4, size=size)
        x = rng.normal(0, 0.5, size=(size, 1, length)).astype(np.float32)
        for i, c in enumerate(y):
            x[i, 0, 4 * c:4 * c + 4] += 2.0
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    return ArrayDataset.from_arrays("tiny", arrays)


def tiny_trainer(data: ArrayDataset, epochs: int = 2, **kwargs) -> SupernetTrainer:
    recipe = TrainRecipe(epochs=epochs, batch_size=32)
    return SupernetTrainer.create("nb201", data, width=4, depth=1, recipe=recipe,
                                  device="cpu", **kwargs)


def uniform_cells(nb201, extra: int, seed: int = 0) -> list:
    """The five single-op cells and ``extra`` random ones."""
    cells = [nb201.parse("+".join("|" + "|".join(f"{op}~{i}" for i in range(j)) + "|"
                                  for j in range(1, 4))) for op in OPS]
    return cells + nb201.sample(extra, np.random.default_rng(seed))


# -- the supernet is the stand-alone network ----------------------------------------------------
@pytest.mark.parametrize("kind,shape", [("1d", (1, 20)), ("2d", (3, 8, 8))])
def test_subnetwork_forward_equals_standalone_network(nb201, kind, shape):
    setting = NetworkSetting("nb201", 4, 2, kind, shape[0], 10, shape)
    torch.manual_seed(0)
    net = build_supernet(setting)
    with torch.no_grad():  # move BN statistics and affine parameters off their defaults
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    x = torch.randn(6, *shape)
    for arch in uniform_cells(nb201, 12):
        codes = tuple(int(c) for c in net.encode([arch])[0])
        alone = net.standalone(arch)
        assert type(alone).__name__ == "NB201Network" and alone.ops == arch.ops
        for train in (False, True):
            net.train(train)
            alone.train(train)
            with torch.no_grad():
                assert torch.equal(net(x, codes), alone(x)), (arch, train)
        # every stand-alone parameter was inherited, none is left at its initial value
        assert len(net.standalone_names(codes)) == len(alone.state_dict())


def test_supernet_costs_are_the_standalone_counts(nb201):
    setting = NetworkSetting("nb201", 8, 1, "1d", 1, 10, (1, 40))
    net = build_supernet(setting)
    cells = uniform_cells(nb201, 5)
    costs = net.costs(net.encode(cells))
    for i, arch in enumerate(cells):
        alone = net.build_standalone(arch)
        assert costs["params"][i] == count_params(alone)
        assert costs["flops"][i] == count_flops(alone, (1, 40))


def test_unknown_space_has_no_supernet():
    with pytest.raises(ArchrankError, match="no supernet for space 'nb101'"):
        build_supernet(NetworkSetting("nb101", 8, 1, "1d", 1, 10, (1, 40)))


def test_device_names_are_checked():
    from archrank.oneshot.trainer import resolve_device

    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ArchrankError, match="unknown device 'tpu9'"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ArchrankError, match="no CUDA GPU is available"):
            resolve_device("cuda")


# -- SPOS training ------------------------------------------------------------------------------
class TwoPaths(ArchSampler):
    """All 3x3 convolutions at even steps, all 1x1 convolutions at odd ones."""

    name = "two-paths"

    def sample(self, step: int) -> np.ndarray:
        return np.full(6, OPS.index("nor_conv_3x3" if step % 2 == 0 else "nor_conv_1x1"))


def test_ops_off_the_path_get_no_gradient_and_do_not_move():
    data = tiny_data(n=64)  # two steps per epoch
    trainer = tiny_trainer(data, epochs=1, sampler=TwoPaths(None))
    snapshots = []
    trainer.train(on_step=lambda e, s, n, loss: snapshots.append(
        copy.deepcopy(trainer.supernet.state_dict())))
    after = trainer.supernet.state_dict()
    params = dict(trainer.supernet.named_parameters())
    conv3 = [k for k in params if ".nor_conv_3x3." in k]
    conv1 = [k for k in params if ".nor_conv_1x1." in k]
    assert conv3 and conv1
    for k in conv3:  # trained at step 1 (so they have momentum), off the path at step 2
        assert params[k].grad is None
        assert torch.equal(after[k], snapshots[0][k]), k
    for k in conv1:
        assert params[k].grad is not None
        assert not torch.equal(after[k], snapshots[0][k]), k
    skeleton = "net.stem.0.weight"
    assert not torch.equal(after[skeleton], snapshots[0][skeleton])
    # the 3x3 convolutions do carry momentum buffers: a zero gradient would have moved them
    net, sampler = trainer.supernet, trainer.sampler
    used = net.path_parameters(tuple(sampler.sample(0))) | net.path_parameters(
        tuple(sampler.sample(1)))
    assert len(trainer.checkpoint().optimizer["state"]) == len(used)


def test_fair_sampler_runs_every_op_once_per_block(nb201):
    sampler = FairSampler(nb201, seed=3)
    for block in range(3):
        paths = np.stack([sampler.sample(5 * block + i) for i in range(5)])
        assert (np.sort(paths, axis=0) == np.arange(5)[:, None]).all()
    assert not np.array_equal(sampler.sample(0), FairSampler(nb201, seed=4).sample(0)) or \
        not np.array_equal(sampler.sample(1), FairSampler(nb201, seed=4).sample(1))


def _weights(trainer: SupernetTrainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.supernet.state_dict().items()}


def test_training_is_deterministic_and_resume_ends_identically(tmp_path):
    data = tiny_data()
    full = tiny_trainer(data, epochs=3, seed=5).train()
    again = tiny_trainer(data, epochs=3, seed=5).train()
    other = tiny_trainer(data, epochs=3, seed=6).train()
    w = _weights(full)
    assert all(torch.equal(w[k], v) for k, v in _weights(again).items())
    assert not all(torch.equal(w[k], v) for k, v in _weights(other).items())
    assert full.history[-1] < full.history[0]

    ckpt_path = tmp_path / "s.pt"
    part = tiny_trainer(data, epochs=3, seed=5)
    with pytest.raises(_Stop):  # an interruption in epoch 2: the checkpoint holds epoch 1
        part.train(checkpoint=ckpt_path, on_step=lambda e, s, n, loss: _stop_after(e, 1))
    ckpt = load_checkpoint(ckpt_path)
    assert ckpt.epoch == 1 and not ckpt.finished
    resumed = SupernetTrainer.resume(ckpt, dataset=data, device="cpu").train(
        checkpoint=ckpt_path)
    assert resumed.epoch == 3 and resumed.history == pytest.approx(full.history)
    assert all(torch.equal(w[k], v) for k, v in _weights(resumed).items())
    assert load_checkpoint(ckpt_path).finished


class _Stop(Exception):
    pass


def _stop_after(epoch: int, epochs: int) -> None:
    if epoch >= epochs:  # the first step of epoch ``epochs`` (0-based): the kill
        raise _Stop


# -- checkpoints --------------------------------------------------------------------------------
def test_checkpoint_records_setting_and_rejects_misuse(tmp_path):
    data = tiny_data()
    path = tmp_path / "s.pt"
    tiny_trainer(data, epochs=1).train(checkpoint=path)
    ckpt = load_checkpoint(path, space="nb201", width=4)
    assert ckpt.setting.to_dict() == {"space": "nb201", "width": 4, "depth": 1,
                                      "input_kind": "1d", "in_channels": 1, "num_classes": 4,
                                      "input_shape": [1, 16]}
    assert ckpt.recipe.batch_size == 32 and ckpt.data["fingerprint"] == data.fingerprint()
    assert ckpt.sampler == "uniform"
    with pytest.raises(ArchrankError, match=r"s\.pt: a supernet of nb201 width 4.*not width 8"):
        load_checkpoint(path, width=8)
    with pytest.raises(ArchrankError, match="not space nb101"):
        load_checkpoint(path, space="nb101")
    truncated = tmp_path / "t.pt"
    truncated.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ArchrankError, match=r"t\.pt: not a readable supernet checkpoint") as e:
        load_checkpoint(truncated)
    assert "\n" not in str(e.value)
    foreign = tmp_path / "f.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ArchrankError, match="not an archrank supernet checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(ArchrankError, match="fingerprint"):
        ckpt.dataset(tiny_data(seed=1))


# -- scoring with shared weights ----------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_digits(tmp_path_factory):
    """A supernet trained briefly on scikit-learn's digits (2-D images)."""
    pytest.importorskip("sklearn")
    path = tmp_path_factory.mktemp("sn") / "digits.pt"
    trainer = SupernetTrainer.create("nb201", "digits", width=4, depth=1, seed=0,
                                     recipe=TrainRecipe(epochs=6, batch_size=32), device="cpu")
    trainer.train(checkpoint=path)
    return load_checkpoint(path)


def test_bn_recalibration_scores_better_and_is_order_free(trained_digits, nb201):
    cells = uniform_cells(nb201, 15, seed=1)
    recal = SubnetScorer.from_checkpoint(trained_digits)
    raw = SubnetScorer.from_checkpoint(trained_digits,
                                       options=ScoreOptions(bn_recalibrate=False))
    a = recal.score(cells)
    b = raw.score(cells)
    # running statistics mixed over every path misfit most single paths
    assert a["val_acc"].mean() > b["val_acc"].mean() + 5
    assert a["val_loss"].mean() < b["val_loss"].mean()
    assert a["val_acc"][OPS.index("none")] < 20  # no path from input to output: a guess
    assert a["val_acc"].max() > 50
    again = recal.score(cells[::-1])  # recalibration leaves nothing behind between cells
    assert np.array_equal(again["val_acc"][::-1], a["val_acc"])
    assert np.array_equal(again["val_loss"][::-1], a["val_loss"])
    # the supernet weights themselves are not touched by scoring
    fresh = trained_digits.supernet().state_dict()
    for k, v in recal.supernet.state_dict().items():
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(v, fresh[k]), k


def test_val_samples_scores_on_a_prefix_of_the_validation_split(trained_digits, nb201):
    cells = uniform_cells(nb201, 4, seed=2)
    full = SubnetScorer.from_checkpoint(trained_digits)
    part = SubnetScorer.from_checkpoint(trained_digits, options=ScoreOptions(val_samples=40))
    data = full.dataset
    short = ArrayDataset("prefix", data.x_train, data.y_train, data.x_val[:40],
                         data.y_val[:40], num_classes=data.num_classes)
    same = SubnetScorer(full.setting, full.state, short)
    a, b = part.score(cells), same.score(cells)
    assert np.array_equal(a["val_acc"], b["val_acc"])
    assert np.allclose(a["val_loss"], b["val_loss"])
    assert not np.allclose(a["val_loss"], full.score(cells)["val_loss"])
    with pytest.raises(ArchrankError, match="val_samples must be positive"):
        ScoreOptions(val_samples=0)


def test_supernet_oracle_answers_like_the_scorer(trained_digits, tmp_path, nb201):
    oracle = SupernetOracle(trained_digits.path, space="nb201")
    cells = uniform_cells(nb201, 3, seed=2)
    direct = SubnetScorer.from_checkpoint(trained_digits).score(cells)
    for i, arch in enumerate(cells):
        ev = oracle.evaluate(arch)
        assert ev.ok and ev.metrics["val_acc"] == direct["val_acc"][i]
        alone = oracle.scorer.supernet.build_standalone(arch)
        assert ev.metrics["params"] == count_params(alone)
    assert oracle.describe()["setting"]["width"] == 4
    with pytest.raises(ArchrankError, match="not space nb101"):
        SupernetOracle(trained_digits.path, space="nb101")


@pytest.mark.slow
def test_scoring_on_a_process_pool_equals_inline(trained_digits, nb201):
    from archrank.executors import make_executor
    from archrank.oneshot import score_archs

    scorer = SubnetScorer.from_checkpoint(trained_digits)
    codes = scorer.encode(nb201.sample(12, np.random.default_rng(3)))
    inline = score_archs(scorer, codes, chunk=5)
    with make_executor("process", 2) as pool:
        pooled = score_archs(scorer, codes, pool, chunk=5)
    assert np.array_equal(inline["val_acc"], pooled["val_acc"])
    assert np.array_equal(inline["val_loss"], pooled["val_loss"])


def test_journaled_scores_survive_a_kill_and_are_not_scored_twice(trained_digits, nb201,
                                                                  tmp_path, monkeypatch):
    """``oneshot fit`` / a search's choice score through a journal: the chunks finished
    before a kill (here: an error on the third) are served from it afterwards, on worker
    processes too, and equal fresh scores; a journal of other options is refused."""
    from archrank.executors import make_executor
    from archrank.oneshot import score_archs
    from archrank.oneshot.scoring import JournaledScorer, ScoreOptions, journal_header

    codes = SubnetScorer.from_checkpoint(trained_digits).encode(
        nb201.sample(12, np.random.default_rng(4)))
    fresh = score_archs(SubnetScorer.from_checkpoint(trained_digits), codes, chunk=4)
    path = tmp_path / "s.csv.scores.jsonl"

    def journaled() -> JournaledScorer:
        scorer = JournaledScorer.from_checkpoint(trained_digits)
        return scorer.attach(path, journal_header(trained_digits, scorer.options))

    first = journaled()
    calls = []
    real = SubnetScorer.score_codes

    def dies_on_third(self, part):
        calls.append(len(part))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, part)

    monkeypatch.setattr(SubnetScorer, "score_codes", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        score_archs(first, codes, chunk=4)
    monkeypatch.setattr(SubnetScorer, "score_codes", real)
    again = journaled()
    assert len(again.known) == 8 and len(again.unknown(codes)) == 4
    with make_executor("process", 2) as pool:  # the rest on workers, journaled here
        got = score_archs(again, codes, pool, chunk=2)
    assert np.array_equal(got["val_acc"], fresh["val_acc"])
    assert np.array_equal(got["val_loss"], fresh["val_loss"])
    assert len(journaled().known) == 12
    other = JournaledScorer.from_checkpoint(trained_digits,
                                            options=ScoreOptions(bn_recalibrate=False))
    with pytest.raises(ArchrankError, match="scores of another supernet or other score "
                       "options; remove it"):
        other.attach(path, journal_header(trained_digits, other.options),
                     hint="remove it to score afresh")
    # a journal that only caches a command's own scores is started afresh instead
    other.attach(path, journal_header(trained_digits, other.options), replace_stale=True)
    assert other.known == {} and len(path.read_text().splitlines()) == 1


# -- the method: fit the space ------------------------------------------------------------------
def test_fit_space_scores_a_sample_and_predicts_every_cell(trained_digits, tmp_path, nb201):
    from archrank.oneshot import ScoreTable

    scorer = SubnetScorer.from_checkpoint(trained_digits)
    table = fit_space(scorer, samples=40, predictor="gcn", seed=0,
                      predictor_params={"epochs": 60})
    assert len(table) == nb201.size
    sampled = np.flatnonzero(~np.isnan(table.columns["supernet_val_acc"]))
    assert len(sampled) == 40
    again = scorer.score([nb201.parse(table.archs[i]) for i in sampled[:5]])
    assert np.array_equal(again["val_acc"], table.columns["supernet_val_acc"][sampled[:5]])
    from archrank.metrics import kendall_tau

    # the fit follows what it was fitted to
    assert kendall_tau(table.columns["supernet_val_acc"][sampled],
                       table.columns["predicted"][sampled]) > 0.3
    assert table.archs[0] == nb201.format(nb201.enumerate()[0])
    path = tmp_path / "scores.csv"
    table.write_csv(path)
    back = ScoreTable.read_csv(path)
    assert back.archs == table.archs and back.hashes == table.hashes
    for k, v in table.columns.items():
        assert np.array_equal(np.isnan(v), np.isnan(back.columns[k]))
        assert np.allclose(np.nan_to_num(v), np.nan_to_num(back.columns[k]))


def test_fit_space_gives_a_predictor_its_arch_inputs(trained_digits, tmp_path, monkeypatch):
    """gates++ fits the supernet's scores with FLOPs and parameters as inputs (they change the
    fit); a proxy missing from the cache is the signal mechanism's one-line error."""
    scorer = SubnetScorer.from_checkpoint(trained_digits)
    fits = {inputs: fit_space(scorer, samples=30, predictor="gates++", seed=0,
                              predictor_params={"epochs": 20, "arch_inputs": inputs,
                                                "ensemble": 1})
            for inputs in ("flops,params", "")}
    assert np.isfinite(fits["flops,params"].columns["predicted"]).all()
    assert not np.allclose(fits["flops,params"].columns["predicted"],
                           fits[""].columns["predicted"])
    monkeypatch.setenv("ARCHRANK_CACHE_DIR", str(tmp_path))
    with pytest.raises(ArchrankError, match="'synflow' is missing for 30 of 30 cells"):
        fit_space(scorer, samples=30, predictor="gates++", seed=0,
                  predictor_params={"epochs": 1, "arch_inputs": "flops,synflow"})


def test_a_supernet_recorded_before_the_mnist1d_default_changed_reloads_its_data(tmp_path):
    """Checkpoints record mnist1d by its full name; one that recorded plain 'mnist1d' (then
    5,000 signals) reloads those, not today's default (the fingerprint would refuse them)."""
    old = "mnist1d:num_samples=5000,val_fraction=0.2"
    trainer = SupernetTrainer.create("nb201", "mnist1d", width=4, depth=1, seed=0)
    assert trainer.checkpoint().dataset_spec == "mnist1d:num_samples=20000,val_fraction=0.8"
    ckpt = SupernetTrainer.create("nb201", old, width=4, depth=1, seed=0).checkpoint()
    ckpt.dataset_spec, ckpt.data = "mnist1d", {**ckpt.data, "name": "mnist1d"}
    ckpt.save(tmp_path / "old.pt")
    data = load_checkpoint(tmp_path / "old.pt").dataset()
    assert data.name == old and len(data.y_val) == 800
    with pytest.raises(ArchrankError, match="fingerprint"):
        load_checkpoint(tmp_path / "old.pt").dataset("mnist1d")


# -- hardware -----------------------------------------------------------------------------------
def test_latency_table_ranks_whole_networks(nb201):
    net = build_supernet(NetworkSetting("nb201", 8, 1, "1d", 1, 10, (1, 40)))
    table = LatencyTable.measure(net, repeats=7, inner=5)
    assert table.units[0] == "base" and len(table.units) == 1 + 3 * 5
    cells = uniform_cells(nb201, 7, seed=4)
    check = validate_latency(table, net, cells, repeats=7, inner=5)
    assert check["kendall_tau"] > 0 and check["spearman"] > 0
    ms = table.predict(net, net.encode(cells))
    conv3, none = ms[OPS.index("nor_conv_3x3")], ms[OPS.index("none")]
    assert conv3 > none == pytest.approx(table.ms[0])


def test_selection_under_constraints_and_pareto_front():
    cols = {"flops": np.array([10.0, 20, 30, 40, 50]), "params": np.array([5.0, 4, 3, 2, 1]),
            "latency_ms": np.array([1.0, 1, 1, 1, 1])}
    score = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    mask = feasible(cols, max_flops=40, max_params=4.5)
    assert mask.tolist() == [False, True, True, True, False]
    from archrank.oneshot import select

    assert select(score, mask, 2).tolist() == [3, 1]
    assert pareto_front(score, cols["flops"]).tolist() == [0, 1, 3]
    assert pareto_front(score, cols["flops"], mask).tolist() == [1, 3]
    with pytest.raises(ArchrankError, match="no cell satisfies --max-flops 5: the smallest "
                                            "flops is 10"):
        feasible(cols, max_flops=5)
    with pytest.raises(ArchrankError, match="all the constraints together"):
        feasible(cols, max_flops=10, max_params=1)
    # rows without a finite score or cost are on no front (a NaN cost sat on it alone; a NaN
    # score dropped every row after it)
    nan = float("nan")
    assert pareto_front(np.array([nan, .9, .5, .8]), np.array([1., 2., .5, 3.])).tolist() == [2, 1]
    assert pareto_front(np.array([.1, .9, .5]), np.array([1., nan, .5])).tolist() == [2]
    with pytest.raises(ArchrankError, match="'flops' column has no values"):
        feasible({"flops": np.array([nan, nan])}, max_flops=5)


def test_size_prior_blends_the_ranks_of_score_and_size():
    from archrank.oneshot.hardware import size_prior

    score = np.array([4.0, 3.0, 2.0, 1.0])
    flops = np.array([1.0, 2.0, 3.0, 4.0])
    assert size_prior(score, flops, 0.0).tolist() == [1.0, 0.75, 0.5, 0.25]  # score's order
    assert size_prior(score, flops, 1.0).tolist() == [0.25, 0.5, 0.75, 1.0]  # size's order
    assert np.allclose(size_prior(score, flops, 0.5), 0.625)  # opposite orders: all tie
    # ties share their mean rank; a row without a finite score or size is NaN, never selected
    out = size_prior(np.array([1.0, 1.0, np.nan, 2.0]), np.array([1.0, 2.0, 3.0, np.inf]), 0.5)
    assert out[0] == pytest.approx(0.5 * 1.5 / 2 + 0.5 * 1 / 2) and np.isnan(out[2:]).all()
    from archrank.oneshot import select

    assert select(out, np.ones(4, bool), 4).tolist() == [1, 0]
    with pytest.raises(ArchrankError, match=r"weight must be in \[0, 1\], got 2"):
        size_prior(score, flops, 2.0)


def test_live_size_counts_a_cells_live_ops_only():
    """A size prior on raw FLOPs picked nb201 cells whose convolutions sat on dead edges."""
    from archrank.nn.counting import nb201_costs
    from archrank.oneshot.hardware import live_size
    from archrank.spaces import get_space

    space = get_space("nb201")
    dead = space.parse("|none~0|+|none~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                       "nor_conv_3x3~2|")  # node 1 reads nothing: three convs on dead edges
    assert space.format(space.prune(dead)) == ("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|"
                                               "none~1|none~2|")
    assert space.hash(space.prune(dead)) == space.hash(dead)
    cells = space.enumerate()
    flops = nb201_costs([c.ops for c in cells], channels=8, cells_per_stage=1)["flops"]
    live = live_size(space, cells, flops)
    i, j = cells.index(dead), cells.index(space.prune(dead))
    assert flops[i] > flops[j] and live[i] == live[j] == flops[j]
    assert (live <= flops).all() and (live == flops).mean() > 0.5
    assert live_size(space, [dead], flops[[i]])[0] == flops[i]  # pruned cell not given
    darts = get_space("darts")
    g = darts.sample(1, np.random.default_rng(0))[0]
    assert darts.prune(g) is g  # no dead ops to remove there


def test_score_tables_refuse_infinite_scores_and_repeated_cells(tmp_path):
    from archrank.oneshot.fit import ScoreTable
    from archrank.spaces import get_space

    space = get_space("nb201")
    a, b = (space.format(c) for c in space.sample(2, np.random.default_rng(0)))
    ha, hb = space.hash(space.parse(a)), space.hash(space.parse(b))
    path = tmp_path / "s.csv"
    for body, message in ((f"{a},{ha},inf,1\n", "line 2, field 'predicted': not finite"),
                          (f"{a},{ha},0.5,1e400\n", "line 2, field 'flops': not finite"),
                          (f"{a},{ha},0.5,1\n{b},{hb},0.4,2\n{a},{ha},0.5,1\n",
                           "line 4: the cell of line 2 again"),
                          (f"{a},{ha},0.5,-1\n", "line 2, field 'flops': a negative cost"),
                          (f"{a},{ha},0.5,1\nfoo,h,0.4,2\n",
                           "line 3, field 'arch': not a nb201 cell")):
        path.write_text("arch,hash,predicted,flops\n" + body)
        with pytest.raises(ArchrankError, match=message):
            ScoreTable.read_csv(path)
    path.write_text(f"arch,hash,predicted,flops,predicted\n{a},{ha},0.5,1,9\n")
    with pytest.raises(ArchrankError, match="the column 'predicted' is given twice"):
        ScoreTable.read_csv(path)
    from archrank.oneshot.hardware import feasible

    with pytest.raises(ArchrankError, match="--max-params must be a number of at least 0"):
        feasible({"params": np.array([1.0])}, max_params=float("nan"))


def test_a_supernet_scoring_every_sample_alike_is_said_so(monkeypatch):
    """A barely trained supernet can give every sampled cell the same accuracy: the fit
    says what happened and what to change, not a predictor's generic refusal."""
    import archrank.oneshot.fit as fit_mod

    monkeypatch.setattr(fit_mod, "score_archs", lambda scorer, codes, executor, on_done=None:
                        {"val_acc": np.full(len(codes), 10.0), "val_loss": np.full(len(codes),
                                                                                  2.3)})
    with pytest.raises(ArchrankError, match=r"the supernet scores all 3 sampled cells alike "
                       r"\(val_acc 10\): nothing to fit; .* or by val_loss \(--score val_loss\)"):
        fit_mod._score_and_fit(None, np.zeros((3, 6)), None, [], "gcn", "val_acc", 0, None,
                               None, None, {}, 0.0)


def test_oneshot_cli_option_errors_name_their_flags(tmp_path, cli):
    """Negative or huge seeds ended in numpy's 'internal error'; zero sizes in messages
    without the flag; --pool on nb201 and a negative --validate were ignored; a bad --samples
    was found after the latency table was measured and the journal written."""
    bad = [
        (("oneshot", "train", "--seed", "-1", "--out", tmp_path / "a.pt"), "--seed must lie in"),
        (("oneshot", "train", "--seed", str(2**64), "--out", tmp_path / "a.pt"),
         "--seed must lie in"),
        (("oneshot", "train", "--batch-size", "0", "--out", tmp_path / "a.pt"),
         "--batch-size must be at least 2, got 0"),
        (("oneshot", "train", "--lr", "-1", "--out", tmp_path / "a.pt"),
         "--lr must be above 0"),
        (("oneshot", "search", "--memory", "0", "--out", tmp_path / "a.pt"),
         "--memory must be at least 2, got 0"),
        (("oneshot", "search", "--seed", "-3", "--out", tmp_path / "a.pt"),
         "--seed must lie in"),
        (("oneshot", "fit", tmp_path / "none.pt", "--samples", "1", "--out", tmp_path / "x.csv"),
         "--samples must be at least 2, got 1"),
        (("oneshot", "fit", tmp_path / "none.pt", "--val-samples", "0", "--out",
          tmp_path / "x.csv"), "--val-samples must be at least 1, got 0"),
        (("oneshot", "latency", "--validate", "-5"), "--validate must be at least 0"),
        (("zc", "--n", "2", "--seed", "-5", "--out", tmp_path / "z.csv"), "--seed must lie in"),
        (("bench", "table", "--n", "2", "--sample-seed", "-1", "--out", tmp_path / "t.csv"),
         "--sample-seed must lie in"),
    ]
    for argv, message in bad:
        code, _, err = cli(*argv)
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
    assert not list(tmp_path.iterdir())  # nothing written, no journal left behind


def test_oneshot_fit_writes_to_stdout_and_select_works_without_costs(trained_digits, tmp_path,
                                                                      cli, capsys):
    """``--out -`` wrote a file named '-'; --pool on an enumerable space was ignored; select
    on a table without cost columns asked for a --front-cost it could not take."""
    ckpt = str(trained_digits.path)
    code, _, err = cli("oneshot", "fit", ckpt, "--pool", "7", "--out", tmp_path / "x.csv")
    assert code == 2 and "--pool applies to spaces too large to enumerate" in err
    code, out, err = cli("oneshot", "fit", ckpt, "--samples", "6", "--val-samples", "50",
                         "--no-latency", "--set", "epochs=2", "--out", "-")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("arch,hash,predicted") and len(lines) == 15626
    assert not (tmp_path / "-").exists() and "15,625 cells written to -" in err
    table = tmp_path / "s.csv"
    table.write_text("\n".join(",".join(line.split(",")[:3]) for line in lines[:40]) + "\n")
    code, out, err = cli("oneshot", "select", table, "--top", "3")
    assert code == 0 and "top 3 of 39 cells" in out and "no Pareto front" in err, err


def test_an_interrupted_supernet_training_says_how_to_continue(tmp_path, cli, monkeypatch):
    """Ctrl-C during oneshot train / search printed only 'interrupted'."""
    def stopped(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(SupernetTrainer, "train", stopped)
    out = tmp_path / "s.pt"
    code, _, err = cli("oneshot", "train", "--dataset", "digits", "--width", "4", "--depth", "1",
                       "--epochs", "2", "--out", out)
    assert code == 130 and "nothing was saved" in err, err
    code, _, err = cli("oneshot", "search", "--dataset", "digits", "--width", "4", "--depth",
                       "1", "--epochs", "1", "--method", "spos-ea", "--out", tmp_path / "q.pt")
    assert code == 130 and "nothing was saved" in err, err

    def after_an_epoch(self, checkpoint=None, **kwargs):
        Path(checkpoint).write_bytes(b"")  # as if an epoch had been written
        raise KeyboardInterrupt

    monkeypatch.setattr(SupernetTrainer, "train", after_an_epoch)
    code, _, err = cli("oneshot", "train", "--dataset", "digits", "--width", "4", "--depth", "1",
                       "--epochs", "2", "--out", tmp_path / "t.pt")
    assert code == 130 and f"continue with: archrank oneshot train --resume {tmp_path}" in err


def test_resuming_a_finished_training_says_there_is_nothing_to_do(tmp_path, cli):
    """`oneshot train --resume` of a finished checkpoint said "(resuming after epoch 1)", ran a
    full bar and printed "trained 1 epochs in 1.2 s"."""
    out = tmp_path / "s.pt"
    code, printed, err = cli("oneshot", "train", "--dataset", "digits", "--width", "4",
                             "--depth", "1", "--epochs", "1", "--out", out)
    assert code == 0 and "trained 1 epochs" in printed, err
    assert "(mean loss of the last epoch " in printed  # not taken for the bar's step loss
    before = out.read_bytes()
    code, printed, err = cli("oneshot", "train", "--resume", out)
    assert code == 0, err
    assert f"{out} already finished its 1 epochs" in printed and "nothing to do" in printed
    assert "resuming" not in err and "trained" not in printed and out.read_bytes() == before


@pytest.mark.parametrize("columns", [80, 200])
def test_the_top_cells_table_keeps_its_numbers_whole_at_80_columns(columns, capsys,
                                                                   monkeypatch):
    """oneshot fit / select at 80 columns folded the arch over ten lines a row and cut
    headers and values ("supernet_va…", "123,456,7…"): the numbers stay whole, the arch
    folds beside them where there is room, else is listed below the table."""
    from archrank.cli.oneshot import _print_top
    from archrank.spaces import get_space

    monkeypatch.setenv("COLUMNS", str(columns))
    space = get_space("nb201")
    archs = [space.format(a) for a in space.sample(3, np.random.default_rng(0))]
    _print_top(archs, {"predicted": np.array([-0.1234, -0.2, -0.3]),
                       "supernet_val_acc": np.array([91.23, np.nan, 80.0]),
                       "params": np.array([1234567.0, 2e6, 3e5]),
                       "flops": np.array([123456789.0, 2e8, 3e7]),
                       "latency_ms": np.array([1.234, 2.5, 3.0])}, np.arange(3), "best")
    out = capsys.readouterr().out
    assert "…" not in out and "supernet_val_acc" in out and "123,456,789" in out
    table = [line for line in out.splitlines() if not line.lstrip()[:1].isdigit()]
    assert all(len(line) <= columns for line in table)  # (each arch listed below: one line)
    assert all(arch in out.replace("│", "").replace(" ", "").replace("\n", "")
               for arch in archs)
    if columns == 80:
        assert all(f"{rank}  {arch}" in out for rank, arch in enumerate(archs, start=1))
        assert len(out.splitlines()) == 8 + 3  # title, rules, header, 3 rows; 3 archs
    else:
        assert all(arch in out for arch in archs)  # one line each, beside its numbers
