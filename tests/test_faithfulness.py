"""explorer.attribution.faithfulness: deletion and insertion curves on a model whose answer is known, their areas,
batching, the CPU cap, the lock, and the page's table and figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_waits_for_the_lock
from torch import nn

from explorer import attribution as attr
from explorer.plots import attribution as plots
from explorer.shared import hook_count, work_twin

SIDE = 32


class TopLeft(nn.Module):
    """Two classes; the logit of class 0 is 8 x (mean of the top-left quadrant - 0.5), that of class 1 is 0."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[8.0], [0.0]]))
            self.fc.bias.copy_(torch.tensor([-4.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return self.fc(x[:, :, :half, :half].mean(dim=(1, 2, 3))[:, None])


def quadrant(rows: slice, cols: slice) -> np.ndarray:
    heat = np.zeros((SIDE, SIDE), np.float32)
    heat[rows, cols] = 1 + np.random.default_rng(0).random((SIDE // 2, SIDE // 2))  # ties broken inside
    return heat


TOP_LEFT = quadrant(slice(0, SIDE // 2), slice(0, SIDE // 2))
BOTTOM_RIGHT = quadrant(slice(SIDE // 2, None), slice(SIDE // 2, None))


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    return TopLeft().eval()


@pytest.fixture(scope="module")
def picture() -> torch.Tensor:
    """(1, 3, 32, 32): ones in the top-left quadrant, zeros elsewhere."""
    x = torch.zeros(1, 3, SIDE, SIDE)
    x[..., : SIDE // 2, : SIDE // 2] = 1
    return x


def test_deletion_drops_fastest_for_the_map_of_the_quadrant_that_decides(tiny, picture):
    right, wrong = (attr.faithfulness(tiny, picture, 0, heat, steps=8) for heat in (TOP_LEFT, BOTTOM_RIGHT))
    full = torch.softmax(tiny(picture), 1)[0, 0].item()
    for f in (right, wrong):
        np.testing.assert_allclose(f.fractions, np.linspace(0, 1, 9))
        assert f.deletion[0] == pytest.approx(full) and f.insertion[-1] == pytest.approx(full)
        assert 0 <= f.deletion_auc <= 1 and 0 <= f.insertion_auc <= 1 and f.passes == 18
    # a quarter of the pixels removed: the right map has removed the whole quadrant, the wrong one none of it
    assert right.deletion[2] == pytest.approx(torch.sigmoid(torch.tensor(-4.0)).item(), abs=1e-4)
    assert wrong.deletion[2] == pytest.approx(full)
    assert right.deletion_auc < wrong.deletion_auc - 0.3
    assert right.insertion[2] > wrong.insertion[2] and right.insertion_auc > wrong.insertion_auc  # rises fastest
    table = attr.trust_table({"bottom-right": wrong, "top-left": right})
    assert list(table["map"]) == ["top-left", "bottom-right"] and list(table["rank"]) == [1, 2]


def test_steps_are_batched_and_capped_on_the_cpu(tiny, picture):
    calls: list[int] = []
    handle = work_twin(tiny).register_forward_pre_hook(lambda _m, args: calls.append(int(args[0].shape[0])))
    try:
        f = attr.faithfulness(tiny, picture, 0, TOP_LEFT, steps=16, batch_size=8)
    finally:
        handle.remove()
    assert calls == [8, 8, 1, 8, 8, 1] and sum(calls) == f.passes == attr.faithfulness_cost(16) == 34
    with pytest.raises(attr.CostError, match="65 steps need 132 forward passes; on the CPU the cap is 64 steps"):
        attr.faithfulness(tiny, picture, 0, TOP_LEFT, steps=65)
    with pytest.raises(attr.AttributionError, match="The map is 16×16 but the image is 32×32"):
        attr.faithfulness(tiny, picture, 0, np.ones((16, 16)), steps=4)
    with pytest.raises(attr.AttributionError, match="steps must be a whole number"):
        attr.faithfulness(tiny, picture, 0, TOP_LEFT, steps=0)
    with pytest.raises(attr.AttributionError, match="class index from 0 to 1"):
        attr.faithfulness(tiny, picture, 2, TOP_LEFT, steps=4)


def test_waits_for_the_models_work_twin(tiny, picture):
    """The curves are long work: they run on the model's work twin, and wait while another long call holds it."""
    assert_waits_for_the_lock(work_twin(tiny), lambda: attr.faithfulness(tiny, picture, 0, TOP_LEFT, steps=4))


def test_an_attribution_of_a_resnet_is_scored_and_the_model_is_unchanged(model, image):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    maps = {m: attr.attribute(model, image, 3, m) for m in ("grad_cam", "saliency")}
    scores = {r.label: attr.faithfulness(model, image, 3, r, steps=4, fast=False) for r in maps.values()}
    assert all(s.passes == 10 and not s.fast and s.device.startswith("CPU") for s in scores.values())
    assert hook_count(model) == 0 and all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    fig = plots.faithfulness_curves(scores)
    assert [t.xaxis for t in fig.data] == ["x", "x2", "x", "x2"]  # deletion left, insertion right, per map
    assert [t.showlegend for t in fig.data] == [True, False, True, False]
    assert fig.data[0].name.startswith("Grad-CAM (deletion ") and len(fig.data[0].y) == 5
    assert max(max(t.y) for t in fig.data) <= 100 and fig.layout.xaxis.range == (0, 100)
    with pytest.raises(ValueError, match="no curves"):
        plots.faithfulness_curves({})
