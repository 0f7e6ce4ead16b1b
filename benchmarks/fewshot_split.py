"""Few-shot split of a trained nb201 supernet (Zhao et al., 2021), a measurement prototype.

Five sub-supernets, one per op of edge EDGE: each starts from the trained SPOS supernet of
``bench oneshot``'s work dir (seed SEED, 150 epochs) and is fine-tuned EPOCHS epochs at
learning rate LR with that edge fixed to its op; each truth cell is scored (validation loss
on the first 2,000 validation signals, BN recalibrated) by the sub-supernet of its op there,
and the Kendall tau against the committed truth's mean val_acc is printed. EPOCHS 0 scores
with the trained supernet itself (the raw figure of ``bench oneshot``).

    python benchmarks/fewshot_split.py WORK_DIR SEED EDGE EPOCHS LR OUT.json
    # e.g. WORK_DIR = ob2/nb201-w16-d1-9011acead0 of docs/benchmarks.md ("Fair sampling")
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from archrank.datasets import load_dataset
from archrank.metrics import kendall_tau
from archrank.oneshot.checkpoint import load_checkpoint
from archrank.oneshot.sampler import ArchSampler
from archrank.oneshot.scoring import ScoreOptions, SubnetScorer
from archrank.oneshot.trainer import SupernetTrainer
from archrank.oracles.training import TrainRecipe

TRUTH = Path(__file__).parent / "truth" / "nb201_mnist1d_w16.csv"


class FixedEdge(ArchSampler):
    """Uniform paths with one edge held at one op."""

    name = "uniform"

    def __init__(self, space, seed: int, edge: int, op: int) -> None:  # type: ignore[no-untyped-def]
        super().__init__(space, seed)
        self.edge, self.op = edge, op

    def sample(self, step: int) -> np.ndarray:
        codes = self.space.random_codes(1, np.random.default_rng([self.seed, int(step), 77]))
        codes = codes[0].copy()
        codes[self.edge] = self.op
        return codes


def main(work: str, seed: int, edge: int, epochs: int, lr: float, out: str) -> None:
    ckpt = load_checkpoint(Path(work) / f"supernet-seed{seed}-e150.pt")
    data = ckpt.dataset(load_dataset("mnist1d:num_samples=20000,val_fraction=0.8"))
    with open(TRUTH, newline="") as fh:
        rows = list(csv.DictReader(fh))
    truth = np.array([float(r["val_acc"]) for r in rows])
    space = ckpt.supernet().space
    codes = space.codes([space.parse(r["arch"]) for r in rows])
    loss = np.full(len(rows), np.nan)
    start = time.time()
    for op in range(len(space.edge_op_names)):
        chosen = codes[:, edge] == op
        state = ckpt.model
        if epochs > 0:
            trainer = SupernetTrainer(ckpt.supernet(), data, TrainRecipe(epochs=epochs, lr=lr),
                                      seed=seed * 100 + op,
                                      sampler=FixedEdge(space, seed, edge, op), device="cpu")
            state = trainer.train().supernet.state_dict()
        scorer = SubnetScorer(ckpt.setting, state, data, options=ScoreOptions(val_samples=2000))
        loss[chosen] = scorer.score_codes(codes[chosen])["val_loss"]
        print(f"op {op}: {chosen.sum()} truth cells, {time.time() - start:.0f} s", flush=True)
    tau = kendall_tau(-loss, truth)
    print(f"Kendall tau vs the truth: {tau:.3f}")
    Path(out).write_text(json.dumps({"seed": seed, "edge": edge, "epochs": epochs, "lr": lr,
                                     "kendall_tau": tau, "seconds": time.time() - start}))


if __name__ == "__main__":
    w, s, e, n, r, o = sys.argv[1:7]
    main(w, int(s), int(e), int(n), float(r), o)
