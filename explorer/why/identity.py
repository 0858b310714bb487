"""Identity mappings (He et al. 2016b, "Identity Mappings in Deep Residual Networks"): the original block against
the pre-activation block, measured block by block at initialisation.

In the original block ``x_{l+1} = relu(x_l + F(x_l))``, a ReLU follows every addition. The pre-activation block
moves BN and ReLU before the convolutions, ``x_{l+1} = x_l + F(x_l)``, so the shortcut is a clean identity from
any block to any later one: ``x_L = x_l + sum_i F(x_i)``, and the gradient ``dL/dx_l = dL/dx_L (1 + d/dx_l sum_i
F(x_i))`` holds a term that reaches every block directly, unscaled by any weight (their eqs. 4-5).

:func:`signal_and_gradient` measures, for one fresh network of either form, at every block boundary: the norm of
the signal going forward and of the loss's gradient coming back (one forward and backward pass of a seeded batch in
train mode, BatchNorm on the batch's statistics as at the first step of training), and the share of each sum the
shortcut carries. What it shows: how the norms change through the stack at initialisation. What it does not show:
He et al.'s argument is about the additive form of propagation, not constant norms; both forms' norms change with
depth, and with BatchNorm neither vanishes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from explorer.activations import StreamRecorder
from explorer.family import cifar_spec
from explorer.lab.gradients import random_batch
from explorer.models import ResNet, build, residual_blocks
from explorer.shared import Hooks, seeded
from explorer.why.base import Progress, WhyError, quiet

__all__ = ["FORMS", "IDENTITY_DEPTHS", "LAYOUTS", "first_last", "identity_net", "identity_pair",
           "signal_and_gradient", "signal_growth"]

FORMS: tuple[str, str] = ("original", "pre-activation")
LAYOUTS: tuple[str, str] = ("CIFAR: three stages of 16, 32 and 64 channels", "one stage of 16 channels")
IDENTITY_DEPTHS: tuple[int, ...] = (20, 32, 44, 56, 110, 164)
"""6n + 2 layers of basic blocks: 9 to 81 blocks. (He et al.'s ResNet-164 is made of bottlenecks; here every depth
is made of the same basic blocks, so only the depth changes.)"""


def identity_net(depth: int, *, preact: bool, layout: str = LAYOUTS[0], seed: int = 0) -> ResNet:
    """A fresh CIFAR net of ``depth`` = 6n + 2 layers in the original or pre-activation form, drawn from ``seed``
    (the two forms draw their convolutions in the same order), in train mode. ``layout``: the paper's three
    stages, or all 3n blocks in one stage of 16 channels (so that no change of width or resolution interrupts
    the stack)."""
    if layout not in LAYOUTS:
        raise WhyError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
    try:
        spec = cifar_spec(depth, preact=preact, head="fc")
    except ValueError as err:
        raise WhyError(str(err)) from None
    if layout == LAYOUTS[1]:
        spec = spec.with_knobs(layers=(sum(spec.layers),), widths=(spec.widths[0],))
    with seeded(seed):
        return build(spec)


def signal_and_gradient(
    depth: int, *, preact: bool, layout: str = LAYOUTS[0], batch: int = 16, size: int = 32, seed: int = 0,
    device: torch.device | str | None = None,
) -> pd.DataFrame:
    """One forward and backward pass of a seeded batch of standard-normal images with random labels through a fresh
    net (:func:`identity_net`) in train mode.

    Returns one row per block boundary, ``position`` 0 (the first block's input) to n (the last block's output):
    ``block`` (the block whose input it is, or "output"), ``signal`` (mean over the images of ||x||),
    ``gradient`` (mean over the images of ||dL/dx||, L the batch's summed cross-entropy) and, for positions 1..n,
    ``shortcut_share`` = ||shortcut(x)||^2 / (||shortcut(x)||^2 + ||F(x)||^2) of the block that ends there.
    """
    dev = torch.device(device or "cpu")
    net = identity_net(depth, preact=preact, layout=layout, seed=seed).to(dev).train()
    blocks = residual_blocks(net)
    x, y = random_batch(batch, size, net.num_classes, seed=seed)
    seen: list[Tensor] = []

    def keep(t: Tensor) -> None:
        t.retain_grad()  # a non-leaf keeps its gradient after backward: dL/dx at this boundary
        seen.append(t)

    recorder = StreamRecorder(blocks)  # the stream's norms, read on the same forward
    with Hooks() as hooks:
        recorder.register(hooks)
        for _, block in blocks:
            hooks.pre(block, lambda _m, args: keep(args[0]))
        hooks.forward(blocks[-1][1], lambda _m, _args, out: keep(out))
        loss = F.cross_entropy(net(x.to(dev)), y.to(dev), reduction="sum")
        loss.backward()
    grads = [t.grad for t in seen]
    stream = {r.name: r for r in recorder.rows()}
    rows = []
    names = [n for n, _ in blocks]
    for position, (leaf, grad) in enumerate(zip(seen, grads, strict=True)):
        row = dict(position=position, block=names[position] if position < len(names) else "output",
                   signal=float(leaf.detach().flatten(1).norm(dim=1).mean()),
                   gradient=float(grad.flatten(1).norm(dim=1).mean()), shortcut_share=float("nan"))
        if position:
            s = stream[names[position - 1]]
            row["shortcut_share"] = s.shortcut_norm**2 / max(s.shortcut_norm**2 + s.residual_norm**2, 1e-30)
        rows.append(row)
    return pd.DataFrame(rows)


def identity_pair(
    depth: int, *, layout: str = LAYOUTS[0], batch: int = 16, size: int = 32, seed: int = 0,
    progress: Progress = quiet, device: torch.device | str | None = None,
) -> pd.DataFrame:
    """:func:`signal_and_gradient` of both forms of ``depth`` on the same batch, with a ``form`` column
    (:data:`FORMS`) and ``depth``."""
    frames = []
    for i, form in enumerate(FORMS):
        frame = signal_and_gradient(depth, preact=form == FORMS[1], layout=layout, batch=batch, size=size,
                                    seed=seed, device=device)
        frames.append(frame.assign(form=form, depth=depth))
        progress((i + 1) / len(FORMS), f"{form} form, depth {depth}")
    return pd.concat(frames, ignore_index=True)


def first_last(frame: pd.DataFrame, *, scale_free: bool = False) -> dict[str, float]:
    """Per form of an :func:`identity_pair` frame: the gradient at the first block's input over the gradient at
    the last block's output (above 1: the gradient grows on its way back to the input).

    ``scale_free``: the same ratio of ``signal`` × ``gradient``. BatchNorm after the stream makes the loss blind to
    the stream's scale, so a gradient's norm falls as the signal's rises; the product takes that out, leaving what
    the blocks do to the gradient beyond rescaling it."""
    out = {}
    for form, rows in frame.groupby("form", sort=False):
        rows = rows.sort_values("position")
        values = rows["gradient"].to_numpy(dtype=np.float64)
        if scale_free:
            values = values * rows["signal"].to_numpy(dtype=np.float64)
        out[str(form)] = float(values[0] / values[-1])
    return out


def signal_growth(frame: pd.DataFrame) -> dict[str, float]:
    """Per form of an :func:`identity_pair` frame: the signal's norm at the last block's output over its norm at
    the first block's input."""
    out = {}
    for form, rows in frame.groupby("form", sort=False):
        signal = rows.sort_values("position")["signal"].to_numpy(dtype=np.float64)
        out[str(form)] = float(signal[-1] / signal[0])
    return out
