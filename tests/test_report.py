"""``archrank report``, ``--plot`` and the cell drawings, on small real data (nb201.csv and
nb101_10k.csv runs, a predictor benchmark), plus bad inputs; the browser test is in
test_report_browser.py."""

from __future__ import annotations

import csv
import json
import sqlite3
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from archrank.errors import ArchrankError
from archrank.metrics import kendall_tau
from archrank.report import build_report, figures, write_plots
from archrank.report.cells import FAMILIES, GRAPHS, CellGraph, cell_svg, op_family
from archrank.report.kinds import read_input
from archrank.runs import RunStore, SearchConfig, build_oracle, build_strategy, run_search
from archrank.spaces import get_space
from archrank.spaces.edge_cell import EdgeCellSpace
from conftest import shared_file

SVG = "{http://www.w3.org/2000/svg}"


def make_run(config: SearchConfig, run_dir: Path) -> Path:
    with RunStore.create(run_dir, config.to_dict()) as store:
        run_search(build_strategy(config), build_oracle(config), store, budget=config.budget)
    return run_dir


@pytest.fixture(scope="module")
def nb201_runs(tmp_path_factory) -> list[Path]:
    csv = shared_file("nb201.csv")
    root = tmp_path_factory.mktemp("runs201")
    base = SearchConfig(space="nb201", bench=str(csv), metric="cifar10_test", budget=40,
                        strategy="random")
    return [make_run(replace(base, strategy=s, seed=seed), root / f"{s}-{seed}")
            for s in ("random", "rea") for seed in range(3)]


@pytest.fixture(scope="module")
def search_json(tmp_path_factory) -> Path:
    from archrank.bench.search import bench_search

    csv = shared_file("nb201.csv")
    base = SearchConfig(space="nb201", bench=str(csv), metric="cifar10_test", budget=60)
    path = tmp_path_factory.mktemp("search") / "search.json"
    path.write_text(json.dumps(bench_search(base, ["random", "rea", "ls"], 4)))
    return path


@pytest.fixture(scope="module")
def predictor_json(tmp_path_factory) -> Path:
    from archrank.bench.predictor import bench_predictors
    from archrank.predictors.neural import torch_threads

    csv = shared_file("nb201.csv")
    with torch_threads(1):
        result = bench_predictors("nb201", str(csv), "cifar10_test", ["rf", "xgb"], [30, 90],
                                  seeds=2)
    path = tmp_path_factory.mktemp("pred") / "pred.json"
    path.write_text(json.dumps(result.to_json()))
    return path


# -- what the bench commands write --------------------------------------------------------------
def test_search_json_keeps_every_seed_curve(search_json):
    data = json.loads(search_json.read_text())
    assert data["kind"] == "bench-search" and data["schema"] == 3
    assert data["seeds"] == [0, 1, 2, 3] and data["command"] == "bench search"
    assert data["strategies"]["ls"]["settings"]["strategy"] == "ls"  # what each searched with
    for entry in data["strategies"].values():
        runs = entry["runs"]
        assert [r["seed"] for r in runs] == [0, 1, 2, 3]
        assert [r["queries_to_optimum"] for r in runs] == entry["queries_to_optimum"]["per_seed"]
        mat = figures.pad_curves([r["curve"] for r in runs], 60)
        # the per-seed curves are what the stored mean curve was computed from
        np.testing.assert_allclose(mat.mean(axis=0), entry["curve"], atol=1e-5)
        for r in runs:
            assert np.all(np.diff(r["curve"]) >= 0) and r["curve"][-1] == r["best"]
            assert get_space("nb201").parse(r["best_arch"])


def test_predictor_json_has_scatter_samples(predictor_json, nb201_csv):
    from archrank.tables import load_benchmark

    data = json.loads(predictor_json.read_text())
    assert data["kind"] == "bench-predictor" and data["schema"] == 1 and data["seeds"] == [0, 1]
    assert data["interrupted"] is False and "load_average" in data["machine"]
    samples = data["samples"]
    assert {(s["predictor"], s["train_size"]) for s in samples} == {
        ("rf", 30), ("rf", 90), ("xgb", 30), ("xgb", 90)}
    table = set(np.round(load_benchmark(str(nb201_csv), get_space("nb201"))
                         .values("cifar10_test"), 6).tolist())
    by = {(s["predictor"], s["train_size"]): s for s in samples}
    for (name, size), s in by.items():
        assert s["seed"] == 0 and len(s["true"]) == len(s["predicted"]) == 500
        assert set(s["true"]) <= table  # real table values
        full = next(r["kendall_tau"] for r in data["runs"]
                    if r["predictor"] == name and r["train_size"] == size and r["seed"] == 0)
        assert abs(kendall_tau(s["true"], s["predicted"]) - full) < 0.12
    assert by["rf", 30]["true"] == by["xgb", 30]["true"]  # same test cells per (seed, size)


# -- figures --------------------------------------------------------------------------------------
def _lines(fig):
    return [line for ax in fig.axes for line in ax.get_lines()]


def test_curves_figure_is_median_and_quartiles_of_the_seeds(search_json):
    data = json.loads(search_json.read_text())
    series = {k: figures.pad_curves([r["curve"] for r in e["runs"]], 60)
              for k, e in data["strategies"].items()}
    fig = figures.curves_figure(series, ylabel="acc", title="t")
    lines = {line.get_label().split(" (")[0]: line for line in _lines(fig)}
    assert set(lines) == {"random", "rea", "ls"}
    for label, mat in series.items():
        np.testing.assert_allclose(lines[label].get_ydata(), np.median(mat, axis=0))
    bands = fig.axes[0].collections
    assert len(bands) == 3  # one quartile band per strategy (4 seeds each)
    assert figures.to_svg(fig).lstrip().startswith("<?xml")


def test_queries_figure_marks_seeds_that_missed():
    fig = figures.queries_figure({"a": [10, 20, None, None], "b": [5, 7, 9, 11]}, 100,
                                 title="q")
    ax = fig.axes[0]
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == ["2/4 found", "4/4 found"]
    crosses = [c for c in ax.collections if c.get_offsets().shape[0] == 2
               and np.all(c.get_offsets()[:, 0] > 100)]
    assert len(crosses) == 1


def test_quality_figure_plots_means_with_error_bars(predictor_json):
    data = json.loads(predictor_json.read_text())
    fig = figures.quality_figure(data["results"], (("kendall_tau", "tau"),
                                                   ("precision_at_5pct", "p")), title="q")
    assert len(fig.axes) == 2
    for ax, key in zip(fig.axes, ("kendall_tau", "precision_at_5pct"), strict=True):
        for name in ("rf", "xgb"):
            line = next(c for c in ax.containers if c.get_label() == name).lines[0]
            want = [r[key]["mean"] for r in data["results"] if r["predictor"] == name]
            np.testing.assert_allclose(np.asarray(line.get_ydata(), dtype=float), want)
            assert list(line.get_xdata()) == [30, 90]


def test_scatter_figure_reports_kendall_tau(predictor_json):
    s = json.loads(predictor_json.read_text())["samples"][0]
    fig = figures.scatter_figure(s["true"], s["predicted"], xlabel="x", ylabel="y", title="t")
    tau = kendall_tau(s["true"], s["predicted"])
    assert f"Kendall tau {tau:.3f} on 500 cells" in fig.axes[0].get_title()


def test_pareto_front_on_nb101_params(nb101_csv):
    from archrank.tables import load_benchmark

    bench = load_benchmark(str(nb101_csv), get_space("nb101"))
    cost, acc = bench.values("params"), bench.values("val_acc_108")
    front = figures.pareto_front(cost, acc)
    assert 3 <= len(front) < 200
    assert np.all(np.diff(cost[front]) >= 0) and np.all(np.diff(acc[front]) > 0)
    assert acc[front[-1]] == np.nanmax(acc)  # the most accurate cell is on the front
    ok = np.isfinite(cost) & np.isfinite(acc)
    for i in front:  # nothing dominates a front cell
        dominated = ok & (cost <= cost[i]) & (acc >= acc[i]) & ((cost < cost[i]) | (acc > acc[i]))
        assert not dominated.any()
    # and every other cell is dominated by a front cell
    rest = np.setdiff1d(np.flatnonzero(ok), front)[:500]
    for j in rest:
        assert np.any((cost[front] <= cost[j]) & (acc[front] >= acc[j]))
    fig = figures.pareto_figure(cost, acc, xlabel="params", ylabel="acc", title="t",
                                selected=front[-2:], log_x=True)
    assert "Pareto front" in " ".join(t.get_text() for t in fig.axes[0].get_legend().texts)


# -- cells ----------------------------------------------------------------------------------------
def _svg(space, arch):
    root = ET.fromstring(cell_svg(space, arch))
    nodes = root.findall(f".//{SVG}g[@class='node']")
    ops = root.findall(f".//{SVG}g[@class='op']")
    edges = [p for p in root.iter(f"{SVG}path") if p.get("marker-end")]
    return root, nodes, ops, edges


@pytest.mark.parametrize("name", ["nb201", "nb101", "nbgraph"])
def test_cell_drawing_of_every_space(name):
    space = get_space(name)
    sample = getattr(space, "sample_specs", space.sample)  # nb101: no cold enumeration
    for arch in sample(5, np.random.default_rng(1)):
        g = space.to_graphs([arch])
        n = int(g.mask[0].sum())
        root, nodes, ops, edges = _svg(space, arch)
        assert root.get("aria-label") == space.format(arch)
        assert len(nodes) == n and len(edges) == int(g.adj[0].sum())
        texts = [node.find(f"{SVG}text").text for node in nodes]
        assert texts[0] == "input" and texts[-1] == "output"
        if space.op_on == "edge":  # ops on edge labels, coloured by family
            want = sorted(space.edge_op_names[int(g.edge_ops[0, i, j])]
                          for i, j in zip(*np.nonzero(g.adj[0].numpy()), strict=True))
            assert sorted(o.find(f"{SVG}text").text for o in ops) == want
            for o in ops:
                assert o.get("data-family") == op_family(o.find(f"{SVG}text").text)[0]
        else:  # ops on nodes
            assert not ops
            assert texts == [space.node_op_names[int(k)] for k in g.ops[0, :n]]
        colour = {f: c for f, _, c in FAMILIES}
        for node in nodes:
            fam = node.get("data-family")
            assert fam == op_family(
                "intermediate" if node.find(f"{SVG}text").text.isdigit() else
                node.find(f"{SVG}text").text)[0]
            if fam in colour:
                assert node.find(f"{SVG}rect").get("fill") == colour[fam]


def test_darts_genotype_is_drawn_as_its_two_cells():
    space = get_space("darts")
    arch = space.sample(1, np.random.default_rng(4))[0]
    root = ET.fromstring(cell_svg(space, arch))
    titles = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "ttl"]
    assert titles == ["normal cell", "reduce cell"]
    ops = sorted(o.find(f"{SVG}text").text for o in root.findall(f".//{SVG}g[@class='op']"))
    assert ops == sorted(op for op, _ in arch.normal + arch.reduce)
    nodes = [n.find(f"{SVG}text").text for n in root.findall(f".//{SVG}g[@class='node']")]
    assert nodes.count("c_{k-2}") == nodes.count("c_{k}") == 2
    edges = [p for p in root.iter(f"{SVG}path") if p.get("marker-end")]
    assert len(edges) == 2 * (8 + 4)  # eight ops and four concatenated nodes per cell


def test_op_families():
    assert op_family("nor_conv_3x3")[0] == "convolution"
    assert op_family("conv1x1-bn-relu")[0] == "convolution"
    assert op_family("sep_conv_5x5")[0] == "convolution"
    assert op_family("maxpool3x3")[0] == op_family("avg_pool_3x3")[0] == "pooling"
    assert op_family("skip_connect")[0] == op_family("skip")[0] == "skip / identity"
    assert op_family("gat")[0] == op_family("cheb")[0] == "graph convolution"
    assert op_family("none")[0] == "none (cut)"
    assert op_family("fc")[0] == "linear"


def test_a_new_space_is_drawn_without_code_and_can_draw_two_cells():
    class Darts(EdgeCellSpace):  # a DARTS-like op set on a 5-node edge cell
        name = "toy-darts"

        def __init__(self) -> None:
            super().__init__(("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3",
                              "dil_conv_5x5"), 5)

    space = Darts()
    arch = space.sample(1, np.random.default_rng(0))[0]
    _, nodes, ops, edges = _svg(space, arch)
    assert len(nodes) == 5 and len(ops) == len(edges)
    assert {o.get("data-family") for o in ops} <= {"pooling", "skip / identity",
                                                   "convolution"}
    # a space whose architecture is two cells registers how to split it
    GRAPHS["toy-darts"] = lambda sp, a: [CellGraph(t, ["input", "1", "output"],
                                                   ["input", "node", "output"],
                                                   [(0, 1, "sep_conv_3x3"), (1, 2, None)])
                                         for t in ("normal", "reduce")]
    try:
        root = ET.fromstring(cell_svg(space, arch))
    finally:
        del GRAPHS["toy-darts"]
    titles = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "ttl"]
    assert titles == ["normal", "reduce"]


# -- the report ---------------------------------------------------------------------------------
def _figures_in(html: str) -> list[str]:
    import re

    return re.findall(r'<figure class="(plot|drawing)"', html)


def test_report_of_runs_search_and_predictors(cli, nb201_runs, search_json, predictor_json,
                                              tmp_path):
    out = tmp_path / "report.html"
    code, _, err = cli("report", *map(str, nb201_runs), str(search_json), str(predictor_json),
                       "--out", str(out), "--scatter", "xgb:90")
    assert code == 0, err
    html = out.read_text()
    # runs: 1 curve + 2 best cells; search: 2 plots + 3 cells; predictors: quality + scatter
    assert _figures_in(html).count("plot") == 5 and _figures_in(html).count("drawing") == 5
    assert "Search runs: nb201, cifar10_test" in html and "6 run directories" in html
    assert "random (3 seeds)" not in html  # legends are inside the images
    assert "predictors0_scatter_xgb_90" in html and "xgb trained on 90 cells" in html
    assert "http://" not in html.replace("http://www.w3.org", "")
    assert "https://" not in html and "<script" not in html
    best = max(json.loads(search_json.read_text())["strategies"]["rea"]["runs"],
               key=lambda r: r["best"])
    assert best["best_arch"] in html
    # the runs' top table is sorted and holds the best value any run found
    best_run = max(float(v) for d in nb201_runs for v in _values(d))
    assert f"<td>{best_run:.4g}</td>" in html


def _values(run_dir: Path) -> list[float]:
    with sqlite3.connect(run_dir / "run.sqlite") as conn:
        return [r[0] for r in conn.execute("SELECT objective FROM evaluations")]


def test_runs_with_recorded_cost_get_a_cost_figure(nb101_csv, tmp_path):
    base = SearchConfig(space="nb101", bench=str(nb101_csv), metric="val_acc_108",
                        budget=25, space_from_bench=True, strategy="random")
    runs = [make_run(replace(base, strategy="random", seed=s), tmp_path / f"r{s}")
            for s in range(2)]
    html = build_report(runs, tmp_path / "r.html").read_text()
    assert "runs0_best_vs_cost" in html and "nb101" in html
    assert _figures_in(html).count("drawing") == 1


def test_report_reads_a_run_still_being_written(nb201_csv, tmp_path):
    """The writer holds the run's lock and has an open transaction: the report reads the
    committed evaluations from a snapshot, and the writer carries on unharmed."""
    config = SearchConfig(space="nb201", bench=str(nb201_csv), metric="cifar10_test",
                          strategy="random", budget=10)
    store = RunStore.create(tmp_path / "live", config.to_dict())
    try:
        run_search(build_strategy(config), build_oracle(config), store, budget=10)
        store.add_ask(99, 10, 1, [(10, "pending-hash", "|none~0|+|none~0|none~1|+|none~0|"
                                  "none~1|none~2|")])
        store.conn.execute("BEGIN")
        store.conn.execute("UPDATE evaluations SET objective = 1000 WHERE seq = 0")
        run = read_input(tmp_path / "live")
        assert run.kind == "run" and len(run.data.values) == 10 and run.data.pending == 1
        assert 1000 not in run.data.values  # uncommitted: not seen
        html = build_report([tmp_path / "live"], tmp_path / "r.html").read_text()
        assert "1 still running" in html
        store.conn.execute("ROLLBACK")
        store.record_result(10, build_oracle(config).evaluate(
            get_space("nb201").parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")),
            10.0, None, None)
    finally:
        store.close()
    with RunStore.open(tmp_path / "live") as again:
        assert again.counts() == {"pending": 0, "ok": 11, "failed": 0}


def test_plot_dir_of_bench_search(cli, nb201_csv, tmp_path):
    from PIL import Image

    code, _, err = cli("bench", "search", "--space", "nb201", "--bench", str(nb201_csv),
                       "--metric", "cifar10_test", "--strategies", "random,rea", "--budget",
                       "30", "--seeds", "2", "--json", str(tmp_path / "s.json"),
                       "--plot", str(tmp_path / "plots"))
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == ["search0_best_so_far.png", "search0_best_so_far.svg",
                     "search0_queries_to_optimum.png", "search0_queries_to_optimum.svg"]
    img = np.asarray(Image.open(tmp_path / "plots" / "search0_best_so_far.png").convert("L"))
    assert img.shape[1] > 600 and img.std() > 10
    ET.fromstring((tmp_path / "plots" / "search0_best_so_far.svg").read_text())


def test_plot_dir_of_bench_predictor(predictor_json, tmp_path):
    data = json.loads(predictor_json.read_text())
    written = write_plots(data, tmp_path, predictor_json)
    # the default scatter: the best mean tau at the largest training size
    best = max((r for r in data["results"] if r["train_size"] == 90),
               key=lambda r: r["kendall_tau"]["mean"])["predictor"]
    assert sorted(p.name for p in written) == [
        "predictors0_quality.png", "predictors0_quality.svg",
        f"predictors0_scatter_{best}_90.png", f"predictors0_scatter_{best}_90.svg"]
    assert all(p.stat().st_size > 5000 for p in written)


# -- bad inputs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("content, message", [
    ("a,b\n1,2\n", "not JSON (line 1"),
    ("[1, 2]", "a JSON list, not an object"),
    ('{"results": []}', "JSON without a 'kind' field"),
    ('{"kind": "bench-zzz", "schema": 1}', "unknown kind 'bench-zzz'"),
    ('{"kind": "run", "schema": 1}', "unknown kind 'run'"),
    ('{"kind": "bench-search", "schema": 7}', "bench-search schema 7 is newer"),
    ('{"kind": "bench-search"}', "field 'schema' is None"),
    ('{"kind": "bench-predictor", "schema": 1, "settings": {"space": "nb201", "metric": "m",'
     ' "seeds": 1}, "results": [{"predictor": "x"}]}', "results[0] is not a bench predictor"),
    ('{"kind": "bench-search", "schema": 1, "space": "nb201", "metric": "m", "budget": 5,'
     ' "strategies": {"a": {"queries_to_optimum": {"per_seed": []}, "runs": [{"c": 1}]}}}',
     "strategies.a.runs is not a list"),
    # what an interrupted bench writes before anything finished (was an internal error)
    ('{"kind": "bench-search", "schema": 3, "space": "nb201", "metric": "m", "budget": 5,'
     ' "strategies": {}, "interrupted": true}', "no search finished (strategies is empty: "
     "the bench was interrupted)"),
    ('{"kind": "bench-predictor", "schema": 1, "settings": {"space": "nb201", "metric": "m",'
     ' "seeds": 1}, "results": []}', "no fit finished"),
])
def test_bad_json_is_one_line_error_naming_the_file(cli, tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, _, err = cli("report", str(bad), "--out", str(tmp_path / "r.html"))
    assert code == 2
    assert err.count("\n") == 1 and str(bad) in err and message in err, err
    assert not (tmp_path / "r.html").exists()


def test_bad_paths_and_run_directories(cli, tmp_path, search_json):
    code, _, err = cli("report", str(tmp_path / "missing"))
    assert code == 2 and "no such file or directory; expected a run directory" in err
    (tmp_path / "empty").mkdir()
    code, _, err = cli("report", str(tmp_path / "empty"))
    assert code == 2 and "empty: not a run directory (no run.sqlite)" in err
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "run.sqlite").write_bytes(b"this is not a database" * 100)
    code, _, err = cli("report", str(tmp_path / "junk"))
    assert code == 2 and "run.sqlite: not a readable run database" in err
    assert err.count("\n") == 1
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = cli("report", str(tmp_path / "bin.json"))
    assert code == 2 and "bin.json: cannot read it as text" in err
    code, _, err = cli("report", str(search_json), "--scatter", "gates:100", "--out",
                       str(tmp_path / "s.html"))
    # no predictor benchmark: --scatter has nothing to draw, and is not ignored in silence
    assert code == 2 and "--scatter draws a bench predictor JSON's samples" in err
    data = json.loads(search_json.read_text())
    data["strategies"]["rea"]["runs"][0]["best"] = 100.0
    data["strategies"]["rea"]["runs"][0]["best_arch"] = "|conv~0|"
    (tmp_path / "cell.json").write_text(json.dumps(data))
    code, _, err = cli("report", str(tmp_path / "cell.json"), "--out", str(tmp_path / "x.html"))
    assert code == 2 and "cell.json: " in err and "conv" in err


def test_scatter_choice_must_exist(cli, predictor_json, tmp_path):
    code, _, err = cli("report", str(predictor_json), "--scatter", "gates:100", "--out",
                       str(tmp_path / "r.html"))
    assert code == 2 and "--scatter gates:100" in err and "rf:30" in err


def test_legacy_json_without_kind_is_read(search_json, predictor_json, tmp_path):
    old = json.loads(search_json.read_text())
    for key in ("kind", "schema"):
        del old[key]
    for entry in old["strategies"].values():
        del entry["runs"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    item = read_input(tmp_path / "old.json")
    assert item.kind == "bench-search"
    html = build_report([tmp_path / "old.json"], tmp_path / "r.html").read_text()
    assert "predates per-seed curves" in html and _figures_in(html).count("plot") == 2
    with pytest.raises(ArchrankError, match="no such sample"):
        build_report([predictor_json], tmp_path / "p.html", scatter="mlp")


# -- in a real browser ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser_ok() -> None:
    from archrank.report.browser import find_browser

    if find_browser() is None:
        pytest.skip("no Chromium installed (apt-get install chromium-headless-shell, or set "
                    "ARCHRANK_CHROMIUM); .ci/run installs it before the tests")


def _blank_boxes(check) -> list[str]:
    """Names of figures whose area of the screenshot is (almost) one colour."""
    import io

    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(check.png)).convert("L"), dtype=np.float64)
    blank = []
    for f in check.figures:
        y0, x0 = int(f["y"]), int(f["x"])
        box = img[y0:y0 + int(f["height"]), x0:x0 + int(f["width"])]
        if box.size == 0 or box.std() < 8 or (box < 200).mean() < 0.005:
            blank.append(f["name"])
    return blank


def test_report_in_headless_chromium(browser_ok, nb201_runs, search_json, predictor_json,
                                     tmp_path):
    from archrank.report.browser import inspect_page

    scores = tmp_path / "scores.csv"
    _score_table(scores, every=200)
    out = build_report([*nb201_runs, search_json, predictor_json, scores],
                       tmp_path / "report.html")
    check = inspect_page(out)
    url = out.resolve().as_uri()
    assert check.console_errors == []
    assert check.requests[0] == url
    assert all(u == url or u.startswith("data:") for u in check.requests), check.requests
    html = out.read_text()
    assert len(check.figures) == len(_figures_in(html)) == 14  # 10 + score table 3 + 1
    assert all(f["loaded"] and f["width"] > 250 and f["height"] > 120 for f in check.figures)
    assert _blank_boxes(check) == []


def test_browser_check_sees_errors_requests_and_blank_figures(browser_ok, tmp_path):
    """The checks above can fail: a console error, a network request and a blank figure on a
    page are all reported."""
    from archrank.report.browser import inspect_page

    blank = ('<svg xmlns="http://www.w3.org/2000/svg" width="300" height="200">'
             '<rect width="300" height="200" fill="white"/></svg>')
    page = tmp_path / "bad.html"
    page.write_text(f'<html><body><figure class="drawing" data-name="empty">{blank}</figure>'
                    '<img src="http://127.0.0.1:9/x.png">'
                    '<script>console.error("boom")</script></body></html>')
    check = inspect_page(page)
    assert any("boom" in e for e in check.console_errors)
    assert "http://127.0.0.1:9/x.png" in check.requests
    assert _blank_boxes(check) == ["empty"]


# -- weight-sharing score tables ----------------------------------------------------------------
def _score_table(path: Path, every: int = 50) -> tuple[list, np.ndarray]:
    """A score table written by oneshot's own writer from real nb201.csv cells: CIFAR-10 test
    accuracy as the fitted score, CIFAR-100 as the 'supernet' score of the first 100 cells,
    exact params/FLOPs, a latency proportional to FLOPs."""
    from archrank.nn.counting import nb201_costs
    from archrank.oneshot.fit import ScoreTable
    from archrank.tables import load_benchmark

    space = get_space("nb201")
    table = load_benchmark(str(shared_file("nb201.csv")), space)
    idx = np.arange(0, len(table.archs), every)
    archs = [table.archs[i] for i in idx]
    c10 = np.asarray(table.values("cifar10_test"), dtype=float)[idx]
    c100 = np.asarray(table.values("cifar100_test"), dtype=float)[idx]
    supernet = np.full(len(idx), np.nan)
    supernet[:100] = c100[:100]
    costs = nb201_costs([a.ops for a in archs])
    ScoreTable("nb201", [space.format(a) for a in archs], [space.hash(a) for a in archs],
               {"predicted": c10, "supernet_val_acc": supernet,
                "supernet_val_loss": np.full(len(idx), np.nan), "params": costs["params"],
                "flops": costs["flops"], "latency_ms": costs["flops"] / 1e6}).write_csv(path)
    return archs, c10


def test_oneshot_score_table_in_the_report(cli, tmp_path):
    scores = tmp_path / "scores.csv"
    archs, fitted = _score_table(scores)
    out = tmp_path / "report.html"
    code, _, err = cli("report", str(scores), "--out", str(out), "--top", "3")
    assert code == 0, err
    html = out.read_text()
    assert "Weight-sharing score table: nb201, scores.csv" in html
    assert _figures_in(html).count("plot") == 3 and _figures_in(html).count("drawing") == 1
    for name in ("oneshot-0-fit", "oneshot-0-flops", "oneshot-0-latency_ms"):
        assert name in html
    # the scatter is made of the sampled cells only (the others have no supernet score)
    from archrank.report.oneshot import read_scores

    read = read_scores(scores, {})
    with scores.open() as fh:
        supernet = [r["supernet_val_acc"] for r in csv.DictReader(fh)]
    assert sum(1 for v in supernet if v) == 100 == np.isfinite(
        read.columns["supernet_val_acc"]).sum()
    assert read.space == "nb201" and len(read.archs) == len(fitted)
    best = get_space("nb201").format(archs[int(np.argmax(fitted))])
    assert best in html  # first row of the top-cells table, and the drawing's label


def test_score_table_bad_input(cli, tmp_path):
    bad = tmp_path / "other.csv"
    bad.write_text("arch,cifar10_test\n|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|,1\n")
    code, _, err = cli("report", str(bad), "--out", str(tmp_path / "r.html"))
    assert code == 2 and "not a score table of archrank oneshot fit" in err
    assert err.count("\n") == 1
    alien = tmp_path / "alien.csv"
    alien.write_text("arch,hash,predicted\nnot-a-cell,abc,1.0\n")
    code, _, err = cli("report", str(alien), "--out", str(tmp_path / "r.html"))
    assert code == 2 and "line 2, field 'arch'" in err and "no known space" in err


def test_a_figure_no_seed_gave_is_drawn_as_a_gap(predictor_json, tmp_path):
    """A bench writes a NaN mean (every seed's predictions constant) as null: the report reads
    it as NaN rather than failing with an internal error."""
    data = json.loads(predictor_json.read_text())
    data["results"][0]["kendall_tau"] = {"mean": None, "std": None}
    bad = tmp_path / "null.json"
    bad.write_text(json.dumps(data))
    out = build_report([bad], tmp_path / "r.html")
    assert "Predictor benchmark" in out.read_text()


def test_runs_of_other_datasets_or_options_are_not_pooled(tmp_path):
    """Runs of one strategy on other data (or with other options) are other studies or
    other curves, not more seeds of one."""
    import time

    from archrank.oracles.base import Evaluation
    from archrank.report.runs import read_run, render_runs

    space = get_space("nb201")
    archs = space.sample(3, np.random.default_rng(0))
    runs = []
    for name, data, params in (("a", "mnist1d", {}), ("b", "my.npz", {}),
                               ("c", "mnist1d", {"batch": 10})):
        cfg = SearchConfig(space="nb201", metric="val_acc", strategy="gates", budget=3,
                           oracle="train", oracle_params={"dataset": data},
                           strategy_params=params).to_dict()
        with RunStore.create(tmp_path / name, cfg) as store:
            store.add_ask(0, 0, 3, [(i, space.hash(a), space.format(a))
                                    for i, a in enumerate(archs)])
            for i in range(3):
                store.record_result(i, Evaluation({"val_acc": 90.0 + i}), 90.0 + i,
                                    time.time(), time.time())
        runs.append(read_run(tmp_path / name, {}))
    from archrank.report.kinds import ReportOptions

    sections = render_runs(runs, ReportOptions())
    assert len(sections) == 2  # mnist1d and my.npz
    assert {r.label for r in runs} == {"gates", "gates (batch=10)"}
    assert any("dataset=my.npz" in sec.intro for sec in sections)


def test_a_run_named_twice_counts_once_and_a_damaged_version_is_one_line(nb201_runs,
                                                                        tmp_path):
    import shutil

    run = nb201_runs[0]
    once = build_report([run], tmp_path / "once.html").read_text()
    with pytest.warns(UserWarning, match="2 input"):
        twice = build_report([run, Path(f"{run}/"), run / "run.sqlite"],
                             tmp_path / "twice.html").read_text()
    assert twice.count("1 run") == once.count("1 run") and "3 run" not in twice
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    with sqlite3.connect(copy / "run.sqlite") as conn:
        conn.execute("UPDATE config SET value = '{bad' WHERE key = 'schema_version'")
    with pytest.raises(ArchrankError, match="not a readable run database"):
        build_report([copy], tmp_path / "bad.html")


def test_exported_json_lines_are_strict_json(tmp_path):
    from archrank.oracles.base import Evaluation

    config = SearchConfig(space="nb201", bench=str(shared_file("nb201.csv")),
                          metric="cifar10_test", budget=2, strategy="random")
    with RunStore.memory(config.to_dict()) as store:
        space = get_space("nb201")
        cells = space.sample(1, np.random.default_rng(0))
        store.add_ask(0, 0, 1, [(0, space.hash(cells[0]), space.format(cells[0]))])
        store.record_result(0, Evaluation({"cifar10_test": 90.0, "loss": float("inf")}),
                            90.0, 1.0, 2.0)
        line = next(store.iter_jsonl())
    assert json.loads(line, parse_constant=lambda c: pytest.fail(c))["metrics"] == {
        "cifar10_test": 90.0, "loss": None}


def test_runs_of_two_tables_of_one_name_are_two_studies(nb201_csv, tmp_path):
    """The study of a run is keyed by its table's content, not its file name alone: two
    tables called t.csv are two sections (named apart), never seeds of one curve; the best
    cell is found at its proposal number, as runs export numbers it."""
    from archrank.report.kinds import ReportOptions, render

    base = SearchConfig(space="nb201", bench=str(nb201_csv), metric="cifar10_test",
                        budget=10, strategy="random")
    dirs = []
    for fp in ("aaaa1111", "bbbb2222"):
        d = tmp_path / f"run-{fp}"
        with RunStore.create(d, base.to_dict(), inputs={"fingerprint": fp}) as store:
            run_search(build_strategy(base), build_oracle(base), store, budget=10)
        dirs.append(d)
    sections = render([read_input(p) for p in dirs], ReportOptions())
    titles = [s.title for s in sections]
    assert len(titles) == 2 and titles[0] != titles[1] and "aaaa1111" in titles[0]
    run = read_input(dirs[0]).data
    run.seqs = run.seqs + 1  # as if proposal 0 were still running
    best = int(np.nanargmax(run.values))
    assert run.found_at(best) == best + 2


def test_a_label_keeps_its_colour_across_figures():
    figures.reset_colours()
    first = figures.colours(["random", "rea"])
    again = figures.colours(["rea", "ls", "random"])
    assert again["rea"] == first["rea"] and again["random"] == first["random"]
    assert len(set(again.values())) == 3
    figures.colours([f"s{i}" for i in range(12)])  # more labels than colours in a report
    pair = figures.colours(["random", "late"])  # a small figure still tells its two apart
    assert pair["random"] != pair["late"]


def test_bad_numbers_inside_a_bench_json_name_the_element(cli, search_json, predictor_json,
                                                          tmp_path):
    data = json.loads(search_json.read_text())
    data["strategies"]["rea"]["runs"][0]["curve"][3] = "x"
    (tmp_path / "s.json").write_text(json.dumps(data))
    code, _, err = cli("report", str(tmp_path / "s.json"), "--out", str(tmp_path / "r.html"))
    assert code == 2 and "strategies.rea.runs[0].curve[3] is not a number ('x')" in err
    data = json.loads(predictor_json.read_text())
    data["samples"][0]["true"][0] = "q"
    (tmp_path / "p.json").write_text(json.dumps(data))
    code, _, err = cli("report", str(tmp_path / "p.json"), "--out", str(tmp_path / "r.html"))
    assert code == 2 and "samples[0].true[0] is not a number" in err
    data = json.loads(predictor_json.read_text())
    data["results"][0]["spearman"] = {"mean": None, "std": None}
    (tmp_path / "q.json").write_text(json.dumps(data))
    assert cli("report", str(tmp_path / "q.json"), "--out", str(tmp_path / "q.html"))[0] == 0
    assert "nan ± nan" not in (tmp_path / "q.html").read_text()


def test_guided_runs_of_earlier_defaults_are_curves_of_their_own():
    """A guided run recorded before a predictor's defaults changed searches with the old
    ones: its label says so, so it is not pooled with today's runs as one more seed."""
    from archrank.report.runs import Run

    base = {"space": "nb201", "metric": "m", "strategy": "guided", "predictor": "xgb",
            "budget": 5, "seed": 0, "bench": "x.csv", "predictor_defaults": True}
    today = Run(Path("a"), {**base, "defaults_session": 11}, [], np.zeros(0), np.zeros(0), 0)
    before = Run(Path("b"), {**base, "defaults_session": 10}, [], np.zeros(0), np.zeros(0), 0)
    assert today.label == "xgb" and before.label == "xgb (predictor.target=raw)"


def test_a_run_without_evaluations_and_a_training_oracles_dataset(nb201_csv, tmp_path):
    """A run that has evaluated nothing yet gets its section without a figure (no empty
    legend); a training oracle's dataset fingerprint keys its study like a table's."""
    import warnings

    from archrank.report.kinds import ReportOptions, render

    base = SearchConfig(space="nb201", bench=str(nb201_csv), metric="cifar10_test",
                        budget=10, strategy="random")
    empty = tmp_path / "empty"
    RunStore.create(empty, base.to_dict()).close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [section] = render([read_input(empty)], ReportOptions())
    assert not section.figures()
    trained = tmp_path / "trained"
    RunStore.create(trained, base.to_dict(),
                    inputs={"dataset": {"fingerprint": "feedbeef0000"}}).close()
    assert read_input(trained).data.fingerprint == "feedbeef0000"


def test_a_stopped_run_an_empty_one_and_failures_are_said(nb101_csv, tmp_path, cli):
    """A run with unfinished evaluations that no process holds was reported 'still
    running'; a run with nothing finished beside runs with costs crashed the cost figure;
    failed evaluations were not mentioned."""
    base = SearchConfig(space="nb101", bench=str(nb101_csv), metric="val_acc_108",
                        budget=12, space_from_bench=True, strategy="random")
    done = make_run(base, tmp_path / "done")
    with sqlite3.connect(done / "run.sqlite") as conn:  # two evaluations failed
        conn.execute("UPDATE evaluations SET status = 'failed', objective = NULL "
                     "WHERE seq IN (3, 4)")
    stopped = tmp_path / "stopped"
    store = RunStore.create(stopped, replace(base, seed=1).to_dict())
    store.add_ask(0, 0, 1, [(0, "h0", "0110000100010000|input,conv3x3-bn-relu,"
                              "maxpool3x3,output")])
    store.close()  # a pending evaluation and nobody holding the run
    assert RunStore.is_running(stopped) is False
    code, out, err = cli("runs", "show", stopped / "run.sqlite")  # the database named
    assert code == 0 and "1 unfinished (the run is not running" in out, err
    html = build_report([done, stopped], tmp_path / "r.html").read_text()
    assert "still running" not in html
    assert "1 stopped before finishing (1 unfinished evaluations" in html
    assert "2 failed evaluations" in html and "runs0_best_vs_cost" in html
    holder = RunStore.open(stopped)  # a process holds it: running
    try:
        assert RunStore.is_running(stopped) is True
        assert "1 still running" in build_report([stopped], tmp_path / "s.html").read_text()
        code, out, _ = cli("runs", "show", stopped / "run.sqlite")
        assert code == 0 and "1 pending" in out and "not running" not in out
    finally:
        holder.close()


def test_one_seed_has_no_spread_to_print() -> None:
    from archrank.bench.common import format_stat

    stat = {"mean": 0.5, "std": 0.0}
    assert format_stat(stat, 3, seeds=1) == "0.500"
    assert format_stat(stat, 3, seeds=2) == "0.500 ± 0.000"
    assert format_stat({"mean": 0.5, "std": None}) == "0.500"


def test_wrong_field_types_in_bench_jsons_are_one_line(cli, search_json, predictor_json,
                                                       tmp_path):
    data = json.loads(search_json.read_text())
    for edit, message in (
        (lambda d: d.update(budget=-1), "field 'budget' must be at least 1, got -1"),
        (lambda d: d["strategies"]["rea"]["queries_to_optimum"].update(median="x"),
         "queries_to_optimum.median is not a number ('x')"),
        (lambda d: d["strategies"]["rea"].update(best_at="x"), "best_at is not an object"),
    ):
        bad = json.loads(json.dumps(data))
        edit(bad)
        (tmp_path / "s.json").write_text(json.dumps(bad))
        code, _, err = cli("report", tmp_path / "s.json", "--out", tmp_path / "r.html")
        assert code == 2 and message in err and err.count("\n") == 1, err
    bad = json.loads(json.dumps(data))
    bad["strategies"]["rea"]["runs"] = None  # a curve alone (older files) is drawn
    bad["strategies"]["rea"]["curve"] = bad["strategies"]["random"]["runs"][0]["curve"]
    (tmp_path / "s.json").write_text(json.dumps(bad))
    assert cli("report", tmp_path / "s.json", "--out", tmp_path / "r.html")[0] == 0
    data = json.loads(predictor_json.read_text())
    for edit, message in (
        (lambda d: d["settings"].update(predictors=None), "settings.predictors is not a list"),
        (lambda d: d["results"][0].update(seeds="x"), "results[0].seeds is not a count"),
        (lambda d: d["results"][0]["kendall_tau"].update(std=-1.0),
         "results[0].kendall_tau.std is negative"),
    ):
        bad = json.loads(json.dumps(data))
        edit(bad)
        (tmp_path / "p.json").write_text(json.dumps(bad))
        code, _, err = cli("report", tmp_path / "p.json", "--out", tmp_path / "r.html")
        assert code == 2 and message in err and err.count("\n") == 1, err


def test_scatter_of_a_predictor_alone_takes_its_largest_size(predictor_json, tmp_path):
    from archrank.report.predictor import _pick_sample, read_predictor

    bench = read_predictor(predictor_json, json.loads(predictor_json.read_text()))
    name = bench.data["samples"][0]["predictor"]
    sizes = [s["train_size"] for s in bench.data["samples"] if s["predictor"] == name]
    assert _pick_sample(bench, name)["train_size"] == max(sizes)
