"""Fine-tuned inheritance (a measurement script, not a feature): does training each
sub-network a few steps from its inherited weights rank the truth better than its inherited
weights alone?

Each cell of the committed truth gets its stand-alone network carrying the trained supernet's
weights (``Supernet.standalone``: seed SEED of ``bench oneshot``'s work dir, 150 epochs), takes
STEPS SGD steps (learning rate LR, Nesterov momentum 0.9, weight decay 5e-4, batches of 128:
the same batches for every cell), then its BN statistics are recalibrated on 512 training
signals and its validation loss on the first 2,000 validation signals is its score, as in
``bench oneshot``. STEPS 0 gives back the raw supernet figure. Prints the Kendall tau of the
negated loss against the truth's mean val_acc.

    python benchmarks/finetune_inheritance.py WORK_DIR SEED STEPS LR OUT.json
    # e.g. WORK_DIR = ob2/nb201-w16-d1-9011acead0 of docs/benchmarks.md ("Fair sampling")
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from archrank.datasets import load_dataset
from archrank.metrics import kendall_tau
from archrank.oneshot.checkpoint import load_checkpoint

TRUTH = Path(__file__).parent / "truth" / "nb201_mnist1d_w16.csv"


def score(net: nn.Module, calib: torch.Tensor, x_val: torch.Tensor,
          y_val: torch.Tensor) -> float:
    """Validation loss after BN recalibration (cumulative averages over ``calib``)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, _BatchNorm):
                m.reset_running_stats()
                m.momentum = None
        net.train()
        for i in range(0, len(calib), 128):
            net(calib[i:i + 128])
        net.eval()
        return float(nn.functional.cross_entropy(net(x_val), y_val))


def main(work: str, seed: int, steps: int, lr: float, out: str) -> None:
    torch.set_num_threads(1)
    ckpt = load_checkpoint(Path(work) / f"supernet-seed{seed}-e150.pt")
    data = ckpt.dataset(load_dataset("mnist1d:num_samples=20000,val_fraction=0.8"))
    supernet = ckpt.supernet()
    with open(TRUTH, newline="") as fh:
        rows = list(csv.DictReader(fh))
    truth = np.array([float(r["val_acc"]) for r in rows])
    x_train, y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    rng = np.random.default_rng(123)
    batches = [rng.choice(len(x_train), 128, replace=False) for _ in range(steps)]
    calib = x_train[np.random.default_rng(0).permutation(len(x_train))[:512]]
    x_val, y_val = torch.from_numpy(data.x_val[:2000]), torch.from_numpy(data.y_val[:2000])
    loss = np.zeros(len(rows))
    start = time.time()
    for i, row in enumerate(rows):
        torch.manual_seed(i)
        net = supernet.standalone(supernet.space.parse(row["arch"]))
        params = list(net.parameters())
        if steps and params:
            opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True,
                                  weight_decay=5e-4)
            net.train()
            for b in batches:
                opt.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(net(x_train[b]), y_train[b]).backward()
                opt.step()
        loss[i] = score(net, calib, x_val, y_val)
        if i % 100 == 0:
            print(f"{i} cells, {time.time() - start:.0f} s", flush=True)
    tau = kendall_tau(-loss, truth)
    print(f"steps {steps}, lr {lr}, supernet seed {seed}: Kendall tau {tau:.3f}")
    Path(out).write_text(json.dumps({"seed": seed, "steps": steps, "lr": lr,
                                     "kendall_tau": tau, "seconds": time.time() - start}))


if __name__ == "__main__":
    w, s, n, r, o = sys.argv[1:6]
    main(w, int(s), int(n), float(r), o)
