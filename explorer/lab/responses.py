"""The paper's Figure 7: the standard deviation of each 3x3 layer's response, plain vs residual.

He et al. (2016, section 4.2) measure "the outputs of each 3x3 layer, after BN and before other nonlinearity
(ReLU/addition)" of *trained* CIFAR nets: the residual functions' responses are generally smaller than the plain
net's, so the blocks stay close to the identity. :func:`layer_responses` makes that measurement on any model
(a freshly initialised twin or a raced one); :func:`pair_layer_responses` on the plain and residual twins of
one depth, freshly initialised from one seed; :func:`race_layer_responses` on a finished race's networks and on
the twins they started from, on the race's own test images.

Freshly initialised, BatchNorm still has its default running statistics (mean 0, variance 1), so in eval mode
(the paper's measurement) the response is the raw output of a random 3x3 conv; with batch statistics
(``batch_stats=True``) every response has a standard deviation of about gamma = 1 by construction.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import pandas as pd
import torch
from torch import Tensor, nn

from explorer.lab.datasets import LabDataset
from explorer.lab.errors import LabError
from explorer.lab.gradients import random_batch
from explorer.lab.twins import NETS, cifar_depth, lab_model, model_name
from explorer.models import BasicBlock, Bottleneck, ResNet, residual_blocks
from explorer.shared import Hooks, model_lock

__all__ = ["AFTER_RACE", "AT_INIT", "initial_twin", "layer_responses", "pair_layer_responses", "race_layer_responses",
           "response_norms"]

AT_INIT, AFTER_RACE = "at initialisation", "after the race"


def response_norms(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The BatchNorm after every 3x3 conv of every residual block, in forward order, with its dotted name:
    ``bn1`` and ``bn2`` of a BasicBlock, ``bn2`` of a Bottleneck (its 1x1 convs are not 3x3 layers)."""
    norms = []
    for name, block in residual_blocks(model):
        if isinstance(block, BasicBlock):
            norms += [(f"{name}.bn1", block.bn1), (f"{name}.bn2", block.bn2)]
        elif isinstance(block, Bottleneck):
            norms.append((f"{name}.bn2", block.bn2))
    if not norms:
        raise LabError("This model has no residual blocks, so it has no 3x3 layers to measure.")
    return norms


def layer_responses(
    model: nn.Module,
    x: Tensor | None = None,
    *,
    batch: int = 16,
    size: int = 32,
    seed: int = 0,
    batch_stats: bool = False,
) -> pd.DataFrame:
    """Standard deviation of each 3x3 layer's response (after BN, before ReLU or the addition), Fig. 7.

    Runs a private copy of ``model`` (made under its lock; the caller's model is never hooked or changed) on
    ``x`` (N, C, H, W) (default: a seeded standard-normal ``random_batch(batch, size)``), in eval mode (BN uses its
    running statistics, as the paper measures trained nets) or, with ``batch_stats``, in train mode.

    Returns:
        One row per 3x3 layer in forward order: ``layer`` (1-based), ``name`` (its BN, e.g. ``"layer1.0.bn2"``),
        ``std`` (over the batch, channels and pixels of the response) and ``sorted_std`` (the same values sorted
        in descending order, the paper's bottom panel).
    """
    with model_lock(model):
        net = copy.deepcopy(model).cpu()
    net.train(batch_stats)
    norms = response_norms(net)
    if x is None:
        channels = next(m for m in net.modules() if isinstance(m, nn.Conv2d)).in_channels
        x = random_batch(batch, size, 1, seed=seed, channels=channels)[0]
    seen: dict[str, float] = {}

    def keep(name: str):
        def hook(_module: nn.Module, _args: tuple, output: Tensor) -> None:
            seen[name] = float(output.detach().float().std())

        return hook

    with Hooks() as hooks, torch.no_grad():
        for name, norm in norms:
            hooks.forward(norm, keep(name))
        net(x.cpu())
    names = [name for name, _ in norms]
    stds = [seen[name] for name in names]
    return pd.DataFrame({"layer": range(1, len(names) + 1), "name": names, "std": stds,
                         "sorted_std": sorted(stds, reverse=True)})


def pair_layer_responses(
    spec: int | str, *, batch: int = 16, size: int = 32, seed: int = 0, batch_stats: bool = False
) -> pd.DataFrame:
    """:func:`layer_responses` of the freshly initialised plain and residual twins of ``spec`` on one seeded
    batch, with a ``net`` column ("plain" | "residual") and ``model`` (e.g. "plain-20", "ResNet-20")."""
    frames = []
    for net in NETS:
        plain = net == "plain"
        frame = layer_responses(lab_model(spec, plain=plain, seed=seed), batch=batch, size=size, seed=seed,
                                batch_stats=batch_stats)
        frames.append(frame.assign(net=net, model=model_name(spec, plain)))
    return pd.concat(frames, ignore_index=True)


def initial_twin(model: ResNet, seed: int) -> ResNet:
    """A fresh copy of the lab twin a raced CIFAR ``model`` started from: :func:`lab.race_models`'s recipe (its
    depth, plain or not, its classes, option A shortcuts) drawn from the race's ``seed``."""
    with model_lock(model):
        depth, plain, classes = cifar_depth(model), model.plain, model.num_classes
    return lab_model(depth, plain=plain, num_classes=classes, seed=seed)


def race_layer_responses(
    models: Mapping[str, ResNet], data: LabDataset, *, seed: int, images: int = 64
) -> pd.DataFrame:
    """Fig. 7 of a race: :func:`layer_responses` (eval mode) of every raced model and of its :func:`initial_twin`
    on one fixed batch, the first ``images`` test images of ``data`` (N, 3, size, size), normalised as trained.

    The raced models are only read (each is copied under its lock). Returns the rows of :func:`layer_responses`
    with ``model`` (the race's name), ``net`` ("plain" | "residual") and ``when`` (:data:`AT_INIT` |
    :data:`AFTER_RACE`).
    """
    x = data.x_test[:images]
    frames = []
    for name, model in models.items():
        net = "plain" if model.plain else "residual"
        for when, measured in ((AT_INIT, initial_twin(model, seed)), (AFTER_RACE, model)):
            frames.append(layer_responses(measured, x).assign(model=name, net=net, when=when))
    return pd.concat(frames, ignore_index=True)
