"""Conv output-size arithmetic: the formula, worked step by step, and the size of an image walked through a
ResNet's stem and stages by the formula alone."""

from __future__ import annotations

import pandas as pd

from explorer.blocks.common import ConvSizeError

__all__ = ["CONV_PRESETS", "conv_arithmetic", "conv_output_size", "size_walk"]

CONV_PRESETS: dict[str, tuple[int, int, int]] = {
    "stem conv: 7x7, stride 2, pad 3": (7, 2, 3),
    "stem max-pool: 3x3, stride 2, pad 1": (3, 2, 1),
    "block conv: 3x3, stride 1, pad 1": (3, 1, 1),
    "projection: 1x1, stride 2, pad 0": (1, 2, 0),
}
"""Preset (kernel, stride, padding) of the convolutions and the pooling a ResNet uses."""


def _whole(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConvSizeError(f"The {name} must be a whole number; {value!r} is not.")
    if value < minimum:
        raise ConvSizeError(f"The {name} must be at least {minimum}; you gave {value}.")
    return value


def _conv_settings(size: object, kernel: object, stride: object, padding: object, dilation: object) -> tuple[int, ...]:
    """Validated (I, K, S, P, D); raises ``ConvSizeError`` naming the setting that leaves no output."""
    i, k, s = _whole("input size", size, 1), _whole("kernel size", kernel, 1), _whole("stride", stride, 1)
    p, d = _whole("padding", padding, 0), _whole("dilation", dilation, 1)
    reach, padded = d * (k - 1) + 1, i + 2 * p
    if reach > padded:
        would = (padded - reach) // s + 1
        span = f"a {k}x{k} kernel" + (f" with dilation {d} spans {reach} px" if d > 1 else f" spans {reach} px")
        culprit = "the kernel size or the dilation is too large" if d > 1 else "the kernel is too large"
        raise ConvSizeError(
            f"No output pixel: {span}, but the padded input is only {padded} px ({i} + 2x{p}), so the formula "
            f"gives {would}. {culprit.capitalize()} for this input: use a smaller kernel"
            f"{' or dilation' if d > 1 else ''}, more padding, or a larger input."
        )
    return i, k, s, p, d


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Spatial size after a convolution or pooling: floor((I + 2P - D(K-1) - 1) / S) + 1.

    With D = 1 this is the tutorials' O = floor((I - K + 2P) / S) + 1.

    Raises:
        ConvSizeError: a setting is not a whole number in range, or the kernel (with its dilation) does not fit
            in the padded input, which would make the size zero or negative.
    """
    i, k, s, p, d = _conv_settings(size, kernel, stride, padding, dilation)
    return (i + 2 * p - d * (k - 1) - 1) // s + 1


def conv_arithmetic(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> str:
    """The output-size formula worked out step by step, one line per step (raises like ``conv_output_size``)."""
    i, k, s, p, d = _conv_settings(size, kernel, stride, padding, dilation)
    numerator = i + 2 * p - d * (k - 1) - 1
    lines = [
        "O = floor((I + 2P - D(K - 1) - 1) / S) + 1",
        f"  = floor(({i} + 2x{p} - {d}x({k} - 1) - 1) / {s}) + 1",
        f"  = floor({numerator} / {s}) + 1",
        f"  = {numerator // s} + 1",
        f"  = {numerator // s + 1}",
    ]
    if d == 1:
        lines.append(f"(with D = 1 this is O = floor((I - K + 2P) / S) + 1 = floor(({i} - {k} + {2 * p}) / {s}) + 1)")
    if numerator % s:
        lines.append(f"floor drops the remainder of {numerator}/{s}: {numerator % s} px at the end of the padded "
                     "input fall outside every window")
    return "\n".join(lines)


_STEMS: dict[str, tuple[tuple[str, int, int, int], ...]] = {
    "imagenet": (("stem conv", 7, 2, 3), ("stem max-pool", 3, 2, 1)),
    "deep": (("stem conv 1 (3x3)", 3, 2, 1), ("stem conv 2 (3x3)", 3, 1, 1), ("stem conv 3 (3x3)", 3, 1, 1),
             ("stem max-pool", 3, 2, 1)),
    "cifar": (("stem conv (3x3)", 3, 1, 1),),
}
"""Each stem's (step, kernel, stride, padding) in order (a tiered stem has the deep stem's steps)."""


def size_walk(size: int, stages: int = 4, stem: str = "imagenet") -> pd.DataFrame:
    """The spatial size through a ResNet by the formula alone: the stem's convs and pool (``stem``: ``"imagenet"``,
    ``"deep"``, ``"tiered"`` or ``"cifar"``), then the stride of each of ``stages`` stages' first 3x3 conv (stride 1
    in the first stage, 2 after). Columns: step, kernel, stride, padding, input, output."""
    steps = list(_STEMS["deep" if stem == "tiered" else stem])
    steps += [(f"layer{i + 1} (first 3x3)", 3, 1 if i == 0 else 2, 1) for i in range(stages)]
    rows = []
    for label, k, s, p in steps:
        out = conv_output_size(size, k, s, p)
        rows.append({"step": label, "kernel": k, "stride": s, "padding": p, "input": size, "output": out})
        size = out
    return pd.DataFrame(rows)
