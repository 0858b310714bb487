"""What a backend says when it cannot answer: sentences a student understands, never a traceback."""

from __future__ import annotations

from explorer.errors import ExplorerError
from explorer.loading import CheckpointMissing  # raised where a model loads; the client sends the bytes again

__all__ = ["BackendError", "CheckpointMissing", "ServerBusy", "ServerUnavailable"]


class BackendError(ExplorerError):
    """The model server could not answer this request (the request itself may be fine: try again)."""


class ServerBusy(BackendError):
    """The server's queue is full. ``ahead`` is how many requests were waiting when this one was turned away."""

    def __init__(self, ahead: int) -> None:
        self.ahead = int(ahead)
        super().__init__(f"The server is busy, {self.ahead} requests ahead — try again in a moment.")

    def __reduce__(self) -> tuple:  # keeps ``ahead`` across processes (pickling)
        return (type(self), (self.ahead,))


class ServerUnavailable(BackendError):
    """A model server (replica) died or passed its deadline; a new one is started, so a retry usually works."""

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        super().__init__(f"The model server stopped answering{f' ({detail})' if detail else ''}; try again.")

    def __reduce__(self) -> tuple:
        return (type(self), (self.detail,))
