"""The errors of the attribution methods: sentences a student understands (``ExplorerError`` subclasses)."""

from __future__ import annotations

from explorer.errors import ExplorerError

__all__ = ["AttributionError", "CostError"]


class AttributionError(ExplorerError):
    """An attribution method could not run with these settings (bad option, failure inside Captum)."""


class CostError(AttributionError):
    """A setting needs more passes than the CPU cap allows."""
