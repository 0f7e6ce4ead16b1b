"""Cells drawn as SVG graphs: nodes, edges, op labels, colours by op family. No Graphviz.

The drawing reads a cell only through the ``SearchSpace`` abstraction: ``space.to_graphs``
gives the dense DAG (nodes in topological order, node ops in ``space.node_op_names``, edge ops
in ``space.edge_op_names`` for op-on-edge spaces), so every space that builds a ``GraphBatch``
is drawn with no code of its own. A space whose architecture is more than one cell (DARTS: a
normal and a reduction cell) registers a function returning one ``CellGraph`` per cell in
``GRAPHS``.

Layout: each node's column is its longest path from the input (the output last); nodes of a
column are stacked; an edge that skips columns bends above or below the nodes it passes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import numpy as np

from archrank.errors import ArchrankError
from archrank.spaces.base import SearchSpace

# (family, colour) by op-name keyword, first match wins; also the legend's order.
FAMILIES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("input / output", ("input", "output"), "#e0e0e0"),
    ("none (cut)", ("none", "zero"), "#f5f5f5"),
    ("skip / identity", ("skip", "identity"), "#b7e4c7"),
    ("convolution", ("conv",), "#9ecae1"),
    ("pooling", ("pool",), "#fdd0a2"),
    ("graph convolution", ("gat", "gcn", "gin", "cheb", "sage", "arma", "graph"), "#dadaeb"),
    ("linear", ("fc", "linear", "mlp"), "#f2c6de"),
)
PLAIN = ("node", "#ffffff")  # intermediate nodes of op-on-edge cells carry no op
OTHER = ("other", "#fee08b")
STROKES = {"input / output": "#616161", "none (cut)": "#9e9e9e", "skip / identity": "#2d6a4f",
           "convolution": "#2171b5", "pooling": "#d94801", "graph convolution": "#6a51a3",
           "linear": "#ae017e", "node": "#616161", "other": "#b8860b"}


def op_family(op: str) -> tuple[str, str]:
    """``(family, fill colour)`` of an op name, e.g. ``nor_conv_3x3`` -> convolution."""
    name = op.lower()
    if name in ("intermediate", "node", ""):
        return PLAIN
    tokens = set(name.replace("-", "_").split("_"))
    for family, keys, colour in FAMILIES:
        if any(k in tokens or (k in ("conv", "pool") and k in name) for k in keys):
            return family, colour
    return OTHER


@dataclass(frozen=True)
class CellGraph:
    """A drawable DAG: node labels, node ops (their colour), edges ``(source, target, op or
    None)``."""

    title: str
    nodes: list[str]
    node_ops: list[str]
    edges: list[tuple[int, int, str | None]]


def graph_of(space: SearchSpace, arch: Any) -> list[CellGraph]:
    """The generic reading of one architecture: its ``GraphBatch`` as one ``CellGraph``.

    Op-on-edge spaces label edges with their op and nodes by position (intermediate nodes carry
    no op); op-on-node spaces label nodes with their op. Edges that carry nothing (``none``,
    padding) are left out.
    """
    g = space.to_graphs([arch])
    n = int(g.mask[0].sum())
    ops = g.ops[0, :n].tolist()
    adj = g.adj[0, :n, :n].numpy() > 0
    node_ops = [space.node_op_names[o] for o in ops]
    nodes = list(node_ops)
    edge_ops = None if g.edge_ops is None else g.edge_ops[0, :n, :n].numpy()
    if edge_ops is not None:
        nodes = ["input" if i == 0 else "output" if i == n - 1 else str(i) for i in range(n)]
    edges = [(int(i), int(j), None if edge_ops is None else space.edge_op_names[edge_ops[i, j]])
             for i, j in zip(*np.nonzero(adj), strict=True)]
    return [CellGraph(space.name, nodes, node_ops, edges)]


def darts_graphs(space: SearchSpace, arch: Any) -> list[CellGraph]:
    """A DARTS genotype as its two cells, drawn the way the DARTS paper draws them: the cell
    inputs ``c_{k-2}`` and ``c_{k-1}``, intermediate nodes 0-3, ops on the edges, and
    unlabelled edges from the concatenated nodes to the output."""
    out = []
    for kind in ("normal", "reduce"):
        pairs, concat = arch.cell(kind)
        inputs = space.num_inputs
        inner = len(pairs) // 2
        nodes = ["c_{k-2}", "c_{k-1}", *(str(k) for k in range(inner)), "c_{k}"]
        node_ops = ["input"] * inputs + ["node"] * inner + ["output"]
        edges: list[tuple[int, int, str | None]] = [
            (int(src), inputs + k // 2, str(op)) for k, (op, src) in enumerate(pairs)]
        edges += [(int(c), len(nodes) - 1, None) for c in concat]
        out.append(CellGraph(f"{kind} cell", nodes, node_ops, edges))
    return out


GRAPHS: dict[str, Callable[[SearchSpace, Any], list[CellGraph]]] = {"darts": darts_graphs}


def cell_graphs(space: SearchSpace, arch: Any) -> list[CellGraph]:
    return GRAPHS.get(space.name, graph_of)(space, arch)


# -- layout and SVG -----------------------------------------------------------------------------
_CHAR_W = 6.6  # px per character at font-size 11 (sans-serif, generous)
_NODE_H = 26
_COL_GAP = 70
_ROW_GAP = 30
_PAD = 16
_ids = itertools.count()


def _columns(graph: CellGraph) -> list[int]:
    """Longest path from the inputs (nodes are in topological order); input nodes (two in a
    DARTS cell) share the first column, a node nothing feeds still sits right of them, and
    the output is alone in the last column."""
    n = len(graph.nodes)
    col = [0 if i == 0 or graph.node_ops[i] == "input" else 1 for i in range(n)]
    for i, j, _ in sorted(graph.edges, key=lambda e: e[1]):
        col[j] = max(col[j], col[i] + 1)
    if n > 1:
        col[-1] = max(col[:-1]) + 1
    return col


def _label_width(text: str) -> float:
    return len(text) * _CHAR_W + 16


def draw_graph(graph: CellGraph, uid: str) -> tuple[list[str], float, float]:
    """SVG elements of one graph, and its width and height.

    Geometry is computed first with the nodes' centre line at y = 0; arcs that would cross a
    node go around the nodes they pass (above for even sources, below for odd, each further arc
    on a side one step further out); then everything is shifted to fit.
    """
    n = len(graph.nodes)
    col = _columns(graph)
    ncols = max(col) + 1
    widths = [_label_width(t) for t in graph.nodes]
    col_w = [max([widths[i] for i in range(n) if col[i] == c], default=40) for c in range(ncols)]
    edge_label_w = max([_label_width(op) for _, _, op in graph.edges if op], default=0)
    gap = max(_COL_GAP, edge_label_w + 30)
    x0 = [_PAD + sum(col_w[:c]) + c * gap for c in range(ncols)]
    cx, cy = [0.0] * n, [0.0] * n
    for c in range(ncols):
        members = [i for i in range(n) if col[i] == c]
        total = len(members) * _NODE_H + (len(members) - 1) * _ROW_GAP
        for k, i in enumerate(members):
            cx[i] = x0[c] + col_w[c] / 2
            cy[i] = -total / 2 + k * (_NODE_H + _ROW_GAP) + _NODE_H / 2
    half = _NODE_H / 2
    top = min(cy) - half
    bottom = max(cy) + half
    levels = {-1: 0, 1: 0}
    paths, labels, ys = [], [], [top, bottom]
    for i, j, op in graph.edges:
        x1, y1 = cx[i] + widths[i] / 2, cy[i]
        x2, y2 = cx[j] - widths[j] / 2 - 2, cy[j]
        passed = [k for k in range(n) if col[i] < col[k] < col[j]  # too close for a label
                  and abs(cy[k] - (y1 + y2) / 2) < _NODE_H + 16]
        qx, qy = (x1 + x2) / 2, (y1 + y2) / 2
        if passed:
            sign = -1 if i % 2 == 0 else 1
            edge = min(cy[k] for k in passed) - half if sign < 0 else \
                max(cy[k] for k in passed) + half
            target = edge + sign * (16 + 22 * levels[sign])
            levels[sign] += 1
            qy = 2 * target - (y1 + y2) / 2  # the curve's midpoint lands on ``target``
        mx, my = 0.25 * x1 + 0.5 * qx + 0.25 * x2, 0.25 * y1 + 0.5 * qy + 0.25 * y2
        ys += [my - 10, my + 10]
        paths.append((x1, y1, qx, qy, x2, y2, op, mx, my))
    shift = _PAD + 22 - min(ys)
    height = max(ys) - min(ys) + 2 * _PAD + 22
    width = x0[-1] + col_w[-1] + _PAD
    out = [f'<text x="{_PAD}" y="{_PAD + 4}" class="ttl">{escape(graph.title)}</text>']
    for x1, y1, qx, qy, x2, y2, op, mx, my in paths:
        family, fill = op_family(op) if op else ("", "")
        stroke = STROKES.get(family, "#555") if op else "#555"
        out.append(f'<path d="M{x1:.1f},{y1 + shift:.1f} Q{qx:.1f},{qy + shift:.1f} '
                   f'{x2:.1f},{y2 + shift:.1f}" fill="none" stroke="{stroke}" '
                   f'stroke-width="1.6" marker-end="url(#{uid}-arrow)"/>')
        if op:
            w = _label_width(op)
            labels.append(f'<g class="op" data-family="{escape(family)}">'
                          f'<rect x="{mx - w / 2:.1f}" y="{my + shift - 9:.1f}" '
                          f'width="{w:.1f}" height="18" rx="9" fill="{fill}" '
                          f'stroke="{stroke}"/><text x="{mx:.1f}" y="{my + shift + 4:.1f}">'
                          f"{escape(op)}</text></g>")
    for i, text in enumerate(graph.nodes):
        family, fill = op_family(graph.node_ops[i])
        w = widths[i]
        out.append(f'<g class="node" data-family="{escape(family)}">'
                   f'<rect x="{cx[i] - w / 2:.1f}" y="{cy[i] + shift - half:.1f}" '
                   f'width="{w:.1f}" height="{_NODE_H}" rx="6" fill="{fill}" '
                   f'stroke="{STROKES.get(family, "#555")}" stroke-width="1.3"/>'
                   f'<text x="{cx[i]:.1f}" y="{cy[i] + shift + 4:.1f}">{escape(text)}</text></g>')
    return out + labels, width, height


def _legend(families: Sequence[str], width: float, y: float) -> tuple[list[str], float]:
    colour = {f: c for f, _, c in FAMILIES} | {PLAIN[0]: PLAIN[1], OTHER[0]: OTHER[1]}
    out, x, row = [], _PAD, 0
    for fam in families:
        w = _label_width(fam) + 14
        if x + w > width - _PAD and x > _PAD:
            x, row = _PAD, row + 1
        yy = y + row * 20
        out.append(f'<rect x="{x}" y="{yy}" width="12" height="12" rx="3" fill="{colour[fam]}" '
                   f'stroke="{STROKES.get(fam, "#555")}"/>'
                   f'<text x="{x + 17}" y="{yy + 10}" class="leg">{escape(fam)}</text>')
        x += w
    return out, (row + 1) * 20


def cell_svg(space: SearchSpace, arch: Any) -> str:
    """One ``<svg>`` with every cell of ``arch`` side by side and a legend of op families."""
    uid = f"cell{next(_ids)}"
    parts, x, height = [], 0.0, 0.0
    families: list[str] = []
    for graph in cell_graphs(space, arch):
        elems, w, h = draw_graph(graph, uid)
        parts.append(f'<g transform="translate({x:.1f},0)">{"".join(elems)}</g>')
        x, height = x + w, max(height, h)
        families += [op_family(t)[0] for t in graph.node_ops]
        families += [op_family(op)[0] for _, _, op in graph.edges if op]
    order = [f for f, _, _ in FAMILIES] + [PLAIN[0], OTHER[0]]
    legend, lh = _legend(sorted(set(families), key=order.index), max(x, 320), height)
    width, height = max(x, 320), height + lh + 4
    style = (f"#{uid} text{{font:11px sans-serif;text-anchor:middle;fill:#222}}"
             f"#{uid} .ttl{{text-anchor:start;font-weight:bold;fill:#555}}"
             f"#{uid} .leg{{text-anchor:start;fill:#444}}")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" id="{uid}" class="cell" '
            f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'role="img" aria-label="{escape(space.format(arch))}">'
            f'<style>{style}</style><defs><marker id="{uid}-arrow" viewBox="0 0 10 10" refX="9" '
            f'refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>'
            f'{"".join(parts)}{"".join(legend)}</svg>')


def draw_text(space_name: str, text: str, where: str | Any) -> str:
    """``cell_svg`` of a cell given as its space's text; errors name ``where`` it came from."""
    from archrank.spaces import get_space

    try:
        space = get_space(space_name)
        return cell_svg(space, space.parse(text))
    except ArchrankError as exc:
        raise ArchrankError(f"{where}: {exc}") from None
