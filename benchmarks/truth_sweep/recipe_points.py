"""Truth-recipe points of session 5 (issue 11): 40 nb201 cells x training seeds 0 and 1.

Usage::

    python recipe_points.py '{"gen": {"num_samples": 20000}, "n_train": 3200,
                              "n_val": 12000, "width": 16}' out.json

Trains with the training oracle (``TrainingOracle.train_network``: SGD, Nesterov momentum,
lr 0.1 cosine, weight decay 5e-4, batch 128) on train / validation sizes cut from one generated
MNIST-1D, and records per cell and seed the validation accuracy on the whole split, on its
first 800 signals (the size of the default split) and the validation loss, so one run tells
evaluation noise from training noise. The summary holds the seed-to-seed Kendall tau over all
cells and over the better half. (The results in points/ were made by the first version of this
script, which copied the oracle's training loop; this one reproduces them exactly, checked on
the first cells of p1.json.)
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from scipy.stats import kendalltau

from archrank.datasets import ArrayDataset, mnist1d
from archrank.oracles.training import TrainingOracle, TrainRecipe
from archrank.spaces import get_space


def cells(space, n: int) -> list:
    """``n`` distinct cells sampled uniformly with seed 0."""
    rng, seen, out = np.random.default_rng(0), set(), []
    while len(out) < n:
        arch = space.sample(1, rng)[0]
        if space.hash(arch) not in seen:
            seen.add(space.hash(arch))
            out.append(arch)
    return out


# The generator's defaults and the split of the time (the sweep's data; the MNIST-1D default
# has since become the truth recipe's 20,000 signals with val_fraction 0.8).
SWEEP_DATA = {"num_samples": 5000, "val_fraction": 0.2}


def taus(values: list[list[float]], higher_is_better: bool) -> tuple[float, float]:
    """Seed-to-seed tau over all cells and over the better half (by the mean)."""
    v = np.asarray(values)
    mean = v.mean(0)
    better = mean >= np.median(mean) if higher_is_better else mean <= np.median(mean)
    return (round(float(kendalltau(v[0], v[1])[0]), 3),
            round(float(kendalltau(v[0][better], v[1][better])[0]), 3))


def main(cfg: dict, out: str) -> None:
    torch.set_num_threads(1)
    d = mnist1d(**{**SWEEP_DATA, **cfg.get("gen", {})})
    x = np.concatenate([d.x_train, d.x_val])
    y = np.concatenate([d.y_train, d.y_val])
    n_train, n_val = cfg["n_train"], cfg["n_val"]
    data = ArrayDataset("points", x[:n_train], y[:n_train], x[-n_val:], y[-n_val:],
                        d.x_test, d.y_test, num_classes=10)
    space = get_space("nb201")
    archs = cells(space, cfg.get("n", 40))
    res: dict = {"cfg": cfg, "cells": [space.format(a) for a in archs],
                 "acc": [], "loss": [], "acc800": [], "sec": []}
    xv, yv = torch.from_numpy(data.x_val), torch.from_numpy(data.y_val)
    for seed in cfg.get("seeds", [0, 1]):
        recipe = TrainRecipe(epochs=cfg.get("epochs", 5))
        oracle = TrainingOracle("nb201", data, width=cfg.get("width", 8), depth=1,
                                recipe=recipe, seed=seed)
        row: dict[str, list[float]] = {"acc": [], "loss": [], "acc800": [], "sec": []}
        for arch in archs:
            start = time.perf_counter()
            net = oracle.train_network(arch)
            net.eval()
            with torch.no_grad():
                logits = torch.cat([net(xv[i:i + 2000]) for i in range(0, len(yv), 2000)])
            hit = logits.argmax(1) == yv
            row["acc"].append(100 * float(hit.float().mean()))
            row["acc800"].append(100 * float(hit[:800].float().mean()))
            row["loss"].append(float(torch.nn.functional.cross_entropy(logits, yv)))
            row["sec"].append(time.perf_counter() - start)
        for key, values in row.items():
            res[key].append(values)
    summary = {"acc": taus(res["acc"], True), "loss": taus(res["loss"], False),
               "acc800": taus(res["acc800"], True), "sec": float(np.median(res["sec"])),
               "acc_q": np.percentile(np.mean(res["acc"], 0), [0, 25, 50, 75, 100])
               .round(1).tolist()}
    res["summary"] = summary
    with open(out, "w") as fh:
        json.dump(res, fh)
    print(json.dumps(cfg), json.dumps(summary))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]), sys.argv[2])
