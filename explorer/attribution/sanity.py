"""The model-randomisation sanity check of Adebayo et al. 2018: re-initialise a network from the top down and
see whether a method's map changes (:func:`randomised_copy`, :func:`cascade_layers`, :func:`rank_similarity`)."""

from __future__ import annotations

import copy

import numpy as np
from torch import nn

from explorer.attribution.errors import AttributionError
from explorer.shared import exclusive, private, seeded

__all__ = ["cascade_layers", "randomised_copy", "rank_similarity", "sanity_pair"]


def _groups(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """Layer groups of the cascade, top first, each with the dotted modules it re-initialises:
    the classifier, the stages from the last down, then the stem (its conv, BN, ReLU and pool)."""
    infos = tuple(getattr(model, "feature_info", ()))
    if not infos:
        raise AttributionError("The sanity check needs a ResNet of explorer.models (one that describes its stem, "
                               "stages and classifier).")
    stem, stages = infos[0], infos[1:]
    groups: dict[str, tuple[str, ...]] = {model.classifier: (model.classifier,)}
    groups.update({info.name: (info.name,) for info in reversed(stages)})
    groups[stem.name] = tuple(model.stem_modules)
    return groups


def cascade_layers(model: nn.Module) -> list[str]:
    """Layer groups re-initialised by the cascading randomisation, top first: ``fc``, ``layer4``, .., ``stem``."""
    return list(_groups(model))


def _reinit(module: nn.Module) -> None:
    """Fresh random weights as at construction: He init for convs, identity BN, PyTorch's default for linears."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()  # weight 1, bias 0, running mean 0, running var 1
        elif isinstance(m, nn.Linear):
            m.reset_parameters()


def randomised_copy(model: nn.Module, from_layer: str, *, seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` (eval mode) with every layer group from the top down to ``from_layer``
    re-initialised, seeded by ``seed`` (the global RNG is left as it was).

    ``from_layer="fc"`` randomises only the classifier; ``"layer3"`` randomises fc, layer4 and layer3; ``"stem"``
    everything. The original is untouched: it is copied under its lock, so no other session's hooks come along.
    """
    groups = _groups(model)
    order = list(groups)
    if from_layer not in order:
        raise AttributionError(f"Cannot randomise from {from_layer!r}; choose one of: {', '.join(order)}.")
    with exclusive(model) as hooks:
        twin = copy.deepcopy(hooks.net)
    with seeded(seed):
        for name in order[: order.index(from_layer) + 1]:
            for module in groups[name]:
                _reinit(twin.get_submodule(module))
    return private(twin.eval())  # nobody else sees it: attributions run on it directly


def rank_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps of the same shape (1: same ranking of pixels; ~0: unrelated).

    ``nan`` when either map is constant (no ranking to compare).
    """
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise AttributionError(f"Maps of different sizes cannot be compared: {a.size} and {b.size} pixels.")
    from scipy.stats import rankdata  # noqa: PLC0415 - scipy.stats loads with the first comparison, not the app

    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def sanity_pair(model: nn.Module, x, target: int, method: str, from_layer: str, *, device=None, fast=None):
    """The check itself: ``method``'s map of class ``target`` on ``x`` (1, 3, H, W) from ``model`` and from its
    copy re-initialised from the top down to ``from_layer`` -> ``(original, randomised)`` Attributions, both in the
    precision the policy picks for the method (``fast`` as for ``attribute``: False forces fp32)."""
    from explorer.attribution.core import attribute  # noqa: PLC0415 - core imports this module's neighbours

    twin = randomised_copy(model, from_layer)
    return (attribute(model, x, target, method, device=device, fast=fast),
            attribute(twin, x, target, method, device=device, fast=fast))
