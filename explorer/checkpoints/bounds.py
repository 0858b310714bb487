"""Bounds on the network a checkpoint describes, checked on its weightless (``meta``) skeleton before any weight
is loaded or widened: a file of a few megabytes can describe a network whose classes, widths or depth no class
demo needs and whose first forward would take the server down.

* classes: at most :data:`MAX_CLASSES` (ImageNet-21k has 21,843);
* parameters: at most :data:`MAX_PARAMETERS` (the largest torchvision ResNet, Wide ResNet-101-2, has 127 million);
* the widest layer: at most :data:`MAX_CHANNELS` output channels (torchvision's widest give 2,048);
* residual blocks: at most :data:`MAX_BLOCKS` (the paper's CIFAR ResNet-1202 has 600).

The first forward's memory at the chosen input size is checked where it runs (:func:`explorer.budget.check_forward`).
"""

from __future__ import annotations

from torch import nn

from explorer.checkpoints.reading import WeightsError

__all__ = ["MAX_BLOCKS", "MAX_CHANNELS", "MAX_CLASSES", "MAX_PARAMETERS", "check_bounds"]

MAX_CLASSES = 100_000
MAX_PARAMETERS = 300_000_000
MAX_CHANNELS = 8_192
MAX_BLOCKS = 1_000


def check_bounds(skeleton: nn.Module, name: str, num_classes: int, blocks: int) -> None:
    """Refuse a network past the bounds above. ``skeleton`` is the network on the ``meta`` device (its shapes, no
    memory); ``name`` is what it looks like, for the message.

    Raises:
        WeightsError: one sentence naming what is out of bounds, by how much, and the bound.
    """
    parameters = sum(p.numel() for p in skeleton.parameters())
    widest = max((m.out_channels for m in skeleton.modules() if isinstance(m, nn.Conv2d)), default=0)
    for what, value, bound in (
        ("classes", num_classes, MAX_CLASSES),
        ("parameters", parameters, MAX_PARAMETERS),
        ("channels in its widest layer", widest, MAX_CHANNELS),
        ("residual blocks", blocks, MAX_BLOCKS),
    ):
        if value > bound:
            raise WeightsError(
                f"This checkpoint describes a network ({name}) with {value:,} {what}; this explorer opens networks "
                f"with at most {bound:,}, so it was not built."
            )
