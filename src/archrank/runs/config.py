"""A search's configuration: what a run directory records, and how to rebuild the search.

``SearchConfig`` holds every option that changes what a search evaluates (space, benchmark,
metric, strategy, predictor, budget, seed, parallel window, ...). It is written into the run
directory when the run is created; a resume rebuilds space, oracle and strategy from it, and an
explicit option that differs from it is an error, so a resume cannot silently change the run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from archrank.errors import ArchrankError, InvalidOption
from archrank.files import shown
from archrank.oracles.base import Oracle
from archrank.spaces import get_space
from archrank.spaces.base import SearchSpace
from archrank.strategies import (
    SEARCH_SETTINGS,
    CandidateSet,
    Strategy,
    make_strategy,
    resolve_strategy,
)

# The command-line flag of each field, for error messages.
FLAGS = {
    "space": "--space", "bench": "--bench", "metric": "--metric", "strategy": "--strategy",
    "predictor": "--predictor", "budget": "--budget", "seed": "--seed",
    "space_from_bench": "--space-from-bench", "max_in_flight": "--workers",
    "oracle": "--oracle", "ordered": "ordered", "strategy_params": "strategy options",
    "oracle_params": "oracle options", "predictor_defaults": "the predictor's guided defaults",
    "defaults_session": "the predictor defaults of session",
}

# Which predictor defaults a new run searches with (``Predictor.params_recorded_by``): the
# development session whose defaults are current. A run records it, so that a later change of
# a default does not change how the run continues on resume.
DEFAULTS_SESSION = 11


@dataclass
class SearchConfig:
    """Everything that determines which architectures a search evaluates."""

    space: str
    metric: str
    strategy: str = "guided"
    predictor: str | None = None
    budget: int = 100
    seed: int = 0
    bench: str | None = None
    space_from_bench: bool = False
    max_in_flight: int = 1
    ordered: bool = True
    oracle: str = "table"
    strategy_params: dict[str, Any] = field(default_factory=dict)
    oracle_params: dict[str, Any] = field(default_factory=dict)
    # guided search takes the options its predictor declares for the space where
    # strategy_params sets none (``Predictor.guided_defaults``); a run recorded before they
    # existed resumes without them (``from_dict``), as it was searched
    predictor_defaults: bool = True
    # the predictor parameters' defaults the run searches with (see DEFAULTS_SESSION)
    defaults_session: int = DEFAULTS_SESSION

    def __post_init__(self) -> None:
        self.strategy, self.predictor = resolve_strategy(self.strategy, self.predictor)
        if isinstance(self.budget, bool) or int(self.budget) < 1:
            raise ArchrankError(f"--budget must be a positive number of evaluations, "
                                f"not {self.budget}")
        self.budget = int(self.budget)
        if int(self.max_in_flight) < 1:
            raise ArchrankError(f"--workers must be at least 1, not {self.max_in_flight}")
        self.max_in_flight = int(self.max_in_flight)
        self.seed = int(self.seed)
        if self.bench is not None:
            self.bench = normalise_bench(self.bench)
        if self.space_from_bench and self.bench is None:
            raise ArchrankError("--space-from-bench needs --bench")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ArchrankError(f"run configuration has unknown keys: {', '.join(unknown)} "
                                "(written by a newer archrank?)")
        data = {"predictor_defaults": False, **data}  # recorded before they existed
        # recorded before runs recorded it: sessions 9-10 (guided defaults on), or before 9
        data.setdefault("defaults_session", 10 if data["predictor_defaults"] else 8)
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:  # a damaged or hand-edited run configuration
            raise ArchrankError(f"run configuration is damaged ({exc})") from None

    def differences(self, other: SearchConfig) -> list[str]:
        """``--flag value`` of ``self`` for each field where ``other`` differs."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{FLAGS.get(k, k)} {_show(a[k])}" for k in a if a[k] != b[k]]

    @property
    def label(self) -> str:
        """Display name of the strategy (the predictor's name for guided search)."""
        return self.predictor if self.strategy == "guided" and self.predictor else self.strategy


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def normalise_bench(spec: str) -> str:
    """A file benchmark as an absolute path (so a resume from elsewhere finds the same file);
    ``nbgraph:DATASET`` and other ``kind:name`` specs unchanged."""
    from archrank.tables import split_spec

    whole = str(spec)
    spec, filters = split_spec(whole)
    if ":" in spec and not Path(spec).exists() and not spec.startswith(("/", ".")):
        return whole
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    return str(Path(spec).expanduser().resolve()) + (f"?{query}" if query else "")


# -- building the search from a configuration ------------------------------------------------
@cache
def _benchmark(spec: str, space_name: str, stamp: tuple[int, int] | None = None) -> Any:
    from archrank.tables import load_benchmark

    return load_benchmark(spec, get_space(space_name), one_table=True)


def _stamp(spec: str) -> tuple[int, int] | None:
    """Modification time and size of a table file: a file changed on disk is read again."""
    from archrank.tables import split_spec

    try:
        st = Path(split_spec(spec)[0]).stat()
    except (OSError, ValueError):
        return None
    return (st.st_mtime_ns, st.st_size)


def load_bench(config: SearchConfig) -> Any:
    """The benchmark table of ``config`` (loaded once per process, again if it changed)."""
    if config.bench is None:
        raise ArchrankError("a tabular search needs --bench (a benchmark table)")
    return _benchmark(config.bench, config.space, _stamp(config.bench))


@cache
def _table_candidates(spec: str, space_name: str, metric: str,
                      stamp: tuple[int, int] | None = None) -> CandidateSet:
    bench = _benchmark(spec, space_name, stamp)
    # only rows that hold the metric: a row without it is a certain failed evaluation
    rows = np.flatnonzero(np.isfinite(bench.values(metric)))
    if not len(rows):
        raise ArchrankError(f"{spec}: no row has a value of {metric!r}")
    hashes = bench.hashes
    # the search's space, not the table's: a table may carry a narrower vocabulary of the same
    # space (NAS-Bench-Graph's proteins: 5 of the 9 ops), whose op ids the predictor, built on
    # the search's space, would misread
    return CandidateSet(get_space(space_name), [bench.archs[i] for i in rows],
                        [hashes[i] for i in rows], table=bench, rows=rows)


def candidates_for(config: SearchConfig) -> CandidateSet | None:
    """The candidate set a search is restricted to (``--space-from-bench``): the table's cells
    that have a value of the metric; else ``None``."""
    if not config.space_from_bench:
        return None
    assert config.bench is not None
    return _table_candidates(config.bench, config.space, config.metric,
                             _stamp(config.bench))


def cap_budget(config: SearchConfig) -> tuple[SearchConfig, str | None]:
    """``config`` with its budget cut to the most distinct cells its search can evaluate (a
    search ends once every candidate is evaluated: a larger budget only pads a bench's
    curves to it, and sizes progress bars and arrays), and the note saying so; ``config``
    and ``None`` when the budget fits or the space is too large to count. ``search`` and
    ``bench search`` both cap this way."""
    cands = candidates_for(config)
    if cands is not None:
        cells, which = len(set(cands.hashes)), f"distinct cells with a value of {config.metric}"
    else:
        space = get_space(config.space)
        counted = space.distinct_cells() if space.enumerable else None
        if counted is None:
            return config, None
        cells, which = counted, f"distinct cells of {space.name}"
    if config.budget <= cells:
        return config, None
    return replace(config, budget=cells), (
        f"--budget {config.budget:,} is more than the {cells:,} {which}: every search ends by "
        f"then, so the budget is {cells:,}")


ORACLES = ("table", "train", "supernet")


def as_recorded(config: SearchConfig, inputs: dict[str, Any] | None,
                recorded: SearchConfig | None = None) -> SearchConfig:
    """A training run recorded before the MNIST-1D default changed (its inputs name the data
    ``mnist1d``, then 5,000 signals; nb201 then trained at width 8) resumes on that data and
    network, which its recorded fingerprints hold it to."""
    from archrank.datasets import recorded_spec
    from archrank.oracles.training import DEFAULTS_BEFORE

    config = _predictor_as_recorded(config)
    if config.oracle != "train":
        return config
    config = _recipe_as_recorded(config, inputs, recorded)
    name = (((inputs or {}).get("dataset") or {}).get("name")  # the data's recorded name,
            or (config.oracle_params or {}).get("dataset", "mnist1d"))  # else the spec
    if not isinstance(name, str):
        return config
    spec, legacy = recorded_spec(name)
    if not legacy:
        return config
    before = DEFAULTS_BEFORE.get((config.space, "mnist1d"), {})
    params = {**before, **config.oracle_params, "dataset": spec}
    return replace(config, oracle_params=params)


def _recipe_as_recorded(config: SearchConfig, inputs: dict[str, Any] | None,
                        recorded: SearchConfig | None) -> SearchConfig:
    """A training run that set no recipe trains on with the epochs it recorded: before
    session 10 such a search took the generic 5 epochs on every dataset (now the dataset's
    default: 20 on digits, 10 on other data); a run recorded before runs recorded their
    inputs took those 5 too. ``recorded``: the run's own configuration, when ``config`` is a
    command compared with it (pinned only if the run set no recipe either)."""
    from archrank.oracles.training import TrainRecipe

    fields = TrainRecipe.__dataclass_fields__
    params = config.oracle_params or {}
    if any(k in params for k in fields) or (
            recorded is not None and any(k in (recorded.oracle_params or {}) for k in fields)):
        return config
    if inputs is None:
        epochs = TrainRecipe().epochs
    else:
        recipe = inputs.get("recipe")
        if not isinstance(recipe, dict) or "epochs" not in recipe:
            return config
        epochs = int(recipe["epochs"])
    return replace(config, oracle_params={**params, "epochs": epochs})


def _predictor_as_recorded(config: SearchConfig) -> SearchConfig:
    """A guided run searches with the predictor defaults of the session that recorded it
    (``Predictor.params_recorded_by``: GATES++'s "auto" arch inputs before the structural
    signals, the tree baselines' raw targets before session 11), unless it set them itself."""
    if config.strategy != "guided":
        return config
    from archrank.predictors.base import predictor_class

    assert config.predictor is not None  # resolve_strategy names guided search's predictor
    before = predictor_class(config.predictor).params_recorded_by(config.defaults_session,
                                                                  config.space)
    if not before:
        return config
    params = dict(config.strategy_params)
    pred = {**before, **(params.get("predictor_params") or {})}
    return replace(config, strategy_params={**params, "predictor_params": pred})


def build_oracle(config: SearchConfig) -> Oracle:
    """The oracle ``config`` names: ``table`` (a benchmark table), ``train`` (real training
    of each cell's network on ``oracle_params["dataset"]``, MNIST-1D by default) or
    ``supernet`` (shared-weight scores of the trained supernet ``oracle_params["supernet"]``)."""
    if config.oracle not in ORACLES:
        raise ArchrankError(f"unknown oracle {config.oracle!r}; choose from: "
                            f"{', '.join(ORACLES)}")
    if config.oracle == "train":
        return _training_oracle(config)
    if config.oracle == "supernet":
        return _supernet_oracle(config)
    from archrank.oracles.tabular import TabularOracle

    bench = load_bench(config)
    oracle = TabularOracle(bench, config.metric, missing="fail")
    space = get_space(config.space)
    covered = len(set(bench.hashes))
    distinct = space.distinct_cells()
    if not config.space_from_bench and (distinct is None or covered < distinct):
        raise ArchrankError(
            f"{shown(config.bench)} holds {covered:,} of the "
            f"{'' if distinct is None else f'{distinct:,} '}distinct {space.name} cells; "
            "add --space-from-bench to search among the table's cells"
        )
    return oracle


def build_strategy(config: SearchConfig, space: SearchSpace | None = None) -> Strategy:
    """A fresh strategy for ``config`` (same seed: same proposals for the same results)."""
    space = space or get_space(config.space)
    for key in config.strategy_params:
        if key in SEARCH_SETTINGS:  # the search's own settings, not strategy options
            raise InvalidOption(f"{key} is set by {SEARCH_SETTINGS[key]}, not by a strategy "
                                f"option (--set {key}=...)")
    return make_strategy(
        config.strategy, space, predictor=config.predictor, seed=config.seed,
        objective=config.metric, candidates=candidates_for(config),
        predictor_defaults=config.predictor_defaults, **config.strategy_params,
    )


def _training_oracle(config: SearchConfig) -> Oracle:
    from archrank.oracles.training import TrainingOracle, TrainRecipe

    params = dict(config.oracle_params)
    recipe_keys = set(TrainRecipe.__dataclass_fields__)
    given = {k: params.pop(k) for k in list(params) if k in recipe_keys}
    # none given: the oracle's default recipe for the dataset and space (its epochs differ:
    # 5 on MNIST-1D, 20 on digits, 10 elsewhere), as bench table trains the truth
    recipe = TrainRecipe(**given) if given else None
    dataset = params.pop("dataset", "mnist1d")
    # the training seed (weights, batch order) is its own option; the search seed by default
    train_seed = params.pop("train_seed", config.seed)
    allowed = {"width", "depth", "threads", "device", "train_seed"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ArchrankError(f"unknown training option(s): {', '.join(unknown)}; "
                            f"choose from: {', '.join(sorted(allowed | recipe_keys))}")
    if config.metric != TrainingOracle.objective:  # the strategy would rank another number
        raise ArchrankError(f"--oracle train maximises {TrainingOracle.objective} (validation "
                            f"accuracy), not {config.metric!r}; every evaluation also "
                            f"records test_acc, val_loss and the other metrics")
    return TrainingOracle(config.space, dataset, recipe=recipe, seed=int(train_seed), **params)


def _supernet_oracle(config: SearchConfig) -> Oracle:
    from archrank.oneshot.oracle import SupernetOracle

    params = dict(config.oracle_params)
    path = params.pop("supernet", None)
    if path is None:
        raise ArchrankError("--oracle supernet needs --supernet CKPT (a trained supernet)")
    if params:
        raise ArchrankError(f"unknown supernet oracle option(s): {', '.join(sorted(params))}")
    if config.metric not in ("val_acc",):
        raise ArchrankError(f"--oracle supernet maximises val_acc, not {config.metric!r}")
    return SupernetOracle(path, space=config.space)
