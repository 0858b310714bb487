"""The original block against the pre-activation block (He et al. 2016b, "Identity Mappings in Deep Residual
Networks"), measured: a random tensor through a stack of identical blocks of each form.

In the original form every block outputs ``ReLU(x + F(x))``: whatever the shortcut carries passes a ReLU at each
block, so the path along the shortcuts alone is an identity only where every one of those ReLUs let its input
through. In the pre-activation form a block outputs ``x + F(x)`` (BN and ReLU sit inside F, before each conv), so
``x_L = x_0 + F_0 + ... + F_{L-1}``: x_0 reaches every block unchanged.
"""

from __future__ import annotations

import pandas as pd
import torch

from explorer.blocks.common import BlockError
from explorer.blocks.compare import as_spec
from explorer.family import ArchSpec
from explorer.models import ResidualBlock, build
from explorer.shared import seeded

__all__ = ["FORMS", "MAX_STACK", "signal_through_stack", "stack"]

FORMS: dict[str, bool] = {"original": False, "pre-activation": True}
"""The two forms, by name: whether the block is in the pre-activation form."""
MAX_STACK = 64
"""The most blocks :func:`signal_through_stack` stacks."""


def stack(arch: str | ArchSpec, blocks: int, preact: bool) -> list[ResidualBlock]:
    """``blocks`` blocks of ``arch``'s first stage in one form, each keeping the shape (stride 1, identity
    shortcuts), initialised as the network initialises them (He init, BN to identity), in train mode."""
    spec = as_spec(arch)
    width = spec.widths[0]
    layout = spec.with_knobs(layers=(blocks + 1,), widths=(width,), preact=preact, plain=False, shortcut="B",
                             stem="cifar", in_channels=3)
    return list(build(layout).layer1)[1:]  # the first block of a bottleneck stage widens the channels: left out


def signal_through_stack(arch: str | ArchSpec, blocks: int = 16, *, size: int = 8, batch: int = 4,
                         seed: int = 0) -> pd.DataFrame:
    """A random (batch, C, size, size) tensor x_0 through a stack of ``blocks`` of ``arch``'s blocks (its first
    stage's width, C their channels) in each form of :data:`FORMS`, with the same x_0, each BN normalising with
    the batch's statistics as at the start of training. x_0 is a ReLU's output, as every block of the original form
    receives.

    One row per form and block l (0 = x_0): form, block, norm (||x_l|| / ||x_0||), correlation (Pearson's, of the
    values of x_l and x_0: how much x_l still looks like x_0), open (the % of positions where every ReLU after an
    addition so far let its input through: there, x_0 reaches x_l along the shortcuts alone with gain 1, elsewhere
    not at all). Seeded: the same arguments give the same numbers; the global RNG is untouched.
    """
    if isinstance(blocks, bool) or not isinstance(blocks, int) or not 1 <= blocks <= MAX_STACK:
        raise BlockError(f"A stack has 1 to {MAX_STACK} blocks; {blocks!r} is not in that range.")
    rows = []
    with seeded(seed):
        forms = {form: stack(arch, blocks, preact) for form, preact in FORMS.items()}
        channels = forms["original"][0].conv1.in_channels
        x0 = torch.relu(torch.randn(batch, channels, size, size))
    with torch.no_grad():
        for form, layers in forms.items():
            x, open_ = x0, torch.ones_like(x0, dtype=torch.bool)
            rows.append({"form": form, "block": 0, "norm": 1.0, "correlation": 1.0, "open": 100.0})
            for i, block in enumerate(layers, start=1):
                total = block.residual(x) + block.shortcut(x)
                x = block.merge(total)
                open_ &= x == total
                rows.append({"form": form, "block": i, "norm": (x.norm() / x0.norm()).item(),
                             "correlation": torch.corrcoef(torch.stack([x.flatten(), x0.flatten()]))[0, 1].item(),
                             "open": 100 * open_.float().mean().item()})
    return pd.DataFrame(rows)
