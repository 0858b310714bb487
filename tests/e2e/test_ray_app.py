"""End-to-end on the Ray backend (marker ``ray``: `.venv/bin/python -m pytest -m ray tests/e2e/test_ray_app.py`,
needs requirements-scale.txt). The app started with EXPLORER_BACKEND=ray starts a local Ray instance itself and
sends the Predictions & attributions page's work to Ray Serve: the prediction, then a run of the default
methods, then a second run after the first script runs have ended (a Ray instance started from a script run's
thread used to die with that thread and take the app down). Then the Feature maps capture, a stage change
(sliced from that capture) and a short lab race in a Ray actor."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import serve_app
from playwright.sync_api import Page, expect
from streamlit_wait import wait_idle

pytestmark = pytest.mark.ray
TIMEOUT = 240_000


@pytest.fixture(scope="module")
def ray_app_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if "ray" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("Ray Serve tests run only with -m ray")
    pytest.importorskip("ray")
    for url, _pid in serve_app(tmp_path_factory, EXPLORER_BACKEND="ray"):
        yield url


def _run(page: Page) -> None:
    page.get_by_role("button", name="Run", exact=True).click()
    wait_idle(page, TIMEOUT)
    expect(page.get_by_role("button", name="Figure (PNG)")).to_be_visible(timeout=TIMEOUT)


def test_the_attributions_page_runs_on_ray_serve(page: Page, ray_app_url: str) -> None:
    page.goto(f"{ray_app_url}/attributions?arch=resnet18&input_size=112&weights=random", timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)
    expect(page.get_by_text("Top-5 predictions").first).to_be_visible(timeout=TIMEOUT)
    _run(page)
    page.get_by_test_id("stRadio").filter(has_text="Show").get_by_text("positive", exact=False).first.click()
    wait_idle(page, TIMEOUT)
    _run(page)  # later script runs, later requests: the Ray instance outlived the run that started it
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)
    page.goto(ray_app_url, timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)
    expect(page.get_by_text("Backend: Ray Serve at a local Ray instance").first).to_be_visible(timeout=TIMEOUT)


def test_feature_maps_and_the_lab_race_run_on_ray(page: Page, ray_app_url: str) -> None:
    page.goto(f"{ray_app_url}/feature_maps?arch=resnet18&input_size=112&weights=random", timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)
    expect(page.get_by_text("Forward pass:").first).to_be_visible(timeout=TIMEOUT)
    page.get_by_test_id("stSelectbox").filter(has_text="Stage").click()
    page.get_by_role("option", name="layer3", exact=False).first.click()
    wait_idle(page, TIMEOUT)
    expect(page.get_by_text("layer3").first).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)

    page.goto(f"{ray_app_url}/lab?lab_preset=pair&lab_pair_depth=8", timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)
    page.get_by_text("One pair: plain and ResNet", exact=False).first.click()
    wait_idle(page, TIMEOUT)
    for label, value in (("Epochs", "1"), ("Training images (at most)", "64")):
        page.get_by_label(label, exact=True).fill(value)
        page.get_by_label(label, exact=True).press("Enter")
        wait_idle(page, TIMEOUT)
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text("Finished · epoch 1/1").first).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)
