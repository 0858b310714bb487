"""The Ray Serve side: one deployment per model configuration, the model loaded once per replica.

A replica (:class:`ModelServer`) loads its configuration at start (on the GPU when the replica was given one),
decodes each request's image bytes with the app's own safe decoder, and answers:

* forward-only predictions through ``@serve.batch``: concurrent students' images go through the network as one
  batch of up to ``max_batch_size`` (8);
* knock-out predictions, Feature maps captures and attributions one by one (each holds the model's lock, as in
  the app).

A checkpoint deployment holds the users' checkpoints in an LRU keyed by hash (``max_checkpoints``); a request
names its checkpoint by hash, and the client sends the bytes (``checkpoint=``) only when this replica answers
:class:`~explorer.backend.errors.CheckpointMissing`. Imports Ray: load this module only for the ``ray`` backend.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from ray import serve

from explorer.activations import Capture
from explorer.attribution import Attribution, Faithfulness
from explorer.backend.batch import predict_batch
from explorer.backend.errors import BackendError
from explorer.backend.local import LocalBackend
from explorer.backend.request import ImageInput
from explorer.blocks import BlockTrace
from explorer.config import ModelConfig
from explorer.loading import Checkpoint, ModelCache
from explorer.predict import Prediction

__all__ = ["BATCH_WAIT_S", "MAX_BATCH_SIZE", "ModelDeployment", "ModelServer", "application"]

MAX_BATCH_SIZE = 8
BATCH_WAIT_S = 0.05  # a batch waits this long for more requests once one came (ResNet-50 at 224 px: ~0.1 s an image)


class ModelServer:
    """One replica serving ``config`` (for a checkpoint deployment: any checkpoint of that architecture)."""

    def __init__(self, config: ModelConfig, *, max_checkpoints: int = 2, max_batch_size: int = MAX_BATCH_SIZE,
                 batch_wait_s: float = BATCH_WAIT_S, threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.config = config
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        many = config.weights == "checkpoint"
        self.cache = ModelCache(2 * max_checkpoints if many else 1, self.device)  # a refusal's random twin too
        self.local = LocalBackend(self.cache, max_checkpoints=max_checkpoints)
        self.batches: Counter[int] = Counter()
        self._batched.set_max_batch_size(max_batch_size)
        self._batched.set_batch_wait_timeout_s(batch_wait_s)
        if not many:
            self.cache.get(config)  # loaded once, when the replica starts

    def _check(self, config: ModelConfig, checkpoint: Checkpoint | None) -> None:
        """Refuse another configuration's request; keep the bytes of a checkpoint the client sent."""
        if config.key != self.config.key:
            raise BackendError(f"This model server runs {self.config.key}, not {config.key}.")
        if checkpoint is not None:
            self.local.hold(checkpoint)

    async def predict(self, config: ModelConfig, image: ImageInput, k: int = 5, knockout: Sequence[str] = (),
                      fast: bool | None = None, *, checkpoint: Checkpoint | None = None) -> Prediction:
        """Top-k of one image; forward-only requests of a single-model deployment are batched."""
        self._check(config, checkpoint)
        if knockout or config.weights == "checkpoint":
            return await asyncio.to_thread(self.local.predict, config, image, k=k, knockout=knockout, fast=fast)
        x = await asyncio.to_thread(image.tensor, config)  # a bad image fails alone, before the batch
        return await self._batched(x, k, fast)

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_S)
    async def _batched(self, xs: list[torch.Tensor], ks: list[int], fasts: list[bool | None]) -> list[Prediction]:
        loaded = self.cache.get(self.config)
        self.batches[len(xs)] += 1
        return await asyncio.to_thread(predict_batch, loaded.model, xs, categories=loaded.categories, k=ks,
                                       fast=fasts)

    async def capture(self, config: ModelConfig, image: ImageInput, layers: Sequence[str],
                      fast: bool | None = None, *, checkpoint: Checkpoint | None = None) -> Capture:
        """The Feature maps capture, on the CPU (see :func:`explorer.activations.capture_with_stream`)."""
        self._check(config, checkpoint)
        return await asyncio.to_thread(self.local.capture, config, image, layers, fast=fast)

    async def attribute(self, config: ModelConfig, image: ImageInput, target: int, method: str,
                        layer: str | None = None, options: dict[str, Any] | None = None, *,
                        checkpoint: Checkpoint | None = None) -> Attribution:
        """One attribution, as :func:`explorer.attribution.attribute` computes it here."""
        self._check(config, checkpoint)
        return await asyncio.to_thread(self.local.attribute, config, image, target, method, layer=layer,
                                       **(options or {}))

    async def sanity(self, config: ModelConfig, image: ImageInput, target: int, method: str,
                     from_layer: str, *, checkpoint: Checkpoint | None = None) -> tuple[Attribution, Attribution]:
        """The sanity check's two maps, as :func:`explorer.attribution.sanity_pair` computes them here."""
        self._check(config, checkpoint)
        return await asyncio.to_thread(self.local.sanity, config, image, target, method, from_layer)

    async def faithfulness(self, config: ModelConfig, image: ImageInput, target: int, attribution: Attribution,
                           steps: int = 16, *, checkpoint: Checkpoint | None = None) -> Faithfulness:
        """The deletion and insertion curves, as :func:`explorer.attribution.faithfulness` computes them here."""
        self._check(config, checkpoint)
        return await asyncio.to_thread(self.local.faithfulness, config, image, target, attribution, steps=steps)

    async def trace_block(self, config: ModelConfig, image: ImageInput, block: str, *,
                          checkpoint: Checkpoint | None = None) -> BlockTrace:
        """One block traced op by op, as :func:`explorer.blocks.run_block` computes it here."""
        self._check(config, checkpoint)
        return await asyncio.to_thread(self.local.trace_block, config, image, block)

    def stats(self) -> dict[str, Any]:
        """What this replica did: batch sizes seen (size -> count), models held (a configuration's key, or a
        checkpoint's hash prefix), device."""
        models = [f"checkpoint {c.checkpoint[:12]}" if c.checkpoint else c.key for c in self.cache.keys()]
        return {"batches": dict(self.batches), "models": models, "device": self.device}


ModelDeployment = serve.deployment(ModelServer)


def application(
    config: ModelConfig, *, num_replicas: int | str = 1, max_ongoing_requests: int = 8, max_queued_requests: int = 16,
    num_cpus: float = 1, num_gpus: float | None = None, max_checkpoints: int = 2,
    max_batch_size: int = MAX_BATCH_SIZE, batch_wait_s: float = BATCH_WAIT_S, threads: int | None = None,
    runtime_env: dict | None = None, autoscaling: dict[str, Any] | None = None,
) -> serve.Application:
    """The Serve application for ``config``: its deployment named ``config.key``, bounded queue, CPU or GPU.

    ``num_replicas="auto"`` lets Serve add and remove replicas with demand: its default autoscaling, with the
    fields of ``autoscaling`` (Serve's ``AutoscalingConfig``: ``min_replicas``, ``max_replicas``,
    ``target_ongoing_requests``, ``upscale_delay_s``, ...) in place of its defaults.

    ``num_gpus`` None gives each replica one GPU when this machine has CUDA, else none; ``threads`` (torch's CPU
    threads in a replica) defaults to ``num_cpus``. The checkpoint bytes
    are never bound into the deployment (requests bring them).
    """
    if num_gpus is None:
        num_gpus = 1 if torch.cuda.is_available() else 0
    actor: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus}
    if runtime_env:
        actor["runtime_env"] = runtime_env
    base = replace(config, checkpoint=None, classes=None)  # a checkpoint deployment serves any checkpoint
    scaling = {"autoscaling_config": autoscaling} if autoscaling and num_replicas == "auto" else {}
    return ModelDeployment.options(
        name=config.key, num_replicas=num_replicas, max_ongoing_requests=max_ongoing_requests,
        max_queued_requests=max_queued_requests, ray_actor_options=actor, **scaling,
    ).bind(base, max_checkpoints=max_checkpoints, max_batch_size=max_batch_size, batch_wait_s=batch_wait_s,
          threads=threads or max(1, int(num_cpus)))
