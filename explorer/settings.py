"""Server settings read from the environment (``EXPLORER_CALL_SECONDS``, ``EXPLORER_RACE_SECONDS``, ...)."""

from __future__ import annotations

import os

__all__ = ["positive_number"]


def positive_number(name: str, default: float) -> float:
    """The environment variable ``name`` as a positive number; ``default`` when it is unset, malformed or not
    positive (a bad setting falls back rather than failing every page)."""
    try:
        value = float(os.environ.get(name, "").strip() or default)
    except ValueError:
        return default
    return value if value > 0 else default
