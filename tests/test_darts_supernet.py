"""The DARTS supernet: path codes, sub-network == stand-alone network, SPOS training, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archrank.errors import InvalidArchitecture
from archrank.nn import build_network
from archrank.nn.counting import count_flops, count_params
from archrank.oneshot import NetworkSetting, SupernetTrainer, build_supernet
from archrank.oneshot.sampler import FairSampler, UniformSampler
from archrank.oracles.training import TrainRecipe
from archrank.spaces import get_space
from test_oneshot import tiny_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DARTS_V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
            "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
            "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
            "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
            "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
            "reduce_concat=[2, 3, 4, 5])")


@pytest.fixture(scope="module")
def darts():
    return get_space("darts")


def test_path_codes_round_trip_and_reject_what_a_path_cannot_express(darts):
    archs = darts.sample(40, np.random.default_rng(0))
    codes = darts.codes(archs)
    assert codes.shape == (40, 28)
    assert ((codes > 0).reshape(40, 2, -1).sum(-1) == 8).all()  # two inputs per node
    assert darts.hash_many(darts.from_codes(codes)) == darts.hash_many(archs)
    v2 = darts.parse(DARTS_V2)  # node 3 reads (1, 0): the code is order-free
    assert darts.codes([v2])[0, 2:5].tolist() == [4, 4, 0]
    twice = darts.parse(DARTS_V2.replace("('sep_conv_3x3', 1), ('skip_connect', 0)",
                                         "('sep_conv_3x3', 0), ('skip_connect', 0)"))
    with pytest.raises(InvalidArchitecture, match="node 4 reads one input twice"):
        darts.codes([twice])
    with pytest.raises(InvalidArchitecture, match="exactly two inputs"):
        darts.from_codes(np.zeros((1, 28), dtype=np.int64))


def test_uniform_sampler_draws_darts_paths_per_seed_and_step(darts):
    a, b = UniformSampler(darts, seed=3), UniformSampler(darts, seed=3)
    paths = np.stack([a.sample(t) for t in range(1000)])
    assert (paths == np.stack([b.sample(t) for t in range(1000)])).all()
    assert len(darts.from_codes(paths)) == 1000  # every draw is a valid genotype
    assert not (paths == UniformSampler(darts, seed=4).sample(0)).all(axis=1).all()
    # node 5 reads 2 of its 5 candidates uniformly: input 0 in 40% of the draws (sd 1.5%)
    assert 0.35 < (paths[:, 9] > 0).mean() < 0.45
    assert 0.35 < (paths[:, 14 + 9] > 0).mean() < 0.45
    ops = paths[paths > 0]  # every op alike (1/7 each)
    assert np.abs(np.bincount(ops, minlength=8)[1:] / len(ops) - 1 / 7).max() < 0.02


@pytest.mark.parametrize("kind,shape,depth", [("1d", (1, 24), 3), ("2d", (3, 8, 8), 5)])
def test_subnetwork_forward_equals_standalone_network(darts, kind, shape, depth):
    setting = NetworkSetting("darts", 4, depth, kind, shape[0], 10, shape)
    torch.manual_seed(0)
    net = build_supernet(setting)
    with torch.no_grad():  # move BN statistics and affine parameters off their defaults
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.affine:
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    x = torch.randn(5, *shape)
    archs = [darts.parse(DARTS_V2), *darts.sample(4, np.random.default_rng(1))]
    costs = net.costs(net.encode(archs))
    for n, arch in enumerate(archs):
        codes = tuple(int(c) for c in net.encode([arch])[0])
        alone = net.standalone(arch)
        assert darts.hash(alone.genotype) == darts.hash(arch)
        reference = build_network("darts", arch, width=4, depth=depth, num_classes=10,
                                  in_channels=shape[0], input_kind=kind)
        assert count_params(alone) == count_params(reference) == costs["params"][n]
        assert count_flops(reference, shape) == costs["flops"][n]
        assert len(net.standalone_names(codes)) == len(alone.state_dict())
        for train in (False, True):
            net.train(train)
            alone.train(train)
            with torch.no_grad():
                assert torch.equal(net(x, codes), alone(x)), (n, train)


def test_one_epoch_of_darts_spos_trains_only_the_path():
    recipe = TrainRecipe(epochs=1, batch_size=32)
    trainer = SupernetTrainer.create("darts", tiny_data(n=96, length=16), width=4, depth=3,
                                     recipe=recipe, device="cpu")
    trainer.train()
    assert trainer.step == 3 and np.isfinite(trainer.history[-1])
    net = trainer.supernet
    last = net.path_parameters(tuple(int(c) for c in trainer.sampler.sample(trainer.step - 1)))
    params = dict(net.named_parameters())
    assert last and len(last) < len(params)
    for k, p in params.items():
        assert (p.grad is not None) == (k in last), k


def test_fair_sampler_runs_every_op_of_every_slot_once_per_round(darts):
    sampler = FairSampler(darts, seed=2)
    assert sampler.round_len == 7
    paths = np.stack([sampler.sample(t) for t in range(14)])
    assert (paths == np.stack([FairSampler(darts, seed=2).sample(t) for t in range(14)])).all()
    archs = darts.from_codes(paths)  # valid genotypes: two distinct inputs per node
    a = darts.arrays(archs)
    for block in (slice(0, 7), slice(7, 14)):
        ops = a["ops"][block].reshape(7, -1)  # [7 steps, 16 slots]
        # from_codes orders a node's two inputs, so count per node: each op twice in 7 steps
        per_node = ops.reshape(7, 8, 2).transpose(1, 0, 2).reshape(8, 14)
        assert all(np.bincount(row, minlength=7).tolist() == [2] * 7 for row in per_node)
    # the inputs are uniform: over many rounds node 5 reads input 0 in 40% of the paths
    many = np.stack([sampler.sample(t) for t in range(1400)])
    assert 0.34 < (many[:, 9] > 0).mean() < 0.46


def test_mixed_forward_with_one_hot_weights_is_the_path(darts):
    setting = NetworkSetting("darts", 4, 3, "1d", 1, 10, (1, 16))
    torch.manual_seed(0)
    net = build_supernet(setting).eval()
    x = torch.randn(3, 1, 16)
    for codes in darts.codes(darts.sample(3, np.random.default_rng(4))):
        weights = torch.zeros(darts.relaxed_shape())
        weights[np.arange(28), codes] = (torch.from_numpy(codes) > 0).float()
        with torch.no_grad():
            assert torch.equal(net.forward_mixed(x, weights), net(x, tuple(codes.tolist())))
        assert (darts.discretize(weights.numpy()) == codes).all()
    weights = torch.softmax(torch.randn(darts.relaxed_shape()), -1).requires_grad_(True)
    net.forward_mixed(x, weights).sum().backward()
    assert weights.grad is not None and (weights.grad[:, 1:] != 0).all()


def test_discretize_keeps_the_two_strongest_inputs_per_node(darts):
    rng = np.random.default_rng(0)
    for codes in darts.codes(darts.sample(20, rng)):
        w = rng.uniform(0, 0.1, size=darts.relaxed_shape())
        w[np.arange(28), codes] += 1.0 * (codes > 0)
        w[:, 0] = rng.uniform(0, 5, size=28)  # none is never kept, however strong
        assert (darts.discretize(w) == codes).all()


def test_darts_latency_table_counts_and_ranks_whole_networks(darts):
    from archrank.oneshot.hardware import LatencyTable, validate_latency

    net = build_supernet(NetworkSetting("darts", 4, 5, "1d", 1, 10, (1, 24)))
    units = net.latency_units()
    assert units[0][0] == "base" and len(units) == 1 + 3 * 7 + 2 * 7
    archs = [darts.parse(DARTS_V2), *darts.sample(5, np.random.default_rng(3))]
    counts = net.latency_counts(net.encode(archs))
    assert counts.shape == (6, len(units) - 1) and (counts.sum(1) == 8 * 5).all()
    # DARTS_V2's reduction cell: 5 max-pools on its inputs (pairs 0, 1, 3, 4, 7)
    names = [name for name, *_ in units[1:]]
    assert counts[0, names.index("reduce1:max_pool_3x3")] == 5
    # stage 1: the reduction cell's 3 inner skips and the 2 of the normal cell after it
    assert counts[0, names.index("stage1:skip_connect")] == 3 + 2
    table = LatencyTable.measure(net, warmup=1, repeats=3, inner=2)
    assert (table.predict(net, net.encode(archs)) > table.ms[0]).all()
    report = validate_latency(table, net, archs, warmup=1, repeats=3, inner=2)
    assert np.isfinite(report["kendall_tau"]) and (report["measured_ms"] > 0).all()


def test_oneshot_train_darts_from_the_cli(cli, tmp_path):
    data = tiny_data(n=64, length=20)
    npz = tmp_path / "tiny.npz"
    np.savez(npz, x_train=data.x_train, y_train=data.y_train, x_val=data.x_val,
             y_val=data.y_val)
    ckpt = tmp_path / "s.pt"
    code, out, err = cli("oneshot", "train", "--space", "darts", "--dataset", str(npz),
                         "--width", "4", "--depth", "3", "--batch-size", "32", "--epochs", "1",
                         "--device", "cpu", "--out", str(ckpt))
    assert code == 0, err
    assert "trained 1 epochs" in out and "darts width 4 depth 3" in err
    code, _, err = cli("oneshot", "train", "--space", "darts", "--dataset", str(npz),
                       "--width", "4", "--depth", "3", "--batch-size", "32",
                       "--sampler", "fair", "--epochs", "1", "--device", "cpu",
                       "--out", str(tmp_path / "f.pt"))
    assert code == 0, err
    # fit: score a few paths, predict a uniform pool (darts cannot be enumerated)
    scores = tmp_path / "scores.csv"
    base = ["oneshot", "fit", str(ckpt), "--samples", "6", "--pool", "10", "--set", "epochs=5",
            "--out", str(scores)]
    code, out, err = cli(*base, "--no-latency")
    assert code == 0, err
    from archrank.oneshot import ScoreTable

    table = ScoreTable.read_csv(scores, space="darts")
    darts = get_space("darts")
    assert 6 < len(table) <= 16 and len(set(table.hashes)) == len(table)
    assert (~np.isnan(table.columns["supernet_val_acc"])).sum() == 6
    arch = darts.parse(table.archs[-1])
    assert darts.hash(arch) == table.hashes[-1]
    assert table.columns["params"][-1] == count_params(
        build_network("darts", arch, width=4, depth=3, num_classes=4, in_channels=1,
                      input_kind="1d"))


@pytest.mark.parametrize("method", ["proxy-darts", "proxy-ea", "darts", "spos-ea"])
def test_oneshot_search_on_darts_end_to_end(cli, tmp_path, method):
    """Each one-shot method on the darts supernet, tiny: a valid genotype comes out."""
    import json

    data = tiny_data(n=64, length=20)
    npz = tmp_path / "tiny.npz"
    np.savez(npz, x_train=data.x_train, y_train=data.y_train, x_val=data.x_val,
             y_val=data.y_val)
    proxy = (["--refit-every", "2", "--no-pretrain"] if method.startswith("proxy-") else [])
    if method == "proxy-darts":
        proxy += ["--warmup-steps", "2"]
    if method == "spos-ea":  # (refused for the other methods, which ignored it)
        proxy += ["--ea-evals", "4"]
    code, out, err = cli("oneshot", "search", "--space", "darts", "--method", method,
                         "--dataset", str(npz), "--width", "4", "--depth", "3",
                         "--batch-size", "16", "--epochs", "1", *proxy,
                         "--device", "cpu", "--out", str(tmp_path / "s.pt"),
                         "--json", str(tmp_path / "r.json"))
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert f"chosen cell: {result['arch']}" in out
    darts = get_space("darts")
    chosen = darts.parse(result["arch"])
    assert darts.codes([chosen])[0].tolist() == result["codes"]
    assert 0 <= result["supernet_val_acc"] <= 100
    if method.startswith("proxy-"):  # the landscape took relaxed darts cells: alpha [28, 8]
        from archrank.oneshot import load_checkpoint

        state = load_checkpoint(tmp_path / "s.pt").sampler_state
        assert state["alpha"].shape == (28, 8) and state["oiw_count"] == 2
        assert float(state["oiw_sum"].min()) >= 0 and float(state["oiw_sum"].max()) <= 2
        if method == "proxy-darts":  # alpha descended the predicted loss
            assert float(state["alpha"].abs().max()) > 0


def test_interrupted_proxy_darts_search_on_darts_resumes_exactly(tmp_path):
    """Stopped inside its second epoch, a proxy-darts search on darts continues from the
    first epoch's checkpoint to the state of an uninterrupted run: supernet weights, alpha,
    OIW, memory, landscape, final cell."""
    from archrank.oneshot import load_checkpoint
    from archrank.oneshot.landscape import LandscapeConfig
    from archrank.oneshot.search import _runner

    data = tiny_data(n=64, length=20)
    proxy = {"refit_every": 2, "warmup_steps": 2, "memory": 5,
             "landscape": LandscapeConfig(pretrain=False, fit_steps=5)}
    kw = {"space": "darts", "dataset": data, "epochs": 2, "seed": 3,
          "recipe": TrainRecipe(batch_size=16), "proxy": proxy, "threads": 1,
          "device": "cpu", "width": 4, "depth": 3}
    ref = _runner("proxy-darts", checkpoint=None, resume=False, **kw).train()

    class Stop(Exception):
        pass

    def stop(epoch: int, step: int, steps: int, loss: float) -> None:
        if epoch == 1 and step == 2:
            raise Stop

    path = tmp_path / "s.pt"
    with pytest.raises(Stop):
        _runner("proxy-darts", checkpoint=path, resume=False, **kw).train(path, on_step=stop)
    assert load_checkpoint(path).epoch == 1 and not load_checkpoint(path).finished
    resumed = _runner("proxy-darts", checkpoint=path, resume=True,
                      **{**kw, "epochs": None, "proxy": None}).train(path)
    want, have = ref.supernet.state_dict(), resumed.supernet.state_dict()
    assert all(torch.equal(want[k], have[k]) for k in want)
    a, b = ref.sampler.state_dict(), resumed.sampler.state_dict()
    assert a["oiw_count"] == b["oiw_count"] > 0 and float(a["alpha"].abs().max()) > 0
    for key in ("alpha", "oiw_sum"):
        assert torch.equal(a[key], b[key]), key
    assert torch.equal(a["memory"]["losses"], b["memory"]["losses"])
    for part in ("model", "head"):
        assert all(torch.equal(a["landscape"][part][k], v)
                   for k, v in b["landscape"][part].items()), part
    assert np.array_equal(ref.sampler.final_codes(), resumed.sampler.final_codes())


@pytest.mark.parametrize("kind,shape,depth", [("1d", (1, 40), 3), ("2d", (3, 15, 16), 8)])
def test_vectorised_costs_equal_built_networks(darts, kind, shape, depth):
    """darts costs are the skeleton's plus each op unit's (no network built per genotype):
    equal to building and counting each stand-alone network, odd map sizes included."""
    net = build_supernet(NetworkSetting("darts", 4, depth, kind, shape[0], 10, shape))
    archs = darts.sample(25, np.random.default_rng(5))
    costs = net.costs(net.encode(archs))
    for n, arch in enumerate(archs):
        reference = build_network("darts", arch, width=4, depth=depth, num_classes=10,
                                  in_channels=shape[0], input_kind=kind)
        assert costs["params"][n] == count_params(reference)
        assert costs["flops"][n] == count_flops(reference, shape)
