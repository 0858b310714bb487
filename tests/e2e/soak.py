"""A classroom in headless Chromium: N browser sessions touring every page of a running app at once.

Each session opens the app, then loops over the pages through the sidebar's links (one Streamlit session, as
a student clicks), uploads a photo on its first Feature maps visit and runs the default attribution set on its
first Predictions visit. Every visit records how long the page took to settle and any exception box or error
message on it. The server's resident memory is sampled as it goes.

Used by ``tests/e2e/test_soak.py`` (the short version CI runs) and ``bench/bench_soak.py`` (8 sessions x 10
minutes). Only loopback URLs; every loop is bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from streamlit_wait import APP

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
TOUR = [  # (sidebar link, URL path)
    ("Architecture", "architecture"),
    ("Blocks & shortcuts", "blocks"),
    ("Feature maps", "feature_maps"),
    ("Predictions & attributions", "attributions"),
    ("Degradation lab", "lab"),
    ("Home", ""),
]
SETTLE_MS = 180_000


@dataclass(frozen=True)
class Visit:
    session: int
    page: str
    seconds: float
    problems: tuple[str, ...]  # exception boxes and error messages seen on the page


@dataclass
class SoakResult:
    visits: list[Visit] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, bytes)
    toured: dict[int, float] = field(default_factory=dict)  # session -> seconds since start of its first full tour

    @property
    def problems(self) -> list[Visit]:
        return [v for v in self.visits if v.problems]

    def latency(self, q: float) -> float:
        """The ``q`` quantile (0..1) of page-visit seconds."""
        times = sorted(v.seconds for v in self.visits)
        if not times:
            return float("nan")
        return times[min(len(times) - 1, int(q * len(times)))]

    def warm_at(self) -> float:
        """Seconds since the start when the sessions that toured every page once (uploaded a photo, ran the
        attributions) had all done so, and at least a third of the run: by then the caches a class fills are
        full. On a busy machine a session held up behind the others' attributions may never finish a tour."""
        end = self.rss[-1][0] if self.rss else 0.0
        return max([end / 3, *self.toured.values()])

    def rss_growth(self) -> float:
        """Server RSS at the end over its value once the sessions were warm (1.0 = flat): growth after the
        caches are full, which is what a leak would show."""
        if len(self.rss) < 3:
            return float("nan")
        base = min(self.rss, key=lambda s: abs(s[0] - self.warm_at()))[1]
        return self.rss[-1][1] / base

    def summary(self) -> str:
        median = statistics.median(v.seconds for v in self.visits) if self.visits else float("nan")
        return (f"{len(self.visits)} visits, {len(self.problems)} with problems, page-visit p50 {median:.2f} s, "
                f"p95 {self.latency(0.95):.2f} s, server RSS end / once every session was warm "
                f"({self.warm_at():.0f} s; {len(self.toured)} sessions toured every page) {self.rss_growth():.3f}")


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def _settle(page) -> None:
    """Wait until Streamlit has finished the run the last action started."""
    from playwright.async_api import expect

    await page.wait_for_timeout(400)  # the run starts a moment after the action (see streamlit_wait)
    await page.locator(f"{APP}[data-test-script-state='notRunning']").wait_for(timeout=SETTLE_MS)
    await expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=SETTLE_MS)


async def _problems(page) -> tuple[str, ...]:
    found = [f"exception: {t[:300]}" for t in await page.get_by_test_id("stException").all_inner_texts()]
    found += [f"error: {t[:300]}" for t in await page.get_by_test_id("stAlertContentError").all_inner_texts()]
    return tuple(found)


async def _student(browser, url: str, n: int, t0: float, deadline: float, photo: Path, result: SoakResult,
                   shots: Path | None) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(SETTLE_MS)
    uploaded = attributed = False
    try:
        start = time.monotonic()
        await page.goto(url)
        await _settle(page)
        result.visits.append(Visit(n, "home (open)", time.monotonic() - start, await _problems(page)))
        while time.monotonic() < deadline:
            for link, path in TOUR:
                if time.monotonic() >= deadline:
                    break
                start = time.monotonic()
                await page.get_by_test_id("stSidebarNav").get_by_role("link", name=link, exact=True).click()
                await page.wait_for_url(lambda u, path=path: urlparse(u).path.strip("/") == path)  # query aside
                await _settle(page)
                if path == "feature_maps" and not uploaded:
                    await page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(photo)
                    await _settle(page)
                    uploaded = True
                if path == "attributions" and not attributed:
                    await page.get_by_role("button", name="Run", exact=True).first.click()
                    await _settle(page)
                    attributed = True
                result.visits.append(Visit(n, path or "home", time.monotonic() - start, await _problems(page)))
                if (link, path) == TOUR[-1]:
                    result.toured.setdefault(n, time.monotonic() - t0)  # every page seen once: this session is warm
    except Exception as err:  # noqa: BLE001 - a session that breaks down is a problem to report, not a crash
        seen = await _problems(page)
        result.visits.append(Visit(n, "session", 0.0, (f"driver: {type(err).__name__}: {str(err)[:300]}", *seen)))
        if shots is not None:
            await page.screenshot(path=shots / f"soak-session-{n}.png", full_page=True)
    finally:
        await context.close()


async def _sample_rss(pid: int, deadline: float, result: SoakResult, start: float) -> None:
    while time.monotonic() < deadline:
        result.rss.append((time.monotonic() - start, rss_bytes(pid)))
        await asyncio.sleep(2)
    result.rss.append((time.monotonic() - start, rss_bytes(pid)))


async def _soak(url: str, server_pid: int, sessions: int, seconds: float, photo: Path, chromium: str,
                shots: Path | None) -> SoakResult:
    from playwright.async_api import async_playwright

    result = SoakResult()
    start = time.monotonic()
    deadline = start + seconds
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=FLAGS)
        try:
            await asyncio.gather(
                _sample_rss(server_pid, deadline, result, start),
                *(_student(browser, url, i, start, deadline, photo, result, shots) for i in range(sessions)),
            )
        finally:
            await browser.close()
    result.rss.append((time.monotonic() - start, rss_bytes(server_pid)))  # after the last visit settled
    return result


def soak(url: str, server_pid: int, *, sessions: int, seconds: float, photo: Path,
         chromium: str = "/usr/bin/chromium", shots: Path | None = None) -> SoakResult:
    """Run ``sessions`` students against ``url`` (loopback) for ``seconds``; sample ``server_pid``'s RSS.
    A session that breaks down leaves a screenshot in ``shots`` (when given)."""
    if not url.startswith(("http://127.", "http://localhost")):
        raise ValueError(f"the soak only targets loopback addresses, not {url}")
    # its own thread: pytest-playwright's sync API may own this thread's event loop
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _soak(url, server_pid, sessions, seconds, photo, chromium, shots)).result()
