"""The ``ray`` backend: the app's side of Ray Serve. Connects, deploys a configuration on first use, calls it
with a deadline, and turns every failure of the server into a sentence (:mod:`explorer.backend.errors`).

``RAY_ADDRESS`` (or ``address=``) names a running cluster ("ray://host:10001", "auto", "127.0.0.1:6379");
without one a local Ray instance is started on loopback. Imports Ray: load it only for the ``ray`` backend.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
from ray import exceptions as ray_errors
from ray import serve
from ray.serve import exceptions as serve_errors
from ray.serve.handle import DeploymentHandle
from torch import nn

from explorer.activations import Capture
from explorer.attribution import Attribution, Faithfulness
from explorer.backend.errors import BackendError, CheckpointMissing, ServerBusy, ServerUnavailable
from explorer.backend.ray_race import RemoteRace
from explorer.backend.ray_serve import BATCH_WAIT_S, MAX_BATCH_SIZE, application
from explorer.backend.request import ImageInput
from explorer.blocks import BlockTrace
from explorer.config import ModelConfig
from explorer.errors import ExplorerError
from explorer.lab import LabDataset, RaceRecipe
from explorer.loading import Checkpoint
from explorer.predict import Prediction

__all__ = ["RayBackend", "connect"]

_ROOT = str(Path(__file__).resolve().parents[2])
_PREFIX = "explorer-"  # Serve application names of this app


def connect(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address``, or start a local Ray instance on loopback (no dashboard), then Serve
    without an HTTP proxy (the app talks to it through handles). Does nothing when already connected.

    Raises:
        BackendError: Ray could not be reached or started.
    """
    if not ray.is_initialized():
        opts: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
        if address:
            opts["address"] = address
        else:
            opts.update(num_cpus=num_cpus, _node_ip_address="127.0.0.1",
                        runtime_env={"env_vars": {"PYTHONPATH": _ROOT}})
        try:
            _init(opts, local=not address)
        except Exception as err:  # noqa: BLE001 - connection failures come in many types
            where = f" at {address}" if address else ""
            raise BackendError(f"Could not reach the Ray cluster{where} ({type(err).__name__}: {err}). Check "
                               "RAY_ADDRESS or use EXPLORER_BACKEND=local.") from None
    serve.start(proxy_location="Disabled")


def _init(opts: dict[str, Any], *, local: bool) -> None:
    """``ray.init(**opts)``. A local instance is started from a thread that lives as long as the process: Ray's
    head processes die with the *thread* that started them (they are spawned with a parent-death signal), and
    Streamlit runs each script run in a thread of its own, which ends with the run."""
    if not local or threading.current_thread() is threading.main_thread():
        ray.init(**opts)
        return
    done: dict[str, BaseException | None] = {}
    ready = threading.Event()

    def keeper() -> None:
        try:
            ray.init(**opts)
            done["error"] = None
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            done["error"] = err
        ready.set()
        threading.Event().wait()  # never returns: the head processes live with this thread

    threading.Thread(target=keeper, name="explorer-ray-keeper", daemon=True).start()
    ready.wait()
    if done["error"] is not None:
        raise done["error"]


def _unwrap(err: ray_errors.RayTaskError) -> Exception:
    """The exception raised inside the replica (Ray wraps it with the remote traceback)."""
    cause = getattr(err, "cause", None)
    return cause if isinstance(cause, BaseException) else err


class RayBackend:
    """Ray Serve backend. Deployment options apply to the configurations it deploys itself (see
    :func:`explorer.backend.ray_serve.application`); ``app_prefix`` names its Serve applications."""

    name = "ray"

    def __init__(
        self, address: str | None = None, *, timeout_s: float = 120.0, num_replicas: int | str = 1,
        max_ongoing_requests: int = 8, max_queued_requests: int = 16, num_cpus: float = 1,
        num_gpus: float | None = None, max_checkpoints: int = 2, max_batch_size: int = MAX_BATCH_SIZE,
        batch_wait_s: float = BATCH_WAIT_S, threads: int | None = None, app_prefix: str = _PREFIX,
        autoscaling: dict[str, Any] | None = None,
    ) -> None:
        connect(address)
        self.prefix = app_prefix
        self.address = address or "a local Ray instance (127.0.0.1)"
        self.timeout_s = timeout_s
        self.options = dict(num_replicas=num_replicas, max_ongoing_requests=max_ongoing_requests,
                            max_queued_requests=max_queued_requests, num_cpus=num_cpus, num_gpus=num_gpus,
                            max_checkpoints=max_checkpoints, max_batch_size=max_batch_size, batch_wait_s=batch_wait_s,
                            threads=threads, autoscaling=autoscaling)
        self._handles: dict[str, DeploymentHandle] = {}
        self._files: OrderedDict[str, Checkpoint] = OrderedDict()  # checkpoints to send again when a replica lacks one
        self._lock = threading.Lock()

    def hold(self, checkpoint: Checkpoint) -> None:
        """Keep ``checkpoint``'s bytes, to send to a replica that answers it does not have them (the last
        ``max_checkpoints`` are kept)."""
        with self._lock:
            self._files[checkpoint.sha256] = checkpoint
            self._files.move_to_end(checkpoint.sha256)
            while len(self._files) > max(1, int(self.options["max_checkpoints"])):
                self._files.popitem(last=False)

    # ------------------------------------------------------------------------------------------- deployments

    def handle(self, config: ModelConfig) -> DeploymentHandle:
        """The handle of ``config``'s deployment, deployed (and its model loaded) on first use."""
        name = self.prefix + config.key
        with self._lock:
            if name not in self._handles:
                try:
                    self._handles[name] = serve.get_app_handle(name)
                except Exception:  # noqa: BLE001 - "no such application": deploy it
                    self._handles[name] = self._deploy(config, name)
            return self._handles[name]

    def _deploy(self, config: ModelConfig, name: str) -> DeploymentHandle:
        try:
            return serve.run(application(config, **self.options), name=name, route_prefix=None)
        except Exception as err:  # noqa: BLE001 - a replica that cannot start fails in many ways
            raise BackendError(f"The model server for {config.key} could not start ({type(err).__name__}); try "
                               "again in a moment, or ask whoever runs the server to look at its logs.") from None

    def _call(self, config: ModelConfig, method: str, args: tuple, timeout_s: float | None) -> Any:
        """Call ``method`` of ``config``'s deployment; a missing checkpoint is sent once with its bytes."""
        try:
            return self._call_once(config, method, args, None, timeout_s)
        except CheckpointMissing:
            with self._lock:
                checkpoint = self._files.get(config.checkpoint or "")
            if checkpoint is None:
                raise
            return self._call_once(config, method, args, checkpoint, timeout_s)

    def _call_once(self, config: ModelConfig, method: str, args: tuple, checkpoint: Checkpoint | None,
                   timeout_s: float | None) -> Any:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        response = getattr(self.handle(config), method).remote(config, *args, checkpoint=checkpoint)
        try:
            return response.result(timeout_s=timeout)
        except TimeoutError:
            response.cancel()
            raise ServerUnavailable(f"no answer within {timeout:g} s") from None
        except serve_errors.BackPressureError as err:
            raise ServerBusy(int(err.args[0]) if err.args else 0) from None
        except ray_errors.RayTaskError as err:
            cause = _unwrap(err)
            if isinstance(cause, ExplorerError):
                raise cause from None
            if isinstance(cause, serve_errors.BackPressureError):
                raise ServerBusy(int(cause.args[0]) if cause.args else 0) from None
            raise ServerUnavailable(f"{type(cause).__name__} in the model server") from None
        except (ray_errors.RayError, serve_errors.RayServeException) as err:
            raise ServerUnavailable(type(err).__name__) from None

    # -------------------------------------------------------------------------------------------- the paths

    def predict(
        self, config: ModelConfig, image: ImageInput, *, k: int = 5, knockout: Sequence[str] = (),
        fast: bool | None = None, timeout_s: float | None = None,
    ) -> Prediction:
        return self._call(config, "predict", (image, k, tuple(knockout), fast), timeout_s)

    def capture(
        self, config: ModelConfig, image: ImageInput, layers: Sequence[str], *, fast: bool | None = None,
        timeout_s: float | None = None,
    ) -> Capture:
        return self._call(config, "capture", (image, tuple(layers), fast), timeout_s)

    def attribute(
        self, config: ModelConfig, image: ImageInput, target: int, method: str, *, layer: str | None = None,
        timeout_s: float | None = None, **options: Any,
    ) -> Attribution:
        return self._call(config, "attribute", (image, target, method, layer, options), timeout_s)

    def sanity(
        self, config: ModelConfig, image: ImageInput, target: int, method: str, from_layer: str, *,
        timeout_s: float | None = None,
    ) -> tuple[Attribution, Attribution]:
        return self._call(config, "sanity", (image, target, method, from_layer), timeout_s)

    def faithfulness(
        self, config: ModelConfig, image: ImageInput, target: int, attribution: Attribution, *, steps: int = 16,
        timeout_s: float | None = None,
    ) -> Faithfulness:
        return self._call(config, "faithfulness", (image, target, attribution, steps), timeout_s)

    def trace_block(
        self, config: ModelConfig, image: ImageInput, block: str, *, timeout_s: float | None = None,
    ) -> BlockTrace:
        return self._call(config, "trace_block", (image, block), timeout_s)

    def train(
        self, models: Mapping[str, nn.Module], data: LabDataset, recipe: RaceRecipe, *,
        abandon_after: float | None = None,
    ) -> RemoteRace:
        """The race in a Ray actor of ``num_cpus`` CPUs (see :mod:`explorer.backend.ray_race`)."""
        return RemoteRace(models, data, recipe, abandon_after=abandon_after, num_cpus=self.options["num_cpus"],
                          timeout_s=self.timeout_s).start()

    def stats(self, config: ModelConfig) -> dict[str, Any]:
        """One replica's :meth:`ModelServer.stats` (batch sizes seen, models held, device)."""
        return self.handle(config).stats.remote().result(timeout_s=self.timeout_s)

    def replicas(self) -> int:
        """Running replicas over this app's deployments."""
        try:
            apps = serve.status().applications
        except Exception:  # noqa: BLE001 - a status call must never break the Home page
            return 0
        return sum(n for name, app in apps.items() if name.startswith(self.prefix)
                   for dep in app.deployments.values() for state, n in dep.replica_states.items()
                   if str(getattr(state, "value", state)).upper() == "RUNNING")

    def describe(self) -> str:
        n = self.replicas()
        return f"Ray Serve at {self.address}, {n} replica{'' if n == 1 else 's'}"

    def close(self) -> None:
        """Delete this app's deployments (the Ray connection stays)."""
        with self._lock:
            for name in list(self._handles):
                try:
                    serve.delete(name)
                except Exception:  # noqa: BLE001 - best effort on shutdown
                    pass
            self._handles.clear()
