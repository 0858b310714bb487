"""The lesion study of Veit et al. 2016, "Residual Networks Behave Like Ensembles of Relatively Shallow Networks":
delete blocks from a trained network and measure its error.

* **One block at a time** (their Fig. 3a): deleting one block of a trained ResNet barely changes its error, while
  deleting a layer of a plain net (their VGG) is catastrophic. Blocks that change the shape (stride 2, more
  channels) are shown apart, as Veit et al. did: in a ResNet their shortcut still subsamples and pads (or
  projects), in a plain net nothing is left to carry the signal.
* **k blocks at once** (Fig. 5a): the error rises smoothly with the number of deleted blocks; ``draws`` random
  sets of k blocks (shape-keeping blocks only) for every k, mean and spread.
* **Swapping neighbours** (Fig. 5b): exchanging two neighbouring blocks of one stage is tolerated too.

Deleting a block is :func:`explorer.predict.knockout_output`, the app's one knock-out: a residual block passes
on its shortcut alone; a plain block passes its input on where the shapes allow and zeros where they do not.
Everything runs on a private copy of the model (hooks and swaps never touch the caller's).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from explorer.models import ResidualBlock, residual_blocks
from explorer.predict import knockout_output
from explorer.shared import Hooks
from explorer.why.base import EvalSet, Progress, WhyError, evaluate, private_copy, quiet

__all__ = ["Lesion", "default_ks", "downsampling", "lesion_forwards", "lesion_study", "random_sets", "swap_pairs"]


def downsampling(block: ResidualBlock) -> bool:
    """Whether ``block`` changes the shape of what passes through it (stride or channels)."""
    conv = next(m for m in block.modules() if isinstance(m, nn.Conv2d))
    last = [m for m in block.modules() if isinstance(m, nn.Conv2d) and m is not conv]
    out_channels = (last[-1] if last else conv).out_channels
    stride = getattr(block, "stride", 1)
    return stride != 1 or conv.in_channels != out_channels


def default_ks(model: nn.Module) -> list[int]:
    """The numbers of shape-keeping blocks to delete at once: every k up to 12 blocks, a spread beyond."""
    n = sum(not downsampling(b) for _, b in residual_blocks(model))
    if n <= 12:
        return list(range(1, n + 1))
    return sorted({1, 2, 3, 4, 6, 8, 11, 15, 20, n} & set(range(1, n + 1)))


def swap_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Neighbouring blocks of one stage that can trade places: both keep the shape."""
    blocks = residual_blocks(model)
    pairs = []
    for (a, block_a), (b, block_b) in zip(blocks, blocks[1:], strict=False):
        if a.rpartition(".")[0] == b.rpartition(".")[0] and not downsampling(block_a) and not downsampling(block_b):
            pairs.append((a, b))
    return pairs


def random_sets(names: Sequence[str], k: int, draws: int, rng: np.random.Generator) -> list[tuple[str, ...]]:
    """``draws`` random sets of ``k`` distinct blocks of ``names`` (each set in forward order). With fewer
    possible sets than ``draws`` (k = n: one), each distinct set once."""
    n = len(names)
    if not 0 < k <= n:
        raise WhyError(f"cannot delete {k} of {n} blocks")
    if k == n:
        return [tuple(names)]
    sets = [tuple(names[i] for i in sorted(rng.choice(n, size=k, replace=False))) for _ in range(draws)]
    return sets


@dataclass(frozen=True)
class Lesion:
    """A lesion study of one network on ``images`` test images.

    ``singles``: one row per block: ``block``, ``stage``, ``downsampling``, ``accuracy`` with it deleted,
    ``cost`` (points of accuracy lost: 100 x (baseline - accuracy)). ``by_k``: one row per k: ``k``, ``draws``,
    ``mean`` / ``std`` / ``min`` / ``max`` of the error (%) over the draws. ``swaps``: ``pair``, ``accuracy``,
    ``cost``. ``baseline``: the accuracy with every block in place."""

    name: str
    baseline: float
    singles: pd.DataFrame
    by_k: pd.DataFrame
    swaps: pd.DataFrame
    images: int
    seconds: float

    @property
    def mean_cost(self) -> float:
        """Mean points lost by deleting one shape-keeping block (Veit et al.'s headline number)."""
        kept = self.singles[~self.singles["downsampling"]]
        return float(kept["cost"].mean()) if len(kept) else float("nan")

    @property
    def mean_downsampling_cost(self) -> float:
        """Mean points lost by deleting one block that changes the shape (NaN when there is none)."""
        down = self.singles[self.singles["downsampling"]]
        return float(down["cost"].mean()) if len(down) else float("nan")

    @property
    def mean_swap_cost(self) -> float:
        return float(self.swaps["cost"].mean()) if len(self.swaps) else float("nan")


def lesion_forwards(model: nn.Module, *, draws: int, swaps: bool = True, ks: Sequence[int] | None = None) -> int:
    """How many passes over the test images :func:`lesion_study` makes: the baseline, one per block, ``draws``
    per k (one for k = n) and one per swappable pair."""
    blocks = residual_blocks(model)
    n = sum(not downsampling(b) for _, b in blocks)
    ks = list(range(1, n + 1)) if ks is None else [k for k in ks if 0 < k <= n]
    return 1 + len(blocks) + sum(1 if k == n else draws for k in ks) + (len(swap_pairs(model)) if swaps else 0)


def lesion_study(
    model: nn.Module,
    data: EvalSet,
    *,
    draws: int = 5,
    ks: Sequence[int] | None = None,
    swaps: bool = True,
    seed: int = 0,
    name: str = "",
    batch: int = 512,
    progress: Progress = quiet,
    device: torch.device | str | None = None,
) -> Lesion:
    """Veit et al.'s lesion study of ``model`` on ``data`` (see the module docstring): every block deleted alone,
    ``draws`` random sets of k shape-keeping blocks for each k of ``ks`` (default 1 .. all of them; the sets drawn
    with ``seed``) and, with ``swaps``, every pair of neighbours exchanged."""
    start = time.perf_counter()
    net = private_copy(model, device)
    blocks = dict(residual_blocks(net))
    if not blocks:
        raise WhyError("this network has no residual blocks to delete")
    keeping = [n for n, b in blocks.items() if not downsampling(b)]
    ks = range(1, len(keeping) + 1) if ks is None else [k for k in ks if 0 < k <= len(keeping)]
    pairs = swap_pairs(net) if swaps else []
    rng = np.random.default_rng(seed)
    plans = [(k, random_sets(keeping, k, draws, rng)) for k in ks] if keeping else []
    total = 1 + len(blocks) + sum(len(sets) for _, sets in plans) + len(pairs)
    done = 0

    def accuracy(deleted: Sequence[str], what: str) -> float:
        nonlocal done
        with Hooks() as hooks:
            for block in deleted:
                hooks.forward(blocks[block], lambda m, args, out: knockout_output(m, args[0], out))
            _, acc = evaluate(net, data, batch=batch)
        done += 1
        progress(done / total, f"{name}: {what}")
        return acc

    baseline = accuracy((), "every block in place")
    singles = pd.DataFrame([
        dict(block=b, stage=b.rpartition(".")[0], downsampling=downsampling(blocks[b]), accuracy=acc,
             cost=100 * (baseline - acc))
        for b in blocks for acc in [accuracy((b,), f"without {b}")]
    ])
    rows = []
    for k, sets in plans:
        errors = [100 * (1 - accuracy(s, f"{k} blocks deleted")) for s in sets]
        rows.append(dict(k=k, draws=len(sets), mean=float(np.mean(errors)), std=float(np.std(errors)),
                         min=float(np.min(errors)), max=float(np.max(errors))))
    by_k = pd.DataFrame(rows, columns=["k", "draws", "mean", "std", "min", "max"])
    swapped = []
    for a, b in pairs:
        with _swapped(net, a, b):
            acc = accuracy((), f"{a} and {b} swapped")
        swapped.append(dict(pair=f"{a} ↔ {b}", accuracy=acc, cost=100 * (baseline - acc)))
    swaps_frame = pd.DataFrame(swapped, columns=["pair", "accuracy", "cost"])
    return Lesion(name, baseline, singles, by_k, swaps_frame, len(data), time.perf_counter() - start)


class _swapped:
    """Context manager: blocks ``a`` and ``b`` (neighbours in one ``nn.Sequential`` stage of the private ``net``)
    trade places, and are put back on exit."""

    def __init__(self, net: nn.Module, a: str, b: str) -> None:
        stage_name, _, i = a.rpartition(".")
        self.stage, self.i, self.j = net.get_submodule(stage_name), int(i), int(b.rpartition(".")[2])

    def _swap(self) -> None:
        stage, i, j = self.stage, self.i, self.j
        first, second = stage[i], stage[j]
        stage[i], stage[j] = second, first

    def __enter__(self) -> None:
        self._swap()

    def __exit__(self, *_exc: object) -> None:
        self._swap()
