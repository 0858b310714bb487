"""The registry: every attribution method declared once, as data (:data:`METHODS`), its cost and its CPU cap.

Each method's user-facing options (range, default, help) are :class:`~explorer.attribution.spec.Option` s in its
declaration; the page draws its widgets from them and ``attribute()`` takes its defaults from them. Next to them,
each method declares its precision (``precision``): bf16 autocast where its maps stayed within tolerance of fp32's
(Spearman rank correlation >= 0.95 on 20 images of each of three nets, Integrated Gradients' and DeepLift's
completeness within the convergence delta's tolerance; ``bench/bench_attribution.py --only tolerance``), or fp32 and
why; :func:`explorer.device.precision_for` decides with it.
:func:`estimate_cost` says before running how many forward/backward passes a setting needs; on the CPU,
:func:`check_cost` refuses settings over the method's cap with a sentence saying what to lower.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from explorer import budget
from explorer.attribution.baselines import BASELINES, ONE_BASELINE
from explorer.attribution.cams import run_cam
from explorer.attribution.errors import AttributionError, CostError
from explorer.attribution.layers import find_layer, layer_channels
from explorer.attribution.spec import Cost, MethodSpec, Option, per_dim
from explorer.device import Tolerance
from explorer.errors import ExplorerError

__all__ = ["METHODS", "check_cost", "check_memory", "estimate_cost", "fit_memory", "occlusion_grid", "passes_for",
           "resolve_method", "with_channels"]


# ------------------------------------------------------------------------------------------------- the costs


def _one(_shape: tuple[int, ...], _opts: Mapping[str, Any]) -> int:
    return 1


def _two(_shape: tuple[int, ...], _opts: Mapping[str, Any]) -> int:
    return 2


def _option(name: str) -> Cost:
    """Cost = the value of option ``name`` (steps, samples): one forward/backward pass each."""
    return lambda _shape, opts: int(opts[name])


def _per_channel(extra: int) -> Cost:
    """Cost = one forward per channel of the layer, plus ``extra`` forwards of the whole image."""
    return lambda _shape, opts: int(opts["channels"]) + extra


def occlusion_grid(shape: tuple[int, ...], opts: Mapping[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(window, strides) per dimension of the (C, H, W) ``shape``, windows clipped to the image."""
    dims = tuple(shape)
    window = per_dim(opts["sliding_window_shapes"], len(dims), 1)
    strides = per_dim(opts.get("strides"), len(dims), 1)
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


def _hw(value: int | Sequence[int] | None) -> str:
    """The (height, width) part of a per-dimension option: "32x32"."""
    h, w = per_dim(value, 3, 1)[-2:]
    return f"{h}x{w}"


# ------------------------------------------------------------------------- what a method does around Captum


def _clip_windows(x: Tensor, opts: Mapping[str, Any]) -> dict[str, Any]:
    """Occlusion: windows no larger than the image (1, 3, H, W), strides per dimension."""
    window, strides = occlusion_grid(tuple(x.shape[1:]), opts)
    return {**opts, "sliding_window_shapes": window, "strides": strides}


def _noise_from_level(x: Tensor, opts: Mapping[str, Any]) -> dict[str, Any]:
    """SmoothGrad: the noise's standard deviation is ``noise_level`` times the image's value range, unless
    Captum's own ``stdevs`` is given."""
    if "stdevs" in opts:
        return dict(opts)
    spread = float(x.detach().max() - x.detach().min())
    return {**opts, "stdevs": float(opts["noise_level"]) * spread}


def _upsample(raw: Tensor, size: tuple[int, int], opts: Mapping[str, Any]) -> Tensor:
    """Grad-CAM: the layer's (1, 1, h, w) grid upsampled to the image's (H, W)."""
    from captum.attr import LayerAttribution  # noqa: PLC0415 - Captum loads with the first attribution

    return LayerAttribution.interpolate(raw.float(), size, interpolate_mode=opts["interpolate_mode"])


# ----------------------------------------------------------------------------------------------- precision

MEASURED = ("20 images each of a digits-trained lab ResNet-20 (32 px) and random-weight ResNet-18 (112 px) and "
            "ResNet-50 (96 px), bench/bench_attribution.py --only tolerance, 2026-12-04")


MEASURED_STEM = ("the same nets and images with the stem in fp32, bench/bench_attribution.py --only tolerance "
                 "--methods saliency,integrated_gradients,gradient_shap, 2026-12-05 on a CPU with AMX")

COMPLETENESS = 0.01
"""Integrated Gradients' and DeepLift's tolerance under bf16: the delta (sum of attributions - (f(image) -
f(baseline)), with fp32 forwards) at most 1 % of |f(image) - f(baseline)|, as ``tests/test_attribution.py`` asks
of fp32 at 32 steps; above it the method runs again in fp32 (a blurred baseline on a random ResNet-18 at 64 px:
2.5 %)."""


def _bf16(rank: str, more: str = "") -> Tolerance:
    """Within tolerance under bf16: ``rank`` is the lowest mean Spearman rank correlation with fp32's map."""
    return Tolerance(True, f"bf16 ok: rank correlation with fp32 >= {rank}{more} ({MEASURED})")


def _fp32(why: str, *, fp32_stem: bool = False) -> Tolerance:
    """Outside tolerance under bf16 (``fp32_stem``: even with the stem in fp32, as measured)."""
    return Tolerance(False, f"fp32: {why} ({MEASURED})", fp32_stem)


# ---------------------------------------------------------------------------------------- shared options


def _baseline(default: str, choices: tuple[str, ...] = ONE_BASELINE) -> Option:
    return Option("baseline", "baseline", "Baseline", "choice", default, choices=choices,
                  describe=BASELINES, help="The reference input the image is compared with.")


def _layer() -> Option:
    return Option("layer", "layer", "Layer (a stage or one block)", "layer",
                  help="Early layers have fine grids but little idea of the class; the last stage knows the class "
                       "but sees the image on a coarse grid.")


def _cam(key: str, label: str, short: str, cam: str, summary: str, **more: Any) -> MethodSpec:
    """A class activation map of the grad-cam package, looking at one layer (default the last stage)."""
    return MethodSpec(key, label, short, None, has_delta=False, cost=more.pop("cost", _one), options=(_layer(),),
                      cam=cam, runner=run_cam, grid_map=True, summary=summary,
                      precision=more.pop("precision", _bf16("0.99")), **more)


_DEEPLIFT_NONLINEAR = ("ReLU", "ELU", "LeakyReLU", "Sigmoid", "Tanh", "Softplus", "MaxPool1d", "MaxPool2d",
                       "MaxPool3d", "Softmax")
"""The modules whose gradients DeepLift's rules replace (Captum's ``SUPPORTED_NON_LINEAR``)."""

def _masked_copies(shape: tuple[int, ...], opts: Mapping[str, Any]) -> int:
    """Score-CAM's elements held at once: every channel's upsampled mask and the image masked by it (C + 1 per
    channel and pixel)."""
    c, h, w = shape
    return int(opts["channels"]) * (c + 1) * h * w


_PER_CHANNEL = {"forward_only": True, "per_channel": True, "cpu_cap": 600, "settings": {"batch_size": 32},
                "batch": "batch_size",
                "setting": lambda o: f"a layer of {o['channels']} channels",
                "advice": "Pick an earlier layer (fewer channels)"}

METHODS: dict[str, MethodSpec] = {
    spec.key: spec
    for spec in (
        MethodSpec(
            "saliency", "Saliency", "sal", "Saliency", has_delta=False, cost=_one, settings={"abs": True},
            precision=_fp32("one bf16 gradient shuffles the ranks of pixels of similar size: rank correlation "
                            f"0.919 on the random ResNet-50 even with the stem in fp32 ({MEASURED_STEM})",
                            fp32_stem=True),
            summary="The gradient of the class score with respect to each pixel (Simonyan et al. 2014).",
        ),
        MethodSpec(
            "integrated_gradients", "Integrated Gradients", "ig", "IntegratedGradients", has_delta=True,
            cost=_option("n_steps"), cpu_cap=256,
            options=(
                Option("n_steps", "steps", "Steps along the path (n_steps)", "int", 32, 4, 512, 4,
                       help="Points on the path from the baseline to the image; more steps make the sum closer to "
                            "f(image) - f(baseline) (a smaller convergence delta). One pass each."),
                _baseline("zeros"),
            ),
            settings={"internal_batch_size": 8, "method": "gausslegendre"}, batch="internal_batch_size",
            setting=lambda o: f"{o['n_steps']} steps", advice="Lower n_steps",
            precision=Tolerance(True, "bf16 ok with the stem in fp32: rank correlation with fp32 >= 0.964 on the "
                                      "random ResNet-50 (0.990 on ResNet-18, 0.999 on the digits net; 0.948 with a "
                                      "bf16 stem); each call's delta is checked against fp32 forwards and the "
                                      "method runs again in fp32 when over 1 % (2 of the 20 digits images) ("
                                      f"{MEASURED_STEM})", fp32_stem=True), completeness=COMPLETENESS,
            summary="Gradients averaged along the straight path from a baseline to the image, times the "
                    "difference (Sundararajan et al. 2017); they add up to f(image) - f(baseline).",
        ),
        MethodSpec(
            "smoothgrad", "SmoothGrad", "sg", "NoiseTunnel", inner="Saliency", has_delta=False,
            cost=_option("nt_samples"), cpu_cap=64,
            options=(
                Option("nt_samples", "samples", "Noisy samples (nt_samples)", "int", 16, 2, 128, 1,
                       help="Noisy copies of the image whose saliency maps are averaged. One pass each."),
                Option("noise_level", "noise", "Noise (fraction of the image's value range)", "float", 0.15,
                       0.0, 0.5, 0.05,
                       help="The noise's standard deviation as a fraction of max - min of the input (Smilkov et "
                            "al. suggest 10-20%)."),
            ),
            settings={"nt_type": "smoothgrad", "nt_samples_batch_size": 8, "abs": True},
            batch="nt_samples_batch_size",
            prepare=_noise_from_level, ours=("noise_level",),
            setting=lambda o: f"{o['nt_samples']} noisy samples", advice="Lower nt_samples", precision=_bf16("0.99"),
            summary="Saliency averaged over noisy copies of the image (Smilkov et al. 2017).",
        ),
        MethodSpec(
            "gradient_shap", "GradientSHAP", "gs", "GradientShap", has_delta=True, cost=_option("n_samples"),
            cpu_cap=64,
            options=(
                Option("n_samples", "samples", "Samples (n_samples)", "int", 8, 2, 128, 1,
                       help="Random points between the image and random baselines. One pass each."),
                _baseline("mixed", (*ONE_BASELINE, "mixed")),
            ),
            settings={"stdevs": 0.0}, batch="n_samples", batch_fixed=True,  # Captum sends every sample at once
            setting=lambda o: f"{o['n_samples']} samples", advice="Lower n_samples",
            precision=_fp32("a few bf16 gradients at random points, not averaged out: rank correlation 0.947 on "
                            f"the random ResNet-50 even with the stem in fp32 ({MEASURED_STEM})", fp32_stem=True),
            summary="Expected gradients x (image - baseline) at random points between the image and random "
                    "baselines (Lundberg & Lee 2017).",
        ),
        MethodSpec(
            "occlusion", "Occlusion", "occ", "Occlusion", has_delta=False, cost=_occlusion_cost, cpu_cap=400,
            forward_only=True,
            options=(
                Option("sliding_window_shapes", "window", "Window (px)", "int", 32, 4, None, 1, patch=True,
                       help="The side of the square patch covered by the baseline."),
                Option("strides", "stride", "Stride (px)", "int", 16, 2, None, 1, patch=True,
                       help="How far the patch moves each time; half the window or less leaves no seams."),
                _baseline("zeros"),
            ),
            settings={"perturbations_per_eval": 8}, batch="perturbations_per_eval",
            prepare=_clip_windows, precision=_bf16("0.99"),
            setting=lambda o: f"{_hw(o['sliding_window_shapes'])} windows every {_hw(o.get('strides'))} px",
            advice="Use larger sliding_window_shapes and strides",
            summary="How much the class score drops when a patch is covered by the baseline (Zeiler & Fergus "
                    "2014). Forward passes only.",
        ),
        MethodSpec(
            "grad_cam", "Grad-CAM", "gc", "LayerGradCam", has_delta=False, cost=_one, options=(_layer(),),
            settings={"relu_attributions": True, "interpolate_mode": "bilinear"}, finish=_upsample,
            ours=("interpolate_mode",), grid_map=True, precision=_bf16("0.99"),
            summary="A layer's channels weighted by their average gradient (Selvaraju et al. 2017), "
                    "upsampled from the layer's grid to the image.",
        ),
        _cam("grad_cam_pp", "Grad-CAM++", "gcpp", "GradCAMPlusPlus",
             "Grad-CAM with each channel weighted by its positive gradients, weighted again pixel by pixel "
             "(Chattopadhay et al. 2018): better when the class appears several times."),
        _cam("xgrad_cam", "XGrad-CAM", "xgc", "XGradCAM",
             "Grad-CAM with the gradients weighted by the activations, normalised per channel (Fu et al. 2020)."),
        _cam("hires_cam", "HiResCAM", "hrc", "HiResCAM",
             "The gradient times the activation at every position, summed over channels (Draelos & Carin 2020): "
             "exactly what the layer's positions add to the score of a network ending in average pooling."),
        _cam("layer_cam", "LayerCAM", "lc", "LayerCAM",
             "Each position's activations weighted by its own positive gradients (Jiang et al. 2021): sharper "
             "than Grad-CAM in early stages."),
        _cam("eigen_cam", "Eigen-CAM", "ec", "EigenCAM",
             "The first principal component of the layer's activations (Muhammad & Yeasin 2020): no gradients, "
             "and the same map for every class.", forward_only=True),
        _cam("score_cam", "Score-CAM", "sc", "ScoreCAM",
             "Each channel's map used as a mask on the image, weighted by the class score it keeps (Wang et al. "
             "2020): gradient-free, one forward per channel.", cost=_per_channel(1), held=_masked_copies,
             **_PER_CHANNEL),
        _cam("ablation_cam", "Ablation-CAM", "ac", "AblationCAM",
             "Each channel weighted by how much the class score drops when it is set to zero (Desai & Ramaswamy "
             "2020): gradient-free, one forward per channel.", cost=_per_channel(2), **_PER_CHANNEL,
             precision=Tolerance(False, "fp32: rank correlation 0.914 on the random ResNet-50 on a CPU with AMX (one "
                                 "of 8 images at 0.321; 0.995 on ResNet-18, 1.000 on the digits net; "
                                 "bench/bench_attribution.py --only tolerance --methods ablation_cam --images 8, "
                                 "2026-12-05), though 0.993 on ResNet-18 on a CPU without AMX")),
        MethodSpec(
            "guided_grad_cam", "Guided Grad-CAM", "ggc", "GuidedGradCam", has_delta=False, cost=_two,
            options=(_layer(),), settings={"interpolate_mode": "bilinear"}, precision=_bf16("0.99"),
            summary="Grad-CAM times guided backpropagation: pixel-sharp and class-specific.",
        ),
        MethodSpec(
            "deeplift", "DeepLift", "dl", "DeepLift", has_delta=True, cost=_two, options=(_baseline("zeros"),),
            pair=True,
            precision=_fp32("rank correlation 0.945 on the random ResNet-18 (0.999 on the digits net), with the "
                            "nonlinearities' inputs in fp32 (Captum's hooks there need them)"),
            completeness=COMPLETENESS, fp32_modules=_DEEPLIFT_NONLINEAR,
            summary="Contributions relative to a baseline, propagated with the rescale rule (Shrikumar et al. "
                    "2017); they add up to f(image) - f(baseline).",
        ),
    )
}
_ALIASES = {(spec.cam or spec.captum or key).lower(): key for key, spec in METHODS.items()}
_ALIASES.update({"noisetunnel": "smoothgrad", "layergradcam": "grad_cam"})


def _plain(name: str) -> str:
    """A method's name without case, spaces, dashes or underscores: "Grad-CAM++" -> "gradcampp"."""
    return name.strip().lower().replace(" ", "").replace("-", "").replace("_", "").replace("++", "pp")


def resolve_method(method: str | MethodSpec) -> MethodSpec:
    """The spec for a registry key (``"integrated_gradients"``), a label or a Captum class name."""
    if isinstance(method, MethodSpec):
        return method
    norm = _plain(str(method))
    for spec in METHODS.values():
        if norm in (_plain(spec.key), _plain(spec.label)):
            return spec
    if norm in _ALIASES:
        return METHODS[_ALIASES[norm]]
    raise AttributionError(f"Unknown attribution method {method!r}; choose one of: {', '.join(METHODS)}.")


def with_channels(spec: MethodSpec, opts: dict[str, Any], model: nn.Module | None, layer: str | None) -> dict:
    """``opts`` plus ``channels``, the output channels of ``layer``, for a method whose cost counts them."""
    if not spec.per_channel:
        return opts
    if model is None:
        raise AttributionError(f"{spec.label} costs one forward per channel of its layer: pass the model too.")
    return {**opts, "channels": layer_channels(model, find_layer(model, layer)[0])}


def estimate_cost(
    method: str, x_shape: Sequence[int], *, layer: str | None = None, model: nn.Module | None = None, **options: Any,
) -> int:
    """Forward/backward passes (forward only for occlusion) that ``method`` needs on one image of ``x_shape``.

    ``x_shape`` is (1, 3, H, W) or (3, H, W); ``layer`` and ``options`` as for ``attribute()``. Score-CAM and
    Ablation-CAM pay one forward per channel of the layer, so they need ``model`` to count them; for the other
    methods the layer does not change the passes.
    """
    spec = resolve_method(method)
    shape = tuple(int(s) for s in x_shape)[-3:]
    return int(spec.cost(shape, with_channels(spec, spec.with_defaults(options), model, layer)))


def check_cost(
    method: str, x_shape: Sequence[int], device: str | torch.device = "cpu", *, layer: str | None = None,
    model: nn.Module | None = None, **options: Any,
) -> int:
    """Like :func:`estimate_cost`, and raises :class:`CostError` when that is over the method's cap on the CPU."""
    spec = resolve_method(method)
    shape = tuple(int(s) for s in x_shape)[-3:]
    opts = with_channels(spec, spec.with_defaults(options), model, layer)
    return passes_for(spec, shape, opts, torch.device(device))


def passes_for(spec: MethodSpec, shape: tuple[int, ...], opts: Mapping[str, Any], device: torch.device) -> int:
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


def fit_memory(spec: MethodSpec, model: nn.Module, shape: tuple[int, ...],
                   opts: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """``opts`` with the images one pass sends lowered to what fits the server's memory budget, and the bytes the
    call reserves (:mod:`explorer.budget`); a :class:`CostError` saying what to lower when even that cannot fit."""
    per_image = budget.image_bytes(model, shape[-2:], backward=not spec.forward_only)
    held = spec.held(shape, opts) * budget.ELEMENT_BYTES if spec.held is not None else 0
    try:
        fitted = budget.fit(per_image, spec.at_once(shape, opts), what=spec.label, size=max(shape[-2:]),
                            setting=spec.batch, adjustable=spec.batch is not None and not spec.batch_fixed,
                            held=held, fixed=budget.call_overhead(model, backward=not spec.forward_only),
                            advice=spec.advice)
    except budget.BudgetError as err:
        raise CostError(str(err)) from None
    if spec.batch is not None and not spec.batch_fixed and fitted.images < int(opts[spec.batch]):
        opts = {**opts, spec.batch: fitted.images}
    return opts, fitted.bytes


def check_memory(method: str, x_shape: Sequence[int], *, model: nn.Module, layer: str | None = None,
                 **options: Any) -> int:
    """The bytes ``method`` reserves in the server's memory budget on one image of ``x_shape`` ((1, C, H, W) or
    (C, H, W)), its batch lowered to what fits; :class:`CostError` with what to lower when even that cannot fit."""
    spec = resolve_method(method)
    shape = tuple(int(s) for s in x_shape)[-3:]
    return fit_memory(spec, model, shape, with_channels(spec, spec.with_defaults(options), model, layer))[1]
