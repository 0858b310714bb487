"""The time budget of a heavy call (issue 23): past its deadline a call stops before its next batch, drops its
partial work, leaves the shared model as it was and releases its lock; a user's Stop (Streamlit's stop, a
BaseException raised from the progress bar) does the same."""

from __future__ import annotations

import threading

import pytest
import torch

from explorer import attribution as attr
from explorer import deadline
from explorer.backend import LocalBackend
from explorer.backend.request import ImageInput
from explorer.config import ModelConfig
from explorer.models import build
from explorer.predict import predict
from explorer.shared import model_lock, seeded


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    with seeded(0):
        return build("resnet18").eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(1, 3, 160, 160, generator=torch.Generator().manual_seed(0))


def _untouched(model: torch.nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())


def _lock_is_free(model: torch.nn.Module) -> bool:
    """Whether another thread can take the model's lock at once (the call holding it has let it go)."""
    got: list[bool] = []
    thread = threading.Thread(target=lambda: got.append(model_lock(model).acquire(timeout=5)) or
                              (got[-1] and model_lock(model).release()))
    thread.start()
    thread.join()
    return got == [True]


def test_a_call_past_its_deadline_stops_between_batches_and_leaves_the_model_as_it_was(model, image) -> None:
    seen: list[float] = []
    with pytest.raises(deadline.DeadlineError, match=r"Occlusion ran past the 0\.2 s one call may take on this "
                                                     r"server, so it was stopped and its partial work dropped"):
        attr.attribute(model, image, 3, "occlusion", deadline=0.2, progress=seen.append)
    assert seen and seen[-1] < 1.0  # stopped part of the way through
    assert _untouched(model) and _lock_is_free(model) and not model.training
    assert predict(model, image).indices  # the next call runs as usual
    assert attr.attribute(model, image, 3, "saliency").map.shape == (160, 160)  # and under the default deadline


def test_the_servers_deadline_comes_from_explorer_call_seconds(monkeypatch, model, image) -> None:
    monkeypatch.setenv("EXPLORER_CALL_SECONDS", "not a number")
    assert deadline.call_seconds() == deadline.CALL_SECONDS
    monkeypatch.setenv("EXPLORER_CALL_SECONDS", "0.2")
    assert deadline.call_seconds() == 0.2
    with pytest.raises(deadline.DeadlineError, match="Integrated Gradients ran past the 0.2 s"):
        attr.attribute(model, image, 3, "integrated_gradients", n_steps=64, internal_batch_size=2)  # 32 batches
    result = attr.attribute(model, image, 3, "saliency")  # a call within it still runs (one batch)
    with pytest.raises(deadline.DeadlineError, match="The deletion and insertion curves ran past the 0.2 s"):
        attr.faithfulness(model, image, 3, result, steps=64, batch_size=1)
    assert _untouched(model) and _lock_is_free(model)


def test_the_local_backends_timeout_is_the_attributions_deadline(model, image) -> None:
    backend = LocalBackend()
    config = ModelConfig(arch="resnet18", input_size=160)
    with pytest.raises(deadline.DeadlineError, match="Integrated Gradients ran past the 0.1 s"):
        backend.attribute(config, ImageInput.from_tensor(image), 3, "integrated_gradients", timeout_s=0.1,
                          n_steps=64, internal_batch_size=4)


class _Stop(BaseException):
    """Stands for Streamlit's StopException, raised by a progress bar's update once the user pressed Stop."""


def test_a_stop_from_the_progress_bar_ends_the_call_and_frees_the_model(model, image) -> None:
    calls = [0]

    def stop_on_the_second_batch(_fraction: float) -> None:
        calls[0] += 1
        if calls[0] == 2:
            raise _Stop

    with pytest.raises(_Stop):  # not turned into a message: the page's run ends, as Stop asks
        attr.attribute(model, image, 3, "integrated_gradients", n_steps=32, internal_batch_size=4,
                       progress=stop_on_the_second_batch)
    assert calls[0] == 2 and _untouched(model) and _lock_is_free(model)
