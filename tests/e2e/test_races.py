"""End-to-end: interleavings a class produces and a single careful user never does, replayed in a fixed order.

The classroom soak once left a student on a blank page ("Bad delta path index 8", the React tree gone): the
student uploaded a photo on Feature maps and clicked another page before the upload's rerun had gone out. The
order is replayed here by holding the upload and the server's messages (a busy server), so it is not left to luck.
"""

from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import Page, Route, WebSocketRoute, expect
from streamlit_wait import wait_idle

TIMEOUT = 120_000


class _HeldServer:
    """Stands between the page and the app's websocket; while ``hold`` is on, the server's messages wait."""

    def __init__(self) -> None:
        self.hold = False
        self.sent = 0  # messages from the page
        self._queue: list[str | bytes] = []
        self._page_side: WebSocketRoute | None = None

    def route(self, ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        self._page_side = ws
        server.on_message(lambda m: self._queue.append(m) if self.hold else ws.send(m))
        ws.on_message(self._from_page(server))

    def _from_page(self, server: WebSocketRoute):
        def send(message: str | bytes) -> None:
            self.sent += 1
            server.send(message)
        return send

    def release(self) -> None:
        self.hold = False
        for message in self._queue:
            self._page_side.send(message)
        self._queue.clear()


def test_an_upload_that_lands_after_a_page_switch_leaves_a_working_page(page: Page, app_url: str,
                                                                        artifacts: Path, tmp_path: Path) -> None:
    from PIL import Image

    photo = tmp_path / "photo.jpg"
    Image.radial_gradient("L").convert("RGB").resize((400, 300)).save(photo)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    server = _HeldServer()
    page.route_web_socket("**/_stcore/stream", server.route)
    page.goto(f"{app_url}/feature_maps", timeout=TIMEOUT)
    wait_idle(page)

    held: list[Route] = []
    page.route("**/_stcore/upload_file/**", lambda route: held.append(route) if not held else route.continue_())
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(photo)
    deadline = time.monotonic() + 30
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert held, "the upload never started"

    server.hold = True  # a busy server: its answers to what follows arrive late, together
    before = server.sent
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Predictions & attributions").click()
    held[0].continue_()  # the upload finishes after the click, and the uploader asks for its rerun
    deadline = time.monotonic() + 10
    while server.sent < before + 2 and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert server.sent >= before + 2, "the upload's rerun was not sent: the interleaving did not happen"
    page.wait_for_timeout(300)
    server.release()
    page.wait_for_timeout(2000)  # the held messages are applied as they arrive: a broken page has said so by now
    if not errors:
        wait_idle(page)
    page.screenshot(path=artifacts / "race-upload-then-switch.png", full_page=True)

    assert errors == []  # the old failure: "Bad delta path index 8 (should be between [0, 0])", a blank page
    expect(page.get_by_test_id("stSidebarNav")).to_be_visible()  # the page is drawn, not blank
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_text("Copy link to this view")).to_be_visible()
    # Streamlit runs the later request's page (here Feature maps, the upload's); either way the photo is kept
    expect(page.get_by_text("upload: photo.jpg").first).to_be_visible()
