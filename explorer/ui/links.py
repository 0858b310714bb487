"""Links to an exact view: a page's URL path plus its state as query parameters.

The contract: a query parameter's name is the session-state key it sets (``explorer.ui.keys``), its
value the widget's value as text (lists comma-separated, booleans ``1``/``0``). ``?arch=resnet34&fm_stage=layer3``
on ``/feature_maps`` opens Feature maps for resnet34 at layer3. ``explorer.ui.url_state`` reads them back and
checks every value; this module only writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

__all__ = ["encode_value", "view_link"]


def encode_value(value: object) -> str:
    """A widget value as URL text: ``True`` -> ``"1"``, ``["a", "b"]`` -> ``"a,b"``, ``224`` -> ``"224"``."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return ",".join(encode_value(v) for v in value)
    return str(value)


def view_link(page: str, state: Mapping[str, object]) -> str:
    """A relative link, e.g. ``view_link("feature_maps", {"arch": "resnet34"})`` -> ``"feature_maps?arch=resnet34"``.

    ``page`` is the page's URL path as ``st.navigation`` names it (``""`` for Home).
    """
    query = urlencode({key: encode_value(value) for key, value in state.items() if value is not None})
    return f"{page}?{query}" if query else page
