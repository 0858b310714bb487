"""Interactive speed as a user feels it: every interaction of issue 13's table, in headless Chromium.

    .venv/bin/python bench/bench_browser.py            # resnet50 at 224 px, random weights (offline)

Starts `streamlit run app.py` and a bare Streamlit page that imports torch and torchvision, each on a loopback
port, and drives both with Playwright + Debian's Chromium. A run is timed on the page's own clock, from the
click to the first frame painted after the app's script state leaves "running" (a click listener, a
MutationObserver on ``stApp``'s ``data-test-script-state`` and two animation frames), so neither a fixed sleep
nor the test driver's round trips count. Each figure is printed in seconds and as a ratio to the bare page's
rerun measured in the same run (this machine is shared and noisy: the ratios are what to compare).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
BARE = """import streamlit as st
import torch
import torchvision

st.title("Bare page")
st.button("Rerun", key="again")
st.write(torch.__version__, torchvision.__version__)
st.session_state.runs = st.session_state.get("runs", 0) + 1
st.caption(f"run {st.session_state.runs}")
"""
BARE_DONE = """(before) => new Promise(resolve => {
  const check = () => {
    const text = [...document.querySelectorAll('[data-testid="stCaptionContainer"]')].map(e => e.innerText)
      .find(t => t.startsWith('run '));
    if (text !== undefined && text !== before) {
      requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now())));
    } else {
      requestAnimationFrame(check);
    }
  };
  check();
})"""
WATCH = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (window.__runs === undefined) {
    window.__runs = 0; window.__last = app.getAttribute('data-test-script-state');
    window.__armed = false; window.__clicked = null; window.__painted = []; window.__changed = null;
    document.addEventListener('click', () => {
      if (window.__armed) { window.__clicked = performance.now(); window.__armed = false; window.__changed = null; }
    }, true);
    const main = document.querySelector('[data-testid="stMain"]');
    if (main) {  // a run too quick for React to show "running" still changes what the main area shows
      new MutationObserver(() => {
        if (window.__clicked !== null) {
          requestAnimationFrame(() => requestAnimationFrame(() => { window.__changed = performance.now(); }));
        }
      }).observe(main, {childList: true, subtree: true, characterData: true, attributes: true});
    }
    new MutationObserver(() => {
      const s = app.getAttribute('data-test-script-state');
      if (window.__last === 'running' && s !== 'running') {
        window.__runs += 1;
        const run = window.__runs;  // the first frame painted after the run ended
        requestAnimationFrame(() => requestAnimationFrame(() => { window.__painted[run] = performance.now(); }));
      }
      window.__last = s;
    }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
  }
  return window.__runs;
}"""
TIMEOUT = 240_000


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(script: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str, float]:
    """Start streamlit on ``script``, in its own folder (so it reads that folder's ``.streamlit/config.toml``: a
    checkout's own settings, Streamlit's defaults for the bare page); returns the process, its URL and the
    monotonic time it answered health."""
    port = _port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true"], cwd=script.parent, env=env, stdout=log.open("w"),
        stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
            return proc, url, time.monotonic()
        except OSError:
            time.sleep(0.25)
    proc.terminate()
    raise RuntimeError(f"streamlit did not start on {script}; see {log}")


def _first_render(page, url: str) -> float:
    """Open ``url`` and wait for the first script run to finish; seconds from navigation."""
    start = time.monotonic()
    page.goto(url, timeout=TIMEOUT)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=TIMEOUT)
    seconds = time.monotonic() - start
    page.evaluate(WATCH)
    page.wait_for_timeout(1500)  # a click straight after the first render can be lost: let the page settle
    return seconds


def _timed(page, action: Callable[[], None], prepare: Callable[[], None] | None = None) -> float:
    """Seconds, on the page's own clock, from the click of ``action`` to the first frame painted after the run
    it started has finished: what the user waits, without the test driver's own round trips. ``prepare``
    (opening a drop-down: the user's own move, not the app's answer) comes before. A run so quick that the page
    never shows its "running" state is timed to the last frame its changes painted; an action that changes
    nothing within 5 s (a click the page dropped) is done again."""
    page.wait_for_function("() => window.__last !== 'running'", timeout=TIMEOUT)  # nothing still running
    for attempt in range(3):
        if prepare is not None:
            prepare()
        before = page.evaluate(WATCH)
        page.evaluate("() => { window.__armed = true; window.__clicked = null; }")
        action()
        try:
            page.wait_for_function(f"() => window.__runs > {before} || window.__last === 'running'", timeout=5000)
            break
        except PlaywrightTimeout:
            if page.evaluate("() => window.__changed !== null && window.__last !== 'running'"):
                return page.evaluate("() => (window.__changed - window.__clicked) / 1000")
            if attempt == 2:
                raise
    page.wait_for_function(f"() => window.__painted[{before} + 1] !== undefined", timeout=TIMEOUT)
    return page.evaluate(f"() => (window.__painted[{before} + 1] - window.__clicked) / 1000")


def _timed_bare(page) -> float:
    """The bare page's rerun, on the page's clock: from the click to the first frame painted after its run
    counter changed. (Its run is too quick for the script state to be seen "running": React batches it.)"""
    before = page.get_by_test_id("stCaptionContainer").filter(has_text="run ").first.inner_text()
    page.evaluate("() => { window.__armed = true; window.__clicked = null; }")
    page.get_by_role("button", name="Rerun").click()
    painted = page.evaluate(BARE_DONE, before)
    return (painted - page.evaluate("() => window.__clicked")) / 1000


def _median(repeats: int, timed: Callable[[int], float]) -> float:
    """The median of ``repeats`` timings, ``timed(i)`` alternating between two states (a quick interaction is
    timed several times: one figure of a 0.3 s click swings by a third on this shared machine)."""
    return statistics.median(timed(i) for i in range(repeats))


def _nav(page, title: str) -> Callable[[], None]:
    return lambda: page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()


def _select(page, label: str, option: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """(the choice of ``option``, the opening of the ``label`` drop-down before it): for ``_timed``. The option
    reads ``option`` itself or, where the box names its options (the architecture's family), ``option · <name>``;
    opening types ``option`` to filter the list (a long one is virtualised, its far options not drawn)."""
    name = re.compile(rf"^{re.escape(option)}( · .*)?$")

    def choose() -> None:
        page.get_by_role("option", name=name).click()

    def open_list() -> None:
        box = page.get_by_test_id("stSelectbox").filter(has_text=label).first
        box.click()
        box.locator("input").fill(option)
        page.get_by_role("option", name=name).wait_for()

    return choose, open_list


def _step(page, label: str, up: bool) -> Callable[[], None]:
    """A click on the + (``up``) or - button of the number input whose label contains ``label``."""
    side = "Up" if up else "Down"
    box = page.get_by_test_id("stNumberInput").filter(has_text=label).first
    return lambda: box.get_by_test_id(f"stNumberInputStep{side}").click()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5,
                        help="bare-page reruns, stage, view, overlay and cached-arch changes to take the median of")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    from explorer.device import cpu_flags

    tmp = Path(tempfile.mkdtemp(prefix="bench-browser-"))
    (tmp / "bare.py").write_text(BARE)
    env = {**os.environ, "TORCH_HOME": str(tmp / "torch_home"), "EXPLORER_OFFLINE": "1"}
    figures: dict[str, float] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        bare, bare_url, _ = _serve(tmp / "bare.py", env, tmp / "bare.log")
        try:
            figures["bare page, first render (cold)"] = _first_render(page, bare_url)
            reruns = [_timed_bare(page) for _ in range(args.repeats)]
            figures["bare page, rerun"] = statistics.median(reruns)
        finally:
            bare.terminate()
        app, url, _ = _serve(ROOT / "app.py", env, tmp / "app.log")
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            figures["first page after start (cold)"] = _first_render(page, url)
            figures["first visit of Feature maps"] = _timed(page, _nav(page, "Feature maps"))
            figures["warm page switch to Architecture (first visit)"] = _timed(page, _nav(page, "Architecture"))
            figures["warm page switch to Feature maps"] = _timed(page, _nav(page, "Feature maps"))
            figures["warm page switch to Architecture"] = _timed(page, _nav(page, "Architecture"))
            _timed(page, _nav(page, "Feature maps"))
            figures["changing the stage on Feature maps"] = _median(args.repeats, lambda i: _timed(
                page, *_select(page, "Stage", ("layer3 · conv4_x", "layer2 · conv3_x")[i % 2])))
            _timed(page, lambda: page.get_by_role("tab", name="Overlay").click())
            figures["display-only change on Feature maps (overlay channel +1 / -1)"] = _median(
                args.repeats, lambda i: _timed(page, _step(page, "the strongest is", up=i % 2 == 0)))
            figures["first visit of Predictions & attributions"] = _timed(
                page, _nav(page, "Predictions & attributions"))
            figures["Run with Saliency + IG (32 steps) + Grad-CAM"] = _timed(
                page, lambda: page.get_by_role("button", name="Run", exact=True).first.click())
            views = ("positive — evidence for the class", "absolute")
            figures["display-only change (view absolute <-> positive)"] = _median(args.repeats, lambda i: _timed(
                page, lambda: page.get_by_text(views[i % 2]).first.click()))
            _timed(page, _nav(page, "Architecture"))
            figures["arch switch to a new arch (resnet34)"] = _timed(page, *_select(page, "Architecture", "resnet34"))
            figures["arch switch to a cached one (resnet50 <-> resnet34)"] = _median(
                args.repeats, lambda i: _timed(page, *_select(page, "Architecture", ("resnet50", "resnet34")[i % 2])))
        finally:
            app.terminate()
        browser.close()
    unit = figures["bare page, rerun"]
    print(f"CPU flags: {' '.join(cpu_flags()) or 'unknown'}; {os.cpu_count()} CPUs; bare rerun {unit:.3f} s")
    print("| interaction | seconds | x bare rerun |")
    print("|---|---|---|")
    for name, seconds in figures.items():
        print(f"| {name} | {seconds:.2f} | {seconds / unit:.1f} |")
    cold = figures["first page after start (cold)"] / figures["bare page, first render (cold)"]
    print(f"cold start: first app page / bare page's first render = {cold:.2f} (target <= 1.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
