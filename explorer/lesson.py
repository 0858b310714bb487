"""The lesson "ResNet in fourteen steps": the steps as data, and "predict, then reveal" questions computed from the
model.

A :class:`Step` says what to read (two to four plain sentences), which live figure to draw and one thing to try
(the page that goes deeper, and its state, are the app's: ``explorer.ui.pages.LESSON_LINKS``). A
:class:`Question` is never typed in: :func:`question` measures the answer on the configuration the student chose
(shapes on the meta device, small CIFAR twins for gradients), writes the explanation from the same measurement
and puts a few wrong choices around the true answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import pandas as pd
import torch
from torch import nn

from explorer import blocks, lab, why
from explorer.activations import output_shapes
from explorer.attribution.layers import stage_grid
from explorer.config import ModelConfig
from explorer.images import DEFAULT_SAMPLE
from explorer.models import build_cifar, residual_blocks
from explorer.shared import input_channels
from explorer.why import identity, landscape, lesion
from explorer.why.branch import branch_strip

__all__ = ["RACE_DEPTHS", "SAMPLE", "STEPS", "Question", "Step", "degradation_race", "lesson_branch", "lesson_lesion",
           "lesson_slices", "question", "step"]

SAMPLE = DEFAULT_SAMPLE
"""The sample photograph of steps 8 and 9 (the cat: one clear object)."""


@dataclass(frozen=True)
class Step:
    """One step of the lesson: what to read, the name of its live figure and one thing to try."""

    number: int
    title: str
    sentences: tuple[str, ...]
    figure: str
    try_this: str


@dataclass(frozen=True)
class Question:
    """A "predict, then reveal" question: ``answer`` is one of ``choices``."""

    prompt: str
    choices: tuple[str, ...]
    answer: str
    explanation: str


STEPS: tuple[Step, ...] = (
    Step(1, "The degradation problem", (
        "Stacking more layers should never hurt: a deeper net could copy a shallower one and set the extra layers "
        "to the identity.",
        "Yet in the paper's Fig. 1 the 56-layer plain net has a higher *training* error than the 20-layer one, so "
        "this is not overfitting: the deeper net is harder to optimise.",
        "The figure is the same experiment in miniature: plain-8 and plain-20 raced for a few epochs on "
        "handwritten digits.",
    ), "degradation", "Open the Degradation lab, keep the preset and start the race: does plain-56 lag plain-20?"),
    Step(2, "Residual learning: y = F(x) + x", (
        "Instead of asking a few layers to learn a mapping H(x), a residual block learns F(x) = H(x) − x and adds "
        "x back through a shortcut.",
        "If the identity is what is needed, the block only has to push F(x) towards zero, which is easy.",
        "The figure is one block of your model, op by op, with the shape after every op (paper Fig. 2).",
    ), "block", "Open the block page and pick another block: see where the shortcut needs a projection."),
    Step(3, "Identity vs projection: options A, B and C", (
        "F(x) + x is an element-wise sum, so both paths must have the same shape.",
        "Where a stage doubles the channels and halves the resolution the shortcut must change shape: option A "
        "subsamples and pads with zeros, B uses a 1x1 projection only there, C projects every shortcut.",
        "The paper found B slightly better than A and C barely better than B, so B is the default.",
    ), "options", "Switch the sidebar's shortcut option to A or C and watch the parameter count change."),
    Step(4, "BasicBlock vs Bottleneck", (
        "ResNet-18 and 34 stack two 3x3 convs per block; ResNet-50 and deeper use a bottleneck: a 1x1 conv "
        "squeezes the channels, a 3x3 works on the narrow tensor and a 1x1 expands them again.",
        "The expansion is 4: a bottleneck outputs four times the channels its 3x3 sees.",
        "The figure compares the costs of the three blocks at the same width and resolution.",
    ), "block_types", "Choose resnet18 and then resnet50 in the sidebar: which block does each use?"),
    Step(5, "Table 1 for your depth", (
        "Every ResNet is a stem, four stages (conv2_x to conv5_x) and a classifier.",
        "Each stage halves the resolution and doubles the width, so one block costs about the same in every "
        "stage; where the computation goes depends on how many blocks each stage stacks.",
        "The table is the paper's Table 1, measured on your model for your input size.",
    ), "table", "Change the input size in the sidebar to 160 px and see every output size shrink."),
    Step(6, "v1 vs v1.5: where the stride sits", (
        "In a downsampling bottleneck the paper (v1) puts the stride in the first 1x1 conv; torchvision's v1.5 "
        "puts it in the 3x3.",
        "A 1x1 conv with stride 2 simply skips three quarters of its input; a 3x3 with stride 2 still looks at it.",
        "v1.5 costs a little more and is about half a point more accurate on ImageNet.",
    ), "stride", "Switch the sidebar's stride placement between v1 and v1.5 and compare the bars."),
    Step(7, "The output-size formula on the stem", (
        "A convolution with kernel K, stride S and padding P turns an I-pixel side into O = ⌊(I − K + 2P) / S⌋ + 1.",
        "The stem's 7x7 conv with stride 2 and padding 3, then its 3x3 max-pool with stride 2, shrink the image "
        "four-fold before the first block.",
    ), "arithmetic", "Open the calculator and try an input of 225 px: where does the floor drop a pixel?"),
    Step(8, "What each stage sees", (
        "Feature maps are the outputs of a stage: one small image per channel.",
        "Early stages answer *where* (edges and colours at high resolution); late stages answer *what* "
        "(few pixels, many channels).",
        "The filmstrip shows each stage's mean over channels on a sample photograph.",
    ), "filmstrip", "Open Feature maps at conv4_x and look at single channels instead of the mean."),
    Step(9, "Why the network decided", (
        "Grad-CAM weights the last stage's feature maps by how much the top class's score depends on each, and "
        "sums them into one coarse map.",
        "The map has the resolution of the last stage, upsampled onto the photo.",
        "With random weights it shows an untrained network: the pictures only mean something with ImageNet "
        "weights.",
    ), "gradcam", "Open Predictions & attributions and compare Grad-CAM with Integrated Gradients."),
    Step(10, "Why shortcuts matter", (
        "A shortcut gives the gradient a path around every block, straight back to the early layers.",
        "The figure measures one backward pass through freshly initialised plain and residual twins of the "
        "paper's CIFAR nets.",
        "The paper's Fig. 7 below measures each 3x3 layer's response: in trained ResNets the residual functions "
        "stay small, close to the identity.",
    ), "gradients", "Open the Degradation lab at depth 56 and compare the plain and residual gradient curves."),
    Step(11, "Why it works (1): the loss landscape", (
        "Li et al. (2018) sliced the loss around a trained net: the loss at w + α·d for a random direction d whose "
        "every filter is rescaled to the norm of the same filter of w (filter normalisation), so two nets can be "
        "compared.",
        "ResNet-56's slice is smooth and nearly convex; the same net without shortcuts is chaotic, which makes it "
        "hard to optimise.",
        "The figure slices the lesson's trained twins, plain-20 and ResNet-20 (a few epochs on the digits), along "
        "the same seeded direction.",
    ), "landscape", "Open the landscape in 2-D and compare the twins' contours; then train the depth-56 twins."),
    Step(12, "Why it works (2): an ensemble of short paths", (
        "Veit et al. (2016) unrolled a ResNet: each block is taken through its branch or skipped through its "
        "shortcut, so n blocks hold 2^n paths, most of them about n/2 blocks long.",
        "Deleting one block from a trained ResNet removes half of the paths but barely changes its error; deleting "
        "a layer of a plain net cuts its only path.",
        "The figure deletes each block of the lesson's trained twins in turn, with the app's knock-out.",
    ), "lesion", "Open the ensemble view and measure which path lengths carry the gradient."),
    Step(13, "Why it works (3): the branch is small", (
        "At every addition y = F(x) + x the branch F(x) is a correction to the stream x that the shortcut "
        "carries.",
        "In a trained ResNet the ratio ‖F(x)‖ / ‖x‖ is mostly well below 1: the blocks stay close to the "
        "identity, as the paper's Fig. 7 found from the responses' standard deviations.",
        "The figure measures both twins block by block on one test digit.",
    ), "branch", "Open the branch at every add on your own model and photograph."),
    Step(14, "Why it works (4): identity mappings", (
        "He et al. (2016b) moved BN and ReLU before the convolutions (pre-activation), so nothing follows the "
        "addition and the shortcut is a clean identity: x_L = x_l + Σ F(x_i).",
        "Then a term of the gradient reaches every block directly, unscaled by any weight; ResNets of 1001 layers "
        "train.",
        "The figure follows a batch forward and its gradient backward through freshly initialised 56-layer twins of "
        "both forms. Their norms are a symptom to read with care: the argument is the additive form, not constant "
        "norms.",
    ), "identity", "Open identity mappings at depth 164 and compare both forms in one stage of one width."),
)


def step(number: int) -> Step:
    """Step ``number`` (1..14); an out-of-range number is clamped."""
    return STEPS[min(max(int(number), 1), len(STEPS)) - 1]


# --------------------------------------------------------------------------------------------------- live data

RACE_DEPTHS: tuple[int, int] = (8, 20)
"""The plain nets of the miniature Fig. 1: small enough to race in a few seconds on a CPU."""


def degradation_race(depths: tuple[int, int] = RACE_DEPTHS, *, size: int = 16, train_limit: int = 256,
                     epochs: int = 3, seed: int = 0) -> lab.RaceHistory:
    """The paper's Fig. 1 in miniature: two fresh plain CIFAR nets of ``depths`` raced for ``epochs`` on
    ``train_limit`` handwritten digits of ``size`` px (``lab.digits_dataset``, offline). A few seconds on a CPU;
    cache it."""
    data = lab.digits_dataset(size=size, seed=seed, train_limit=train_limit)
    models = lab.race_models([(d, True) for d in depths], seed=seed)
    return lab.train_race(models, data, lab.RaceRecipe(epochs=epochs, batch_size=64, lr=0.05, seed=seed))


def lesson_slices(points: int = 21, images: int = 256) -> list[landscape.Slice]:
    """Step 11's figure: the lesson twins' 1-D loss slices along one filter-normalised direction (the seed's
    first), ``points`` from alpha = -1 to 1 on ``images`` training images. Seconds on a CPU; cache it."""
    twins = why.lesson_twins()
    data = twins.train.head(images)
    return [landscape.loss_slice(m, data, landscape.slice_directions(m, seed=twins.seed, count=1),
                                 landscape.grid(points), name=name) for name, m in twins.models.items()]


def lesson_lesion() -> list[lesion.Lesion]:
    """Step 12's figure: every block of each lesson twin deleted alone, on the digits' test images."""
    twins = why.lesson_twins()
    return [lesion.lesion_study(m, twins.test, ks=(), swaps=False, name=name, seed=twins.seed)
            for name, m in twins.models.items()]


def lesson_branch(image: int = 0) -> dict[str, pd.DataFrame]:
    """Step 13's figure: the branch at every add of each trained lesson twin on test digit ``image``."""
    twins = why.lesson_twins()
    return {name: branch_strip(m, twins.test.one(image)) for name, m in twins.models.items()}


# --------------------------------------------------------------------------------------------------- questions


def _around(n: int) -> list[int]:
    """Four distinct positive whole numbers around ``n`` (n included), sorted."""
    picks = [n, max(1, n // 2), 2 * n, n + 1, n + 2, n + 3]
    return sorted(dict.fromkeys(p for p in picks if p > 0))[:4] if n > 2 else [1, 2, 3, 4]


def _options(true: str, others: list[str]) -> tuple[str, ...]:
    """The true answer and up to three distinct others, in a fixed order (sorted by text length, then text)."""
    picks = list(dict.fromkeys([true, *others]))[:4]
    return tuple(sorted(picks, key=lambda t: (len(t), t)))


def _counts(n: int, others: list[int]) -> tuple[str, ...]:
    """``n`` and up to three distinct ``others`` as text, sorted by value."""
    picks = list(dict.fromkeys([n, *others]))[:4]
    return tuple(map(str, sorted(picks)))


def _sides(n: int) -> tuple[tuple[str, ...], str]:
    values = _around(n)
    if n not in values:
        values = sorted([*values[:3], n])
    return tuple(f"{v}×{v}" for v in values), f"{n}×{n}"


def _shape(c: int, h: int, w: int) -> str:
    return f"{c} × {h} × {w}"


def depth_question(depth: int = 56) -> Question:
    """How many 3x3 conv layers the plain CIFAR net of ``depth`` stacks (counted on a meta build)."""
    with torch.device("meta"):
        net = build_cifar(depth, plain=True)
    convs = [m for _, m in lab.weight_layers(net) if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    n = len(convs)
    return Question(
        f"The deep plain net of Fig. 1 has {depth} weighted layers. How many of them are 3x3 convolutions?",
        _counts(n, _around(n)), str(n),
        f"{depth} = 6n + 2 with n = {(depth - 2) // 6}: one 3x3 stem conv, then 3 stages × {(depth - 2) // 6} blocks "
        f"× 2 convs = {n - 1}, so {n} 3x3 convs, plus the final fully connected layer.")


def branch_question(model: ModelConfig, block: str = "layer2.0") -> Question:
    """The shape of F(x) in ``block`` of the model (a meta shape trace)."""
    size = model.input_size
    trace = blocks.shape_trace(model.meta(), block, (1, model.spec.in_channels, size, size))
    (ci, hi, wi), (co, ho, wo) = trace.input_shape, trace.output_shape
    true = _shape(co, ho, wo)
    others = [_shape(ci, hi, wi), _shape(co, hi, wi), _shape(ci, ho, wo), _shape(2 * co, ho // 2, wo // 2)]
    kind = trace.shortcut_kind
    how = {"none": "this plain net has no shortcut, so nothing is added",
           "identity": "here the shapes already match, so the shortcut is the identity"}.get(
        kind, f"so the shortcut here is a {kind} that turns x into that shape too")
    return Question(f"{model.arch}'s block {block} receives x of shape {_shape(ci, hi, wi)}. What shape is F(x)?",
                    _options(true, others), true,
                    f"F(x) is {true}: its first conv {'halves the resolution and ' if ho < hi else ''}"
                    f"{'changes' if co != ci else 'keeps'} the channels. F(x) + x adds element by element, {how}.")


def projection_question(arch: str, shortcut: str = "B", input_size: int = 224) -> Question:
    """How many projection shortcuts ``arch`` has under ``shortcut`` (``blocks.block_inventory``)."""
    net = blocks.meta_model(arch, shortcut=shortcut)
    inventory = blocks.block_inventory(net, (1, input_channels(net), input_size, input_size))
    projected = inventory[inventory["shortcut"].str.contains("projection")]
    n, total = len(projected), len(inventory)
    reasons = "; ".join(f"{r.name}: {r.reason}" for r in projected.itertuples())
    return Question(f"How many projection shortcuts does {arch} have in option {shortcut}?",
                    _counts(n, [max(0, n - 1), n + 1, 0, total]),
                    str(n),
                    f"{n} of its {total} blocks project. " + (reasons + "." if n else
                    "Option A pads with zeros instead, so no shortcut has parameters."))


def expansion_question(stage: str = "conv4_x", arch: str = "resnet50") -> Question:
    """How many channels a bottleneck of ``stage`` outputs, from the width its 3x3 works at (a meta build)."""
    net = blocks.meta_model(arch)
    info = next(i for i in net.feature_info if i.label == stage)
    block = net.get_submodule(f"{info.module}.0")
    width, out = block.conv2.out_channels, block.conv3.out_channels
    return Question(f"{arch}'s bottlenecks in {stage} run their 3x3 conv on {width} channels. How many channels does "
                    "each of those blocks output?", _counts(out, [width, 2 * width, 8 * width]), str(out),
                    f"The last 1x1 conv expands {width} to {out} channels: expansion = {out // width}. The block's "
                    f"input and output are {out} channels wide, so the identity shortcuts of the next blocks fit.")


def stage_size_question(model: ModelConfig, stage: str = "conv4_x") -> Question:
    """The spatial output size of ``stage`` (a paper label, e.g. "conv4_x") for the model's input size."""
    net = model.meta()
    info = next(i for i in net.feature_info if i.label == stage)
    _, c, h, w = output_shapes(net, [info.module], model.input_size)[info.module]
    choices, true = _sides(h)
    return Question(f"What is {stage}'s output size for a {model.input_size} px input?", choices, true,
                    f"{stage} ({info.module}) outputs {_shape(c, h, w)}: its features are 1/{info.reduction} of the "
                    f"input, and ⌈{model.input_size} / {info.reduction}⌉ = {h}, because every stride-2 step rounds "
                    "up.")


def stride_question(model: ModelConfig, block: str = "layer2.0") -> Question:
    """How many times v1.5's first 1x1 conv of ``block`` costs what v1's does (``blocks.stride_placement``)."""
    arch = model.bottleneck_arch
    placed = blocks.stride_placement(arch, block, model.input_size)
    convs = placed.convs.set_index(["variant", "conv"])
    ratio = convs.loc[("v1.5", "conv1"), "mult_adds"] / convs.loc[("v1", "conv1"), "mult_adds"]
    extra = 100 * (placed.model_mult_adds["v1.5"] / placed.model_mult_adds["v1"] - 1)
    return Question(f"In {arch}'s {block}, how many times v1's mult-adds does v1.5's first 1x1 conv cost?",
                    ("1×", "2×", "4×", "8×") if round(ratio) in (1, 2, 4, 8) else _options(f"{ratio:.0f}×", []),
                    f"{ratio:.0f}×",
                    f"v1 strides in that 1x1, so it outputs {convs.loc[('v1', 'conv1'), 'output']}; v1.5 strides in "
                    f"the 3x3, so the 1x1 runs on all {convs.loc[('v1.5', 'conv1'), 'output']}: {ratio:.0f}× the "
                    f"pixels. The 3x3's output is the same size either way. Over the whole model v1.5 costs "
                    f"{extra:.0f}% more.")


def stem_question(input_size: int = 224) -> Question:
    """The stem conv's output size by the formula (``blocks.conv_output_size``)."""
    out = blocks.conv_output_size(input_size, 7, 2, 3)
    choices, true = _sides(out)
    return Question(f"The stem's 7x7 conv has stride 2 and padding 3. What size does a {input_size} px image come "
                    "out?", choices, true, blocks.conv_arithmetic(input_size, 7, 2, 3))


def last_stage_question(model: ModelConfig) -> Question:
    """The shape the last stage outputs (``activations.output_shapes`` on a meta twin)."""
    net = model.meta()
    info = net.feature_info[-1]
    _, c, h, w = output_shapes(net, [info.module], model.input_size)[info.module]
    true = _shape(c, h, w)
    return Question(f"What shape (channels × height × width) does {info.label} output for a {model.input_size} px "
                    "image?", _options(true, [_shape(c // 2, 2 * h, 2 * w), _shape(c, 2 * h, 2 * w),
                                               _shape(2 * c, max(1, h // 2), max(1, w // 2))]), true,
                    f"{info.label} keeps {c} channels on a {h}×{w} grid: 1/{info.reduction} of the input per side. "
                    "Each stage trades resolution for channels: *where* for *what*.")


def gradcam_question(model: ModelConfig) -> Question:
    """How many cells across Grad-CAM's map has before it is upsampled (``attribution.layers.stage_grid``)."""
    net = model.meta()
    n = stage_grid(net, model.input_size)
    choices, true = _sides(n)
    last = net.feature_info[-1]
    return Question(f"Grad-CAM looks at {last.label} ({last.module}). How many cells across is its map for a "
                    f"{model.input_size} px image, before it is stretched over the photo?", choices, true,
                    f"{last.label} works on a {n}×{n} grid (⌈{model.input_size} / {last.reduction}⌉), so each "
                    f"cell covers about {last.reduction}×{last.reduction} px of the photo: Grad-CAM is coarse.")


def gradient_question(flow: pd.DataFrame | None = None, depth: int = 20) -> Question:
    """In which twin the weight gradients stay more even from the last conv back to the first
    (``lab.pair_gradient_flow``, ``lab.first_last_ratio``)."""
    flow = lab.pair_gradient_flow(depth) if flow is None else flow
    ratios = lab.first_last_ratio(flow)
    (plain, r_plain), (resnet, r_res) = ratios["plain"], ratios["residual"]
    uneven = {plain: abs(math.log(r_plain)), resnet: abs(math.log(r_res))}
    true = min(uneven, key=uneven.get)
    return Question(f"Now {depth} layers deep: at initialisation, in which net is the first conv's gradient closer "
                    "to the last conv's (the gradient flows back more evenly)?", (plain, resnet), true,
                    f"The first conv's gradient is {r_plain:.3g}× the last conv's in {plain} and {r_res:.3g}× in "
                    f"{resnet}. With BatchNorm neither net's gradient vanishes outright (the paper says so too); the "
                    "shortcuts give it a direct path around every block, so it reaches the early layers more evenly.")


def _loss_at_ends(twins: why.Twins, seed: int) -> dict[str, float]:
    """Each twin's mean training loss at alpha = -1 and +1 along one filter-normalised direction drawn with
    ``seed`` (two evaluations each, on 256 training images)."""
    data = twins.train.head(256)
    out = {}
    for name, model in twins.models.items():
        direction = landscape.slice_directions(model, seed=seed, count=1)
        out[name] = float(landscape.loss_slice(model, data, direction, [-1.0, 1.0]).loss.mean())
    return out


def landscape_question(twins: why.Twins | None = None) -> Question:
    """Whose loss rises more one step (alpha = +-1) along a *second* seeded direction, not the figure's."""
    twins = why.lesson_twins() if twins is None else twins
    ends = _loss_at_ends(twins, seed=twins.seed + 1)
    (plain, l_plain), (resnet, l_res) = ends.items()
    close = abs(math.log(l_plain / l_res)) < math.log(1.1)
    true = "about the same" if close else (f"{plain}'s" if l_plain > l_res else f"{resnet}'s")
    return Question(f"Another random direction, filter-normalised to each twin: one step along it (α = ±1, every "
                    f"filter moved by its own norm). Whose training loss is higher there, {plain}'s or {resnet}'s?",
                    (f"{plain}'s", f"{resnet}'s", "about the same"), true,
                    f"Mean loss at α = −1 and +1: {plain} {l_plain:.3g}, {resnet} {l_res:.3g} (at α = 0 both are "
                    "near their trained loss). Li et al. found the nets without shortcuts rougher and steeper "
                    "around their minimum, most clearly at 56 layers and more; at 20 layers the difference is "
                    "smaller and one direction may disagree.")


def paths_question(model: ModelConfig) -> Question:
    """How many paths the model's residual blocks hold (a meta build)."""
    n = len(residual_blocks(model.meta()))
    true = f"2^{n} = {2**n:,}"
    return Question(f"{model.name} has {n} residual blocks. Unrolled, how many paths from its stem to its "
                    "classifier does it hold?", _options(true, [f"{n}", f"{2 * n}", f"{n}² = {n * n}"]), true,
                    f"Each of the {n} blocks is taken either through its branch or around it through the shortcut: "
                    f"2 choices, {n} times, so 2^{n} paths. Their lengths follow the binomial distribution: most are "
                    f"about {n / 2:g} blocks long, and only one path takes every block." if n else
                    "This plain net has no shortcuts, so it holds a single path.")


def small_branch_question(twins: why.Twins | None = None, image: int = 1) -> Question:
    """On another test digit than the figure's: how many of the trained ResNet's blocks add a branch smaller
    than the stream."""
    twins = why.lesson_twins() if twins is None else twins
    name, model = next(reversed(twins.residual.items()))
    frame = branch_strip(model, twins.test.one(image))
    n, total = int((frame["ratio"] < 1).sum()), len(frame)
    label = int(twins.test.y[image])
    return Question(f"On another test digit (a {label}), in how many of {name}'s {total} blocks is the branch "
                    "‖F(x)‖ smaller than the stream ‖x‖?", _counts(n, _around(n) + [total]), str(n),
                    f"{n} of {total}: the median ratio is {frame['ratio'].median():.2f}. A ratio below 1 means the "
                    "block adds a correction to what the shortcut carries rather than replacing it.")


def identity_question(depth: int = 110) -> Question:
    """Whose gradient grows more from the last block back to the first at initialisation, original or
    pre-activation, at ``depth`` (the figure shows 56)."""
    ratios = identity.first_last(identity.identity_pair(depth))
    (original, r_orig), (preact, r_pre) = ratios.items()
    true = f"the {original} block's" if r_orig > r_pre else f"the {preact} block's"
    return Question(f"Now {depth} layers: at initialisation, in which form does the gradient grow more on its way "
                    "back from the last block to the first?",
                    (f"the {original} block's", f"the {preact} block's"), true,
                    f"First block's gradient ÷ last block's: {original} {r_orig:.3g}×, {preact} {r_pre:.3g}×. Neither "
                    "stays constant, and He et al. do not claim it would: their argument is that the pre-activation "
                    "form adds, so a term of the gradient reaches every block directly whatever the norms do.")


def quiz_size(input_size: int) -> int:
    """The input size a question asks about: 160 px, or 224 px when the figure already shows 160 px, so that the
    figure (drawn for the sidebar's size) teaches the rule and the question asks to apply it."""
    return 160 if input_size != 160 else 224


def _quiz(m: ModelConfig) -> ModelConfig:
    return replace(m, input_size=quiz_size(m.input_size))


# Each question is about something next to what its step's figure shows (another block, size or depth), so the
# figure never simply displays the answer.
_QUESTIONS: dict[int, Callable[[ModelConfig], Question]] = {
    1: lambda m: depth_question(56),
    2: lambda m: branch_question(m, "layer3.0"),
    3: lambda m: projection_question(m.arch, "B" if m.plain else m.shortcut, m.input_size),
    4: lambda m: expansion_question("conv4_x"),
    5: lambda m: stage_size_question(_quiz(m)),
    6: lambda m: stride_question(m, "layer3.0"),
    7: lambda m: stem_question(quiz_size(m.input_size)),
    8: lambda m: last_stage_question(_quiz(m)),
    9: lambda m: gradcam_question(_quiz(m)),
    10: lambda m: gradient_question(depth=56),
    11: lambda m: landscape_question(),
    12: lambda m: paths_question(m),
    13: lambda m: small_branch_question(),
    14: lambda m: identity_question(110),
}


def question(number: int, model: ModelConfig) -> Question:
    """The "predict, then reveal" question of step ``number``, computed for ``model``."""
    return _QUESTIONS[step(number).number](model)
