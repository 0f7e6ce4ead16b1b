"""Proxy-validation search: landscape (relaxed input, gradient), OIW, memory, determinism,
SIGKILL resume, the baselines and the ``oneshot search`` command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from archrank.errors import ArchrankError
from archrank.oneshot import load_checkpoint
from archrank.oneshot.landscape import Landscape, LandscapeConfig
from archrank.oneshot.proxy import Memory, ProxyConfig, ProxySampler, normalise_importance
from archrank.oneshot.search import is_degenerate, search
from archrank.oracles.training import TrainRecipe
from test_oneshot import tiny_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ARCHRANK = Path(sys.executable).with_name("archrank")
SMALL = LandscapeConfig(pretrain=False, fit_steps=10)


def tiny_npz(directory: Path, with_test: bool = False) -> Path:
    """``tiny_data`` as a ``.npz`` file (with a test split from another seed if asked)."""
    data = tiny_data()
    arrays = {"x_train": data.x_train, "y_train": data.y_train, "x_val": data.x_val,
              "y_val": data.y_val}
    if with_test:
        other = tiny_data(seed=5)
        arrays.update(x_test=other.x_val, y_test=other.y_val)
    path = directory / "tiny.npz"
    np.savez(path, **arrays)
    return path


def op_loss(space, codes: np.ndarray) -> np.ndarray:
    """A loss that depends on the ops: convolutions lower it, ``none`` raises it."""
    ops = space.supernet_graph().ops
    conv = [k for k, o in enumerate(ops) if "conv" in o]
    return 2.0 - 0.3 * np.isin(codes, conv).sum(1) + 0.2 * (codes == ops.index("none")).sum(1)


def fitted_landscape(space, pretrain: bool = False) -> Landscape:
    cfg = LandscapeConfig(pretrain=pretrain, pretrain_cells=200, pretrain_steps=30)
    land = Landscape(space, cfg, seed=3)
    codes = space.random_codes(64, np.random.default_rng(0))
    land.fit(codes, op_loss(space, codes), steps=40)
    return land


@pytest.fixture(scope="module", params=["nb201", "darts"])
def supernet_space(request):
    from archrank.spaces import get_space

    return get_space(request.param)


@pytest.mark.parametrize("pretrain", [False, True])
def test_relaxed_input_equals_integer_path_on_one_hot(supernet_space, pretrain):
    space = supernet_space
    land = fitted_landscape(space, pretrain)
    codes = space.random_codes(100, np.random.default_rng(1))
    if space.name == "nb201":
        codes[0] = 0  # the cut-off cell: every edge `none`
    k = space.relaxed_shape()[1]
    soft = land.predict_probs(F.one_hot(torch.from_numpy(codes), k).float()).detach().numpy()
    hard = land.predict_codes(codes)
    np.testing.assert_allclose(soft, hard, rtol=0, atol=1e-6)
    assert hard.std() > 1e-3  # the fitted landscape tells cells apart


def test_landscape_learns_the_memory(supernet_space):
    land = fitted_landscape(supernet_space)
    codes = supernet_space.random_codes(200, np.random.default_rng(2))
    assert np.corrcoef(land.predict_codes(codes), op_loss(supernet_space, codes))[0, 1] > 0.7


def test_gradient_wrt_alpha_matches_finite_differences(supernet_space):
    land = fitted_landscape(supernet_space)
    land.model.double()
    land.head.double()
    e, k = supernet_space.relaxed_shape()
    alpha = torch.randn(e, k, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def f(a: torch.Tensor) -> torch.Tensor:
        return land.predict_probs(F.softmax(a, -1)[None])[0]

    a = alpha.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(a), a)
    eps = 1e-6
    fd = torch.zeros_like(alpha)
    with torch.no_grad():
        for i in range(e):
            for o in range(k):
                d = torch.zeros_like(alpha)
                d[i, o] = eps
                fd[i, o] = (f(alpha + d) - f(alpha - d)) / (2 * eps)
    assert grad.abs().max() > 1e-4
    torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-8)


def test_supernet_form_of_nb201_is_the_line_graph(nb201):
    """On nb201 the landscape reads cells exactly as the auto-encoder's graph form does."""
    from archrank.autoencoder import SupernetForm, to_node_form

    codes = nb201.random_codes(50, np.random.default_rng(4))
    a, b = SupernetForm(nb201).codes(codes), to_node_form(nb201.graphs_from_codes(codes), nb201)
    for part in ("tokens", "adj", "mask"):
        assert torch.equal(getattr(a, part), getattr(b, part)), part


def test_supernet_form_of_darts_cells():
    """An integer darts cell: its 8 chosen edges per cell on, two into each intermediate node,
    the other 20 edges `none` and cut; the two cell types read apart."""
    from archrank.autoencoder import SupernetForm
    from archrank.spaces import get_space

    darts = get_space("darts")
    form = SupernetForm(darts)
    codes = darts.random_codes(20, np.random.default_rng(5))
    nf = form.codes(codes)
    assert form.nodes == 39 and nf.tokens.shape == (20, 39)
    fixed = form.fixed
    op_on = nf.adj[:, :, fixed:].sum(1)  # in-degree of each op node: 1 when on
    assert torch.equal(op_on, torch.from_numpy(codes > 0).float())
    into_nodes = nf.adj[:, fixed:, 2:fixed - 1].sum(1)  # op nodes feeding each intermediate
    assert torch.equal(into_nodes, torch.full((20, 8), 2.0))
    assert torch.equal(nf.tokens[:, fixed:] - form.node_vocab, torch.from_numpy(codes))
    swapped = np.concatenate([codes[:, 14:], codes[:, :14]], 1)
    assert not torch.equal(form.codes(swapped).adj, nf.adj)
    # the two cell inputs read apart: at alpha = 0 a node's edges from c_{k-2} and c_{k-1}
    # get different gradients (one input token made them equal for ever)
    land = Landscape(darts, SMALL, seed=0)
    alpha = torch.zeros(28, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(land.predict_probs(F.softmax(alpha, -1)[None])[0], alpha)
    assert not torch.allclose(grad[0], grad[1]) and not torch.allclose(grad[14], grad[15])
    with pytest.raises(ArchrankError, match=r"path codes must lie in 0\.\.7"):
        form.codes(np.full((1, 28), 8))
    with pytest.raises(ArchrankError, match=r"shape \[B, 28\]"):
        form.codes(np.zeros((1, 6), dtype=np.int64))


def test_oiw_normalisations():
    g2 = torch.tensor([4.0, 1.0, 0.0, 1.0, 0.0, 2.0])
    l2 = normalise_importance(g2, "l2")
    assert float(l2.norm()) == pytest.approx(1.0) and float(l2.max()) <= 1.0
    s = normalise_importance(g2, "sum")
    assert float(s.sum()) == pytest.approx(1.0) and float(s.min()) >= 0.0
    assert torch.equal(normalise_importance(g2, "off"), torch.zeros(6))
    flat = normalise_importance(torch.ones(6), "l2")
    assert torch.allclose(flat, torch.full((6,), 6 ** -0.5))
    assert torch.equal(normalise_importance(torch.zeros(6), "l2"), torch.zeros(6))


def test_memory_keeps_the_most_recent_pairs():
    mem = Memory(5)
    for i in range(20):
        mem.add((i % 5,) * 6, float(i))
    codes, losses = mem.arrays()
    assert len(mem) == 5 and codes.shape == (5, 6)
    assert losses.tolist() == [15.0, 16.0, 17.0, 18.0, 19.0]
    again = Memory(5)
    again.load_state_dict(mem.state_dict())
    assert list(again.items) == list(mem.items)


def _proxy_search(method: str, seed: int = 0, epochs: int = 2, **proxy) -> tuple:
    data = tiny_data()
    cfg = {"refit_every": 4, "warmup_steps": 4, "memory": 6, "landscape": SMALL, **proxy}
    from archrank.oneshot.search import _runner

    runner = _runner(method, space="nb201", dataset=data, epochs=epochs, seed=seed,
                     recipe=TrainRecipe(batch_size=32), checkpoint=None, resume=False,
                     proxy=cfg, threads=1, device="cpu", width=4, depth=1)
    runner.train()
    return runner, runner.sampler


@pytest.mark.parametrize("norm", ["l2", "sum", "off"])
def test_sampler_oiw_lies_in_unit_interval_and_memory_stays_bounded(norm):
    trainer, sampler = _proxy_search("proxy-darts", oiw_norm=norm)
    assert trainer.step == 16 and sampler.oiw_count == 4
    oiw = sampler.oiw
    assert float(oiw.min()) >= 0.0 and float(oiw.max()) <= 1.0
    if norm == "sum":  # a mean of sum-to-one vectors sums to one
        assert float(oiw.sum()) == pytest.approx(1.0, abs=1e-5)
    elif norm == "l2":  # unit L2 norm each time: the mean has norm <= 1 and sum >= 1
        assert float(oiw.norm()) <= 1.0 + 1e-6 and float(oiw.sum()) >= 1.0 - 1e-6
    else:
        assert torch.equal(oiw, torch.zeros(6))
    assert len(sampler.memory) == 6  # 16 steps seen, the window holds 6
    assert not torch.equal(sampler.alpha, torch.zeros(6, 5))  # alpha moved
    info = sampler.info()
    assert 1 <= info["memory_distinct"] <= 6 and info["oiw"] == pytest.approx(oiw.tolist(),
                                                                               abs=1e-4)
    assert 0 < info["alpha_entropy"] < np.log(5) and len(info["alpha_max_prob"]) == 6
    assert info["final"] == "space"  # proxy-darts's default, recorded resolved


def test_sgd_alpha_step_is_the_gradient_of_the_standardised_predicted_loss(nb201):
    """With ``alpha_optimizer="sgd"`` a refit moves alpha by ``-lr * grad / y_std``: steps
    in proportion to the landscape's evidence, vanishing as the distribution saturates
    (Adam's first step from a fresh state is ``lr * sign(grad)`` however flat the landscape)."""
    cfg = ProxyConfig(alpha_optimizer="sgd", alpha_lr=0.7, alpha_steps=1, landscape=SMALL)
    sampler = ProxySampler(nb201, 0, dataset=tiny_data(), config=cfg)
    rng = np.random.default_rng(0)
    for _ in range(20):
        sampler.memory.add(tuple(rng.integers(0, 5, 6)), float(rng.random()))
    alpha0 = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    sampler.alpha = alpha0.clone()
    sampler.landscape.fit(*sampler.memory.arrays())  # what _refit fits first, from here
    state = sampler.landscape.state_dict()
    sampler.landscape.fit(*sampler.memory.arrays())
    grad = sampler.alpha_gradient()
    sampler.landscape.load_state_dict(state)
    sampler._refit()
    torch.testing.assert_close(sampler.alpha, alpha0 - 0.7 * grad / sampler.landscape.y_std)
    with pytest.raises(ArchrankError, match="unknown alpha optimizer 'rmsprop'"):
        ProxyConfig(alpha_optimizer="rmsprop")


def test_gumbel_noise_shrinks_with_oiw(nb201):
    sampler = ProxySampler(nb201, 0, dataset=tiny_data(), config=ProxyConfig(
        landscape=SMALL))
    sampler.alpha = torch.zeros(6, 5)
    sampler.alpha[:, 3] = 0.5
    sampler.oiw_sum, sampler.oiw_count = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]), 1
    draws = np.stack([sampler.gumbel_sample(s) for s in range(300)])
    certain = (draws[:, :3] == 3).mean()
    noisy = (draws[:, 3:] == 3).mean()
    assert certain == 1.0 and 0.2 < noisy < 0.7


def test_final_cell_is_the_landscape_minimum_among_connected_cells(nb201, monkeypatch):
    """Whatever the landscape predicts, a cell with every input-to-output path cut is never
    the answer; among the others the landscape's minimum is."""
    sampler = ProxySampler(nb201, 0, dataset=tiny_data(), config=ProxyConfig(landscape=SMALL))
    codes = nb201.codes(nb201.enumerate())
    none = nb201.edge_op_names.index("none")
    # a landscape that loves `none`: each none edge lowers the predicted loss
    fake = -(codes == none).sum(1).astype(float) + 1e-3 * np.arange(len(codes)) / len(codes)
    monkeypatch.setattr(sampler.landscape, "predict_codes", lambda c: fake[:len(c)])
    pick = sampler.final_codes()
    assert nb201.live_ops(pick)  # not the all-`none` cell the landscape ranks first
    connected = np.array([bool(nb201.live_ops(c)) for c in codes])
    assert np.array_equal(pick, codes[np.flatnonzero(connected)[np.argmin(fake[connected])]])


def test_final_choice_over_the_memory(nb201, monkeypatch):
    """final=memory: the landscape's minimum among the memory's connected cells, whatever it
    predicts elsewhere; a finished search may be asked again with either choice."""
    config = ProxyConfig(landscape=SMALL, final="memory")
    sampler = ProxySampler(nb201, 0, dataset=tiny_data(), config=config)
    cells = nb201.codes(nb201.sample(6, np.random.default_rng(0)))
    cells[0] = nb201.edge_op_names.index("none")  # cut off: never the answer
    for c, loss in zip(cells, range(6), strict=True):
        sampler.memory.add(tuple(int(v) for v in c), float(loss))
    key = {tuple(c): k for k, c in enumerate(cells.tolist())}
    monkeypatch.setattr(sampler.landscape, "predict_codes",  # extrapolates below the memory
                        lambda c: np.array([-10.0 - key[tuple(r)] if tuple(r) in key else -99.0
                                            for r in c.tolist()]))
    assert np.array_equal(sampler.final_codes(), cells[5])
    sampler.config = ProxyConfig(landscape=SMALL)  # final=space: a cell never trained on
    assert tuple(sampler.final_codes().tolist()) not in key
    assert ProxyConfig(landscape=SMALL).same_training(config)
    assert not ProxyConfig(landscape=SMALL, memory=8).same_training(config)
    with pytest.raises(ArchrankError, match="unknown final choice 'best'"):
        ProxyConfig(final="best")
    # defaults by measurement: the memory for the evolutionary form, the space for the
    # differentiable one; recorded resolved; a record from before the option picked the space
    assert ProxyConfig(mode="ea").final == "memory"
    assert ProxyConfig(mode="darts").final == "space"
    assert ProxyConfig(mode="ea").to_dict()["final"] == "memory"
    old = ProxyConfig(mode="ea").to_dict()
    del old["final"]
    assert ProxyConfig.from_dict(old).final == "space"


def test_final_choice_fits_the_steps_after_the_last_refit(nb201):
    """A search that ends between refits (or before the first) fits the landscape on its
    whole memory before choosing; one observation alone is the pick."""
    config = ProxyConfig(landscape=SMALL, final="memory", refit_every=100)
    sampler = ProxySampler(nb201, 0, dataset=tiny_data(), config=config)
    cells = nb201.codes(nb201.sample(6, np.random.default_rng(1)))
    sampler.memory.add(tuple(int(v) for v in cells[0]), 1.5)
    sampler.steps_seen = 1
    assert np.array_equal(sampler.final_codes(), cells[0]) and not sampler.landscape.fitted
    for c, loss in zip(cells[1:], (0.5, 2.0, 2.5, 3.0, 3.5), strict=True):
        sampler.memory.add(tuple(int(v) for v in c), loss)
    sampler.steps_seen = 6
    sampler.final_codes()
    assert sampler.landscape.fitted


@pytest.mark.parametrize("method", ["proxy-darts", "proxy-ea"])
def test_proxy_search_is_deterministic_per_seed(method):
    a, sa = _proxy_search(method, seed=1)
    b, sb = _proxy_search(method, seed=1)
    _, sc = _proxy_search(method, seed=2)
    assert torch.equal(sa.alpha, sb.alpha) and torch.equal(sa.oiw, sb.oiw)
    assert list(sa.memory.items) == list(sb.memory.items)
    wa, wb = a.supernet.state_dict(), b.supernet.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert np.array_equal(sa.final_codes(), sb.final_codes())
    assert list(sa.memory.items) != list(sc.memory.items)
    if method == "proxy-ea":
        assert sa.log == sb.log and len(sa.evolution.observed) == 16


def test_degenerate_cells(nb201):
    codes = nb201.codes([nb201.parse("|skip_connect~0|+|nor_conv_3x3~0|none~1|+"
                                     "|skip_connect~0|none~1|none~2|")])[0]
    assert is_degenerate(nb201, codes)  # the conv feeds node 2, which reaches nothing
    codes[5] = 1  # 2 -> 3 skip: now the conv is on a live path
    assert not is_degenerate(nb201, codes)


def test_darts_collapse_is_judged_on_the_normal_cell():
    """The DARTS collapse is a normal cell of skips: convolutions in the reduction cell do
    not make it a sound pick."""
    from archrank.spaces import get_space
    from archrank.spaces.darts import DARTS_OPS, PATH_EDGES

    darts = get_space("darts")
    codes = darts.random_codes(1, np.random.default_rng(0))[0].copy()
    n = len(PATH_EDGES)
    conv = DARTS_OPS.index("sep_conv_3x3") + 1
    codes[n:][codes[n:] > 0] = conv  # every reduction op a convolution
    codes[:n][codes[:n] > 0] = DARTS_OPS.index("skip_connect") + 1
    assert is_degenerate(darts, codes)
    codes[:n][np.flatnonzero(codes[:n] > 0)[0]] = conv
    assert not is_degenerate(darts, codes)


# a quick gcn for gcn-fit: its default (1,000 epochs, 3 members on 40 cells) is most of the
# test's time and not what it checks
QUICK_GCN = {"epochs": 20, "ensemble": 1}


@pytest.mark.parametrize("method", ["darts", "spos-ea", "gcn-fit"])
def test_baselines_choose_a_cell_with_its_supernet_score(method, tmp_path):
    result = search(method, dataset=tiny_data(), epochs=1, seed=0,
                    recipe=TrainRecipe(batch_size=32), width=4, depth=1, ea_evals=10,
                    fit_samples=40, fit_params=QUICK_GCN, checkpoint=tmp_path / "s.pt")
    ckpt = load_checkpoint(tmp_path / "s.pt")
    assert ckpt.finished and ckpt.sampler == ("darts" if method == "darts" else "uniform")
    assert len(result.codes) == 6 and 0 <= result.supernet_val_acc <= 100
    if method == "darts":  # alpha moved away from uniform and is what chose the cell
        alpha = ckpt.sampler_state["alpha"]
        assert alpha.std() > 0 and alpha.argmax(1).tolist() == result.codes
    if method == "gcn-fit":  # the pick is the best cell of fit_space's table, and a gcn-fit
        # search continues the uniform supernet of spos-ea (same training, same checkpoint)
        from archrank.oneshot.fit import fit_space
        from archrank.oneshot.scoring import SubnetScorer

        table = fit_space(SubnetScorer.from_checkpoint(ckpt, tiny_data()), samples=40,
                          seed=0, predictor_params=QUICK_GCN)
        assert result.arch == table.archs[int(np.argmax(table.columns["predicted"]))]
        again = search("spos-ea", dataset=tiny_data(), epochs=1, seed=0, ea_evals=10,
                       checkpoint=tmp_path / "s.pt", resume=True)
        assert again.seconds >= ckpt.seconds


def test_method_specs_and_resume_with_other_settings(tmp_path):
    from archrank.oneshot.search import parse_method

    assert parse_method("proxy-ea") == ("proxy-ea", {})
    assert parse_method("proxy-darts:oiw=off") == ("proxy-darts",
                                                   {"proxy": {"oiw_norm": "off"}})
    method, kw = parse_method("proxy-darts:sampling=uniform:pretrain=off:alpha_lr=0.01")
    assert method == "proxy-darts" and kw["proxy"]["sampling"] == "uniform"
    assert kw["proxy"]["alpha_lr"] == 0.01 and kw["proxy"]["landscape"].pretrain is False
    assert parse_method("gcn-fit:samples=50") == ("gcn-fit", {"fit_samples": 50})
    assert parse_method("gcn-fit:epochs=20:loss=mse") == (
        "gcn-fit", {"fit_params": {"epochs": 20, "loss": "mse"}})
    for spec, message in [("proxy-darts:oiw=bad", "unknown OIW normalisation 'bad'"),
                          ("proxy-ea:oiw=off", "oiw_norm applies to proxy-darts only: alpha"),
                          ("proxy-darts:alpha_lr=nan", "alpha_lr must be a positive number"),
                          ("proxy-ea:population=0", "population must be at least 1"),
                          ("gcn-fit:evals=3", "gcn-fit has no option 'evals'"),
                          ("gcn-fit:epochs=0", "gcn-fit:epochs=0: gcn-fit's gcn: predictor "
                                               "'gcn': parameter 'epochs' must be at least 1"),
                          ("gcn-fit:epochs=5:epochs=6", "epochs is given twice"),
                          ("gcn-fit:samples=abc", "samples must be a whole number, got 'abc'"),
                          ("gcn-fit:samples=1", "--fit-samples must be at least 2, got 1"),
                          ("proxy-darts:alpha_lr=x", "bad option 'alpha_lr=x'"),
                          ("proxy-ea:warmup_steps=5", "warmup_steps applies to proxy-darts"),
                          ("nope", "unknown search method 'nope'")]:
        with pytest.raises(ArchrankError, match=message):
            parse_method(spec)
    # the library's search checks gcn-fit's gcn before it trains anything
    with pytest.raises(ArchrankError, match=r"gcn-fit's gcn: .*'epochs' must be at least 1"):
        search("gcn-fit", dataset=tiny_data(), epochs=1, fit_params={"epochs": 0},
               checkpoint=tmp_path / "g.pt")
    assert not (tmp_path / "g.pt").exists()
    cfg = {"refit_every": 4, "warmup_steps": 4, "memory": 6, "landscape": SMALL}
    kw = {"dataset": tiny_data(), "seed": 0, "recipe": TrainRecipe(batch_size=32), "width": 4,
          "depth": 1, "checkpoint": tmp_path / "p.pt"}
    search("proxy-ea", epochs=1, proxy=cfg, **kw)
    with pytest.raises(ArchrankError, match=r"p\.pt: a proxy-ea search with other settings"):
        search("proxy-ea", epochs=1, proxy={**cfg, "memory": 8}, resume=True, **kw)
    with pytest.raises(ArchrankError, match="a 1-epoch search, not 2 epochs"):
        search("proxy-ea", epochs=2, proxy=cfg, resume=True, **kw)
    # a checkpoint of another width is refused, not continued at its own (review, session 10)
    with pytest.raises(ArchrankError, match=r"p\.pt: a supernet of nb201 width 4.*not width 8"):
        search("proxy-ea", epochs=1, proxy=cfg, resume=True, **{**kw, "width": 8})
    # a search checkpoint is not a supernet training to continue
    from archrank.oneshot.trainer import SupernetTrainer

    with pytest.raises(ArchrankError, match="a proxy-ea search checkpoint; continue it with"):
        SupernetTrainer.resume(load_checkpoint(tmp_path / "p.pt"))


def test_darts_is_refused_under_ddp(monkeypatch):
    """DARTS runs the mixed forward outside DDP's and keeps alpha per process."""
    import archrank.oneshot.trainer as trainer_module
    from archrank.oneshot.darts import DartsSampler
    from archrank.oneshot.trainer import SupernetTrainer

    data = tiny_data()
    trainer = SupernetTrainer.create("nb201", data, width=4, depth=1, seed=0,
                                     recipe=TrainRecipe(epochs=1, batch_size=32), device="cpu")
    trainer.sampler = DartsSampler(trainer.supernet.space, 0, dataset=trainer.dataset)
    monkeypatch.setattr(trainer_module, "dist_info", lambda: (0, 2))
    with pytest.raises(ArchrankError, match="darts sampler runs in one process only"):
        trainer.train()


def test_resumed_search_keeps_its_recorded_final_choice_unless_asked(tmp_path):
    """A checkpoint records its final choice: resuming (CLI: no settings; bench: its settings
    given) keeps it, e.g. a proxy-ea search from before the default changed keeps the whole
    space; asking (``final=``, or "final" among the settings) changes it."""
    from archrank.oneshot.search import _runner

    cfg = {"refit_every": 4, "warmup_steps": 4, "memory": 6, "landscape": SMALL}
    ckpt = tmp_path / "p.pt"
    kw = {"space": "nb201", "dataset": tiny_data(), "seed": 0, "checkpoint": ckpt,
          "recipe": TrainRecipe(batch_size=32), "threads": 1, "device": "cpu"}
    fresh = _runner("proxy-ea", epochs=1, resume=False, proxy={**cfg, "final": "space"},
                    width=4, depth=1, **kw)
    fresh.train(checkpoint=ckpt)
    assert _runner("proxy-ea", epochs=1, resume=False, proxy=cfg, width=4, depth=1,
                   **{**kw, "checkpoint": None}).sampler.config.final == "memory"  # default

    def final(**extra):
        return _runner("proxy-ea", epochs=None, resume=True, **kw, **extra).sampler.config.final

    assert final(proxy=None) == "space"
    assert final(proxy=cfg) == "space"  # the bench's way: settings given, no final
    assert final(proxy=None, final="memory") == "memory"  # the CLI's --final on --resume
    assert final(proxy={**cfg, "final": "memory"}) == "memory"


def test_mixed_forward_with_one_hot_weights_is_the_single_path():
    from archrank.oneshot.supernet import NetworkSetting, build_supernet

    torch.manual_seed(0)
    net = build_supernet(NetworkSetting("nb201", 4, 1, "1d", 1, 4, (1, 16))).eval()
    x = torch.randn(3, 1, 16)
    codes = (3, 1, 0, 2, 4, 3)
    torch.testing.assert_close(net.forward_mixed(x, F.one_hot(torch.tensor(codes), 5).float()),
                               net(x, codes))


@pytest.mark.slow
@pytest.mark.skipif(not ARCHRANK.exists(), reason="the archrank script is not installed")
def test_killed_proxy_search_resumes_exactly(tmp_path):
    npz = tiny_npz(tmp_path)
    ckpt_path = tmp_path / "s.pt"
    epochs = 6  # 8 steps an epoch: the kill's checkpoint (step 16+) lies between two refits
    opts = ["--method", "proxy-ea", "--dataset", str(npz), "--epochs", str(epochs),
            "--width", "4", "--depth", "1", "--batch-size", "32", "--seed", "2",
            "--refit-every", "5", "--memory", "20", "--no-pretrain"]
    env = {**os.environ, "COLUMNS": "100"}
    proc = subprocess.Popen([str(ARCHRANK), "oneshot", "search", *opts, "--out",
                             str(ckpt_path)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt_path.exists():
            try:
                if load_checkpoint(ckpt_path).epoch >= 2:
                    break
            except ArchrankError:
                pass
        time.sleep(0.02)
    assert proc.poll() is None, f"search ended before it was killed: {proc.stderr.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= load_checkpoint(ckpt_path).epoch < epochs
    resumed = subprocess.run([str(ARCHRANK), "oneshot", "search", "--method", "proxy-ea",
                              "--resume", str(ckpt_path)], env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    after = load_checkpoint(ckpt_path)
    assert after.finished

    from archrank.oneshot.search import _runner

    proxy = {"refit_every": 5, "memory": 20, "landscape": LandscapeConfig(pretrain=False)}
    ref = _runner("proxy-ea", space="nb201", dataset=str(npz), epochs=epochs, seed=2,
                  recipe=TrainRecipe(batch_size=32), checkpoint=None, resume=False,
                  proxy=proxy, threads=1, device="cpu", width=4, depth=1).train()
    weights = ref.supernet.state_dict()
    assert all(torch.equal(after.model[k], weights[k]) for k in weights)
    want, have = ref.sampler.state_dict(), after.sampler_state
    for key in ("alpha", "oiw_sum", "log"):
        assert torch.equal(have[key], want[key]), key
    assert have["oiw_count"] == want["oiw_count"] > 0
    assert torch.equal(have["memory"]["codes"], want["memory"]["codes"])
    assert torch.equal(have["memory"]["losses"], want["memory"]["losses"])
    for part in ("model", "head"):
        assert all(torch.equal(have["landscape"][part][k], v)
                   for k, v in want["landscape"][part].items()), part
    # the population of the evolution, rebuilt by replaying its ask/tell log
    sampler = ProxySampler(ref.supernet.space, 2, dataset=ref.dataset,
                           config=ref.sampler.config)
    sampler.load_state_dict(have)
    assert list(sampler.evolution.population) == list(ref.sampler.evolution.population)
    assert sampler.evolution.rng.bit_generator.state == \
        ref.sampler.evolution.rng.bit_generator.state
    assert f"chosen cell: {ref.supernet.space.format(ref.supernet.space.from_codes([ref.sampler.final_codes()])[0])}" in resumed.stdout  # noqa: E501


def test_oneshot_search_command_and_its_errors(cli, tmp_path):
    import json

    npz = tiny_npz(tmp_path)
    ckpt = tmp_path / "s.pt"
    base = ["--dataset", str(npz), "--width", "4", "--depth", "1", "--batch-size", "32",
            "--refit-every", "4", "--warmup-steps", "4", "--no-pretrain"]
    code, out, err = cli("oneshot", "search", *base, "--method", "proxy-darts", "--epochs", "1",
                         "--out", str(ckpt), "--json", str(tmp_path / "r.json"))
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert f"chosen cell: {result['arch']}" in out and "supernet score: val_acc" in out
    assert load_checkpoint(ckpt).sampler == "proxy-darts"
    for args, message in [
        (["--method", "nope", "--out", str(tmp_path / "x.pt")], "unknown search method 'nope'"),
        (["--epochs", "0", "--out", str(tmp_path / "x.pt")], "--epochs must be at least 1"),
        (["--method", "darts", "--resume", str(ckpt)], "a checkpoint of a proxy-darts search"),
        (["--space", "nb101", "--method", "proxy-darts", "--resume", str(ckpt)],
         "not space nb101"),
        (["--method", "proxy-ea", "--final", "best", "--out", str(tmp_path / "x.pt")],
         "unknown final choice 'best'"),
        (["--method", "proxy-ea", "--warmup-steps", "5", "--out", str(tmp_path / "x.pt")],
         "--warmup-steps applies to proxy-darts only"),
        (["--method", "spos-ea", "--oiw", "off", "--out", str(tmp_path / "x.pt")],
         "--oiw: proxy-ea / proxy-darts options, not spos-ea's"),
        (["--method", "proxy-ea", "--oiw", "off", "--out", str(tmp_path / "x.pt")],
         "--oiw applies to proxy-darts only"),
        (["--method", "proxy-darts", "--alpha-lr", "nan", "--out", str(tmp_path / "x.pt")],
         "alpha_lr must be a positive number"),
        (["--method", "spos-ea", "--ea-evals", "0", "--out", str(tmp_path / "x.pt")],
         "--ea-evals must be at least 1, got 0"),
        (["--method", "gcn-fit", "--fit-samples", "1", "--out", str(tmp_path / "x.pt")],
         "--fit-samples must be at least 2, got 1"),
        # a resumed search keeps its settings: a differing one is refused, not ignored
        (["--resume", str(ckpt), "--epochs", "7"], "was trained with --epochs 1; got 7"),
        (["--resume", str(ckpt), "--seed", "5"], "was trained with --seed 0; got 5"),
        (["--resume", str(ckpt), "--lr", "0.5"], "was trained with --lr 0.1; got 0.5"),
        (["--resume", str(ckpt), "--memory", "10"], "was searched with --memory 256; got 10"),
        (["--resume", str(ckpt), "--no-pretrain", "--pretrain"],
         "was searched with --pretrain/--no-pretrain False; got True"),
    ]:
        code, _, err = cli("oneshot", "search", *args)
        assert code == 2 and message in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "x.pt").exists()
    # the final choice is not a training setting: a finished search answers it anew; the
    # settings it was started with may be repeated
    code, out, err = cli("oneshot", "search", *base, "--method", "proxy-darts", "--final",
                         "memory", "--epochs", "1", "--resume", str(ckpt))
    assert code == 0 and "chosen cell: " in out, err
    # one writer per checkpoint: a second process on it is refused
    from archrank.files import hold_lock

    held = hold_lock(ckpt, "the search checkpoint")
    code, _, err = cli("oneshot", "search", "--resume", str(ckpt))
    assert code == 2 and "in use (by another archrank process" in err
    code, _, err = cli("oneshot", "train", "--resume", str(ckpt))
    assert code == 2 and "in use (by another archrank process" in err
    held.close()


def test_bench_oneshot_search_trains_the_picks_with_the_truths_recipe(cli, tmp_path):
    import json

    npz = tiny_npz(tmp_path, with_test=True)
    truth = tmp_path / "truth.csv"
    code, _, err = cli("bench", "table", "--dataset", str(npz), "--n", "6", "--train-seeds",
                       "0,1", "--epochs", "1", "--width", "4", "--depth", "1", "--out",
                       str(truth))
    assert code == 0, err
    args = ["bench", "oneshot-search", "--dataset", str(npz), "--methods",
            "spos-ea,darts,gcn-fit:samples=30:epochs=20:ensemble=1",  # a quick gcn
            "--seeds", "1", "--epochs", "1", "--truth", str(truth), "--work-dir",
            str(tmp_path / "w")]
    code, out, err = cli(*args, "--json", str(tmp_path / "r.json"), "--plot",
                         str(tmp_path / "plots"))
    assert code == 0, err
    assert (tmp_path / "plots" / "oneshot_search0_percentile.svg").is_file()
    code, _, err = cli("report", str(tmp_path / "r.json"), "--out", str(tmp_path / "r.html"))
    assert code == 0, err
    html = (tmp_path / "r.html").read_text()
    assert "One-shot search benchmark" in html and "Best pick of spos-ea" in html
    assert "truth percentile" in out and "spos-ea" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["train_seeds"] == [0, 1] and report["schema"] == 2
    # the envelope every bench JSON shares
    assert report["command"] == "bench oneshot-search" and report["seeds"] == [0]
    assert report["interrupted"] is False and report["machine"]["torch_threads"] >= 1
    fit = "gcn-fit:samples=30:epochs=20:ensemble=1"
    assert set(report["methods"]) == {"spos-ea", "darts", fit}
    assert report["methods"][fit]["method"] == "gcn-fit"
    assert report["methods"][fit]["options"] == {"fit_samples": 30,
                                                 "fit_params": {"epochs": 20, "ensemble": 1}}
    standalone = Path(report["standalone"]).read_text()
    assert Path(report["standalone"]).parent == tmp_path / "w"
    for m, r in report["methods"].items():
        assert len(r["cells"]) == 1 and r["cells"][0] in standalone
        assert 0 <= r["truth_percentile"]["mean"] <= 100 and r["degenerate_rate"] in (0, 1)
        assert set(r["val_acc"]) == {"mean", "std"} and r["search_seconds"]["mean"] > 0
        assert [p["cell"] for p in r["per_seed"]] == r["cells"]
        # the search ran at the truth's network size: 4-wide networks
        ckpt = load_checkpoint(tmp_path / "w" / ("darts-seed0.pt" if m == "darts"
                                                 else "uniform-seed0.pt"))
        assert ckpt.setting.width == 4 and ckpt.finished
    code, _, err = cli(*args[:-2], "--work-dir", str(tmp_path / "w2"), "--dataset", "digits")
    assert code == 2 and "was trained on" in err
    from archrank.files import hold_lock  # another bench on the work dir runs that search

    held = hold_lock(tmp_path / "w" / "darts-seed0.pt", "a test")
    code, _, err = cli(*args)
    assert code == 2 and "the darts search of seed 0 is in use" in err, err
    held.close()
    code, _, err = cli(*args, "--methods", "nope")
    assert code == 2 and "unknown search method 'nope'" in err
    code, _, err = cli(*args, "--methods", "proxy-darts:oiw=of")
    assert code == 2 and "unknown OIW normalisation 'of'" in err
