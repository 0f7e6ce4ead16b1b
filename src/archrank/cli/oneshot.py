"""``archrank oneshot train|fit|select|latency``: weight-sharing NAS from the command line."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from archrank.cli.app import (
    VAL_SAMPLES,
    bench_app,
    check_least,
    check_network_size,
    check_seed_option,
    console,
    device_option,
    err,
    oneshot_app,
    parse_sets,
)
from archrank.errors import ArchrankError, Interrupted
from archrank.executors import close_now
from archrank.files import check_output, check_plot_dir, hold_lock, write_json


def eta_progress(transient: bool = False) -> Progress:
    """A progress bar with a free-text field (``info``), elapsed time and time left."""
    return Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                    MofNCompleteColumn(), TextColumn("{task.fields[info]}", markup=False),
                    TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                    console=err, transient=transient)


def dataset_spec(dataset: str) -> str:
    """The spec a checkpoint records (``datasets.canonical_spec``: a file as an absolute
    path, so a resume from elsewhere reloads the same file; mnist1d by its full name)."""
    from archrank.datasets import canonical_spec

    return canonical_spec(dataset)


def _checkpoint_file(*paths: Path | None) -> None:
    """A checkpoint is a file (written every epoch, resumed from): not standard output."""
    from archrank.files import is_stream

    for path in paths:
        if path is not None and is_stream(path):
            raise ArchrankError(f"{path}: a checkpoint is a file (written after every epoch, "
                                "resumed from); give a file name")


def _as_recorded(path: Path, verb: str, why: str,
                 options: dict[str, tuple[Any, Any]]) -> None:
    """Refuse an option given next to a checkpoint with another value than the checkpoint's
    (``{flag: (given or None, recorded)}``): it would be silently ignored."""
    for flag, (given, kept) in options.items():
        if given is not None and given != kept:
            raise ArchrankError(f"{path} {verb} {flag} {kept}; got {given} ({why})")


@contextlib.contextmanager
def _resume_hint(command: str, checkpoint: Path | None, world: int = 1) -> Iterator[None]:
    """Ctrl-C, SIGTERM or a lost torchrun peer says how to continue: from the checkpoint of
    the last finished epoch (with as many processes), or that none was written yet."""
    from archrank.oneshot.trainer import PeerLost, resume_command

    try:
        yield
    except KeyboardInterrupt:
        if checkpoint is not None and Path(checkpoint).exists():
            raise Interrupted(f"interrupted; {resume_command(command, checkpoint, world)}"
                              ) from None
        raise Interrupted("interrupted before the first epoch ended: nothing was saved (a "
                          "checkpoint is written after every epoch)") from None
    except PeerLost as exc:
        saved = checkpoint is not None and Path(checkpoint).exists()
        raise PeerLost(f"{exc}; " + (resume_command(command, checkpoint, world) if saved else
                                     "no epoch had finished: nothing was saved")) from None


# -- train --------------------------------------------------------------------------------------
@oneshot_app.command("train")
def train(
    space: str | None = typer.Option(None, "--space", help="Search space: nb201 (default), "
                                     "darts; on --resume, the checkpoint's."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="mnist1d (default), digits or a .npz file (x_train, ...)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Supernet epochs (150)."),
    width: int | None = typer.Option(None, "--width",
                                     help="Stem channels (default: the training oracle's)."),
    depth: int | None = typer.Option(None, "--depth", help="Cells per stage; darts: all cells, "
                                     "at least 3 (default: the oracle's)."),
    batch_size: int | None = typer.Option(None, "--batch-size",
                                          help="Global batch size (128)."),
    lr: float | None = typer.Option(None, "--lr", help="Initial learning rate, cosine to 0 "
                                    "(0.1)."),
    seed: int | None = typer.Option(None, "--seed",
                                    help="Seed of the weights, batches and paths (0)."),
    sampler: str | None = typer.Option(None, "--sampler",
                                       help="uniform (SPOS, default) or fair (each op once "
                                       "per block)."),
    threads: int = typer.Option(1, "--threads", min=1, help="Torch threads per process."),
    device: str = device_option(),
    out: Path | None = typer.Option(None, "--out", "-o", help="Checkpoint to write."),
    resume: Path | None = typer.Option(None, "--resume",
                                       help="Continue the training of this checkpoint."),
) -> None:
    """Train a weight-sharing supernet by single-path sampling (SPOS: uniform, or fair).

    Writes a checkpoint after every epoch; a killed training continues with --resume. Run
    under torchrun to train data-parallel (DDP; gloo on CPUs, NCCL on GPUs).

    Example:
      archrank oneshot train --space nb201 --dataset mnist1d --epochs 50 --out supernet.pt
      archrank oneshot train --resume supernet.pt
      torchrun --nproc-per-node 2 -m archrank oneshot train --out supernet.pt
    """
    from dataclasses import replace

    from archrank.oneshot.checkpoint import load_checkpoint
    from archrank.oneshot.trainer import DEFAULT_EPOCHS, SupernetTrainer, dist_info
    from archrank.oracles.training import TrainRecipe

    check_seed_option(seed)
    check_least(batch_size=(batch_size, 2), lr=(lr, 0), width=(width, 1), depth=(depth, 1))
    _checkpoint_file(out, resume)
    if resume is not None and out is not None and Path(out) != Path(resume):
        raise ArchrankError("give either --resume CKPT or --out, not both")
    if resume is None and out is None:
        raise ArchrankError("missing --out CKPT (or --resume CKPT to continue a training)")
    if resume is None:  # (a resumed training's size is the checkpoint's, checked against it)
        check_network_size(space or "nb201", dataset, width, depth)
    kwargs = {"device": device, "threads": threads}
    if resume is None and epochs is not None and epochs < 1:  # before any file is touched
        raise ArchrankError(f"--epochs must be at least 1, got {epochs}")
    # one writer per checkpoint (rank 0 writes it under torchrun); held until the command ends
    lock = hold_lock(resume or out, "the supernet checkpoint") if int(  # noqa: F841
        os.environ.get("RANK", "0")) == 0 else None
    if resume is not None:
        ckpt = load_checkpoint(resume, space=space, width=width, depth=depth)
        trainer = SupernetTrainer.resume(ckpt, epochs=epochs, **kwargs)
        target = resume
        _as_recorded(resume, "was trained with", "a resumed training keeps its settings", {
            "--dataset": (None if dataset is None else dataset_spec(dataset),
                          ckpt.dataset_spec),
            "--batch-size": (batch_size, ckpt.recipe.batch_size),
            "--lr": (lr, ckpt.recipe.lr), "--seed": (seed, ckpt.seed),
            "--sampler": (sampler, ckpt.sampler)})
    else:
        assert out is not None
        if out.exists():
            raise ArchrankError(f"{out} exists; continue it with --resume {out} or choose "
                                "another --out")
        check_output(out, "--out")
        if epochs is not None and epochs < 1:
            raise ArchrankError(f"--epochs must be at least 1, got {epochs}")
        recipe = replace(TrainRecipe(epochs=DEFAULT_EPOCHS if epochs is None else epochs),
                         batch_size=128 if batch_size is None else batch_size,
                         lr=0.1 if lr is None else lr)
        trainer = SupernetTrainer.create(space or "nb201", dataset_spec(dataset or "mnist1d"),
                                         recipe=recipe, width=width, depth=depth,
                                         seed=seed or 0, sampler=sampler or "uniform",
                                         **kwargs)
        target = out
    rank, world = dist_info()
    epochs_total = trainer.recipe.epochs
    if trainer.epoch >= epochs_total:  # a finished training: no bar run to its end again
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
        if rank == 0:
            console.print(f"{target} already finished its {epochs_total} epochs (mean loss of "
                          f"the last epoch {trainer.history[-1]:.4f}, {trainer.seconds:.1f} s "
                          "of training): nothing to do; its schedule is fixed, so train "
                          "longer as a new supernet (--out)", soft_wrap=True)
        return
    trainer.check_world(world, target)
    steps = trainer.steps_per_epoch(world)
    if rank == 0:
        err.print(f"supernet of {trainer.setting.describe()} on {trainer.dataset.name}: "
                  f"{epochs_total} epochs x {steps} steps, {trainer.sampler.name} sampling, "
                  f"seed {trainer.seed}, {trainer.device}"
                  + (f", {world} processes" if world > 1 else "")
                  + (f" (resuming after epoch {trainer.epoch})" if trainer.epoch else ""))
    progress = eta_progress()
    task = progress.add_task("supernet", total=epochs_total * steps,
                             completed=trainer.epoch * steps, info="")

    def on_step(epoch: int, step: int, n: int, loss: float) -> None:
        progress.update(task, completed=epoch * n + step,
                        info=f"epoch {epoch + 1}/{epochs_total} step loss {loss:.3f}")

    try:
        if rank == 0:
            with progress, _resume_hint("train", target, world):
                trainer.train(checkpoint=target, on_step=on_step)
            console.print(f"trained {trainer.epoch} epochs in {trainer.seconds:.1f} s "
                          f"(mean loss of the last epoch {trainer.history[-1]:.4f}); "
                          f"checkpoint: {target}")
        else:
            with _resume_hint("train", target, world):
                trainer.train(checkpoint=target)
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


# -- fit ----------------------------------------------------------------------------------------
@oneshot_app.command("fit")
def fit(
    checkpoint: Path = typer.Argument(..., help="A trained supernet checkpoint."),
    samples: int = typer.Option(1000, "--samples", help="Cells scored with shared weights."),
    pool: int | None = typer.Option(None, "--pool",
                                    help="Spaces too large to enumerate (darts): cells "
                                    "predicted besides the scored ones, drawn uniformly "
                                    "(2000)."),
    predictor: str = typer.Option("gcn", "--predictor",
                                  help="Graph predictor fitted to the scores (gcn, gates, ...)."),
    metric: str = typer.Option(
        "val_loss", "--score",
        help="Supernet score: val_loss (default; it ranked the committed truth better, "
             "docs/benchmarks.md) or val_acc (also loss / acc, as bench oneshot names them)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample and the predictor."),
    bn_recalibrate: bool = typer.Option(True, "--bn-recalibrate/--no-bn-recalibrate",
                                        "--bn-recal/--no-bn-recal",
                                        help="Re-estimate BN statistics per sub-network."),
    calib_batches: int = typer.Option(4, "--calib-batches",
                                      help="Training batches for BN recalibration."),
    val_samples: int | None = typer.Option(
        VAL_SAMPLES, "--val-samples", help="Score on the first N validation signals (2,000, as "
        "measured: all 12,800 of plain mnist1d cost five times as much; N at least the "
        "split's size scores on all of it)."),
    latency: bool = typer.Option(True, "--latency/--no-latency",
                                 help="Measure a latency table on this machine."),
    latency_batch: int = typer.Option(1, "--latency-batch", min=1,
                                      help="Batch size of the latency."),
    sets: list[str] | None = typer.Option(None, "--set",
                                          help="Predictor option, e.g. epochs=100."),
    workers: int = typer.Option(1, "--workers", min=1, help="Scoring processes."),
    executor_kind: str | None = typer.Option(None, "--executor",
                                             help="inline, process or dask."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Dask scheduler address."),
    out: Path = typer.Option(..., "--out", "-o", help="Score table (CSV) to write."),
    json_out: Path | None = typer.Option(None, "--json", help="Write timings and settings."),
) -> None:
    """Score sampled sub-networks with shared weights, fit a graph predictor to them, and
    predict every cell of the space.

    The CSV has one row per cell: arch, hash, predicted, supernet_val_acc and
    supernet_val_loss (where sampled), params, flops, latency_ms. predicted is the fitted
    score, higher is better: the negated validation loss (--score val_loss, the default) or
    the validation accuracy in percent (--score val_acc); the --json file names it.

    Example: archrank oneshot fit supernet.pt --samples 1000 --predictor gcn --out scores.csv
    """
    from archrank.bench.journal import journal_for
    from archrank.bench.predictor import check_predictors
    from archrank.oneshot.checkpoint import load_checkpoint
    from archrank.oneshot.fit import check_score_metric, fit_space
    from archrank.oneshot.hardware import LatencyTable
    from archrank.oneshot.scoring import (
        JournaledScorer,
        ScoreOptions,
        SubnetScorer,
        journal_header,
    )
    from archrank.runs.loop import executor_for
    from archrank.spaces import get_space

    check_seed_option(seed)
    # before the latency table and the journal
    check_least(samples=(samples, 2), val_samples=(val_samples, 1),
                 calib_batches=(calib_batches, 1), pool=(pool, 0))
    check_output(out, "--out", [checkpoint])
    if json_out is not None:
        check_output(json_out, "--json", [checkpoint, out])
    metric = {"loss": "val_loss", "acc": "val_acc"}.get(metric, metric)  # bench's names
    check_score_metric(metric)
    predictor_params = parse_sets(sets, own=predictor)
    ckpt = load_checkpoint(checkpoint)
    if pool is not None and get_space(ckpt.setting.space).enumerable:  # else ignored
        raise ArchrankError(f"--pool applies to spaces too large to enumerate (darts); every "
                            f"cell of {ckpt.setting.space} is predicted")
    pool = 2000 if pool is None else pool
    check_predictors([predictor], get_space(ckpt.setting.space), {predictor: predictor_params})
    if not ckpt.finished:
        raise ArchrankError(f"{checkpoint}: the supernet trained {ckpt.epoch} of "
                            f"{ckpt.recipe.epochs} epochs; finish it with archrank oneshot "
                            f"train --resume {checkpoint}")
    if not bn_recalibrate and calib_batches != 4:  # it would be ignored in silence
        raise ArchrankError("--calib-batches only applies with BN recalibration (without "
                            "--no-bn-recalibrate)")
    options = ScoreOptions(bn_recalibrate=bn_recalibrate, calib_batches=calib_batches,
                           val_samples=val_samples)
    lock = hold_lock(out, "the score table")  # noqa: F841 (held till the end)
    journal = journal_for(out, ".scores.jsonl")
    scorer: SubnetScorer
    if journal is None:  # stdout or /dev/null: nothing to journal beside
        scorer = SubnetScorer.from_checkpoint(ckpt, options=options)
    else:  # a killed fit keeps its scores: the same command reuses them
        scorer = JournaledScorer.from_checkpoint(ckpt, options=options).attach(
            journal, journal_header(ckpt, options), replace_stale=True)
        if scorer.known:
            err.print(f"reusing {len(scorer.known):,} scores journaled in {journal}")
    table_lat = None
    if latency:
        err.print("measuring the latency table ...")
        table_lat = LatencyTable.measure(scorer.supernet, batch_size=latency_batch)
    known_before = len(scorer.known) if isinstance(scorer, JournaledScorer) else 0
    pooled = workers > 1 or executor_kind not in (None, "inline") or scheduler is not None
    executor = executor_for(workers, executor_kind, scheduler) if pooled else None
    progress = eta_progress(transient=True)
    task = progress.add_task("scoring", total=samples, info="")
    try:
        with progress:
            table = fit_space(scorer, samples=samples, predictor=predictor, metric=metric,
                              seed=seed, latency=table_lat, predictor_params=predictor_params,
                              executor=executor, pool=pool,
                              on_scored=lambda d, n: progress.update(task, completed=d, total=n))
    except KeyboardInterrupt:
        kept = (f"; the {len(scorer.known):,} scores so far are journaled in {journal}: the "
                "same command resumes" if isinstance(scorer, JournaledScorer) else "")
        raise Interrupted(f"interrupted{kept}") from None
    finally:
        if executor is not None:
            close_now(executor)
    table.write_csv(out)
    if journal is not None:  # the table holds every score now
        journal.unlink(missing_ok=True)
    info = {**table.info, "checkpoint": str(checkpoint), "setting": ckpt.setting.to_dict(),
            "bn_recalibrate": bn_recalibrate, "calib_batches": calib_batches,
            "val_samples": val_samples,
            "latency_table": None if table_lat is None else table_lat.to_dict()}
    secs = info["seconds"]
    # this session's scoring: what the journal gained (it may hold other samples' cells)
    fresh = (len(scorer.known) - known_before if isinstance(scorer, JournaledScorer)
             else int(info["samples"]))
    reused = max(int(info["samples"]) - fresh, 0)
    console.print(f"{len(table):,} cells written to {out}: scored {fresh}"
                  + (f" (and {reused} from the journal)" if reused else "")
                  + f" ({secs['score']:.1f} s, {fresh / max(secs['score'], 1e-9):.1f}/s), "
                  f"fit {predictor} ({secs['fit']:.1f} s), predicted all ({secs['predict']:.1f} s)")
    _print_top(table.archs, table.columns,
               np.argsort(-table.columns["predicted"], kind="stable")[:5], "best predicted")
    if json_out is not None:
        write_json(json_out, info)


def _print_top(archs: list[str], columns: dict[str, np.ndarray], rows: np.ndarray,
               title: str) -> None:
    """The numbers of ``rows`` in whole (no header or value cut), then each cell's text: in
    a last column that folds where the terminal leaves it room, else listed below the table
    (at 80 columns the arch folded over ten lines and the headers were cut)."""
    shown = [c for c in ("predicted", "supernet_val_acc", "params", "flops", "latency_ms")
             if c in columns]
    body = []
    for rank, i in enumerate(rows, start=1):
        cells = []
        for c in shown:
            v = float(columns[c][i])
            cells.append("-" if np.isnan(v) else (f"{v:,.0f}" if c in ("params", "flops")
                                                  else f"{v:.4g}"))
        body.append([str(rank), *cells])
    heads = ["#", *shown]
    numbers = 1 + sum(3 + max(len(h), *(len(r[k]) for r in body)) if body else 3 + len(h)
                      for k, h in enumerate(heads))  # each column: its text, padding, a rule
    beside = console.width - numbers - 3 >= 40  # room for the arch in two or three lines
    table = Table(title=title)
    for h in heads:
        table.add_column(h, justify="right", no_wrap=True)
    if beside:
        table.add_column("arch", overflow="fold")
    for row, i in zip(body, rows, strict=True):
        table.add_row(*row, *([archs[i]] if beside else []))
    console.print(table)
    if not beside:
        for row, i in zip(body, rows, strict=True):
            console.print(f"{row[0]:>3}  {archs[i]}", soft_wrap=True, markup=False,
                          highlight=False)


# -- select -------------------------------------------------------------------------------------
@oneshot_app.command("select")
def select_cmd(
    scores: Path = typer.Argument(..., help="Score table written by archrank oneshot fit."),
    max_flops: float | None = typer.Option(None, "--max-flops", help="FLOPs (MACs) limit."),
    max_params: float | None = typer.Option(None, "--max-params", help="Parameter limit."),
    max_latency_ms: float | None = typer.Option(None, "--max-latency-ms",
                                                help="Latency limit (ms, the table's device: "
                                                "per-op sums, which run below whole networks; "
                                                "see oneshot latency --validate)."),
    top: int = typer.Option(10, "--top", help="How many cells to list."),
    cost: str | None = typer.Option(None, "--front-cost",
                                    help="Cost axis of the Pareto front: flops, params or "
                                    "latency_ms (default: latency_ms if present)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the selection here."),
    prior: float = typer.Option(0.0, "--size-prior",
                                help="Weight in [0, 1] of the FLOPs rank (FLOPs of the "
                                "cell's live ops) blended with the predicted score's rank to "
                                "order the top cells (0: the "
                                "predicted score alone). A supernet underrates large cells: "
                                "on the MNIST-1D truth, 0.5 ranked the fitted table at "
                                "Kendall tau 0.54 against 0.42 (docs/benchmarks.md). The "
                                "Pareto front stays on the predicted score."),
) -> None:
    """Best predicted cells under hardware constraints, and the score/cost Pareto front
    (predicted: the fitted score of oneshot fit, higher is better).

    Examples:
      archrank oneshot select scores.csv --max-flops 500000 --max-latency-ms 0.6 --top 10
      archrank oneshot select scores.csv --max-flops 500000 --size-prior 0.5
    """
    from archrank.oneshot.fit import ScoreTable
    from archrank.oneshot.hardware import feasible, live_size, pareto_front, select, size_prior
    from archrank.spaces import get_space

    if top < 1:
        raise ArchrankError(f"--top must be at least 1, got {top}")
    if not 0.0 <= prior <= 1.0:  # nan fails too
        raise ArchrankError(f"--size-prior must be a weight in [0, 1], got {prior}")
    if json_out is not None:
        check_output(json_out, "--json", [scores])
    table = ScoreTable.read_csv(scores)
    cols = table.columns
    given = cost is not None
    have = [c for c in ("flops", "params", "latency_ms") if c in cols]
    cost = cost or ("latency_ms" if "latency_ms" in cols else "flops" if have else None)
    if cost is not None and (cost not in ("flops", "params", "latency_ms") or cost not in cols):
        raise ArchrankError(
            f"--front-cost {cost}: the score table has no such cost column" if given else
            f"the score table has no {cost} column for the Pareto front; give --front-cost "
            f"{' or '.join(have)}")
    mask = feasible(cols, max_flops=max_flops, max_params=max_params,
                    max_latency_ms=max_latency_ms)
    order_by = cols["predicted"]
    if prior > 0:
        if "flops" not in cols or not np.isfinite(cols["flops"]).any():
            raise ArchrankError("--size-prior: the score table has no flops column")
        space = get_space(table.space)
        size = live_size(space, [space.parse(a) for a in table.archs], cols["flops"])
        order_by = size_prior(cols["predicted"], size, prior)
    best = select(order_by, mask, top)
    front = (pareto_front(cols["predicted"], cols[cost], mask) if cost is not None
             else np.zeros(0, dtype=np.int64))
    by = f", by predicted score and FLOPs rank (size prior {prior:g})" if prior > 0 else ""
    _print_top(table.archs, cols, best,
               f"top {len(best)} of {int(mask.sum()):,} cells within the constraints{by}")
    if cost is None:
        err.print("no Pareto front: the score table has no cost column (flops, params or "
                  "latency_ms)")
    else:
        _print_top(table.archs, cols, front, f"Pareto front: predicted score vs {cost}")
    if json_out is not None:
        def rows(idx: np.ndarray) -> list[dict[str, Any]]:
            return [{"arch": table.archs[i], "hash": table.hashes[i],
                     **{c: None if np.isnan(v[i]) else float(v[i]) for c, v in cols.items()}}
                    for i in idx]
        write_json(json_out, {"feasible": int(mask.sum()), "size_prior": prior,
                               "top": rows(best), "pareto_cost": cost, "pareto": rows(front)})


# -- latency ------------------------------------------------------------------------------------
@oneshot_app.command("latency")
def latency_cmd(
    checkpoint: Path | None = typer.Argument(None, help="Supernet checkpoint (its setting)."),
    space: str | None = typer.Option(None, "--space",
                                     help="Without a checkpoint: the space (nb201)."),
    dataset: str | None = typer.Option(None, "--dataset",
                                       help="Without a checkpoint: data (mnist1d)."),
    width: int | None = typer.Option(None, "--width", help="Without a checkpoint: width."),
    depth: int | None = typer.Option(None, "--depth", help="Without a checkpoint: depth."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Inference batch size."),
    validate: int = typer.Option(30, "--validate",
                                 help="Time this many whole networks against the table."),
    seed: int = typer.Option(0, "--seed", help="Seed of the validation sample."),
    json_out: Path | None = typer.Option(None, "--json", help="Write table and check here."),
) -> None:
    """Measure the per-op latency table on this machine and check it against whole networks.

    Example: archrank oneshot latency --space nb201 --dataset mnist1d --validate 50
    """
    from archrank.datasets import load_dataset
    from archrank.oneshot.checkpoint import load_checkpoint
    from archrank.oneshot.hardware import LatencyTable, validate_latency
    from archrank.oneshot.supernet import build_supernet, setting_for

    check_seed_option(seed)
    if validate < 0:
        raise ArchrankError(f"--validate must be at least 0 (0: no check), got {validate}")
    if json_out is not None:
        check_output(json_out, "--json", [checkpoint])
    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint)
        setting = ckpt.setting
        _as_recorded(checkpoint, "has", "the latency table is the checkpoint's setting's", {
            "--space": (space, setting.space),
            "--dataset": (None if dataset is None else dataset_spec(dataset),
                          ckpt.dataset_spec),
            "--width": (width, setting.width), "--depth": (depth, setting.depth)})
    else:
        setting = setting_for(space or "nb201", load_dataset(dataset or "mnist1d"), width,
                              depth)
    net = build_supernet(setting)
    table = LatencyTable.measure(net, batch_size=batch_size)
    out: dict[str, Any] = {"setting": setting.to_dict(), "table": table.to_dict()}
    view = Table(title=f"latency table ms · {setting.describe()} · batch {batch_size}")
    view.add_column("unit")
    view.add_column("ms", justify="right")
    for name, ms in zip(table.units, table.ms, strict=True):
        view.add_row(name, f"{ms:.4f}")
    console.print(view)
    if validate > 0:
        archs = net.space.sample(validate, np.random.default_rng(seed))
        check = validate_latency(table, net, archs)
        console.print(f"{validate} networks: Kendall tau {check['kendall_tau']:.3f}, Spearman "
                      f"{check['spearman']:.3f} (table vs measured), mean abs error "
                      f"{check['mean_abs_error_ms']:.4f} ms")
        out["validation"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                             for k, v in check.items()}
    if json_out is not None:
        write_json(json_out, out)
    sys.stdout.flush()


# -- search -------------------------------------------------------------------------------------
@oneshot_app.command("search")
def search_cmd(
    space: str | None = typer.Option(None, "--space", help="Search space: nb201 (default), "
                                     "darts; on --resume, the checkpoint's."),
    dataset: str | None = typer.Option(None, "--dataset", help="mnist1d (default), digits or "
                                       "a .npz file (x_train, y_train, ...)."),
    method: str | None = typer.Option(None, "--method",
                                      help="proxy-ea, proxy-darts (default), darts, spos-ea or "
                                      "gcn-fit; on --resume, the checkpoint's (spos-ea and "
                                      "gcn-fit share one uniformly trained supernet: name "
                                      "one)."),
    epochs: int | None = typer.Option(None, "--epochs",
                                      help="Supernet epochs (the search budget) [50]."),
    seed: int | None = typer.Option(None, "--seed",
                                    help="Seed of the weights, batches and sampling [0]."),
    width: int | None = typer.Option(None, "--width", help="Stem channels; darts: C, the stem "
                                     "3C (default: the oracle's)."),
    depth: int | None = typer.Option(None, "--depth", help="Cells per stage; darts: all cells, "
                                     "at least 3 (default: the oracle's)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Batch size [128]."),
    lr: float | None = typer.Option(None, "--lr",
                                    help="Initial learning rate (cosine to 0) [0.1]."),
    sampling: str | None = typer.Option(None, "--sampling", help="proxy-*: learned (Gumbel on "
                                        "alpha, default) or uniform (ablation)."),
    oiw: str | None = typer.Option(None, "--oiw", help="proxy-darts: OIW normalisation l2 "
                                   "(default), sum, or off."),
    pretrain: bool | None = typer.Option(None, "--pretrain/--no-pretrain",
                                         help="proxy-*: auto-encoder pre-training of the "
                                         "landscape [on]."),
    refit_every: int | None = typer.Option(None, "--refit-every",
                                           help="proxy-*: steps between refits [25]."),
    warmup_steps: int | None = typer.Option(None, "--warmup-steps", help="proxy-darts: "
                                            "uniform steps before learned sampling [50]."),
    memory: int | None = typer.Option(None, "--memory",
                                      help="proxy-*: (arch, val loss) pairs kept [256]."),
    alpha_lr: float | None = typer.Option(None, "--alpha-lr",
                                          help="proxy-darts: learning rate of alpha [0.2]."),
    alpha_steps: int | None = typer.Option(None, "--alpha-steps", help="proxy-darts: alpha "
                                           "steps per refit, 0: alpha fixed [5]."),
    alpha_optimizer: str | None = typer.Option(None, "--alpha-optimizer", help="proxy-darts: sgd "
                                               "(steps on the standardised predicted loss) "
                                               "or adam [sgd]."),
    final: str | None = typer.Option(None, "--final", help="proxy-*: the landscape's minimum "
                                     "over the whole space (space: proxy-darts's default) or "
                                     "over the memory's cells (memory: proxy-ea's default, a "
                                     "better cell on 5 of 6 proxy-ea searches, on 4 of 9 "
                                     "proxy-darts ones and worse on 4, docs/benchmarks.md); "
                                     "may change on --resume."),
    ea_evals: int | None = typer.Option(None, "--ea-evals",
                                        help="spos-ea: cells scored by evolution (100); a "
                                        "choice after training: give it again on --resume."),
    fit_samples: int | None = typer.Option(None, "--fit-samples", help="gcn-fit: uniformly "
                                           "sampled cells scored and fitted (1000); give it "
                                           "again on --resume."),
    threads: int = typer.Option(1, "--threads", min=1, help="Torch threads."),
    device: str = device_option(),
    out: Path | None = typer.Option(None, "--out", "-o", help="Checkpoint to write."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue this search (its "
                                       "settings come from the checkpoint)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the result as JSON."),
) -> None:
    """One-shot architecture search on a weight-sharing supernet.

    proxy-darts / proxy-ea: proxy validation (a learned validation-loss landscape steers the
    sampling; differentiable or evolutionary form); darts: first-order DARTS; spos-ea:
    uniform single-path training, then regularized evolution on supernet scores; gcn-fit: the
    same training, then a gcn fitted to sampled supernet scores picks the cell. Writes a
    checkpoint after every epoch; a killed search continues with --resume. Prints the chosen
    cell and its supernet score.

    Example:
      archrank oneshot search --method proxy-ea --epochs 50 --seed 0 --out s.pt
    """
    from dataclasses import replace

    from archrank.oneshot.landscape import LandscapeConfig
    from archrank.oneshot.proxy import ProxyConfig
    from archrank.oneshot.search import check_choice, check_method, resumable, search
    from archrank.oracles.training import TrainRecipe

    check_seed_option(seed)
    check_least(batch_size=(batch_size, 2), lr=(lr, 0), memory=(memory, 2),
                 refit_every=(refit_every, 1), warmup_steps=(warmup_steps, 0),
                 alpha_steps=(alpha_steps, 0), ea_evals=(ea_evals, 1),
                 fit_samples=(fit_samples, 2), width=(width, 1), depth=(depth, 1))
    if method is not None:
        check_method(method)
    ckpt = None
    if resume is not None:  # the space and method are the checkpoint's unless given
        ckpt = resumable(resume, method, space)
        space, method = ckpt.setting.space, method or ckpt.sampler
    space = space or "nb201"
    method = method or "proxy-darts"
    check_method(method)
    for flag, value, owner in (("--ea-evals", ea_evals, "spos-ea"),
                               ("--fit-samples", fit_samples, "gcn-fit")):
        if value is not None and method != owner:  # would be silently ignored
            raise ArchrankError(f"{flag}: an option of {owner}, not {method}")
    check_choice(method, ea_evals, fit_samples)  # before the training, not after it
    ea_evals = 100 if ea_evals is None else ea_evals
    fit_samples = 1000 if fit_samples is None else fit_samples
    check_network_size(space, dataset, width, depth)  # before the progress bar and the data
    if epochs is not None and epochs < 1:
        raise ArchrankError(f"--epochs must be at least 1, got {epochs}")
    if resume is not None and out is not None and Path(out) != Path(resume):
        raise ArchrankError("give either --resume CKPT or --out, not both")
    _checkpoint_file(out, resume)
    if resume is None and out is None:
        raise ArchrankError("missing --out CKPT (or --resume CKPT to continue a search)")
    if resume is None and out is not None and out.exists():
        raise ArchrankError(f"{out} exists; continue it with --resume {out} or choose "
                            "another --out")
    if resume is None and out is not None:
        check_output(out, "--out", [dataset])
    if json_out is not None:
        check_output(json_out, "--json", [resume, out])
    proxy_flags = {"--sampling": ("sampling", sampling), "--oiw": ("oiw_norm", oiw),
                   "--refit-every": ("refit_every", refit_every),
                   "--warmup-steps": ("warmup_steps", warmup_steps),
                   "--memory": ("memory", memory), "--alpha-lr": ("alpha_lr", alpha_lr),
                   "--alpha-steps": ("alpha_steps", alpha_steps),
                   "--alpha-optimizer": ("alpha_optimizer", alpha_optimizer)}
    given_flags = [f for f, (_, v) in proxy_flags.items() if v is not None]
    given_flags += ["--pretrain/--no-pretrain"] * (pretrain is not None)
    if not method.startswith("proxy-") and (given_flags or final is not None):
        # proxy settings would be silently ignored
        raise ArchrankError(f"{', '.join(given_flags or ['--final'])}: proxy-ea / proxy-darts "
                            f"options, not {method}'s")
    if method == "proxy-ea":
        from archrank.oneshot.search import DARTS_ONLY

        for flag, (key, value) in proxy_flags.items():
            if key in DARTS_ONLY and value is not None:
                raise ArchrankError(f"{flag} applies to proxy-darts only: {DARTS_ONLY[key]}")
    proxy = {key: value for key, value in proxy_flags.values() if value is not None}
    if pretrain is not None:
        proxy["landscape"] = LandscapeConfig(pretrain=pretrain)
    if method.startswith("proxy-"):  # a bad value is refused before anything starts
        ProxyConfig(**proxy, **({"final": final} if final else {}))
    if ckpt is not None:  # a resumed search keeps its settings: a differing one is refused
        _as_recorded(resume, "was trained with", "a resumed search keeps its settings", {
            "--epochs": (epochs, ckpt.recipe.epochs), "--seed": (seed, ckpt.seed),
            "--batch-size": (batch_size, ckpt.recipe.batch_size), "--lr": (lr, ckpt.recipe.lr),
            "--dataset": (None if dataset is None else dataset_spec(dataset),
                          ckpt.dataset_spec)})
        if method.startswith("proxy-") and ckpt.sampler_state:
            saved = ProxyConfig.from_dict(ckpt.sampler_state["config"])
            _as_recorded(resume, "was searched with", "a resumed search keeps its settings", {
                **{flag: (value, getattr(saved, key))
                   for flag, (key, value) in proxy_flags.items()},
                "--pretrain/--no-pretrain": (pretrain, saved.landscape.pretrain)})
    recipe = replace(TrainRecipe(), batch_size=128 if batch_size is None else batch_size,
                     lr=0.1 if lr is None else lr)
    epochs = 50 if epochs is None and resume is None else epochs
    progress = eta_progress()
    task = progress.add_task(method, total=None, info="")

    def on_step(epoch: int, step: int, n: int, loss: float) -> None:
        total = (ckpt.recipe.epochs if ckpt is not None else int(epochs or 0)) * n
        progress.update(task, total=total, completed=epoch * n + step,
                        info=f"epoch {epoch + 1} step loss {loss:.3f}")

    def on_choice(done: int, total: int, what: str) -> None:  # after training: the choice
        progress.update(task, total=total, completed=done, info=what)

    lock = hold_lock(resume or out, "the search checkpoint")  # noqa: F841 (held till the end)
    err.print(f"{method} search on {space}/{dataset or 'mnist1d'}"
              + (f" (resuming {resume})" if resume else f": {epochs} epochs, seed {seed or 0}"))
    with progress, _resume_hint("search", resume or out):
        result = search(method, space=space,
                        dataset=(None if dataset is None else dataset_spec(dataset)) if resume
                        else dataset_spec(dataset or "mnist1d"),
                        epochs=epochs, seed=seed or 0, recipe=recipe,
                        checkpoint=resume or out, resume=resume is not None,
                        proxy=None if resume else proxy, ea_evals=ea_evals,
                        fit_samples=fit_samples, width=width, depth=depth, threads=threads,
                        device=device, on_step=on_step, on_choice=on_choice, final=final)
    console.print(f"chosen cell: {result.arch}", soft_wrap=True)
    console.print(f"supernet score: val_acc {result.supernet_val_acc:.2f}%, val_loss "
                  f"{result.supernet_val_loss:.4f}; {'degenerate, ' if result.degenerate else ''}"
                  f"search {result.seconds:.1f} s")
    if json_out is not None:
        write_json(json_out, result.to_dict())


@bench_app.command("oneshot-search")
def bench_oneshot_search(
    space: str = typer.Option("nb201", "--space", help="Search space (nb201, darts)."),
    dataset: str | None = typer.Option(None, "--dataset", help="The truth's dataset (default: "
                                       "the one its recipe records)."),
    methods: str = typer.Option("proxy-ea,proxy-darts,darts,spos-ea,gcn-fit", "--methods",
                                help="Comma-separated methods, each METHOD[:KEY=VALUE...] "
                                "(ablations: proxy-darts:oiw=off, proxy-darts:sampling=uniform, "
                                "proxy-ea:pretrain=off, gcn-fit:samples=200; gcn-fit also "
                                "takes its gcn's parameters: gcn-fit:epochs=50)."),
    seeds: int = typer.Option(3, "--seeds", help="Search seeds 0..N-1."),
    first_seed: int = typer.Option(0, "--first-seed", help="First search seed (seeds run in "
                                   "other processes share --work-dir)."),
    epochs: int = typer.Option(50, "--epochs", help="Supernet epochs of every search."),
    truth: Path = typer.Option(..., "--truth", help="Truth table of bench table."),
    recipe: Path | None = typer.Option(None, "--recipe", help="The truth's recipe (its bench "
                                       "table --json report) where none lies beside it."),
    work_dir: Path = typer.Option(Path("oneshot-search"), "--work-dir",
                                  help="Search checkpoints and stand-alone trainings."),
    workers: int = typer.Option(1, "--workers", min=1,
                                help="Stand-alone trainings in parallel."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the report here."),
    plot: Path | None = typer.Option(None, "--plot", help="Also write the figures (SVG and "
                                     "PNG) to this directory."),
) -> None:
    """Judge one-shot search methods by training their picks stand-alone.
    Each method searches with each seed; the chosen cells are trained with the truth's
    recipe and training seeds; the report gives per method the cells, val/test accuracy,
    truth percentile, search time and the rate of degenerate cells. Resumable (--work-dir).
    Searches run on the CPU, so that figures compare across machines and a work dir resumes
    where it started (oneshot search takes --device).

    Example:
      archrank bench oneshot-search --truth benchmarks/truth/nb201_mnist1d_w16.csv --seeds 3 \\
          --json out.json
    """
    from archrank.bench.common import check_seeds, format_stat
    from archrank.bench.oneshot_search import bench_search
    from archrank.oneshot.search import parse_method
    from archrank.runs.loop import executor_for

    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise ArchrankError("--methods is empty; give a comma-separated list")
    for name in names:
        parse_method(name)
    seed_list = check_seeds(seeds, first_seed)
    if epochs < 1:
        raise ArchrankError(f"--epochs must be at least 1, got {epochs}")
    if json_out is not None:
        check_output(json_out, "--json", [truth, work_dir])
    check_plot_dir(plot)
    executor = executor_for(workers)
    progress = eta_progress()
    task = progress.add_task("oneshot-search", total=None, info="")

    def on_stage(text: str) -> None:  # a new stage: its own bar from zero
        progress.update(task, description=text, completed=0, total=None, info="")

    try:
        with progress:
            report = bench_search(
                names, seed_list, truth=truth, space=space,
                dataset=None if dataset is None else dataset_spec(dataset), epochs=epochs,
                work_dir=work_dir, executor=executor, workers=workers, recipe=recipe,
                on_stage=on_stage,
                on_progress=lambda done, total, info: progress.update(
                    task, completed=done, total=total, info=info))
    except KeyboardInterrupt:  # every finished search and training is kept in the work dir
        raise Interrupted(f"interrupted; the same command resumes from {work_dir}") from None
    finally:
        close_now(executor)
    table = Table("method", "truth percentile", "val_acc", "test_acc", "search s", "degenerate")
    n_seeds = len(seed_list)  # one search seed: the mean alone
    for m, r in report["methods"].items():
        table.add_row(m, format_stat(r["truth_percentile"], 1, n_seeds),
                      format_stat(r["val_acc"], 2, n_seeds),
                      format_stat(r["test_acc"], 2, n_seeds),
                      f"{r['search_seconds']['mean']:.0f}", f"{r['degenerate_rate']:.2f}")
    console.print(table)
    if json_out is not None:
        write_json(json_out, report)
        err.print(f"wrote {json_out}")
    if plot is not None:
        from archrank.report import write_plots

        console.print(f"wrote {len(write_plots(report, plot, json_out or '-'))} plot files "
                      f"to {plot}")
