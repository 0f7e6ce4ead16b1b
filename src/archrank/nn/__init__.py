"""Real PyTorch networks of the benchmark skeletons, and their parameter and FLOP counts.

``build_network(space, arch, ...)`` builds the network of any cell of nb201 or nb101 at the
benchmark's size (the defaults) or smaller/larger (``width``, ``depth``), on images ("2d") or
signals ("1d").
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from archrank.errors import ArchrankError
from archrank.nn.counting import count_flops, count_params
from archrank.nn.darts import DartsNetwork
from archrank.nn.nb101 import NB101Network
from archrank.nn.nb201 import NB201Network

NETWORK_SPACES: tuple[str, ...] = ("nb201", "nb101", "darts")
# What width and depth mean per space, and the benchmark values (the defaults).
BENCHMARK_SIZE: dict[str, dict[str, int]] = {
    "nb201": {"width": 16, "depth": 5},  # stem channels C, cells per stage N
    "nb101": {"width": 128, "depth": 3},  # stem channels, cells per stack
    "darts": {"width": 36, "depth": 20},  # initial cell channels C, number of cells
}


def _space_name(space: Any) -> str:
    return space if isinstance(space, str) else space.name


def check_network_space(space: str) -> None:
    """A one-line error for a space without a network skeleton (nbgraph's GNNs are not
    built here): a table lookup by its name failed with a bare ``KeyError``."""
    if space not in BENCHMARK_SIZE:
        raise ArchrankError(f"no network skeleton for space {space!r}; networks exist for "
                            f"{', '.join(NETWORK_SPACES)}")


# Fewest cells a network of a space can have (DARTS: a reduction cell at a third and at two
# thirds of the depth, and normal cells around them).
MIN_DEPTH: dict[str, int] = {"darts": 3}
# Narrowest network of a space: an NB101 cell splits its output's channels among the (up to
# five) interior vertices feeding it, so below five some vertex would get no channel.
MIN_WIDTH: dict[str, int] = {"nb101": 5}


def check_size(space: str, width: int, depth: int,
               names: tuple[str, str] = ("width", "depth")) -> None:
    """A one-line error for a width or depth no network of ``space`` can have (checked
    before a run or a training starts, not at its first evaluation): below the space's least,
    or so large that the network's weights and gradients alone would not fit in this
    machine's memory (``estimated_params``; activations come on top, so what is refused
    certainly cannot run). ``names``: how the message calls the two (a command passes its
    flags, ``("--width", "--depth")``)."""
    from archrank.errors import ArchrankError

    least, narrowest = MIN_DEPTH.get(space, 1), MIN_WIDTH.get(space, 1)
    w, d = names
    if width < narrowest:
        raise ArchrankError(f"{space} networks need {w} >= {narrowest}, got {w} {width}"
                            + (" (an NB101 cell splits its output's channels among up to "
                               "five vertices)" if space == "nb101" else ""))
    if depth < least:
        raise ArchrankError(f"{space} networks need {d} >= {least}, got {d} {depth}")
    size = BENCHMARK_SIZE.get(space)
    if size is None or (width <= size["width"] and depth <= size["depth"]):
        return  # no larger than the benchmark's network: never too large
    memory = _physical_memory()
    params = estimated_params(space, width, depth)
    if memory and params * BYTES_PER_PARAM > memory:
        said = [f"{d} {depth}", f"{w} {width}"]  # the one further beyond the benchmark first
        if (width / size["width"]) ** 2 > depth / size["depth"]:  # (parameters ~ width^2)
            said.reverse()
        raise ArchrankError(
            f"{said[0]} (with {said[1]}): {space} networks of about {params:.2g} parameters, "
            f"{params * BYTES_PER_PARAM / 2**30:,.0f} GiB for their weights and gradients "
            f"alone, more than this machine's {memory / 2**30:,.0f} GiB of memory (the "
            f"benchmark network: {w} {size['width']}, {d} {size['depth']})")


# float32 weights and their gradients: what any training or gradient-based proxy holds at once
BYTES_PER_PARAM = 8


def _physical_memory() -> int | None:
    """This machine's memory in bytes (None where the platform does not say)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


@functools.lru_cache(maxsize=64)
def estimated_params(space: str, width: int, depth: int) -> int:
    """Parameters of the ``space`` network of ``width`` and ``depth`` with the space's
    largest cell (every op a 3x3 convolution; darts: 5x5 separable ones), without building
    it: the networks of the two fewest depths are built on torch's meta device (shapes, no
    storage, milliseconds at any width) and the count extrapolated linearly in depth. Exact
    for nb201 and nb101 (their stages repeat one cell); darts' reduction cells sit at thirds
    of the depth, so its count is low: by 7% at the benchmark size (5,144,086, estimated
    4.80e6), by up to about 25% at depth 4 (more the wider), exact at depth 3: a bound that
    refuses less, never more."""
    least = MIN_DEPTH.get(space, 1)
    with torch.device("meta"):
        counts = [count_params(build_network(space, _largest_cell(space), width=width, depth=d))
                  for d in (least, 2 * least)]
    per_depth = (counts[1] - counts[0]) / least
    return int(counts[0] + per_depth * (depth - least))


def _largest_cell(space: str) -> Any:
    """The cell of ``space`` with the most parameters (the architecture ``build_network``
    takes)."""
    if space == "nb201":
        return ("nor_conv_3x3",) * 6
    if space == "nb101":
        import numpy as np

        # five 3x3 convolutions in a chain, the input also projected into vertices 2, 3 and
        # 5: the most parameters of the space (49,979,274 at the benchmark size, the
        # published maximum and nb101_10k.csv's)
        matrix = np.eye(7, k=1, dtype=int)
        matrix[0, [2, 3, 5]] = 1
        return matrix, ("input", *["conv3x3-bn-relu"] * 5, "output")
    from archrank.spaces.darts import make_genotype

    pairs = [("sep_conv_5x5", 0), ("sep_conv_5x5", 1)] * 4
    return make_genotype({"normal": pairs, "reduce": pairs})


def build_network(
    space: Any,
    arch: Any,
    *,
    width: int | None = None,
    depth: int | None = None,
    num_classes: int = 10,
    in_channels: int = 3,
    input_kind: str = "2d",
    seed: int | None = None,
) -> nn.Module:
    """The network of ``arch`` in its benchmark's skeleton.

    ``space`` is a space or its name; ``arch`` the space's architecture (``EdgeCell`` for
    nb201, ``Cell`` for nb101, ``Genotype`` for darts) or, for nb201, the six edge op names
    and, for nb101, a ``(matrix, ops)`` pair. With a ``seed`` the initial weights depend on it
    alone, even with other threads building networks at the same time (Dask threads), and
    torch's global random state is left as it was.
    """
    if seed is not None:  # manual_seed seeds every device: keep the GPUs' states too
        gpus = range(torch.cuda.device_count()) if torch.cuda.is_available() else []
        with _BUILD_LOCK, torch.random.fork_rng(devices=gpus):
            torch.manual_seed(seed)
            return build_network(space, arch, width=width, depth=depth,
                                 num_classes=num_classes, in_channels=in_channels,
                                 input_kind=input_kind)
    name = _space_name(space)
    check_network_space(name)
    if isinstance(arch, str):  # iterated, text is read character by character
        raise ArchrankError(f"got the {name} cell as text (str); read it with "
                            f"get_space({name!r}).parse(text) first")
    size = BENCHMARK_SIZE[name]
    width = size["width"] if width is None else int(width)
    depth = size["depth"] if depth is None else int(depth)
    common = {"num_classes": num_classes, "in_channels": in_channels, "input_kind": input_kind}
    if name == "darts":
        return DartsNetwork(arch, width=width, depth=depth, **common)
    if name == "nb201":
        ops = getattr(arch, "ops", arch)
        return NB201Network(ops, channels=width, cells_per_stage=depth, **common)
    matrix, ops = (arch.matrix, arch.ops) if hasattr(arch, "matrix") else arch
    return NB101Network(matrix, ops, stem_channels=width, cells_per_stack=depth, **common)


_BUILD_LOCK = threading.RLock()
_THREADS_LOCK = threading.Lock()
_threads_users = 0
_threads_before = 0


def resolve_device(device: str | None) -> torch.device:
    """``"auto"`` (or None): the GPU when one is present, else the CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ArchrankError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ArchrankError(f"device {device!r}: no CUDA GPU is available to this torch "
                            f"({torch.__version__}); use auto or cpu")
    return resolved


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads inside the block.

    Reference-counted: concurrent blocks in one process (Dask worker threads) share the
    setting, and the count is restored only when the last one leaves, so no evaluation sees
    its thread count change while it runs (which would change its floating-point results).
    """
    global _threads_users, _threads_before
    with _THREADS_LOCK:
        if _threads_users == 0:
            _threads_before = torch.get_num_threads()
            torch.set_num_threads(n)
        _threads_users += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_before)


__all__ = [
    "BENCHMARK_SIZE",
    "NETWORK_SPACES",
    "DartsNetwork",
    "NB101Network",
    "NB201Network",
    "build_network",
    "check_network_space",
    "count_flops",
    "count_params",
    "torch_threads",
]
