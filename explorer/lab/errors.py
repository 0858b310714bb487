"""The lab's errors: each one a sentence a student understands, shown on the page with ``st.error``."""

from __future__ import annotations

from explorer.errors import ExplorerError

__all__ = ["DatasetError", "LabError", "TrainedModelError"]


class LabError(ExplorerError):
    """A lab setting that cannot work (bad depth, batch, learning rate, ...)."""


class DatasetError(LabError):
    """A dataset that is not on this machine or cannot be read."""


class TrainedModelError(LabError):
    """A file that is not a model saved by the lab."""
