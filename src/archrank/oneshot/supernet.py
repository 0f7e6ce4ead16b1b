"""Weight-sharing supernets: every candidate op of every edge in one network.

A ``Supernet`` is the benchmark skeleton of ``archrank.nn`` whose cells hold every candidate op
on every edge; ``forward(x, codes)`` runs the single path ``codes`` (one op index per edge, the
space's ``codes`` order). Because the skeleton and the op modules are the very ones the
stand-alone network is built from (``NB201Network(make_cell=...)``, ``nn.nb201.edge_op``), the
sub-network of a cell *is* the network the training oracle trains: ``standalone(arch)`` copies
the inherited weights into ``build_network(...)`` under the stand-alone parameter names, and
the two give the same outputs (tests/test_oneshot.py).

Spaces plug in through ``SUPERNETS`` (space name -> class). What the engine (trainer, scoring,
checkpoints, hardware costs) asks of a supernet is the small ``Supernet`` interface: encode an
architecture as path codes, run a path, export a stand-alone network, count params/FLOPs, and
list the units a latency table is made of. A DARTS-like space (two input nodes, two inputs
per node) is one more subclass with its own cell and skeleton, not a fork of the engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from archrank.errors import ArchrankError
from archrank.nn import BENCHMARK_SIZE, build_network, check_size
from archrank.nn.counting import nb201_costs
from archrank.nn.nb201 import NB201Network, edge_op
from archrank.spaces import get_space
from archrank.spaces.base import SearchSpace

Codes = tuple[int, ...]


@dataclass(frozen=True)
class NetworkSetting:
    """What fixes a supernet's shapes: recorded in checkpoints and compared on load."""

    space: str
    width: int
    depth: int
    input_kind: str
    in_channels: int
    num_classes: int
    input_shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkSetting:
        return cls(**{**data, "input_shape": tuple(int(s) for s in data["input_shape"])})

    def describe(self) -> str:
        shape = "x".join(map(str, self.input_shape))
        return f"{self.space} width {self.width} depth {self.depth} ({self.input_kind} {shape})"


class Supernet(nn.Module, ABC):
    """A weight-sharing network over the cells of ``space`` (see the module docstring)."""

    space_name: ClassVar[str]

    def __init__(self, setting: NetworkSetting) -> None:
        super().__init__()
        self.setting = setting
        self.space: SearchSpace = get_space(setting.space)

    @abstractmethod
    def encode(self, archs: Sequence[Any]) -> np.ndarray:
        """Path codes ``[B, P]`` (int64) of the space's architectures."""

    @abstractmethod
    def forward(self, x: torch.Tensor, codes: Codes) -> torch.Tensor:
        """Logits of the sub-network ``codes`` (one path) on the batch ``x``."""

    @abstractmethod
    def standalone_names(self, codes: Codes) -> dict[str, str]:
        """Stand-alone parameter/buffer name -> supernet name, for the sub-network ``codes``."""

    @abstractmethod
    def costs(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        """Exact ``{"params", "flops"}`` (MACs) of the stand-alone networks of ``codes``."""

    @abstractmethod
    def latency_units(self) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
        """``(name, module, input shape without batch)`` of each unit a latency table times;
        the unit named ``"base"`` is the skeleton without any cell op."""

    @abstractmethod
    def latency_counts(self, codes: np.ndarray) -> np.ndarray:
        """How often each non-base unit runs in each network ``[B, U-1]`` (order of units)."""

    def forward_mixed(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Logits of the continuous relaxation (per-edge op weights), for DARTS."""
        raise ArchrankError(f"the {self.space_name} supernet has no mixed-op forward")

    def build_standalone(self, arch: Any) -> nn.Module:
        """The untrained stand-alone network of ``arch`` at this setting."""
        s = self.setting
        return build_network(s.space, arch, width=s.width, depth=s.depth,
                             num_classes=s.num_classes, in_channels=s.in_channels,
                             input_kind=s.input_kind)

    def standalone(self, arch: Any) -> nn.Module:
        """The stand-alone network of ``arch`` carrying the supernet's (inherited) weights."""
        net = self.build_standalone(arch)
        codes = tuple(int(c) for c in self.encode([arch])[0])
        names = self.standalone_names(codes)
        mine = self.state_dict()
        net.load_state_dict({dst: mine[src].clone() for dst, src in names.items()}, strict=True)
        return net.to(next(self.parameters()).device)

    def path_parameters(self, codes: Codes) -> set[str]:
        """Names of the supernet parameters the sub-network ``codes`` uses."""
        params = dict(self.named_parameters())
        return {src for src in self.standalone_names(codes).values() if src in params}


# -- op-on-edge cells --------------------------------------------------------------------------
class MixedEdgeCell(nn.Module):
    """A cell of an op-on-edge space with every non-blocking op on every edge.

    ``edges[k][op]`` is edge ``k``'s module for ``op``; a node sums its incoming terms in edge
    order, exactly as the stand-alone cell does (same floating-point result).
    """

    def __init__(self, space: Any, channels: int, input_kind: str, make_op: Any) -> None:
        super().__init__()
        self.pairs: tuple[tuple[int, int], ...] = tuple(space.edges)
        self.num_nodes = int(space.max_nodes)
        self.op_names: tuple[str, ...] = tuple(space.edge_op_names)
        self.blocking = {space.edge_op_names.index(o) for o in space.blocking}
        self.edges = nn.ModuleList(
            nn.ModuleDict({op: make_op(op, channels, input_kind) for i, op in
                           enumerate(self.op_names) if i not in self.blocking})
            for _ in self.pairs
        )

    def forward(self, x: torch.Tensor, codes: Codes) -> torch.Tensor:
        nodes: list[torch.Tensor | None] = [x] + [None] * (self.num_nodes - 1)
        for j in range(1, self.num_nodes):
            terms = [self.edges[k][self.op_names[c]](nodes[i])
                     for k, ((i, dst), c) in enumerate(zip(self.pairs, codes, strict=True))
                     if dst == j and c not in self.blocking]
            nodes[j] = sum(terms[1:], terms[0]) if terms else torch.zeros_like(x)
        out = nodes[-1]
        assert out is not None
        return out

    def forward_mixed(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """DARTS mixed ops: every edge sends ``sum_o weights[k, o] * op_o(x)`` (blocking ops
        send nothing, so their weight only scales the others down)."""
        nodes: list[torch.Tensor] = [x]
        for j in range(1, self.num_nodes):
            terms = [weights[k, o] * self.edges[k][name](nodes[i])
                     for k, (i, dst) in enumerate(self.pairs) if dst == j
                     for o, name in enumerate(self.op_names) if o not in self.blocking]
            nodes.append(sum(terms[1:], terms[0]) if terms else torch.zeros_like(x))
        return nodes[-1]

    def live_names(self, codes: Codes) -> dict[str, str]:
        """Stand-alone cell prefix (``layers.m.``) -> this cell's (``edges.k.op.``)."""
        out, m = {}, 0
        for k, c in enumerate(codes):
            if c not in self.blocking:
                out[f"layers.{m}."] = f"edges.{k}.{self.op_names[c]}."
                m += 1
        return out


class NB201Supernet(Supernet):
    """NAS-Bench-201 skeleton (``NB201Network``) with ``MixedEdgeCell`` cells."""

    space_name = "nb201"

    def __init__(self, setting: NetworkSetting) -> None:
        super().__init__(setting)
        space = self.space

        def make_cell(c: int, kind: str) -> nn.Module:
            return MixedEdgeCell(space, c, kind, edge_op)

        self.net = NB201Network(None, channels=setting.width, cells_per_stage=setting.depth,
                                num_classes=setting.num_classes,
                                in_channels=setting.in_channels,
                                input_kind=setting.input_kind, make_cell=make_cell)
        self._none = space.edge_op_names.index("none")

    def encode(self, archs: Sequence[Any]) -> np.ndarray:
        return self.space.codes(list(archs))  # type: ignore[attr-defined]

    def forward(self, x: torch.Tensor, codes: Codes) -> torch.Tensor:
        out = self.net.stem(x)
        for layer in self.net.cells:
            out = layer(out, codes) if isinstance(layer, MixedEdgeCell) else layer(out)
        return self.net.head(out)

    def forward_mixed(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Logits of the continuous relaxation: op weights ``[E, K]`` on every edge (DARTS)."""
        out = self.net.stem(x)
        for layer in self.net.cells:
            out = layer.forward_mixed(out, weights) if isinstance(layer, MixedEdgeCell) \
                else layer(out)
        return self.net.head(out)

    def standalone_names(self, codes: Codes) -> dict[str, str]:
        names: dict[str, str] = {}
        cells = dict(self.net.cells.named_children())
        for key in self.net.state_dict():
            parts = key.split(".")
            if parts[0] == "cells" and isinstance(cells[parts[1]], MixedEdgeCell):
                continue
            names[key] = "net." + key
        for idx, layer in cells.items():
            if not isinstance(layer, MixedEdgeCell):
                continue
            prefix = f"cells.{idx}."
            own = {k[len(prefix):]: k for k in self.net.state_dict() if k.startswith(prefix)}
            for dst, src in layer.live_names(codes).items():
                for rest, full in own.items():
                    if rest.startswith(src):
                        names[prefix + dst + rest[len(src):]] = "net." + full
        return names

    # -- hardware -------------------------------------------------------------------------------
    def _stages(self) -> list[tuple[int, tuple[int, ...]]]:
        """(channels, spatial size) of each stage (reductions halve sizes, rounding up)."""
        s, out = self.setting, []
        c, sizes = s.width, tuple(s.input_shape[1:])
        for stage in range(3):
            if stage > 0:
                c, sizes = 2 * c, tuple((v + 1) // 2 for v in sizes)
            out.append((c, sizes))
        return out

    def costs(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        s = self.setting
        names = np.array(self.space.edge_op_names)
        cells = names[np.asarray(codes, dtype=np.int64)].tolist()
        return nb201_costs(cells, channels=s.width, cells_per_stage=s.depth,
                           num_classes=s.num_classes, in_channels=s.in_channels,
                           input_size=s.input_shape[1:])

    def _live_ops(self) -> list[int]:
        return [i for i in range(len(self.space.edge_op_names)) if i != self._none]

    def latency_units(self) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
        s = self.setting
        base = build_network(s.space, ("none",) * len(self.space.edges), width=s.width,
                             depth=s.depth, num_classes=s.num_classes,
                             in_channels=s.in_channels, input_kind=s.input_kind)
        units: list[tuple[str, nn.Module, tuple[int, ...]]] = [("base", base, s.input_shape)]
        for stage, (c, sizes) in enumerate(self._stages()):
            for op in self._live_ops():
                name = self.space.edge_op_names[op]
                units.append((f"stage{stage}:{name}", edge_op(name, c, s.input_kind),
                              (c, *sizes)))
            units.append((f"stage{stage}:add", _Add(), (c, *sizes)))
        return units

    def latency_counts(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.int64).reshape(-1, len(self.space.edges))
        live = self._live_ops()
        per_op = np.stack([(codes == op).sum(1) for op in live], axis=1)  # [B, ops]
        dst = np.array([j for _, j in self.space.edges])
        terms = np.stack([((codes != self._none) & (dst == j)).sum(1)
                          for j in range(1, self.space.max_nodes)], axis=1)
        adds = np.clip(terms - 1, 0, None).sum(1, keepdims=True)
        per_stage = np.concatenate([per_op, adds], axis=1) * self.setting.depth
        return np.concatenate([per_stage] * 3, axis=1)


class _Add(nn.Module):
    """The addition of two node terms (timed as one latency unit)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x


SUPERNETS: dict[str, type[Supernet]] = {"nb201": NB201Supernet}


def build_supernet(setting: NetworkSetting) -> Supernet:
    """The supernet of ``setting.space`` (``ArchrankError`` for spaces without one)."""
    klass = SUPERNETS.get(setting.space)
    if klass is None:
        raise ArchrankError(
            f"no supernet for space {setting.space!r}; supernets exist for "
            f"{', '.join(SUPERNETS)}"
        )
    check_size(setting.space, setting.width, setting.depth)
    return klass(setting)


def setting_for(space: str, dataset: Any, width: int | None = None,
                depth: int | None = None) -> NetworkSetting:
    """The setting of ``space`` on ``dataset`` (the training oracle's default size unless
    ``width``/``depth`` are given), so supernet and stand-alone truth share one network."""
    from archrank.oracles.training import default_setup

    if space not in SUPERNETS or space not in BENCHMARK_SIZE:
        raise ArchrankError(f"no supernet for space {space!r}; supernets exist for "
                            f"{', '.join(SUPERNETS)}")
    default = default_setup(space, dataset.name)
    return NetworkSetting(
        space=space, width=default["width"] if width is None else int(width),
        depth=default["depth"] if depth is None else int(depth),
        input_kind=dataset.input_kind, in_channels=dataset.in_channels,
        num_classes=dataset.num_classes, input_shape=dataset.input_shape,
    )


from archrank.oneshot.supernet_darts import DartsSupernet  # noqa: E402 (needs Supernet)

SUPERNETS["darts"] = DartsSupernet
