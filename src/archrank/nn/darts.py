"""The DARTS evaluation network (Liu et al., ICLR 2019) for any genotype, on images or signals.

Skeleton: a stem (3x3 convolution to ``3 * width`` channels, BN), then ``depth`` cells; the cells
at 1/3 and 2/3 of the depth are reduction cells (stride 2 on the ops reading the cell inputs)
and double the channels. Each cell first maps its two inputs (the outputs of the two previous
cells) to its width (1x1 ReLU-conv-BN, or a factorized reduction when the previous cell
reduced), then every intermediate node sums its two ops, and the cell outputs the concatenation
of its ``concat`` nodes. Global average pooling and a linear classifier follow. An optional
auxiliary head after the second reduction (as in the DARTS CIFAR training) and drop-path
(``drop_path_prob``, applied in training to every op that is not an identity) complete the
recipe. At ``width=36, depth=20`` on 32x32x3 inputs this is the DARTS CIFAR-10 network; the
published parameter counts exclude the auxiliary head (tests/test_darts.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from archrank.nn.ops import ReLUConvBN, avgpool, batchnorm, conv, dims, global_avgpool, maxpool


class SepConv(nn.Sequential):
    """Separable convolution applied twice: (ReLU, depthwise k, pointwise, BN) x 2."""

    def __init__(self, kind: str, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        pad = kernel // 2
        super().__init__(
            nn.ReLU(inplace=False),
            conv(kind, c_in, c_in, kernel, stride=stride, padding=pad, groups=c_in),
            conv(kind, c_in, c_in, 1),
            batchnorm(kind, c_in),
            nn.ReLU(inplace=False),
            conv(kind, c_in, c_in, kernel, padding=pad, groups=c_in),
            conv(kind, c_in, c_out, 1),
            batchnorm(kind, c_out),
        )


class DilConv(nn.Sequential):
    """ReLU, dilated (2) depthwise convolution, pointwise convolution, BN."""

    def __init__(self, kind: str, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            conv(kind, c_in, c_in, kernel, stride=stride, padding=kernel - 1, groups=c_in,
                 dilation=2),
            conv(kind, c_in, c_out, 1),
            batchnorm(kind, c_out),
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing half the positions: two strided 1x1 convolutions,
    one shifted by a position, concatenated (ReLU before, BN after)."""

    def __init__(self, kind: str, c_in: int, c_out: int) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"a factorized reduction needs an even width, got {c_out}")
        self.d = dims(kind)
        self.relu = nn.ReLU()  # a module, so that activation hooks (nwot) see it
        self.conv_a = conv(kind, c_in, c_out // 2, 1, stride=2)
        self.conv_b = conv(kind, c_in, c_out // 2, 1, stride=2)
        self.bn = batchnorm(kind, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = x[:, :, 1:, 1:] if self.d == 2 else x[:, :, 1:]
        # odd sizes: pad the shifted copy so both halves agree, axis by axis (a 15 x 16 map
        # needs its rows padded only); F.pad takes the last axis first
        pad = [p for size in reversed(x.shape[2:]) for p in (0, size % 2)]
        if any(pad):
            shifted = F.pad(shifted, pad)
        return self.bn(torch.cat([self.conv_a(x), self.conv_b(shifted)], dim=1))


def darts_op(name: str, kind: str, channels: int, stride: int) -> nn.Module:
    """The module of one DARTS op at ``channels`` (in = out) and ``stride``."""
    if name == "max_pool_3x3":
        return maxpool(kind, 3, stride, padding=1)
    if name == "avg_pool_3x3":
        return avgpool(kind, 3, stride, padding=1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(kind, channels, channels)
    if name in ("sep_conv_3x3", "sep_conv_5x5"):
        return SepConv(kind, channels, channels, int(name[-1]), stride)
    if name in ("dil_conv_3x3", "dil_conv_5x5"):
        return DilConv(kind, channels, channels, int(name[-1]), stride)
    raise ValueError(f"unknown DARTS op {name!r}")


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability ``drop_prob`` (rescaling the others)."""
    keep = 1.0 - drop_prob
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device,
                       dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


class DartsCell(nn.Module):
    """One normal or reduction cell of a genotype (``pairs``: the eight ``(op, input)``)."""

    def __init__(self, kind: str, pairs: Sequence[tuple[str, int]], concat: Sequence[int],
                 c_prev_prev: int, c_prev: int, channels: int, reduction: bool,
                 reduction_prev: bool) -> None:
        super().__init__()
        self.reduction = reduction
        self.pre0 = (FactorizedReduce(kind, c_prev_prev, channels) if reduction_prev
                     else ReLUConvBN(kind, c_prev_prev, channels, 1))
        self.pre1 = ReLUConvBN(kind, c_prev, channels, 1)
        self.sources = [int(src) for _, src in pairs]
        self.concat = [int(c) for c in concat]
        self.ops = nn.ModuleList(
            darts_op(op, kind, channels, 2 if reduction and src < 2 else 1)
            for op, src in pairs
        )
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for k in range(0, len(self.ops), 2):
            terms = []
            for op, src in ((self.ops[k], self.sources[k]), (self.ops[k + 1], self.sources[k + 1])):
                h = op(states[src])
                if self.training and drop_prob > 0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                terms.append(h)
            states.append(terms[0] + terms[1])
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS's CIFAR auxiliary classifier (on the 8x8 maps after the second reduction).

    Its 5-wide, stride-3 pooling and 2-wide convolution need maps of 8 at least; a smaller
    map (28x28 or 16x16 images, short signals) is average-pooled to 2 instead, with the
    same parameters, so the head works on every input the network takes.
    """

    def __init__(self, kind: str, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            avgpool(kind, 5, 3, count_include_pad=False),
            conv(kind, channels, 128, 1),
            batchnorm(kind, 128),
            nn.ReLU(inplace=False),
            conv(kind, 128, 768, 2),
            batchnorm(kind, 768),
            nn.ReLU(inplace=False),
            global_avgpool(kind),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        small = min(x.shape[2:]) < 8
        for i, layer in enumerate(self.features):
            if i == 1 and small:  # the pooling: too wide for this map
                x = (F.adaptive_avg_pool1d(x, 2) if x.dim() == 3 else
                     F.adaptive_avg_pool2d(x, 2))
            else:
                x = layer(x)
        return self.classifier(torch.flatten(x, 1))


class DartsNetwork(nn.Module):
    """The DARTS network of a genotype (see the module docstring).

    ``forward`` returns the logits; in training with ``auxiliary=True`` the auxiliary head's
    logits of the last call are kept in ``aux_logits`` for the loss.

    ``make_cell(kind, c_prev_prev, c_prev, channels, reduction, reduction_prev)`` builds each
    cell (default: ``DartsCell`` of the genotype; it must expose ``multiplier``); the
    weight-sharing supernet (``archrank.oneshot``) passes its super-cell here, so a sub-network
    and the stand-alone network are one skeleton, parameter names included.
    """

    def __init__(self, genotype: object, *, width: int = 36, depth: int = 20,
                 num_classes: int = 10, in_channels: int = 3, input_kind: str = "2d",
                 auxiliary: bool = False, drop_path_prob: float = 0.0,
                 stem_multiplier: int = 3,
                 make_cell: Callable[..., nn.Module] | None = None) -> None:
        super().__init__()
        dims(input_kind)
        if depth < 3:
            raise ValueError(f"a DARTS network needs at least 3 cells, got depth {depth}")
        self.genotype = genotype
        self.drop_path_prob = float(drop_path_prob)
        self.aux_logits: torch.Tensor | None = None
        c_curr = stem_multiplier * width
        self.stem = nn.Sequential(conv(input_kind, in_channels, c_curr, 3, padding=1),
                                  batchnorm(input_kind, c_curr))
        c_pp, c_p, c = c_curr, c_curr, width
        self.cells = nn.ModuleList()
        reductions = {depth // 3, 2 * depth // 3}
        reduction_prev = False
        self.aux_after: int | None = None
        c_aux = 0
        for i in range(depth):
            reduction = i in reductions
            if reduction:
                c *= 2
            if make_cell is None:
                pairs, concat = genotype.cell("reduce" if reduction else "normal")  # type: ignore[attr-defined]
                cell = DartsCell(input_kind, pairs, concat, c_pp, c_p, c, reduction,
                                 reduction_prev)
            else:
                cell = make_cell(input_kind, c_pp, c_p, c, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, int(cell.multiplier) * c
            if i == 2 * depth // 3:
                self.aux_after, c_aux = i, c_p
        self.auxiliary = AuxiliaryHead(input_kind, c_aux, num_classes) if auxiliary else None
        self.global_pool = global_avgpool(input_kind)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        self.aux_logits = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_after and self.auxiliary is not None and self.training:
                self.aux_logits = self.auxiliary(s1)
        return self.classifier(torch.flatten(self.global_pool(s1), 1))


__all__ = ["DartsCell", "DartsNetwork", "DilConv", "FactorizedReduce", "SepConv", "darts_op"]
