"""The one base class for every error a user's input can cause."""

from __future__ import annotations

__all__ = ["ExplorerError"]


class ExplorerError(ValueError):
    """A problem with what the user chose or uploaded; its message is a sentence a student understands.

    Pages catch it and show it with ``st.error``; the session goes on.
    """
