"""End-to-end: the lesson's step 11 (the loss landscape), its link into Why it works in that state (the lesson's own
twins, the landscape tab), and the 11 x 11 preview computed there with its progress bar."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect
from streamlit_wait import wait_idle

from explorer.ui import pages

TIMEOUT = 300_000


def test_a_lesson_step_opens_the_landscape_of_its_twins(page: Page, app_url: str, artifacts: Path) -> None:
    page.set_viewport_size({"width": 1400, "height": 1400})
    page.goto(f"{app_url}/lesson?lesson_step=11", timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)
    main = page.get_by_test_id("stMain")
    expect(main.get_by_text("11. Why it works (1): the loss landscape")).to_be_visible()
    expect(main.get_by_test_id("stPlotlyChart").first).to_contain_text("plain-20", timeout=TIMEOUT)
    link = main.get_by_role("link", name=re.compile("Open Why it works in this state"))
    href = link.get_attribute("href")
    assert href and href.startswith("why?") and "why_tab=Loss+landscape" in href and "why_size=8" in href

    page.goto(f"{app_url}/{href}", timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)
    expect(page.get_by_role("tab", name=pages.WHY.tab("landscape"), selected=True)).to_be_visible()
    # the lesson trained these twins in this server: the page has them already, with their accuracy
    expect(main.get_by_text(re.compile(r"plain-20 and ResNet-20.*8 epochs on 1,347 digits at 8 px"))).to_be_visible()
    expect(main.get_by_text(re.compile(r"Cost: 11 × 11 points.*G mult-adds"))).to_be_visible()
    main.get_by_role("button", name="Compute the 11 × 11 slices").click()
    expect(main.get_by_test_id("stProgress").first).to_be_visible(timeout=30_000)
    wait_idle(page, TIMEOUT)
    expect(main.get_by_text("plain-20: locally convex")).to_be_visible(timeout=TIMEOUT)
    expect(main.get_by_text("ResNet-20: locally convex")).to_be_visible()
    expect(main.get_by_role("button", name="Refine to 21 × 21")).to_be_visible()
    expect(page.get_by_test_id("stException")).to_have_count(0)
    page.screenshot(path=artifacts / "why_landscape_from_the_lesson.png")
