"""The shared-model contract under concurrency: many threads, one model, no lock held by the caller.

Threads call every explorer function that reads a shared model (layer and stage tables, output shapes, capture
with the residual stream, predict, Grad-CAM, Saliency) at once. Pass: no errors, every result equal to its
single-threaded value, no hook left on the model and its state dict unchanged.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch

from explorer import activations, summary
from explorer.attribution import attribute
from explorer.models import build
from explorer.predict import predict
from explorer.shared import hook_count

CALLS = 540
THREADS = 6
SIZE = 64


def _calls(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Callable[[], object]]:
    layers = ["layer1", "layer2.1", "layer4"]
    return {
        "layer_table": lambda: summary.layer_table(model, SIZE),
        "stage_table": lambda: summary.stage_table(model, SIZE),
        "output_shapes": lambda: activations.output_shapes(model, layers, SIZE),
        "capture_with_stream": lambda: activations.capture_with_stream(model, x, layers),
        "predict": lambda: predict(model, x, k=5),
        "grad_cam": lambda: attribute(model, x, 3, "grad_cam", layer="layer3").map,
        "saliency": lambda: attribute(model, x, 3, "saliency").map,
    }


def _same(a: object, b: object) -> bool:
    """Exact equality for what the calls return (frames, dicts of tensors, captures, predictions, maps)."""
    if isinstance(a, pd.DataFrame):
        return a.equals(b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, activations.Capture):
        return _same(a.activations, b.activations) and a.stream == b.stream and torch.equal(a.logits, b.logits)
    if hasattr(a, "indices") and hasattr(a, "logits"):  # a Prediction: its seconds differ from call to call
        return a.indices == b.indices and a.probabilities == b.probabilities and np.array_equal(a.logits, b.logits)
    return a == b


def test_many_threads_on_one_shared_model_agree_with_one_thread():
    torch.manual_seed(0)
    model = build("resnet18").eval()
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    calls = _calls(model, x)
    expected = {name: fn() for name, fn in calls.items()}  # single-threaded reference values
    order = [name for name in calls for _ in range(CALLS // len(calls) + 1)][:CALLS]
    random.Random(0).shuffle(order)
    errors: list[str] = []
    mismatches: list[str] = []
    guard = threading.Lock()

    def one(name: str) -> None:
        try:
            result = calls[name]()
        except Exception as err:  # noqa: BLE001 - every failure is counted, none may happen
            with guard:
                errors.append(f"{name}: {type(err).__name__}: {err}")
            return
        if not _same(result, expected[name]):
            with guard:
                mismatches.append(name)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, order))

    assert not errors, f"{len(errors)} errors in {CALLS} calls, e.g. {errors[:3]}"
    assert not mismatches, f"{len(mismatches)} results differ from one thread's: {sorted(set(mismatches))}"
    assert hook_count(model) == 0
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
