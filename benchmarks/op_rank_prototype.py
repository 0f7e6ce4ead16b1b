"""The prototype behind two rows of docs/benchmarks.md "Op-level information through a
bottleneck" (session 12): GATES++ whose op embedding is the op features alone through an
r-wide bottleneck (``gates++bn``, built before ``gates++.op_rank`` existed, with its own
random stream), and its control, the same bottleneck fed one-hot ops instead of features
(``op_source=identity``: a free rank-r embedding).

    python benchmarks/op_rank_prototype.py bench predictor --space nb201 \\
        --bench ../shared/data/nb201.csv --metric cifar10_test --predictors gates++bn \\
        --train-sizes 50 --seeds 10 --set "gates++bn.arch_inputs=" --set gates++bn.bn_rank=1 \\
        [--set gates++bn.op_source=identity] [--first-seed 10] --json out.json
    # the full model: drop the arch_inputs --set, --train-sizes 50,100
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar

import torch
from torch import nn

from archrank.predictors.base import register
from archrank.predictors.gates_pp import GatesPPPredictor


class BottleneckGatesPP(GatesPPPredictor):
    """GATES++ with the op embedding replaced after building (see the module docstring)."""

    name: ClassVar[str] = "gates++bn"
    defaults: ClassVar[dict[str, Any]] = {**GatesPPPredictor.defaults, "bn_rank": 2,
                                          "op_source": "features"}

    def build_model(self) -> nn.Module:
        net = super().build_model()
        r = int(self.hp["bn_rank"])  # (op_rank stays 0: the base builds as it did then)
        for layer in net.gates.layers:
            if self.hp["op_source"] == "identity":  # control: a free rank-r embedding
                layer.op_features = torch.eye(layer.op_emb.num_embeddings)
            width = layer.op_features.shape[1]
            layer.op_proj = nn.Sequential(nn.Linear(width, r),
                                          nn.Linear(r, layer.op_emb.embedding_dim))
            with torch.no_grad():
                layer.op_emb.weight.zero_()
            layer.op_emb.weight.requires_grad_(False)
        return net


if __name__ == "__main__":
    register("gates++bn", f"{__name__}:BottleneckGatesPP")
    from archrank.cli import run

    sys.exit(run(sys.argv[1:]))
