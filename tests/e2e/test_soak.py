"""A short classroom soak in the browser: several sessions touring every page at once, with an upload each.

CI runs it at 4 sessions for 2 minutes, and on until a minute after every session has toured every page once
(5 minutes at most); ``bench/bench_soak.py`` runs the full 8 sessions x 10 minutes.
Pass: no exception box, no error message and no broken session, and the server's memory flat: the lowest RSS
of the last 20 s within 15 % of the lowest of the 20 s after every session was warm (see ``soak.SoakResult``).
"""

from __future__ import annotations

import os
from pathlib import Path

from soak import soak

SESSIONS = int(os.environ.get("SOAK_SESSIONS", "4"))
SECONDS = float(os.environ.get("SOAK_SECONDS", "120"))


def test_sessions_tour_every_page_at_once_without_errors(app_server: tuple[str, int], tmp_path: Path,
                                                         artifacts: Path) -> None:
    from PIL import Image

    url, pid = app_server
    photo = tmp_path / "photo.jpg"
    Image.radial_gradient("L").convert("RGB").resize((400, 300)).save(photo)
    result = soak(url, pid, sessions=SESSIONS, seconds=SECONDS, photo=photo, shots=artifacts)
    (artifacts / "soak.txt").write_text(result.summary() + "\n" + "\n".join(map(str, result.visits)) + "\n")
    assert not result.problems, f"{result.summary()}; e.g. {result.problems[:3]}"
    pages = {v.page for v in result.visits}
    assert {"architecture", "blocks", "feature_maps", "attributions", "lab"} <= pages, pages
    growth = result.rss_growth()
    assert growth == growth, f"no memory verdict: the sessions did not all warm up in time; {result.summary()}"
    assert growth <= 1.15, result.summary()
