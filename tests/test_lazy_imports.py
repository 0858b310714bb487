"""Cold start (issue 13): the app's frame and its first page load no attribution library. Captum (with the
matplotlib and scipy it pulls in) and the grad-cam package load with the first attribution."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("captum", "matplotlib", "scipy.stats", "pytorch_grad_cam")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_the_frame_and_the_registry_load_no_attribution_library() -> None:
    code = "import explorer.ui.url_params, explorer.ui.url_state, explorer.ui.sidebar, explorer.attribution as a\n"
    code += "assert a.METHODS['integrated_gradients'].library == 'Captum'"
    assert _loaded_after(code) == []


def test_the_first_attribution_loads_captum() -> None:
    code = ("import torch\nfrom explorer import attribution\nfrom explorer.models import build\n"
            "net = build('resnet18', num_classes=4).eval()\n"
            "attribution.attribute(net, torch.rand(1, 3, 32, 32), 0, 'saliency')")
    assert "captum" in _loaded_after(code)


def test_the_first_page_loads_no_pandas() -> None:
    """Home, the page a class opens first, draws without pandas (about 0.2–0.6 s of a cold start here); the
    pages with tables load it with their first table."""
    code = ("import sys\nfrom streamlit.testing.v1 import AppTest\nassert 'pandas' not in sys.modules\n"
            "at = AppTest.from_file('app.py', default_timeout=240)\nat.run()\nassert not at.exception, at.exception\n"
            "assert any('| torch |' in m.value for m in at.markdown)\n"
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         check=True, env={**__import__("os").environ, "EXPLORER_OFFLINE": "1"})
    assert out.stdout.strip().splitlines()[-1] == "False"
