"""Shared fixtures: an AppTest of the whole app or of one page with caches cleared, offline defaults, one CPU
thread for tiny tensors, and a record of the attribution-panel pictures the pages draw."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from explorer.models import build

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"arch": "resnet18", "input_size": 64, "weights": "random"}
"""A page's quick model: resnet18 at 64 px with random weights."""


@pytest.fixture(autouse=True, scope="session")
def _small_cpu() -> None:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _offline_torch_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see a real hub cache nor the network: pretrained weights are 'unavailable' unless a test
    places a checkpoint itself."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "torch_home"))
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    monkeypatch.setenv("EXPLORER_RAISE", "1")  # a page's unexpected error fails its AppTest instead of a message


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """A small eval-mode ResNet-18 with fixed random weights (tests that need another model define their own)."""
    torch.manual_seed(0)
    return build("resnet18").eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    """A fixed random image (1, 3, 64, 64)."""
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny tensors: one thread avoids OpenMP barrier waits on a shared, oversubscribed CPU (a mistake check took
    7 s with 2 threads and 0.1 s with 1 at load 11). A module asks for it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _clear_caches() -> None:
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def app() -> Iterator[AppTest]:
    """The whole app (app.py with its navigation), caches cleared before and after."""
    _clear_caches()
    yield AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    _clear_caches()


@pytest.fixture
def page_app() -> Iterator[Callable[..., AppTest]]:
    """Makes an AppTest of one page on its own: ``page_app("views/blocks.py", small=True, timeout=180, **state)``
    (``small``: :data:`SMALL`'s quick model; ``state``: more session values). Caches are cleared before the test
    and after it."""
    _clear_caches()

    def make(path: str, *, small: bool = False, timeout: float = 180, **state: object) -> AppTest:
        at = AppTest.from_file(str(ROOT / path), default_timeout=timeout)
        for key, value in {**(SMALL if small else {}), **state}.items():
            at.session_state[key] = value
        return at

    yield make
    _clear_caches()


@dataclass
class Drawn:
    """One picture of attribution panels a page drew (``explorer.plots.attribution.panels_sheet``)."""

    maps: dict[str, np.ndarray]
    options: dict[str, Any]


@pytest.fixture
def panels(monkeypatch: pytest.MonkeyPatch) -> list[Drawn]:
    """Every attribution-panels picture the pages draw during the test, in order (the page shows it as an image,
    which AppTest cannot read back)."""
    from explorer.plots import attribution as plots

    drawn: list[Drawn] = []
    real = plots.panels_sheet

    def record(image: np.ndarray, maps: dict[str, np.ndarray], **options: Any):  # noqa: ANN202
        drawn.append(Drawn({k: np.array(v) for k, v in maps.items()}, options))
        return real(image, maps, **options)

    monkeypatch.setattr(plots, "panels_sheet", record)
    return drawn


@pytest.fixture
def machine_speed(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Pretend this machine runs ``rate`` mult-adds per second (:func:`explorer.speed.throughput`) for this test:
    time estimates become exact arithmetic."""

    def set_rate(rate: float) -> None:
        monkeypatch.setattr("explorer.speed.throughput", lambda *_args, **_kwargs: rate)

    return set_rate
