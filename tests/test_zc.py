"""Zero-cost proxies: agreement with NAS-Bench-Suite-Zero's scores, invariants, the CLI."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from typer.testing import CliRunner

from archrank.cli import app
from archrank.errors import ArchrankError
from archrank.nn import build_network
from archrank.spaces import get_space
from archrank.zc import PROXIES, _agreement, compute_proxies, score_architectures
from conftest import one_line_error

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_proxies_rank_like_the_published_scores(nb201_zc_csv: Path) -> None:
    """30 cells at the CIFAR-10 setting: synflow, params and flops order cells as the table."""
    with open(nb201_zc_csv, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["dataset"] == "cifar10"]
    picks = np.random.default_rng(0).choice(len(rows), 30, replace=False)
    space = get_space("nb201")
    gen = torch.Generator().manual_seed(0)
    batch = (torch.randn(2, 3, 32, 32, generator=gen), torch.tensor([0, 1]))
    ours: dict[str, list[float]] = {"synflow": [], "params": [], "flops": []}
    for i in picks:
        torch.manual_seed(0)
        net = build_network(space, space.parse(rows[i]["arch"]))  # C=16, N=5, 10 classes
        for name, value in compute_proxies(net, batch, list(ours)).items():
            ours[name].append(value)
    for name, values in ours.items():
        table = [float(rows[i][name]) for i in picks]
        rho = spearmanr(values, table)[0]
        assert rho > 0.9, f"{name}: Spearman {rho:.3f} with the table"


def test_compute_proxies_leaves_the_network_alone() -> None:
    torch.manual_seed(0)
    net = build_network("nb201", ["nor_conv_3x3", "skip_connect", "nor_conv_1x1",
                                  "avg_pool_3x3", "nor_conv_3x3", "none"],
                        width=4, depth=1, in_channels=1, input_kind="1d")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.randn(16, 1, 20), torch.arange(16) % 10
    scores = compute_proxies(net, (x, y))
    assert list(scores) == list(PROXIES)
    assert all(math.isfinite(v) for v in scores.values()), scores
    assert scores["params"] == sum(p.numel() for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())
    again = compute_proxies(net, (x, y))
    assert again == pytest.approx(scores, rel=1e-6)


def test_scoring_a_scratch_network_in_place_gives_the_same_values() -> None:
    """``scratch=True`` skips the copies (gradient proxies first, then synflow): same floats."""
    space = get_space("nb201")
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % 10
    for cell in space.sample(3, np.random.default_rng(2)):
        kept, scratch = (build_network(space, cell, width=8, depth=2, seed=3) for _ in range(2))
        assert compute_proxies(scratch, (x, y), scratch=True) == compute_proxies(kept, (x, y))


def test_nwot_agreement_counts_equal_the_two_products() -> None:
    """The one-product form of nwot's kernel equals ``c c^T + (1 - c)(1 - c)^T`` exactly."""
    active = torch.rand(16, 5000, generator=torch.Generator().manual_seed(0)) > 0.4
    codes = active.double()
    expected = codes @ codes.T + (1.0 - codes) @ (1.0 - codes).T
    assert torch.equal(_agreement(active), expected)


def test_a_cut_off_cell_gets_the_lowest_jacov() -> None:
    torch.manual_seed(0)
    dead = build_network("nb201", ["none"] * 6, width=4, depth=1, in_channels=1,
                         input_kind="1d")
    scores = compute_proxies(dead, (torch.randn(8, 1, 20), torch.arange(8)),
                             ["jacov", "synflow", "nwot"])
    assert scores["jacov"] == -math.inf
    assert math.isfinite(scores["synflow"])


def test_proxy_names_are_checked() -> None:
    net = build_network("nb201", ["skip_connect"] * 6, width=4, depth=1)
    with pytest.raises(ArchrankError, match="unknown zero-cost proxy 'zen'"):
        compute_proxies(net, (torch.randn(2, 3, 8, 8), torch.zeros(2)), "params,zen")


def test_score_architectures_matches_single_calls() -> None:
    space = get_space("nb201")
    cells = space.sample(3, np.random.default_rng(0))
    table = score_architectures(space, cells, "digits", ["snip", "nwot"], batch_size=16)
    assert table["snip"].shape == (3,)
    assert np.all(np.isfinite(table["nwot"]))
    again = score_architectures("nb201", cells[1:2], "digits", ["snip"], batch_size=16)
    assert again["snip"][0] == pytest.approx(table["snip"][1], rel=1e-6)


def test_zc_cli_writes_a_csv(tmp_path: Path) -> None:
    out = tmp_path / "zc.csv"
    result = CliRunner().invoke(app, ["zc", "--space", "nb201", "--dataset", "digits", "--n",
                                      "6", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and list(rows[0]) == ["arch", "hash", *PROXIES]
    space = get_space("nb201")
    assert len({r["hash"] for r in rows}) == 6
    assert all(space.hash(space.parse(r["arch"])) == r["hash"] for r in rows)
    assert all(float(r["params"]) > 0 for r in rows)


def _stopped_on_the_second_call(real, calls: list[int]):
    """``real`` that raises KeyboardInterrupt (Ctrl-C) on its second call; ``calls`` counts
    the calls (a test may clear or preset it)."""
    def stopped(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    return stopped


def test_zc_cli_keeps_the_finished_cells_on_ctrl_c(tmp_path: Path, cli, monkeypatch) -> None:
    """Every score was held in memory and written at the end: Ctrl-C lost them all."""
    import archrank.zc as zc_module

    calls: list[int] = []
    monkeypatch.setattr(zc_module, "score_architectures",
                        _stopped_on_the_second_call(score_architectures, calls))
    out = tmp_path / "zc.csv"
    status, _, err = cli("zc", "--space", "nb201", "--dataset", "digits", "--n", "70",
                         "--proxies", "params,flops", "--out", out)
    partial = Path(f"{out}.partial")  # OUT only ever holds a complete result
    assert status == 130 and f"the 50 cells scored so far are in {partial}" in err
    with open(partial, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 50
    assert "the same command continues from" in err and not out.exists()
    # interrupted again before the next chunk: the partial result is replaced in place (it
    # went to OUT the first time; the second time OUT was taken for a complete earlier
    # result, OUT.partial written beside it and the stale partial OUT left)
    calls[:] = [1]
    status, _, err = cli("zc", "--space", "nb201", "--dataset", "digits", "--n", "70",
                         "--proxies", "params,flops", "--out", out)
    assert status == 130 and f"the 50 cells scored so far are in {partial}" in err
    assert not out.exists()
    # the same command takes the journaled chunk and scores only the rest (also after a
    # kill); the partial result goes with the journal
    calls.clear()
    status, _, err = cli("zc", "--space", "nb201", "--dataset", "digits", "--n", "70",
                         "--proxies", "params,flops", "--out", out)
    assert status == 0 and len(calls) == 1, err
    with open(out, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 70
    assert not Path(f"{out}.journal.jsonl").exists() and not partial.exists()
    before = out.read_bytes()  # a complete earlier result is not replaced by a partial one
    calls.clear()
    status, _, err = cli("zc", "--space", "nb201", "--dataset", "digits", "--n", "70",
                         "--seed", "1", "--proxies", "params,flops", "--out", out)
    assert status == 130 and f"are in {out}.partial" in err and out.read_bytes() == before
    calls[:] = [1]  # the first chunk stops now: nothing finished, nothing written
    status, _, err = cli("zc", "--space", "nb201", "--dataset", "digits", "--n", "70",
                         "--proxies", "params,flops", "--out", tmp_path / "new.csv")
    assert status == 130 and "untouched" in err and not (tmp_path / "new.csv").exists()


def test_zc_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from archrank.cli import main

    for args, message in (
        (["--proxies", "bogus"], "unknown zero-cost proxy"),
        (["--space", "nbgraph"], "zero-cost proxies need real networks"),
        (["--dataset", str(tmp_path / "none.npz")], "no such dataset file"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["zc", *args, "--n", "2", "--out", str(tmp_path / "x.csv")])
        assert exit_info.value.code == 2, message
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and "Traceback" not in err


def test_a_fill_of_exact_counts_only_says_there_is_nothing_to_fill(cli) -> None:
    """params and flops are counted exactly whenever a predictor needs them: a fill of them
    alone (nb101's default) spent minutes writing a file nothing reads."""
    status, out, err = cli("zc", "--space", "nb101", "--fill")
    assert status == 0 and "nothing to fill: params, flops are counted exactly" in out, err


def test_jacov_reads_at_most_one_example_fewer_than_the_input_has_values() -> None:
    """Centred Jacobian rows of D inputs span D - 1 dimensions: examples past that only add
    forced zero eigenvalues (+1e5 each), so they are left out (MNIST-1D: 40 values, batch
    64); a batch below that is read whole."""
    from archrank.zc import _jacov_score

    jac = np.random.default_rng(0).normal(size=(64, 40))
    assert _jacov_score(jac) == _jacov_score(jac[:39])
    assert _jacov_score(jac[:20]) != _jacov_score(jac[:19])  # below D: every example counts
    assert _jacov_score(jac) > -1e5  # no forced zero eigenvalue left in the score


def test_sample_unique_reaches_every_distinct_cell_and_says_when_asked_for_more() -> None:
    """Rejection sampling stalls near the number of distinct cells (8,689 of nb201's 8,765
    for a first version): the rest come from the enumeration; asking for more is said. The
    committed truth's 500 cells (sample seed 0) stay the cells of that seed."""
    from archrank.cli.zc import sample_unique

    space = get_space("nb201")
    cells = sample_unique(space, 8765, np.random.default_rng(0))
    assert len({space.hash(a) for a in cells}) == 8765
    with pytest.warns(UserWarning, match="nb201 has 8,765 distinct cells, fewer than the 9,000"):
        assert len(sample_unique(space, 9000, np.random.default_rng(0))) == 8765
    truth = Path(__file__).parents[1] / "benchmarks/truth/nb201_mnist1d_w16.csv"
    with open(truth, newline="") as fh:
        committed = sorted(row["arch"] for row in csv.DictReader(fh))
    assert sorted(space.format(a) for a in sample_unique(space, 500, np.random.default_rng(0))
                  ) == committed


def test_an_interrupted_fill_says_what_it_saved(tmp_path: Path, cli, monkeypatch) -> None:
    """Ctrl-C during ``zc --fill`` said only "interrupted": the finished chunks are kept and
    the message says how many, and that the same command continues."""
    import archrank.zccache as zccache

    monkeypatch.setenv("ARCHRANK_CACHE_DIR", str(tmp_path / "cache"))
    space = get_space("nb201")
    cells = space.sample(40, np.random.default_rng(5))
    table = tmp_path / "t.csv"
    table.write_text("arch,acc\n" + "".join(f"{space.format(a)},1\n" for a in cells))
    distinct = len({space.hash(a) for a in cells})
    calls: list[int] = []
    monkeypatch.setattr(zccache, "_score_chunk",
                        _stopped_on_the_second_call(zccache._score_chunk, calls))
    status, _, err = cli("zc", "--fill", "--table", table, "--proxies", "synflow")
    assert status == 130, err
    assert f"interrupted: 25 of {distinct} cells saved in" in err
    assert "the same command continues with the rest" in err
    calls.clear()
    status, out, err = cli("zc", "--fill", "--table", table, "--proxies", "synflow")
    assert status == 0 and f"computed {distinct - 25} cells" in out, err


def test_a_second_fill_of_one_cache_is_refused(tmp_path: Path, cli, monkeypatch) -> None:
    """Two ``zc --fill`` of the same cache computed the same cells side by side: the second
    is refused while the first runs."""
    from archrank.files import hold_lock
    from archrank.zccache import ZCCache, ZCSetting

    monkeypatch.setenv("ARCHRANK_CACHE_DIR", str(tmp_path / "cache"))
    space = get_space("nb201")
    table = tmp_path / "t.csv"
    table.write_text("arch,acc\n" + "".join(
        f"{space.format(a)},1\n" for a in space.sample(3, np.random.default_rng(5))))
    path = ZCCache(space, ZCSetting.named("nb201", "benchmark")).path
    held = hold_lock(path, "a test")
    status, _, err = cli("zc", "--fill", "--table", table, "--proxies", "synflow")
    assert status == 2 and "a fill of this zero-cost cache is in use" in err, err
    held.close()


def test_zc_refuses_networks_too_large_for_the_machine(tmp_path: Path, cli,
                                                      monkeypatch) -> None:
    """``zc --depth 999999`` started scoring, silently, networks of ~3e11 parameters: the
    setting is refused in one line naming the flag before any work or file."""
    import archrank.zc

    def no_work(*args, **kwargs):
        raise AssertionError("the work started")

    monkeypatch.setattr(archrank.zc, "score_architectures", no_work)
    out = tmp_path / "x.csv"
    for flag, value in (("--depth", "999999"), ("--width", "1000000")):
        line = one_line_error(*cli("zc", flag, value, "--n", "2", "--out", out)[::2])
        assert line.startswith(f"error: {flag} {value} (with ") and "GiB of memory" in line
    assert list(tmp_path.iterdir()) == []


def test_the_parameter_estimate_of_a_setting() -> None:
    """``estimated_params``: exact for nb201 and nb101 (stages repeat one cell), within 10%
    for darts; check_size refuses what cannot fit in memory and keeps the benchmark's size."""
    from archrank.nn import _largest_cell as largest
    from archrank.nn import check_size, count_params, estimated_params

    for space, width, depth, slack in (("nb201", 16, 5, 0), ("nb101", 8, 2, 0),
                                       ("darts", 8, 8, 0.1)):
        real = count_params(build_network(space, largest(space), width=width, depth=depth))
        assert abs(estimated_params(space, width, depth) - real) <= slack * real, space
    check_size("nb101", 128, 3)  # the benchmark network
    # the largest nb101 cell: the space's published maximum (nb101_10k.csv's largest row)
    assert estimated_params("nb101", 128, 3) == 49_979_274
    with pytest.raises(ArchrankError, match=r"^depth 10000000 \(with width 16\): nb201 "):
        check_size("nb201", 16, 10_000_000)


def test_a_fill_leaves_no_lock_file_behind(tmp_path: Path, cli, monkeypatch) -> None:
    """``zc --fill`` left an empty ``zc-SPACE.npz.lock`` beside the cache (the merge lock of
    its saves, a twin of archrank.files' locks that never removed its file)."""
    monkeypatch.setenv("ARCHRANK_CACHE_DIR", str(tmp_path / "cache"))
    space = get_space("nb201")
    table = tmp_path / "t.csv"
    table.write_text("arch,acc\n" + "".join(
        f"{space.format(a)},1\n" for a in space.sample(3, np.random.default_rng(5))))
    old = tmp_path / "cache" / "zc-nb201.npz.lock"  # as older versions left it
    old.parent.mkdir(parents=True, exist_ok=True)
    old.touch()
    status, _, err = cli("zc", "--fill", "--table", table, "--proxies", "synflow")
    assert status == 0, err
    left = sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert "zc-nb201.npz" in left and not [n for n in left if "lock" in n], left


def test_score_architectures_of_a_space_without_networks_is_a_one_line_error() -> None:
    """nbgraph (GNNs, no network skeleton here) raised KeyError ('nbgraph', '*')."""
    space = get_space("nbgraph")
    with pytest.raises(ArchrankError, match=r"no network skeleton for space 'nbgraph'"):
        score_architectures(space, space.sample(2, np.random.default_rng(0)), "digits")
