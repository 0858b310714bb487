"""The ensemble view's paths (Veit et al. 2016, section 4.3): a ResNet of n blocks, each either taken through its
residual branch or skipped through its shortcut, holds 2^n paths from input to output. A path's length is the
number of branches it goes through, so lengths follow the binomial distribution Binomial(n, 1/2): most paths are
about n/2 blocks long.

Veit et al. measured how much gradient each length carries: feed a batch forward as usual; in the backward pass
pick k blocks at random and let the gradient through only their branch, and through only the shortcut of the other
n - k blocks, so it flows along one path of length k; take the gradient's norm at the input of the first block.
The gradient per path shrinks fast with the length; times the number of paths of that length, the total gradient
per length peaks at paths much shorter than n/2 (5 to 17 of the 54 blocks of their ResNet-110): the "effective
paths" are short.

:func:`path_gradients` does exactly that: the forward values are the network's own (blocking the gradient of one
path, ``t.detach()``, does not change a value), only the backward pass is restricted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from explorer import budget
from explorer.models import ResidualBlock, residual_blocks
from explorer.shared import Hooks
from explorer.why.base import EvalSet, Progress, WhyError, private_copy, quiet

__all__ = [
    "PathGradients",
    "block_count",
    "path_forwards",
    "effective_range",
    "path_counts",
    "path_gradients",
    "path_length_distribution",
    "sample_path_lengths",
]


def block_count(model: nn.Module) -> int:
    """The residual blocks of ``model``: n, for 2^n paths."""
    return len(residual_blocks(model))


def path_forwards(model: nn.Module, samples: int) -> int:
    """Forward-pass equivalents per image of :func:`path_gradients`: for each of the n + 1 lengths, ``samples``
    forwards in which every block's branch runs twice, and their backward passes (about twice a forward)."""
    return (block_count(model) + 1) * samples * 4


def path_counts(n: int) -> np.ndarray:
    """The number of paths of each length 0..n through n blocks: C(n, k), as floats ((n + 1,))."""
    if n < 1:
        raise WhyError("a network needs at least one residual block to have paths")
    return np.array([float(math.comb(n, k)) for k in range(n + 1)])


def path_length_distribution(n: int) -> np.ndarray:
    """The share of the 2^n paths of each length 0..n: Binomial(n, 1/2)'s probabilities ((n + 1,))."""
    return path_counts(n) / 2.0**n


def sample_path_lengths(n: int, draws: int, seed: int = 0) -> np.ndarray:
    """The lengths of ``draws`` paths drawn uniformly from the 2^n (each block's branch taken with probability
    1/2, independently): (draws,) ints. Their histogram approaches :func:`path_length_distribution`."""
    if n < 1 or draws < 1:
        raise WhyError("draw at least one path through at least one block")
    rng = np.random.default_rng(seed)
    return (rng.random((draws, n)) < 0.5).sum(axis=1)


def effective_range(share: np.ndarray, mass: float = 0.9) -> tuple[int, int]:
    """The shortest run of consecutive lengths (lo, hi), both included, that holds at least ``mass`` of
    ``share`` (shares over lengths 0..n that sum to 1); the earliest such run when several are as short."""
    share = np.asarray(share, dtype=np.float64)
    total = share.sum()
    if total <= 0:
        raise WhyError("there is no gradient to share out")
    cumulative = np.concatenate([[0.0], np.cumsum(share / total)])
    best = (0, len(share) - 1)
    for lo in range(len(share)):
        hi = int(np.searchsorted(cumulative, cumulative[lo] + mass - 1e-12, side="left")) - 1
        if hi < len(share) and hi - lo < best[1] - best[0]:
            best = (lo, max(hi, lo))
    return best


@dataclass(frozen=True)
class PathGradients:
    """Veit et al.'s measurement on one network of ``n`` blocks (arrays over path lengths 0..n).

    ``magnitude``: the mean gradient norm at the first block's input of one path of that length (over
    ``samples`` random paths and the batch's images), ``spread`` its standard deviation over the samples;
    ``distribution``: the share of paths of that length; ``total``: the share of the whole gradient that paths of
    that length carry, ``C(n, k) * magnitude`` normalised to sum to 1."""

    name: str
    n: int
    lengths: np.ndarray
    distribution: np.ndarray
    magnitude: np.ndarray
    spread: np.ndarray
    total: np.ndarray
    samples: int
    images: int
    seconds: float

    @property
    def peak(self) -> int:
        """The path length that carries the most gradient in all."""
        return int(np.argmax(self.total))

    @property
    def effective(self) -> tuple[int, int]:
        """The shortest run of lengths that carries 90% of the gradient."""
        return effective_range(self.total, 0.9)

    @property
    def effective_paths_share(self) -> float:
        """The share of all 2^n paths whose length lies in :attr:`effective`."""
        lo, hi = self.effective
        return float(self.distribution[lo : hi + 1].sum())


def _gated(block: ResidualBlock, x: Tensor, through_branch: bool) -> Tensor:
    """The block's own output value, with the gradient let through only its branch (``through_branch``) or only
    its shortcut."""
    branch, shortcut = block.residual(x), block.shortcut(x)
    if through_branch:
        shortcut = shortcut.detach()
    else:
        branch = branch.detach()
    return block.merge(branch + shortcut)


def path_gradients(
    model: nn.Module,
    data: EvalSet,
    *,
    samples: int = 4,
    seed: int = 0,
    name: str = "",
    progress: Progress = quiet,
    device: torch.device | str | None = None,
) -> PathGradients:
    """Veit et al.'s gradient per path length (see the module docstring) of ``model`` on ``data`` (a batch;
    keep it small: one forward and backward per sample): for every length k = 0..n, ``samples`` random sets of k
    blocks whose branches the gradient may take (drawn with ``seed``), the mean over the images of the norm of
    the gradient of their summed cross-entropy at the first block's input.

    Raises:
        BudgetError: when the batch's forward (every branch twice) and backward cannot fit the server's memory
            budget, naming the input size that would.
    """
    start = time.perf_counter()
    size = int(data.x.shape[-1])
    fitted = budget.fit(2 * budget.image_bytes(model, tuple(data.x.shape[-2:]), backward=True), len(data),
                        what="The gradient per path length", size=size,
                        fixed=budget.call_overhead(model, backward=True))
    with budget.LEDGER.reserve(fitted.bytes):
        return _path_gradients(model, data, samples, seed, name, progress, device, start)


def _path_gradients(model: nn.Module, data: EvalSet, samples: int, seed: int, name: str, progress: Progress,
                    device: torch.device | str | None, start: float) -> PathGradients:
    """:func:`path_gradients`' work, within its reserved memory."""
    net = private_copy(model, device)
    blocks = residual_blocks(net)
    if not blocks or any(b.plain for _, b in blocks):
        raise WhyError("paths exist only in a network with shortcuts: this one has none")
    n = len(blocks)
    dev = next(net.parameters()).device
    x, y = data.x.to(dev), data.y.to(dev)
    rng = np.random.default_rng(seed)
    magnitude, spread = np.zeros(n + 1), np.zeros(n + 1)
    first = blocks[0][1]
    total_runs, run = (n + 1) * samples, 0
    seen: dict[str, Tensor] = {}

    def entry(_m: nn.Module, args: tuple) -> tuple[Tensor]:
        seen["x"] = leaf = args[0].detach().requires_grad_(True)  # the first block's input, a leaf of its own
        return (leaf,)

    for k in range(n + 1):
        norms = []
        for _ in range(samples):
            chosen = set(rng.choice(n, size=k, replace=False).tolist()) if k else set()
            with Hooks() as hooks:
                hooks.pre(first, entry)
                for i, (_, block) in enumerate(blocks):
                    hooks.forward(block, lambda m, args, _out, on=i in chosen: _gated(m, args[0], on))
                loss = F.cross_entropy(net(x), y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, seen["x"])
            norms.append(float(grad.flatten(1).norm(dim=1).mean()))
            run += 1
            progress(run / total_runs, f"{name}: paths of length {k}")
        magnitude[k], spread[k] = float(np.mean(norms)), float(np.std(norms))
    counts = path_counts(n)
    weighted = counts * magnitude
    total = weighted / weighted.sum() if weighted.sum() > 0 else weighted
    return PathGradients(name, n, np.arange(n + 1), counts / 2.0**n, magnitude, spread, total, samples, len(data),
                         time.perf_counter() - start)
