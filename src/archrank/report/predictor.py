"""``bench predictor`` JSON in the report: Kendall tau and precision@5% against training size
per predictor (mean ± std over seeds), the results table, and predicted-vs-true for one
(predictor, size)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archrank.bench.common import format_stat
from archrank.bench.predictor import KIND, SCHEMA
from archrank.errors import ArchrankError
from archrank.report import figures
from archrank.report.kinds import (
    Figure,
    Kind,
    ReportOptions,
    Section,
    Table,
    need,
    numbers,
    register,
)

QUALITY = (("kendall_tau", "Kendall tau"), ("precision_at_5pct", "precision@5%"))


@dataclass
class PredictorBench:
    path: Path
    data: dict[str, Any]

    @property
    def settings(self) -> dict[str, Any]:
        return self.data["settings"]


def read_predictor(path: Path, data: dict[str, Any]) -> PredictorBench:
    settings = need(path, data, "settings", dict, "an object")
    for key in ("space", "metric", "seeds"):
        if key not in settings:
            raise ArchrankError(f"{path}: settings.{key} is missing")
    names = settings.get("predictors", [])
    if not isinstance(names, list) or not all(isinstance(v, str) for v in names):
        raise ArchrankError(f"{path}: settings.predictors is not a list of predictor names")
    results = need(path, data, "results", list, "a list")
    if not results:
        raise ArchrankError(f"{path}: no fit finished (results is empty"
                            f"{': the bench was interrupted' if data.get('interrupted') else ''})")
    for k, entry in enumerate(results):
        ok = isinstance(entry, dict) and isinstance(entry.get("predictor"), str) and \
            isinstance(entry.get("train_size"), int) and all(
                isinstance(entry.get(m), dict) and "mean" in entry[m] and "std" in entry[m]
                for m, _ in QUALITY)
        if not ok:
            raise ArchrankError(f"{path}: results[{k}] is not a bench predictor result "
                                "(predictor, train_size, kendall_tau/precision_at_5pct "
                                "mean and std)")
        seeds = entry.get("seeds", 0)
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 0:
            raise ArchrankError(f"{path}: results[{k}].seeds is not a count ({seeds!r})")
        for m, _ in QUALITY:
            for part in ("mean", "std"):
                value = entry[m][part]
                if value is not None and (isinstance(value, bool)
                                          or not isinstance(value, int | float)):
                    raise ArchrankError(f"{path}: results[{k}].{m}.{part} is not a number "
                                        f"({value!r})")
            if entry[m]["std"] is not None and entry[m]["std"] < 0:
                raise ArchrankError(f"{path}: results[{k}].{m}.std is negative")
    samples = data.get("samples", [])
    if not isinstance(samples, list) or not all(
            isinstance(s, dict) and isinstance(s.get("true"), list)
            and isinstance(s.get("predicted"), list) and len(s["true"]) == len(s["predicted"])
            for s in samples):
        raise ArchrankError(f"{path}: field 'samples' is not a list of "
                            "{predictor, train_size, true, predicted} objects")
    for k, sample in enumerate(samples):
        for key in ("true", "predicted"):
            numbers(path, f"samples[{k}].{key}", sample[key])
    return PredictorBench(path, data)


def _pick_sample(bench: PredictorBench, choice: str | None) -> dict[str, Any] | None:
    """The sample named by ``--scatter PREDICTOR:SIZE``, else the best mean tau at the largest
    size."""
    samples = bench.data.get("samples") or []
    if not samples:
        return None
    if choice:
        name, _, size = choice.partition(":")
        found = [s for s in samples if s["predictor"] == name
                 and (not size or str(s["train_size"]) == size)]
        if found:  # a predictor alone: its largest training size, as the default choice
            return max(found, key=lambda s: s["train_size"])
        have = ", ".join(f"{s['predictor']}:{s['train_size']}" for s in samples)
        raise ArchrankError(f"--scatter {choice}: {bench.path} has no such sample (has {have})")
    results = bench.data["results"]
    biggest = max(r["train_size"] for r in results)
    best = max((r for r in results if r["train_size"] == biggest),
               key=lambda r: r["kendall_tau"]["mean"])
    return next((s for s in samples if s["predictor"] == best["predictor"]
                 and s["train_size"] == biggest), samples[0])


def _seed_counts(results: Sequence[dict[str, Any]]) -> str:
    """How many seeds each point stands for: one number when all agree."""
    counts = sorted({int(r.get("seeds", 0)) for r in results})
    return f"{counts[0]} each" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} per point"


def predictor_figures(bench: PredictorBench, n: int = 0, scatter: str | None = None
                      ) -> list[Figure]:
    st = bench.settings
    results = bench.data["results"]
    space, metric = st["space"], st["metric"]
    rows = st.get("rows")
    out = [Figure(
        f"predictors{n}_quality",
        figures.quality_figure(results, QUALITY, title=f"{space} · {metric}"),
        f"Ranking quality of each predictor against the size of its training set: Kendall tau "
        f"and precision@5% between predicted and true {metric} over every table row not "
        f"trained on ({rows or '?'} rows in all); points are means over the random training "
        f"sets (seeds) each fit finished with ({_seed_counts(results)}), bars one standard "
        "deviation.")]
    sample = _pick_sample(bench, scatter)
    if sample is not None:
        out.append(Figure(
            f"predictors{n}_scatter_{sample['predictor']}_{sample['train_size']}",
            figures.scatter_figure(sample["true"], sample["predicted"],
                                   xlabel=f"true {metric}", ylabel="predicted score",
                                   title=f"{sample['predictor']}, {sample['train_size']} "
                                         "training cells"),
            f"Predicted score against true {metric} for {sample['predictor']} trained on "
            f"{sample['train_size']} cells (seed {sample.get('seed', '?')}), on "
            f"{len(sample['true'])} test cells drawn uniformly from those not trained on; tau "
            "here is on these cells only (the table's tau is on all of them)."))
    return out


def render_predictors(benches: Sequence[PredictorBench], options: ReportOptions
                      ) -> list[Section]:
    sections = []
    for n, bench in enumerate(benches):
        st = bench.settings
        sec = Section(f"Predictor benchmark: {st['space']}, {st['metric']}",
                      intro=f"{bench.path.name} · table {Path(str(st.get('bench'))).name} · "
                            f"predictors {', '.join(st.get('predictors', []))} · "
                            f"seeds: {_seed_counts(bench.data['results'])}"
                            + (" · interrupted: the fits that finished"
                               if bench.data.get("interrupted") else ""))
        figs = predictor_figures(bench, n, options.scatter)
        sec.blocks.append(figs[0])
        rows = []
        for r in bench.data["results"]:
            def pm(key: str, r: dict[str, Any] = r) -> str:
                # "-" where no seed gave one; the mean alone for one seed
                return format_stat(r.get(key), 3, r.get("seeds"))

            fit = r.get("fit_seconds")
            n10 = r.get("n_at_10")
            rows.append([r["predictor"], str(r["train_size"]), pm("kendall_tau"),
                         pm("spearman"), pm("precision_at_5pct"),
                         format_stat(n10["mean"], 1) if isinstance(n10, dict) else "-",
                         format_stat(fit, 2) if isinstance(fit, int | float) else "-"])
        sec.blocks.append(Table(
            ["predictor", "n train", "Kendall tau", "Spearman", "precision@5%", "N@10",
             "fit s"], rows,
            "Mean ± population standard deviation over the seeds (the mean alone for one "
            "seed); N@10: true rank (1 = best) of the best of the predictor's top 10; fit s: "
            "median wall seconds of one fit."))
        sec.blocks += figs[1:]
        sections.append(sec)
    return sections


register(Kind(KIND, SCHEMA, "bench predictor JSON", read_predictor, render_predictors))
