"""Weight-sharing NAS engine: supernet, single-path training, shared-weight scoring, hardware
costs, and the fitted score table of the whole space.

One-way imports: this package uses ``nn``, ``spaces``, ``datasets``, ``oracles`` (the oracle
base class and the training recipe) and ``predictors``; strategies, runs and the CLI use it;
``oracles`` never imports it.

=================  ==============================================================
``supernet``       ``Supernet`` interface, ``NB201Supernet``, ``SUPERNETS`` registry
``sampler``        pluggable path samplers: uniform (SPOS), fair
``trainer``        ``SupernetTrainer``: deterministic, checkpointed, DDP when launched so
``checkpoint``     the checkpoint file and its checks
``scoring``        ``SubnetScorer``: BN recalibration, validation accuracy and loss
``oracle``         ``SupernetOracle`` for searches (``--oracle supernet``)
``hardware``       latency lookup table, constraints, Pareto front
``fit``            ``fit_space``: score a sample, fit a graph predictor, predict the space
``supernet_darts`` the supernet of the darts space
``darts``          first-order DARTS as a trainer sampler (a baseline)
``landscape``      proxy validation: the learned validation-loss landscape
``proxy``          proxy validation: memory, OIW, Gumbel / evolutionary path sampler
``search``         one-shot searches (proxy-ea, proxy-darts, darts, spos-ea, gcn-fit)
=================  ==============================================================
"""

from archrank.oneshot.checkpoint import Checkpoint, load_checkpoint
from archrank.oneshot.fit import ScoreTable, fit_space, sample_codes
from archrank.oneshot.hardware import (
    LatencyTable,
    feasible,
    pareto_front,
    select,
    validate_latency,
)
from archrank.oneshot.oracle import SupernetOracle
from archrank.oneshot.sampler import SAMPLERS, ArchSampler, FairSampler, UniformSampler
from archrank.oneshot.scoring import ScoreOptions, SubnetScorer, score_archs
from archrank.oneshot.supernet import (
    SUPERNETS,
    NetworkSetting,
    Supernet,
    build_supernet,
    setting_for,
)
from archrank.oneshot.trainer import SupernetTrainer

__all__ = [
    "SAMPLERS",
    "SUPERNETS",
    "ArchSampler",
    "Checkpoint",
    "FairSampler",
    "LatencyTable",
    "NetworkSetting",
    "ScoreOptions",
    "ScoreTable",
    "SubnetScorer",
    "Supernet",
    "SupernetOracle",
    "SupernetTrainer",
    "UniformSampler",
    "build_supernet",
    "feasible",
    "fit_space",
    "load_checkpoint",
    "pareto_front",
    "sample_codes",
    "score_archs",
    "select",
    "setting_for",
    "validate_latency",
]
