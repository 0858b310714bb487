"""Feature maps out: capture intermediate outputs, the residual stream, channel statistics, memory estimates.

Every function here is safe on a shared model from many threads with no lock held by the caller: hooks are
registered through :func:`explorer.shared.exclusive`, which holds the model's lock and removes them on exit (also
when the forward raises); shapes come from a private :func:`explorer.shared.meta_twin`. Nothing here changes a
model's parameters or mode.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from explorer.device import fast_input, forward_context, use_bf16
from explorer.errors import ExplorerError
from explorer.models import ResidualBlock, residual_blocks
from explorer.shared import Hooks, exclusive, input_channels, meta_twin

__all__ = [
    "BlockStream",
    "Capture",
    "LayerError",
    "MemoryEstimate",
    "capture",
    "capture_with_stream",
    "channel_stats",
    "estimate_memory",
    "every_block_layers",
    "output_shapes",
    "record",
    "record_residual_stream",
    "residual_stream",
    "stage_end_layers",
    "stream_frame",
    "top_channels",
    "upsample",
]


class LayerError(ExplorerError):
    """A layer name that the model does not have."""


# --------------------------------------------------------------------------------------------------- capture


def _resolve(model: nn.Module, layers: Iterable[str]) -> dict[str, nn.Module]:
    """Dotted name -> module, in the order given; unknown names raise ``LayerError`` with suggestions."""
    modules = dict(model.named_modules())
    resolved: dict[str, nn.Module] = {}
    for name in layers:
        if not name or name not in modules:
            names = [n for n in modules if n]
            close = difflib.get_close_matches(str(name), names, n=5, cutoff=0.5) or names[:5]
            raise LayerError(
                f"The model has no layer called {name!r}. Layer names look like: {', '.join(close)} "
                f"({len(names)} in all)."
            )
        resolved[name] = modules[name]
    return resolved


def _recorder(hooks: Hooks, modules: dict[str, nn.Module]) -> dict[str, Tensor]:
    """Hooks on ``modules`` that store each one's output (detached) in the returned dict during a forward."""
    out: dict[str, Tensor] = {}

    def hook_for(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: object) -> None:
            if not isinstance(output, Tensor):
                raise LayerError(f"Layer {name!r} does not output a single tensor, so it cannot be shown.")
            out[name] = output.detach().float()  # float32 also when the forward ran under bf16 autocast

        return hook

    for name, module in modules.items():
        hooks.forward(module, hook_for(name))
    return out


@contextmanager
def record(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """Context manager: while open, every forward of ``model`` stores each named layer's output (detached)
    in the yielded dict. Holds the model's lock; hooks are removed on exit, whatever happens inside.

    Outputs are stored by reference, not copied: this is exact for ``explorer`` models, whose ReLUs are all
    non-inplace; a model that modifies a tensor in place after a hooked layer would change what was stored.
    """
    modules = _resolve(model, layers)
    with exclusive(model) as hooks:
        yield _recorder(hooks, modules)


def capture(model: nn.Module, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
    """Run ``model(x)`` once and return ``{layer name: output}`` for the dotted ``layers`` (e.g. ``"layer2.1"``).

    ``x`` is (N, 3, H, W); each output keeps the layer's shape, e.g. (N, C, H', W'), detached, on x's device.
    Runs under ``torch.no_grad()``: no autograd graph is built or kept.

    Raises:
        LayerError: for a name the model does not have (the message lists similar valid names), or a layer
            the forward never reached.
    """
    with record(model, layers) as out, torch.no_grad():
        model(x)
    return _in_order(out, layers)


def _in_order(out: dict[str, Tensor], layers: Sequence[str]) -> dict[str, Tensor]:
    """``out`` in the order the layers were asked for; a layer the forward never reached is an error."""
    missing = [name for name in layers if name not in out]
    if missing:
        raise LayerError(f"Layer {missing[0]!r} did not run in this model's forward pass, so it has no output.")
    return {name: out[name] for name in layers}


def stage_end_layers(model: nn.Module) -> list[str]:
    """The module whose output ends the stem and each stage, in forward order (``model.feature_info``): the
    filmstrip's layers.

    Raises:
        LayerError: for a model that does not describe its stages.
    """
    info = getattr(model, "feature_info", None)
    if not info:
        raise LayerError("This model does not describe its stages, so there is no filmstrip to show.")
    return [stage.module for stage in info]


def every_block_layers(model: nn.Module) -> list[str]:
    """The filmstrip's layers and every residual block's output, in forward order: capture these once per
    (model, image) and any stage or block can be shown by slicing, with no new forward pass. A stage's output is
    its last block's tensor, stored once (hooks keep references, not copies)."""
    return list(dict.fromkeys([*stage_end_layers(model), *(name for name, _ in residual_blocks(model))]))


# --------------------------------------------------------------------------------------------------- residual stream


@dataclass(frozen=True)
class BlockStream:
    """One block's residual branch against its shortcut, as L2 norms over (C, H, W), averaged over the batch.

    ``ratio`` = ||F(x)|| / ||shortcut(x)||: small means the block nudges the stream, large means it rewrites it.
    For a plain block (no shortcut) ``shortcut_norm`` is the norm of the block's input x and the ratio compares
    against that. ``cosine``: cos(F(x), shortcut(x)) over (C, H, W), averaged over the batch (1: the branch points
    along the stream, 0: across it, -1: against it); NaN for a plain block that changes the shape.
    """

    name: str
    stage: str
    index: int
    shortcut_kind: str
    residual_norm: float
    shortcut_norm: float
    ratio: float
    cosine: float = float("nan")


def _norm(t: Tensor) -> Tensor:
    """Mean over the batch of each sample's L2 norm: (N, ...) -> scalar tensor."""
    return torch.linalg.vector_norm(t.detach().flatten(1), dim=1, dtype=torch.float32).mean()


class StreamRecorder:
    """Collects, during a forward, ||F(x)|| and ||shortcut(x)|| of every residual block. Use via
    :func:`record_residual_stream`; call :meth:`rows` after the forward."""

    def __init__(self, blocks: list[tuple[str, ResidualBlock]]) -> None:
        self.blocks = blocks
        self.residual: dict[str, Tensor] = {}
        self.shortcut: dict[str, Tensor] = {}
        self.cosine: dict[str, float] = {}
        self._pending: dict[str, Tensor] = {}  # F(x) or shortcut(x), whichever came first, until the other comes

    def register(self, hooks: Hooks) -> StreamRecorder:
        """Register the recording hooks through ``hooks`` (which removes them); returns self."""
        for name, block in self.blocks:
            hooks.forward(block.branch_end, self._store(self.residual, name))
            if block.downsample is not None:  # projection or zero-padding: its output is the shortcut
                hooks.forward(block.downsample, self._store(self.shortcut, name))
            else:  # identity (or plain): the shortcut is the block's input itself
                hooks.pre(block, self._store_input(self.shortcut, name))
            hooks.forward(block.branch_end, lambda _m, _a, out, name=name: self._meet(name, out))
            if block.downsample is not None:
                hooks.forward(block.downsample, lambda _m, _a, out, name=name: self._meet(name, out))
            else:
                hooks.pre(block, lambda _m, args, name=name: self._meet(name, args[0]))
        return self

    def _meet(self, name: str, t: Tensor) -> None:
        """Keep the first of F(x) and shortcut(x) to arrive; when the second does, store their cosine."""
        other = self._pending.pop(name, None)
        if other is None:
            self._pending[name] = t.detach()
            return
        a, b = other.flatten(1).float(), t.detach().flatten(1).float()
        cos = torch.nn.functional.cosine_similarity(a, b, dim=1).mean() if a.shape == b.shape else None
        self.cosine[name] = float("nan") if cos is None else float(cos)

    @staticmethod
    def _store(target: dict[str, Tensor], name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            target[name] = _norm(output)

        return hook

    @staticmethod
    def _store_input(target: dict[str, Tensor], name: str):
        def hook(_module: nn.Module, inputs: tuple) -> None:
            target[name] = _norm(inputs[0])

        return hook

    def rows(self) -> list[BlockStream]:
        """One row per block that ran, in forward order."""
        rows = []
        for name, block in self.blocks:
            if name not in self.residual:
                continue
            res, sc = float(self.residual[name]), float(self.shortcut[name])
            stage, _, index = name.rpartition(".")
            ratio = res / sc if sc > 0 else float("inf")
            rows.append(BlockStream(name, stage, int(index), block.shortcut_kind, res, sc, ratio,
                                    self.cosine.get(name, float("nan"))))
        return rows


@contextmanager
def record_residual_stream(model: nn.Module) -> Iterator[StreamRecorder]:
    """Context manager: hooks that record every block's ||F(x)|| and ||shortcut(x)|| during a forward.

    No extra computation: F(x) is read at the branch's last BatchNorm, the shortcut at ``downsample`` or, for an
    identity, at the block's input. Hooks are removed on exit.
    """
    recorder = _stream_recorder(model)
    with exclusive(model) as hooks:
        yield recorder.register(hooks)


def _stream_recorder(model: nn.Module) -> StreamRecorder:
    blocks = residual_blocks(model)
    if not blocks:
        raise LayerError("This model has no residual blocks, so there is no residual stream to show.")
    return StreamRecorder(blocks)


def residual_stream(model: nn.Module, x: Tensor) -> list[BlockStream]:
    """Run ``model(x)`` (no grad) and return one :class:`BlockStream` per residual block, in forward order."""
    with record_residual_stream(model) as recorder, torch.no_grad():
        model(x)
    return recorder.rows()


def stream_frame(rows: Sequence[BlockStream]) -> pd.DataFrame:
    """Rows as a table: block, stage, index, shortcut, ||F(x)||, ||shortcut||, ratio, cosine."""
    return pd.DataFrame(
        {
            "block": [r.name for r in rows],
            "stage": [r.stage for r in rows],
            "index": [r.index for r in rows],
            "shortcut": [r.shortcut_kind for r in rows],
            "||F(x)||": [r.residual_norm for r in rows],
            "||shortcut||": [r.shortcut_norm for r in rows],
            "ratio": [r.ratio for r in rows],
            "cosine": [r.cosine for r in rows],
        }
    )


@dataclass(frozen=True)
class Capture:
    """One forward's worth of results: the named layers' outputs (detached), the residual stream and logits."""

    activations: dict[str, Tensor]
    stream: list[BlockStream]
    logits: Tensor
    fast: bool = False  # True when the forward ran under bf16 autocast

    @property
    def precision(self) -> str:
        """What ran, for the screen: "bf16 autocast, channels_last" or "fp32, channels_last"."""
        return f"{'bf16 autocast' if self.fast else 'fp32'}, channels_last"

    def cpu(self) -> Capture:
        """The same results with every tensor on the CPU (to send from a GPU replica to the app)."""
        acts = {name: t.cpu() for name, t in self.activations.items()}
        return Capture(acts, self.stream, self.logits.cpu(), self.fast)


def capture_with_stream(model: nn.Module, x: Tensor, layers: Sequence[str], *, fast: bool | None = None) -> Capture:
    """``capture`` and ``residual_stream`` in a single no-grad forward of ``model(x)``; x is (N, 3, H, W).

    The forward takes the fast path (:func:`explorer.device.forward_context`): channels_last, and bf16 autocast
    where the device computes it natively unless ``fast=False``; ``Capture.fast`` says whether bf16 ran. Outputs
    are float32 either way.
    """
    modules = _resolve(model, layers)
    recorder = _stream_recorder(model)
    device = x.device
    with exclusive(model) as hooks, torch.no_grad(), forward_context(device, fast):
        acts = _recorder(hooks, modules)
        recorder.register(hooks)
        logits = model(fast_input(x, device))
    return Capture(_in_order(acts, layers), recorder.rows(), logits.detach().float(), use_bf16(device, fast))


# --------------------------------------------------------------------------------------------------- channels


def _as_chw(fmap: Tensor) -> Tensor:
    """(1, C, H, W) or (C, H, W) -> (C, H, W) float on the CPU."""
    t = fmap.detach()
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {t.shape[0]}")
        t = t[0]
    if t.dim() != 3:
        raise ValueError(f"expected a feature map (C, H, W), got shape {tuple(fmap.shape)}")
    return t.float().cpu()


def channel_stats(fmap: Tensor) -> pd.DataFrame:
    """Per-channel statistics of one feature map (1, C, H, W) or (C, H, W): columns channel, mean, max, min,
    zero_fraction (share of exactly-zero values, i.e. switched off by a ReLU). Computed in numpy on one thread:
    a page calls it on every stage change while the browser and other sessions hold the other cores, where
    torch's intra-op threads wait for each other."""
    a = _as_chw(fmap).flatten(1).numpy()
    return pd.DataFrame(
        {
            "channel": np.arange(a.shape[0]),
            "mean": a.mean(axis=1, dtype=np.float32),
            "max": a.max(axis=1),
            "min": a.min(axis=1),
            "zero_fraction": (a == 0).mean(axis=1, dtype=np.float32),
        }
    )


def top_channels(fmap: Tensor, k: int, by: str = "mean", stats: pd.DataFrame | None = None) -> list[int]:
    """The ``k`` channels of ``fmap`` (1, C, H, W) with the largest ``by`` statistic ("mean" or "max"), largest
    first. ``stats``: ``channel_stats(fmap)`` when the caller has it already."""
    if by not in ("mean", "max"):
        raise ValueError(f"rank channels by 'mean' or 'max', not {by!r}")
    stats = channel_stats(fmap) if stats is None else stats
    k = max(0, min(int(k), len(stats)))
    return stats.sort_values([by, "channel"], ascending=[False, True])["channel"].head(k).tolist()


def upsample(channel_map: Tensor, size: tuple[int, int]) -> np.ndarray:
    """A (h, w) map bilinearly resized to ``size`` = (H, W), to lay over the input image; float32 numpy (H, W)."""
    t = channel_map.detach().float().cpu()[None, None]
    return nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


# --------------------------------------------------------------------------------------------------- memory


def output_shapes(model: nn.Module, layers: Sequence[str], input_size: int | tuple[int, int]) -> dict[str, tuple]:
    """Each named layer's output shape for one (1, C, H, W) input, found without computing anything
    (a forward on the meta device)."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    twin = meta_twin(model)  # private: no lock needed, and the model's own hooks never fire
    acts = capture(twin, torch.empty(1, input_channels(model), h, w, device="meta"), layers)
    return {name: tuple(t.shape) for name, t in acts.items()}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes needed to capture layers for one image: what is kept, plus the largest tensors of the forward."""

    captured_bytes: int
    peak_forward_bytes: int
    shapes: dict[str, tuple]

    @property
    def total_bytes(self) -> int:
        return self.captured_bytes + self.peak_forward_bytes


def estimate_memory(
    model: nn.Module, layers: Sequence[str], input_size: int | tuple[int, int], *, bytes_per_element: int = 4
) -> MemoryEstimate:
    """Memory for ``capture(model, x, layers)`` on one (1, C, H, W) image, before running it.

    Captured: the sum of the layers' output sizes. Forward: twice the largest output of any module (its input
    and output live at once), a lower bound on what a no-grad forward needs on top of the weights.
    """
    all_names = [name for name, m in model.named_modules() if name and not list(m.children())]
    shapes = output_shapes(model, list(dict.fromkeys([*layers, *all_names])), input_size)
    numel = {name: int(np.prod(shape)) for name, shape in shapes.items()}
    captured = sum(numel[name] for name in dict.fromkeys(layers)) * bytes_per_element
    peak = 2 * max(numel.values(), default=0) * bytes_per_element
    return MemoryEstimate(captured, peak, {name: shapes[name] for name in layers})
