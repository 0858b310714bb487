"""Gradients at initialisation: gradient flow per layer and the shattered-gradients measure, over depth too.

* **Gradient flow** (:func:`gradient_flow`): one forward/backward pass of a batch in train mode (BatchNorm
  uses batch statistics, as at the first step of training) and the gradient norm of every conv/fc weight.
  He et al. (2016, section 4.1) note that with BatchNorm the plain nets' gradients do *not* vanish; this
  measures what really happens.
* **Shattered gradients** (:func:`gradient_correlation`), after Balduzzi et al. 2017, "The Shattered
  Gradients Problem: If resnets are the answer, then what is the question?": how correlated the input
  gradients of nearby inputs are. It decays exponentially with depth in plain nets, sublinearly in resnets.

Both work on a private copy of the model made under its lock, so they are safe on a shared model too, and both
stay within the memory budget (:mod:`explorer.budget`): the correlation's gradients go in batches that fit (exact:
in eval mode each point's output depends on its own input only), and a batch or a line that cannot fit is refused
with the largest that does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from explorer import budget
from explorer.lab.errors import LabError
from explorer.lab.twins import NETS, lab_model, model_name, weight_layers
from explorer.models import CIFAR_DEPTHS
from explorer.shared import private_copy

__all__ = [
    "GradientCorrelation",
    "depth_sweep",
    "first_last_ratio",
    "gradient_correlation",
    "gradient_flow",
    "pair_gradient_correlation",
    "pair_gradient_flow",
    "random_batch",
]


def random_batch(batch: int, size: int, num_classes: int, *, seed: int = 0, channels: int = 3) -> tuple[Tensor, Tensor]:
    """A seeded batch of standard-normal images (N, C, size, size) and uniform labels (N,) int64."""
    if batch < 1 or size < 1 or num_classes < 1:
        raise LabError("the batch, image size and number of classes must all be at least 1")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, size, size, generator=g)
    y = torch.randint(0, num_classes, (batch,), generator=g)
    return x, y


def _fit(model: nn.Module, size: int, images: int, *, what: str, setting: str | None = None,
         adjustable: bool = False, backward: bool = True) -> budget.Fit:
    """The images one pass of ``model`` at ``size`` px may take at once under the memory budget (``backward``: a
    forward kept for a backward), with the bytes of the private copy the measure trains or calibrates.

    Raises:
        LabError: when ``images`` cannot fit and cannot be split (``setting`` names what to lower).
    """
    copy_bytes = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers())) * 2  # + grads
    try:
        return budget.fit(budget.image_bytes(model, size, backward=backward), images, what=what, size=size,
                          setting=setting, adjustable=adjustable, held=copy_bytes,
                          fixed=budget.call_overhead(model, backward=backward))
    except budget.BudgetError as err:
        raise LabError(str(err)) from None


def _num_outputs(model: nn.Module) -> int:
    linears = [m for _, m in weight_layers(model) if isinstance(m, nn.Linear)]
    if not linears:
        raise LabError("the model has no fully connected output layer, so pass the labels y explicitly")
    return linears[-1].out_features


def gradient_flow(
    model: nn.Module,
    x: Tensor | None = None,
    y: Tensor | None = None,
    *,
    seed: int = 0,
    batch: int = 8,
    size: int = 32,
    device: torch.device | str | None = None,
) -> pd.DataFrame:
    """Gradient norm of every conv/fc weight after one forward/backward pass of a batch.

    Works on a private deep copy of ``model`` in train mode (BatchNorm normalises with the batch's own
    statistics, as at the first step of training), so the caller's model, its running statistics and its
    ``.grad`` fields are untouched. The loss is the mean cross-entropy of the batch.

    Args:
        x: (N, C, H, W) inputs; when omitted, ``random_batch(batch, size, classes, seed=seed)``.
        y: (N,) int64 labels; required with ``x``.

    Returns:
        One row per weight layer in forward order with columns ``index`` (0-based position), ``name``,
        ``kind`` ("conv" | "fc"), ``path`` ("main" | "shortcut": a projection on the shortcut),
        ``depth`` (1-based count of main-path weight layers so far, the paper's layer numbering; a
        projection gets the depth of the block it bypasses), ``grad_norm`` (Frobenius norm of dL/dW),
        ``weight_norm`` and ``relative`` (grad_norm / weight_norm). ``frame.attrs["loss"]`` is the loss.
    """
    if x is None:
        x, y = random_batch(batch, size, _num_outputs(model), seed=seed)
    elif y is None or y.shape[0] != x.shape[0]:
        raise LabError("gradient_flow needs one label per input image")
    device = torch.device(device or "cpu")
    fitted = _fit(model, x.shape[-1], x.shape[0], what="The gradient flow", setting="the batch of random images")
    with budget.LEDGER.reserve(fitted.bytes):
        net = private_copy(model, device).train()
        net.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x.to(device)), y.to(device))  # one batch: BatchNorm's statistics are the batch's
        loss.backward()
    rows, depth = [], 0
    for index, (name, layer) in enumerate(weight_layers(net)):
        path = "shortcut" if "downsample" in name.split(".") else "main"
        depth += path == "main"
        grad = layer.weight.grad
        grad_norm = 0.0 if grad is None else float(grad.detach().norm().cpu())
        weight_norm = float(layer.weight.detach().norm().cpu())
        rows.append(
            dict(
                index=index,
                name=name,
                kind="fc" if isinstance(layer, nn.Linear) else "conv",
                path=path,
                depth=depth,
                grad_norm=grad_norm,
                weight_norm=weight_norm,
                relative=grad_norm / weight_norm if weight_norm else float("nan"),
            )
        )
    frame = pd.DataFrame(rows)
    frame.attrs["loss"] = float(loss.detach().cpu())
    return frame


def pair_gradient_flow(spec: int | str, *, batch: int = 8, size: int = 32, seed: int = 0) -> pd.DataFrame:
    """:func:`gradient_flow` of the plain and residual twins of ``spec`` on the same seeded batch.

    Returns the rows of both, with a ``net`` column ("plain" | "residual") and ``model`` (e.g. "ResNet-20").
    """
    frames = []
    for net in NETS:
        plain = net == "plain"
        frame = gradient_flow(lab_model(spec, plain=plain, seed=seed), seed=seed, batch=batch, size=size)
        frames.append(frame.assign(net=net, model=model_name(spec, plain)))
    return pd.concat(frames, ignore_index=True)


def first_last_ratio(flow: pd.DataFrame) -> dict[str, tuple[str, float]]:
    """Per net of a :func:`pair_gradient_flow` frame: (model name, first conv's gradient norm / last conv's).

    Main-path convs only (a projection or the fc is not a conv of the main path)."""
    ratios = {}
    for net in NETS:
        convs = flow[(flow.net == net) & (flow.path == "main") & (flow.kind == "conv")]
        ratios[net] = (str(convs.model.iloc[0]), float(convs.grad_norm.iloc[0] / convs.grad_norm.iloc[-1]))
    return ratios


@dataclass(frozen=True)
class GradientCorrelation:
    """Input gradients along a line of inputs ``x(t) = t * v`` and how correlated they are.

    ``n`` points; all arrays are float64 on the CPU.
    """

    t: np.ndarray  # (n,) positions on the line, evenly spaced in [-2, 2)
    direction: np.ndarray  # (C, size, size) the line's direction v
    directional: np.ndarray  # (n,) df/dt = <grad_x f(x(t)), v>: the paper's dy/dx for a 1-D input
    by_lag: np.ndarray  # (n,) mean cosine similarity of input gradients k steps apart; by_lag[0] == 1
    distance: np.ndarray  # (n,) input-space distance of k steps: k * step
    neighbour: float  # by_lag[1]: the correlation of neighbouring points' gradients, the summary number
    step: float  # distance between neighbouring points, |v| * 4 / n


def _calibrate_batchnorm(model: nn.Module, x: Tensor) -> None:
    """Set every BatchNorm's running statistics to those of batch ``x`` (in place), then switch to eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
    if norms:
        model.train()
        with torch.no_grad():
            model(x)
    model.eval()


def gradient_correlation(
    model: nn.Module,
    *,
    n: int = 64,
    size: int = 32,
    seed: int = 0,
    channels: int = 3,
    batchnorm: str = "line",
    device: torch.device | str | None = None,
) -> GradientCorrelation:
    """The shattered-gradients measure of Balduzzi et al. 2017, adapted from a 1-D input to images.

    The paper feeds a fully connected net a 1-D input on an even grid of 256 points in [-2, 2] and studies
    the gradient dy/dx of the scalar output: it is smooth for shallow nets and for resnets, and looks like
    white noise for deep plain nets (its opening figures: the autocorrelation of the gradient falls to zero).
    Here the input is an image, so exactly this is computed:

    1. a seeded random direction ``v`` (C, size, size) with standard-normal pixels and ``n`` evenly spaced
       ``t`` in [-2, 2) (the paper's range; neighbours are ``|v| * 4 / n`` apart): inputs ``x(t) = t * v``;
    2. a scalar output ``f = <u, logits>`` with ``u`` a seeded random unit vector (``u = 1`` for one output);
    3. the full input gradient ``g(t) = grad_x f(x(t))`` (C*size*size values) for every point, and the
       1-D directional derivative ``df/dt = <g(t), v>`` (the paper's dy/dx along the line);
    4. ``by_lag[k]``: the mean over i of the cosine similarity ``<g_i, g_i+k> / (|g_i| |g_i+k|)``. ``by_lag[1]``
       (``neighbour``) is the correlation between the gradients of neighbouring inputs. It is exactly 1
       for a linear model (its gradient is the same everywhere) and near 0 for shattered gradients.
       The cosine of the full gradient vectors is used rather than a centred autocorrelation of the scalar
       df/dt: with C*size*size dimensions per gradient it is a far less noisy estimate, and it stays defined
       for a constant gradient. A zero gradient counts as correlation 0.

    BatchNorm (``batchnorm="line"``): the running statistics of a private copy are set to the statistics of
    the ``n`` inputs, then the copy runs in eval mode, so each ``f(x(t))`` is a function of its own input
    only (no cross-talk through batch statistics) yet normalised as at the start of training.
    ``batchnorm="model"`` keeps the model's own running statistics (e.g. for a trained model).
    The caller's model is never modified.
    """
    if n < 3:
        raise LabError("the line needs at least 3 points to compare neighbours")
    if batchnorm not in ("line", "model"):
        raise LabError(f"unknown BatchNorm mode {batchnorm!r}; choose 'line' or 'model'")
    device = torch.device(device or "cpu")
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(channels, size, size, generator=g)
    t = torch.arange(n, dtype=torch.float32) * (4.0 / n) - 2.0
    x = (t[:, None, None, None] * v).to(device)
    fitted = _fit(model, size, n, what="The gradient correlation", adjustable=True)
    reserve = fitted.bytes
    if batchnorm == "line":  # the statistics of the whole line come from one forward of all its points
        reserve = max(reserve, _fit(model, size, n, what="The line's BatchNorm statistics",
                                    setting="the points on the line", backward=False).bytes)
    with budget.LEDGER.reserve(reserve):
        net = private_copy(model, device)
        if batchnorm == "line":
            _calibrate_batchnorm(net, x)
        net.eval()
        parts, u = [], None
        for chunk in x.split(fitted.images):  # in eval mode each f(x(t)) depends on its own input only: chunks
            chunk = chunk.detach().requires_grad_(True)  # give the gradients of one batch, within the budget
            logits = net(chunk)
            if u is None:  # drawn after v, from the same generator
                u = torch.randn(logits.shape[1], generator=g) if logits.shape[1] > 1 else torch.ones(1)
                u = (u / u.norm()).to(device)
            (grad,) = torch.autograd.grad((logits @ u).sum(), chunk)
            parts.append(grad.detach())
    flat = torch.cat(parts).flatten(1).double().cpu()
    unit = F.normalize(flat, dim=1)
    gram = unit @ unit.T
    by_lag = np.array([float(torch.diagonal(gram, k).mean()) for k in range(n)])
    step = float(v.norm()) * 4.0 / n
    return GradientCorrelation(
        t=t.double().numpy(),
        direction=v.double().numpy(),
        directional=(flat @ v.flatten().double()).numpy(),
        by_lag=by_lag,
        distance=np.arange(n) * step,
        neighbour=float(by_lag[1]),
        step=step,
    )


def pair_gradient_correlation(
    spec: int | str, *, n: int = 64, size: int = 32, seed: int = 0
) -> dict[str, GradientCorrelation]:
    """:func:`gradient_correlation` of the plain and residual twins of ``spec``, keyed by model name
    (plain first, e.g. ``{"plain-20": ..., "ResNet-20": ...}``)."""
    twins = {model_name(spec, plain): lab_model(spec, plain=plain, seed=seed) for plain in (True, False)}
    return {name: gradient_correlation(model, n=n, size=size, seed=seed) for name, model in twins.items()}


def depth_sweep(
    depths: Sequence[int] = CIFAR_DEPTHS,
    *,
    batch: int = 8,
    n: int = 64,
    size: int = 32,
    seed: int = 0,
    on_progress: Callable[[float, str], None] | None = None,
) -> pd.DataFrame:
    """Gradient flow and gradient correlation of plain vs residual CIFAR nets over ``depths``.

    Each depth builds the twins from ``seed`` (identical weights, see :func:`lab_model`). ``on_progress``
    is called with (fraction done, label) after each network.

    Returns:
        A tidy frame, one row per (depth, net): ``depth``, ``net``, ``model``, ``grad_first`` (stem conv),
        ``grad_last`` (last main-path conv), ``grad_median`` (over main-path convs), ``grad_spread``
        (decades between the largest and smallest main-path conv gradient: log10(max / min)),
        ``correlation`` (:attr:`GradientCorrelation.neighbour`) and ``loss``.
    """
    rows = []
    total = 2 * len(depths)
    for depth in depths:
        for net in NETS:
            plain = net == "plain"
            model = lab_model(depth, plain=plain, seed=seed)
            flow = gradient_flow(model, seed=seed, batch=batch, size=size)
            convs = flow[(flow.kind == "conv") & (flow.path == "main")].grad_norm
            corr = gradient_correlation(model, n=n, size=size, seed=seed)
            rows.append(
                dict(
                    depth=depth,
                    net=net,
                    model=model_name(depth, plain),
                    grad_first=float(convs.iloc[0]),
                    grad_last=float(convs.iloc[-1]),
                    grad_median=float(convs.median()),
                    grad_spread=float(np.log10(convs.max() / convs.min())),
                    correlation=corr.neighbour,
                    loss=flow.attrs["loss"],
                )
            )
            if on_progress is not None:
                on_progress(len(rows) / total, model_name(depth, plain))
    return pd.DataFrame(rows)
