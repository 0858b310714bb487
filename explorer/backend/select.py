"""Which backend runs the heavy paths: ``EXPLORER_BACKEND=local|ray`` (default ``local``) and ``RAY_ADDRESS``.

For ``ray``, optionally: ``EXPLORER_RAY_REPLICAS`` (replicas per deployment, or ``auto`` for Serve's
autoscaling with demand), ``EXPLORER_RAY_MAX_REPLICAS`` (autoscaling between 1 and this many replicas per
deployment), ``EXPLORER_RAY_GPUS`` (GPUs per replica; default one when this machine has CUDA),
``EXPLORER_RAY_TIMEOUT_S`` (each request's deadline, default 120) and ``EXPLORER_RAY_QUEUE`` (requests that may
wait per deployment, default 16).
"""

from __future__ import annotations

import os
import threading

from explorer.backend.errors import BackendError
from explorer.backend.local import LocalBackend
from explorer.backend.protocol import Backend

__all__ = ["BACKENDS", "configured", "current", "describe", "ray_options", "reset"]

BACKENDS = ("local", "ray")
_LOCK = threading.Lock()
_CURRENT: Backend | None = None


def ray_options(env: dict[str, str] | None = None) -> dict[str, object]:
    """The ``RayBackend`` options set in ``env`` (default ``os.environ``); an unreadable value is a sentence.

    Raises:
        BackendError: a value that is not a number (or ``auto`` for the replicas).
    """
    env = dict(os.environ if env is None else env)
    spec = {"EXPLORER_RAY_REPLICAS": ("num_replicas", int), "EXPLORER_RAY_MAX_REPLICAS": ("max_replicas", int),
            "EXPLORER_RAY_GPUS": ("num_gpus", float),
            "EXPLORER_RAY_TIMEOUT_S": ("timeout_s", float), "EXPLORER_RAY_QUEUE": ("max_queued_requests", int)}
    out: dict[str, object] = {}
    for var, (option, kind) in spec.items():
        raw = (env.get(var) or "").strip()
        if not raw:
            continue
        if option == "num_replicas" and raw == "auto":
            out[option] = "auto"
            continue
        try:
            value = kind(raw)
        except ValueError:
            raise BackendError(f"{var} must be a number{' or auto' if option == 'num_replicas' else ''}, "
                               f"not {raw!r}.") from None
        if value < 0 or (value == 0 and option != "num_gpus"):
            raise BackendError(f"{var} must be above zero, not {raw!r}.")
        out[option] = value
    if "max_replicas" in out:
        if out.get("num_replicas", "auto") != "auto":
            raise BackendError("Set EXPLORER_RAY_REPLICAS (a fixed number) or EXPLORER_RAY_MAX_REPLICAS "
                               "(autoscaling), not both.")
        out["num_replicas"] = "auto"
        out["autoscaling"] = {"min_replicas": 1, "max_replicas": out.pop("max_replicas")}
    return out


def _make(name: str) -> Backend:
    if name == "local":
        return LocalBackend()
    if name == "ray":
        try:
            from explorer.backend.ray_client import RayBackend
        except ImportError as err:
            raise BackendError(f"EXPLORER_BACKEND=ray needs Ray Serve, which is not installed ({err.name}): run "
                               "pip install -r requirements-scale.txt, or use EXPLORER_BACKEND=local.") from None
        return RayBackend(os.environ.get("RAY_ADDRESS") or None, **ray_options())  # type: ignore[arg-type]
    raise BackendError(f"EXPLORER_BACKEND must be one of {', '.join(BACKENDS)}, not {name!r}.")


def configured() -> str:
    """The backend's name as configured (``EXPLORER_BACKEND``, default ``local``), without making it."""
    return (os.environ.get("EXPLORER_BACKEND") or "local").strip().lower()


def current() -> Backend:
    """The configured backend, made once per process (again when ``EXPLORER_BACKEND`` changes).

    Raises:
        BackendError: an unknown name, Ray missing, or a Ray cluster that cannot be reached.
    """
    global _CURRENT
    name = configured()
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
