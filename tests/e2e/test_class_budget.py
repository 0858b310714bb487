"""End-to-end: one student cannot take the class down (issue 23). One session opens the most expensive link (ResNet-152
at 1024 px, GradientSHAP with 64 samples) and presses Run while a second session keeps loading Predictions &
attributions. The server, under an 8 GB budget, stays alive and under it; the second session's visits all work;
the first gets a sentence or a result."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import serve_app
from playwright.sync_api import Browser, expect
from streamlit_wait import wait_idle

TIMEOUT = 180_000
BUDGET_MB = 8192  # the budget on these 24 GB machines
WORST = "attributions?arch=resnet152&input_size=1024&methods=gradient_shap&gs_samples=64"


@pytest.fixture(scope="module")
def budget_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    yield from serve_app(tmp_path_factory, EXPLORER_MEMORY_MB=str(BUDGET_MB))


def _rss_mb(pid: int) -> float:
    """The process's resident memory now, in MiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class _PeakRss:
    """Samples a process's RSS every 0.1 s in a thread, keeping the peak."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, _rss_mb(self.pid))

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_the_worst_link_and_a_busy_neighbour(browser: Browser, budget_server: tuple[str, int],
                                             artifacts: Path) -> None:
    url, pid = budget_server
    student, neighbour = browser.new_context(), browser.new_context()
    try:
        worst, other = student.new_page(), neighbour.new_page()
        with _PeakRss(pid) as rss:
            worst.goto(f"{url}/{WORST}", timeout=TIMEOUT)
            wait_idle(worst, TIMEOUT)
            run = worst.get_by_role("button", name="Run", exact=True)
            if run.is_enabled():  # a refusal before Run disables it and says why
                run.click()
            visits = []
            for _ in range(3):  # the neighbour keeps loading the page while the worst link is being handled
                start = time.monotonic()
                other.goto(f"{url}/attributions", timeout=TIMEOUT)
                wait_idle(other, TIMEOUT)
                expect(other.get_by_role("button", name="Run", exact=True)).to_be_enabled(timeout=TIMEOUT)
                expect(other.get_by_test_id("stException")).to_have_count(0)
                visits.append(time.monotonic() - start)
            wait_idle(worst, TIMEOUT)
            refusal = worst.get_by_text("one call may use", exact=False)
            result = worst.get_by_role("button", name="Figure (PNG)")
            answer = refusal.or_(result).first
            expect(answer).to_be_visible(timeout=TIMEOUT)
            expect(worst.get_by_test_id("stException")).to_have_count(0)
            answer.scroll_into_view_if_needed()
            worst.screenshot(path=artifacts / "worst-link.png")
        assert urllib.request.urlopen(f"{url}/_stcore/health", timeout=10).status == 200  # still serving
        assert len(visits) == 3
        assert 0 < rss.peak < BUDGET_MB, f"server RSS peaked at {rss.peak:.0f} MiB"
        print(f"peak server RSS {rss.peak:.0f} MiB; neighbour's visits {[round(v, 1) for v in visits]} s")
    finally:
        student.close()
        neighbour.close()
