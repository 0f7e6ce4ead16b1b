"""Parameter and FLOP counts of networks, measured on the modules themselves.

FLOPs are counted by forward hooks on the leaf modules during one forward pass of a single
zero input (``count_flops``); for whole benchmark tables ``nb201_costs`` and
``nb101_param_counts`` give the same numbers from per-layer formulas, vectorised over cells
(tests check them against the hooks on real modules). Two conventions:

``"macs"`` (the default)
    multiply-accumulates of convolutions and linear layers: one per weight per output
    position (``k**d * c_in / groups * c_out * positions``; ``in * out`` for a linear layer).
    Biases, normalisation, activations, pooling and additions are not counted.

``"torchstat"``
    the convention of torchstat / tensorwatch ``ModelStats``, which NAS-Bench-Suite-Zero used
    for the ``flops`` column of ``nb201_zc.csv``: convolution MACs plus one per output element
    for a bias; batch norm 2 per element (1 without affine); ReLU 1 per input element; average
    and max pooling ``k**d`` per output element; adaptive average pooling ``prod(extent + 1)``
    per output element (torchstat's window formula); linear ``in * out`` without bias.
    Identity, additions and concatenations count 0. With it, our NB201 network reproduces the
    table's ``flops`` exactly (tests/test_nn.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from archrank.errors import ArchrankError

CONVENTIONS: tuple[str, ...] = ("macs", "torchstat")

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_POOL = (nn.AvgPool1d, nn.AvgPool2d, nn.MaxPool1d, nn.MaxPool2d)
_ADAPTIVE = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d,
             nn.AdaptiveMaxPool2d)
_ACT = (nn.ReLU, nn.ReLU6, nn.PReLU, nn.ELU, nn.LeakyReLU)


def count_params(module: nn.Module) -> int:
    """Trainable parameters (what the benchmarks report)."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


def _conv_macs(m: nn.Module, out: torch.Tensor) -> int:
    kernel = math.prod(m.kernel_size)  # type: ignore[arg-type]
    positions = math.prod(out.shape[2:])
    return kernel * m.in_channels // m.groups * m.out_channels * positions  # type: ignore[operator]


def _as_tuple(value: int | Sequence[int], d: int) -> tuple[int, ...]:
    return (value,) * d if isinstance(value, int) else tuple(value)


def _flops_macs(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(m, _CONV):
        return _conv_macs(m, out)
    if isinstance(m, nn.Linear):
        return m.in_features * m.out_features * math.prod(out.shape[:-1]) // out.shape[0]
    return 0


def _flops_torchstat(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    per_sample_out = math.prod(out.shape[1:])
    if isinstance(m, _CONV):
        bias = per_sample_out if m.bias is not None else 0
        return _conv_macs(m, out) + bias
    if isinstance(m, nn.Linear):
        return m.in_features * m.out_features
    if isinstance(m, _BN):
        return math.prod(inp.shape[1:]) * (2 if m.affine else 1)
    if isinstance(m, _ACT):
        return math.prod(inp.shape[1:])
    if isinstance(m, _POOL):
        d = inp.dim() - 2
        return per_sample_out * math.prod(_as_tuple(m.kernel_size, d))
    if isinstance(m, _ADAPTIVE):
        # torchstat sums (window extent + 1) over each spatial axis, per output cell.
        total = out.shape[1]
        for size_in, size_out in zip(inp.shape[2:], out.shape[2:], strict=True):
            total *= sum(
                math.ceil((i + 1) * size_in / size_out) - math.floor(i * size_in / size_out) + 1
                for i in range(size_out)
            )
        return total
    return 0


_COUNTERS: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], int]] = {
    "macs": _flops_macs,
    "torchstat": _flops_torchstat,
}


def count_flops(module: nn.Module, input_shape: Sequence[int],
                convention: str = "macs") -> int:
    """FLOPs of one forward pass of one input of shape ``input_shape`` (no batch axis).

    Runs the module once in eval mode under ``no_grad`` on a zero input on the module's device
    (the training mode is restored afterwards).
    """
    _check_convention(convention)
    counter = _COUNTERS[convention]
    total = 0

    def hook(m: nn.Module, args: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += counter(m, args[0], out)

    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    handles = [m.register_forward_hook(hook) for m in module.modules()
               if not list(m.children())]
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros((1, *input_shape), device=device))
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    return int(total)


# -- analytic counts (fast paths for whole tables, checked against the modules in tests) -------
def _check_pruned(mats: np.ndarray, idx: np.ndarray) -> None:
    """Refuse cells that are not pruned (a vertex off every input-to-output path, or no such
    path at all): ``NB101Network`` prunes them, so their analytic counts would be wrong."""
    n = mats.shape[1]
    reach = mats.astype(np.int64)
    for _ in range(max(1, math.ceil(math.log2(n)))):  # closure by squaring, all cells at once
        reach = np.minimum(reach + reach @ reach, 1)
    on_path = reach[:, 0, :] & reach[:, :, n - 1]
    on_path[:, 0] = on_path[:, n - 1] = reach[:, 0, n - 1]
    bad = np.flatnonzero(~on_path.all(axis=1).astype(bool))
    if len(bad):
        raise ArchrankError(f"cell {int(idx[bad[0]])} is not a pruned NB101 cell (a vertex off "
                            "every input-to-output path, or no such path): prune it first "
                            "(the nb101 space's parse / check_nb101_cell)")



def nb101_param_counts(matrices: Sequence[np.ndarray], ops: Sequence[Sequence[str]],
                       **kwargs: object) -> np.ndarray:
    """Parameter counts of ``NB101Network`` for many pruned cells (``nb101_costs``)."""
    return nb101_costs(matrices, ops, **kwargs)["params"]  # type: ignore[arg-type]


def nb101_costs(
    matrices: Sequence[np.ndarray],
    ops: Sequence[Sequence[str]],
    *,
    stem_channels: int = 128,
    num_stacks: int = 3,
    cells_per_stack: int = 3,
    num_classes: int = 10,
    in_channels: int = 3,
    input_kind: str = "2d",
    input_size: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """``{"params", "flops"}`` (flops: "macs") of ``NB101Network`` for many pruned cells,
    without building them.

    Per cell: a 1x1 conv + BN projection of the input for each vertex it feeds (and for the
    output when input->output), a k x k conv + BN per conv vertex; plus stem and classifier.
    Every conv's MACs are its weights times the output positions of its stack (``input_size``,
    default 32 per axis, halved, rounded up, by the pooling before each new stack).
    Vectorised over the cells of each vertex count.
    """
    from archrank.nn.nb101 import vertex_channels_batch

    d = 2 if input_kind == "2d" else 1
    k3 = 3**d
    sizes_in = [32] * d if input_size is None else [int(s) for s in input_size]
    params = np.zeros(len(matrices), dtype=np.int64)
    flops = np.zeros(len(matrices), dtype=np.int64)
    sizes = np.array([len(m) for m in matrices])
    for n in np.unique(sizes):
        idx = np.flatnonzero(sizes == n)
        mats = np.stack([np.asarray(matrices[i], dtype=bool) for i in idx])
        _check_pruned(mats, idx)
        names = np.array([list(ops[i]) for i in idx])
        conv3 = (names[:, 1 : n - 1] == "conv3x3-bn-relu")
        conv1 = (names[:, 1 : n - 1] == "conv1x1-bn-relu")
        spatial = list(sizes_in)
        pos = math.prod(spatial)
        total = np.full(len(idx), in_channels * k3 * stem_channels + 2 * stem_channels)
        macs = np.full(len(idx), in_channels * k3 * stem_channels * pos)
        c_in = c = stem_channels
        for stack in range(num_stacks):
            if stack > 0:
                c *= 2
                spatial = [(s + 1) // 2 for s in spatial]
                pos = math.prod(spatial)
            for _ in range(cells_per_stack):
                vc = vertex_channels_batch(c_in, c, mats)[:, 1 : n - 1]
                from_input = mats[:, 0, 1 : n - 1]
                weights = ((from_input * c_in * vc).sum(axis=1)
                           + (conv3 * k3 * vc * vc + conv1 * vc * vc).sum(axis=1)
                           + mats[:, 0, n - 1] * c_in * c)
                total += weights + 2 * ((from_input * vc).sum(axis=1)
                                        + ((conv3 | conv1) * vc).sum(axis=1)
                                        + mats[:, 0, n - 1] * c)
                macs += weights * pos
                c_in = c
        params[idx] = total + c * num_classes + num_classes
        flops[idx] = macs + c * num_classes
    return {"params": params, "flops": flops}


def _check_convention(convention: str) -> None:
    if convention not in _COUNTERS:
        raise ValueError(
            f"unknown FLOPs convention {convention!r}; choose from {', '.join(CONVENTIONS)}"
        )


def nb201_costs(
    cells: Sequence[Sequence[str]],
    *,
    channels: int = 16,
    cells_per_stage: int = 5,
    num_stages: int = 3,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: Sequence[int] = (32, 32),
    convention: str = "macs",
) -> dict[str, np.ndarray]:
    """``{"params", "flops"}`` of ``NB201Network`` for many cells, without building them.

    ``input_size`` is the spatial size (``(H, W)`` for images, ``(L,)`` for signals). Both
    counts are a fixed skeleton cost plus, per stage, the cost of each op times how often the
    cell uses it, so they are computed from the op-count matrix in one product.
    """
    from archrank.nn.nb201 import NB201_OPS, check_nb201_ops

    _check_convention(convention)
    d = len(input_size)
    k3 = 3**d
    ts = convention == "torchstat"
    counts = np.zeros((len(cells), len(NB201_OPS)), dtype=np.int64)
    for row, cell in enumerate(cells):
        for op in check_nb201_ops(cell):
            counts[row, NB201_OPS.index(op)] += 1

    op_params = np.zeros(len(NB201_OPS), dtype=np.int64)
    op_flops = np.zeros(len(NB201_OPS), dtype=np.int64)
    sizes = [int(s) for s in input_size]
    pos = math.prod(sizes)
    c = channels
    params = in_channels * k3 * c + 2 * c
    flops = in_channels * k3 * c * pos + (2 * c * pos if ts else 0)
    for stage in range(num_stages):
        if stage > 0:  # residual reduction c -> 2c, sizes halved (rounded up)
            c_prev, pos_prev = c, pos
            c, sizes = 2 * c, [(s + 1) // 2 for s in sizes]
            pos = math.prod(sizes)
            params += c_prev * c * k3 + c * c * k3 + c_prev * c + 4 * c
            flops += (c_prev * c * k3 + c * c * k3 + c_prev * c) * pos
            if ts:  # ReLUs, BNs and the 2x2 pooling of the shortcut
                flops += c_prev * pos_prev + c * pos + 4 * c * pos + 2**d * c_prev * pos
        per_cell_p = {"nor_conv_3x3": c * c * k3 + 2 * c, "nor_conv_1x1": c * c + 2 * c}
        per_cell_f = {"nor_conv_3x3": c * c * k3 * pos, "nor_conv_1x1": c * c * pos}
        if ts:
            per_cell_f["nor_conv_3x3"] += 3 * c * pos  # ReLU + affine BN
            per_cell_f["nor_conv_1x1"] += 3 * c * pos
            per_cell_f["avg_pool_3x3"] = k3 * c * pos
        for op, value in per_cell_p.items():
            op_params[NB201_OPS.index(op)] += cells_per_stage * value
        for op, value in per_cell_f.items():
            op_flops[NB201_OPS.index(op)] += cells_per_stage * value
    params += 2 * c + c * num_classes + num_classes
    flops += c * num_classes
    if ts:  # last BN + ReLU, torchstat's adaptive pooling window, no bias for linear
        flops += 3 * c * pos + c * math.prod(s + 1 for s in sizes)
    return {"params": params + counts @ op_params, "flops": flops + counts @ op_flops}
