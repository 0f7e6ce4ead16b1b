"""GATES++: GATES with operation-level and architecture-level information (after Ning et al.,
the extension of GATES with "multifaceted information").

Three additions to ``GatesNet``, each can be switched off to measure it alone:

* ``op_info``: every layer's op embedding is a learned projection of the op's feature vector
  (``archrank.opinfo``: family, kernel, parameters, FLOPs at its position...) plus the free
  embedding, so ops that compute similar things start similar, and an op rare among the
  labelled cells still gets a sensible gate;
* ``arch_inputs``: signals known for every cell without training it (FLOPs, parameters,
  zero-cost proxies, structural signals of the cell's graph: ``archrank.signals``;
  ``structure`` names every structural signal), rank-transformed by the shared training loop,
  pass a small MLP and are concatenated to the cell embedding before the head;
* ``aux_targets``: signals known only for labelled cells (nb101's ``val_acc_4/12/36``, other
  columns of a table's row) are predicted by a second output of the head's shared hidden
  layers; missing values are masked out of that loss (``aux_weight``), the pairwise ranking
  loss on the objective stays the main loss.

``arch_inputs="auto"`` picks the space's default (measured, docs/benchmarks.md "GATES++");
``""`` switches them off.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import nn

from archrank.errors import ArchrankError
from archrank.opinfo import COST_SCALES, op_features
from archrank.predictors.base import signal_names
from archrank.predictors.gates import GatesNet, GatesPredictor, mlp_trunk, op_count
from archrank.spaces.base import GraphBatch, SearchSpace

# Default arch-level inputs per space (chosen by measurement, docs/benchmarks.md): exact
# costs, the structural signals (Kendall tau over the previous default: nb101 +0.018 at 100
# labels, +0.011 at 1,000; nb201 +0.022 at 50, +0.018 at 100), and synflow where the whole
# space's cache fills in minutes.
AUTO_ARCH_INPUTS: dict[str, str] = {
    "nb201": "flops,params,synflow,structure",
    "nb101": "flops,params,structure",
}
# what "auto" meant before the structural signals (predictor files written then do not name
# their inputs: ``saved_arch_inputs``)
AUTO_BEFORE_STRUCTURE: dict[str, str] = {"nb201": "flops,params,synflow",
                                         "nb101": "flops,params"}


def standardise_columns(feats: torch.Tensor) -> torch.Tensor:
    """Op features with every column that varies over the space's ops at zero mean and unit
    variance, the constant ones dropped: two ops that differ in one column (a 3x3 vs a 1x1
    convolution) then start as far apart as two that differ in family."""
    std = feats.std(dim=0)
    keep = std > 1e-6
    return (feats[:, keep] - feats[:, keep].mean(dim=0)) / std[keep]


class GatesPPNet(nn.Module):
    """GATES passes (op embeddings from features), arch-input MLP, shared head trunk with a
    score output and an auxiliary output."""

    def __init__(self, *, gates: dict[str, Any], n_arch: int, arch_hidden: int, n_aux: int,
                 mlp_hidden: int, mlp_layers: int, dropout: float,
                 arch_fusion: str = "concat") -> None:
        super().__init__()
        self.gates = GatesNet(mlp_hidden=1, mlp_layers=0, dropout=0.0, **gates)
        del self.gates.head  # only the passes and the readout are used
        width = self.gates.embed_width
        self.arch_mlp: nn.Module | None = None
        self.arch_score: nn.Module | None = None
        if n_arch and arch_fusion == "concat":
            self.arch_mlp = nn.Sequential(nn.Linear(n_arch, arch_hidden), nn.ReLU())
            width += arch_hidden
        elif n_arch:  # "add": a score of its own, added to the graph's
            self.arch_score = nn.Sequential(nn.Linear(n_arch, arch_hidden), nn.ReLU(),
                                            nn.Linear(arch_hidden, 1))
        self.trunk, width = mlp_trunk(width, mlp_hidden, mlp_layers, dropout)
        self.score = nn.Linear(width, 1)
        self.aux = nn.Linear(width, n_aux) if n_aux else None

    def forward(self, g: GraphBatch, arch: torch.Tensor | None = None,
                with_aux: bool = False) -> Any:
        h = self.gates.embed(g)
        if self.arch_mlp is not None:
            assert arch is not None, "this GATES++ network takes arch-level inputs"
            h = torch.cat([h, self.arch_mlp(arch)], dim=-1)
        h = self.trunk(h)
        score = self.score(h).squeeze(-1)
        if self.arch_score is not None:
            assert arch is not None, "this GATES++ network takes arch-level inputs"
            score = score + self.arch_score(arch).squeeze(-1)
        if with_aux:
            assert self.aux is not None
            return score, self.aux(h)
        return score


class GatesPPPredictor(GatesPredictor):
    """GATES++ (see the module docstring); GATES's training recipe and defaults."""

    name: ClassVar[str] = "gates++"
    uses_arch_inputs: ClassVar[bool] = True
    uses_aux_targets: ClassVar[bool] = True
    # With its zero-cost warm start the search begins next to good cells, so on nb201
    # refitting every 5 evaluations and spending exploration slots next to the best cells told
    # pays: median queries to the optimum 25.0 -> 22.0 over 200 fresh seeds, every seed
    # reaching it (GATES, starting at random, gains less; on the nb101 table, 20 seeds, the
    # same options found the optimum later, median 61 vs 50: docs/benchmarks.md "Guided
    # search defaults per predictor").
    guided_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = MappingProxyType(
        {"nb201": MappingProxyType({"batch": 5, "explore_near": 3})})
    positive_params: ClassVar[tuple[str, ...]] = (*GatesPredictor.positive_params,
                                                  "arch_hidden")
    defaults: ClassVar[dict[str, Any]] = {
        **GatesPredictor.defaults,
        "op_info": "1",        # op embeddings from archrank.opinfo features (0: free only;
                               # auto: 1 on op-on-edge spaces, 0 on op-on-node ones)
        "arch_inputs": "auto",  # comma-separated signals, "auto" (space default) or ""
        "aux_targets": "",     # comma-separated columns of labelled cells (table-specific)
        "arch_hidden": 32,     # width of the arch-input MLP
        "arch_fusion": "concat",  # concat: into the head's input; add: a score of its own
        # How the op features enter (measured, docs/benchmarks.md "Op-level information on
        # nb101" and the session-6 rows): plain cost fractions, each column standardised over
        # the space's ops, the free embedding at GATES's N(0, 1) start and the projection at
        # zero, so the model starts as GATES and learns what the features add.
        "op_costs": "linear",  # params / flops op features: linear fraction or log (log1p)
        "op_norm": 1,          # 1: standardise each op feature column over the space's ops
        "proj_scale": 0.0,     # initial scale of the feature projection (0: starts at zero)
        "free_scale": 1.0,     # initial scale of the free op embedding (1: GATES's start)
        # r > 0: the op embedding is the features alone through an r-wide bottleneck, no
        # free part (op-level information alone on nb201, 50 labels: r = 1 is +0.006 over
        # GATES across forty training sets, noise; the full model loses at 100 labels, so 0
        # stays: docs/benchmarks.md "Op-level information through a bottleneck")
        "op_rank": 0,
    }

    def __init__(self, space: SearchSpace | str, *, seed: int = 0, **params: Any) -> None:
        super().__init__(space, seed=seed, **params)
        space = self.space  # a name resolved
        if self.hp["arch_inputs"] == "auto":
            self.arch_inputs = signal_names(AUTO_ARCH_INPUTS.get(space.name, ""), space)
        else:
            self.arch_inputs = signal_names(self.hp["arch_inputs"], space)
        self.aux_targets = signal_names(self.hp["aux_targets"])
        if str(self.hp["op_info"]).lower() not in ("auto", "0", "1", "true", "false"):
            raise ArchrankError(f"gates++ op_info must be auto, 0 or 1, not "
                                f"{self.hp['op_info']!r}")
        if self.hp["op_costs"] not in COST_SCALES:
            raise ArchrankError(f"gates++ op_costs must be one of {', '.join(COST_SCALES)}, "
                                f"not {self.hp['op_costs']!r}")
        if self.hp["op_rank"] and not self.op_info():
            raise ArchrankError("gates++ op_rank shapes the op features' projection: it needs "
                                "op_info=1")
        if self.hp["op_rank"] and (float(self.hp["proj_scale"]) != 0.0
                                   or float(self.hp["free_scale"]) != 1.0):
            raise ArchrankError("gates++ op_rank > 0 has no free embedding and starts its "
                                "projection at the usual scale: drop proj_scale / free_scale")
        if self.hp["arch_fusion"] not in ("concat", "add"):
            raise ArchrankError(f"gates++ arch_fusion must be concat or add, not "
                                f"{self.hp['arch_fusion']!r}")

    @classmethod
    def params_recorded_by(cls, session: int, space: str) -> dict[str, Any]:
        """Before session 9, "auto" arch inputs were those of before the structural signals."""
        before = AUTO_BEFORE_STRUCTURE.get(space)
        return {"arch_inputs": before} if before is not None and session < 9 else {}

    def saved_arch_inputs(self, state: dict[str, Any]) -> tuple[str, ...]:
        """A file written before the resolved names were saved: with ``arch_inputs="auto"``
        it took the inputs "auto" meant then (nb101: flops and params), not today's."""
        before = AUTO_BEFORE_STRUCTURE.get(self.space.name)
        if (self.hp["arch_inputs"] == "auto" and before is not None
                and len(state.get("arch_ref", [])) == len(signal_names(before))):
            return signal_names(before)
        return self.arch_inputs

    def op_info(self) -> bool:
        """Whether op embeddings come from op features: ``op_info`` (default on: with the
        default op setting it is level with or above GATES on nb201 and nb101), or for
        ``auto`` on op-on-edge spaces only (the earlier default, from when the log-scaled
        features hurt nb101; docs/benchmarks.md "GATES++")."""
        value = self.hp["op_info"]
        if value == "auto":
            return self.space.op_on == "edge"
        return str(value).lower() in ("1", "true")

    def build_model(self) -> nn.Module:
        hp = self.hp
        feats = None
        if self.op_info():
            feats = torch.as_tensor(op_features(self.space, str(hp["op_costs"])).matrix)
            if int(hp["op_norm"]):
                feats = standardise_columns(feats)
        gates = {"op_on": self.space.op_on, "n_ops": op_count(self.space),
                 "op_dim": int(hp["op_dim"]), "dim": int(hp["dim"]),
                 "layers": int(hp["layers"]), "readout": self.readout(),
                 "activation": str(hp["activation"]), "op_features": feats,
                 "op_rank": int(hp["op_rank"]) if feats is not None else 0,
                 "num_inputs": self.space.num_inputs}
        net = GatesPPNet(gates=gates, n_arch=len(self.arch_inputs),
                         arch_hidden=int(hp["arch_hidden"]), n_aux=len(self.aux_targets),
                         mlp_hidden=int(hp["mlp_hidden"]), mlp_layers=int(hp["mlp_layers"]),
                         dropout=float(hp["dropout"]), arch_fusion=str(hp["arch_fusion"]))
        if feats is not None and not int(hp["op_rank"]):
            with torch.no_grad():
                for layer in net.gates.layers:
                    layer.op_emb.weight.mul_(float(hp["free_scale"]))
                    layer.op_proj.weight.mul_(float(hp["proj_scale"]))
                    layer.op_proj.bias.mul_(float(hp["proj_scale"]))
        return net
