"""explorer.ui.lab_models outside a page: the session store, the cached loader and its key, preprocessing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import streamlit as st
import torch

from explorer import cost, images, lab
from explorer.config import ModelConfig
from explorer.loading import Loaded
from explorer.models import build
from explorer.ui import lab_models

CLASSES = tuple("0123456789")


def saved(seed: int = 0, *, depth: int = 8, plain: bool = False, **meta: object) -> bytes:
    """A small lab model's safetensors bytes (untrained: the store does not care)."""
    recipe = dict(input_size=16, epochs=2, test_accuracy=0.875, mean=(0.3, 0.3, 0.3), std=(0.32, 0.32, 0.32),
                  split_seed=0) | meta  # fmt: skip
    model = lab.lab_model(depth, plain=plain, seed=seed)
    return lab.save_trained(model, lab.TrainedMeta(depth, plain, "digits", CLASSES, **recipe))


@pytest.fixture(autouse=True)
def session(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """A plain dict stands in for st.session_state; the resource cache starts and ends empty."""
    state: dict = {}
    monkeypatch.setattr(st, "session_state", state)
    st.cache_resource.clear()
    yield state
    st.cache_resource.clear()


def test_add_keeps_at_most_four_models_oldest_out_first(session):
    for i in range(6):
        meta = lab_models.add(f"model {i}", saved(i))
        assert meta.name == "ResNet-8" and meta.classes == CLASSES
    assert list(session[lab_models.STORE]) == ["model 2", "model 3", "model 4", "model 5"]
    lab_models.add("model 3", saved(3))  # adding again moves it to the newest place, no duplicate
    assert list(lab_models.store()) == ["model 2", "model 4", "model 5", "model 3"]


def test_a_bad_file_is_refused_and_the_store_is_unchanged(session):
    lab_models.add("good", saved())
    with pytest.raises(lab.TrainedModelError):
        lab_models.add("bad", b"definitely not safetensors")
    assert list(lab_models.store()) == ["good"]


def test_open_model_selects_it_for_the_image_pages(session):
    lab_models.open_model("mine", saved())
    assert session[lab_models.SELECTED] == "mine"


def test_loaded_model_is_cached_by_content_and_ready_for_the_pages(session):
    data = saved(1)
    lab_models.add("a", data)
    lab_models.add("b", bytes(data))  # the same bytes under another name
    lab_models.add("c", saved(2))
    a = lab_models.loaded("a")
    assert a is lab_models.loaded("b")  # one cache entry per sha256, not per name
    assert a is not lab_models.loaded("c")
    assert lab_models.digest(data) == lab_models.digest(bytes(data)) != lab_models.digest(saved(2))
    assert len(lab_models.digest(data)) == 64
    assert not a.model.training and a.pretrained and a.problem is None
    assert a.categories == list(CLASSES)
    assert a.label == "trained in the lab: ResNet-8 on digits, 2 epochs, test accuracy 0.88"
    assert a.model.stage_names == ("layer1", "layer2", "layer3")
    assert [stage[-1].conv2.out_channels for _, stage in a.model.stages()] == [16, 32, 64]
    assert a.model(torch.zeros(1, 3, 16, 16)).shape == (1, 10)
    assert lab_models.meta("c").input_size == 16


def test_label_of_a_plain_net_without_a_measured_accuracy():
    meta = lab.TrainedMeta(20, True, "digits", CLASSES, epochs=1)
    assert lab_models.label(meta) == "trained in the lab: plain-20 on digits, 1 epoch, test accuracy not measured"


def test_preprocessing_uses_the_labs_size_and_statistics(session):
    meta = lab_models.add("m", saved(input_size=24, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6)))
    settings = lab_models.preprocessing(meta)
    assert settings == images.Preprocessing(resize=24, crop=24, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
    # a hand-made recipe without statistics falls back to the digits' own
    fallback = lab_models.preprocessing(lab.TrainedMeta(8, False, "digits", CLASSES, input_size=16))
    data = lab.digits_dataset(size=16)
    assert (fallback.mean, fallback.std) == (data.mean, data.std)


def test_an_old_file_is_opened_with_its_fallback_statistics(session):
    model = lab.lab_model(8, plain=False)
    old = lab.save_trained(model, lab.TrainedMeta(8, False, "digits", CLASSES, input_size=16))
    meta = lab_models.add("old", old)
    assert meta.normalisation_note and lab_models.preprocessing(meta).mean == lab.digits_dataset(size=16).mean


def test_a_lab_models_cost_is_counted_on_the_model_itself(session):
    lab_models.add("m", saved(depth=14, plain=True))
    entry = lab_models._entry("m")
    assert entry.mult_adds == lab.forward_mult_adds(14, 16, plain=True) == cost.mult_adds(entry.loaded.model, 16)


def test_the_sidebar_models_cost_is_counted_for_the_configuration_chosen():
    """Not torchvision's published figure scaled by area: option C's projections and a plain net's lack of
    them change the count, exactly as explorer.cost counts the model."""
    counts = {}
    for shortcut, plain in (("B", False), ("C", False), ("B", True)):
        config = ModelConfig(arch="resnet18", shortcut=shortcut, plain=plain, input_size=64, weights="random")
        loaded = Loaded(build("resnet18", shortcut=shortcut, plain=plain).eval(), False, "random", None)
        counts[shortcut, plain] = lab_models._sidebar_mult_adds(config, loaded)
        assert counts[shortcut, plain] == cost.mult_adds(loaded.model, 64)
    assert counts["B", True] < counts["B", False] < counts["C", False]


def test_a_subject_says_its_cost_in_mult_adds_and_converts_to_flops_openly():
    subject = lab_models.Subject(None, images.Preprocessing(resize=16, crop=16, mean=(0,) * 3, std=(1,) * 3),  # type: ignore[arg-type]
                                 "m", 2_000_000, "")  # fmt: skip
    assert subject.mult_adds == 2_000_000
