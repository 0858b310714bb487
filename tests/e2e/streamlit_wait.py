"""Waiting for the end of the script run an action started, as the browser sees it.

``networkidle`` and the absence of the "Running..." widget both hold *before* a run starts: a widget's change
reaches the server a moment after Playwright's click returns, and the status widget shows only after a delay. So a
test that reads the page then sees the previous run's output (the "Copy link" box one click behind). The app root
carries the run's state (``data-test-script-state`` on ``stApp``, as Streamlit's own e2e tests read it): wait for
it to leave ``notRunning`` (a run that began and ended between two polls is missed, costing at most ``START_MS``),
then for it to come back.
"""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

TIMEOUT = 120_000
START_MS = 1_500  # how long a run may take to start after the action
APP = "[data-testid='stApp']"
STARTED = f"""() => {{ const app = document.querySelector("{APP}");
    return !app || app.getAttribute('data-test-script-state') !== 'notRunning'; }}"""


def wait_idle(page: Page, timeout: int = TIMEOUT) -> None:
    """Wait until the run the last action started (if any starts within ``START_MS``) has finished."""
    page.wait_for_load_state("networkidle")
    try:
        page.wait_for_function(STARTED, timeout=START_MS, polling=20)
    except Exception:  # noqa: BLE001 - no run started (or it came and went between polls): nothing to wait for
        pass
    page.locator(f"{APP}[data-test-script-state='notRunning']").wait_for(timeout=timeout)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=timeout)
    expect(page.get_by_test_id("stSpinner")).to_have_count(0, timeout=timeout)  # shown only while a run works


def pick(page: Page, label: str, option: str) -> None:
    """Choose ``option`` in the select box labelled ``label``: the option reads ``option`` itself or, where the box
    names its options (the architecture's family), ``option · <its name>``."""
    box = page.get_by_test_id("stSelectbox").filter(has_text=label).first
    expect(box).to_be_visible(timeout=TIMEOUT)  # the first run of a server imports torch: it can take a while
    box.click()
    box.locator("input").fill(option)  # filters the list: a long one is virtualised, its far options not drawn
    page.get_by_role("option", name=re.compile(rf"^{re.escape(option)}( · .*)?$")).click()
    wait_idle(page)
