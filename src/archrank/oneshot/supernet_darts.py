"""The DARTS weight-sharing supernet: ``DartsNetwork``'s skeleton with every op on every edge.

Each cell keeps the stand-alone cell's input preprocessing (``pre0``/``pre1``) and, for every
intermediate node k and every earlier node i, one module per DARTS op (``edges[e][op]``, e in
``PATH_EDGES`` order; stride 2 on the cell inputs of a reduction cell, as in ``DartsCell``).
A path (``DartsSpace.codes``: per edge 0 = not read, else 1 + op) runs exactly two edges per
node; the stand-alone cell's ``ops.m`` is the m-th chosen edge (node-major, input increasing),
so ``standalone`` builds the genotype with each node's pairs in that order, which computes the
same function as any other order (the sum of two terms commutes exactly).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from archrank.errors import ArchrankError
from archrank.nn import torch_threads
from archrank.nn.counting import count_flops, count_params
from archrank.nn.darts import DartsNetwork, FactorizedReduce, darts_op
from archrank.nn.ops import ReLUConvBN
from archrank.oneshot.supernet import Codes, NetworkSetting, Supernet
from archrank.spaces.darts import DARTS_OPS, NUM_INPUTS, NUM_INTERMEDIATE, PATH_EDGES

NUM_EDGES = len(PATH_EDGES)


class DartsMixedCell(nn.Module):
    """A DARTS cell with every op on each of its 14 (node, input) edges."""

    def __init__(self, kind: str, c_prev_prev: int, c_prev: int, channels: int,
                 reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.reduction = reduction
        self.pre0 = (FactorizedReduce(kind, c_prev_prev, channels) if reduction_prev
                     else ReLUConvBN(kind, c_prev_prev, channels, 1))
        self.pre1 = ReLUConvBN(kind, c_prev, channels, 1)
        self.edges = nn.ModuleList(
            nn.ModuleDict({op: darts_op(op, kind, channels, 2 if reduction and i < NUM_INPUTS
                                        else 1) for op in DARTS_OPS})
            for _, i in PATH_EDGES
        )
        self.multiplier = NUM_INTERMEDIATE

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, codes: Codes) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for k in range(NUM_INTERMEDIATE):
            terms = [self.edges[e][DARTS_OPS[codes[e] - 1]](states[i])
                     for e, (node, i) in enumerate(PATH_EDGES) if node == k and codes[e]]
            states.append(terms[0] + terms[1])
        return torch.cat(states[NUM_INPUTS:], dim=1)

    def live_names(self, codes: Codes) -> dict[str, str]:
        """Stand-alone cell prefix (``ops.m.``) -> this cell's (``edges.e.op.``)."""
        chosen = [e for e, c in enumerate(codes) if c]
        return {f"ops.{m}.": f"edges.{e}.{DARTS_OPS[codes[e] - 1]}."
                for m, e in enumerate(chosen)}


class DartsSupernet(Supernet):
    """``DartsNetwork`` skeleton with ``DartsMixedCell`` cells (no auxiliary head, no
    drop-path: the stand-alone networks of ``build_standalone`` have neither)."""

    space_name = "darts"

    def __init__(self, setting: NetworkSetting) -> None:
        super().__init__(setting)
        self.net = DartsNetwork(None, width=setting.width, depth=setting.depth,
                                num_classes=setting.num_classes,
                                in_channels=setting.in_channels,
                                input_kind=setting.input_kind, make_cell=DartsMixedCell)

    def encode(self, archs: Sequence[Any]) -> np.ndarray:
        return self.space.codes(list(archs))  # type: ignore[attr-defined]

    def _cell_codes(self, codes: Codes, reduction: bool) -> Codes:
        if len(codes) != 2 * NUM_EDGES:
            raise ArchrankError(f"a darts path has {2 * NUM_EDGES} codes, got {len(codes)}")
        return tuple(codes[NUM_EDGES:]) if reduction else tuple(codes[:NUM_EDGES])

    def forward(self, x: torch.Tensor, codes: Codes) -> torch.Tensor:
        normal, reduce = self._cell_codes(codes, False), self._cell_codes(codes, True)
        s0 = s1 = self.net.stem(x)
        for cell in self.net.cells:
            s0, s1 = s1, cell(s0, s1, reduce if cell.reduction else normal)
        return self.net.classifier(torch.flatten(self.net.global_pool(s1), 1))

    def standalone(self, arch: Any) -> nn.Module:
        """As ``Supernet.standalone``, for the genotype with each node's pairs in input order
        (the same function; see the module docstring)."""
        return super().standalone(self.space.from_codes(self.encode([arch]))[0])  # type: ignore[attr-defined]

    def standalone_names(self, codes: Codes) -> dict[str, str]:
        names: dict[str, str] = {}
        state = list(self.net.state_dict())
        for key in state:
            if not key.startswith("cells."):
                names[key] = "net." + key
        for idx, cell in enumerate(self.net.cells):
            prefix = f"cells.{idx}."
            own = [k[len(prefix):] for k in state if k.startswith(prefix)]
            live = cell.live_names(self._cell_codes(codes, cell.reduction))
            for rest in own:
                if rest.startswith(("pre0.", "pre1.")):
                    names[prefix + rest] = "net." + prefix + rest
            for dst, src in live.items():
                for rest in own:
                    if rest.startswith(src):
                        names[prefix + dst + rest[len(src):]] = "net." + prefix + rest
        return names

    def costs(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        """Exact params and MACs, by building and counting each stand-alone network (about
        20 ms a genotype at the MNIST-1D size: fine for the thousands a fit predicts). One
        torch thread: these networks are too small to share, and a loaded machine made two
        threads 50 times slower."""
        archs = self.space.from_codes(np.asarray(codes, dtype=np.int64))  # type: ignore[attr-defined]
        params = np.empty(len(archs), dtype=np.int64)
        flops = np.empty(len(archs), dtype=np.int64)
        with torch_threads(1):
            for n, arch in enumerate(archs):
                net = self.build_standalone(arch)
                params[n] = count_params(net)
                flops[n] = count_flops(net, self.setting.input_shape)
        return {"params": params, "flops": flops}

    def latency_units(self) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
        raise ArchrankError("latency tables are not available for darts yet (use --no-latency)")

    def latency_counts(self, codes: np.ndarray) -> np.ndarray:
        raise ArchrankError("latency tables are not available for darts yet (use --no-latency)")
