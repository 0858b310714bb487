"""Top-k for several images in one forward pass (what a Ray Serve replica runs for a batch of students).

The same forward as :func:`explorer.predict.predict` (channels_last, bf16 autocast where native and where it pays
unless ``fast=False``, close calls settled in fp32, the model's lock held), on images stacked along the batch
axis. Images of different sizes, or some asking for fp32, are run as separate groups.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from explorer.device import device_label, fast_input, oom_advice, resolve_device, synchronize
from explorer.predict import InputError, Prediction, as_batch, settled_forward
from explorer.shared import exclusive

__all__ = ["predict_batch", "prediction_from_logits"]


def prediction_from_logits(
    logits: Tensor, *, categories: Sequence[str] | None, k: int, device: torch.device, seconds: float, fast: bool,
    rechecked: bool = False, note: str = "",
) -> Prediction:
    """The :class:`Prediction` of one image's (num_classes,) logits, as :func:`explorer.predict.predict` makes it."""
    logits = logits.float()
    probs = torch.softmax(logits, dim=0)
    top = torch.topk(probs, min(k, probs.numel()))
    indices = tuple(int(i) for i in top.indices)
    names = tuple(categories[i] if categories is not None and i < len(categories) else f"class {i}" for i in indices)
    return Prediction(
        indices=indices, names=names, probabilities=tuple(float(p) for p in top.values), device=device_label(device),
        seconds=seconds, fast=fast, rechecked=rechecked, note=note,
        logits=logits.detach().cpu().numpy().astype(np.float32),
    )


def predict_batch(
    model: nn.Module,
    images: Sequence[Tensor],
    *,
    categories: Sequence[str] | None = None,
    k: int | Sequence[int] = 5,
    fast: bool | None | Sequence[bool | None] = None,
    device: str | torch.device | None = None,
) -> list[Prediction]:
    """Top-``k`` of each image (each (1, 3, H, W)), in order; one forward per group of equal shape and precision.

    ``k`` and ``fast`` are one value for all or one per image. ``Prediction.seconds`` is its group's forward time.
    """
    n = len(images)
    ks = [k] * n if isinstance(k, int) else list(k)
    fasts = list(fast) if isinstance(fast, list | tuple) else [fast] * n
    if len(ks) != n or len(fasts) != n or any(not isinstance(x, int) or x < 1 for x in ks):
        raise InputError("Give one positive k (and one fast flag) for all images or one per image.")
    dev = resolve_device(device, model)
    xs = [as_batch(x, model) for x in images]
    groups: dict[tuple, list[int]] = {}
    for i, x in enumerate(xs):
        groups.setdefault((tuple(x.shape), fasts[i] is False), []).append(i)
    out: list[Prediction | None] = [None] * n
    for (_, fp32), members in groups.items():
        try:
            with exclusive(model, dev) as hooks:
                x = fast_input(torch.cat([xs[i] for i in members]), dev)
                start = time.perf_counter()
                settled = settled_forward(hooks.net, x, dev, False if fp32 else None, [ks[i] for i in members],
                                          model=model)
                synchronize(dev)
                seconds = time.perf_counter() - start
        except torch.OutOfMemoryError:
            raise oom_advice(dev) from None
        for row, i in enumerate(members):
            out[i] = prediction_from_logits(settled.logits[row], categories=categories, k=ks[i], device=dev,
                                            seconds=seconds, fast=settled.bf16, rechecked=row in settled.close,
                                            note=settled.note)
    return [p for p in out if p is not None]
