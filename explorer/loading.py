"""One way to turn a model choice into a ready, shared model, for the app (``explorer.ui.cached``) and for every
backend replica (``explorer.backend.loading``): the same network, weights, label and classes in both.

* random weights are seeded, so "random weights" are the same everywhere: in this process and in every replica;
* ImageNet weights load only for torchvision's configuration, and a failure falls back to random weights with
  the reason as ``problem``;
* a user's checkpoint builds the network it holds (:func:`explorer.weights.model_from_checkpoint`: its own
  architecture, depth and classes, whatever the sidebar's arch), named by :func:`checkpoint_label`.

No Streamlit here; the app caches these per choice, a backend in its LRU.
"""

from __future__ import annotations

from dataclasses import dataclass

from explorer import weights
from explorer.checkpoints import LoadReport
from explorer.errors import ExplorerError
from explorer.models import ResNet, build
from explorer.shared import prepare, seeded

__all__ = ["RANDOM_LABEL", "Loaded", "checkpoint_label", "random_net", "standard"]

RANDOM_LABEL = "random weights — untrained"


@dataclass(frozen=True)
class Loaded:
    """A loaded, shared, eval-mode model and what its weights are. ``model`` is shared: never mutate it."""

    model: ResNet
    pretrained: bool
    label: str
    categories: list[str] | None
    problem: str | None = None  # why the requested weights could not be used (the model is then random)


def random_net(arch: str, *, variant: str = "v1.5", shortcut: str = "B", plain: bool = False) -> ResNet:
    """The network with the seeded "random weights" everybody sees (seed 0), in train mode as built."""
    with seeded(0):
        return build(arch, variant=variant, shortcut=shortcut, plain=plain)


def standard(arch: str, *, variant: str = "v1.5", shortcut: str = "B", plain: bool = False,
             pretrained: bool = False, title: str = "this model") -> Loaded:
    """``arch`` with ImageNet weights when ``pretrained`` and torchvision has them for this configuration,
    else with random weights (``problem`` says why, when they were asked for); ``title`` names the model in
    that sentence."""
    net = random_net(arch, variant=variant, shortcut=shortcut, plain=plain)
    problem = None
    if pretrained:
        if not weights.pretrained_supported(variant=variant, shortcut=shortcut, plain=plain):
            problem = (f"ImageNet weights exist only for torchvision's configuration (v1.5, option B, with "
                       f"shortcuts); {title} uses random weights.")
        else:
            try:
                info = weights.load_pretrained(net, arch)
                return Loaded(prepare(net), True, info.label, list(info.categories))
            except ExplorerError as err:  # the weights half-loaded, or not at all: start again from random
                problem = str(err)
                net = random_net(arch, variant=variant, shortcut=shortcut, plain=plain)
    return Loaded(prepare(net), False, RANDOM_LABEL, weights.imagenet_categories(), problem)


def checkpoint_label(name: str, report: LoadReport) -> str:
    """What a user's checkpoint is, for the weights line: ``"your checkpoint (cifar.pth: ResNet-20 (CIFAR))"``."""
    return f"your checkpoint ({name}: {report.inferred})"
