"""Helpers the tests share (``from helpers import ...``: pytest puts this folder on the import path)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable

from torch import nn

from explorer.loading import Checkpoint
from explorer.shared import model_lock

__all__ = ["assert_waits_for_the_lock", "checkpoint_of", "perturbed_bn", "state_bytes"]


def perturbed_bn(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm given random statistics and affine parameters, in eval mode: BN at
    initialisation is the identity, which hides wrong wiring (a branch and its shortcut, a buffer not loaded)."""
    import torch

    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            with torch.no_grad():
                m.weight.uniform_(0.2, 1.5)
                m.bias.uniform_(-0.3, 0.3)
            m.num_batches_tracked.fill_(7)
    return model.eval()


def state_bytes(model: nn.Module) -> bytes:
    """``model.state_dict()`` as ``torch.save`` writes it to a file."""
    import torch

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def checkpoint_of(model: nn.Module, name: str = "mine.pth") -> Checkpoint:
    """A user's checkpoint file of ``model``'s weights, named ``name``."""
    return Checkpoint.from_bytes(name, state_bytes(model))


def assert_waits_for_the_lock(model: nn.Module, work: Callable[[], object], *, hold_s: float = 0.3) -> None:
    """``work()`` (which reads the shared ``model``) does not run while another thread holds the model's lock,
    and finishes once it is released."""
    done = threading.Event()
    with model_lock(model):
        worker = threading.Thread(target=lambda: (work(), done.set()))
        worker.start()
        time.sleep(hold_s)
        assert not done.is_set()
    worker.join(timeout=60)
    assert done.is_set()
