"""Datasets and the training oracle: offline data, clear errors, determinism, real separation."""

from __future__ import annotations

import pickle
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from archrank.datasets import ArrayDataset, load_dataset, load_npz
from archrank.errors import ArchrankError
from archrank.oracles.training import TrainingOracle, TrainRecipe, default_setup
from archrank.spaces import get_space
from archrank.spaces.edge_cell import EdgeCell


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """A fresh cache folder, so MNIST-1D is really generated (once for this module)."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ARCHRANK_CACHE_DIR", str(path))
        yield path


def _tiny(n: int = 96, length: int = 16, seed: int = 0) -> ArrayDataset:
    """Synthetic signals whose class is the sign of the sum of their first half."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, length)).astype(np.float32)
    y = (x[:, : length // 2].sum(1) > 0).astype(np.int64)
    k = n * 3 // 4
    return ArrayDataset.from_arrays("tiny", {"x_train": x[:k], "y_train": y[:k],
                                             "x_val": x[k:], "y_val": y[k:]})


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return {k: v for k, v in a.items() if k != "train_seconds"} == {
        k: v for k, v in b.items() if k != "train_seconds"}


# -- datasets ------------------------------------------------------------------------------------
def test_mnist1d_is_generated_offline_and_cached(cache_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("MNIST-1D tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    state = np.random.get_state()[1].copy()
    data = load_dataset("mnist1d")
    assert np.array_equal(np.random.get_state()[1], state)  # global RNG left alone
    assert (cache_dir / "mnist1d-v1-num_samples=20000.npz").is_file()
    assert data.input_shape == (1, 40) and data.input_kind == "1d"
    assert sorted(np.unique(data.y_train)) == list(range(10)) and data.num_classes == 10
    again = load_dataset("mnist1d")  # from the cache
    assert again.fingerprint() == data.fingerprint()


def test_the_mnist1d_default_is_the_committed_truth_recipe(cache_dir: Path) -> None:
    """Plain mnist1d and the nb201 default setting are the truth's: the same data (name and
    fingerprint the truth recorded), 3,200 / 12,800 / 4,000 signals, width 16, its recipe."""
    from dataclasses import asdict

    from archrank.datasets import canonical_spec
    from archrank.truth import read_truth

    truth = Path(__file__).resolve().parents[1] / "benchmarks/truth/nb201_mnist1d_w16.csv"
    setting = read_truth(truth, "nb201").setting
    data = load_dataset("mnist1d")
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (3200, 12800, 4000)
    assert data.name == setting["dataset"]["name"] == canonical_spec("mnist1d")
    assert data.fingerprint() == setting["dataset"]["fingerprint"]
    assert default_setup("nb201", data.name) == default_setup("nb201", "mnist1d")
    oracle = TrainingOracle()
    assert oracle.dataset.name == data.name
    assert (oracle.width, oracle.depth) == (setting["width"], setting["depth"]) == (16, 1)
    assert asdict(oracle.recipe) == setting["recipe"]


def test_bench_harnesses_take_the_default_for_the_committed_truth(cache_dir: Path,
                                                                 tmp_path: Path) -> None:
    """bench oneshot and oneshot-search compare datasets by fingerprint: plain mnist1d is the
    committed truth's data, the old small default is refused before any work."""
    from archrank.bench.oneshot import OneshotBench, _prepare
    from archrank.bench.oneshot_search import bench_search

    truth = Path(__file__).resolve().parents[1] / "benchmarks/truth/nb201_mnist1d_w16.csv"
    ctx = _prepare(OneshotBench(truth=truth, dataset="mnist1d", work_dir=tmp_path), print)
    assert ctx.data.name == "mnist1d:num_samples=20000,val_fraction=0.8"
    assert (ctx.setting.width, ctx.setting.depth) == (16, 1)  # FLOPs checked against the truth
    small = "mnist1d:num_samples=5000,val_fraction=0.2"
    with pytest.raises(ArchrankError, match="the truth was trained on 'mnist1d:num_samples=20000"):
        _prepare(OneshotBench(truth=truth, dataset=small, work_dir=tmp_path), print)
    with pytest.raises(ArchrankError, match="was trained on 'mnist1d:num_samples=20000"):
        bench_search(["spos-ea"], [0], truth=truth, space="nb201", dataset=small, epochs=1,
                     work_dir=tmp_path / "s", executor=None)  # type: ignore[arg-type]
    assert not (tmp_path / "s").exists()


def test_runs_and_checkpoints_record_mnist1d_by_its_full_name(tmp_path: Path) -> None:
    """What a run or checkpoint records loads the same data after a change of the default."""
    from archrank.cli.oneshot import dataset_spec
    from archrank.cli.search import _oracle_params
    from archrank.datasets import canonical_spec

    full = "mnist1d:num_samples=20000,val_fraction=0.8"
    assert canonical_spec("mnist1d") == canonical_spec(full) == full
    assert canonical_spec("mnist1d:val_fraction=0.2") == (
        "mnist1d:num_samples=20000,val_fraction=0.2")
    assert _oracle_params("train", None, None) == {"dataset": full}  # the main job
    assert _oracle_params(None, "mnist1d", 3) == {"dataset": full, "epochs": 3}
    assert dataset_spec("mnist1d") == full and dataset_spec("digits") == "digits"
    assert dataset_spec(str(tmp_path / "d.npz")) == str((tmp_path / "d.npz").resolve())
    with pytest.raises(ArchrankError, match="KEY one of"):
        canonical_spec("mnist1d:width=3")


def test_old_mnist1d_default_is_reachable_and_its_cache_never_serves_the_new(
        cache_dir: Path) -> None:
    small = load_dataset("mnist1d:num_samples=5000,val_fraction=0.2")
    assert (len(small.y_train), len(small.y_val), len(small.y_test)) == (3200, 800, 1000)
    assert small.name == "mnist1d:num_samples=5000,val_fraction=0.2"
    assert default_setup("nb201", small.name)["width"] == 16  # the space's mnist1d default
    # the small default's cache under its old name, and a stale copy under a name without the
    # sample count: plain mnist1d must regenerate its own data, not read either
    old = cache_dir / "mnist1d-v1-num_samples=5000.npz"
    assert old.is_file()
    (cache_dir / "mnist1d-v1.npz").write_bytes(old.read_bytes())
    stamp = {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("mnist1d-v1*.npz")}
    data = load_dataset("mnist1d")
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (3200, 12800, 4000)
    assert data.fingerprint() != small.fingerprint()
    assert {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("mnist1d-v1*.npz")
            if p.name in stamp} == stamp  # the small caches are left as they were
    assert load_dataset("mnist1d:num_samples=5000,val_fraction=0.2").fingerprint() == (
        small.fingerprint())


def test_mnist1d_generator_settings_name_the_dataset_and_its_cache(cache_dir: Path) -> None:
    data = load_dataset("mnist1d:num_samples=1000,iid_noise_scale=0.1")
    assert data.name == "mnist1d:iid_noise_scale=0.1,num_samples=1000,val_fraction=0.8"
    assert (cache_dir / "mnist1d-v1-iid_noise_scale=0.1-num_samples=1000.npz").is_file()
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (160, 640, 200)
    quieter = load_dataset("mnist1d:num_samples=1000")
    assert quieter.fingerprint() != data.fingerprint()
    assert default_setup("nb201", data.name) == default_setup("nb201", "mnist1d")
    # val_fraction moves the split, not the generated signals (same cache file)
    wide_val = load_dataset("mnist1d:num_samples=1000,val_fraction=0.75")
    assert wide_val.name == "mnist1d:num_samples=1000,val_fraction=0.75"
    assert (len(wide_val.y_train), len(wide_val.y_val), len(wide_val.y_test)) == (200, 600, 200)
    assert not list(cache_dir.glob("*val_fraction*"))
    both = np.concatenate([wide_val.x_train, wide_val.x_val])
    assert sorted(map(bytes, both)) == sorted(map(bytes, np.concatenate(
        [quieter.x_train, quieter.x_val])))
    for bad, why in (("mnist1d:noise=1", "KEY one of num_samples"),
                     ("mnist1d:num_samples=many", "num_samples must be an integer"),
                     ("mnist1d:val_fraction=1", "val_fraction must be between"),
                     ("mnist1d:seed=-1", "seed must be between 0 and 4294967295")):
        with pytest.raises(ArchrankError, match=why):
            load_dataset(bad)
    from archrank.datasets import canonical_spec, recorded_spec

    # a new spec must say what the generator makes; one recorded before still loads
    with pytest.raises(ArchrankError, match=r"multiple of 10 .*e\.g\. 1050"):
        canonical_spec("mnist1d:num_samples=1059")
    assert recorded_spec("mnist1d:num_samples=1059,val_fraction=0.8")[1] is False
    with pytest.warns(UserWarning, match="the generator makes 1050 signals"):
        odd = load_dataset("mnist1d:num_samples=1059")
    assert len(odd.y_train) + len(odd.y_val) + len(odd.y_test) == 1050


def test_a_damaged_or_wrong_mnist1d_cache_is_generated_again(cache_dir: Path) -> None:
    data = load_dataset("mnist1d:num_samples=1000")
    file = cache_dir / "mnist1d-v1-num_samples=1000.npz"
    file.write_bytes(b"")  # empty: np.load raises EOFError
    assert load_dataset("mnist1d:num_samples=1000").fingerprint() == data.fingerprint()
    arrays = dict(np.load(file))
    np.savez(file, **{k: v[:5] for k, v in arrays.items()})  # readable, another size
    with pytest.warns(UserWarning, match="holds 10 signals, not 1000; generating it again"):
        again = load_dataset("mnist1d:num_samples=1000")
    assert again.fingerprint() == data.fingerprint()


def test_dataset_typos_and_layouts_are_named(tmp_path: Path, monkeypatch) -> None:
    from archrank.datasets import canonical_spec

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ArchrankError, match=r"unknown dataset 'digit'; use"):
        canonical_spec("digit")  # as typed, not as an absolute path
    last = torch.utils.data.TensorDataset(torch.randn(4, 8, 8, 3), torch.arange(4) % 2)
    with pytest.raises(ArchrankError, match=r"shape \(8, 8, 3\), which reads as channels last"):
        ArrayDataset.from_torch(last, last)

    class Image:  # what a torchvision dataset without ToTensor() returns
        def getbands(self) -> tuple[str, ...]:
            return ("R", "G", "B")

    class Pil(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
            return Image(), i

    with pytest.raises(ArchrankError, match="PIL images; give tensors"):
        ArrayDataset.from_torch(Pil(), Pil())


def test_digits_dataset() -> None:
    data = load_dataset("digits")
    assert data.input_shape == (1, 8, 8) and data.input_kind == "2d"
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 1797


def test_a_search_trains_with_the_datasets_default_recipe() -> None:
    """Without --epochs a search trains as bench table does: 20 epochs on digits (a first
    version built the generic 5-epoch recipe whenever the oracle was made for a search)."""
    pytest.importorskip("sklearn")
    from archrank.oracles.training import TrainingOracle
    from archrank.runs import SearchConfig, build_oracle

    cfg = SearchConfig(space="nb201", metric="val_acc", oracle="train",
                       oracle_params={"dataset": "digits"})
    assert build_oracle(cfg).recipe == TrainingOracle("nb201", "digits").recipe
    assert build_oracle(cfg).recipe.epochs == 20
    given = SearchConfig(space="nb201", metric="val_acc", oracle="train",
                         oracle_params={"dataset": "digits", "epochs": 3})
    assert build_oracle(given).recipe.epochs == 3


def test_a_run_recorded_with_the_generic_epochs_resumes_with_them() -> None:
    """Before session 10 a search that set no recipe trained 5 epochs on every dataset; its
    recorded inputs hold it to them on resume (the dataset's default is 20 on digits)."""
    pytest.importorskip("sklearn")
    from archrank.runs import SearchConfig, build_oracle
    from archrank.runs.config import as_recorded

    cfg = SearchConfig(space="nb201", metric="val_acc", oracle="train",
                       oracle_params={"dataset": "digits"})
    old_inputs = {"recipe": {"epochs": 5}}
    assert build_oracle(as_recorded(cfg, old_inputs)).recipe.epochs == 5
    assert build_oracle(cfg).recipe.epochs == 20  # a new run
    # a run recorded before runs recorded their inputs trained the generic 5 epochs too
    assert build_oracle(as_recorded(cfg, None)).recipe.epochs == 5
    mine = SearchConfig(space="nb201", metric="val_acc", oracle="train",
                        oracle_params={"dataset": "digits", "epochs": 7})
    assert as_recorded(mine, old_inputs).oracle_params["epochs"] == 7  # set by the user


def test_resuming_a_training_run_compares_options_as_recorded(tmp_path: Path) -> None:
    """--resume with training options matches a run that set no recipe; the full command
    without --epochs does not match a run made with --epochs 7 (a first version of the epoch
    pin refused the one and let the other through)."""
    pytest.importorskip("sklearn")
    from archrank.cli.search import _oracle_params, resolve_run
    from archrank.runs import RunStore, SearchConfig

    def make(name: str, epochs: int | None, recorded_epochs: int) -> Path:
        cfg = SearchConfig(space="nb201", metric="val_acc", oracle="train", strategy="random",
                           budget=5, oracle_params=_oracle_params("train", "digits", epochs))
        with RunStore.create(tmp_path / name, cfg.to_dict(),
                             inputs={"recipe": {"epochs": recorded_epochs}}):
            pass
        return tmp_path / name

    plain, seven = make("plain", None, 20), make("seven", 7, 7)
    given = {"oracle": "train", "oracle_params": _oracle_params("train", "digits", None)}
    config, _, existing = resolve_run(given, None, plain)
    assert existing and config.oracle_params["epochs"] == 20
    full = {"space": "nb201", "metric": "val_acc", "strategy": "random", "budget": 5, **given}
    with pytest.raises(ArchrankError, match="was created with"):
        resolve_run(full, seven, None)
    assert resolve_run({**full, "oracle_params": _oracle_params("train", "digits", 7)},
                       seven, None)[2]


def test_darts_reduction_pads_each_axis_by_its_own_parity() -> None:
    from archrank.nn.darts import FactorizedReduce

    reduce = FactorizedReduce("2d", 4, 4)
    for shape in ((15, 16), (16, 15), (15, 15), (16, 16)):  # (15, 16) crashed
        assert reduce(torch.randn(2, 4, *shape)).shape == (2, 4, 8, 8)


def _write(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_dataset_and_its_errors(tmp_path: Path) -> None:
    x, y = np.zeros((20, 3, 12), np.float32), np.arange(20) % 4
    good = _write(tmp_path / "good.npz", x_train=x, y_train=y, x_val=x[:5], y_val=y[:5])
    data = load_npz(good)
    assert data.input_shape == (3, 12) and data.num_classes == 4 and not data.has_test

    cases = {
        "missing array 'y_val'": {"x_train": x, "y_train": y, "x_val": x},
        r"y_train has shape \(20, 2\)": {"x_train": x, "y_train": np.zeros((20, 2)),
                                         "x_val": x, "y_val": y},
        r"x_val examples have shape \(3, 11\)": {"x_train": x, "y_train": y,
                                                 "x_val": x[:, :, :11], "y_val": y},
        "y_val contains label 7, but y_train's labels are 0..3": {
            "x_train": x, "y_train": y, "x_val": x[:3], "y_val": np.array([0, 1, 7])},
        "y_train contains the negative label -1": {"x_train": x, "y_train": y - 1,
                                                   "x_val": x, "y_val": y},
        "y_train must hold integer class labels": {"x_train": x, "y_train": y + 0.5,
                                                   "x_val": x, "y_val": y},
        "has x_test but not y_test": {"x_train": x, "y_train": y, "x_val": x, "y_val": y,
                                      "x_test": x},
        r"x_train has shape \(20,\)": {"x_train": np.zeros(20), "y_train": y,
                                       "x_val": x, "y_val": y},
        # channels last was read as 32 channels of 32 x 3 images, in silence (from_torch
        # refused it)
        r"the x_train examples have shape \(32, 32, 3\), which reads as channels last .* "
        r"x_train.transpose\(0, 3, 1, 2\)": {
            "x_train": np.zeros((20, 32, 32, 3)), "y_train": y,
            "x_val": np.zeros((5, 32, 32, 3)), "y_val": y[:5]},
    }
    for i, (message, arrays) in enumerate(cases.items()):
        path = _write(tmp_path / f"bad{i}.npz", **arrays)
        with pytest.raises(ArchrankError, match=message) as err:
            load_npz(path)
        assert "\n" not in str(err.value)

    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(good.read_bytes()[:100])
    with pytest.raises(ArchrankError, match=r"not a readable \.npz file"):
        load_dataset(corrupt)
    single = tmp_path / "single.npy"
    np.save(single, x)
    with pytest.raises(ArchrankError, match="single array"):
        load_dataset(single)
    with pytest.raises(ArchrankError, match="no such dataset file"):
        load_dataset(tmp_path / "absent.npz")
    with pytest.raises(ArchrankError, match="unknown dataset 'cifar"):
        load_dataset("cifar-10")


def test_torch_dataset_becomes_arrays() -> None:
    x = torch.randn(30, 2, 6, 6)
    y = torch.arange(30) % 3
    ds = torch.utils.data.TensorDataset(x, y)
    data = ArrayDataset.from_torch(ds, torch.utils.data.Subset(ds, range(10)))
    assert data.input_kind == "2d" and data.num_classes == 3
    assert np.allclose(data.x_val, x[:10].numpy())
    oracle = TrainingOracle("nb201", (ds, ds), width=4, depth=1, recipe=TrainRecipe(epochs=1))
    assert oracle.dataset.input_shape == (2, 6, 6)
    assert oracle.evaluate(EdgeCell(("nor_conv_1x1",) * 6)).ok


# -- the oracle ----------------------------------------------------------------------------------
def test_the_oracle_checks_its_network_device_and_threads() -> None:
    from archrank.nn import check_size

    with pytest.raises(ArchrankError, match="nb101 networks need width >= 5, got width 4"):
        check_size("nb101", 4, 1)
    with pytest.raises(ArchrankError, match="width >= 5"):
        TrainingOracle("nb101", _tiny(), width=2, depth=1)
    with pytest.raises(ArchrankError, match="unknown device 'gpu'"):
        TrainingOracle("nb201", _tiny(), width=4, depth=1, device="gpu")
    with pytest.raises(ArchrankError, match="threads must be at least 1"):
        TrainingOracle("nb201", _tiny(), width=4, depth=1, threads=0)
    if not torch.cuda.is_available():
        with pytest.raises(ArchrankError, match="no CUDA GPU"):
            TrainingOracle("nb201", _tiny(), width=4, depth=1, device="cuda")


def test_training_is_deterministic_and_picklable() -> None:
    oracle = TrainingOracle("nb201", _tiny(), width=4, depth=1,
                            recipe=TrainRecipe(epochs=2, batch_size=16))
    arch = get_space("nb201").parse(
        "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|"
        "nor_conv_3x3~2|")
    first = oracle.evaluate(arch)
    assert first.ok, first.error
    assert set(first.metrics) >= {"val_acc", "params", "flops", "train_seconds"}
    assert "test_acc" not in first.metrics  # the dataset has no test split
    assert first.cost == first.metrics["train_seconds"] > 0
    assert _same(first.metrics, oracle.evaluate(arch).metrics)
    clone = pickle.loads(pickle.dumps(oracle))
    assert clone.space is get_space("nb201")
    assert _same(first.metrics, clone.evaluate(arch).metrics)
    other_seed = TrainingOracle("nb201", _tiny(), width=4, depth=1, seed=1,
                                recipe=TrainRecipe(epochs=2, batch_size=16))
    assert not _same(first.metrics, other_seed.evaluate(arch).metrics)
    desc = oracle.describe()
    assert desc["recipe"]["epochs"] == 2 and desc["dataset"]["fingerprint"]


def test_a_training_gives_the_same_numbers_inline_and_on_a_worker() -> None:
    """MNIST-1D's arrays were views (``x[:, None, :]``) with an odd stride on the channel
    axis, which pickling to a worker normalises; torch took other kernels for the two, so
    inline and process-pool trainings of one cell differed in the last digits."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 32)).astype(np.float32)[:, None, :]
    y = (x[:, 0, :16].sum(1) > 0).astype(np.int64)
    data = ArrayDataset("view", x[:72], y[:72], x[72:], y[72:], num_classes=2)
    assert data.x_train.strides == np.empty(data.x_train.shape, np.float32).strides
    oracle = TrainingOracle("nb201", data, width=4, depth=1,
                            recipe=TrainRecipe(epochs=2, batch_size=16))
    arch = get_space("nb201").parse(
        "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|"
        "nor_conv_3x3~2|")
    clone = pickle.loads(pickle.dumps(oracle))
    assert _same(oracle.evaluate(arch).metrics, clone.evaluate(arch).metrics)


def test_failures_are_results_not_exceptions() -> None:
    bad = _tiny()
    huge = ArrayDataset("inf", np.full_like(bad.x_train, np.inf), bad.y_train, bad.x_val,
                        bad.y_val, num_classes=2)
    oracle = TrainingOracle("nb201", huge, width=4, depth=1, recipe=TrainRecipe(epochs=1))
    result = oracle.evaluate(EdgeCell(("nor_conv_3x3",) * 6))
    assert result.status == "failed" and "diverged" in result.error
    broken = TrainingOracle("nb201", _tiny(), width=4, depth=1).evaluate(EdgeCell(("conv",) * 6))
    assert broken.status == "failed" and "unknown NB201 op 'conv'" in broken.error


def test_nb101_and_digits_train() -> None:
    space = get_space("nb101")
    cell = space.make([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]],
                      ["input", "conv3x3-bn-relu", "maxpool3x3", "output"])
    oracle = TrainingOracle(space, "digits", width=8, recipe=TrainRecipe(epochs=3))
    result = oracle.evaluate(cell)
    assert result.ok, result.error
    assert result.metrics["val_acc"] > 50 and "test_acc" in result.metrics


def test_user_npz_trains(tmp_path: Path) -> None:
    tiny = _tiny()
    path = _write(tmp_path / "mine.npz", x_train=tiny.x_train[:, 0], y_train=tiny.y_train,
                  x_val=tiny.x_val[:, 0], y_val=tiny.y_val, x_test=tiny.x_val[:, 0],
                  y_test=tiny.y_val)
    result = TrainingOracle("nb201", path, recipe=TrainRecipe(epochs=1)).evaluate(
        EdgeCell(("nor_conv_3x3",) * 6))
    assert result.ok and result.metrics["val_acc"] == result.metrics["test_acc"]
    # the loss is the mean cross-entropy of the same predictions: positive, equal on equal splits
    assert 0 < result.metrics["val_loss"] == result.metrics["test_loss"]


@pytest.mark.slow
def test_default_recipe_separates_cells_on_mnist1d(cache_dir: Path) -> None:
    """The default MNIST-1D setting (the truth recipe): a conv cell clearly beats skip,
    pooling and empty cells (measured: 97.6, 93.5, 79.7, 9.8)."""
    oracle = TrainingOracle()  # nb201, mnist1d, default size and recipe
    acc, seconds = {}, []
    for op in ("nor_conv_3x3", "skip_connect", "avg_pool_3x3", "none"):
        start = time.perf_counter()
        result = oracle.evaluate(EdgeCell((op,) * 6))
        seconds.append(time.perf_counter() - start)
        assert result.ok, result.error
        acc[op] = result.metrics["val_acc"]
    assert acc["nor_conv_3x3"] > 95
    assert acc["nor_conv_3x3"] > acc["skip_connect"] + 2.5
    assert acc["nor_conv_3x3"] > acc["avg_pool_3x3"] + 5
    assert acc["none"] < 15  # output cut off from the input: chance level
    assert max(seconds) < 60
