"""``bench oneshot``: how well a supernet's shared-weight scores, and their graph-network fit
over the whole space, rank a multi-seed stand-alone truth (issue 11).

Per seed: train the supernet at the truth's setting (space, width, depth, dataset; the
truth's recipe is read with ``truth.read_truth``), score the truth's cells with shared weights
(BN recalibrated unless asked not to), fit the predictor (``oneshot.fit.fit_space``) to the
scores of a uniform sample of the space, and compare both with the truth's mean ``val_acc``:
Kendall tau and precision@5%, also as fractions of the truth's own ceiling (the tau an
error-free predictor reaches against it, ``truth.ceiling_kendall_tau``); where each top-1 pick
among the truth's cells lands in the truth, with no constraint and under a FLOPs cap at the
25th percentile of the whole space's FLOPs; and the fitted table's best cell of the whole
space, trained stand-alone with the truth's recipe and training seeds. The raw and fitted
scores are also judged blended with the FLOPs rank (``oneshot.hardware.size_prior``, weight
``BENCH_SIZE_PRIOR``), as ``oneshot select --size-prior`` orders cells.

Durable: everything a seed costs lives in ``work_dir`` under the setting's name: the supernet
checkpoint (every epoch), the shared-weight scores (journaled per chunk, keyed by cell, so a
new truth or sample only scores what is new), the fitted score table and the stand-alone
trainings. A killed bench, run again, continues where it stopped; the seconds reported are
those the work cost when it was done.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from archrank.bench.common import envelope, interrupted, percentile, stat
from archrank.errors import ArchrankError
from archrank.files import write_output
from archrank.oneshot.hardware import live_size, size_prior
from archrank.oneshot.scoring import JournaledScorer, ScoreOptions, journal_header
from archrank.oneshot.trainer import DEFAULT_EPOCHS

KIND = "bench-oneshot"
SCHEMA = 1
SCORES = {"acc": "val_acc", "loss": "val_loss"}  # --score: the supernet score ranked and fitted
FLOPS_CAP_PERCENTILE = 25.0
CONSTRAINTS = ("none", "flops_p25")
# the rankings judged: the supernet's scores, their fit, and each blended with the FLOPs rank
METHODS = ("supernet", "fitted", "supernet_size_prior", "fitted_size_prior")
BENCH_SIZE_PRIOR = 0.5  # weight of the FLOPs rank in the blended rankings

Say = Callable[[str], None]
Progress = Callable[[str, int, int], None]  # stage, done, total


@dataclass
class OneshotBench:
    """The settings of one ``bench oneshot`` (see the module docstring)."""

    truth: str | Path
    space: str = "nb201"
    dataset: str | None = None  # default: the truth's
    recipe: str | Path | None = None  # default: beside the truth
    width: int | None = None
    depth: int | None = None
    seeds: Sequence[int] = (0, 1, 2)
    epochs: int = DEFAULT_EPOCHS
    sampler: str = "uniform"  # the supernet's path sampler (oneshot.sampler.SAMPLERS)
    samples: int = 1000
    predictor: str = "gcn"
    predictor_params: dict[str, Any] = field(default_factory=dict)
    score: str = "loss"  # ranked the committed truth better than accuracy (docs/benchmarks.md)
    bn_recalibrate: bool = True
    calib_batches: int = 4
    val_samples: int | None = None  # score on this many validation signals (None: all)
    standalone: bool = True
    work_dir: str | Path = "oneshot-bench"
    threads: int = 1

    def check(self) -> None:
        """One-line errors for bad settings, before any work."""
        if self.score not in SCORES:
            raise ArchrankError(f"--score {self.score}: choose acc or loss")
        if self.epochs < 1:
            raise ArchrankError(f"--epochs must be at least 1, got {self.epochs}")
        from archrank.oneshot.sampler import SAMPLERS

        if self.sampler not in SAMPLERS:
            raise ArchrankError(f"--sampler {self.sampler}: choose one of "
                                f"{', '.join(SAMPLERS)}")
        if self.samples < 2:
            raise ArchrankError(f"--samples must be at least 2, got {self.samples}")
        if not self.seeds:
            raise ArchrankError("--seeds must be at least 1")
        if self.val_samples is not None and self.val_samples < 1:
            raise ArchrankError(f"--val-samples must be at least 1, got {self.val_samples}")
        if self.calib_batches < 1:
            raise ArchrankError(f"--calib-batches must be at least 1, got {self.calib_batches}")
        if self.threads < 1:
            raise ArchrankError(f"--threads must be at least 1, got {self.threads}")
        from archrank.oneshot.supernet import SUPERNETS
        from archrank.spaces import get_space

        if self.space not in SUPERNETS or not get_space(self.space).enumerable:
            raise ArchrankError(f"bench oneshot needs a space with a supernet that can be "
                                f"enumerated (nb201), not {self.space!r}")
        from archrank.bench.predictor import check_predictors

        check_predictors([self.predictor], get_space(self.space),
                         {self.predictor: self.predictor_params})


# -- one seed -----------------------------------------------------------------------------------
@dataclass
class _Context:
    """What every seed shares: the truth, data, setting and the space's cells."""

    cfg: OneshotBench
    truth: Any  # archrank.truth.Truth
    data: Any  # ArrayDataset
    setting: Any  # NetworkSetting
    work: Path
    truth_codes: np.ndarray
    truth_rows: np.ndarray  # each truth cell's row in the space's enumeration
    flops_all: np.ndarray
    live_flops_all: np.ndarray  # each cell's FLOPs on its live ops (the size prior's size)
    flops_cap: float
    params_all: np.ndarray


def _prepare(cfg: OneshotBench, say: Say) -> _Context:
    from archrank.datasets import load_dataset
    from archrank.oneshot.supernet import build_supernet, setting_for
    from archrank.truth import read_truth

    cfg.check()
    truth = read_truth(cfg.truth, cfg.space, cfg.recipe)
    s = truth.setting
    want = s["dataset"]
    for name, given, have in (("--width", cfg.width, s["width"]),
                              ("--depth", cfg.depth, s["depth"])):
        if given is not None and int(given) != int(have):
            raise ArchrankError(f"{name} {given} does not match the truth's setting "
                                f"({name[2:]} {have}, from {truth.setting_source})")
    data = load_dataset(cfg.dataset or want.get("name"))
    if data.fingerprint() != want.get("fingerprint"):
        raise ArchrankError(f"--dataset {cfg.dataset or want.get('name')}: the truth was "
                            f"trained on {want.get('name')!r} (fingerprint "
                            f"{want.get('fingerprint')}), not on {data.name!r} (fingerprint "
                            f"{data.fingerprint()})")
    setting = setting_for(cfg.space, data, int(s["width"]), int(s["depth"]))
    net = build_supernet(setting)
    space: Any = net.space
    truth_codes = net.encode([space.parse(a) for a in truth.archs])
    k, edges = len(space.edge_op_names), space.num_edges
    rows = truth_codes @ (k ** np.arange(edges - 1, -1, -1))
    all_codes = space.codes(space.enumerate())
    costs = net.costs(all_codes)
    flops_all = costs["flops"].astype(np.float64)
    if truth.flops is not None:
        bad = np.flatnonzero(~np.isclose(truth.flops, flops_all[rows], rtol=1e-6))
        if len(bad):
            i = int(bad[0])
            raise ArchrankError(
                f"{truth.path}: cell {truth.archs[i]} has {truth.flops[i]:g} FLOPs in the truth "
                f"but {flops_all[rows][i]:g} at {setting.describe()}: the truth was trained at "
                "another setting than its recipe says")
    tag = f"{cfg.space}-w{setting.width}-d{setting.depth}-{data.fingerprint()[:10]}"
    work = Path(cfg.work_dir) / tag
    work.mkdir(parents=True, exist_ok=True)
    say(f"truth {truth.path}: {len(truth.archs)} cells x training seeds {truth.seeds}; "
        f"{setting.describe()} on {data.name} (from {truth.setting_source}); work dir {work}")
    return _Context(cfg, truth, data, setting, work, truth_codes, rows, flops_all,
                    live_size(space, space.enumerate(), flops_all),
                    float(np.percentile(flops_all, FLOPS_CAP_PERCENTILE)),
                    costs["params"].astype(np.float64))


def supernet_recipe(cfg: OneshotBench) -> Any:
    """The supernets' training recipe: the trainer's default with ``epochs`` (the truth's
    recipe sets the network and data, not the supernet's training)."""
    from archrank.oracles.training import TrainRecipe

    return TrainRecipe(epochs=cfg.epochs)


def _checkpoint(ctx: _Context, seed: int) -> Path:
    return ctx.work / f"supernet-seed{seed}-{_train_tag(ctx.cfg)}.pt"


def _train(ctx: _Context, seed: int, progress: Progress | None) -> Any:
    """The finished supernet checkpoint of ``seed`` (trained, resumed or reused)."""
    from archrank.oneshot.checkpoint import load_checkpoint
    from archrank.oneshot.trainer import SupernetTrainer

    cfg, s = ctx.cfg, ctx.setting
    path = _checkpoint(ctx, seed)
    if path.exists():
        ckpt = load_checkpoint(path, space=s.space, width=s.width, depth=s.depth)
        ckpt.dataset(ctx.data)  # the fingerprint check
        if ckpt.recipe != supernet_recipe(cfg):
            raise ArchrankError(f"{path}: trained with another recipe ({ckpt.recipe}); use "
                                f"another --work-dir")
        if ckpt.sampler != cfg.sampler:
            raise ArchrankError(f"{path}: trained with the {ckpt.sampler} sampler, not "
                                f"{cfg.sampler}")
        if ckpt.finished:
            return ckpt
        trainer = SupernetTrainer.resume(ckpt, dataset=ctx.data, epochs=cfg.epochs,
                                         device="cpu", threads=cfg.threads)
    else:
        trainer = SupernetTrainer.create(
            cfg.space, ctx.data, recipe=supernet_recipe(cfg), width=s.width, depth=s.depth,
            seed=seed, device="cpu", sampler=cfg.sampler, threads=cfg.threads)

    def on_step(epoch: int, step: int, n: int, loss: float) -> None:
        if progress is not None:
            progress(f"seed {seed}: supernet (loss {loss:.3f})", epoch * n + step,
                     cfg.epochs * n)

    trainer.train(checkpoint=path, on_step=on_step)
    return load_checkpoint(path)


def _scorer(ctx: _Context, ckpt: Any, seed: int) -> Any:
    cfg = ctx.cfg
    options = ScoreOptions(bn_recalibrate=cfg.bn_recalibrate, calib_batches=cfg.calib_batches,
                           val_samples=cfg.val_samples)
    scorer = JournaledScorer(ckpt.setting, ckpt.model, ctx.data, options=options,
                             threads=cfg.threads)
    name = f"scores-seed{seed}-{_train_tag(cfg)}-{_scoring_tag(cfg)}.jsonl"
    return scorer.attach(ctx.work / name, journal_header(ckpt, options))


def _train_tag(cfg: OneshotBench) -> str:
    """How the supernet was trained, in the names of its files (uniform sampling, the first
    default, keeps the names files had before ``--sampler``)."""
    return f"e{cfg.epochs}" if cfg.sampler == "uniform" else f"e{cfg.epochs}-{cfg.sampler}"


def _scoring_tag(cfg: OneshotBench) -> str:
    """How the scores were taken, in the names of their files (BN, validation subset)."""
    tag = f"{'bn' if cfg.bn_recalibrate else 'nobn'}{cfg.calib_batches}"
    return tag if cfg.val_samples is None else f"{tag}-v{cfg.val_samples}"


def _fit(ctx: _Context, scorer: Any, seed: int, progress: Progress | None) -> Any:
    """The fitted score table of the whole space (reused from ``work`` when there)."""
    from archrank.oneshot.fit import ScoreTable, fit_space, sample_codes

    cfg = ctx.cfg
    params = json.dumps(cfg.predictor_params, sort_keys=True)
    digest = hashlib.sha1(params.encode()).hexdigest()[:8]
    name = (f"fit-seed{seed}-{_train_tag(cfg)}-{_scoring_tag(cfg)}-{cfg.score}-{cfg.predictor}-"
            f"{digest}-n{cfg.samples}")
    csv_path, info_path = ctx.work / f"{name}.csv", ctx.work / f"{name}.json"
    if csv_path.exists() and info_path.exists():
        try:
            table = ScoreTable.read_csv(csv_path, cfg.space)
            table.info = json.loads(info_path.read_text())
            return table
        except (ArchrankError, json.JSONDecodeError):
            pass  # a damaged cache is refitted

    def on_scored(done: int, total: int) -> None:
        if progress is not None:
            progress(f"seed {seed}: scoring the sample", done, total)

    table = fit_space(scorer, samples=cfg.samples, predictor=cfg.predictor,
                      metric=SCORES[cfg.score], seed=seed,
                      predictor_params=cfg.predictor_params, on_scored=on_scored)
    # the scores' own cost (journaled per cell), also when they came from the journal
    codes = sample_codes(scorer.supernet.space, cfg.samples, np.random.default_rng(seed))
    table.info["seconds"]["score"] = float(scorer.score_codes(codes)["seconds"].sum())
    table.write_csv(csv_path)
    write_output(info_path, json.dumps(table.info), flag="")
    return table


def _standalone(ctx: _Context, arch: str) -> dict[str, Any]:
    """``arch`` trained with the truth's recipe and training seeds (journaled per training)."""
    from archrank.executors import InlineExecutor
    from archrank.oracles.training import TrainingOracle, TrainRecipe
    from archrank.truth import TruthBuilder, journal_path

    s = ctx.truth.setting
    space: Any = ctx.setting.space
    oracle = TrainingOracle(space, ctx.data, recipe=TrainRecipe(**s["recipe"]),
                            width=int(s["width"]), depth=int(s["depth"]))
    if arch in ctx.truth.archs:  # trained already, with the same recipe and seeds
        i = ctx.truth.archs.index(arch)
        return {"val_acc": float(ctx.truth.val_acc[i]), "seconds": 0.0, "in_truth": True}
    # equivalent cells train apart; another recipe or other training seeds at the same
    # setting (another truth in the same work dir) get journals of their own
    key = json.dumps([arch, s["recipe"], list(ctx.truth.seeds)], sort_keys=True)
    name = hashlib.sha1(key.encode()).hexdigest()[:16]
    (ctx.work / "standalone").mkdir(exist_ok=True)
    builder = None
    before = ctx.work / "standalone" / f"{hashlib.sha1(arch.encode()).hexdigest()[:16]}.csv"
    if journal_path(before).exists():  # named by the cell alone before session 10
        with contextlib.suppress(ArchrankError):  # another recipe's: train under the new name
            builder = TruthBuilder(oracle, [arch], ctx.truth.seeds, before)
    if builder is None:
        builder = TruthBuilder(oracle, [arch], ctx.truth.seeds,
                               ctx.work / "standalone" / f"{name}.csv")
    builder.run(InlineExecutor(), in_flight=1)
    builder.write_csv()
    return {"val_acc": float(np.nanmean(builder.values("val_acc"))),
            "per_seed": [float(v) for v in builder.values("val_acc")[0]],
            "seconds": float(np.nansum(builder.values("train_seconds"))), "in_truth": False}


def _best_rows(score: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The rows of ``mask`` that share the best finite score (a cost such as FLOPs ties
    whole groups of cells: which of them is "the" pick is an order of rows, not a result)."""
    idx = np.flatnonzero(mask & np.isfinite(score))
    if not len(idx):
        return idx
    return idx[score[idx] == score[idx].max()]


def _judge(ctx: _Context, sc: np.ndarray) -> dict[str, Any]:
    """Kendall tau, precision@5% and the top-1 picks (per constraint) of scores ``sc`` of the
    truth's cells against the truth's mean ``val_acc``."""
    from archrank.metrics import kendall_tau, precision_at_k

    y, archs = ctx.truth.val_acc, ctx.truth.archs
    feasible = {"none": np.ones(len(y), bool),
                "flops_p25": ctx.flops_all[ctx.truth_rows] <= ctx.flops_cap}
    picks: dict[str, Any] = {}
    for c, mask in feasible.items():
        if not mask.any():
            picks[c] = None
            continue
        best = _best_rows(sc, mask)
        if not len(best):  # no finite score (a diverged supernet's losses)
            picks[c] = None
            continue
        i = int(best[0])  # the cell named; its figures are the mean over the tied best
        picks[c] = {"cell": archs[i], "truth_val_acc": float(np.mean(y[best])),
                    "truth_percentile": float(np.mean([percentile(y[mask], y[j])
                                                       for j in best])),
                    "truth_percentile_all": float(np.mean([percentile(y, y[j])
                                                           for j in best])),
                    "candidates": int(mask.sum()), "tied_best": len(best)}
    return {"kendall_tau": kendall_tau(y, sc), "precision_at_5pct": precision_at_k(y, sc, 0.05),
            "top1": picks}


def _one_seed(ctx: _Context, seed: int, say: Say, progress: Progress | None) -> dict[str, Any]:
    """One seed's supernet, scores, fit and judgement; the seed's checkpoint is locked
    meanwhile, so that two benches sharing a work dir (one per seed, as the docs run them)
    never train or score the same seed at once: the second is refused."""
    from archrank.files import locked

    with locked(_checkpoint(ctx, seed), f"seed {seed}'s supernet"):
        return _judge_seed(ctx, seed, say, progress)


def _judge_seed(ctx: _Context, seed: int, say: Say, progress: Progress | None
                ) -> dict[str, Any]:
    from archrank.metrics import kendall_tau

    cfg, truth = ctx.cfg, ctx.truth
    y = truth.val_acc
    say(f"seed {seed}: supernet ({cfg.epochs} epochs)")
    ckpt = _train(ctx, seed, progress)
    scorer = _scorer(ctx, ckpt, seed)
    say(f"seed {seed}: scoring the {len(y)} truth cells with shared weights")
    raw = scorer.score_codes(ctx.truth_codes)
    say(f"seed {seed}: fitting {cfg.predictor} to {cfg.samples} sampled cells' scores")
    table = _fit(ctx, scorer, seed, progress)
    fitted_all = np.asarray(table.columns["predicted"], dtype=np.float64)
    scores = {"supernet": raw["val_acc"] if cfg.score == "acc" else -raw["val_loss"],
              "fitted": fitted_all[ctx.truth_rows]}
    for method in ("supernet", "fitted"):  # each blended with the FLOPs rank (size_prior)
        scores[f"{method}_size_prior"] = size_prior(scores[method],
                                                    ctx.live_flops_all[ctx.truth_rows],
                                                    BENCH_SIZE_PRIOR)
    out: dict[str, Any] = {"seed": seed}
    for method, sc in scores.items():
        out.update({f"{method}_{k}": v for k, v in _judge(ctx, sc).items()})
    out["supernet_kendall_tau_by_score"] = {"val_acc": kendall_tau(y, raw["val_acc"]),
                                            "val_loss": kendall_tau(y, -raw["val_loss"])}
    # the whole space's best cell by the fitted table, and by its blend with the FLOPs rank
    # (what oneshot select --size-prior picks with no constraint), trained stand-alone
    standalone_s = 0.0
    ranked = {"space_pick": fitted_all,
              "space_pick_size_prior": size_prior(fitted_all, ctx.live_flops_all,
                                                  BENCH_SIZE_PRIOR)}
    for key, order in ranked.items():
        best = int(np.nanargmax(order))
        pick: dict[str, Any] = {"cell": table.archs[best], "predicted": float(fitted_all[best]),
                                "flops": float(ctx.flops_all[best])}
        if cfg.standalone:
            what = "" if key == "space_pick" else " blended with the FLOPs rank"
            say(f"seed {seed}: training the fitted table's best cell{what} stand-alone with "
                f"the truth's seeds {truth.seeds}")
            trained = _standalone(ctx, table.archs[best])
            standalone_s += trained.pop("seconds")
            pick.update(trained, truth_percentile=percentile(y, trained["val_acc"]))
        out[key] = pick
    secs = table.info.get("seconds", {})
    out["seconds"] = {"train": float(ckpt.seconds), "score_truth": float(raw["seconds"].sum()),
                      "score_samples": float(secs.get("score", float("nan"))),
                      "fit": float(secs.get("fit", float("nan"))),
                      "predict": float(secs.get("predict", float("nan"))),
                      "standalone": standalone_s}
    s = out["seconds"]
    s["pipeline"] = s["train"] + s["score_samples"] + s["fit"] + s["predict"]
    out["cells"] = {"supernet_val_acc": _r(raw["val_acc"]), "supernet_val_loss":
                    _r(raw["val_loss"]), "fitted": _r(scores["fitted"])}
    say(f"seed {seed}: Kendall tau supernet {out['supernet_kendall_tau']:.3f}, fitted "
        f"{out['fitted_kendall_tau']:.3f}; pipeline {s['pipeline']:.0f} s")
    return out


def _r(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]


# -- the report ---------------------------------------------------------------------------------
def _report(ctx: _Context, per_seed: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    cfg, truth = ctx.cfg, ctx.truth
    ceiling = truth.ceiling()
    top = ceiling["kendall_tau"]
    out = envelope(
        KIND, SCHEMA, "bench oneshot", [r["seed"] for r in per_seed],
        settings={"space": cfg.space, "dataset": ctx.data.name, "truth": str(truth.path),
                  "recipe_from": truth.setting_source, "truth_cells": len(truth.archs),
                  "train_seeds": truth.seeds, "width": ctx.setting.width,
                  "depth": ctx.setting.depth, "epochs": cfg.epochs, "sampler": cfg.sampler,
                  "supernet_recipe": asdict(supernet_recipe(cfg)),
                  "samples": cfg.samples,
                  "predictor": cfg.predictor, "predictor_params": cfg.predictor_params,
                  "score": SCORES[cfg.score], "bn_recalibrate": cfg.bn_recalibrate,
                  "calib_batches": cfg.calib_batches, "val_samples": cfg.val_samples,
                  "flops_cap": ctx.flops_cap,
                  "flops_cap_percentile": FLOPS_CAP_PERCENTILE, "standalone": cfg.standalone,
                  "size_prior": BENCH_SIZE_PRIOR,
                  "work_dir": str(ctx.work), "threads": cfg.threads},
        truth_ceiling_kendall_tau=top, truth_noise_ceiling=ceiling)
    for method in METHODS:
        taus = [r[f"{method}_kendall_tau"] for r in per_seed]
        out[f"{method}_kendall_tau"] = stat(taus)
        out[f"{method}_precision_at_5pct"] = stat([r[f"{method}_precision_at_5pct"]
                                                   for r in per_seed])
        # a truth whose seeds do not agree (ceiling <= 0) has no fraction to give
        out[f"{method}_fraction_of_ceiling"] = stat([t / top if top > 0 else float("nan")
                                                     for t in taus])
    out["supernet_kendall_tau_by_score"] = {
        m: stat([r["supernet_kendall_tau_by_score"][m] for r in per_seed])
        for m in ("val_acc", "val_loss")}
    # what needs no training at all: the larger network ranked first (cells of equal cost are
    # ties in the tau, count fractionally in P@5%, and the top-1 figures are the mean over
    # the cells tied for the largest)
    out["cost_baselines"] = {}
    for name, cost in (("flops", ctx.flops_all), ("params", ctx.params_all),
                       ("live_flops", ctx.live_flops_all)):  # the size prior's size alone
        judged = _judge(ctx, cost[ctx.truth_rows])
        judged["fraction_of_ceiling"] = judged["kendall_tau"] / top if top > 0 else float("nan")
        out["cost_baselines"][name] = judged
    for key, method in (("top1_truth_percentile", "fitted"),
                        ("supernet_top1_truth_percentile", "supernet"),
                        ("supernet_size_prior_top1_truth_percentile", "supernet_size_prior"),
                        ("fitted_size_prior_top1_truth_percentile", "fitted_size_prior")):
        out[key] = {c: stat([r[f"{method}_top1"][c]["truth_percentile"] for r in per_seed
                             if r[f"{method}_top1"][c] is not None]) for c in CONSTRAINTS}
    for key in ("space_pick", "space_pick_size_prior"):
        picks = [r[key] for r in per_seed if "truth_percentile" in r[key]]
        out[key] = {"truth_percentile": stat([p["truth_percentile"] for p in picks]),
                    "val_acc": stat([p["val_acc"] for p in picks])} if picks else None
    stages = ("train", "score_truth", "score_samples", "fit", "predict", "standalone",
              "pipeline")
    out["seconds"] = {s: stat([r["seconds"][s] for r in per_seed]) for s in stages}
    out["seconds"]["wall"] = round(wall, 2)
    out["cells"] = {"arch": truth.archs, "truth_val_acc": _r(truth.val_acc),
                    "flops": _r(ctx.flops_all[ctx.truth_rows])}
    out["per_seed"] = per_seed
    return out


def bench_oneshot(cfg: OneshotBench, *, say: Say | None = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Run every seed of ``cfg`` (module docstring); the ``bench-oneshot`` JSON report.

    Ctrl-C / SIGTERM raises ``Interrupted`` carrying the report of the finished seeds."""
    say = say or (lambda _text: None)
    start = time.perf_counter()
    ctx = _prepare(cfg, say)
    per_seed: list[dict[str, Any]] = []
    try:
        for seed in cfg.seeds:
            per_seed.append(_one_seed(ctx, int(seed), say, progress))
    except KeyboardInterrupt:
        partial = _report(ctx, per_seed, time.perf_counter() - start) if per_seed else None
        raise interrupted(partial, f"interrupted: {len(per_seed)} of {len(cfg.seeds)} seeds "
                          f"finished; the same command resumes from {ctx.work}") from None
    return _report(ctx, per_seed, time.perf_counter() - start)
