"""Layers shared by the benchmark networks, for 2-D images and 1-D signals alike.

Every skeleton takes an ``input_kind`` ("2d" or "1d"); the factories below return the
Conv/BatchNorm/pooling class of the right dimensionality so that one network definition serves
both (a 3x3 kernel becomes a length-3 kernel on signals).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

InputKind = Literal["2d", "1d"]
INPUT_KINDS: tuple[str, ...] = ("2d", "1d")


def dims(input_kind: str) -> int:
    """Spatial dimensions of an input kind (2 for images, 1 for signals)."""
    if input_kind == "2d":
        return 2
    if input_kind == "1d":
        return 1
    raise ValueError(f"input_kind must be '2d' or '1d', not {input_kind!r}")


def conv(
    input_kind: str,
    c_in: int,
    c_out: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    bias: bool = False,
    groups: int = 1,
    dilation: int = 1,
) -> nn.Module:
    klass = nn.Conv2d if dims(input_kind) == 2 else nn.Conv1d
    return klass(c_in, c_out, kernel, stride=stride, padding=padding, bias=bias,
                 groups=groups, dilation=dilation)


def batchnorm(input_kind: str, channels: int, momentum: float = 0.1,
              eps: float = 1e-5) -> nn.Module:
    klass = nn.BatchNorm2d if dims(input_kind) == 2 else nn.BatchNorm1d
    return klass(channels, momentum=momentum, eps=eps)


def avgpool(input_kind: str, kernel: int, stride: int, padding: int = 0,
            count_include_pad: bool = True, ceil_mode: bool = False) -> nn.Module:
    klass = nn.AvgPool2d if dims(input_kind) == 2 else nn.AvgPool1d
    return klass(kernel, stride=stride, padding=padding, count_include_pad=count_include_pad,
                 ceil_mode=ceil_mode)


def maxpool(input_kind: str, kernel: int, stride: int, padding: int = 0,
            ceil_mode: bool = False) -> nn.Module:
    klass = nn.MaxPool2d if dims(input_kind) == 2 else nn.MaxPool1d
    return klass(kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)


def global_avgpool(input_kind: str) -> nn.Module:
    klass = nn.AdaptiveAvgPool2d if dims(input_kind) == 2 else nn.AdaptiveAvgPool1d
    return klass(1)


class ReLUConvBN(nn.Sequential):
    """ReLU, convolution without bias, batch norm: NB201's conv operation."""

    def __init__(self, input_kind: str, c_in: int, c_out: int, kernel: int,
                 stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            conv(input_kind, c_in, c_out, kernel, stride=stride, padding=kernel // 2),
            batchnorm(input_kind, c_out),
        )


class ConvBNReLU(nn.Sequential):
    """Convolution without bias, batch norm, ReLU: NB101's conv operation and projection."""

    def __init__(self, input_kind: str, c_in: int, c_out: int, kernel: int,
                 bn_momentum: float = 0.1, bn_eps: float = 1e-5) -> None:
        super().__init__(
            conv(input_kind, c_in, c_out, kernel, padding=kernel // 2),
            batchnorm(input_kind, c_out, momentum=bn_momentum, eps=bn_eps),
            nn.ReLU(inplace=False),
        )


class ResidualReduction(nn.Module):
    """ResNet basic block with stride 2, NB201's reduction between stages.

    Two ReLU-Conv3x3-BN (the first strided) plus a shortcut of 2x2 average pooling followed by
    a 1x1 convolution, summed. The pooling rounds up (``ceil_mode``) so that odd sizes match
    the strided convolution; on even sizes (the benchmark's) this changes nothing.
    """

    def __init__(self, input_kind: str, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(input_kind, c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(input_kind, c_out, c_out, 3, stride=1)
        self.shortcut = nn.Sequential(
            avgpool(input_kind, 2, 2, ceil_mode=True),
            conv(input_kind, c_in, c_out, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))
