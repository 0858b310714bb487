"""The classic mistakes of hand-written residual blocks, switched on one at a time and pushed a tensor through:
the exact error PyTorch raises and the fix in one sentence, or, for mistakes that raise nothing, numbers that
show what silently goes wrong next to the same block written correctly.

Every block here is private (built per call, seeded through :func:`explorer.shared.seeded`), so no lock is
needed; tensors are drawn from private generators, never from the global RNG.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from explorer.blocks.arithmetic import conv_output_size
from explorer.blocks.common import BlockError, Shape, fmt_shape
from explorer.blocks.common import tensor_shape as _shape
from explorer.blocks.trace import Step, describe_op
from explorer.cost import mult_adds
from explorer.models import conv1x1, conv3x3
from explorer.shared import seeded

__all__ = [
    "BN_DEMO_STEPS",
    "MAX_CHANNELS",
    "MAX_MULT_ADDS",
    "MAX_SIZE",
    "MISTAKES",
    "BlockCheck",
    "Evidence",
    "HandWrittenBlock",
    "block_code",
    "check_block",
]

MISTAKES: dict[str, str] = {
    "no_projection": "no projection on a stride-2 block",
    "relu_before_add": "ReLU before the addition",
    "bn_after_add": "BatchNorm reused after the addition",
    "stride_wrong_conv": "stride on the wrong conv (copied onto conv2 too)",
}
"""The classic bugs of hand-written ResNet blocks that ``check_block`` can switch on."""

MAX_CHANNELS, MAX_SIZE, MAX_MULT_ADDS = 512, 128, 600_000_000


class HandWrittenBlock(nn.Module):
    """A basic block as a student writes it, optionally with one of ``MISTAKES``.

    (N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride) when written correctly. ``downsample``
    asks for a projection shortcut (1x1 conv + BN); the ``"no_projection"`` mistake leaves it out anyway.
    Every mistake keeps the same parameters in the same order, so a seeded build has the same weights.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, downsample: bool = False,
                 mistake: str | None = None) -> None:
        super().__init__()
        if mistake is not None and mistake not in MISTAKES:
            raise BlockError(f"Unknown mistake {mistake!r}; choose one of: {', '.join(MISTAKES)}.")
        self.mistake = mistake
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(out_channels, out_channels, stride if mistake == "stride_wrong_conv" else 1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()  # used only by the "ReLU before the addition" mistake
        self.downsample = (nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
                           if downsample and mistake != "no_projection" else None)
        self.relu_out = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x, [], {})

    def run(self, x: Tensor, steps: list[Step], taps: dict[str, Tensor]) -> Tensor:
        """Forward pass that appends each op's ``Step`` to ``steps`` (so they survive an exception) and keeps
        intermediate tensors in ``taps``: conv2, branch (F(x)), shortcut, sum."""

        def op(path: str, name: str, module: nn.Module, t: Tensor) -> Tensor:
            t = module(t)
            steps.append(Step(name, describe_op(module), _shape(t), path))
            return t

        out = x
        for name in ("conv1", "bn1", "relu1", "conv2"):
            out = op("branch", name, getattr(self, name), out)
        taps["conv2"] = out
        out = op("branch", "bn2", self.bn2, out)
        if self.mistake == "relu_before_add":
            out = op("branch", "relu2 (mistake)", self.relu2, out)
        taps["branch"] = out
        identity = x
        if self.downsample is None:
            steps.append(Step("identity", "identity", _shape(x), "shortcut"))
        else:
            for i, module in enumerate(self.downsample):
                identity = op("shortcut", f"downsample.{i}", module, identity)
        taps["shortcut"] = identity
        out = out + identity  # raises RuntimeError when F(x) and the shortcut differ in shape
        steps.append(Step("add", "F(x) + shortcut", _shape(out), "merge"))
        taps["sum"] = out
        if self.mistake == "bn_after_add":
            out = op("merge", "bn2 again (mistake)", self.bn2, out)
        return op("merge", "relu_out", self.relu_out, out)


@dataclass(frozen=True)
class Evidence:
    """One measured number showing what a silent mistake does, next to the same block written correctly."""

    measure: str
    this_block: float
    correct_block: float | None


@dataclass(frozen=True)
class BlockCheck:
    """What happened to a tensor in a hand-written block.

    ``ran``: the forward pass finished. ``ok``: it finished and nothing is silently wrong. ``error``: the
    exact text PyTorch raised. ``fix``: one sentence. ``evidence``: numbers for a silent mistake.
    """

    ok: bool
    ran: bool
    steps: tuple[Step, ...]
    output_shape: Shape | None
    error: str | None
    fix: str | None
    explanation: str
    evidence: tuple[Evidence, ...]
    code: str


def _validate_check(in_channels: object, out_channels: object, stride: object, input_size: object) -> None:
    for label, value, top in (("input channels", in_channels, MAX_CHANNELS), ("output channels", out_channels,
                              MAX_CHANNELS), ("stride", stride, 4), ("input size", input_size, MAX_SIZE)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise BlockError(f"The {label} must be a whole number from 1 to {top}; you gave {value!r}.")
    conv_output_size(input_size, 3, stride, 1)  # raises ConvSizeError when no output pixel is left
    with torch.device("meta"):
        block = HandWrittenBlock(in_channels, out_channels, stride, downsample=True)
    macs = mult_adds(block, (1, in_channels, input_size, input_size))
    if macs > MAX_MULT_ADDS:
        raise BlockError(f"This block needs about {macs / 1e9:.1f} G mult-adds, too many for a live demo on a "
                         f"shared CPU (limit {MAX_MULT_ADDS / 1e9:.1f} G): use fewer channels or a smaller input.")


def _seeded_block(seed: int, *args: Any, **kwargs: Any) -> HandWrittenBlock:
    """A ``HandWrittenBlock`` in eval mode whose weights depend on ``seed`` only (the global RNG is untouched)."""
    with seeded(seed):
        return HandWrittenBlock(*args, **kwargs).eval()


def block_code(in_channels: int, out_channels: int, stride: int, downsample: bool, mistake: str | None) -> str:
    """The block as PyTorch code, each line that carries the chosen mistake marked ``# <-- mistake``."""
    s2 = stride if mistake == "stride_wrong_conv" else 1
    projection = downsample and mistake != "no_projection"
    needs = stride != 1 or in_channels != out_channels
    mark = "  # <-- mistake"
    ds = (f"nn.Sequential(nn.Conv2d({in_channels}, {out_channels}, 1, stride={stride}, bias=False), "
          f"nn.BatchNorm2d({out_channels}))" if projection else "None")
    lines = [
        "class Block(nn.Module):",
        "    def __init__(self):",
        "        super().__init__()",
        f"        self.conv1 = nn.Conv2d({in_channels}, {out_channels}, 3, stride={stride}, padding=1, bias=False)",
        f"        self.bn1 = nn.BatchNorm2d({out_channels})",
        f"        self.conv2 = nn.Conv2d({out_channels}, {out_channels}, 3, stride={s2}, padding=1, bias=False)"
        + (mark if s2 != 1 else ""),
        f"        self.bn2 = nn.BatchNorm2d({out_channels})",
        f"        self.downsample = {ds}" + (mark if needs and not projection else ""),
        "        self.relu = nn.ReLU()",
        "",
        "    def forward(self, x):",
        "        identity = x if self.downsample is None else self.downsample(x)",
        "        out = self.relu(self.bn1(self.conv1(x)))",
        "        out = self.bn2(self.conv2(out))",
    ]
    if mistake == "relu_before_add":
        lines.append("        out = self.relu(out)" + mark)
    lines.append("        out = out + identity")
    if mistake == "bn_after_add":
        lines.append("        out = self.bn2(out)" + mark)
    lines.append("        return self.relu(out)")
    return "\n".join(lines)


_SILENT = {
    "relu_before_add": (
        "A ReLU after bn2 makes F(x) >= 0 everywhere, so the block can only add to what the shortcut carries, "
        "never subtract: through an identity block no value can ever go down, and the 'identity plus a "
        "correction' idea is lost. Nothing raises; the network just trains worse (He et al. 2016, 'Identity "
        "Mappings in Deep Residual Networks', tested this design and found it worse than ReLU after the addition)."),
    "bn_after_add": (
        "bn2 is called twice: on conv2's output and again on F(x) + x. Nothing raises, but one set of running "
        "statistics now averages two different distributions, so in eval mode both uses are normalised with "
        "numbers that fit neither; and normalising the sum rescales the shortcut, so x no longer passes "
        "through the block unchanged."),
}


def _diagnose(in_ch: int, out_ch: int, stride: int, size: int, downsample: bool,
              mistake: str | None) -> tuple[list[str], list[str]]:
    """(what is wrong, the fixes), from the configuration alone."""
    wrong, fixes = [], []
    h1 = conv_output_size(size, 3, stride, 1)
    needs = stride != 1 or in_ch != out_ch
    projection = downsample and mistake != "no_projection"
    if mistake == "stride_wrong_conv" and stride > 1:
        h2 = conv_output_size(h1, 3, stride, 1)
        wrong.append(f"conv2 also got stride={stride} (a copied `stride=stride`), so F(x) is downsampled twice, "
                     f"{size} -> {h1} -> {h2} px, while a correct shortcut gives {h1} px")
        fixes.append("give conv2 stride=1, because only the first conv of a basic block downsamples")
    if needs and not projection:
        why = " and ".join(([f"channels go {in_ch} -> {out_ch}"] if in_ch != out_ch else [])
                           + ([f"stride {stride} shrinks {size} -> {h1} px"] if stride != 1 else []))
        wrong.append(f"the shape changes ({why}) but the shortcut is a plain identity, so x stays "
                     f"{in_ch}x{size}x{size}")
        fixes.append(f"give the shortcut a projection, nn.Sequential(nn.Conv2d({in_ch}, {out_ch}, kernel_size=1, "
                     f"stride={stride}, bias=False), nn.BatchNorm2d({out_ch})), so x becomes "
                     f"{out_ch}x{h1}x{h1} like F(x)")
    if mistake == "relu_before_add":
        wrong.append("a ReLU sits before the addition")
        fixes.append("drop the ReLU after bn2 and apply ReLU only after the addition, relu(bn2(conv2(out)) + x)")
    if mistake == "bn_after_add":
        wrong.append("bn2 is reused after the addition")
        fixes.append("remove the BatchNorm after the addition so that each BatchNorm normalises one tensor and the "
                     "sum goes on un-normalised")
    return wrong, fixes


def _one_sentence(fixes: list[str]) -> str | None:
    """The fixes joined into one sentence (``None`` when there is nothing to fix)."""
    if not fixes:
        return None
    text = fixes[0] if len(fixes) == 1 else "fix both: " + "; and ".join(fixes)
    return text[0].upper() + text[1:] + "."


def _relu_evidence(buggy: dict[str, Tensor], correct: dict[str, Tensor]) -> tuple[Evidence, ...]:
    fb, fc = buggy["branch"], correct["branch"]
    return (
        Evidence("share of F(x) values below zero (%)", 100 * (fb < 0).float().mean().item(),
                 100 * (fc < 0).float().mean().item()),
        Evidence("smallest value of F(x)", fb.min().item(), fc.min().item()),
        Evidence("mean of F(x): what the block adds on average", fb.mean().item(), fc.mean().item()),
    )


BN_DEMO_STEPS = 6


def _bn_statistics(block: HandWrittenBlock, in_ch: int, size: int, seed: int,
                   device: torch.device) -> dict[str, float]:
    """Train a copy of ``block`` on ``BN_DEMO_STEPS`` random batches (4, in_ch, size, size) with bn2 keeping a
    cumulative average (momentum=None, so the start value drops out): bn2's running variance vs the variance
    of each tensor it normalised, all as means over channels."""
    block = copy.deepcopy(block).train()
    block.bn2.reset_running_stats()
    block.bn2.momentum = None
    gen = torch.Generator().manual_seed(seed)
    seen: dict[str, list[float]] = {"conv2": [], "sum": []}
    with torch.no_grad():
        for _ in range(BN_DEMO_STEPS):
            taps: dict[str, Tensor] = {}
            block.run(torch.randn(4, in_ch, size, size, generator=gen).to(device), [], taps)
            for key in seen:
                seen[key].append(taps[key].var(dim=(0, 2, 3)).mean().item())
    return {"running": block.bn2.running_var.mean().item(),
            **{key: sum(values) / len(values) for key, values in seen.items()}}


def _bn_evidence(buggy: HandWrittenBlock, correct: HandWrittenBlock, in_ch: int, size: int, seed: int,
                 device: torch.device) -> tuple[Evidence, ...]:
    small = min(size, 8)
    b, c = (_bn_statistics(block, in_ch, small, seed, device) for block in (buggy, correct))
    return (
        Evidence(f"bn2 running variance after {BN_DEMO_STEPS} training batches (mean over channels)",
                 b["running"], c["running"]),
        Evidence("variance of conv2's output, bn2's first input", b["conv2"], c["conv2"]),
        Evidence("variance of F(x) + x, bn2's second input", b["sum"], None),
    )


def check_block(in_channels: int, out_channels: int, stride: int, downsample: bool, mistake: str | None = None,
                input_size: int = 56, *, seed: int = 0, device: str | torch.device = "cpu") -> BlockCheck:
    """Build a hand-written basic block (``HandWrittenBlock``) and push a random (1, in_channels, input_size,
    input_size) tensor through it.

    Returns the shapes per step and either a clean result, the exact ``RuntimeError`` text PyTorch raised
    with the fix in one sentence, or, for mistakes that raise nothing, what silently goes wrong and numbers
    measured against the same block (same seed, same weights) written correctly. The tensors are drawn on
    the CPU (the same numbers on every device) and moved to ``device``.
    """
    if mistake is not None and mistake not in MISTAKES:
        raise BlockError(f"Unknown mistake {mistake!r}; choose one of: {', '.join(MISTAKES)}.")
    _validate_check(in_channels, out_channels, stride, input_size)
    code = block_code(in_channels, out_channels, stride, downsample, mistake)
    wrong, fixes = _diagnose(in_channels, out_channels, stride, input_size, downsample, mistake)
    fix = _one_sentence(fixes)
    device = torch.device(device)
    block = _seeded_block(seed, in_channels, out_channels, stride, downsample=downsample, mistake=mistake).to(device)
    x = torch.randn(1, in_channels, input_size, input_size, generator=torch.Generator().manual_seed(seed)).to(device)
    steps: list[Step] = []
    taps: dict[str, Tensor] = {}
    try:
        with torch.no_grad():
            out = block.run(x, steps, taps)
    except RuntimeError as err:
        branch, skip = (taps["branch"], taps["shortcut"]) if "shortcut" in taps else (None, None)
        shapes = (f"F(x) is {fmt_shape(_shape(branch))} but the shortcut gives {fmt_shape(_shape(skip))}: an "
                  "element-wise addition needs identical shapes. " if branch is not None else "")
        return BlockCheck(False, False, tuple(steps), None, str(err), fix,
                          shapes + "What went wrong: " + "; ".join(wrong) + ".", (), code)
    branch, skip = taps["branch"], taps["shortcut"]
    if branch.shape != skip.shape:  # PyTorch broadcast a size-1 dimension instead of raising
        return BlockCheck(False, True, tuple(steps), _shape(out), None, fix or "Make F(x) and the shortcut the same "
                          "shape.", f"F(x) is {fmt_shape(_shape(branch))} and the shortcut {fmt_shape(_shape(skip))}: "
                          "PyTorch silently broadcast the size-1 dimension instead of raising, so the output "
                          f"is {fmt_shape(_shape(out))}, not what the block is meant to produce. What went wrong: "
                          + "; ".join(wrong) + ".", (), code)
    if mistake in _SILENT:
        correct = _seeded_block(seed, in_channels, out_channels, stride, downsample=downsample).to(device)
        ctaps: dict[str, Tensor] = {}
        with torch.no_grad():
            correct.run(x, [], ctaps)
        evidence = (_relu_evidence(taps, ctaps) if mistake == "relu_before_add"
                    else _bn_evidence(block, correct, in_channels, input_size, seed, device))
        return BlockCheck(False, True, tuple(steps), _shape(out), None, fix, _SILENT[mistake], evidence, code)
    return BlockCheck(True, True, tuple(steps), _shape(out), None, None,
                      _works(in_channels, out_channels, stride, downsample, mistake), (), code)


def _works(in_ch: int, out_ch: int, stride: int, downsample: bool, mistake: str | None) -> str:
    """Why a block that ran cleanly is right, including a mistake that does not bite in this configuration."""
    same = stride == 1 and in_ch == out_ch
    if mistake == "no_projection":
        return ("Stride 1 and equal channels: the identity shortcut is exactly right here, no projection needed. "
                "Set stride 2 or change the channels to see the bug.")
    if mistake == "stride_wrong_conv":
        return ("With stride 1 the copied stride does nothing, so the bug hides until the block downsamples: set "
                "stride 2 to see it. (Moving the stride from conv1 to conv2 alone would not break shapes, it would "
                "only run conv1 at full resolution, 4x the mult-adds; in a bottleneck that choice is v1 vs v1.5, "
                "not a bug. A stride on a bottleneck's last 1x1 would run silently but discard 3/4 of the "
                "3x3's outputs.)")
    if same and downsample:
        return ("The shapes already match, so this projection is optional: it is the paper's option C, "
                f"{in_ch * out_ch + 2 * out_ch:,} extra parameters for a small gain.")
    return "F(x) and the shortcut have the same shape, so they add up; the block is written correctly."
