"""The DARTS weight-sharing supernet: ``DartsNetwork``'s skeleton with every op on every edge.

Each cell keeps the stand-alone cell's input preprocessing (``pre0``/``pre1``) and, for every
intermediate node k and every earlier node i, one module per DARTS op (``edges[e][op]``, e in
``PATH_EDGES`` order; stride 2 on the cell inputs of a reduction cell, as in ``DartsCell``).
A path (``DartsSpace.codes``: per edge 0 = not read, else 1 + op) runs exactly two edges per
node; the stand-alone cell's ``ops.m`` is the m-th chosen edge (node-major, input increasing),
so ``standalone`` builds the genotype with each node's pairs in that order, which computes the
same function as any other order (the sum of two terms commutes exactly).

``forward_mixed`` is DARTS's relaxation (every edge of a node mixes all its ops; weights
``[28, 8]``, ``none`` first), and the latency table times the skeleton without ops plus each op
at each stage's shape and stride (``latency_units`` / ``latency_counts``).
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


class _CellInputs(nn.Module):
    """What every supernet cell shares with ``DartsCell``: the preprocessing of its two
    inputs to the cell's width, and four concatenated nodes."""

    def __init__(self, kind: str, c_prev_prev: int, c_prev: int, channels: int,
                 reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.reduction = reduction
        self.pre0 = (FactorizedReduce(kind, c_prev_prev, channels) if reduction_prev
                     else ReLUConvBN(kind, c_prev_prev, channels, 1))
        self.pre1 = ReLUConvBN(kind, c_prev, channels, 1)
        self.multiplier = NUM_INTERMEDIATE


class DartsMixedCell(_CellInputs):
    """A DARTS cell with every op on each of its 14 (node, input) edges."""

    def __init__(self, kind: str, c_prev_prev: int, c_prev: int, channels: int,
                 reduction: bool, reduction_prev: bool) -> None:
        super().__init__(kind, c_prev_prev, c_prev, channels, reduction, reduction_prev)
        self.edges = nn.ModuleList(
            nn.ModuleDict({op: darts_op(op, kind, channels, 2 if reduction and i < NUM_INPUTS
                                        else 1) for op in DARTS_OPS})
            for _, i in PATH_EDGES
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, codes: Codes) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for k in range(NUM_INTERMEDIATE):
            terms = [self.edges[e][DARTS_OPS[codes[e] - 1]](states[i])
                     for e, (node, i) in enumerate(PATH_EDGES) if node == k and codes[e]]
            states.append(terms[0] + terms[1])
        return torch.cat(states[NUM_INPUTS:], dim=1)

    def forward_mixed(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor
                      ) -> torch.Tensor:
        """DARTS's mixed ops: every node sums, over all its edges, ``sum_o w[e, o] op_o``
        (``weights`` [14, 8], column 0 ``none``, which sends nothing)."""
        states = [self.pre0(s0), self.pre1(s1)]
        for k in range(NUM_INTERMEDIATE):
            terms = [weights[e, o + 1] * self.edges[e][name](states[i])
                     for e, (node, i) in enumerate(PATH_EDGES) if node == k
                     for o, name in enumerate(DARTS_OPS)]
            states.append(sum(terms[1:], terms[0]))
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

    def forward_mixed(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Logits of the continuous relaxation: op weights ``[28, 8]`` (``relaxed_shape``;
        rows 0-13 the normal cell's edges, 14-27 the reduction cell's)."""
        s0 = s1 = self.net.stem(x)
        for cell in self.net.cells:
            w = weights[NUM_EDGES:] if cell.reduction else weights[:NUM_EDGES]
            s0, s1 = s1, cell.forward_mixed(s0, s1, w)
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
        """Exact params and MACs, vectorised: a network's counts are the skeleton's plus
        those of each op unit it runs (the latency table's units, counted once), since a
        cell's concatenation fixes every later layer's width whatever the ops. Equal to
        building and counting each stand-alone network (test), which took about 20 ms a
        genotype at the MNIST-1D size."""
        base_params, base_flops, unit_params, unit_flops = self._unit_costs()
        counts = self.latency_counts(np.asarray(codes, dtype=np.int64))
        return {"params": base_params + counts @ unit_params,
                "flops": base_flops + counts @ unit_flops}

    def _unit_costs(self) -> tuple[int, int, np.ndarray, np.ndarray]:
        """(skeleton params, skeleton MACs, per-unit params, per-unit MACs), counted once on
        one torch thread (these modules are too small to share)."""
        if getattr(self, "_unit_cost_cache", None) is None:
            with torch_threads(1):
                (_, base, shape), *units = self.latency_units()
                self._unit_cost_cache = (
                    count_params(base), count_flops(base, shape),
                    np.array([count_params(m) for _, m, _ in units], dtype=np.int64),
                    np.array([count_flops(m, sh) for _, m, sh in units], dtype=np.int64))
        return self._unit_cost_cache

    # -- latency table ---------------------------------------------------------------------
    def _layout(self) -> list[tuple[int, bool, int, tuple[int, ...], tuple[int, ...]]]:
        """Per cell: (stage, reduction, channels, input size, output size); stage s counts
        the reductions up to and including the cell."""
        s = self.setting
        sizes = tuple(s.input_shape[1:])
        out, stage = [], 0
        for cell in self.net.cells:
            before = sizes
            if cell.reduction:
                stage += 1
                sizes = tuple((v + 1) // 2 for v in sizes)
            channels = cell.pre1[-1].num_features  # type: ignore[index]
            out.append((stage, bool(cell.reduction), int(channels), before, sizes))
        return out

    def _unit_keys(self) -> list[tuple[str, int, str]]:
        """(kind, stage, op) of every non-base unit: ``normal`` ops (stride 1, also a
        reduction cell's ops on intermediate nodes) per stage, ``reduce`` ops (stride 2,
        on the cell inputs) per reduction."""
        stages = sorted({st for st, *_ in self._layout()})
        reductions = sorted({st for st, red, *_ in self._layout() if red})
        return ([("normal", st, op) for st in stages for op in DARTS_OPS]
                + [("reduce", st, op) for st in reductions for op in DARTS_OPS])

    def latency_units(self) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
        """The skeleton without cell ops (``base``: stem, every cell's input preprocessing,
        node additions and concatenation, head), then each op at each stage's shape: stride
        1 (``stageS:op``) and, for the ops reading a reduction cell's inputs, stride 2
        (``reduceS:op``)."""
        s = self.setting
        layout = self._layout()
        base = DartsNetwork(None, width=s.width, depth=s.depth, num_classes=s.num_classes,
                            in_channels=s.in_channels, input_kind=s.input_kind,
                            make_cell=_BareCell)
        units: list[tuple[str, nn.Module, tuple[int, ...]]] = [("base", base, s.input_shape)]
        for kind, stage, op in self._unit_keys():
            channels, size = next((c, before if kind == "reduce" else after)
                                  for st, red, c, before, after in layout
                                  if st == stage and (red or kind == "normal"))
            stride = 2 if kind == "reduce" else 1
            name = f"stage{stage}:{op}" if kind == "normal" else f"reduce{stage}:{op}"
            units.append((name, darts_op(op, s.input_kind, channels, stride),
                          (channels, *size)))
        return units

    def latency_counts(self, codes: np.ndarray) -> np.ndarray:
        """How often each op unit runs: per cell of the network, its chosen edges' ops."""
        codes = np.asarray(codes, dtype=np.int64).reshape(-1, 2 * NUM_EDGES)
        inputs = np.array([i for _, i in PATH_EDGES])
        k = len(DARTS_OPS)

        def per_op(cell: np.ndarray, where: np.ndarray) -> np.ndarray:  # [B, K]
            return np.stack([((cell == o + 1) & where).sum(1) for o in range(k)], 1)

        normal, reduce = codes[:, :NUM_EDGES], codes[:, NUM_EDGES:]
        every = np.ones(NUM_EDGES, dtype=bool)
        counts = {key: np.zeros(len(codes), dtype=np.int64) for key in self._unit_keys()}
        for stage, red, *_ in self._layout():
            if red:
                on_inputs = per_op(reduce, inputs < NUM_INPUTS)
                inner = per_op(reduce, inputs >= NUM_INPUTS)
                for o, op in enumerate(DARTS_OPS):
                    counts[("reduce", stage, op)] += on_inputs[:, o]
                    counts[("normal", stage, op)] += inner[:, o]
            else:
                ops = per_op(normal, every)
                for o, op in enumerate(DARTS_OPS):
                    counts[("normal", stage, op)] += ops[:, o]
        return np.stack([counts[key] for key in self._unit_keys()], 1)


class _BareCell(_CellInputs):
    """A DARTS cell without its ops (the latency table's skeleton): input preprocessing,
    four node additions (of the second input, stride-2 subsampled in a reduction cell) and
    the concatenation."""

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0
                ) -> torch.Tensor:
        self.pre0(s0)
        x = self.pre1(s1)
        if self.reduction:
            x = x[..., ::2] if x.dim() == 3 else x[..., ::2, ::2]
        return torch.cat([x + x for _ in range(NUM_INTERMEDIATE)], dim=1)
