"""Fuzzing the CLI in-process through its entry function (issue 16): every reader and option
parser gets a corpus of malformed inputs built here (truncations, bit flips, wrong types,
rich-markup characters, huge and nested values). Each must end in a correct result (exit 0,
or bench check's documented 1 for invalid rows) or one ``error:`` line with exit 2: never a
traceback, an internal error, or a hang."""

from __future__ import annotations

import bz2
import gzip
import json
import pickle
import signal
import sqlite3

import numpy as np
import pytest

from test_nb101_tfrecord import sample_records, write_file
from test_options import CELLS

MARKUP = ["[bold]", "[/]", "[red]x[/red]", "[link=file:///etc]y", "[", "]", "[[/]]"]
HUGE = ["1e999", "-1e999", "Infinity", "NaN", "9" * 5000, "1" + "0" * 400, "-0", "1e-400",
        "[" * 3000 + "]" * 3000, '{"a":' * 2000 + "1" + "}" * 2000, "x" * 100_000]
WRONG = ["", " ", "abc", "true", "null", "[]", "{}", "[1,2]", '{"k": 1}', "3.5", "-7", "0",
         "\x00", "é", "🙂", "--help-not", "1 2"]


class Hang(BaseException):
    """Raised by the alarm: the command ran too long."""


def _alarm(signum, frame):
    raise Hang


@pytest.fixture(scope="module", autouse=True)
def warm_caches():
    """The nb201 hash table built before any deadline runs: a cold cache costs seconds the
    first command to need it would spend (more under load), which is no hang."""
    from archrank.spaces import get_space

    get_space("nb201").hash_table()


@pytest.fixture(autouse=True)
def deadline():
    old = signal.signal(signal.SIGALRM, _alarm)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def judge(cli, argv, seconds: int = 30, ok_codes=(0,)) -> tuple[int, str, str]:
    signal.alarm(seconds)
    try:
        status, out, err = cli(*argv)
    except Hang:
        pytest.fail(f"hang: {argv!r:.300}")
    finally:
        signal.alarm(0)
    assert "Traceback" not in err and "Traceback" not in out, (argv, err)
    assert "internal error" not in err, (repr(argv)[:300], err)
    if status in ok_codes:
        return status, out, err
    assert status == 2, (repr(argv)[:300], status, err[-500:])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], (repr(argv)[:300], err[-800:])
    return status, out, err


# -- corpus helpers --------------------------------------------------------------------------
def mutations(data: bytes, seed: int = 0, n_flips: int = 6) -> list[tuple[str, bytes]]:
    """Truncations and bit flips of ``data`` (deterministic)."""
    rng = np.random.default_rng(seed)
    out = [(f"trunc{k}", data[: len(data) * k // 8]) for k in range(0, 8)]
    for i in range(n_flips):
        arr = bytearray(data)
        for pos in rng.integers(0, len(arr), size=1 + i):
            arr[int(pos)] ^= 1 << int(rng.integers(0, 8))
        out.append((f"flip{i}", bytes(arr)))
    return out


def csv_text(header: str = "arch,acc", cells=CELLS, values=(90, 91, 92, 93)) -> str:
    return header + "\n" + "".join(f"{c},{v}\n" for c, v in zip(cells, values, strict=True))


def csv_corpus() -> list[tuple[str, str]]:
    base = csv_text()
    cases = [("base", base), ("empty", ""), ("header_only", "arch,acc\n"),
             ("dup_col", csv_text("arch,acc,acc".replace(",acc,acc", ",acc"))),
             ("quote", base.replace("90", '"9"0"')), ("nul", base.replace("90", "9\x000")),
             ("wide_row", base.replace(",90", ",90,1,2,3")),
             ("cr_only", base.replace("\n", "\r")), ("latin1", base.replace("acc", "acc\xe9"))]
    for i, m in enumerate(MARKUP):
        cases.append((f"markup_col{i}", csv_text(f"arch,{m}")))
        cases.append((f"markup_arch{i}", base.replace(CELLS[1], m)))
    for i, h in enumerate(HUGE + WRONG):
        cases.append((f"value{i}", base.replace(",91", f",{h.replace(',', ';')}")))
        cases.append((f"arch{i}", base.replace(CELLS[2], h.replace(",", ";"))))
    return cases


def jsonl_corpus() -> list[tuple[str, str]]:
    rows = [{"arch": c, "acc": 90 + i} for i, c in enumerate(CELLS)]
    base = "".join(json.dumps(r) + "\n" for r in rows)
    cases = [("base", base), ("list", json.dumps(rows)), ("scalar", "3"),
             ("list_of_lists", "[[1,2],[3]]"), ("obj", '{"arch": 1}')]
    for i, h in enumerate(HUGE + WRONG + MARKUP):
        cases.append((f"acc{i}", base.replace('"acc": 91', f'"acc": {h}')))
        cases.append((f"acc_str{i}", base.replace('"acc": 91', f'"acc": {json.dumps(h)}')))
        cases.append((f"arch{i}", base.replace(json.dumps(CELLS[0]), json.dumps(h))))
        cases.append((f"key{i}", base.replace('"acc"', json.dumps(h))))
    return cases


# -- readers ---------------------------------------------------------------------------------
def test_fuzz_csv_tables(tmp_path, cli):
    for name, text in csv_corpus():
        path = tmp_path / f"{name}.csv"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        judge(cli, ["bench", "check", path, "--space", "nb201", "--metric", "acc"],
              ok_codes=(0, 1))
        judge(cli, ["search", "--space", "nb201", "--bench", path, "--metric", "acc",
                    "--space-from-bench", "--strategy", "random", "--budget", "2",
                    "--run-dir", tmp_path / f"run-{name}"])
    for name, data in mutations(csv_text().encode() * 3):
        path = tmp_path / f"m-{name}.csv.gz"
        path.write_bytes(gzip.compress(data)[: len(data)] if "trunc" in name else data)
        judge(cli, ["bench", "check", path, "--space", "nb201"], ok_codes=(0, 1))
        gz = tmp_path / f"g-{name}.csv.gz"
        good = gzip.compress(csv_text().encode())
        gz.write_bytes(dict(mutations(good))[name])
        judge(cli, ["bench", "check", gz, "--space", "nb201"], ok_codes=(0, 1))


def test_fuzz_json_tables(tmp_path, cli):
    for name, text in jsonl_corpus():
        for suffix in (".jsonl", ".json"):
            path = tmp_path / f"{name}{suffix}"
            path.write_text(text)
            judge(cli, ["bench", "check", path, "--space", "nb201", "--metric", "acc"],
                  ok_codes=(0, 1))
    base = "".join(json.dumps({"arch": c, "acc": i}) + "\n" for i, c in enumerate(CELLS))
    for name, data in mutations(base.encode()):
        path = tmp_path / f"m-{name}.jsonl"
        path.write_bytes(data)
        judge(cli, ["bench", "predictor", "--space", "nb201", "--bench", path, "--metric",
                    "acc", "--predictors", "xgb", "--train-sizes", "2", "--seeds", "1"])


def test_fuzz_official_formats(tmp_path, cli):
    records, _ = sample_records()
    good = write_file(tmp_path / "good.tfrecord", records).read_bytes()
    for name, data in mutations(good, n_flips=10):
        path = tmp_path / f"{name}.tfrecord"
        path.write_bytes(data)
        judge(cli, ["bench", "check", path, "--space", "nb101"], ok_codes=(0, 1))
    objs = {"list": [1, 2], "none": None, "str": "x", "deep": [[[[[1]]]]] * 3,
            "dict": {"arch2infos": {0: {"x": 1}}, "meta_archs": ["[bold]"]}}
    for name, obj in objs.items():
        for suffix, dump in ((".pth", pickle.dumps), (".pickle.pbz2",
                                                       lambda o: bz2.compress(pickle.dumps(o)))):
            path = tmp_path / f"{name}{suffix}"
            path.write_bytes(dump(obj))
            judge(cli, ["bench", "check", path, "--space", "nb201"], ok_codes=(0, 1))
            for mname, data in mutations(dump(obj), n_flips=2)[::3]:
                mp = tmp_path / f"{name}-{mname}{suffix}"
                mp.write_bytes(data)
                judge(cli, ["bench", "check", mp, "--space", "nb201"], ok_codes=(0, 1))


def test_fuzz_npz_datasets(tmp_path, cli):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 1, 8)).astype(np.float32)
    y = np.array([0, 1] * 4)
    variants = {
        "labels_huge": dict(y_train=np.array([0, 1, 2, 10**9] * 2)),
        "labels_neg": dict(y_train=-y), "labels_float": dict(y_train=y + 0.5),
        "labels_str": dict(y_train=np.array(["a"] * 8)), "x_str": dict(x_train=np.array(["a"] * 8)),
        "x_nan": dict(x_train=np.full((8, 1, 8), np.nan, np.float32)),
        "x_5d": dict(x_train=np.zeros((8, 1, 1, 1, 8), np.float32)),
        "y_shape": dict(y_train=np.zeros((8, 2))), "x_empty": dict(x_train=np.zeros((0, 1, 8))),
        "one_class": dict(y_train=np.zeros(8, np.int64)),
    }
    base = {"x_train": x, "y_train": y, "x_val": x, "y_val": y}
    good = tmp_path / "good.npz"
    np.savez(good, **base)
    for name, data in [*((k, None) for k in variants), *mutations(good.read_bytes())]:
        path = tmp_path / f"{name}.npz"
        if data is None:
            np.savez(path, **{**base, **variants[name]})
        else:
            path.write_bytes(data)
        judge(cli, ["search", "--oracle", "train", "--dataset", path, "--epochs", "1",
                    "--strategy", "random", "--budget", "1", "--run-dir",
                    tmp_path / f"run-{name}"], seconds=60)


def test_fuzz_run_directories(tmp_path, cli):
    table = tmp_path / "t.csv"
    table.write_text(csv_text())
    run = tmp_path / "[bold]run[/]"
    judge(cli, ["search", "--space", "nb201", "--bench", table, "--metric", "acc",
                "--space-from-bench", "--strategy", "random", "--budget", "3", "--run-dir", run])
    db = (run / "run.sqlite").read_bytes()
    for name, data in mutations(db, n_flips=8):
        bad = tmp_path / f"bad-{name}"
        bad.mkdir()
        (bad / "run.sqlite").write_bytes(data)
        for argv in (["runs", "show", bad], ["runs", "export", bad, "--csv"],
                     ["search", "--resume", bad]):
            judge(cli, argv)
    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / "run.sqlite").write_bytes(db)
    with sqlite3.connect(edited / "run.sqlite") as conn:
        conn.execute("UPDATE config SET value = ? WHERE key = 'budget'", ('"many"',))
        conn.execute("UPDATE evaluations SET metrics = '[[[' WHERE seq = 0")
    for argv in (["runs", "show", edited], ["runs", "export", edited],
                 ["search", "--resume", edited]):
        judge(cli, argv)


# -- option parsers --------------------------------------------------------------------------
def test_fuzz_options(tmp_path, cli):
    table = tmp_path / "t.csv"
    table.write_text(csv_text())
    search = ["search", "--space", "nb201", "--bench", table, "--metric", "acc",
              "--space-from-bench", "--budget", "2"]
    values = HUGE + WRONG + MARKUP
    for i, v in enumerate(values):
        run = ["--run-dir", tmp_path / f"r{i}"]
        for key in ("explore", "n_init", "predictor.epochs", "predictor.loss", "x", "a.b"):
            judge(cli, [*search, *run, "--set", f"{key}={v}"])
        judge(cli, [*search, *run, "--set", v])
        for flag in ("--budget", "--seed", "--workers", "--strategy", "--predictor",
                     "--space", "--metric", "--filter", "--executor"):
            args = [a for a in search]
            judge(cli, [*args, *run, flag, v])
        judge(cli, ["bench", "predictor", "--space", "nb201", "--bench", table, "--metric",
                    "acc", "--seeds", "1", "--train-sizes", v])
        judge(cli, ["bench", "predictor", "--space", "nb201", "--bench", table, "--metric",
                    "acc", "--seeds", "1", "--predictors", v, "--train-sizes", "2"])
        judge(cli, ["bench", "search", "--space", "nb201", "--bench", table, "--metric", "acc",
                    "--space-from-bench", "--seeds", "1", "--strategies", v])
        judge(cli, ["bench", "search", "--space", "nb201", "--bench", table, "--metric", "acc",
                    "--space-from-bench", "--seeds", "1", "--set", f"rea.population={v}",
                    "--strategies", "rea"])
        judge(cli, ["space", "enumerate", v, "--out", tmp_path / "o.jsonl"])
        judge(cli, ["zc", "--n", "1", "--width", v, "--out", tmp_path / "z.csv"])
        judge(cli, ["bench", "check", table, "--space", "nb201", "--metric", v,
                    "--json", tmp_path / f"{i}-{v[:20]}.json".replace("/", "_")])
