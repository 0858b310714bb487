"""Every public ResNet layout opens with its reference's exact logits: the reference implementations as oracles.

Each reference (timm, Hugging Face transformers, the CIFAR-10 reproduction and d2l written here from their
sources) is built with random weights and perturbed BN statistics, saved the way its users save it, opened with
``model_from_checkpoint`` and no architecture hint, and compared logit for logit on a small random input (64 px).
Every preset's own round trip (saved, reopened as itself, exact logits) is test_checkpoints.py's
``test_every_arch_is_inferred_back_exactly``.
timm and transformers are dev-only dependencies (requirements-dev.txt). CPU only, offline, seeded.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import perturbed_bn
from safetensors.torch import save_file
from torch import Tensor, nn

from explorer.family import PRESETS, ArchSpec
from explorer.models import build
from explorer.weights import WeightsError, model_from_checkpoint

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
X1 = X[:, :1]  # d2l's Fashion-MNIST nets read one channel


def _logits(model: nn.Module, x: Tensor = X) -> Tensor:
    with torch.no_grad():
        out = model(x)
    return getattr(out, "logits", out)


def _assert_same_logits(ours: nn.Module, reference: nn.Module, x: Tensor = X) -> None:
    want, got = _logits(reference, x), _logits(ours, x)
    assert got.shape == want.shape
    assert float((got - want).abs().max()) <= 1e-4 * float(want.abs().max())


def _torch_file(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


# --------------------------------------------------------------------------------------------- timm

TIMM = {  # timm's name -> our preset
    "resnet18d": "resnet18d", "resnet34d": "resnet34d", "resnet26d": "resnet26d", "resnet26t": "resnet26t",
    "resnet50c": "resnet50c", "resnet50d": "resnet50d", "seresnet18": "seresnet18", "seresnet50": "seresnet50",
    "resnetv2_18": "preact_resnet18", "resnetv2_50": "preact_resnet50", "resnet18": "resnet18",
    "resnet50": "resnet50", "resnext50_32x4d": "resnext50_32x4d", "wide_resnet50_2": "wide_resnet50_2",
}  # fmt: skip


@pytest.mark.parametrize("name", TIMM)
def test_timm_models_open_as_their_presets_with_timms_logits(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = perturbed_bn(timm.create_model(name, pretrained=False, num_classes=7))
    path = tmp_path / f"{name}.safetensors"
    save_file(reference.state_dict(), path)  # how timm's hub files are written
    ours, report = model_from_checkpoint(path)
    preset = TIMM[name]
    assert report.arch == preset and report.spec.num_classes == 7
    assert report.layout == ("timm-resnetv2" if name.startswith("resnetv2") else "torchvision")
    assert _fields(report.spec) == _fields(PRESETS[preset])
    assert [a.knob for a in report.assumed] == (["variant"] if PRESETS[preset].block == "bottleneck" else [])
    _assert_same_logits(ours, reference)


def test_a_timm_training_checkpoint_in_torch_format_opens(tmp_path: Path) -> None:
    """timm's train.py saves ``{"state_dict": ..., "state_dict_ema": ...}`` with ``torch.save``."""
    torch.manual_seed(1)
    reference = perturbed_bn(timm.create_model("resnetv2_18", pretrained=False, num_classes=3))
    path = _torch_file({"epoch": 9, "arch": "resnetv2_18", "state_dict_ema": reference.state_dict()},
                       tmp_path / "model_best.pth.tar")
    ours, report = model_from_checkpoint(path)
    assert report.arch == "preact_resnet18" and report.unwrapped == ("state_dict_ema",)
    _assert_same_logits(ours, reference)


def _fields(spec: ArchSpec) -> dict[str, object]:
    return {k: v for k, v in vars(spec).items() if k not in ("name", "num_classes")}


# --------------------------------------------------------------------------------------------- transformers


def _hf(layer_type: str, depths: list[int] | None = None, **config: object) -> nn.Module:
    """A random ``ResNetForImageClassification`` like microsoft/resnet-18 (basic) or -50 (bottleneck)."""
    sizes = [64, 128, 256, 512] if layer_type == "basic" else [256, 512, 1024, 2048]
    depths = depths or ([2, 2, 2, 2] if layer_type == "basic" else [3, 4, 6, 3])
    cfg = transformers.ResNetConfig(layer_type=layer_type, hidden_sizes=sizes, depths=depths, **config)
    torch.manual_seed(2)
    return perturbed_bn(transformers.ResNetForImageClassification(cfg))


@pytest.mark.parametrize(("layer_type", "preset"), [("basic", "resnet18"), ("bottleneck", "resnet50")])
def test_hugging_face_save_pretrained_opens_with_its_logits(layer_type: str, preset: str, tmp_path: Path) -> None:
    labels = {i: f"kind {i}" for i in range(4)}
    reference = _hf(layer_type, num_labels=4, id2label=labels, label2id={v: k for k, v in labels.items()})
    reference.save_pretrained(tmp_path)
    ours, report = model_from_checkpoint(tmp_path / "model.safetensors")
    assert (report.arch, report.layout, report.num_classes) == (preset, "huggingface", 4)
    assert "Hugging Face" in report.message
    assert [a.knob for a in report.assumed] == (["variant"] if layer_type == "bottleneck" else [])
    _assert_same_logits(ours, reference)
    # its config.json, given as the class-names file, names the classes and settles v1.5
    _, named = model_from_checkpoint(tmp_path / "model.safetensors", classes=tmp_path / "config.json")
    assert named.class_names == tuple(labels.values()) and named.classes_from == "`config.json`"
    assert named.assumed == () and named.spec.variant == "v1.5"


def test_hugging_face_pytorch_model_bin_opens(tmp_path: Path) -> None:
    """Older ``save_pretrained`` wrote ``pytorch_model.bin``: the state dict through ``torch.save``."""
    reference = _hf("basic", num_labels=3)
    ours, report = model_from_checkpoint(_torch_file(reference.state_dict(), tmp_path / "pytorch_model.bin"))
    assert (report.arch, report.layout, report.format) == ("resnet18", "huggingface", "torch")
    _assert_same_logits(ours, reference)


def test_hugging_face_v1_is_settled_by_its_config_and_changeable_without_it(tmp_path: Path) -> None:
    """``downsample_in_bottleneck`` (stride in the first 1x1: the paper's v1) leaves no trace in the weights."""
    reference = _hf("bottleneck", [1, 1, 1, 1], num_labels=3, downsample_in_bottleneck=True)
    reference.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    ours, report = model_from_checkpoint(weights, classes=tmp_path / "config.json")
    assert report.spec.variant == "v1" and report.assumed == () and report.arch == "a custom ResNet-14"
    _assert_same_logits(ours, reference)
    guessed, report = model_from_checkpoint(weights)  # without the config: v1.5 assumed, and said so
    assert [(a.knob, a.value) for a in report.assumed] == [("variant", "v1.5")]
    assert "config.json" in report.assumed[0].why and "v1.5" in report.message
    assert not torch.allclose(_logits(guessed), _logits(reference))
    chosen, report = model_from_checkpoint(weights, assume={"variant": "v1"})
    assert report.spec.variant == "v1"
    _assert_same_logits(chosen, reference)


def test_hugging_face_first_stage_downsampling_is_refused_clearly(tmp_path: Path) -> None:
    reference = _hf("basic", num_labels=3, downsample_in_first_stage=True)
    reference.save_pretrained(tmp_path)
    with pytest.raises(WeightsError, match="strides in its first stage"):
        model_from_checkpoint(tmp_path / "model.safetensors", classes=tmp_path / "config.json")


# --------------------------------------------------------------------------------------------- CIFAR reproduction


class _Lambda(nn.Module):
    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


class _CifarBlock(nn.Module):
    """akamaster/pytorch_resnet_cifar10's BasicBlock: option A pads ``planes // 4`` zeros on both sides."""

    def __init__(self, in_planes: int, planes: int, stride: int, option: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            if option == "A":
                self.shortcut = _Lambda(lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4)))
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                              nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _CifarResNet(nn.Module):
    """The reproduction's ResNet: 3x3 stem of 16, stages of 16, 32, 64 channels, global pooling, ``linear``."""

    def __init__(self, n: int, option: str = "A", num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            stage = []
            for i in range(n):
                stage.append(_CifarBlock(in_planes, planes, stride if i == 0 else 1, option))
                in_planes = planes
            blocks.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3 = blocks
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3]).flatten(1)
        return self.linear(out)


def _reproduction_file(model: nn.Module, path: Path) -> Path:
    """As its trainer.py saves: DataParallel's ``module.`` names under ``state_dict``, beside ``best_prec1``."""
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    return _torch_file({"state_dict": state, "best_prec1": 91.25}, path)


@pytest.mark.parametrize("n", [3, 9])  # resnet20, resnet56
def test_cifar_reproduction_option_a_pads_both_sides_by_default(n: int, tmp_path: Path) -> None:
    torch.manual_seed(3)
    reference = perturbed_bn(_CifarResNet(n))
    path = _reproduction_file(reference, tmp_path / "resnet.th")
    ours, report = model_from_checkpoint(path)
    assert report.arch == f"resnet{6 * n + 2}" and report.layout == "cifar"
    assert report.unwrapped == ("state_dict", "module.")
    assert [(a.knob, a.value) for a in report.assumed] == [("shortcut", "A-both"), ("plain", False)]
    assert "both sides" in report.message and "CIFAR-10 reproduction" in report.message
    _assert_same_logits(ours, reference)
    after, other = model_from_checkpoint(path, assume={"shortcut": "A"})  # zeros after the channels
    assert other.spec.shortcut == "A" and other.assumed == report.assumed
    assert other.arch == f"a custom ResNet-{6 * n + 2}"
    assert not torch.allclose(_logits(after), _logits(reference), atol=1e-3)
    plain, flat = model_from_checkpoint(path, assume={"plain": True})
    assert flat.spec.plain and flat.arch == f"plain resnet{6 * n + 2}"


def test_cifar_reproduction_option_b_opens_without_assumptions(tmp_path: Path) -> None:
    torch.manual_seed(4)
    reference = perturbed_bn(_CifarResNet(3, option="B", num_classes=100))
    ours, report = model_from_checkpoint(_reproduction_file(reference, tmp_path / "resnet_b.th"))
    assert report.spec.shortcut == "B" and report.assumed == () and report.num_classes == 100
    assert report.arch == "a custom ResNet-20"
    _assert_same_logits(ours, reference)


def test_the_reproduction_without_its_classifier_names_the_missing_linear(tmp_path: Path) -> None:
    state = {k: v for k, v in _CifarResNet(3).state_dict().items() if not k.startswith("linear.")}
    state["layer1.0.shortcut.0.weight"] = torch.zeros(16, 16, 1, 1)  # a reproduction-style name
    with pytest.raises(WeightsError, match=r"without its classifier \(there is no linear.weight\)"):
        model_from_checkpoint(_torch_file(state, tmp_path / "trunk.th"))


# --------------------------------------------------------------------------------------------- d2l


class _Residual(nn.Module):
    """d2l's Residual (2nd edition, section 8.6): the 1x1 ``conv3`` projects (with a bias, no BN)."""

    def __init__(self, num_channels: int, use_1x1conv: bool = False, strides: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.LazyConv2d(num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.LazyConv2d(num_channels, kernel_size=3, padding=1)
        self.conv3 = nn.LazyConv2d(num_channels, kernel_size=1, stride=strides) if use_1x1conv else None
        self.bn1 = nn.LazyBatchNorm2d()
        self.bn2 = nn.LazyBatchNorm2d()

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.conv3:
            x = self.conv3(x)
        return F.relu(y + x)


def _b1() -> nn.Sequential:
    return nn.Sequential(nn.LazyConv2d(64, kernel_size=7, stride=2, padding=3), nn.LazyBatchNorm2d(), nn.ReLU(),
                         nn.MaxPool2d(kernel_size=3, stride=2, padding=1))


def _stage(num_residuals: int, num_channels: int, first_block: bool = False) -> nn.Sequential:
    return nn.Sequential(*(_Residual(num_channels, use_1x1conv=True, strides=2) if i == 0 and not first_block
                           else _Residual(num_channels) for i in range(num_residuals)))


class _D2lResNet18(nn.Module):
    """d2l's ResNet18 (2nd edition): ``self.net`` holds b1, then b2..b5, then ``last``."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(_b1())
        for i, (n, channels) in enumerate(((2, 64), (2, 128), (2, 256), (2, 512))):
            self.net.add_module(f"b{i + 2}", _stage(n, channels, first_block=i == 0))
        self.net.add_module("last", nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
                                                  nn.LazyLinear(num_classes)))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _d2l_first_edition() -> nn.Sequential:
    """The 1st edition's ResNet-18: one ``nn.Sequential(b1, b2, b3, b4, b5, pool, flatten, linear)``."""
    stages = [_stage(2, c, first_block=i == 0) for i, c in enumerate((64, 128, 256, 512))]
    return nn.Sequential(_b1(), *stages, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(512, 10))


@pytest.mark.parametrize("edition", ["2nd", "1st"])
def test_d2l_resnet18_opens_with_its_logits(edition: str, tmp_path: Path) -> None:
    torch.manual_seed(5)
    reference = _D2lResNet18() if edition == "2nd" else _d2l_first_edition()
    reference(X1)  # materialise the lazy modules
    reference = perturbed_bn(reference)
    ours, report = model_from_checkpoint(_torch_file(reference.state_dict(), tmp_path / "resnet18.params"))
    assert report.arch == "d2l_resnet18" and report.assumed == ()
    assert report.layout == ("d2l" if edition == "2nd" else "d2l-sequential")
    assert (report.spec.in_channels, report.spec.conv_bias, report.spec.shortcut) == (1, True, "B-nobn")
    _assert_same_logits(ours, reference, X1)


# --------------------------------------------------------------------------------------------- every preset


def test_a_file_in_no_layout_says_what_it_looks_like() -> None:
    state = {"encoder.0.weight": torch.zeros(8, 3, 3, 3), "encoder.1.weight": torch.zeros(8),
             "head.weight": torch.zeros(5, 8), "head.bias": torch.zeros(5)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with pytest.raises(WeightsError,
                       match=r"not a ResNet's.*top-level groups: `encoder`, `head`.*`head.weight` \(5x8\)"):
        model_from_checkpoint(buffer.getvalue())


def test_hugging_face_resnet_model_without_its_head_says_so(tmp_path: Path) -> None:
    """``ResNetModel`` (the backbone, no ``resnet.`` prefix) is recognised, and refused for what it lacks."""
    backbone = transformers.ResNetModel(transformers.ResNetConfig(layer_type="basic", hidden_sizes=[64, 128, 256, 512],
                                                                  depths=[2, 2, 2, 2]))
    path = tmp_path / "model.safetensors"
    save_file(backbone.state_dict(), path)
    with pytest.raises(WeightsError, match=r"Hugging Face.*without its classifier \(there is no classifier.1.weight"):
        model_from_checkpoint(path)


def test_a_classifier_under_another_name_is_named_not_called_missing() -> None:
    state = {("head.weight" if k == "fc.weight" else "head.bias" if k == "fc.bias" else k): v
             for k, v in build("resnet18", num_classes=3).state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with pytest.raises(WeightsError, match=r"classifier is not where that layout keeps it \(fc.weight\): it has "
                                           r"`head.weight \(3x512\)`"):
        model_from_checkpoint(buffer.getvalue())


@pytest.mark.parametrize("prefix", ["module.", "model.", "_orig_mod."])
def test_other_layouts_are_unwrapped_too(prefix: str, tmp_path: Path) -> None:
    """DataParallel, Lightning and torch.compile prefixes come off before any layout's names are read."""
    references = [_hf("basic", num_labels=3), _D2lResNet18()]
    references[1](X1)
    for reference in references:
        state = {prefix + k: v for k, v in perturbed_bn(reference).state_dict().items()}
        ours, report = model_from_checkpoint(_torch_file({"state_dict": state}, tmp_path / "w.pth"))
        assert report.stripped_prefixes == (prefix,)
        _assert_same_logits(ours, reference, X1 if report.spec.in_channels == 1 else X)


def test_hf_config_without_resnet_fields_only_names_classes(tmp_path: Path) -> None:
    reference = _hf("basic", num_labels=2)
    config = tmp_path / "labels.json"
    config.write_text(json.dumps({"id2label": {"0": "no", "1": "yes"}}))
    _, report = model_from_checkpoint(_torch_file(reference.state_dict(), tmp_path / "w.bin"), classes=config)
    assert report.class_names == ("no", "yes")
