"""One interface for every method of the registry: ``attribute(model, x, target, method, **options)``.

Safe on a shared model from many threads with no lock held by the caller: the work runs inside
:func:`explorer.shared.exclusive_twin`, on the model's private work twin, whose lock it holds and from which it
removes every hook and attribute the work left (even on failure); the shared model's own lock is free for other
sessions' predictions meanwhile. Gradients are taken with respect to the input only (the parameters' ``.grad``
stay ``None``) and the shared model is never moved or changed.

Precision: bf16 autocast + channels_last where :func:`explorer.device.precision_for` allows it (the device computes
bf16 natively and the method's declared tolerance holds), fp32 elsewhere; ``Attribution.precision`` says which ran.
Under bf16 the network's output and the looked-at layer's output are cast back to float32, so Captum and the
grad-cam package compute their sums and maps in fp32, and a delta that compares with f(image) - f(baseline) is
computed against fp32 forwards: over the method's declared completeness tolerance the method runs again in fp32.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from explorer import budget
from explorer.attribution.baselines import BASELINES, Normalisation, baseline_tensor
from explorer.attribution.errors import AttributionError
from explorer.attribution.layers import find_layer
from explorer.attribution.registry import METHODS, fit_memory, passes_for, resolve_method, with_channels
from explorer.attribution.result import Attribution, reduce_channels
from explorer.attribution.spec import MethodSpec
from explorer.deadline import watch
from explorer.device import Precision, device_label, oom_advice, precision_for, resolve_device, synchronize
from explorer.errors import ExplorerError
from explorer.predict import InputError, as_batch, num_classes
from explorer.shared import Hooks, exclusive_twin

__all__ = ["FOR_MEMORY", "FOR_MODEL", "attribute"]

FOR_MODEL = "this model (another run is using it)"
FOR_MEMORY = "the server's memory"

# Captum announces on every call that it sets (and will remove) hooks; exclusive_twin() makes sure it did.
warnings.filterwarnings("ignore", message=r"Setting (forward, )?backward hooks", category=UserWarning)


def _baseline(spec: MethodSpec, x: Tensor, opts: Mapping[str, Any],
              normalisation: Normalisation | None) -> tuple[Tensor | None, str | None]:
    """The reference input for ``x`` from ``opts["baseline"]`` (a kind, a number or a tensor; Captum's own
    ``baselines`` wins when given) and its description; (None, None) for a method without one."""
    if not spec.needs_baseline:
        return None, None
    choice = opts["baselines"] if "baselines" in opts else opts.get("baseline", "zeros")
    if isinstance(choice, str) and choice in BASELINES and choice not in spec.baseline_kinds:
        takers = [s.label for s in METHODS.values() if choice in s.baseline_kinds]
        raise AttributionError(f"{spec.label} takes one of the baselines {', '.join(spec.baseline_kinds)}; "
                               f"{choice!r} is for {', '.join(takers)} only.")
    return baseline_tensor(choice, x, normalisation)


def _run_captum(
    spec: MethodSpec, net: nn.Module, x: Tensor, target: int, layer: nn.Module | None,
    baseline: Tensor | None, opts: Mapping[str, Any],
) -> tuple[Tensor, Tensor | None]:
    """Build the Captum object and call ``attribute``; returns (raw attribution, delta or None)."""
    if spec.captum is None:
        raise AttributionError(f"{spec.label} is not a Captum method.")
    kwargs = spec.for_captum(opts)
    ctor_names = spec.constructor_names()
    ctor = {k: kwargs.pop(k) for k in list(kwargs) if k in ctor_names}
    if baseline is not None:
        kwargs["baselines"] = baseline
    if spec.has_delta:
        kwargs.setdefault("return_convergence_delta", True)
    out = spec.build(net, layer, **ctor).attribute(x, target=target, **kwargs)
    return out if spec.has_delta and kwargs["return_convergence_delta"] else (out, None)


def _as_float(_module: nn.Module, _args: tuple, out: Tensor) -> Tensor | None:
    """A forward hook: a bf16 output cast to float32 (what comes after it still runs under autocast)."""
    return out.float() if isinstance(out, Tensor) and out.dtype == torch.bfloat16 else None


def _float_inputs(_module: nn.Module, args: tuple) -> tuple:
    """A forward pre-hook: bf16 inputs cast to float32, so the module runs in fp32 under autocast."""
    return tuple(a.float() if isinstance(a, Tensor) and a.dtype == torch.bfloat16 else a for a in args)


@contextlib.contextmanager
def _stem_in_fp32(net: nn.Module) -> Iterator[None]:
    """Run ``net``'s first convolution (the stem: the last layer the gradient passes on its way to the pixels)
    outside autocast while the block runs, so the input gradient is computed in fp32 from its bf16 upstream: on a
    random ResNet-50 it lifts Integrated Gradients' rank correlation with fp32 from 0.948 to 0.964 over 20 images,
    for about 7 % more time (``bench/bench_attribution.py --only tolerance``)."""
    stem = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    if stem is None:
        yield
        return
    run = stem.forward

    def forward(x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return run(x.float())

    stem.forward = forward  # an instance attribute: exclusive() removes it even if this block fails
    try:
        yield
    finally:
        del stem.forward


def _fp32_gap(net: nn.Module, x: Tensor, baseline: Tensor, target: int) -> Tensor:
    """f(``x``) - f(``baseline``) for class ``target``, the forwards in fp32 (x: (1, C, H, W), baseline:
    (B, C, H, W), their mean taken)."""
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        out = net(torch.cat([x.detach(), baseline.detach().to(x.dtype)])).float()[:, target]
    return out[0] - out[1:].mean()


def _count_images(hooks: Hooks, total: int, progress: Callable[[float], None]) -> None:
    """A forward hook on the whole model reporting images processed / ``total`` (capped at 1) to ``progress``."""
    seen = [0]

    def hook(_module: nn.Module, args: tuple, _out: Tensor) -> None:
        seen[0] += int(args[0].shape[0]) if args and isinstance(args[0], Tensor) else 1
        progress(min(1.0, seen[0] / max(total, 1)))

    hooks.forward(hooks.net, hook)


def _told(waiting: Callable[[int, str], None] | None, what: str) -> Callable[[int], None] | None:
    """``waiting`` with what is waited for filled in."""
    return None if waiting is None else (lambda place: waiting(place, what))


def _check_target(model: nn.Module, target: object) -> int:
    n_cls = num_classes(model)
    if not isinstance(target, int | np.integer) or target < 0 or (n_cls is not None and target >= n_cls):
        raise InputError(f"The target class must be a class index from 0 to {(n_cls or 1) - 1}, not {target!r}.")
    return int(target)


def attribute(
    model: nn.Module,
    x: Tensor,
    target: int,
    method: str,
    *,
    device: str | torch.device | None = None,
    layer: str | None = None,
    progress: Callable[[float], None] | None = None,
    normalisation: Normalisation | None = None,
    fast: bool | None = None,
    deadline: float | None = None,
    waiting: Callable[[int, str], None] | None = None,
    **options: Any,
) -> Attribution:
    """Attribute class ``target`` of ``model`` (eval mode) on one image ``x`` (1, C, H, W) with ``method``.

    ``device`` None runs where the model lives; another device uses a cached copy of the model there.
    ``layer`` (the CAMs, Guided Grad-CAM) is a dotted module name, default the last stage. ``progress`` is
    called with the fraction of passes done. ``normalisation`` is the (mean, std) ``x`` was normalised with
    (ImageNet's when None): the black baseline is black in it. ``fast``: None follows the precision policy (bf16
    autocast where the device computes bf16 natively and the method's declared tolerance holds), False forces
    fp32, True asks for bf16 on a native device even for a method declared fp32 (to measure it). ``deadline``:
    the seconds the call may run (default :func:`explorer.deadline.call_seconds`), checked before each batch.
    ``waiting`` is called with the call's place in line (1: next) and what it waits for (:data:`FOR_MODEL`: another
    run on this model, first; then :data:`FOR_MEMORY`: the server's memory, :data:`budget.LEDGER`).
    ``options`` are Captum's keywords plus ours (``baseline``: a kind of :data:`BASELINES`, a number or a tensor;
    the registry's declared options). Takes the model's lock itself.

    Raises:
        AttributionError: unknown method, option or layer; a failure inside Captum.
        CostError: settings over the CPU cap.
        InputError: a tensor that is not one RGB image, or a class the model does not have.
        DeviceError: unknown device, or out of memory.
        DeadlineError: the call ran past ``deadline`` (stopped between two batches; nothing is kept).
    """
    spec = resolve_method(method)
    if model.training:
        raise AttributionError("The model is in training mode: call model.eval() first (BatchNorm would "
                               "otherwise use and change its running statistics).")
    if layer is not None and not spec.uses_layer:
        users = [s.label for s in METHODS.values() if s.uses_layer]
        raise AttributionError(f"{spec.label} does not look at a layer; only these methods do: {', '.join(users)}.")
    dev = resolve_device(device, model)
    x = as_batch(x, model).detach()
    target = _check_target(model, target)
    layer_name = find_layer(model, layer)[0] if spec.uses_layer else None
    opts = with_channels(spec, spec.prepare(x, spec.with_defaults(options)), model, layer_name)
    passes = passes_for(spec, tuple(x.shape[1:]), opts, dev)
    precision = precision_for("attribution", dev, method=spec.precision, fast=fast, dtype=x.dtype)
    opts, memory = fit_memory(spec, model, tuple(x.shape[1:]), opts)
    try:
        with exclusive_twin(model, dev, waiting=_told(waiting, FOR_MODEL)) as hooks, \
                budget.LEDGER.reserve(memory, waiting=_told(waiting, FOR_MEMORY)):
            net = hooks.net
            watch(hooks, spec.label, deadline, advice="Lower its samples or steps, or the input size,")
            x = x.to(dev, copy=True)  # our own copy: Captum flips its flags
            if precision.bf16:
                x = x.contiguous(memory_format=torch.channels_last)
            x.requires_grad_(not spec.forward_only)
            baseline, description = _baseline(spec, x, opts, normalisation)
            module = net.get_submodule(layer_name) if layer_name else None
            if precision.bf16:  # registered first, so the methods' own hooks see float32
                for where in (net, module) if module is not None else (net,):
                    hooks.forward(where, _as_float)
                for where in net.modules():
                    if type(where).__name__ in spec.fp32_modules:
                        hooks.pre(where, _float_inputs)
            if progress is not None:
                _count_images(hooks, passes, progress)
            start = time.perf_counter()
            raw, full, delta, precision = _run(spec, net, x, target, module, baseline, opts, precision)
            synchronize(dev)
            seconds = time.perf_counter() - start
    except torch.OutOfMemoryError:
        raise oom_advice(dev) from None
    except budget.BudgetError as err:
        raise AttributionError(str(err)) from None
    except ExplorerError:
        raise
    except Exception as err:  # a failing method is a message on screen, not a crash
        raise AttributionError(f"{spec.label} failed: {err}") from err
    raw = raw.detach().cpu()
    if raw.dtype in (torch.bfloat16, torch.float16):
        raw = raw.float()
    if full is None:
        full = spec.finish(raw, tuple(x.shape[-2:]), opts) if spec.finish else raw
    return Attribution(
        method=spec.key,
        label=spec.label,
        target=target,
        map=reduce_channels(full),
        raw=raw,
        baseline=None if baseline is None else baseline.detach().cpu(),
        baseline_description=description,
        delta=None if delta is None else float(delta.flatten()[delta.abs().argmax()]),
        seconds=seconds,
        passes=passes,
        device=device_label(dev),
        layer=layer_name,
        options={k: v for k, v in opts.items() if not isinstance(v, Tensor)},
        precision=precision.label,
        precision_note=precision.why,
        memory=memory,
    )



def _run(
    spec: MethodSpec, net: nn.Module, x: Tensor, target: int, layer: nn.Module | None, baseline: Tensor | None,
    opts: Mapping[str, Any], precision: Precision,
) -> tuple[Tensor, Tensor | None, Tensor | None, Precision]:
    """The method itself in ``precision``: (raw attribution, the package's full-size map or None, delta or None,
    the precision that ran). Under bf16, a delta that compares with f(image) - f(baseline) is computed against
    fp32 forwards, and over the method's ``completeness`` tolerance the method runs again in fp32."""
    check = precision.bf16 and spec.completeness is not None and baseline is not None \
        and opts.get("return_convergence_delta", True)
    with precision.autocast(x.device), _stem_in_fp32(net) if precision.fp32_stem else contextlib.nullcontext():
        if spec.runner is not None:  # a CAM of the grad-cam package: its own full-size map
            (raw, full), delta = spec.runner(spec, net, x, target, layer, opts), None
        else:
            ran = {**opts, "return_convergence_delta": False} if check else opts
            (raw, delta), full = _run_captum(spec, net, x, target, layer, baseline, ran), None
    if not check:
        return raw, full, delta, precision
    gap = _fp32_gap(net, x, baseline, target)
    delta = raw.detach().float().sum() - gap
    if abs(float(delta)) <= spec.completeness * abs(float(gap)):
        return raw, full, delta, precision
    share = abs(float(delta)) / max(abs(float(gap)), 1e-12)
    again = Precision(False, f"fp32: in bf16 the attributions missed f(image) - f(baseline) by {share:.1%} "
                             f"(tolerance {spec.completeness:.0%}), so they ran again in fp32")
    raw, delta = _run_captum(spec, net, x, target, layer, baseline, opts)
    return raw, None, delta, again
