"""One registry of Captum attribution methods behind one interface, safe on a shared model.

``attribute(model, x, target, method, **options)`` runs any method of :data:`METHODS` and returns an
:class:`Attribution`: an (H, W) map on the CPU, Captum's raw output, the baseline and what it is, Captum's
convergence delta where the method has one, the time and the number of passes. Captum's own option names
(``n_steps``, ``internal_batch_size``, ``sliding_window_shapes``, ``strides``, ``nt_samples``, ``stdevs``, ...)
pass straight through; ``baseline`` ("zeros", "black", "blur", "mixed") names the reference input.

Every call holds the model's lock, leaves no hook or attribute behind (even on failure), takes gradients
with respect to the input only (``torch.autograd.grad``: the parameters' ``.grad`` stay ``None``) and never
moves or changes the shared model. :func:`estimate_cost` says before running how many forward/backward
passes a setting needs; on the CPU settings over a cap are refused with a sentence saying what to lower.

Also here: the model-randomisation sanity check of Adebayo et al. 2018 (:func:`randomised_copy`,
:func:`rank_similarity`).
"""

from __future__ import annotations

import copy
import inspect
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from captum.attr import (
    DeepLift,
    GradientShap,
    GuidedGradCam,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from scipy.stats import rankdata
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF

from explorer.device import device_label
from explorer.errors import ExplorerError
from explorer.images import IMAGENET_MEAN, IMAGENET_STD
from explorer.models import residual_blocks
from explorer.predict import (
    InputError,
    LockLike,
    as_batch,
    hooks_restored,
    model_lock,
    num_classes,
    on_device,
    oom_advice,
    resolve_device,
)

__all__ = [
    "BASELINES",
    "METHODS",
    "VIEWS",
    "Attribution",
    "AttributionError",
    "CostError",
    "MethodSpec",
    "attribute",
    "cascade_layers",
    "check_cost",
    "estimate_cost",
    "gradcam_layers",
    "make_baseline",
    "occlusion_grid",
    "randomised_copy",
    "rank_similarity",
    "reduce_channels",
    "resolve_method",
    "view",
]

View = Literal["positive", "negative", "absolute"]
VIEWS: tuple[str, ...] = ("absolute", "positive", "negative")


# Captum announces on every call that it sets (and will remove) hooks; we check that it did, see hooks_restored.
warnings.filterwarnings("ignore", message=r"Setting (forward, )?backward hooks", category=UserWarning)


class AttributionError(ExplorerError):
    """An attribution method could not run with these settings (bad option, failure inside Captum)."""


class CostError(AttributionError):
    """A setting needs more passes than the CPU cap allows."""


# ------------------------------------------------------------------------------------------------- baselines

BASELINES: dict[str, str] = {
    "zeros": "an all-zero input: after normalisation that is the ImageNet mean colour, a flat grey",
    "black": "a black image",
    "blur": "a strongly blurred copy of the image (Gaussian, sigma = 1/16 of its size)",
    "mixed": "references drawn at random from the grey, black and blurred images",
}


def make_baseline(x: Tensor, kind: str) -> Tensor:
    """The reference input for ``x`` (1, 3, H, W), normalised like ``x`` with ImageNet statistics.

    ``"mixed"`` returns (3, 3, H, W): the grey, black and blurred references (a distribution for GradientShap).
    """
    if kind == "zeros":
        return torch.zeros_like(x)
    if kind == "black":
        mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (torch.zeros_like(x) - mean) / std
    if kind == "blur":
        sigma = max(x.shape[-2:]) / 16
        size = min(2 * math.ceil(2 * sigma) + 1, 2 * (min(x.shape[-2:]) // 2) - 1)
        return TF.gaussian_blur(x, [size, size], [sigma, sigma])
    if kind == "mixed":
        return torch.cat([make_baseline(x, k) for k in ("zeros", "black", "blur")])
    raise AttributionError(f"Unknown baseline {kind!r}; choose one of: {', '.join(BASELINES)}.")


# --------------------------------------------------------------------------------------------- the registry


def _one(_shape: tuple[int, ...], _opts: Mapping[str, Any]) -> int:
    return 1


def _option(name: str) -> Callable[[tuple[int, ...], Mapping[str, Any]], int]:
    """Cost = the value of option ``name`` (steps, samples): one forward/backward pass each."""
    return lambda _shape, opts: int(opts[name])


def _per_dim(value: int | Sequence[int] | None, n: int, default: int) -> tuple[int, ...]:
    if value is None:
        return (default,) * n
    if isinstance(value, int):
        return (value,) * n
    return tuple(int(v) for v in value)


def occlusion_grid(shape: tuple[int, ...], opts: Mapping[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(window, strides) per dimension of the (C, H, W) ``shape``, windows clipped to the image."""
    dims = tuple(shape)
    window = _per_dim(opts["sliding_window_shapes"], len(dims), 1)
    strides = _per_dim(opts.get("strides"), len(dims), 1)
    if len(window) != len(dims) or len(strides) != len(dims):
        raise AttributionError(
            f"sliding_window_shapes and strides need one value per (channel, height, width) dimension, "
            f"got {window} and {strides}."
        )
    if min(window) < 1 or min(strides) < 1:
        raise AttributionError("Occlusion windows and strides must be at least 1.")
    return tuple(min(w, d) for w, d in zip(window, dims, strict=True)), strides


def _occlusion_cost(shape: tuple[int, ...], opts: Mapping[str, Any]) -> int:
    window, strides = occlusion_grid(shape, opts)
    return math.prod((d - w) // s + 1 for d, w, s in zip(shape, window, strides, strict=True)) + 1


_OPTION_NAMES: dict[str, set[str]] = {}  # option names per method, read from Captum's signatures once


@dataclass(frozen=True)
class MethodSpec:
    """One attribution method: how to build it in Captum, its defaults, its cost and its CPU cap."""

    key: str
    label: str
    captum: type
    needs_baseline: bool
    has_delta: bool
    cost: Callable[[tuple[int, ...], Mapping[str, Any]], int]  # (C, H, W)-style input shape, options -> passes
    defaults: Mapping[str, Any]
    cpu_cap: int | None = None  # most passes allowed on the CPU (None: no cap)
    setting: Callable[[Mapping[str, Any]], str] = lambda _opts: ""  # "with 2000 steps", for messages
    advice: str = ""  # what to lower when over the cap
    uses_layer: bool = False
    forward_only: bool = False
    inner: type | None = None  # the method NoiseTunnel wraps
    summary: str = ""

    @property
    def pass_kind(self) -> str:
        return "forward" if self.forward_only else "forward/backward"

    def options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overridden by ``given``; unknown names are refused with the list of valid ones."""
        allowed = self.option_names()
        unknown = sorted(set(given) - allowed)
        if unknown:
            raise AttributionError(
                f"{self.label} has no option {', '.join(unknown)}; its options are: {', '.join(sorted(allowed))}."
            )
        return {**self.defaults, **given}

    def option_names(self) -> set[str]:
        """Captum's constructor and ``attribute`` keywords for this method, plus ours (``baseline``...)."""
        if self.key not in _OPTION_NAMES:
            _OPTION_NAMES[self.key] = self._option_names()
        return _OPTION_NAMES[self.key]

    def constructor_names(self) -> set[str]:
        """The keywords of the Captum class's constructor (``multiply_by_inputs``, ``eps``)."""
        return set(inspect.signature(self.captum.__init__).parameters)

    def _option_names(self) -> set[str]:
        names: set[str] = set(self.defaults)
        for fn in (self.captum.__init__, self.captum.attribute, *((self.inner.attribute,) if self.inner else ())):
            names |= {p.name for p in inspect.signature(fn).parameters.values() if p.kind != p.VAR_KEYWORD}
        names -= {"self", "inputs", "target", "additional_forward_args", "forward_func", "model", "layer",
                  "device_ids", "attribution_method", "custom_attribution_func", "grad_kwargs"}
        if self.needs_baseline:
            names.add("baseline")
        return names


METHODS: dict[str, MethodSpec] = {
    spec.key: spec
    for spec in (
        MethodSpec(
            "saliency", "Saliency", Saliency, needs_baseline=False, has_delta=False, cost=_one,
            defaults={"abs": True},
            summary="The gradient of the class score with respect to each pixel (Simonyan et al. 2014).",
        ),
        MethodSpec(
            "integrated_gradients", "Integrated Gradients", IntegratedGradients, needs_baseline=True,
            has_delta=True, cost=_option("n_steps"), cpu_cap=256,
            defaults={"n_steps": 32, "internal_batch_size": 8, "method": "gausslegendre", "baseline": "zeros"},
            setting=lambda o: f"{o['n_steps']} steps", advice="Lower n_steps",
            summary="Gradients averaged along the straight path from a baseline to the image, times the "
                    "difference (Sundararajan et al. 2017); they add up to f(image) - f(baseline).",
        ),
        MethodSpec(
            "smoothgrad", "SmoothGrad", NoiseTunnel, inner=Saliency, needs_baseline=False, has_delta=False,
            cost=_option("nt_samples"), cpu_cap=64,
            defaults={"nt_type": "smoothgrad", "nt_samples": 16, "nt_samples_batch_size": 8, "abs": True},
            setting=lambda o: f"{o['nt_samples']} noisy samples", advice="Lower nt_samples",
            summary="Saliency averaged over noisy copies of the image (Smilkov et al. 2017); noise sigma "
                    "defaults to 15% of the image's value range.",
        ),
        MethodSpec(
            "gradient_shap", "GradientSHAP", GradientShap, needs_baseline=True, has_delta=True,
            cost=_option("n_samples"), cpu_cap=64,
            defaults={"n_samples": 8, "stdevs": 0.0, "baseline": "mixed"},
            setting=lambda o: f"{o['n_samples']} samples", advice="Lower n_samples",
            summary="Expected gradients x (image - baseline) at random points between the image and random "
                    "baselines (Lundberg & Lee 2017).",
        ),
        MethodSpec(
            "occlusion", "Occlusion", Occlusion, needs_baseline=True, has_delta=False, cost=_occlusion_cost,
            cpu_cap=400, forward_only=True,
            defaults={"sliding_window_shapes": (3, 32, 32), "strides": (3, 16, 16), "perturbations_per_eval": 8,
                      "baseline": "zeros"},
            setting=lambda o: f"{_hw(o['sliding_window_shapes'])} windows every {_hw(o.get('strides'))} px",
            advice="Use larger sliding_window_shapes and strides",
            summary="How much the class score drops when a patch is covered by the baseline (Zeiler & Fergus "
                    "2014). Forward passes only.",
        ),
        MethodSpec(
            "grad_cam", "Grad-CAM", LayerGradCam, needs_baseline=False, has_delta=False, cost=_one,
            defaults={"relu_attributions": True, "interpolate_mode": "bilinear"}, uses_layer=True,
            summary="A layer's channels weighted by their average gradient (Selvaraju et al. 2017), "
                    "upsampled from the layer's grid to the image.",
        ),
        MethodSpec(
            "guided_grad_cam", "Guided Grad-CAM", GuidedGradCam, needs_baseline=False, has_delta=False,
            cost=lambda _s, _o: 2, defaults={"interpolate_mode": "bilinear"}, uses_layer=True,
            summary="Grad-CAM times guided backpropagation: pixel-sharp and class-specific.",
        ),
        MethodSpec(
            "deeplift", "DeepLift", DeepLift, needs_baseline=True, has_delta=True, cost=lambda _s, _o: 2,
            defaults={"baseline": "zeros"},
            summary="Contributions relative to a baseline, propagated with the rescale rule (Shrikumar et al. "
                    "2017); they add up to f(image) - f(baseline).",
        ),
    )
}
_ALIASES = {spec.captum.__name__.lower(): key for key, spec in METHODS.items()}
_ALIASES.update({"noisetunnel": "smoothgrad", "layergradcam": "grad_cam"})


def _hw(value: int | Sequence[int] | None) -> str:
    """The (height, width) part of a per-dimension option: "32x32"."""
    h, w = _per_dim(value, 3, 1)[-2:]
    return f"{h}x{w}"


def resolve_method(method: str) -> MethodSpec:
    """The spec for a registry key (``"integrated_gradients"``), a label or a Captum class name."""
    if isinstance(method, MethodSpec):
        return method
    key = str(method).strip()
    norm = key.lower().replace(" ", "").replace("-", "").replace("_", "")
    for spec in METHODS.values():
        if norm in (spec.key.replace("_", ""), spec.label.lower().replace(" ", "").replace("-", "")):
            return spec
    if norm in _ALIASES:
        return METHODS[_ALIASES[norm]]
    raise AttributionError(f"Unknown attribution method {method!r}; choose one of: {', '.join(METHODS)}.")


def estimate_cost(method: str, x_shape: Sequence[int], **options: Any) -> int:
    """Forward/backward passes (forward only for occlusion) that ``method`` needs on one image of ``x_shape``.

    ``x_shape`` is (1, 3, H, W) or (3, H, W); ``options`` as for :func:`attribute`.
    """
    spec = resolve_method(method)
    shape = tuple(int(s) for s in x_shape)[-3:]
    return int(spec.cost(shape, spec.options(options)))


def check_cost(method: str, x_shape: Sequence[int], device: str | torch.device = "cpu", **options: Any) -> int:
    """Like :func:`estimate_cost`, and raises :class:`CostError` when that is over the method's cap on the CPU."""
    spec = resolve_method(method)
    shape = tuple(int(s) for s in x_shape)[-3:]
    return _check_cost(spec, shape, spec.options(options), torch.device(device))


def _check_cost(spec: MethodSpec, shape: tuple[int, ...], opts: Mapping[str, Any], device: torch.device) -> int:
    """The passes ``opts`` need on a (C, H, W) input; :class:`CostError` when over the CPU cap."""
    try:
        passes = int(spec.cost(shape, opts))
    except ExplorerError:
        raise
    except (TypeError, ValueError):
        raise AttributionError(f"{spec.label}: steps, samples, windows and strides must be whole numbers.") from None
    if device.type == "cpu" and spec.cpu_cap is not None and passes > spec.cpu_cap:
        raise CostError(
            f"{spec.label} with {spec.setting(opts)} needs {passes} {spec.pass_kind} passes; on the CPU the cap "
            f"is {spec.cpu_cap}. {spec.advice} or use the GPU."
        )
    return passes


# ------------------------------------------------------------------------------------------------ the result


def reduce_channels(raw: Tensor, how: Literal["signed", "abs"] = "signed") -> np.ndarray:
    """(1, C, H, W) -> (H, W) float32 on the CPU: the sum over channels, of values or of absolute values."""
    raw = raw.detach().float().cpu()[0]
    return (raw.abs() if how == "abs" else raw).sum(0).numpy().astype(np.float32)


@dataclass(frozen=True)
class Attribution:
    """One attribution of one image. ``map`` is (H, W) float32 on the CPU: the signed sum over channels."""

    method: str  # registry key
    label: str
    target: int
    map: np.ndarray = field(repr=False, compare=False)
    raw: Tensor = field(repr=False, compare=False)  # as Captum returned it, on the CPU ((1, 1, h, w) for Grad-CAM)
    baseline: Tensor | None = field(repr=False, compare=False)
    baseline_description: str | None
    delta: float | None  # Captum's convergence delta (the worst sample), where the method has one
    seconds: float
    passes: int
    device: str
    layer: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def view(self, kind: View = "absolute") -> np.ndarray:
        """The map to show: ``positive`` or ``negative`` evidence, or its ``absolute`` size.

        ``absolute`` sums absolute values over colour channels, so channels of opposite sign do not cancel.
        """
        return view(self.map, kind, self.raw)


def view(signed: np.ndarray, kind: View, raw: Tensor | None = None) -> np.ndarray:
    """positive -> max(map, 0); negative -> max(-map, 0); absolute -> sum of |raw| over channels (or |map|)."""
    if kind == "positive":
        return np.clip(signed, 0, None)
    if kind == "negative":
        return np.clip(-signed, 0, None)
    if kind == "absolute":
        if raw is not None and raw.dim() == 4 and tuple(raw.shape[-2:]) == signed.shape:
            return reduce_channels(raw, "abs")
        return np.abs(signed)
    raise AttributionError(f"Unknown view {kind!r}; choose one of: {', '.join(VIEWS)}.")


# ---------------------------------------------------------------------------------------------- the interface


def gradcam_layers(model: nn.Module) -> list[str]:
    """Layers Grad-CAM can look at, coarse to fine by depth: the stages, then every residual block."""
    stages = list(getattr(model, "stage_names", ()))
    return stages + [name for name, _ in residual_blocks(model)]


def _find_layer(model: nn.Module, layer: str | None) -> tuple[str, nn.Module]:
    if layer is None:
        stages = list(getattr(model, "stage_names", ()))
        if not stages:
            raise AttributionError("Grad-CAM needs a layer name, e.g. 'layer4'.")
        layer = stages[-1]
    modules = dict(model.named_modules())
    if not layer or layer not in modules:
        choices = gradcam_layers(model)
        raise AttributionError(f"This model has no layer {layer!r}; choose one of: {', '.join(choices[:8])}, ...")
    return layer, modules[layer]


def _baseline(spec: MethodSpec, x: Tensor, opts: dict[str, Any]) -> tuple[Tensor | None, str | None]:
    """Pops ``baseline`` (a kind name or a tensor) from ``opts``; returns the tensor and its description."""
    if not spec.needs_baseline:
        return None, None
    choice = opts.pop("baseline", "zeros")
    if "baselines" in opts:  # Captum's own keyword wins when given
        choice = opts.pop("baselines")
    if isinstance(choice, Tensor):
        return choice.detach().to(x.device, x.dtype), "a baseline you provided"
    if isinstance(choice, int | float) and not isinstance(choice, bool):
        return torch.full_like(x.detach(), float(choice)), f"a constant input of {choice}"
    if choice == "mixed" and spec.key != "gradient_shap":
        raise AttributionError(f"{spec.label} takes one baseline; 'mixed' is for GradientSHAP only.")
    return make_baseline(x.detach(), choice), BASELINES[choice]


def _run_captum(
    spec: MethodSpec, net: nn.Module, x: Tensor, target: int, layer: nn.Module | None,
    baseline: Tensor | None, opts: dict[str, Any],
) -> tuple[Tensor, Tensor | None]:
    """Build the Captum object and call ``attribute``; returns (raw attribution, delta or None)."""
    ctor_names = spec.constructor_names() & spec.option_names()
    ctor = {k: opts.pop(k) for k in list(opts) if k in ctor_names}
    if spec.inner is not None:
        method = spec.captum(spec.inner(net), **ctor)
        if "stdevs" not in opts:
            opts["stdevs"] = 0.15 * float(x.detach().max() - x.detach().min())
    elif spec.uses_layer:
        method = spec.captum(net, layer, **ctor)
    else:
        method = spec.captum(net, **ctor)
    if baseline is not None:
        opts["baselines"] = baseline
    if spec.has_delta:
        opts.setdefault("return_convergence_delta", True)
    out = method.attribute(x, target=target, **opts)
    return out if spec.has_delta and opts["return_convergence_delta"] else (out, None)


def _count_images(net: nn.Module, total: int, progress: Callable[[float], None]) -> torch.utils.hooks.RemovableHandle:
    """A forward hook on the whole model reporting images processed / ``total`` (capped at 1) to ``progress``."""
    seen = [0]

    def hook(_module: nn.Module, args: tuple, _out: Tensor) -> None:
        seen[0] += int(args[0].shape[0]) if args and isinstance(args[0], Tensor) else 1
        progress(min(1.0, seen[0] / max(total, 1)))

    return net.register_forward_hook(hook)


def _timed_run(
    spec: MethodSpec, net: nn.Module, x: Tensor, target: int, module: nn.Module | None, baseline: Tensor | None,
    opts: dict[str, Any], passes: int, progress: Callable[[float], None] | None,
) -> tuple[Tensor, Tensor | None, float]:
    """:func:`_run_captum` inside the hook guard, with the progress counter; (raw, delta, seconds)."""
    with hooks_restored(net):
        counter = _count_images(net, passes, progress) if progress else None
        start = time.perf_counter()
        try:
            raw, delta = _run_captum(spec, net, x, target, module, baseline, dict(opts))
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
        finally:
            if counter is not None:
                counter.remove()
    return raw, delta, time.perf_counter() - start


def attribute(
    model: nn.Module,
    x: Tensor,
    target: int,
    method: str,
    *,
    device: str | torch.device | None = None,
    layer: str | None = None,
    lock: LockLike | None = None,
    progress: Callable[[float], None] | None = None,
    **options: Any,
) -> Attribution:
    """Attribute class ``target`` of ``model`` (eval mode) on one image ``x`` (1, 3, H, W) with ``method``.

    ``device`` None runs where the model lives; another device uses a cached copy of the model there.
    ``layer`` (Grad-CAM, Guided Grad-CAM) is a dotted module name, default the last stage. ``progress`` is
    called with the fraction of passes done. ``options`` are Captum's keywords plus ``baseline``.

    Raises:
        AttributionError: unknown method, option or layer; a failure inside Captum.
        CostError: settings over the CPU cap.
        InputError: a tensor that is not one RGB image, or a class the model does not have.
        DeviceError: unknown device, or out of memory.
    """
    spec = resolve_method(method)
    if model.training:
        raise AttributionError("The model is in training mode: call model.eval() first (BatchNorm would "
                               "otherwise use and change its running statistics).")
    if layer is not None and not spec.uses_layer:
        raise AttributionError(f"{spec.label} does not look at a layer; only Grad-CAM and Guided Grad-CAM do.")
    dev = resolve_device(device, model)
    x = as_batch(x, model).detach()
    n_cls = num_classes(model)
    if not isinstance(target, int | np.integer) or target < 0 or (n_cls is not None and target >= n_cls):
        raise InputError(f"The target class must be a class index from 0 to {(n_cls or 1) - 1}, not {target!r}.")
    opts = spec.options(options)
    if spec.key == "occlusion":
        opts["sliding_window_shapes"], opts["strides"] = occlusion_grid(tuple(x.shape[1:]), opts)
    passes = _check_cost(spec, tuple(x.shape[1:]), opts, dev)
    layer_name, _ = _find_layer(model, layer) if spec.uses_layer else (None, None)
    interpolate = opts.pop("interpolate_mode") if spec.key == "grad_cam" else None
    shown_opts = {k: v for k, v in opts.items() if not isinstance(v, Tensor)}
    with lock or model_lock(model):
        try:
            net = on_device(model, dev)
            x = x.to(dev, copy=True).requires_grad_(not spec.forward_only)  # our own copy: Captum flips its flags
            baseline, description = _baseline(spec, x, opts)
            module = dict(net.named_modules())[layer_name] if layer_name else None
            raw, delta, seconds = _timed_run(spec, net, x, int(target), module, baseline, opts, passes, progress)
        except torch.OutOfMemoryError:
            raise oom_advice(dev) from None
        except ExplorerError:
            raise
        except Exception as err:  # a failing method is a message on screen, not a crash
            raise AttributionError(f"{spec.label} failed: {err}") from err
    raw = raw.detach().cpu()
    if interpolate is not None:  # Grad-CAM: the layer's grid, upsampled to the image
        full = LayerAttribution.interpolate(raw.float(), tuple(x.shape[-2:]), interpolate_mode=interpolate)
    else:
        full = raw
    return Attribution(
        method=spec.key,
        label=spec.label,
        target=int(target),
        map=reduce_channels(full),
        raw=raw,
        baseline=None if baseline is None else baseline.detach().cpu(),
        baseline_description=description,
        delta=None if delta is None else float(delta.flatten()[delta.abs().argmax()]),
        seconds=seconds,
        passes=passes,
        device=device_label(dev),
        layer=layer_name,
        options=shown_opts,
    )


# ----------------------------------------------------------------------------- sanity check (Adebayo et al.)


def cascade_layers(model: nn.Module) -> list[str]:
    """Layer groups re-initialised by the cascading randomisation, top first: ``fc``, ``layer4``, .., ``stem``."""
    stages = list(getattr(model, "stage_names", ()))
    return ["fc", *reversed(stages), "stem"]


def _reinit(module: nn.Module) -> None:
    """Fresh random weights as at construction: He init for convs, identity BN, PyTorch's default for fc."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()  # weight 1, bias 0, running mean 0, running var 1
        elif isinstance(m, nn.Linear):
            m.reset_parameters()


def randomised_copy(model: nn.Module, from_layer: str, *, seed: int = 0, lock: LockLike | None = None) -> nn.Module:
    """A deep copy of ``model`` with every layer group from the top down to ``from_layer`` re-initialised.

    ``from_layer="fc"`` randomises only the classifier; ``"layer3"`` randomises fc, layer4 and layer3; ``"stem"``
    everything. The original is untouched (copied under its lock so no other session's hooks come along).
    """
    order = cascade_layers(model)
    if from_layer not in order:
        raise AttributionError(f"Cannot randomise from {from_layer!r}; choose one of: {', '.join(order)}.")
    with lock or model_lock(model):
        twin = copy.deepcopy(model)
    groups = {"stem": [twin.conv1, twin.bn1]} if hasattr(twin, "conv1") else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in order[: order.index(from_layer) + 1]:
            for module in groups.get(name, [getattr(twin, name, None)]):
                if module is not None:
                    _reinit(module)
    return twin.eval()


def rank_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps of the same shape (1: same ranking of pixels; ~0: unrelated).

    ``nan`` when either map is constant (no ranking to compare).
    """
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise AttributionError(f"Maps of different sizes cannot be compared: {a.size} and {b.size} pixels.")
    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])
