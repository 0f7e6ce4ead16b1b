"""``archrank bench check``: validate a benchmark table against a search space."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.table import Table
from rich.text import Text

from archrank.cli.app import CHECK_FAILED, FILTER_HELP, VAL_SAMPLES, bench_app, console
from archrank.files import check_output, check_plot_dir, write_json
from archrank.tables import with_filters


def check_report(spec: str, space_name: str, metric: str | None = None,
                 show: int = 5) -> dict[str, Any]:
    """Everything ``bench check`` reports, as a JSON-able dict."""
    from archrank.spaces import get_space
    from archrank.tables import check_one_table, mixed_datasets, scan_benchmark

    space = get_space(space_name)
    start = time.perf_counter()
    scan = scan_benchmark(spec, space)
    bench = scan.bench
    hashes = bench.hashes  # recomputed from every valid row
    seconds = time.perf_counter() - start
    lines = scan.lines
    where_unit = bench.line_unit if lines is not None else "row"  # "record" in a JSON list

    def where(i: int) -> int:
        return lines[i] if lines is not None else i + 1

    mismatches: list[dict[str, Any]] = []
    n_mismatch = 0
    n_checked = 0
    if scan.recorded_hashes is not None:
        for i, (rec, got) in enumerate(zip(scan.recorded_hashes, hashes, strict=True)):
            if rec is None:
                continue
            n_checked += 1
            if rec != got:
                n_mismatch += 1
                if len(mismatches) < show:
                    mismatches.append({where_unit: where(i), "recorded": rec, "computed": got})
    report: dict[str, Any] = {
        "kind": "bench-check",  # a record, no report input (report.kinds.RECORDS)
        "schema": 1,
        "file": spec,
        "space": space.name,
        "rows": scan.rows,
        "row_name": scan.row_name,  # "module" for an NB101 tfrecord (its records averaged)
        "valid": scan.valid,
        "invalid": scan.invalid,
        "unique": bench.n_unique,
        "duplicates": scan.valid - bench.n_unique,
        "hash_column": scan.recorded_hashes is not None,
        "hashes_checked": n_checked,
        "hash_mismatches": n_mismatch,
        "metrics": bench.metrics,
        "cost_column": bench.cost_column,
        "problems": [{p.unit: p.line, "message": p.message} for p in scan.problems[:show]],
        "first_mismatches": mismatches,
        # rows repeating an earlier row's exact text: queries never return them
        "repeated_rows": len(bench.text_repeats()),
        "seconds": round(seconds, 3),
        # rows of several datasets: the unique / duplicate counts are over all of them
        "mixed_datasets": mixed_datasets(bench, spec),
    }
    if metric is not None:
        # a summary of one metric over several datasets' rows means nothing (the rows are
        # checked whatever they hold): a --filter picks one
        check_one_table(bench, spec)
        col = bench.values(metric)
        present = ~np.isnan(col)
        infinite = np.flatnonzero(np.isinf(col))  # no score: search and fits refuse them
        info: dict[str, Any] = {"name": metric, "values": int(present.sum()),
                                "missing": int((~present).sum()), "infinite": len(infinite),
                                "first_infinite": [{where_unit: where(int(i)),
                                                    "value": str(float(col[i]))}
                                                   for i in infinite[:show]]}
        conflicts = bench.conflicting_repeats(metric)
        info["conflicting_repeats"] = len(conflicts)
        info["first_conflicts"] = [
            {where_unit: where(j), "repeats": where(i), "values": [str(float(col[i])),
                                                                 str(float(col[j]))]}
            for i, j in conflicts[:show]]
        # the best value a query can get: a later row repeating a cell's text never answers
        finite = np.zeros(len(col), dtype=bool)
        finite[bench.answering_rows()] = True
        finite &= np.isfinite(col)
        if finite.any():
            i = int(np.flatnonzero(finite)[np.argmax(col[finite])])
            info.update({"min": float(col[finite].min()), "max": float(col[i]),
                         "mean": _finite_mean(col[finite]),
                         "best_arch": space.format(bench.archs[i]), "best_hash": hashes[i],
                         # rows sharing the best value, and how many distinct cells they are
                         "best_rows": int((col[finite] == col[i]).sum()),
                         "best_cells": len({hashes[j] for j in np.flatnonzero(col == col[i])})})
        report["metric"] = info
    return report


def _finite_mean(values: np.ndarray) -> float:
    """The mean of finite values without overflow (1e308s average to 1e308, not inf)."""
    with np.errstate(over="ignore"):
        mean = float(values.mean())
    if math.isfinite(mean):
        return mean
    scale = float(np.abs(values).max())
    return float(np.mean(values / scale) * scale)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _print(report: dict[str, Any]) -> None:
    table = Table(title=f"bench check: {report['file']} ({report['space']})", show_header=False)
    table.add_column("item", style="bold")
    table.add_column("value", overflow="fold")
    ok = "green" if report["invalid"] == 0 else "red"
    rows = f"{report.get('row_name', 'row')}s"
    table.add_row(rows if rows == "rows" else f"rows ({rows})",
                  _fmt(report["rows"]))
    table.add_row("valid", Text(_fmt(report["valid"]), style=ok))
    table.add_row("invalid", Text(_fmt(report["invalid"]), style=ok))
    table.add_row("unique cells (canonical hash)", _fmt(report["unique"]))
    table.add_row("duplicates", _fmt(report["duplicates"]))
    if report["repeated_rows"]:
        table.add_row("rows repeating a cell's exact text", _fmt(report["repeated_rows"]))
    if report["hash_column"]:
        bad = "green" if report["hash_mismatches"] == 0 else "red"
        table.add_row("hashes checked", _fmt(report["hashes_checked"]))
        table.add_row("hash mismatches", Text(_fmt(report["hash_mismatches"]), style=bad))
    else:
        table.add_row("hash column", "none (nothing to compare)")
    table.add_row("metric columns", ", ".join(report["metrics"]) or "(none)")
    table.add_row("cost column", report["cost_column"] or "(none)")
    if "metric" in report:
        m = report["metric"]
        table.add_row(f"{m['name']}: values / missing", f"{m['values']:,} / {m['missing']:,}")
        if m["conflicting_repeats"]:
            table.add_row(f"{m['name']}: conflicting repeats",
                          Text(_fmt(m["conflicting_repeats"]), style="red"))
        if m["infinite"]:
            table.add_row(f"{m['name']}: infinite (no score)",
                          Text(_fmt(m["infinite"]), style="yellow"))
        if "max" in m:
            table.add_row(f"{m['name']}: min / mean / max (finite)",
                          f"{_fmt(m['min'])} / {_fmt(m['mean'])} / {_fmt(m['max'])}")
            table.add_row(f"{m['name']}: best", m["best_arch"])
            if m["best_rows"] > 1:
                table.add_row(f"{m['name']}: rows at the best value",
                              f"{m['best_rows']:,} ({m['best_cells']:,} distinct cells)")
    table.add_row("read and hashed in", f"{report['seconds']:.2f} s")
    console.print(table)
    if report["rows"] == 0:
        console.print(Text.assemble(("empty", "red"), " no data rows: nothing to search or "
                                    "fit (a header alone?)"))
    if report.get("mixed_datasets"):
        console.print(Text.assemble(("mixed datasets", "yellow"),
                                    f" {report['mixed_datasets']}"))
    for p in report["problems"]:
        unit = next(k for k in p if k != "message")
        console.print(Text.assemble(("invalid", "red"), f" {unit} {p[unit]}: {p['message']}"))
    if report["invalid"] > len(report["problems"]):
        console.print(f"... and {report['invalid'] - len(report['problems'])} more invalid "
                      f"{report.get('row_name', 'row')}s")
    for v in report.get("metric", {}).get("first_infinite", []):
        unit = next(k for k in v if k != "value")
        console.print(Text.assemble(("infinite", "yellow"), f" {unit} {v[unit]}: "
                                    f"{report['metric']['name']} is {v['value']} (fine as a "
                                    "proxy input; search and fits refuse it as a score)"))
    for c in report.get("metric", {}).get("first_conflicts", []):
        unit = next(k for k in c if k not in ("repeats", "values"))
        console.print(Text.assemble(
            ("conflicting repeat", "red"), f" {unit} {c[unit]} repeats the cell of {unit} "
            f"{c['repeats']} with another {report['metric']['name']} ({c['values'][1]} vs "
            f"{c['values'][0]}); queries see the first only"))
    for m in report["first_mismatches"]:
        unit = next(k for k in m if k not in ("recorded", "computed"))
        console.print(Text.assemble(("hash mismatch", "red"), f" {unit} {m[unit]}: file says "
                                    f"{m['recorded']}, recomputed {m['computed']}"))


@bench_app.command("check")
def check(
    file: str = typer.Argument(..., help="Table (.csv, .jsonl, .json), NB101 .tfrecord, "
                               "NB201 .pth or NATS-Bench file/dir (200-epoch schedule), or "
                               "nbgraph:DATASET."),
    space: str = typer.Option(..., "--space", "-s", help="Search space: nb101, nb201, nbgraph."),
    metric: str | None = typer.Option(None, "--metric", "-m",
                                      help="Also summarise this column (and check it exists)."),
    filters: list[str] | None = typer.Option(None, "--filter", help=FILTER_HELP),
    json_out: Path | None = typer.Option(None, "--json", help="Write the report as JSON here "
                                         "('-' for stdout)."),
    show: int = typer.Option(5, "--show", min=0, help="How many problems to list."),
) -> None:
    """Check a benchmark table: valid and invalid rows, duplicates, disagreeing hashes.
    Every row's canonical hash is recomputed; the report gives the rows, the invalid ones
    with their line numbers, duplicates (rows whose canonical hash was already seen) and rows
    whose `hash` column disagrees with the recomputed hash.

    Exits with status 1 when the table has no data rows, some rows are invalid, some hashes
    disagree, or a cell written twice with the same text has two values of --metric (a search
    would see the first only); infinite values of --metric are listed (a proxy's -inf is a
    value; as a score, search refuses it).

    Example: archrank bench check ../shared/data/nb101_10k.csv --space nb101 --json check.json
    """
    if json_out is not None:
        check_output(json_out, "--json", [file])
    report = check_report(with_filters(file, filters), space, metric, show)
    if json_out is not None and str(json_out) == "-":
        write_json(json_out, report)
    else:
        _print(report)
        if json_out is not None:
            write_json(json_out, report)
    if (report["invalid"] or report["hash_mismatches"] or report["rows"] == 0
            or report.get("metric", {}).get("conflicting_repeats")):
        raise typer.Exit(CHECK_FAILED)


# -- bench oneshot ------------------------------------------------------------------------------
@bench_app.command("oneshot")
def bench_oneshot_cmd(
    space: str = typer.Option("nb201", "--space", help="Search space (nb201)."),
    dataset: str | None = typer.Option(None, "--dataset", help="The truth's dataset (default: "
                                       "the one its recipe names; checked by fingerprint)."),
    truth: Path = typer.Option(..., "--truth", help="Multi-seed truth table of bench table."),
    recipe: Path | None = typer.Option(None, "--recipe", help="The truth's recipe: its bench "
                                       "table --json report (default: TABLE.json or the "
                                       "journal beside the table)."),
    width: int | None = typer.Option(None, "--width", help="Checked against the truth's."),
    depth: int | None = typer.Option(None, "--depth", help="Checked against the truth's."),
    seeds: int = typer.Option(3, "--seeds", help="Supernet seeds 0..N-1."),
    first_seed: int = typer.Option(0, "--first-seed", help="First supernet seed (seeds run "
                                   "in other processes share --work-dir)."),
    epochs: int | None = typer.Option(None, "--epochs",
                                      help="Supernet epochs (default: oneshot train's, 150)."),
    sampler: str = typer.Option("uniform", "--sampler", help="Supernet path sampler: uniform "
                                "(SPOS) or fair (each op once per block of steps)."),
    samples: int = typer.Option(1000, "--samples", help="Sampled cells the predictor is "
                                "fitted to."),
    predictor: str = typer.Option("gcn", "--predictor", help="Graph predictor (gcn, gates)."),
    sets: list[str] | None = typer.Option(None, "--set", help="Predictor option, e.g. "
                                          "epochs=100."),
    score: str = typer.Option("loss", "--score", help="Supernet score: loss (validation "
                              "loss, the default: it ranked the truth better) or acc "
                              "(also val_loss / val_acc, as oneshot fit names them)."),
    bn_recal: bool = typer.Option(True, "--bn-recal/--no-bn-recal",
                                  "--bn-recalibrate/--no-bn-recalibrate", help="Re-estimate BN "
                                  "statistics per sub-network before scoring it."),
    calib_batches: int = typer.Option(4, "--calib-batches", help="Training batches for BN "
                                      "recalibration."),
    val_samples: int | None = typer.Option(
        VAL_SAMPLES, "--val-samples", help="Score sub-networks on the first N validation "
        "signals (2,000, as measured; N at least the split's size: all)."),
    standalone: bool = typer.Option(True, "--standalone/--no-standalone",
                                    help="Train the fitted table's best cell stand-alone."),
    threads: int = typer.Option(1, "--threads", min=1, help="Torch threads."),
    work_dir: Path = typer.Option(Path("oneshot-bench"), "--work-dir", help="Supernets, "
                                  "scores, fits and trainings (a rerun resumes from it)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the report here."),
    plot: Path | None = typer.Option(None, "--plot", help="Also write the figures (SVG and "
                                     "PNG) to this directory."),
) -> None:
    """Rank a multi-seed truth with a supernet's scores and with their graph fit.
    Per seed: train the supernet at the truth's setting, score the
    truth's cells, fit the predictor to the scores of --samples sampled cells, and report
    Kendall tau and precision@5% against the truth's mean val_acc (also as fractions of its
    ceiling), where each top-1 pick lands in the truth (no constraint, and FLOPs at most the
    space's 25th percentile), and the fitted best cell of the space trained stand-alone.
    Resumable (--work-dir). Supernets train on the CPU, so that figures compare across
    machines and a work dir resumes where it started (oneshot train takes --device).

    Example:
      archrank bench oneshot --space nb201 --dataset mnist1d --truth truth.csv --seeds 3 \\
        --epochs 50 --samples 1000 --json out.json --plot plots
    """
    from archrank.bench.common import check_seeds
    from archrank.bench.oneshot import OneshotBench, bench_oneshot
    from archrank.cli.app import parse_sets
    from archrank.cli.oneshot import eta_progress
    from archrank.cli.search import keep_partial, save_report
    from archrank.errors import ArchrankError, Interrupted

    if json_out is not None:
        check_output(json_out, "--json", [truth, work_dir])
    check_plot_dir(plot)
    if not bn_recal and calib_batches != 4:  # it would change file names, not scores
        raise ArchrankError("--calib-batches only applies with BN recalibration (without "
                            "--no-bn-recal)")
    cfg = OneshotBench(truth=truth, space=space, dataset=dataset, recipe=recipe, width=width,
                       depth=depth, seeds=check_seeds(seeds, first_seed),
                       **({} if epochs is None else {"epochs": epochs}), sampler=sampler,
                       samples=samples,
                       val_samples=val_samples,
                       predictor=predictor, predictor_params=parse_sets(sets, own=predictor),
                       score={"val_loss": "loss", "val_acc": "acc"}.get(score, score),
                       bn_recalibrate=bn_recal, calib_batches=calib_batches,
                       standalone=standalone, work_dir=work_dir, threads=threads)
    progress = eta_progress(transient=True)
    task = progress.add_task("", total=None, info="")

    def on_progress(stage: str, done: int, total: int) -> None:
        progress.update(task, description=stage, completed=done, total=total)

    try:
        with progress:
            report = bench_oneshot(cfg, progress=on_progress, say=lambda text:
                                   progress.console.print(text, soft_wrap=True))
    except Interrupted as exc:
        if exc.partial is not None:
            _print_oneshot(exc.partial)
        raise Interrupted(exc.message + keep_partial(json_out, exc.partial)) from None
    _print_oneshot(report)
    save_report(report, json_out, plot)


def _print_oneshot(report: dict[str, Any]) -> None:
    from archrank.bench.common import format_stat, results_table

    st, top = report["settings"], report["truth_ceiling_kendall_tau"]
    pct, raw_pct = report["top1_truth_percentile"], report["supernet_top1_truth_percentile"]
    rows = [[name, report[f"{key}_kendall_tau"], report[f"{key}_fraction_of_ceiling"],
             report[f"{key}_precision_at_5pct"], p["none"], p["flops_p25"]]
            for name, key, p in (("supernet (raw)", "supernet", raw_pct),
                                 (f"fitted ({st['predictor']})", "fitted", pct))]
    prior = st.get("size_prior")
    for name, key in (("supernet", "supernet_size_prior"), ("fitted", "fitted_size_prior")):
        if f"{key}_kendall_tau" in report:  # reports written before session 18 lack them
            rows.append([f"{name} + FLOPs rank ({prior:g})", report[f"{key}_kendall_tau"],
                         report[f"{key}_fraction_of_ceiling"],
                         report[f"{key}_precision_at_5pct"],
                         *(report[f"{key}_top1_truth_percentile"][c]
                           for c in ("none", "flops_p25"))])
    for name, b in report.get("cost_baselines", {}).items():
        rows.append([f"{name} alone (no training)", b["kendall_tau"], b["fraction_of_ceiling"],
                     b["precision_at_5pct"],
                     *(b["top1"][c]["truth_percentile"] if b["top1"][c] else None
                       for c in ("none", "flops_p25"))])
    console.print(results_table(
        f"{st['truth']} · {st['truth_cells']} cells · {len(report['seeds'])} seeds · "
        f"{st['epochs']} epochs, {st.get('sampler', 'uniform')} sampling · "
        f"score {st['score']}{'' if st['bn_recalibrate'] else ' (no BN recal)'}",
        ["method", "Kendall tau", "of ceiling", "P@5%", "top-1 pct", "top-1 pct FLOPs cap"],
        rows, seeds=len(report["seeds"])))
    console.print(f"truth ceiling: Kendall tau {format_stat(top)} (an error-free "
                  f"predictor against the mean of {len(st['train_seeds'])} seeds)")
    for key, what in (("space_pick", "fitted best cell of the space"),
                      ("space_pick_size_prior", "the same, blended with the FLOPs rank "
                       f"({st.get('size_prior', 0):g})")):
        if report.get(key):
            p = report[key]
            console.print(f"{what}, trained stand-alone: val_acc {p['val_acc']['mean']:.2f}, "
                          f"truth percentile {p['truth_percentile']['mean']:.1f}")
    s = report["seconds"]
    console.print("seconds per seed: " + ", ".join(
        f"{k} {v['mean']:.1f}" for k, v in s.items() if isinstance(v, dict)))
