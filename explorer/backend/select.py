"""Which backend runs the heavy paths: ``EXPLORER_BACKEND=local|ray`` (default ``local``) and ``RAY_ADDRESS``."""

from __future__ import annotations

import os
import threading

from explorer.backend.errors import BackendError
from explorer.backend.local import LocalBackend
from explorer.backend.protocol import Backend

__all__ = ["BACKENDS", "current", "describe", "reset"]

BACKENDS = ("local", "ray")
_LOCK = threading.Lock()
_CURRENT: Backend | None = None


def _make(name: str) -> Backend:
    if name == "local":
        return LocalBackend()
    if name == "ray":
        try:
            from explorer.backend.ray_client import RayBackend
        except ImportError as err:
            raise BackendError(f"EXPLORER_BACKEND=ray needs Ray Serve, which is not installed ({err.name}): run "
                               "pip install -r requirements-scale.txt, or use EXPLORER_BACKEND=local.") from None
        return RayBackend(os.environ.get("RAY_ADDRESS") or None)
    raise BackendError(f"EXPLORER_BACKEND must be one of {', '.join(BACKENDS)}, not {name!r}.")


def current() -> Backend:
    """The configured backend, made once per process (again when ``EXPLORER_BACKEND`` changes).

    Raises:
        BackendError: an unknown name, Ray missing, or a Ray cluster that cannot be reached.
    """
    global _CURRENT
    name = (os.environ.get("EXPLORER_BACKEND") or "local").strip().lower()
    with _LOCK:
        if _CURRENT is None or _CURRENT.name != name:
            if _CURRENT is not None:
                _CURRENT.close()
            _CURRENT = _make(name)
        return _CURRENT


def describe() -> str:
    """Where the heavy work runs, for the Home page; a sentence saying what is wrong when it cannot run."""
    try:
        return current().describe()
    except BackendError as err:
        return str(err)


def reset() -> None:
    """Forget the current backend (closing it); the next :func:`current` makes a fresh one."""
    global _CURRENT
    with _LOCK:
        if _CURRENT is not None:
            _CURRENT.close()
        _CURRENT = None
