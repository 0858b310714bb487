"""A classroom in headless Chromium: N browser sessions touring every page of a running app at once.

Each session opens the app, then loops over the pages through the sidebar's links (one Streamlit session, as
a student clicks), uploads a photo on its first Feature maps visit and runs the default attribution set on its
first Predictions visit. Every visit records how long the page took to settle and any exception box or error
message on it. The server's resident memory is sampled every second.

A memory leak shows as a floor that rises once the caches a class fills are full: the run goes on until every
session has toured every page once (uploaded, run the attributions) and then for ``watch`` seconds more, within
``max_seconds``, and compares the lowest RSS of the last ``WINDOW`` seconds with the lowest of the first
``WINDOW`` seconds after that point. Lowest, because four sessions' attributions lift RSS by gigabytes for a
few seconds and give it back: a single sample taken during one says nothing about a leak.

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
WINDOW = 20.0  # seconds of RSS samples whose lowest value is a floor


@dataclass(frozen=True)
class Visit:
    session: int
    page: str
    seconds: float
    problems: tuple[str, ...]  # exception boxes and error messages seen on the page
    at: float = 0.0  # seconds since the soak's start when the visit ended


@dataclass
class SoakResult:
    visits: list[Visit] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, bytes)
    toured: dict[int, float] = field(default_factory=dict)  # session -> seconds since start of its first full tour
    broken: set[int] = field(default_factory=set)  # sessions that broke down (a problem each)

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
        attributions) had all done so: by then the caches a class fills are full. ``nan`` when none did."""
        return max(self.toured.values(), default=float("nan"))

    def _floor(self, start: float, end: float) -> int | None:
        inside = [b for t, b in self.rss if start <= t <= end]
        return min(inside) if inside else None

    def rss_growth(self) -> float:
        """The lowest server RSS of the last ``WINDOW`` seconds over the lowest of the ``WINDOW`` seconds after
        :meth:`warm_at` (1.0 = flat): a floor that rises once the caches are full is what a leak shows.
        ``nan`` when the run has no such two windows apart (the sessions warmed too late)."""
        warm, end = self.warm_at(), self.rss[-1][0] if self.rss else 0.0
        if not warm + 2 * WINDOW <= end:
            return float("nan")
        base, last = self._floor(warm, warm + WINDOW), self._floor(end - WINDOW, end)
        return last / base if base and last else float("nan")

    def summary(self) -> str:
        median = statistics.median(v.seconds for v in self.visits) if self.visits else float("nan")
        return (f"{len(self.visits)} visits, {len(self.problems)} with problems, page-visit p50 {median:.2f} s, "
                f"p95 {self.latency(0.95):.2f} s; {len(self.toured)} sessions toured every page, the last at "
                f"{self.warm_at():.0f} s of {self.rss[-1][0] if self.rss else 0:.0f} s; lowest server RSS "
                f"{self._mb(self.warm_at(), self.warm_at() + WINDOW)} MB then, {self._mb(*self._last())} MB at "
                f"the end: growth {self.rss_growth():.3f}")

    def _last(self) -> tuple[float, float]:
        end = self.rss[-1][0] if self.rss else 0.0
        return end - WINDOW, end

    def _mb(self, start: float, end: float) -> str:
        floor = self._floor(start, end)
        return "-" if floor is None else str(floor >> 20)


@dataclass(frozen=True)
class Deadline:
    """When the soak stops: ``seconds`` in at the earliest, and not before ``watch`` seconds after every
    session has toured every page once; ``limit`` seconds in at the latest."""

    start: float  # time.monotonic() at the start
    seconds: float
    watch: float
    limit: float
    sessions: int

    def passed(self, result: SoakResult) -> bool:
        end = self.limit
        if len(result.toured.keys() | result.broken) >= self.sessions:
            end = min(self.limit, max(self.seconds, result.warm_at() + self.watch))
        return time.monotonic() - self.start >= end


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


async def _student(browser, url: str, n: int, deadline: Deadline, photo: Path, result: SoakResult,
                   shots: Path | None) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(SETTLE_MS)
    # what the browser saw go wrong, for the report of a session that breaks down (a blank page was seen once)
    browser_errors: list[str] = []
    page.on("pageerror", lambda err: browser_errors.append(f"page error: {str(err)[:200]}"))
    page.on("crash", lambda _page: browser_errors.append("the tab crashed"))
    page.on("console", lambda msg: msg.type == "error" and browser_errors.append(f"console: {msg.text[:200]}"))
    uploaded = attributed = False
    where = "home (open)"  # the visit under way, for the report of a session that breaks down
    start = time.monotonic()
    try:
        await page.goto(url)
        await _settle(page)
        result.visits.append(Visit(n, "home (open)", time.monotonic() - start, await _problems(page),
                                   time.monotonic() - deadline.start))
        while not deadline.passed(result):
            for link, path in TOUR:
                if deadline.passed(result):
                    break
                start, where = time.monotonic(), path or "home"
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
                result.visits.append(Visit(n, path or "home", time.monotonic() - start, await _problems(page),
                                           time.monotonic() - deadline.start))
                if (link, path) == TOUR[-1]:
                    # every page seen once: this session is warm
                    result.toured.setdefault(n, time.monotonic() - deadline.start)
    except Exception as err:  # noqa: BLE001 - a session that breaks down is a problem to report, not a crash
        result.broken.add(n)
        seen = await _problems(page)
        problem = f"driver, on {where} after {time.monotonic() - start:.0f} s: {type(err).__name__}: {str(err)[:300]}"
        result.visits.append(Visit(n, "session", 0.0, (problem, *seen, *browser_errors[-5:]),
                                   time.monotonic() - deadline.start))
        if shots is not None:
            await page.screenshot(path=shots / f"soak-session-{n}.png", full_page=True)
    finally:
        await context.close()


async def _sample_rss(pid: int, deadline: Deadline, result: SoakResult) -> None:
    while not deadline.passed(result):
        result.rss.append((time.monotonic() - deadline.start, rss_bytes(pid)))
        await asyncio.sleep(1)


async def _soak(url: str, server_pid: int, deadline: Deadline, photo: Path, chromium: str,
                shots: Path | None) -> SoakResult:
    from playwright.async_api import async_playwright

    result = SoakResult()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=FLAGS)
        try:
            await asyncio.gather(
                _sample_rss(server_pid, deadline, result),
                *(_student(browser, url, i, deadline, photo, result, shots) for i in range(deadline.sessions)),
            )
        finally:
            await browser.close()
    result.rss.append((time.monotonic() - deadline.start, rss_bytes(server_pid)))  # after the last visit settled
    return result


def soak(url: str, server_pid: int, *, sessions: int, seconds: float, photo: Path, watch: float = 60.0,
         limit: float | None = None, chromium: str = "/usr/bin/chromium", shots: Path | None = None) -> SoakResult:
    """Run ``sessions`` students against ``url`` (loopback) for ``seconds``, and on until ``watch`` seconds
    after every session has toured every page once, within ``limit`` seconds (default ``2.5 * seconds``);
    sample ``server_pid``'s RSS. A session that breaks down leaves a screenshot in ``shots`` (when given)."""
    if not url.startswith(("http://127.", "http://localhost")):
        raise ValueError(f"the soak only targets loopback addresses, not {url}")
    deadline = Deadline(time.monotonic(), seconds, watch, 2.5 * seconds if limit is None else limit, sessions)
    # its own thread: pytest-playwright's sync API may own this thread's event loop
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _soak(url, server_pid, deadline, photo, chromium, shots)).result()
