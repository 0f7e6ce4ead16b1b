"""Multi-seed truth tables: journaled, resumable, readable as a benchmark, noise ceiling."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from archrank.errors import ArchrankError
from archrank.executors import InlineExecutor
from archrank.oracles.training import TrainingOracle, TrainRecipe
from archrank.tables import load_benchmark
from archrank.truth import TruthBuilder, journal_path, noise_ceiling

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Kill(Exception):
    pass


def test_truth_table_resumes_without_retraining_and_reads_as_a_benchmark(tmp_path, nb201):
    pytest.importorskip("sklearn")
    oracle = TrainingOracle("nb201", "digits", recipe=TrainRecipe(epochs=1), width=4)
    cells = [nb201.format(a) for a in nb201.sample(3, np.random.default_rng(0))]
    out = tmp_path / "truth.csv"

    def kill_after_two(count, rec):
        if count == 2:
            raise _Kill

    with pytest.raises(_Kill):
        TruthBuilder(oracle, cells, [0, 1], out).run(InlineExecutor(), on_result=kill_after_two)
    journal = journal_path(out)
    first = [json.loads(line) for line in journal.read_text().splitlines()[1:]]
    assert len(first) == 2
    with open(journal, "a") as fh:  # a kill while appending leaves a torn line
        fh.write('{"arch": "|none~0|+')

    builder = TruthBuilder(oracle, cells, [0, 1], out)
    assert len(builder.pending) == 4
    trained = []
    builder.run(InlineExecutor(), on_result=lambda c, rec: trained.append((rec["arch"],
                                                                          rec["seed"])))
    assert len(trained) == 4 and not {(r["arch"], r["seed"]) for r in first} & set(trained)
    builder.write_csv()

    bench = load_benchmark(out, nb201)
    assert len(bench) == 3 and bench.cost_column == "train_time_s"
    per_seed = np.stack([bench.values("val_acc_s0"), bench.values("val_acc_s1")], axis=1)
    assert np.allclose(bench.values("val_acc"), per_seed.mean(axis=1), atol=1e-5)
    assert np.allclose(bench.values("val_acc_std"), per_seed.std(axis=1), atol=1e-5)
    again = oracle.evaluate(nb201.parse(cells[0]))  # the seed-0 training is reproducible
    assert bench.values("val_acc_s0")[0] == pytest.approx(again.metrics["val_acc"], abs=1e-5)
    assert (bench.values("params") > 0).all()

    with pytest.raises(ArchrankError, match="started with other settings"):
        TruthBuilder(oracle, cells[:2], [0, 1], out)


def test_noise_ceiling_of_known_tables():
    rng = np.random.default_rng(0)
    base = rng.normal(size=200)
    same = noise_ceiling(np.stack([base, base, base], axis=1))
    assert same["all"]["seed_to_seed_kendall_tau"] == pytest.approx(1.0)
    noisy = noise_ceiling(np.stack([base + rng.normal(size=200) for _ in range(3)], axis=1))
    assert 0.2 < noisy["all"]["seed_to_seed_kendall_tau"] < 0.7
    # averaging the others removes part of the noise: one-vs-rest beats seed-to-seed
    assert noisy["all"]["one_vs_rest_kendall_tau"] > noisy["all"]["seed_to_seed_kendall_tau"]
    assert noisy["better_half"]["cells"] == 100
    unrelated = noise_ceiling(rng.normal(size=(300, 2)))
    assert abs(unrelated["all"]["seed_to_seed_kendall_tau"]) < 0.1


def test_noise_ceiling_better_half_of_a_loss_is_the_lower_half():
    rng = np.random.default_rng(1)
    base = rng.normal(size=100)
    # the lower half of the cells is quiet, the upper half is pure noise
    values = np.stack([base, base, base], axis=1)
    upper = base > np.median(base)
    values[upper] = 10 + rng.normal(size=(int(upper.sum()), 3))
    as_loss = noise_ceiling(values, higher_is_better=False)["better_half"]
    as_acc = noise_ceiling(values)["better_half"]
    assert as_loss["seed_to_seed_kendall_tau"] == pytest.approx(1.0)
    assert abs(as_acc["seed_to_seed_kendall_tau"]) < 0.4
    # two seeds leave none to choose a pair's half by: no pair figure rather than a biased one
    two = noise_ceiling(values[:, :2])["better_half"]
    assert two["seed_to_seed_kendall_tau"] is None and two["one_vs_rest_kendall_tau"] < 1


def test_better_half_is_not_chosen_by_the_seeds_it_compares():
    """Seeds that agree on nothing agree on nothing in the better half too: chosen by the
    compared seeds' own mean, the half made them look anti-correlated (about -0.2 here; the
    published better-half ceiling of the committed truth was 0.05 that way, 0.19 now)."""
    noise = np.random.default_rng(2).normal(size=(4000, 3))
    half = noise_ceiling(noise)["better_half"]
    assert abs(half["seed_to_seed_kendall_tau"]) < 0.04
    assert abs(half["one_vs_rest_kendall_tau"]) < 0.04
    mean = noise.mean(axis=1)
    top = mean >= np.median(mean)
    from archrank.metrics import kendall_tau

    assert kendall_tau(noise[top, 0], noise[top, 1]) < -0.1  # the biased choice


def test_journal_retries_failures_not_of_the_cell_and_survives_a_torn_header(tmp_path, nb201):
    """A failure that is not the cell's (memory, a lost device) is trained again on resume;
    a divergence is the cell's and stays. A kill while the header was written leaves a journal
    that starts afresh rather than one refused forever."""
    pytest.importorskip("sklearn")
    oracle = TrainingOracle("nb201", "digits", recipe=TrainRecipe(epochs=1), width=4)
    cells = [nb201.format(a) for a in nb201.sample(2, np.random.default_rng(0))]
    out = tmp_path / "truth.csv"
    journal = journal_path(out)
    journal.write_text('{"format": "archrank-tru')  # torn header
    builder = TruthBuilder(oracle, cells, [0], out)
    assert len(builder.pending) == 2
    with open(journal, "a") as fh:
        for arch, error in zip(cells, ("MemoryError: out of memory",
                                       "training diverged: loss is nan at epoch 1, step 3"),
                               strict=True):
            fh.write(json.dumps({"arch": arch, "seed": 0, "status": "failed", "metrics": {},
                                 "error": error}) + "\n")
    assert TruthBuilder(oracle, cells, [0], out).pending == [(cells[0], 0)]


def test_a_cell_trained_for_another_set_of_picks_is_reused(tmp_path, nb201):
    """``bench oneshot-search`` trains each set of picks in a journal of its own: a cell that
    another set trained with the same recipe and seeds is taken from there, never trained
    twice; a journal of another recipe is not read."""
    pytest.importorskip("sklearn")
    oracle = TrainingOracle("nb201", "digits", recipe=TrainRecipe(epochs=1), width=4)
    cells = [nb201.format(a) for a in nb201.sample(3, np.random.default_rng(0))]
    first = TruthBuilder(oracle, cells[:2], [0, 1], tmp_path / "standalone-a.csv")
    first.run(InlineExecutor())
    other = TrainingOracle("nb201", "digits", recipe=TrainRecipe(epochs=2), width=4)
    TruthBuilder(other, cells[2:], [0], tmp_path / "standalone-c.csv").run(InlineExecutor())
    journals = sorted(tmp_path.glob("standalone-*.csv.journal.jsonl"))
    second = TruthBuilder(oracle, cells[1:], [0, 1], tmp_path / "standalone-b.csv")
    assert second.reuse(journals) == 2
    assert second.pending == [(cells[2], 0), (cells[2], 1)]
    assert second.values("val_acc")[0].tolist() == first.values("val_acc")[1].tolist()
    # taken into its own journal: a resume of the second set needs no other file
    assert len(TruthBuilder(oracle, cells[1:], [0, 1], tmp_path / "standalone-b.csv")
               .pending) == 2


def test_a_table_of_more_seeds_is_built_from_a_table_of_fewer(tmp_path, nb201):
    """``bench table --from``: the trainings a finished table holds (its per-seed columns)
    are taken, so only the new seeds train; a table of another recipe is refused by name."""
    pytest.importorskip("sklearn")
    from archrank.truth import read_truth

    oracle = TrainingOracle("nb201", "digits", recipe=TrainRecipe(epochs=1), width=4)
    cells = [nb201.format(a) for a in nb201.sample(4, np.random.default_rng(0))]
    small = TruthBuilder(oracle, cells, [0, 1], tmp_path / "s01.csv")
    small.run(InlineExecutor())
    small.write_csv()
    big = TruthBuilder(oracle, cells[1:], [0, 1, 2], tmp_path / "s012.csv")
    assert big.reuse_tables([tmp_path / "s01.csv"]) == 6
    assert big.pending == [(c, 2) for c in cells[1:]]
    trained = []
    big.run(InlineExecutor(), on_result=lambda c, rec: trained.append(rec["seed"]))
    assert trained == [2, 2, 2]
    big.write_csv()
    truth = read_truth(tmp_path / "s012.csv", "nb201")
    assert truth.seeds == [0, 1, 2]
    assert np.allclose(truth.per_seed[:, :2], small.values("val_acc")[1:], atol=1e-5)
    assert np.allclose(truth.val_acc, truth.per_seed.mean(axis=1), atol=1e-5)
    # resumed, the taken trainings are in its own journal
    assert TruthBuilder(oracle, cells[1:], [0, 1, 2], tmp_path / "s012.csv").pending == []
    # a journal (of an unfinished build of other seeds) is a source too
    whole = TruthBuilder(oracle, cells, [0, 1, 2], tmp_path / "all.csv")
    assert whole.reuse_tables([tmp_path / "s01.csv",
                               journal_path(tmp_path / "s012.csv")]) == 8 + 3
    assert whole.pending == [(cells[0], 2)]

    other = TrainingOracle("nb201", "digits", recipe=TrainRecipe(epochs=2), width=4)
    with pytest.raises(ArchrankError, match=r"s01\.csv: trained with another recipe"):
        TruthBuilder(other, cells, [0, 1, 2], tmp_path / "o.csv").reuse_tables(
            [tmp_path / "s01.csv"])
    with pytest.raises(ArchrankError, match="no such truth table"):
        big.reuse_tables([tmp_path / "missing.csv"])


def test_bench_table_trains_the_cells_of_a_file(cli, tmp_path, nb201):
    """--cells: the given cells (the picks of searches to judge), each once however spelled,
    in file order; a bad line is named; --n and --cells are exclusive."""
    pytest.importorskip("sklearn")
    from conftest import one_line_error

    a, b = (nb201.format(c) for c in nb201.sample(2, np.random.default_rng(3)))
    cells = tmp_path / "picks.txt"
    cells.write_text(f"# picks\n{b}\n\n{a}  # seed 1\n{b}\n")
    out = tmp_path / "p.csv"
    status, _, err = cli("bench", "table", "--dataset", "digits", "--cells", cells,
                         "--train-seeds", "0", "--epochs", "1", "--width", "4", "--out", out)
    assert status == 0, err
    assert [r.split(",")[0] for r in out.read_text().splitlines()[1:]] == [b, a]
    journal = json.loads(journal_path(out).read_text().splitlines()[0])
    assert journal["cells_file"] == str(cells) and "n" not in journal
    cells.write_text(f"{a}\n|nor_conv_3x3~0|+|bad\n")
    line = one_line_error(*cli("bench", "table", "--dataset", "digits", "--cells", cells,
                               "--out", tmp_path / "q.csv")[::2])
    assert "picks.txt: line 2: not a nb201 cell" in line
    line = one_line_error(*cli("bench", "table", "--n", "3", "--cells", cells,
                               "--out", tmp_path / "q.csv")[::2])
    assert "give --n (a uniform sample of cells) or --cells FILE, one of them" in line


def test_bench_table_from_refuses_bad_sources_before_its_journal(cli, tmp_path, nb201):
    """A refused --from (missing, no recipe beside it, no per-seed columns, another recipe)
    leaves no journal that would block the corrected command; --json may not overwrite a
    --from table or the --cells file; a --cells file with a byte-order mark reads, a cell
    spelled twice trains once, and the same command resumes from another folder."""
    pytest.importorskip("sklearn")
    from conftest import one_line_error

    a, b = (nb201.format(c) for c in nb201.sample(2, np.random.default_rng(3)))
    cells = tmp_path / "picks.txt"
    cells.write_bytes(f"\ufeff{a}\r\n{b}\r\n".encode())
    base = ["bench", "table", "--dataset", "digits", "--cells", cells, "--epochs", "1",
            "--width", "4"]
    src = tmp_path / "s0.csv"
    status, _, err = cli(*base, "--train-seeds", "0", "--out", src)
    assert status == 0, err
    out = tmp_path / "s01.csv"
    lone = tmp_path / "lone.csv"
    lone.write_text(src.read_text())
    noseed = tmp_path / "noseed.csv"
    noseed.write_text("arch,val_acc\n" + f"{a},90\n")
    (tmp_path / "noseed.json").write_text((tmp_path / "s0.csv.journal.jsonl").read_text()
                                          .splitlines()[0])
    for source, epochs, want in ((tmp_path / "nope.csv", "1", "no such truth table"),
                                 (lone, "1", "no recipe beside it"),
                                 (noseed, "1", "no per-seed columns"),
                                 (src, "2", "trained with another recipe")):
        argv = [*base[:-4], "--epochs", epochs, "--width", "4", "--train-seeds", "0,1",
                "--from", source, "--out", out]
        assert want in one_line_error(*cli(*argv)[::2])
        assert not journal_path(out).exists()
    for victim in (src, cells):
        line = one_line_error(*cli(*base, "--train-seeds", "0,1", "--from", src, "--out", out,
                                   "--json", victim)[::2])
        assert "this is the input" in line
    status, _, err = cli(*base, "--train-seeds", "0,1", "--from", src, "--out", out)
    assert status == 0 and "2 trainings taken" in err, err
    assert len(out.read_text().splitlines()) == 3
    # the same cells named from another folder: the journal resumes (nothing to train)
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "copy.txt").write_text(f"{a}\n{b}\n{a}\n")
    status, _, err = cli(*base[:5], sub / "copy.txt", *base[6:], "--train-seeds", "0,1",
                         "--out", out)
    assert status == 0, err


def test_bench_table_seeds_in_any_order_and_bad_sizes(cli, tmp_path):
    from archrank.cli.truth import parse_seeds
    from conftest import one_line_error

    assert parse_seeds("2,0,1") == [0, 1, 2]  # the columns read_truth expects
    for text in ("0,0", "-1,0"):
        with pytest.raises(ArchrankError, match=r"distinct and lie in 0\.\.4294967295"):
            parse_seeds(text)
    line = one_line_error(*cli("bench", "table", "--dataset", "digits", "--n", "2",
                               "--width", "0", "--out", tmp_path / "t.csv")[::2])
    assert "--width must be at least 1, got 0" in line


def test_a_dead_training_worker_is_a_one_line_error_and_the_journal_stays(tmp_path, nb201):
    """A killed worker ended `bench table` as an internal error (BrokenProcessPool)."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    pytest.importorskip("sklearn")

    class DiesOnThird(InlineExecutor):
        calls = 0

        def submit(self, fn, /, *args, **kwargs):
            self.calls += 1
            if self.calls < 3:
                return super().submit(fn, *args, **kwargs)
            future: Future = Future()
            future.set_exception(BrokenProcessPool("a process was terminated abruptly"))
            return future

    oracle = TrainingOracle("nb201", "digits", recipe=TrainRecipe(epochs=1), width=4)
    cells = [nb201.format(a) for a in nb201.sample(2, np.random.default_rng(0))]
    out = tmp_path / "truth.csv"
    with pytest.raises(ArchrankError, match=r"a training worker stopped \(BrokenProcessPool: "
                                            r"a process was .*2 trainings are journaled"):
        TruthBuilder(oracle, cells, [0, 1], out).run(DiesOnThird(), in_flight=1)
    assert len(TruthBuilder(oracle, cells, [0, 1], out).pending) == 2


def test_a_second_writer_of_one_table_is_refused(tmp_path, nb201):
    """Two processes building one table would train everything twice and interleave their
    journal: the second is refused while the first holds the journal's lock."""
    pytest.importorskip("sklearn")
    from archrank.files import hold_lock

    oracle = TrainingOracle("nb201", "digits", recipe=TrainRecipe(epochs=1), width=4)
    cells = [nb201.format(a) for a in nb201.sample(2, np.random.default_rng(0))]
    out = tmp_path / "truth.csv"
    other = hold_lock(journal_path(out), "the truth table's journal")
    with pytest.raises(ArchrankError, match=r"in use \(by another archrank process"):
        TruthBuilder(oracle, cells, [0], out)
    other.close()
    assert len(TruthBuilder(oracle, cells, [0], out).pending) == 2


def _hand_truth(tmp_path, nb201, rows=None, recipe_epochs=5):
    """A truth CSV of five cells x seeds 0, 1 and its bench table JSON, written by hand."""
    from archrank.truth import read_truth  # noqa: F401  (the reader under test)

    cells = [nb201.format(a) for a in nb201.sample(5, np.random.default_rng(1))]
    rows = rows or [(c, 90.0 + k, 89.5 + k, 90.5 + k) for k, c in enumerate(cells)]
    path = tmp_path / "t.csv"
    path.write_text("arch,val_acc,val_acc_s0,val_acc_s1\n" + "".join(
        f"{a},{v},{s0},{s1}\n" for a, v, s0, s1 in rows))
    setting = {"space": "nb201", "seeds": [0, 1], "width": 4, "depth": 1,
               "recipe": {"epochs": recipe_epochs}, "dataset": {"name": "digits",
                                                                "fingerprint": "f00d"}}
    (tmp_path / "t.json").write_text(json.dumps(setting))
    return path, cells, setting


def test_read_truth_refuses_what_would_mislead_a_judgement(tmp_path, nb201):
    """A --recipe that differs from the truth's own record, a repeated cell, an infinite or
    empty column, and a run's export (no seed columns) were read as if right."""
    from archrank.truth import read_truth

    path, cells, setting = _hand_truth(tmp_path, nb201)
    assert len(read_truth(path, "nb201").archs) == 5
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**setting, "recipe": {"epochs": 3}}))
    with pytest.raises(ArchrankError, match=r"--recipe .*other\.json differs from t\.json, the "
                       r"truth's own record, in recipe"):
        read_truth(path, "nb201", other)
    other.write_text(json.dumps({**setting, "space": "nb101"}))
    (tmp_path / "t.json").unlink()
    with pytest.raises(ArchrankError, match=r"other\.json is the recipe of a nb101 truth"):
        read_truth(path, "nb201", other)
    (tmp_path / "t.json").write_text(json.dumps(setting))
    rows = [(c, 90.0 + k, 89.5 + k, 90.5 + k) for k, c in enumerate(cells)]
    for bad, message in (
        ([*rows, (cells[0], 99.0, 99.0, 99.0)], "line 7 repeats the cell of line 2"),
        ([*rows[:4], (cells[4], "inf", 90, 90)], "line 6, field 'val_acc': not finite"),
        ([(c, v, s0, "") for c, v, s0, _ in rows], "column 'val_acc_s1' has no values"),
    ):
        _hand_truth(tmp_path, nb201, bad)
        with pytest.raises(ArchrankError, match=message):
            read_truth(path, "nb201")
    _hand_truth(tmp_path, nb201, [*rows[:4], (cells[4], "", 90, "")])
    with pytest.warns(UserWarning, match="1 cells without a val_acc are left out"):
        assert len(read_truth(path, "nb201").archs) == 4
    path.write_text("arch,val_acc\n" + "".join(f"{c},90\n" for c in cells))  # runs export
    (tmp_path / "t.json").unlink()
    with pytest.raises(ArchrankError, match="needs the columns val_acc and val_acc_s<seed>"):
        read_truth(path, "nb201")


def test_the_better_half_is_half_even_when_cells_tie():
    """Twelve of twenty cells at chance made a 'half' of twelve by >= median."""
    values = np.full((20, 3), 9.19)
    values[:8] += np.random.default_rng(0).normal(5, 1, size=(8, 3))
    assert noise_ceiling(values)["better_half"]["cells"] == 10


def test_a_journal_names_its_truth_without_binding_to_that_path(tmp_path, nb201):
    """The truth a pick is judged by, given by another path or as a copy, resumes the same
    stand-alone journal (its path was compared as a setting)."""
    oracle = TrainingOracle("nb201", "digits", recipe=TrainRecipe(epochs=1), width=4)
    cells = [nb201.format(a) for a in nb201.sample(1, np.random.default_rng(0))]
    out = tmp_path / "picks.csv"
    TruthBuilder(oracle, cells, [0], out, {"truth": "t.csv"})
    assert len(TruthBuilder(oracle, cells, [0], out, {"truth": "/abs/t.csv"}).pending) == 1


def test_bench_table_refuses_a_journal_as_out(cli, tmp_path):
    code, _, err = cli("bench", "table", "--n", "2", "--out", tmp_path / "t.csv.journal.jsonl")
    assert code == 2 and "a truth table's journal name" in err


def test_a_truth_table_is_never_written_over_a_device(tmp_path, nb201):
    """bench table --out /dev/null renamed a regular file over the device (as root)."""
    import os
    import stat

    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    node = tmp_path / "null"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    oracle = TrainingOracle("nb201", "digits", recipe=TrainRecipe(epochs=1), width=4)
    cells = [nb201.format(a) for a in nb201.sample(1, np.random.default_rng(0))]
    with pytest.raises(ArchrankError, match="not standard output, a device or a folder"):
        TruthBuilder(oracle, cells, [0], node)
    assert stat.S_ISCHR(os.stat(node).st_mode)


def test_the_committed_truths_of_more_seeds_extend_those_of_fewer() -> None:
    """benchmarks/truth: the 6- and 10-seed tables hold the 3-seed table's 500 cells, with
    the same setting, and the values of the seeds they share unchanged (each was built from
    the one before with --from), so a figure judged against one is comparable with the
    others; the means are the means of their seeds."""
    from archrank.truth import read_truth

    root = Path(__file__).resolve().parents[1] / "benchmarks" / "truth"
    tables = [read_truth(root / f"nb201_mnist1d_w16{tag}.csv", "nb201")
              for tag in ("", "_s6", "_s10")]
    assert [t.seeds for t in tables] == [[0, 1, 2], list(range(6)), list(range(10))]
    keys = ("recipe", "width", "depth", "dataset")
    assert all({k: t.setting[k] for k in keys} == {k: tables[0].setting[k] for k in keys}
               for t in tables)
    assert all(t.archs == tables[0].archs for t in tables) and len(tables[0].archs) == 500
    for few, more in itertools.pairwise(tables):
        k = len(few.seeds)
        assert np.array_equal(more.per_seed[:, :k], few.per_seed)
    last = tables[-1]
    assert np.allclose(last.val_acc, last.per_seed.mean(axis=1), atol=1e-4)
