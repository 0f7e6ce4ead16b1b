"""``archrank bench oneshot``: supernet scores and their fit against a multi-seed truth, the
truth's recipe and ceiling, resuming from the work dir, bad input, and its report figure."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from archrank.bench.oneshot import OneshotBench, bench_oneshot
from archrank.errors import ArchrankError, Interrupted
from archrank.metrics import kendall_tau, precision_at_k
from archrank.truth import ceiling_kendall_tau, read_truth
from test_oneshot_proxy import tiny_npz

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = ["--seeds", "2", "--epochs", "1", "--samples", "12", "--set", "epochs=20"]


@pytest.fixture(scope="module")
def truth(tmp_path_factory) -> Path:
    """A 10-cell truth of the tiny 1-D task, 2 training seeds, width 4 (its journal beside).

    One-epoch trainings of the tiny task barely agree, so the second seed's accuracies are
    replaced by the first's plus a little noise: a truth with a positive ceiling."""
    from archrank.cli import run

    root = tmp_path_factory.mktemp("truth")
    npz = tiny_npz(root, with_test=True)
    out = root / "truth.csv"
    status = run(["bench", "table", "--dataset", str(npz), "--n", "10", "--train-seeds", "0,1",
                  "--epochs", "1", "--width", "4", "--depth", "1", "--out", str(out), "--json",
                  str(root / "truth.json")])
    assert status == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(0)
    s0 = np.array([float(r["val_acc_s0"]) for r in rows])
    s1 = s0 + rng.normal(0, 0.5 * s0.std() + 0.1, size=len(s0))
    for r, a, b in zip(rows, s0, s1, strict=True):
        r.update(val_acc_s1=str(float(b)), val_acc=str(float(a + b) / 2),
                 val_acc_std=str(float(abs(a - b)) / 2))
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def test_ceiling_model_reproduces_the_issue_figure():
    # issue 11: seed-to-seed tau 0.29 of single trainings; a perfect predictor reaches ~0.46
    assert ceiling_kendall_tau(0.29, 1) == pytest.approx(0.46, abs=0.01)
    assert ceiling_kendall_tau(1.0, 1) == pytest.approx(1.0)
    # more seeds in the mean: a higher ceiling, still below 1
    assert ceiling_kendall_tau(0.5, 1) < ceiling_kendall_tau(0.5, 3) < 1.0


def test_read_truth_takes_the_recipe_from_journal_or_json(truth, tmp_path):
    t = read_truth(truth, "nb201")
    assert t.seeds == [0, 1] and len(t.archs) == 10 and t.setting["width"] == 4
    assert "journal" in t.setting_source
    np.testing.assert_allclose(t.val_acc, t.per_seed.mean(axis=1), atol=1e-5)
    # the JSON report of bench table is the other source (here: a copy without the journal)
    copy = tmp_path / "t.csv"
    copy.write_text(truth.read_text())
    (tmp_path / "t.json").write_text(truth.with_suffix(".json").read_text())
    assert read_truth(copy, "nb201").setting == {k: v for k, v in t.setting.items()
                                                 if k != "seeds"} | {"space": "nb201",
                                                                     "seeds": [0, 1]}


@pytest.mark.slow
def test_bench_oneshot_command_json_and_figure(cli, truth, tmp_path):
    npz = truth.parent / "tiny.npz"
    args = ["bench", "oneshot", "--truth", str(truth), "--dataset", str(npz), *FAST,
            "--work-dir", str(tmp_path / "w")]
    code, out, err = cli(*args, "--score", "acc", "--json", str(tmp_path / "o.json"), "--plot",
                         str(tmp_path / "plots"))
    assert code == 0, err
    assert "Kendall tau" in out and "truth ceiling" in out
    r = json.loads((tmp_path / "o.json").read_text())
    assert r["kind"] == "bench-oneshot" and r["schema"] == 1 and r["seeds"] == [0, 1]
    assert r["interrupted"] is False and r["settings"]["width"] == 4
    t = read_truth(truth, "nb201")
    y = np.asarray(r["cells"]["truth_val_acc"])
    assert r["cells"]["arch"] == t.archs and len(r["per_seed"]) == 2
    ceiling = r["truth_ceiling_kendall_tau"]
    assert ceiling == pytest.approx(t.ceiling()["kendall_tau"]) and 0 < ceiling < 1
    cap = r["settings"]["flops_cap"]
    flops = np.asarray(r["cells"]["flops"])
    np.testing.assert_allclose(flops, t.flops)  # the supernet counts what the truth trained
    for run in r["per_seed"]:
        c = run["cells"]
        raw, fitted = np.asarray(c["supernet_val_acc"]), np.asarray(c["fitted"])
        assert run["supernet_kendall_tau"] == pytest.approx(kendall_tau(y, raw))
        assert run["fitted_kendall_tau"] == pytest.approx(kendall_tau(y, fitted))
        assert run["fitted_precision_at_5pct"] == precision_at_k(y, fitted, 0.05)
        assert run["supernet_kendall_tau_by_score"]["val_loss"] == pytest.approx(
            kendall_tau(y, -np.asarray(c["supernet_val_loss"])))
        # the picks: the best-scored truth cell, within the cap when capped
        free, capped = run["fitted_top1"]["none"], run["fitted_top1"]["flops_p25"]
        assert free["cell"] == t.archs[int(np.argmax(fitted))]
        if capped is not None:
            i = t.archs.index(capped["cell"])
            ok = flops <= cap
            assert ok[i] and fitted[i] == fitted[ok].max()
            assert capped["candidates"] == int(ok.sum())
            below = (y[ok] < y[i]).sum() + 0.5 * (y[ok] == y[i]).sum()
            assert capped["truth_percentile"] == pytest.approx(100 * below / ok.sum())
        pick = run["space_pick"]
        assert 0 <= pick["truth_percentile"] <= 100 and 0 <= pick["val_acc"] <= 100
        blended = run["space_pick_size_prior"]  # the same table's best with the FLOPs rank
        assert 0 <= blended["truth_percentile"] <= 100 and blended["flops"] > 0
        assert blended["predicted"] <= pick["predicted"]
        assert set(run["seconds"]) >= {"train", "score_truth", "score_samples", "fit",
                                       "predict", "standalone", "pipeline"}
        assert run["seconds"]["train"] > 0 and run["seconds"]["score_samples"] > 0
    taus = [run["fitted_kendall_tau"] for run in r["per_seed"]]
    assert r["fitted_kendall_tau"]["mean"] == pytest.approx(np.mean(taus))
    assert r["fitted_fraction_of_ceiling"]["mean"] == pytest.approx(np.mean(taus) / ceiling)
    for key in ("top1_truth_percentile", "supernet_top1_truth_percentile",
                "supernet_size_prior_top1_truth_percentile",
                "fitted_size_prior_top1_truth_percentile"):
        assert set(r[key]) == {"none", "flops_p25"}
    assert r["settings"]["size_prior"] == 0.5 and "fitted + FLOPs rank (0.5)" in out
    # the no-training baselines: the truth ranked by the cells' own FLOPs / parameters
    base = r["cost_baselines"]
    assert base["flops"]["kendall_tau"] == pytest.approx(kendall_tau(y, flops))
    import csv

    with open(truth) as f:
        params = {row["arch"]: float(row["params"]) for row in csv.DictReader(f)}
    assert base["params"]["kendall_tau"] == pytest.approx(
        kendall_tau(y, np.array([params[a] for a in t.archs])))
    assert base["flops"]["top1"]["none"]["cell"] == t.archs[int(np.argmax(flops))]
    assert base["flops"]["fraction_of_ceiling"] == pytest.approx(
        base["flops"]["kendall_tau"] / ceiling)
    # the space's 25th FLOPs percentile at width 4: recount it independently
    from archrank.nn.counting import nb201_costs
    from archrank.spaces import get_space

    space = get_space("nb201")
    cells = [[*a.ops] for a in space.enumerate()]
    data = np.load(npz)
    every = nb201_costs(cells, channels=4, cells_per_stage=1, num_classes=4, in_channels=1,
                        input_size=data["x_train"].shape[2:])["flops"]
    assert cap == pytest.approx(np.percentile(every, 25))
    # each ranking blended with the rank of the FLOPs of the cells' live ops, as oneshot
    # select --size-prior orders cells
    from archrank.metrics import rankdata
    from archrank.oneshot.hardware import live_size

    whole = space.enumerate()
    live = dict(zip(map(space.format, whole), live_size(space, whole, every), strict=True))
    size = np.array([live[a] for a in t.archs])
    assert (size <= flops).all()
    assert r["cost_baselines"]["live_flops"]["kendall_tau"] == pytest.approx(
        kendall_tau(y, size))
    for run in r["per_seed"]:
        for key in ("supernet", "fitted"):
            sc = np.asarray(run["cells"]["supernet_val_acc" if key == "supernet" else "fitted"])
            blend = (rankdata(sc) + rankdata(size)) / (2 * len(y))
            assert run[f"{key}_size_prior_kendall_tau"] == pytest.approx(kendall_tau(y, blend))
            best = np.flatnonzero(blend == blend.max())
            assert run[f"{key}_size_prior_top1"]["none"]["truth_percentile"] == pytest.approx(
                np.mean([100 * ((y < y[j]).sum() + 0.5 * (y == y[j]).sum()) / len(y)
                         for j in best]))
    # the figure: --plot wrote it, and archrank report reads the JSON
    assert (tmp_path / "plots" / "oneshot_bench0_truth_scatter.svg").is_file()
    code, _, err = cli("report", str(tmp_path / "o.json"), "--out", str(tmp_path / "r.html"))
    assert code == 0, err
    html = (tmp_path / "r.html").read_text()
    assert ("Weight-sharing benchmark" in html and "fitted table&#x27;s best cell" in html) \
        or "fitted table's best cell" in html

    # a rerun resumes from the work dir: nothing is trained or scored again, same figures
    journals = {p: p.read_text() for p in (tmp_path / "w").rglob("*.jsonl")}
    code, _, err = cli(*args, "--score", "acc", "--json", str(tmp_path / "o2.json"))
    assert code == 0, err
    again = json.loads((tmp_path / "o2.json").read_text())
    assert {p: p.read_text() for p in (tmp_path / "w").rglob("*.jsonl")} == journals
    for key in ("supernet_kendall_tau", "fitted_kendall_tau", "top1_truth_percentile"):
        assert again[key] == r[key]
    assert again["per_seed"][0]["seconds"]["train"] == r["per_seed"][0]["seconds"]["train"]

    # loss as the score and no BN recalibration: the same supernets, new scores
    code, _, err = cli(*args, "--score", "loss", "--no-bn-recal", "--no-standalone", "--json",
                       str(tmp_path / "o3.json"))
    assert code == 0, err
    loss = json.loads((tmp_path / "o3.json").read_text())
    assert loss["settings"]["score"] == "val_loss" and not loss["settings"]["bn_recalibrate"]
    for run in loss["per_seed"]:
        assert run["supernet_kendall_tau"] == run["supernet_kendall_tau_by_score"]["val_loss"]
        assert "truth_percentile" not in run["space_pick"]
        assert "truth_percentile" not in run["space_pick_size_prior"]
    assert len(list((tmp_path / "w").rglob("supernet-*.pt"))) == 2
    assert len(list((tmp_path / "w").rglob("scores-*nobn*.jsonl"))) == 2
    assert loss["per_seed"][0]["cells"]["supernet_val_acc"] != \
        r["per_seed"][0]["cells"]["supernet_val_acc"]


@pytest.mark.slow
def test_an_interrupted_bench_resumes_to_the_same_result(truth, tmp_path):
    npz = truth.parent / "tiny.npz"
    base = dict(truth=truth, dataset=str(npz), seeds=[0], epochs=1, samples=60,
                predictor_params={"epochs": 20}, standalone=False)
    straight = bench_oneshot(OneshotBench(**base, work_dir=tmp_path / "a"))

    def stop_while_scoring(stage: str, done: int, total: int) -> None:
        if "scoring" in stage and done >= 50:  # scores are journaled per chunk of 50
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="0 of 1 seeds finished"):
        bench_oneshot(OneshotBench(**base, work_dir=tmp_path / "b"),
                      progress=stop_while_scoring)
    [journal] = (tmp_path / "b").rglob("scores-*.jsonl")
    kept = sum(len(json.loads(line)["codes"]) for line in journal.read_text().splitlines()[1:])
    assert 10 + 40 <= kept < 10 + 60  # the truth's cells and part of the sample
    with open(journal, "a") as fh:  # a kill while appending leaves a torn line
        fh.write('{"codes": ["0123')
    scored = []
    from archrank.oneshot.scoring import SubnetScorer

    original = SubnetScorer.score_codes

    def spy(self, codes):
        scored.append(len(codes))
        return original(self, codes)

    SubnetScorer.score_codes = spy  # type: ignore[method-assign]
    try:
        resumed = bench_oneshot(OneshotBench(**base, work_dir=tmp_path / "b"))
    finally:
        SubnetScorer.score_codes = original  # type: ignore[method-assign]
    assert 0 < sum(scored) <= 70 - kept  # only what the journal did not hold
    for key in ("supernet_kendall_tau", "fitted_kendall_tau", "top1_truth_percentile",
                "supernet_top1_truth_percentile"):
        assert resumed[key] == straight[key]
    assert resumed["per_seed"][0]["cells"] == straight["per_seed"][0]["cells"]


def _write(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


NB101_CELLS = [  # three nb101 cells as their tables write them (sampling them would enumerate)
    "0101000001100000001010000100000001000000010000000|input,maxpool3x3,conv1x1-bn-relu,"
    "conv3x3-bn-relu,conv1x1-bn-relu,conv3x3-bn-relu,output",
    "0101100001100000000010000010000001000000010000000|input,conv1x1-bn-relu,conv3x3-bn-relu,"
    "maxpool3x3,maxpool3x3,conv3x3-bn-relu,output",
    "0110000000111000000100000100000001000000010000000|input,maxpool3x3,conv3x3-bn-relu,"
    "conv1x1-bn-relu,conv1x1-bn-relu,conv3x3-bn-relu,output",
]


def test_bad_truths_are_one_line_errors(cli, truth, tmp_path):
    npz = truth.parent / "tiny.npz"
    t = read_truth(truth, "nb201")

    def run(*args: str) -> str:
        code, _, err = cli("bench", "oneshot", "--dataset", str(npz), "--work-dir",
                           str(tmp_path / "w"), *FAST, *args)
        assert code == 2 and err.strip().count("\n") == 0, err
        return err

    # a truth of another space (nb101 cells)
    bad = _write(tmp_path / "nb101.csv", ["arch", "val_acc", "val_acc_s0", "val_acc_s1"],
                 [[a, 90, 89, 91] for a in NB101_CELLS])
    assert "a cell of space nb101, not nb201" in run("--truth", str(bad))
    # its recipe says another space
    rec = json.loads(truth.with_suffix(".json").read_text())
    (tmp_path / "r101.json").write_text(json.dumps({**rec, "space": "nb101"}))
    assert "r101.json is the recipe of a nb101 truth, not of nb201" in run(
        "--truth", str(truth), "--recipe", str(tmp_path / "r101.json"))
    # without the per-seed columns
    single = _write(tmp_path / "single.csv", ["arch", "val_acc"],
                    [[a, 90.0 + i] for i, a in enumerate(t.archs)])
    (tmp_path / "single.json").write_text(json.dumps(rec))
    assert "needs the columns val_acc and val_acc_s<seed>" in run("--truth", str(single))
    # without a recipe
    bare = _write(tmp_path / "bare.csv", ["arch", "val_acc", "val_acc_s0", "val_acc_s1"],
                  [[a, 90, 89, 91] for a in t.archs])
    assert "no recipe found" in run("--truth", str(bare))
    (tmp_path / "norecipe.json").write_text(json.dumps({"width": 4}))
    assert "no 'recipe'" in run("--truth", str(truth), "--recipe",
                                str(tmp_path / "norecipe.json"))
    # a setting that is not the truth's
    assert "--width 8 does not match the truth's setting (width 4" in run(
        "--truth", str(truth), "--width", "8")
    code, _, err = cli("bench", "oneshot", "--truth", str(truth), "--dataset", "digits", *FAST,
                       "--work-dir", str(tmp_path / "w"))
    assert code == 2 and "the truth was trained on" in err
    # bad options
    assert "--score nope: choose acc or loss" in run("--truth", str(truth), "--score", "nope")
    assert "needs a space with a supernet that can be enumerated" in run(
        "--truth", str(truth), "--space", "nb101")
    assert "--sampler nope: choose one of uniform, fair" in run("--truth", str(truth),
                                                               "--sampler", "nope")
    assert "--calib-batches must be at least 1, got 0" in run("--truth", str(truth),
                                                             "--calib-batches", "0")
    assert "--calib-batches only applies with BN recalibration" in run(
        "--truth", str(truth), "--no-bn-recal", "--calib-batches", "8")
    code, _, err = cli("bench", "oneshot-search", "--truth", str(truth), "--methods", " ,")
    assert code == 2 and "--methods is empty" in err


def test_fair_supernets_keep_files_of_their_own(truth, tmp_path):
    """--sampler fair trains, scores and fits under names of its own, so uniform and fair
    runs share a work dir; a checkpoint trained otherwise than its name says is refused."""
    npz = truth.parent / "tiny.npz"
    base = dict(truth=truth, dataset=str(npz), seeds=[0], epochs=1, samples=12,
                predictor_params={"epochs": 5}, standalone=False, work_dir=tmp_path / "w")
    report = bench_oneshot(OneshotBench(**base, sampler="fair"))
    assert report["settings"]["sampler"] == "fair"
    assert report["settings"]["supernet_recipe"]["epochs"] == 1
    names = sorted(p.name for p in (tmp_path / "w").rglob("*") if p.is_file())
    assert any(n == "supernet-seed0-e1-fair.pt" for n in names), names
    assert any(n.startswith("scores-seed0-e1-fair-") for n in names), names
    assert any(n.startswith("fit-seed0-e1-fair-") for n in names), names
    assert not any(n.startswith(("supernet-seed0-e1.", "scores-seed0-e1-bn")) for n in names)
    [fair] = (tmp_path / "w").rglob("supernet-seed0-e1-fair.pt")
    # a second bench on the same work dir and seed is refused while the first holds it
    from archrank.files import hold_lock

    held = hold_lock(fair, "a test")
    with pytest.raises(ArchrankError, match="seed 0's supernet is in use"):
        bench_oneshot(OneshotBench(**base, sampler="fair"))
    held.close()
    fair.rename(fair.with_name("supernet-seed0-e1.pt"))  # a fair supernet under the uniform name
    with pytest.raises(ArchrankError, match="trained with the fair sampler, not uniform"):
        bench_oneshot(OneshotBench(**base))


def test_bench_oneshot_json_with_a_missing_field_is_a_report_error(tmp_path):
    from archrank.report.kinds import read_input

    path = tmp_path / "x.json"
    path.write_text(json.dumps({"kind": "bench-oneshot", "schema": 1, "settings": {},
                                "truth_ceiling_kendall_tau": 0.5}))
    with pytest.raises(ArchrankError, match="'supernet_kendall_tau' is missing"):
        read_input(path)
    assert math.isfinite(ceiling_kendall_tau(0.7, 3))


def test_top1_of_tied_scores_is_the_group_not_the_first_row():
    """A cost score ties groups of cells: the pick's figures are those of the whole tied
    group, whatever the order of the truth's rows; a NaN score is never the best."""
    from archrank.bench.oneshot import _best_rows

    score = np.array([3.0, 1.0, 3.0, np.nan, 2.0])
    mask = np.ones(5, bool)
    assert _best_rows(score, mask).tolist() == [0, 2]
    assert _best_rows(score, np.array([0, 1, 0, 1, 1], bool)).tolist() == [4]
    assert _best_rows(np.full(3, np.nan), np.ones(3, bool)).tolist() == []


def test_one_seed_tables_show_means_without_a_spread():
    """A one-seed bench oneshot printed "0.343 ± 0.000": no spread was measured."""
    from rich.console import Console

    from archrank.bench.common import results_table

    stat = {"mean": 0.343, "std": 0.0}
    for seeds, want in ((1, "0.343"), (2, "0.343 ± 0.000")):
        console = Console(width=120, record=True)
        console.print(results_table("t", ["method", "tau"], [["raw", stat]], seeds=seeds))
        text = console.export_text()
        assert want in text and (seeds > 1 or "±" not in text)


def test_bench_oneshot_search_runs_its_searches_on_the_cpu(truth, tmp_path, monkeypatch):
    """bench oneshot-search, like bench oneshot, trains on the CPU whatever the library's
    default device (auto): its figures are CPU figures, and a work dir started on one device
    is never resumed on another."""
    import archrank.bench.oneshot_search as harness
    from archrank.executors import InlineExecutor

    seen = {}

    class Stop(Exception):
        pass

    def fake_search(method, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(harness, "search", fake_search)
    with pytest.raises(Stop):
        harness.bench_search(["spos-ea"], [0], truth=truth, space="nb201",
                             dataset=str(truth.parent / "tiny.npz"), epochs=1,
                             work_dir=tmp_path / "w", executor=InlineExecutor())
    assert seen["device"] == "cpu"
