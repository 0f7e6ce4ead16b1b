"""Readers of the official benchmark formats: NAS-Bench-Graph's package tables (real data),
NATS-Bench topology files and NAS-Bench-201 ``.pth`` files (small files built here in the
official structure, since the real ones cannot be downloaded), and the allow-list unpickler."""

from __future__ import annotations

import bz2
import math
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from archrank.errors import ArchrankError, BenchmarkFormatError, NotInBenchmark
from archrank.spaces import get_space
from archrank.spaces.nbgraph import NBGraphSpace
from archrank.tables import load_benchmark
from archrank.tables.nats import read_nats
from archrank.tables.nb201_pth import load_pth, read_nb201_pth
from archrank.tables.nbgraph import DATASETS, read_nbgraph
from archrank.tables.safe_pickle import (
    TensorSkippingUnpickler,
    load_pickle_file,
    safe_loads,
)

# --------------------------------------------------------------------------------------------
# NAS-Bench-Graph (real tables shipped in the nas-bench-graph package)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", DATASETS)
def test_nbgraph_reads_every_dataset(dataset: str) -> None:
    bench = read_nbgraph(dataset)
    expected = 2021 if dataset == "proteins" else 26206
    assert len(bench) == expected
    assert bench.metrics == ["valid_perf", "perf", "latency", "params"]
    assert bench.n_unique == expected and not bench.duplicates
    for metric in bench.metrics:
        values = bench.values(metric)
        assert np.isfinite(values).all() and (values > 0).all()
    assert ((bench.values("perf") > 0) & (bench.values("perf") <= 1)).all()
    # every row is its own representative and is found again by its hash
    space = bench.space
    assert all(space.hash(a) == h for a, h in zip(bench.archs[:500], bench.hashes[:500],
                                                   strict=True))


def test_nbgraph_values_match_the_package_reader() -> None:
    """Cross-check against the package's own (pickle.load) reader, for two datasets."""
    from nas_bench_graph import Arch, light_read

    for dataset in ("cora", "proteins"):
        ours = read_nbgraph(dataset)
        theirs = light_read(dataset)
        assert sorted(int(h) for h in ours.hashes) == sorted(theirs)
        for i in range(0, len(ours), 97):
            arch = ours.archs[i]
            rec = theirs[Arch(list(arch.links), list(arch.ops)).valid_hash()]
            assert ours.values("perf")[i] == rec["perf"]
            assert ours.values("valid_perf")[i] == rec["valid_perf"]
            assert ours.values("latency")[i] == rec["latency"]
            assert ours.values("params")[i] == float(rec["para"])


def test_nbgraph_query_by_any_equivalent_architecture() -> None:
    cora = read_nbgraph("cora")
    space = get_space("nbgraph")
    # The README's example, written in two layer orders (its second spelling has a typo:
    # layer 4 must read layer 3, the gin, for the two to be the same network).
    a = space.parse("0,1,2,1|gcn,gin,fc,cheb")
    b = space.parse("0,1,1,3|gcn,cheb,gin,fc")
    assert cora.query(a, "perf") == cora.query(b, "perf") == pytest.approx(0.8046666666666668)
    # a skip layer is the identity: where it sits in a chain does not matter
    c = space.parse("0,1,2,3|skip,gcn,gin,fc")
    d = space.parse("0,1,2,3|gcn,gin,fc,skip")
    assert cora.query(c, "perf") == cora.query(d, "perf")


def test_nbgraph_proteins_uses_its_reduced_op_list() -> None:
    proteins = read_nbgraph("proteins")
    space = proteins.space
    assert isinstance(space, NBGraphSpace) and space.name == "nbgraph"
    assert space.gnn_ops == ("gcn", "sage", "arma", "fc", "skip")
    assert {o for a in proteins.archs for o in a.ops} == set(space.gnn_ops)
    assert len(space.enumerate()) == 2021
    full = get_space("nbgraph")
    with pytest.raises(ArchrankError, match="unknown op 'gat'"):
        proteins.query(full.parse("0,1,2,3|gat,gat,gat,gat"), "perf")
    with pytest.raises(ArchrankError, match="unknown op 'gat'"):
        space.parse("0,1,2,3|gat,gat,gat,gat")
    # the same space object is used for every read (tables and searches agree on it)
    assert read_nbgraph("Proteins").space is space


def test_nbgraph_unknown_dataset_lists_the_nine() -> None:
    with pytest.raises(ArchrankError) as err:
        read_nbgraph("imagenet")
    msg = str(err.value)
    assert "imagenet" in msg and "\n" not in msg
    assert all(d in msg for d in DATASETS)


def test_nbgraph_through_load_benchmark() -> None:
    bench = load_benchmark("nbgraph:citeseer", "nbgraph")
    assert len(bench) == 26206
    with pytest.raises(ArchrankError, match="nbgraph"):
        load_benchmark("nbgraph:citeseer", "nb201")


def test_nbgraph_bad_bench_contents(tmp_path: Path) -> None:
    from archrank.tables.nbgraph import table_from_dict

    space = get_space("nbgraph")
    good = {"valid_perf": 0.5, "perf": 0.5, "latency": 0.1, "para": np.float64(0.2)}
    with pytest.raises(BenchmarkFormatError, match="key 3210 is not an architecture key"):
        table_from_dict({3210: good}, space, source="x", path=tmp_path / "x.bench")
    with pytest.raises(BenchmarkFormatError, match="missing field 'para'"):
        table_from_dict({0: {k: v for k, v in good.items() if k != "para"}}, space,
                        source="x", path="x.bench")
    with pytest.raises(BenchmarkFormatError, match="expected a non-empty dict"):
        table_from_dict([1, 2], space, source="x", path="x.bench")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Allow-list unpickler
# --------------------------------------------------------------------------------------------


class _Evil:
    """Pickles as a call to os.mkdir: a blind pickle.load would create the folder."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(self.target),))


def test_safe_unpickler_refuses_code_and_runs_nothing(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    data = pickle.dumps({"meta_archs": [], "x": _Evil(target)})
    with pytest.raises(BenchmarkFormatError, match=r"refusing to unpickle (posix|nt)\.mkdir"):
        safe_loads(data, "evil.pkl")
    assert not target.exists()
    file = tmp_path / "evil.pickle.pbz2"
    file.write_bytes(bz2.compress(data))
    with pytest.raises(BenchmarkFormatError, match=r"evil\.pickle\.pbz2: refusing"):
        read_nats(file)
    assert not target.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_safe_unpickler_reads_plain_data(protocol: int) -> None:
    from collections import defaultdict

    value = {
        "od": OrderedDict(a=1), "dd": defaultdict(list, {1: [2]}), "set": {1, 2},
        "tuple_key": {("cifar10", 777): 1.5}, "np": np.float64(0.25), "i": np.int64(3),
        "arr": np.arange(3.0), "bytes": b"xy", "none": None,
    }
    back = safe_loads(pickle.dumps(value, protocol=protocol), "x")
    assert back["od"] == value["od"] and back["dd"][1] == [2] and back["set"] == {1, 2}
    assert back["tuple_key"] == {("cifar10", 777): 1.5} and back["np"] == 0.25
    assert back["arr"].tolist() == [0.0, 1.0, 2.0] and back["bytes"] == b"xy"


def test_numpy1_module_names_are_accepted() -> None:
    """Pickles from numpy 1 name numpy.core.multiarray (numpy 2: numpy._core)."""
    data = pickle.dumps(np.float64(1.5), protocol=2)
    data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in data
    assert safe_loads(data, "x") == 1.5


def test_truncated_and_garbage_pickles(tmp_path: Path) -> None:
    data = bz2.compress(pickle.dumps({"meta_archs": ["a"] * 1000}, protocol=4))
    cut = tmp_path / "cut.pickle.pbz2"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BenchmarkFormatError, match=r"cut\.pickle\.pbz2: .*(truncated|corrupt)"):
        load_pickle_file(cut)
    junk = tmp_path / "junk.pickle.pbz2"
    junk.write_bytes(b"BZh9" + b"\x00" * 50)
    with pytest.raises(BenchmarkFormatError, match=r"junk\.pickle\.pbz2"):
        load_pickle_file(junk)
    text = tmp_path / "text.pickle.pbz2"
    text.write_text("hello, not a pickle\n")
    with pytest.raises(BenchmarkFormatError, match=r"text\.pickle\.pbz2: not a readable pickle"):
        load_pickle_file(text)


# --------------------------------------------------------------------------------------------
# NATS-Bench topology files and NAS-Bench-201 .pth: built here in the official structure
# --------------------------------------------------------------------------------------------

ARCHS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|"
    "+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
]
DATASET_SETS = {
    "cifar10-valid": ("x-valid", "ori-test"),
    "cifar10": ("ori-test",),
    "cifar100": ("x-valid", "x-test", "ori-test"),
    "ImageNet16-120": ("x-valid", "x-test", "ori-test"),
}


def _acc(index: int, dataset: str, setname: str, seed: int, epochs: int) -> float:
    """A made-up but distinct accuracy for every (arch, dataset, set, seed, schedule)."""
    base = {"cifar10-valid": 80, "cifar10": 85, "cifar100": 60, "ImageNet16-120": 30}[dataset]
    return base + index + 0.1 * len(setname) + 0.01 * (seed % 7) + (5 if epochs == 200 else 0)


def _results_count(index: int, dataset: str, seed: int, epochs: int) -> dict:
    """A ResultsCount state dict as NATS-Bench / NAS-Bench-201 store it."""
    sets = DATASET_SETS[dataset]
    eval_acc = {f"{s}@{e}": np.float64(_acc(index, dataset, s, seed, epochs) - (epochs - 1 - e))
                for s in sets for e in range(epochs)}
    return {
        "name": dataset, "net_state_dict": None,
        "train_acc1es": {e: 50.0 + e for e in range(epochs)}, "train_acc5es": None,
        "train_losses": {e: 1.0 / (e + 1) for e in range(epochs)},
        "train_times": OrderedDict((e, 10.0 + index) for e in range(epochs)),
        "arch_config": {"name": "infer.tiny", "C": 16, "N": 5, "arch_str": ARCHS[index],
                        "num_classes": 10},
        "params": np.float64(0.5 + index), "flop": 80.0 + index, "seed": seed,
        "epochs": epochs, "latency": [0.01 + 0.001 * index],
        "eval_names": list(sets), "eval_acc1es": eval_acc,
        "eval_times": {k: 1.0 for k in eval_acc}, "eval_losses": {k: 0.5 for k in eval_acc},
    }


def _arch_results(index: int, epochs: int, datasets: tuple[str, ...] | None = None) -> dict:
    """An ArchResults state dict (two seeds on cifar10-valid, one elsewhere)."""
    datasets = datasets or tuple(DATASET_SETS)
    seeds = {d: [777, 888] if d == "cifar10-valid" else [777] for d in datasets}
    return {
        "arch_index": index, "arch_str": ARCHS[index],
        "all_results": {(d, s): _results_count(index, d, s, epochs)
                        for d in datasets for s in seeds[d]},
        "dataset_seed": seeds, "clear_net_done": True,
    }


def _expected(index: int, dataset: str, setname: str, epochs: int) -> float:
    seeds = [777, 888] if dataset == "cifar10-valid" else [777]
    return float(np.mean([_acc(index, dataset, setname, s, epochs) for s in seeds]))


def _write_pbz2(path: Path, obj: object) -> None:
    with bz2.BZ2File(path, "wb") as fh:  # NATS-Bench's pickle_save: protocol 4, bz2
        pickle.dump(obj, fh, protocol=4)


def _nats_dict() -> dict:
    return {
        "meta_archs": list(ARCHS),
        "arch2infos": {i: {"12": _arch_results(i, 12), "200": _arch_results(i, 200)}
                       for i in (0, 1)},  # arch 2 not evaluated
        "evaluated_indexes": {0, 1},
    }


def _check_nats_like(bench, epochs: int) -> None:  # type: ignore[no-untyped-def]
    space = get_space("nb201")
    assert len(bench) == 2 and bench.space is space
    assert [space.format(a) for a in bench.archs] == ARCHS[:2]
    assert bench.text("index") == ["0", "1"]  # an id, not a metric
    for i in (0, 1):
        arch = space.parse(ARCHS[i])
        assert bench.query(arch, "cifar10_valid") == pytest.approx(
            _expected(i, "cifar10-valid", "x-valid", epochs))
        assert bench.query(arch, "cifar10_test") == pytest.approx(
            _expected(i, "cifar10", "ori-test", epochs))
        assert bench.query(arch, "cifar100_test") == pytest.approx(
            _expected(i, "cifar100", "x-test", epochs))
        assert bench.query(arch, "ImageNet16-120_valid") == pytest.approx(
            _expected(i, "ImageNet16-120", "x-valid", epochs))
        assert bench.query(arch, "cifar10_valid_train_time") == pytest.approx(epochs * (10 + i))
        assert bench.cost(arch) == pytest.approx(epochs * (10 + i))
        assert bench.query(arch, "params") == pytest.approx(0.5 + i)
        assert bench.query(arch, "flops") == pytest.approx(80 + i)
        assert bench.query(arch, "latency") == pytest.approx(0.01 + 0.001 * i)
    assert bench.cost_column == "cifar10_valid_train_time"
    with pytest.raises(NotInBenchmark):
        bench.query(space.parse(ARCHS[2]), "cifar10_valid")


def test_nats_single_file(tmp_path: Path) -> None:
    file = tmp_path / "NATS-tss-v1_0-3ffb9.pickle.pbz2"
    _write_pbz2(file, _nats_dict())
    _check_nats_like(read_nats(file), 200)
    _check_nats_like(read_nats(file, hp="12"), 12)
    _check_nats_like(load_benchmark(file, "nb201"), 200)
    with pytest.raises(BenchmarkFormatError, match="available: 12, 200"):
        read_nats(file, hp="90")


def test_nats_simple_directory(tmp_path: Path) -> None:
    folder = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    folder.mkdir()
    data = _nats_dict()
    _write_pbz2(folder / "meta.pickle.pbz2", {"meta_archs": data["meta_archs"]})
    for i, hp2 in data["arch2infos"].items():
        _write_pbz2(folder / f"{i:06d}.pickle.pbz2", hp2)
    _check_nats_like(read_nats(folder), 200)
    _check_nats_like(load_benchmark(str(folder), "nb201"), 200)


def test_nats_file_with_weights_reads_them_as_none(tmp_path: Path) -> None:
    data = _nats_dict()
    run = data["arch2infos"][0]["200"]["all_results"][("cifar10", 777)]
    run["net_state_dict"] = OrderedDict(w=torch.ones(3))  # pickled as torch tensors
    file = tmp_path / "weights.pickle.pbz2"
    _write_pbz2(file, data)
    _check_nats_like(read_nats(file), 200)
    back = load_pickle_file(file, unpickler=TensorSkippingUnpickler)
    assert back["arch2infos"][0]["200"]["all_results"][("cifar10", 777)]["net_state_dict"] == {
        "w": None}
    with pytest.raises(BenchmarkFormatError, match="refusing to unpickle torch"):
        load_pickle_file(file)  # the plain-data unpickler does not even stub tensors


def test_nats_partial_records_give_missing_values(tmp_path: Path) -> None:
    data = _nats_dict()
    data["arch2infos"][1]["200"] = _arch_results(1, 200, ("cifar10-valid",))
    file = tmp_path / "partial.pickle.pbz2"
    _write_pbz2(file, data)
    bench = read_nats(file)
    assert not math.isnan(bench.values("cifar100_test")[0])
    assert math.isnan(bench.values("cifar100_test")[1])


def test_nats_seeds_that_cannot_be_averaged_leave_the_value_missing(tmp_path: Path) -> None:
    """A seed without the final accuracy another seed has, or seeds of different
    schedules, would make the mean some seeds' value alone: missing, with a warning."""
    data = _nats_dict()
    runs = data["arch2infos"][0]["200"]["all_results"]
    runs["cifar10-valid", 777]["eval_acc1es"]["x-valid@199"] = float("nan")
    runs = data["arch2infos"][1]["200"]["all_results"]
    runs["cifar10-valid", 888] = _results_count(1, "cifar10-valid", 888, 150)
    file = tmp_path / "uneven.pickle.pbz2"
    _write_pbz2(file, data)
    with pytest.warns(UserWarning, match=r"2 accuracy value\(s\) left missing .* arch2infos"
                      r"\[0\] \(cifar10-valid, x-valid\): seed 777 has no final value"):
        bench = read_nats(file)
    valid = bench.values("cifar10_valid")
    assert math.isnan(valid[0]) and math.isnan(valid[1])
    test = _expected(0, "cifar10", "ori-test", 200)
    assert bench.values("cifar10_test")[0] == pytest.approx(test)


def test_nats_format_errors_name_file_and_field(tmp_path: Path) -> None:
    def write(name: str, obj: object) -> Path:
        file = tmp_path / name
        _write_pbz2(file, obj)
        return file

    with pytest.raises(BenchmarkFormatError, match=r"a\.pickle\.pbz2: missing key 'arch2infos'"):
        read_nats(write("a.pickle.pbz2", {"meta_archs": ARCHS}))
    with pytest.raises(BenchmarkFormatError, match="expected a dict with 'meta_archs'"):
        read_nats(write("b.pickle.pbz2", [1, 2, 3]))
    bad = _nats_dict()
    bad["arch2infos"][0]["200"]["all_results"][("cifar10", 777)]["epochs"] = "two hundred"
    with pytest.raises(BenchmarkFormatError, match=r"arch2infos\[0\].*'epochs'"):
        read_nats(write("c.pickle.pbz2", bad))
    bad = _nats_dict()
    bad["meta_archs"][1] = "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    with pytest.raises(BenchmarkFormatError, match="differs from"):
        read_nats(write("d.pickle.pbz2", bad))
    bad["arch2infos"][1]["200"]["arch_str"] = bad["meta_archs"][1]
    with pytest.raises(BenchmarkFormatError, match="unknown op 'conv'"):
        read_nats(write("e.pickle.pbz2", bad))
    empty = tmp_path / "empty-simple"
    empty.mkdir()
    with pytest.raises(BenchmarkFormatError, match=r"no meta\.pickle\.pbz2"):
        read_nats(empty)


def _nb201_dict() -> dict:
    return {
        "meta_archs": list(ARCHS),
        "arch2infos": {i: {"less": _arch_results(i, 12, ("cifar10-valid",)),
                           "full": _arch_results(i, 200)} for i in (0, 1)},
        "evaluated_indexes": [0, 1],
    }


@pytest.mark.parametrize("zipfile_format", [True, False], ids=["zip", "legacy"])
def test_nb201_pth(tmp_path: Path, zipfile_format: bool) -> None:
    file = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    torch.save(_nb201_dict(), file, _use_new_zipfile_serialization=zipfile_format)
    _check_nats_like(read_nb201_pth(file), 200)
    _check_nats_like(load_benchmark(file, "nb201"), 200)
    less = read_nb201_pth(file, hp="12")
    arch = get_space("nb201").parse(ARCHS[0])
    assert less.query(arch, "cifar10_valid") == pytest.approx(
        _expected(0, "cifar10-valid", "x-valid", 12))
    assert "cifar100_test" not in less.metrics  # v1_0's `less` only covers cifar10-valid


def test_nb201_pth_with_tensors_and_refused_objects(tmp_path: Path) -> None:
    data = _nb201_dict()
    data["arch2infos"][0]["full"]["all_results"][("cifar10", 777)]["net_state_dict"] = {
        "w": torch.zeros(2)}
    for legacy in (False, True):
        ok = tmp_path / f"weights-{legacy}.pth"
        torch.save(data, ok, _use_new_zipfile_serialization=not legacy)
        assert len(read_nb201_pth(ok)) == 2
        loaded = load_pth(ok)  # the weights are not read: they come back as None
        run = loaded["arch2infos"][0]["full"]["all_results"][("cifar10", 777)]
        assert run["net_state_dict"] == {"w": None}
    target = tmp_path / "pwned"
    data["extra"] = _Evil(target)
    evil = tmp_path / "evil.pth"
    torch.save(data, evil)
    with pytest.raises(BenchmarkFormatError, match=r"evil\.pth: refusing") as err:
        read_nb201_pth(evil)
    assert "\n" not in str(err.value)
    assert not target.exists()


def test_nb201_pth_corrupt_or_wrong(tmp_path: Path) -> None:
    file = tmp_path / "x.pth"
    torch.save(_nb201_dict(), file)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(file.read_bytes()[:300])
    with pytest.raises(BenchmarkFormatError,
                       match=r"cut\.pth: a damaged or truncated torch\.save \(zip\)") as err:
        read_nb201_pth(cut)
    assert "\n" not in str(err.value)
    legacy = tmp_path / "legacy.pth"
    torch.save(_nb201_dict(), legacy, _use_new_zipfile_serialization=False)
    cut.write_bytes(legacy.read_bytes()[:300])
    with pytest.raises(BenchmarkFormatError, match=r"cut\.pth: not a readable pickle .*truncated"):
        read_nb201_pth(cut)
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, other)
    with pytest.raises(BenchmarkFormatError, match="missing key 'meta_archs'"):
        read_nb201_pth(other)
    with pytest.raises(BenchmarkFormatError, match="no such file"):
        read_nb201_pth(tmp_path / "absent.pth")
    not_torch = tmp_path / "archive.pth"
    with zipfile.ZipFile(not_torch, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(BenchmarkFormatError, match=r"no data\.pkl inside"):
        read_nb201_pth(not_torch)
    text = tmp_path / "text.pth"
    text.write_text("not a torch file")
    with pytest.raises(BenchmarkFormatError, match=r"not a torch\.save file"):
        read_nb201_pth(text)
