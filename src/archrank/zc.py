"""Zero-cost proxies: scores of an untrained network from one batch, as cheap NAS signals.

``compute_proxies(network, (x, y), names)`` returns a dict of floats for the proxies below
(higher = predicted better for all of them). The network is never modified: the gradient
proxies run on a copy in training mode (batch-norm with batch statistics), sharing one forward
pass (nwot's ReLU codes, the loss gradients of snip and grad_norm, the input Jacobian of
jacov); synflow runs on another copy. A caller that built the network only to score it passes
``scratch=True`` to skip both copies (an eighth of a cell's time on nb201): the values are the
same, the network is left unusable.

params     trainable parameters
flops      multiply-accumulates of one forward pass (``archrank.nn.counting``, "macs")
synflow    SynFlow (Tanaka et al. 2020): sum over conv/linear weights of ``|w * dR/dw|`` where
           ``R`` is the sum of the outputs of the network with every weight replaced by its
           absolute value, batch norm removed, in float64, on an all-ones input; reported as
           ``log1p`` of that sum (the raw sum overflows for deep networks; the order is the same)
snip       SNIP (Lee et al. 2019): sum over conv/linear weights of ``|w * dL/dw|``, L the
           cross-entropy of the batch
grad_norm  sum over conv/linear layers of the L2 norm of ``dL/dw``
jacov      Jacobian covariance (Mellor et al. 2021, v1): with ``J`` the per-example gradient
           of the summed outputs w.r.t. the input and ``v`` the eigenvalues of the correlation
           matrix of its rows, ``-sum(log(v + 1e-5) + 1 / (v + 1e-5))``; ``-inf`` when some
           row is constant (the output does not depend on the input). At most ``D - 1``
           examples (the batch's first; ``D`` the input's size): more force zero eigenvalues
nwot       NASWOT (Mellor et al. 2021, v2): ``log|det K|`` with ``K[i, j]`` the number of ReLU
           units on which examples i and j agree (both active or both inactive), summed over
           every ReLU of the network; ``-inf`` when K is singular
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from archrank.datasets import load_dataset
from archrank.errors import ArchrankError
from archrank.nn.counting import count_flops, count_params

PROXIES: tuple[str, ...] = ("params", "flops", "synflow", "snip", "grad_norm", "jacov", "nwot")
_GRADIENT = ("snip", "grad_norm", "jacov", "nwot")
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def check_proxies(names: Sequence[str] | str | None) -> tuple[str, ...]:
    """Proxy names from a list or a comma-separated string (all when ``None``)."""
    if names is None:
        return PROXIES
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = tuple(names)
    unknown = [n for n in names if n not in PROXIES]
    if unknown:
        raise ArchrankError(
            f"unknown zero-cost proxy {unknown[0]!r}; choose from {', '.join(PROXIES)}"
        )
    if not names:
        raise ArchrankError("no zero-cost proxy selected")
    return names


def compute_proxies(
    network: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    names: Sequence[str] | str | None = None,
    *,
    scratch: bool = False,
) -> dict[str, float]:
    """Zero-cost proxies ``names`` (default: all) of ``network`` on ``batch = (x, y)``.

    ``scratch=True``: ``network`` is a throwaway built for this call; it is scored in place
    (gradient proxies first, then synflow, which rewrites it) instead of on copies.
    """
    names = check_proxies(names)
    x, y = batch
    if x.shape[0] < 2 and any(n in names for n in ("jacov", "nwot", "snip", "grad_norm")):
        raise ArchrankError("zero-cost proxies need a batch of at least 2 examples")
    out: dict[str, float] = {}
    if "params" in names:
        out["params"] = float(count_params(network))
    if "flops" in names:
        out["flops"] = float(count_flops(network, tuple(x.shape[1:])))
    wanted = [n for n in names if n in _GRADIENT]
    if wanted:
        out.update(_gradient_proxies(network, x, y, wanted, scratch=scratch))
    if "synflow" in names:
        out["synflow"] = synflow(network, tuple(x.shape[1:]), scratch=scratch)
    return {n: out[n] for n in names}


def _weighted_layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, _WEIGHTED)]


def synflow(network: nn.Module, input_shape: Sequence[int], *, scratch: bool = False) -> float:
    """``log1p`` of the SynFlow score (see the module docstring); ``scratch``: rewrite
    ``network`` itself instead of a copy."""
    net = (network if scratch else copy.deepcopy(network)).double()
    _remove_batchnorm(net)
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    net.zero_grad(set_to_none=True)
    net.train()
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    ones = torch.ones((1, *input_shape), dtype=torch.float64, device=device)
    net(ones).sum().backward()
    total = torch.zeros((), dtype=torch.float64, device=device)
    with torch.no_grad():
        for layer in _weighted_layers(net):
            if layer.weight.grad is not None:
                total += (layer.weight * layer.weight.grad).abs().sum()
    return float(torch.log1p(total))


def _remove_batchnorm(net: nn.Module) -> None:
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, _BATCHNORM):
                setattr(module, name, nn.Identity())


def _gradient_proxies(network: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      names: Sequence[str], *, scratch: bool = False) -> dict[str, float]:
    net = network if scratch else copy.deepcopy(network)
    net.train()
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    x = x.detach().to(device).float().requires_grad_("jacov" in names)
    y = y.to(device).long()
    n = x.shape[0]

    kernel = torch.zeros((n, n), dtype=torch.float64, device=device)
    handles = []
    if "nwot" in names:
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            kernel.add_(_agreement(args[0].detach().reshape(n, -1) > 0))

        handles = [m.register_forward_hook(hook) for m in net.modules()
                   if isinstance(m, nn.ReLU)]
    try:  # nwot alone needs no gradient: a plain forward pass, several times cheaper
        with torch.set_grad_enabled(any(n != "nwot" for n in names)):
            output = net(x)
    finally:
        for h in handles:
            h.remove()

    result: dict[str, float] = {}
    if "nwot" in names:
        sign, logdet = torch.linalg.slogdet(kernel)
        result["nwot"] = float(logdet) if float(sign) > 0 else -math.inf
    layers = _weighted_layers(net)
    if "snip" in names or "grad_norm" in names:
        weights = [m.weight for m in layers]
        loss = F.cross_entropy(output, y)
        grads = torch.autograd.grad(loss, weights, retain_graph="jacov" in names,
                                    allow_unused=True)
        if "snip" in names:
            result["snip"] = float(sum(
                (w.detach() * g).abs().sum() for w, g in zip(weights, grads, strict=True)
                if g is not None))
        if "grad_norm" in names:
            result["grad_norm"] = float(sum(g.norm() for g in grads if g is not None))
    if "jacov" in names:
        (jac,) = torch.autograd.grad(output.sum(), x, allow_unused=True)
        result["jacov"] = -math.inf if jac is None else _jacov_score(
            jac.reshape(n, -1).double().cpu().numpy())
    return result


def _agreement(active: torch.Tensor) -> torch.Tensor:
    """``[n, n]`` float64 counts of units on which two rows of the boolean ``active`` agree.

    Both active plus both inactive is ``2 c c^T - s_i - s_j + d`` (``s`` the rows' active
    counts, ``d`` the units): one product instead of two. float32 holds the integer counts
    exactly below 2^24 units, float64 is used above that.
    """
    units = active.shape[1]
    codes = active.to(torch.float32 if units < 2**24 else torch.float64)
    both = (codes @ codes.T).double()
    counts = active.sum(dim=1, dtype=torch.float64)
    return 2.0 * both - counts[:, None] - counts[None, :] + float(units)


def _jacov_score(jac: np.ndarray) -> float:
    # centred rows of D inputs span at most D - 1 dimensions: from the D-th example on,
    # every one adds a forced zero eigenvalue (+1e5 each) whose count, not the network,
    # would decide the score (MNIST-1D: 40 inputs, batch 64)
    jac = jac[:max(2, min(len(jac), jac.shape[1] - 1))]
    centred = jac - jac.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    if np.any(norms == 0) or not np.all(np.isfinite(jac)):
        return -math.inf
    unit = centred / norms[:, None]
    corr = unit @ unit.T
    v = np.clip(np.linalg.eigvalsh(corr), 0.0, None)
    k = 1e-5
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


# -- many architectures of a space -------------------------------------------------------------
def proxy_batch(dataset: Any, batch_size: int = 64, seed: int = 0) -> tuple[torch.Tensor,
                                                                          torch.Tensor]:
    """A fixed batch of ``batch_size`` training examples (a seeded draw) of ``dataset``."""
    data = load_dataset(dataset)
    n = len(data.y_train)
    if batch_size < 2:
        raise ArchrankError(f"the proxy batch needs at least 2 examples, got {batch_size}")
    idx = np.random.default_rng(seed).permutation(n)[: min(batch_size, n)]
    return torch.from_numpy(data.x_train[idx]), torch.from_numpy(data.y_train[idx])


def score_architectures(
    space: Any,
    archs: Sequence[Any],
    dataset: Any = "mnist1d",
    names: Sequence[str] | str | None = None,
    *,
    batch_size: int = 64,
    seed: int = 0,
    width: int | None = None,
    depth: int | None = None,
    threads: int = 1,
    on_done: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Proxies of every architecture: ``{name: float64 [len(archs)]}``.

    Each network is the training oracle's network for ``dataset`` (same skeleton and default
    size), initialised from ``seed``, scored on the same ``proxy_batch``,
    with ``threads`` torch threads (one is fastest for these small networks and immune to a
    busy machine).
    """
    from archrank.nn import build_network, torch_threads
    from archrank.oracles.training import default_setup

    names = check_proxies(names)
    data = load_dataset(dataset)
    space_name = space if isinstance(space, str) else space.name
    size = default_setup(space_name, data.name)
    width = size["width"] if width is None else width
    depth = size["depth"] if depth is None else depth
    batch = proxy_batch(data, batch_size, seed)
    table = {name: np.zeros(len(archs)) for name in names}
    with torch_threads(threads):
        for i, arch in enumerate(archs):
            net = build_network(space_name, arch, width=width, depth=depth,
                                num_classes=data.num_classes, in_channels=data.in_channels,
                                input_kind=data.input_kind, seed=seed)
            for name, value in compute_proxies(net, batch, names, scratch=True).items():
                table[name][i] = value
            if on_done is not None:
                on_done(i + 1)
    return table
