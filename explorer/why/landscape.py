"""Loss landscapes (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets"): 1-D and 2-D slices of the
loss around a trained network along filter-normalised random directions, the loss along a straight line between
two sets of weights, and a number that says how convex a slice is.

**Filter normalisation** (Li et al., section 4): a direction ``d`` is drawn from a standard normal with the shape of
every parameter, then each filter ``d[i]`` of a conv or fully connected weight (one output channel, or one row) is
rescaled to the norm of the same filter of the weights, ``d[i] <- d[i] / |d[i]| * |w[i]|``. A step of 1 along ``d``
then changes every filter by as much as the filter itself, so the pictures of two networks are comparable even
though BatchNorm makes each one's scale arbitrary. One-dimensional parameters (BatchNorm's weights and biases, a
conv's bias) get a zero direction, as the authors' code does by default (``--xignore biasbn``).

The same seed draws the same normal numbers for every network with the same parameter shapes (the plain and
residual lab twins have identical shapes: option A shortcuts have no parameters), so the twins are sliced along
"the same" directions, each normalised to its own weights.

The loss is evaluated as the authors do: the network in eval mode (BatchNorm uses the running statistics it was
trained with), the mean cross-entropy over a fixed set of training images.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from explorer.why.base import EvalSet, Progress, WhyError, evaluate, private_copy, quiet

__all__ = [
    "Convexity",
    "Direction",
    "Slice",
    "convexity",
    "convexity_1d",
    "filter_normalise",
    "grid",
    "interpolate",
    "loss_slice",
    "random_direction",
    "slice_directions",
]

Direction = dict[str, Tensor]
"""A direction in weight space: parameter name -> a tensor of the parameter's shape (on the CPU)."""


def random_direction(model: nn.Module, seed: int) -> Direction:
    """Standard-normal numbers with the shape of each of ``model``'s parameters, in parameter order, from a
    generator seeded with ``seed`` (the global RNG is untouched). Networks with the same parameter shapes get the
    same numbers."""
    g = torch.Generator().manual_seed(int(seed))
    return {name: torch.randn(p.shape, generator=g, dtype=torch.float32) for name, p in model.named_parameters()}


def filter_normalise(direction: Mapping[str, Tensor], model: nn.Module) -> Direction:
    """Li et al.'s filter normalisation of ``direction`` to ``model``'s weights (a new direction; see the module
    docstring): every filter ``d[i]`` of a parameter with 2 or more dimensions gets the norm of ``w[i]``; a
    one-dimensional parameter gets zeros."""
    out: Direction = {}
    params = dict(model.named_parameters())
    for name, d in direction.items():
        w = params[name].detach().float().cpu()
        if w.shape != d.shape:
            raise WhyError(f"the direction's {name} has shape {tuple(d.shape)}, the weights {tuple(w.shape)}")
        if d.dim() <= 1:
            out[name] = torch.zeros_like(d)
            continue
        d_norm = d.flatten(1).norm(dim=1).clamp_min(1e-10)
        w_norm = w.flatten(1).norm(dim=1)
        out[name] = d * (w_norm / d_norm).view(-1, *([1] * (d.dim() - 1)))
    return out


def slice_directions(model: nn.Module, seed: int = 0, count: int = 2) -> list[Direction]:
    """``count`` filter-normalised random directions for ``model``: direction ``i`` is drawn with seed
    ``seed * 1000 + i``, so another network of the same shapes gets the same draws."""
    return [filter_normalise(random_direction(model, seed * 1000 + i), model) for i in range(count)]


def grid(points: int, span: float = 1.0) -> np.ndarray:
    """``points`` evenly spaced coordinates from ``-span`` to ``span`` (an odd count puts one at 0)."""
    if points < 3:
        raise WhyError("a slice needs at least 3 points along each direction")
    return np.linspace(-span, span, int(points))


@dataclass(frozen=True)
class Slice:
    """The loss (and accuracy) of one network around its weights w: at ``w + a d1`` for each ``a`` of ``alphas``
    (a 1-D slice; ``loss`` (n_a,)), or at ``w + a d1 + b d2`` (2-D; ``loss`` (n_b, n_a): row ``j`` is ``betas[j]``).
    ``images`` training images per evaluation; ``evaluations`` computed now (a refined slice reuses the points it
    shares with a coarser one), in ``seconds``."""

    name: str
    alphas: np.ndarray
    betas: np.ndarray | None
    loss: np.ndarray
    accuracy: np.ndarray
    images: int
    evaluations: int
    seconds: float

    @property
    def centre_loss(self) -> float:
        """The loss at the trained weights (the grid's centre; the closest point when 0 is not on the grid)."""
        i = int(np.abs(self.alphas).argmin())
        if self.betas is None:
            return float(self.loss[i])
        return float(self.loss[int(np.abs(self.betas).argmin()), i])

    def middle_row(self) -> Slice:
        """A 2-D slice's row through the trained weights (beta closest to 0): the 1-D slice along the first
        direction, with its points (no new evaluations)."""
        if self.betas is None:
            return self
        j = int(np.abs(self.betas).argmin())
        return Slice(self.name, self.alphas, None, self.loss[j], self.accuracy[j], self.images, 0, 0.0)

    def at(self, alpha: float, beta: float | None = None) -> tuple[float, float] | None:
        """(loss, accuracy) computed at (alpha, beta), or None when that point is not on this grid."""
        i = np.flatnonzero(np.isclose(self.alphas, alpha))
        if not len(i):
            return None
        if self.betas is None:
            return float(self.loss[i[0]]), float(self.accuracy[i[0]])
        j = np.flatnonzero(np.isclose(self.betas, 0.0 if beta is None else beta))
        return (float(self.loss[j[0], i[0]]), float(self.accuracy[j[0], i[0]])) if len(j) else None


def _moving(net: nn.Module, directions: Sequence[Direction]) -> list[tuple[Tensor, Tensor, list[Tensor]]]:
    """(parameter, its trained value, its direction(s)) for every parameter some direction moves."""
    params = dict(net.named_parameters())
    moving = []
    for name, p in params.items():
        ds = [d[name].to(p.device, p.dtype) for d in directions]
        if any(bool(d.any()) for d in ds):
            moving.append((p, p.detach().clone(), ds))
    return moving


def loss_slice(
    model: nn.Module,
    data: EvalSet,
    directions: Sequence[Direction],
    alphas: Sequence[float],
    betas: Sequence[float] | None = None,
    *,
    name: str = "",
    known: Slice | None = None,
    batch: int = 512,
    progress: Progress = quiet,
    device: torch.device | str | None = None,
) -> Slice:
    """The loss of ``model`` on ``data`` at ``w + a d1`` (one direction, ``betas`` None) or ``w + a d1 + b d2``
    (two directions) for every ``a`` in ``alphas`` and ``b`` in ``betas``.

    Works on a private copy in eval mode (the caller's model is never changed). ``known``: a slice of the same
    network, directions and data computed before (e.g. the 11 x 11 preview of a 21 x 21 grid): its points are
    reused, not computed again. ``progress`` hears after every evaluation.
    """
    if len(directions) != (1 if betas is None else 2):
        raise WhyError("a 1-D slice takes one direction, a 2-D slice two")
    a_values = np.asarray(alphas, dtype=np.float64)
    b_values = None if betas is None else np.asarray(betas, dtype=np.float64)
    shape = (len(a_values),) if b_values is None else (len(b_values), len(a_values))
    loss = np.full(shape, np.nan)
    accuracy = np.full(shape, np.nan)
    points = [(i, None) for i in range(len(a_values))] if b_values is None else [
        (i, j) for j in range(len(b_values)) for i in range(len(a_values))]
    reuse = known is not None and known.images == len(data) and (known.betas is None) == (b_values is None)
    todo = []
    for i, j in points:
        index = (i,) if j is None else (j, i)
        found = known.at(a_values[i], None if j is None else b_values[j]) if reuse else None  # type: ignore[union-attr,index]
        if found is None:
            todo.append((i, j))
        else:
            loss[index], accuracy[index] = found
    net = private_copy(model, device)
    moving = _moving(net, directions)
    start = time.perf_counter()
    with torch.no_grad():
        for done, (i, j) in enumerate(todo, 1):
            coords = (a_values[i],) if j is None else (a_values[i], b_values[j])  # type: ignore[index]
            for p, w, ds in moving:
                p.copy_(w)
                for c, d in zip(coords, ds, strict=True):
                    p.add_(d, alpha=float(c))
            index = (i,) if j is None else (j, i)
            loss[index], accuracy[index] = evaluate(net, data, batch=batch)
            progress(done / len(todo), f"{name}: {done} of {len(todo)} points")
    return Slice(name, a_values, b_values, loss, accuracy, len(data), len(todo), time.perf_counter() - start)


def interpolate(
    model: nn.Module,
    start: Mapping[str, Tensor],
    end: Mapping[str, Tensor],
    ts: Sequence[float],
    data: EvalSet,
    *,
    name: str = "",
    batch: int = 512,
    progress: Progress = quiet,
    device: torch.device | str | None = None,
) -> Slice:
    """The loss of ``model``'s architecture along the straight line ``(1 - t) start + t end`` between two state
    dicts of it, in eval mode, for each ``t`` of ``ts`` (Goodfellow et al. 2015's 1-D interpolation; Li et al.,
    section 3). Every weight follows the line, also past its ends; BatchNorm's running statistics are mixed the
    same way between t = 0 and 1 and stay at an end's beyond it. At t = 0 the network is ``start``, at t = 1
    ``end``. Returns a 1-D :class:`Slice` with ``alphas`` = ``ts``."""
    net = private_copy(model, device)
    state = net.state_dict()
    missing = [k for k in state if k not in start or k not in end]
    if missing:
        raise WhyError(f"the two weight sets do not fit this network (no {missing[0]!r})")
    ts_ = np.asarray(ts, dtype=np.float64)
    weights = {name for name, _ in net.named_parameters()}
    loss, accuracy = np.zeros(len(ts_)), np.zeros(len(ts_))
    begin = time.perf_counter()
    with torch.no_grad():
        for n, t in enumerate(ts_):
            mixed = {}
            for key, value in state.items():
                a, b = start[key].to(value.device), end[key].to(value.device)
                # weights follow the line past its ends; BatchNorm's running statistics stop at them (a variance
                # extrapolated below zero means nothing)
                w = float(t) if key in weights else min(max(float(t), 0.0), 1.0)
                mixed[key] = torch.lerp(a.float(), b.float(), w).to(value.dtype) if value.is_floating_point() \
                    else (a if w < 0.5 else b)
            net.load_state_dict(mixed)
            loss[n], accuracy[n] = evaluate(net, data, batch=batch)
            progress((n + 1) / len(ts_), f"{name}: {n + 1} of {len(ts_)} points")
    return Slice(name, ts_, None, loss, accuracy, len(data), len(ts_), time.perf_counter() - begin)


# --------------------------------------------------------------------------------------------------- convexity


@dataclass(frozen=True)
class Convexity:
    """How convex a slice is. At every interior grid point the Hessian of the slice (2 x 2, or the second
    derivative of a 1-D slice) is estimated by central differences; ``eigen_min`` / ``eigen_max`` are its
    eigenvalues ((n_b - 2, n_a - 2) arrays, or (n_a - 2,) for 1-D). ``convex_share``: the share of interior points
    where the slice is locally convex (the smallest eigenvalue is not negative); ``ratio``: Li et al.'s
    |lambda_min / lambda_max| at the points where lambda_min is negative (the non-convex points), its mean, 0 when there
    are none. Li et al. map |lambda_min / lambda_max| of the full Hessian; this is the same reading restricted to
    the slice, which is what the picture shows."""

    convex_share: float
    ratio: float
    eigen_min: np.ndarray
    eigen_max: np.ndarray

    @property
    def percent(self) -> str:
        return f"{100 * self.convex_share:.0f}%"


def convexity(loss: np.ndarray, step_a: float, step_b: float | None = None) -> Convexity:
    """:class:`Convexity` of a 2-D slice ``loss`` (n_b, n_a) on a grid of spacing ``step_a`` along the first
    direction and ``step_b`` (default the same) along the second."""
    f = np.asarray(loss, dtype=np.float64)
    if f.ndim == 1:
        return convexity_1d(f, step_a)
    if min(f.shape) < 3:
        raise WhyError("a 2-D slice needs at least 3 x 3 points to estimate its curvature")
    ha, hb = step_a, step_a if step_b is None else step_b
    c = f[1:-1, 1:-1]
    faa = (f[1:-1, 2:] - 2 * c + f[1:-1, :-2]) / ha**2
    fbb = (f[2:, 1:-1] - 2 * c + f[:-2, 1:-1]) / hb**2
    fab = (f[2:, 2:] - f[2:, :-2] - f[:-2, 2:] + f[:-2, :-2]) / (4 * ha * hb)
    mean, root = (faa + fbb) / 2, np.sqrt(((faa - fbb) / 2) ** 2 + fab**2)
    return _summary(mean - root, mean + root)


def convexity_1d(loss: np.ndarray, step: float) -> Convexity:
    """:class:`Convexity` of a 1-D slice: the second difference at every interior point."""
    f = np.asarray(loss, dtype=np.float64)
    if f.ndim != 1 or len(f) < 3:
        raise WhyError("a 1-D slice needs at least 3 points to estimate its curvature")
    second = (f[2:] - 2 * f[1:-1] + f[:-2]) / step**2
    return _summary(second, second)


def _summary(low: np.ndarray, high: np.ndarray) -> Convexity:
    ok = np.isfinite(low) & np.isfinite(high)
    if not ok.any():
        raise WhyError("the slice has no finite loss to measure its curvature on")
    concave = ok & (low < 0)
    scale = np.maximum(np.abs(high), np.abs(low))
    ratio = float(np.mean(np.abs(low[concave]) / np.maximum(scale[concave], 1e-12))) if concave.any() else 0.0
    return Convexity(float((ok & (low >= 0)).sum() / ok.sum()), ratio, low, high)
