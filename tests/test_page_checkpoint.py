"""AppTest: "My checkpoint" in the sidebar — a fine-tuned resnet18 with 10 classes and its class names on every
page, bad files as messages (the session goes on with random weights), the preprocessing remembered per file."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from explorer.models import build
from explorer.shared import seeded

ROOT = Path(__file__).resolve().parents[1]
PREDICTIONS, ARCHITECTURE, FEATURE_MAPS = "views/attributions.py", "views/architecture.py", "views/feature_maps.py"
CLASSES = ["apple", "banana", "cherry", "date", "elderberry", "fig", "grape", "honeydew", "kiwi", "lemon"]


def state_dict_bytes(num_classes: int = 10, arch: str = "resnet18", seed: int = 0, drop: str | None = None) -> bytes:
    """``torch.save(model.state_dict())`` of a random ``arch`` with ``num_classes`` outputs, as bytes; ``drop``
    removes every tensor whose name starts with it (e.g. a stage)."""
    with seeded(seed):
        state = build(arch, num_classes=num_classes).state_dict()
    if drop:
        state = {k: v for k, v in state.items() if not k.startswith(drop)}
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload(at: AppTest, data: bytes, name: str = "fruit.pth", classes: tuple[str, bytes] | None = None) -> None:
    """What the sidebar's uploaders keep: the bytes keyed by their sha256 (one of each), and the chosen sha."""
    at.session_state["weights"] = "checkpoint"
    at.session_state["checkpoints"] = {sha(data): (name, data)}
    at.session_state["checkpoint"] = sha(data)
    if classes is not None:
        at.session_state["class_files"] = {sha(classes[1]): classes}
        at.session_state["class_names"] = sha(classes[1])


def page(path: str, data: bytes, classes: tuple[str, bytes] | None = None, **state: object) -> AppTest:
    """``path`` on its own, the sidebar's default choice (resnet50) but 64 px, with ``data`` uploaded."""
    at = AppTest.from_file(str(ROOT / path), default_timeout=240)
    at.session_state["input_size"] = 64
    for key, value in state.items():
        at.session_state[key] = value
    upload(at, data, classes=classes)
    return at.run()


def errors(at: AppTest) -> str:
    return " ".join(e.value for e in at.error)


def chart(at: AppTest, key: str) -> dict:
    for element in at.get("plotly_chart"):
        if element.proto.id and key in element.proto.id:
            return json.loads(element.proto.spec)
    raise AssertionError(f"no chart {key!r}")


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


def test_predictions_use_the_inferred_network_and_its_class_names() -> None:
    text = "\n".join(CLASSES).encode()
    at = page(PREDICTIONS, state_dict_bytes(), classes=("fruit.txt", text))
    assert not at.exception and not at.error
    top5 = chart(at, "attr_top5")["data"][0]["y"]
    assert len(top5) == 5 and all(any(name in label for name in CLASSES) for label in top5)
    captions = " ".join(c.value for c in at.caption)
    assert "Your checkpoint: resnet18, 10 classes (names from `fruit.txt`)" in captions
    assert not any("random weights" in i.value for i in at.info)


def test_architecture_page_shows_the_checkpoints_network_not_the_sidebars() -> None:
    at = page(ARCHITECTURE, state_dict_bytes())  # the sidebar still says resnet50
    assert not at.exception and not at.error
    with seeded(0):
        params = sum(p.numel() for p in build("resnet18", num_classes=10).parameters())
    assert at.header[0].value == f"resnet18 (10 classes) — {params:,} parameters"


@pytest.mark.parametrize("path", [ARCHITECTURE, "views/blocks.py", FEATURE_MAPS])
def test_the_other_pages_work_on_the_checkpoints_network(path: str) -> None:
    at = page(path, state_dict_bytes(), classes=("fruit.txt", "\n".join(CLASSES).encode()))
    assert not at.exception and not at.error
    words = " ".join(e.value for e in [*at.caption, *at.header])
    assert "Your checkpoint: resnet18, 10 classes" in words or "resnet18 (10 classes)" in words
    assert "resnet50" not in words
    assert not any("random weights" in i.value for i in at.info)


def test_a_cifar_resnet_is_named_by_its_checkpoint() -> None:
    from explorer.models import build_cifar

    with seeded(0):
        state = build_cifar(20).state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    for path in (ARCHITECTURE, PREDICTIONS):
        at = page(path, buf.getvalue())
        assert not at.exception and not at.error
        captions = " ".join(c.value for c in at.caption)
        assert "Your checkpoint: resnet20, 10 classes" in captions
        if path == ARCHITECTURE:  # a CIFAR net opens at its native size
            assert "Input: 1 x 3 x 32 x 32" in captions
        if path == ARCHITECTURE:
            assert at.header[0].value.startswith("resnet20 (10 classes) — ")


def test_home_names_the_checkpoints_network(app: AppTest) -> None:
    upload(app, state_dict_bytes())
    app.run()
    assert not app.exception
    assert {m.label: m.value for m in app.metric}["Model"] == "resnet18 (10 classes)"


def test_1000_classes_without_names_are_imagenets() -> None:
    at = page(PREDICTIONS, state_dict_bytes(num_classes=1000))
    assert not at.exception and not at.error
    from explorer.weights import imagenet_categories

    names = set(imagenet_categories())
    assert all(label.rsplit(" (", 1)[0] in names or label in names for label in chart(at, "attr_top5")["data"][0]["y"])


def test_a_class_file_with_the_wrong_count_is_an_error_and_the_weights_still_load() -> None:
    at = page(PREDICTIONS, state_dict_bytes(), classes=("fruit.txt", "\n".join(CLASSES[:7]).encode()))
    assert not at.exception
    assert "7 class names in `fruit.txt`" in errors(at) and "10" in errors(at)
    top5 = chart(at, "attr_top5")["data"][0]["y"]
    assert all("class " in label for label in top5)  # the default names, from the checkpoint's own weights


@pytest.mark.parametrize(
    ("what", "data", "expected"),
    [
        ("not a ResNet", None, "not a ResNet's"),
        ("a missing stage", state_dict_bytes(drop="layer3."), "layer3"),
        ("a whole pickled model", None, "whole pickled model"),
    ],
)
def test_a_bad_checkpoint_is_an_error_and_the_model_is_random(what: str, data: bytes | None, expected: str) -> None:
    if what == "not a ResNet":
        buf = io.BytesIO()
        torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 2)).state_dict(), buf)
        data = buf.getvalue()
    elif what == "a whole pickled model":
        buf = io.BytesIO()
        torch.save(torch.nn.Linear(2, 2), buf)
        data = buf.getvalue()
    assert data is not None
    at = page(ARCHITECTURE, data)
    assert not at.exception
    assert "Your checkpoint could not be used" in errors(at) and expected in errors(at)
    assert any("random weights" in i.value for i in at.info)
    assert at.header[0].value.startswith("resnet50 ")  # the sidebar's architecture, random weights


def test_a_checkpoint_over_the_size_cap_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from explorer.checkpoints import reading

    monkeypatch.setattr(reading, "MAX_CHECKPOINT_BYTES", 1 << 20)  # 1 MiB; a resnet18 is about 45 MB
    at = page(ARCHITECTURE, state_dict_bytes())
    assert not at.exception
    assert "are refused" in errors(at)
    assert any("random weights" in i.value for i in at.info)


def test_preprocessing_is_remembered_with_its_checkpoint(app: AppTest) -> None:
    first, second = state_dict_bytes(seed=0), state_dict_bytes(seed=1)
    app.session_state["input_size"] = 64
    upload(app, first)
    app.run()
    assert not app.exception
    assert app.session_state["checkpoint_norm"] == "ImageNet"
    app.session_state["checkpoint_norm"] = "0.5/0.5"
    app.session_state["input_size"] = 96
    app.run()
    upload(app, second)  # another file: its network's own preprocessing, at its native size
    app.run()
    assert app.session_state["checkpoint_norm"] == "ImageNet" and app.session_state["input_size"] == 224
    app.session_state["checkpoint_norm"] = "custom"
    app.session_state["input_size"] = 64
    app.run()
    app.session_state["checkpoint_std"] = "0"  # refused: the std must be above 0
    app.run()
    assert "standard deviation must be one number" in errors(app)
    upload(app, first)  # the first file again: its preprocessing comes back
    app.run()
    assert app.session_state["checkpoint_norm"] == "0.5/0.5" and app.session_state["input_size"] == 96
    app.session_state["fm_tab"] = "Preprocessing"  # a hidden tab is not drawn
    app.switch_page(FEATURE_MAPS).run()
    assert not app.exception
    text = " ".join(m.value for m in app.markdown)
    assert "**96 × 96** crop" in text and "mean 0.5 and standard deviation 0.5" in text


def test_the_checkpoint_survives_a_link_of_this_session(app: AppTest) -> None:
    upload(app, state_dict_bytes())
    app.run()
    assert app.query_params["weights"] == "checkpoint"  # what the page published
    app.query_params["input_size"] = "96"  # the browser sends a query that differs from the one last applied
    app.run()
    assert app.session_state["weights"] == "checkpoint"
