"""One-shot architecture search on the engine's supernet: one entry point for every method.

=================  ============================================================================
``proxy-darts``    proxy validation, differentiable form (``proxy.ProxySampler``, mode darts)
``proxy-ea``       proxy validation, evolutionary form (``proxy.ProxySampler``, mode ea)
``darts``          first-order DARTS through mixed ops (``darts.DartsSampler``)
``spos-ea``        uniform single-path training, then regularized evolution on supernet
                   scores (``strategies.evolution`` through ask/tell, ``scoring.SubnetScorer``)
``gcn-fit``        uniform single-path training, then ``fit.fit_space``: a uniform sample of
                   sub-networks scored with shared weights, a gcn fitted to the scores, the
                   best predicted cell of the whole space (the fitting of issue 11)
=================  ============================================================================

Every method trains on the same budget (recipe epochs, data, seed) and writes a supernet
``Checkpoint`` after every epoch, which ``resume=True`` continues. The result names the chosen
cell, its supernet score (BN-recalibrated validation accuracy and loss with shared weights),
the search time and whether the cell is degenerate (no convolution on any live
input-to-output path: the DARTS collapse).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from archrank.errors import ArchrankError, first_line
from archrank.nn import torch_threads
from archrank.oneshot.checkpoint import Checkpoint, load_checkpoint
from archrank.oneshot.darts import DartsSampler
from archrank.oneshot.fit import DEFAULT_SAMPLES
from archrank.oneshot.landscape import LandscapeConfig
from archrank.oneshot.proxy import ProxyConfig, ProxySampler
from archrank.oneshot.sampler import ArchSampler
from archrank.oneshot.trainer import StepCallback, SupernetTrainer
from archrank.oracles.training import TrainRecipe
from archrank.spaces.base import SearchSpace

# (done, total, what): the work of a search after its training (evolution, scoring)
ChoiceCallback = Callable[[int, int, str], None]

METHODS = ("proxy-ea", "proxy-darts", "darts", "spos-ea", "gcn-fit")
UNIFORM_METHODS = ("spos-ea", "gcn-fit")  # plain SPOS training: one supernet serves both


@dataclass
class SearchResult:
    method: str
    arch: str
    codes: list[int]
    supernet_val_acc: float
    supernet_val_loss: float
    seconds: float
    degenerate: bool
    sampler_info: dict[str, Any] = field(default_factory=dict)  # ArchSampler.info()

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def is_degenerate(space: SearchSpace, codes: np.ndarray) -> bool:
    """No convolution on any live input-to-output path of the cell ``codes`` (of its normal
    cell, on spaces with normal and reduction cells)."""
    return not any("conv" in name
                   for name in space.normal_live_ops([int(c) for c in codes]))


def check_choice(method: str, ea_evals: int | None, fit_samples: int | None,
                 fit_params: dict[str, Any] | None = None) -> None:
    """The settings of the choice after training, before any training: spos-ea's
    ``ea_evals`` (at least 1), gcn-fit's ``fit_samples`` (at least 2) and ``fit_params``
    (the gcn is built with them); None: the default."""
    if method == "spos-ea" and ea_evals is not None and ea_evals < 1:
        raise ArchrankError(f"--ea-evals must be at least 1, got {ea_evals}")
    if method == "gcn-fit" and fit_samples is not None and fit_samples < 2:
        raise ArchrankError(f"--fit-samples must be at least 2, got {fit_samples}")
    if method == "gcn-fit" and fit_params:
        from archrank.predictors.base import make_predictor

        try:
            make_predictor("gcn", "nb201", **fit_params)
        except (ArchrankError, ValueError, TypeError) as exc:
            raise ArchrankError(f"gcn-fit's gcn: {first_line(exc)}") from None


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ArchrankError(f"unknown search method {method!r}; choose from {', '.join(METHODS)}")
    return method


# option names of a method spec that are not ProxyConfig field names
_ALIASES = {"oiw": "oiw_norm"}
_ONOFF = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False}


# proxy settings that the evolutionary form never reads, with why (an ablation of them would
# silently measure the default twice)
_EA_PROPOSES = ("proxy-ea's evolution proposes every path from the first step (its first "
                "population is random) and the landscape ranks the offspring once fitted")
_ALPHA_UNUSED = ("alpha and the OIW steer only the Gumbel sample, which proxy-ea trains only "
                 "when evolution has nothing left to propose: the same search either way")
DARTS_ONLY = {"warmup_steps": _EA_PROPOSES, "oiw_norm": _ALPHA_UNUSED,
              "alpha_lr": _ALPHA_UNUSED, "alpha_steps": _ALPHA_UNUSED,
              "alpha_optimizer": _ALPHA_UNUSED}


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    """``METHOD[:KEY=VALUE...]`` -> ``(method, search keyword arguments)``.

    So that one benchmark runs ablations side by side as methods: proxy methods take any
    ``ProxyConfig`` field (``sampling``, ``oiw`` for ``oiw_norm``, ``alpha_lr``, ...) and
    ``pretrain=on|off``; spos-ea takes ``evals``, gcn-fit ``samples`` and its gcn's parameters
    (``fit_params``: ``epochs``, ``ensemble``, ...; values read as JSON, else as text).
    Example: ``proxy-darts:oiw=off``, ``proxy-ea:sampling=uniform:pretrain=off``,
    ``gcn-fit:samples=200:epochs=50``.
    """
    method, *opts = spec.strip().split(":")
    check_method(method)
    proxy: dict[str, Any] = {}
    kwargs: dict[str, Any] = {}
    fields = {f.name: f for f in ProxyConfig.__dataclass_fields__.values()
              if f.name not in ("mode", "landscape")}
    seen: set[str] = set()
    for opt in opts:
        key, sep, value = opt.partition("=")
        key = _ALIASES.get(key, key)
        if sep and key in seen:  # the spec names a run: one value a key
            raise ArchrankError(f"{spec}: {key} is given twice")
        seen.add(key)
        try:
            if not sep or not value:
                raise ValueError
            if method in UNIFORM_METHODS and key == {"spos-ea": "evals",
                                                     "gcn-fit": "samples"}[method]:
                if not value.strip().lstrip("+-").isdigit():
                    raise ArchrankError(f"{spec}: {key} must be a whole number, got "
                                        f"{value!r}")
                kwargs["ea_evals" if method == "spos-ea" else "fit_samples"] = int(value)
            elif method == "gcn-fit" and key in _gcn_params():
                kwargs.setdefault("fit_params", {})[key] = _json_or_text(value)
            elif method.startswith("proxy-") and key == "pretrain":
                proxy["landscape"] = LandscapeConfig(pretrain=_ONOFF[value.lower()])
            elif method == "proxy-ea" and key in DARTS_ONLY:
                raise ArchrankError(f"{spec}: {key} applies to proxy-darts only: "
                                    f"{DARTS_ONLY[key]}")
            elif method.startswith("proxy-") and key in fields:
                default = getattr(ProxyConfig(), key)
                proxy[key] = type(default)(value)
            else:
                raise ArchrankError(f"{spec}: {method} has no option {key!r}")
        except (ValueError, KeyError):
            raise ArchrankError(f"{spec}: bad option {opt!r} (expected KEY=VALUE)") from None
    if proxy:
        ProxyConfig(**proxy)  # unknown values fail here, with their names
        kwargs["proxy"] = proxy
    try:  # bad values fail here, not after the training
        check_choice(method, kwargs.get("ea_evals"), kwargs.get("fit_samples"),
                     kwargs.get("fit_params"))
    except ArchrankError as exc:
        raise ArchrankError(f"{spec}: {exc}") from None
    return method, kwargs


def _gcn_params() -> set[str]:
    """The parameter names of gcn-fit's gcn (a method spec may set them)."""
    from archrank.predictors.gcn import GCNPredictor
    from archrank.predictors.neural import TRAIN_DEFAULTS

    return {*TRAIN_DEFAULTS, *GCNPredictor.defaults}


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def resumable(path: str | Path, method: str | None, space: str | None, *,
              width: int | None = None, depth: int | None = None) -> Checkpoint:
    """The checkpoint at ``path``, checked to be a ``method`` search over ``space`` (and of
    ``width`` / ``depth`` when given); a method or space not given is the checkpoint's (a
    uniform supernet serves spos-ea and gcn-fit alike, so it needs the method)."""
    ckpt = load_checkpoint(path, space=space, width=width, depth=depth)
    if ckpt.sampler not in (*METHODS, "uniform"):
        raise ArchrankError(f"{path}: a supernet trained by oneshot train with the "
                            f"{ckpt.sampler} sampler, not a search checkpoint (continue it with "
                            f"oneshot train --resume {path})")
    if method is None:
        if ckpt.sampler == "uniform":
            raise ArchrankError(f"{path} is a uniformly trained supernet: give --method "
                                f"{' or '.join(UNIFORM_METHODS)} (with its --ea-evals / "
                                "--fit-samples) to continue it")
        method = ckpt.sampler
    want = "uniform" if method in UNIFORM_METHODS else method
    if ckpt.sampler != want:
        raise ArchrankError(f"{path}: a checkpoint of a {ckpt.sampler} search, not {method}")
    return ckpt


def _proxy_config(method: str, overrides: dict[str, Any] | None) -> ProxyConfig | None:
    if not method.startswith("proxy-"):
        return None
    return ProxyConfig(mode=method.split("-", 1)[1], **(overrides or {}))


def _runner(method: str, *, space: str, dataset: Any, epochs: int | None, seed: int,
            recipe: TrainRecipe | None, checkpoint: Path | None, resume: bool,
            proxy: dict[str, Any] | None, threads: int, device: str,
            width: int | None = None, depth: int | None = None,
            final: str | None = None) -> Any:
    """The trainer of ``method``, fresh or resumed from ``checkpoint`` (``epochs`` None:
    the checkpoint's; otherwise it must be the checkpoint's). ``final`` (or ``proxy``'s
    "final") overrides the proxy methods' final choice, also a resumed checkpoint's."""
    kwargs = {"threads": threads, "device": device}
    if resume:
        if checkpoint is None or not checkpoint.exists():
            raise ArchrankError(f"{checkpoint}: no search checkpoint to resume")
        # a checkpoint of another width or depth is refused, not silently continued
        ckpt = resumable(checkpoint, method, space, width=width, depth=depth)
        if epochs is not None and ckpt.recipe.epochs != epochs:
            raise ArchrankError(f"{checkpoint}: a {ckpt.recipe.epochs}-epoch search, not "
                                f"{epochs} epochs")
        given = dict(proxy or {})
        asked = given.pop("final", None)  # not a training setting: may be asked anew
        final = final or asked
        config = _proxy_config(method, given)
        if method.startswith("proxy-") and ckpt.sampler_state:
            saved = ProxyConfig.from_dict(ckpt.sampler_state["config"])
            if proxy is not None and not saved.same_training(config):
                raise ArchrankError(f"{checkpoint}: a {method} search with other settings; "
                                    "use another checkpoint (or --work-dir)")
            # the checkpoint's recorded final choice (a search from before proxy-ea's default
            # changed keeps the whole space), unless one is asked for
            config = saved if final is None else replace(saved, final=final)
        data = ckpt.dataset(dataset)  # None: the recorded spec; either way fingerprinted
        sampler = _sampler(method, _space(ckpt.setting.space), ckpt.seed, data, config)
        if sampler is not None:  # a proxy sampler refuses a checkpoint of other settings
            sampler.load_state_dict(ckpt.sampler_state)
        return SupernetTrainer.resume(ckpt, dataset=data, sampler=sampler, **kwargs)
    if epochs is None or epochs < 1:
        raise ArchrankError(f"--epochs must be at least 1, got {epochs}")
    recipe = replace(recipe or TrainRecipe(), epochs=int(epochs))
    trainer = SupernetTrainer.create(space, dataset, recipe=recipe, seed=seed, width=width,
                                     depth=depth, **kwargs)
    sampler = _sampler(method, trainer.supernet.space, seed, trainer.dataset,
                       _proxy_config(method, {**(proxy or {}),
                                              **({"final": final} if final else {})}))
    if sampler is not None:
        trainer.sampler = sampler
    return trainer


def _sampler(method: str, space: SearchSpace, seed: int, dataset: Any,
             config: ProxyConfig | None) -> ArchSampler | None:
    """The sampler of ``method`` (None: the trainer's uniform one)."""
    if method == "darts":
        return DartsSampler(space, seed, dataset=dataset)
    if method.startswith("proxy-"):
        return ProxySampler(space, seed, dataset=dataset, config=config)
    return None


def _space(name: str) -> SearchSpace:
    from archrank.spaces import get_space

    return get_space(name)


def search(method: str, *, space: str = "nb201", dataset: Any = "mnist1d",
           epochs: int | None = 50,
           seed: int = 0, recipe: TrainRecipe | None = None, checkpoint: str | Path | None = None,
           resume: bool = False, proxy: dict[str, Any] | None = None, ea_evals: int = 100,
           fit_samples: int = DEFAULT_SAMPLES, fit_params: dict[str, Any] | None = None,
           width: int | None = None, depth: int | None = None, threads: int = 1,
           device: str = "auto",
           on_step: StepCallback | None = None, final: str | None = None,
           on_choice: ChoiceCallback | None = None) -> SearchResult:
    """Run (or continue) a one-shot search with ``method``; see the module docstring.

    ``proxy`` overrides ``ProxyConfig`` fields of the proxy methods; on ``resume`` None takes
    the checkpoint's settings and anything else must match them, except the final choice
    (``final``, or ``proxy``'s "final"), which may be asked anew; without one a resumed
    search keeps its recorded choice. ``ea_evals``: cells scored by spos-ea's evolution;
    ``fit_samples``: cells scored for gcn-fit's fit (both checked before any training);
    ``fit_params``: the parameters of gcn-fit's gcn (``fit_space``'s ``predictor_params``,
    e.g. fewer epochs for a quick search; None: its defaults).
    ``on_choice(done, total, what)`` follows the work after training (spos-ea's evolution,
    gcn-fit's scoring)."""
    check_method(method)
    check_choice(method, ea_evals, fit_samples, fit_params)
    with torch_threads(threads):  # also the landscape's pre-training and the final choice
        return _search(method, space=space, dataset=dataset, epochs=epochs, seed=seed,
                       recipe=recipe, checkpoint=checkpoint, resume=resume, proxy=proxy,
                       ea_evals=ea_evals, fit_samples=fit_samples, fit_params=fit_params,
                       width=width, depth=depth, threads=threads, device=device,
                       on_step=on_step, final=final, on_choice=on_choice)


def _search(method: str, *, checkpoint: str | Path | None, ea_evals: int, fit_samples: int,
            fit_params: dict[str, Any] | None, threads: int, on_step: StepCallback | None,
            on_choice: ChoiceCallback | None = None, **kwargs: Any) -> SearchResult:
    from archrank.oneshot.scoring import JournaledScorer, SubnetScorer, journal_header

    path = Path(checkpoint) if checkpoint is not None else None
    start = time.perf_counter()
    runner = _runner(method, checkpoint=path, threads=threads, **kwargs)
    before = runner.seconds
    runner.train(checkpoint=path, on_step=on_step)
    ckpt = runner.checkpoint()
    scorer: SubnetScorer
    if path is None or not os.access(path.parent, os.W_OK):  # nowhere to journal
        scorer = SubnetScorer.from_checkpoint(ckpt, runner.dataset, threads=threads)
    else:  # the choice's scores (evolution, gcn-fit's sample) survive a kill, beside the
        # checkpoint: a resumed search takes them instead of scoring again (a journal left
        # by another search under this name is replaced)
        scorer = JournaledScorer.from_checkpoint(ckpt, runner.dataset, threads=threads)
        scorer.attach(Path(f"{path}.scores.jsonl"), journal_header(ckpt, scorer.options),
                      replace_stale=True)
    sp = runner.supernet.space
    if method == "spos-ea":
        codes = _evolve(sp, scorer, ea_evals, runner.seed, on_choice)
    elif method == "gcn-fit":
        codes = _fitted_best(scorer, fit_samples, runner.seed, on_choice, fit_params)
    else:
        codes = runner.sampler.final_codes()
    scores = scorer.score_codes(np.asarray([codes]))
    # training time of every session of the search, plus this session's set-up (data,
    # landscape pre-training) and choice
    trained_now = runner.seconds - before
    seconds = runner.seconds + time.perf_counter() - start - trained_now
    return SearchResult(
        method=method, arch=sp.format(sp.from_codes(np.asarray([codes]))[0]),  # type: ignore[attr-defined]
        codes=[int(c) for c in codes], supernet_val_acc=float(scores["val_acc"][0]),
        supernet_val_loss=float(scores["val_loss"][0]), seconds=float(seconds),
        degenerate=is_degenerate(sp, np.asarray(codes)), sampler_info=runner.sampler.info())


def _fitted_best(scorer: Any, samples: int, seed: int,
                 on_choice: ChoiceCallback | None = None,
                 params: dict[str, Any] | None = None) -> np.ndarray:
    """gcn-fit: the cell of the whole space with the best score of ``fit_space``'s gcn."""
    from archrank.oneshot.fit import fit_space

    def on_scored(done: int, total: int) -> None:
        if on_choice:
            on_choice(done, total, "scoring sampled cells with shared weights")

    table = fit_space(scorer, samples=samples, predictor="gcn", seed=seed, on_scored=on_scored,
                      predictor_params=params)
    space = scorer.supernet.space
    best = table.archs[int(np.argmax(table.columns["predicted"]))]
    return space.codes([space.parse(best)])[0]  # type: ignore[attr-defined]


def _evolve(space: SearchSpace, scorer: Any, evals: int, seed: int,
            on_choice: ChoiceCallback | None = None) -> np.ndarray:
    """SPOS+EA: regularized evolution on shared-weight scores (fitness: negated validation
    loss); returns the best scored cell."""
    from archrank.strategies.evolution import RegularizedEvolution

    strat = RegularizedEvolution(space, population=min(20, evals), tournament=5, seed=seed)
    for done in range(evals):
        asked = strat.ask(1)
        if not asked:
            break
        loss = float(scorer.score(asked)["val_loss"][0])
        strat.tell(asked[0], -loss)
        if on_choice:
            on_choice(done + 1, evals, "evolution on shared-weight scores")
    best = strat.best
    assert best is not None
    return space.codes([best[0]])[0]  # type: ignore[attr-defined]
