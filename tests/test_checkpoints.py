"""explorer.checkpoints: a checkpoint's ResNet worked out from its tensors, wrappers unwrapped, classes named.

CPU only, offline, seeded. Every preset in ARCHS is built once per class count, saved, inferred back with no
``arch`` and compared output for output on a 1x3x32x32 input (1x1x32x32 for d2l's one-channel net); the wrappers,
class files and bad inputs use a CIFAR ResNet-8 (75k parameters) or a resnet18. The other layouts (timm,
Hugging Face, the CIFAR-10 reproduction, d2l) are tested against their references in test_family_oracles.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import pathlib
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save as safetensors_save
from torch import Tensor, nn

import explorer
from explorer.checkpoints import reading
from explorer.errors import ExplorerError
from explorer.family import PRESETS, ArchSpec
from explorer.models import ARCHS, ResNet, build, build_cifar
from explorer.shared import seeded
from explorer.text import md
from explorer.weights import ClassNamesError, LoadReport, WeightsError, model_from_checkpoint

X = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
CLASS_COUNTS = (2, 10, 37)


# --------------------------------------------------------------------------------------------- helpers


def _randomise_batchnorm(model: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine weights, so buffers are checked too."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.num_batches_tracked.fill_(7)
    return model.eval()


def _input(model: nn.Module) -> Tensor:
    """``X``, or its first channel for a one-channel net (d2l's); torchvision's models read all three."""
    spec = getattr(model, "spec", None)
    return X[:, : spec.in_channels] if isinstance(spec, ArchSpec) else X


@lru_cache(maxsize=1)
def _trunk(arch: str) -> tuple[ResNet, Tensor]:
    """``build(arch)`` with seeded random weights, built once per arch (the largest take seconds), and its pooled
    features of ``X`` (1, C): the input of the classifier (``fc``, or ``linear``)."""
    with seeded(0):
        model = _randomise_batchnorm(build(arch, num_classes=1))
    with torch.no_grad():
        return model, torch.flatten(model.avgpool(model.features(_input(model))), 1)


def _original(arch: str, num_classes: int) -> ResNet:
    """``build(arch, num_classes=...)`` with seeded weights: the arch's trunk with a seeded classifier put in.

    It is the same network as a fresh ``build`` (which differs only in its classifier), without building it again
    for each class count; the trunk is shared, so use one at a time.
    """
    model, _ = _trunk(arch)
    with seeded(num_classes):
        setattr(model, model.classifier, nn.Linear(model.classifier_layer.in_features, num_classes))
    return model


def _original_outputs(arch: str, num_classes: int) -> Tensor:
    """``_original(arch, num_classes)(X)``, from the cached features (the forward's own last step: the classifier)."""
    model, features = _trunk(arch)
    with torch.no_grad():
        return model.classifier_layer(features)


@lru_cache(maxsize=1)
def _small() -> ResNet:
    """A CIFAR ResNet-8 with 10 classes: the target of the wrapper and class-name cases."""
    with seeded(0):
        return _randomise_batchnorm(build_cifar(8))


def _torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _outputs(model: nn.Module) -> Tensor:
    with torch.no_grad():
        return model(_input(model))


def _shifted(state: dict[str, Tensor], by: float) -> dict[str, Tensor]:
    """Another copy of the weights (an "EMA"): floats moved by ``by`` (variances stay positive)."""
    return {k: v + by if v.is_floating_point() else v.clone() for k, v in state.items()}


def _prefixed(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {prefix + k: v for k, v in state.items()}


def _assert_same_network(loaded: nn.Module, original: nn.Module) -> None:
    assert not loaded.training
    assert not any(t.is_meta for t in loaded.state_dict().values())
    assert loaded.state_dict().keys() == original.state_dict().keys()
    assert torch.equal(_outputs(loaded), _outputs(original))


# --------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(("arch", "num_classes"), [(a, n) for a in ARCHS for n in CLASS_COUNTS])  # arch by arch
def test_every_arch_is_inferred_back_exactly(arch: str, num_classes: int) -> None:
    original = _original(arch, num_classes)
    loaded, report = model_from_checkpoint(_torch_bytes(original.state_dict()))
    assert isinstance(loaded, ResNet) and isinstance(report, LoadReport)
    assert (report.arch, report.num_classes, loaded.num_classes) == (arch, num_classes, num_classes)
    assert report.spec == PRESETS[arch].with_knobs(num_classes=num_classes)
    assert report.inferred == f"{arch}, {num_classes} classes" and report.inferred in report.message
    assert report.class_names == tuple(f"class {i}" for i in range(num_classes)) and report.classes_from is None
    assert report.unwrapped == () and report.format == "torch"
    # what the tensors cannot tell, and only that, is assumed: where a bottleneck strides; option A's padding
    open_knobs = (["shortcut", "plain"] if PRESETS[arch].shortcut == "A-both" else []) + (
        ["variant"] if PRESETS[arch].block == "bottleneck" else [])
    assert [a.knob for a in report.assumed] == open_knobs and len(report.notes) == len(open_knobs)
    assert report.parameters == sum(p.numel() for p in original.parameters())
    assert not loaded.training and not any(t.is_meta for t in loaded.state_dict().values())
    assert loaded.state_dict().keys() == original.state_dict().keys()
    assert torch.equal(_outputs(loaded), _original_outputs(arch, num_classes))


def test_torchvision_fine_tuned_resnet18_with_10_classes_loads() -> None:
    """The issue's opening case: torchvision's own model, fine-tuned to 10 classes."""
    with seeded(3):
        tv = _randomise_batchnorm(torchvision.models.resnet18(num_classes=10))
    loaded, report = model_from_checkpoint(_torch_bytes(tv.state_dict()), arch="resnet18")
    assert report.inferred == "resnet18, 10 classes"
    torch.testing.assert_close(_outputs(loaded), _outputs(tv), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("make", "name", "shortcut"),
    [
        (lambda: build_cifar(8), "resnet8", "A-both"),
        (lambda: build_cifar(14, shortcut="B"), "a custom ResNet-14", "B"),
        (lambda: build("resnet18", shortcut="C", num_classes=3), "a custom ResNet-18", "C"),
        (lambda: build("resnet50", shortcut="A", num_classes=3), "a custom ResNet-50", "A"),
        (lambda: build("resnet50", shortcut="D", num_classes=3), "a custom ResNet-50", "D"),
        (lambda: build("resnet18", preact=True, shortcut="C"), "a custom ResNet-18", "C"),
        (lambda: ResNet(ArchSpec("mine", "basic", (1, 2), (8, 16), stem="cifar", num_classes=4)),
         "a custom ResNet-8", "B"),
    ],
    ids=["cifar-A", "cifar-B", "resnet18-C", "resnet50-A", "resnet50-D", "preact-C", "custom"],
)
def test_shortcut_options_and_other_resnets_are_inferred(make: Callable[[], ResNet], name: str, shortcut: str) -> None:
    with seeded(1):
        original = _randomise_batchnorm(make())
    loaded, report = model_from_checkpoint(_torch_bytes(original.state_dict()))
    assert report.arch == name and (loaded.shortcut_option, loaded.plain) == (shortcut, False)
    assumed = {a.knob for a in report.assumed}
    assert ("shortcut" in assumed) == shortcut.startswith("A")  # no projections: option A assumed, and said so
    assert ("plain" in assumed) == shortcut.startswith("A")
    _assert_same_network(loaded, original)


def test_safetensors_metadata_says_plain_and_names_the_classes() -> None:
    """The degradation lab's files: safetensors with ``plain`` and ``classes`` in the header."""
    with seeded(2):
        plain = _randomise_batchnorm(build_cifar(8, plain=True, num_classes=3))
    names = ["zero", "one", "two"]
    blob = safetensors_save(plain.state_dict(), metadata={"plain": "true", "classes": json.dumps(names)})
    loaded, report = model_from_checkpoint(blob)
    assert (report.format, report.arch, loaded.plain) == ("safetensors", "plain resnet8", True)
    assert report.class_names == tuple(names) and report.notes == () and report.assumed == ()
    _assert_same_network(loaded, plain)


def test_half_precision_is_converted_and_reported() -> None:
    original = _small()
    half = {k: v.half() if v.is_floating_point() else v for k, v in original.state_dict().items()}
    loaded, report = model_from_checkpoint(safetensors_save(half))
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert report.dtype_conversions == (f"{sum(v.is_floating_point() for v in half.values())} tensors float16 -> "
                                        "float32",)
    reference = build_cifar(8).eval()
    reference.load_state_dict(half)
    torch.testing.assert_close(_outputs(loaded), _outputs(reference), rtol=0, atol=0)


def test_report_is_frozen_and_exported_lazily_and_the_rng_untouched() -> None:
    blob = _torch_bytes(_small().state_dict())
    rng = torch.random.get_rng_state()
    _, report = model_from_checkpoint(blob)  # built on the meta device: no random init, no global RNG draw
    assert torch.equal(rng, torch.random.get_rng_state())
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.arch = "resnet18"  # type: ignore[misc]
    assert explorer.model_from_checkpoint is model_from_checkpoint and explorer.LoadReport is LoadReport


# --------------------------------------------------------------------------------------------- wrappers

ARGS = argparse.Namespace(model="resnet18", lr=0.1, epochs=90, sched=[30, 60])  # what training scripts save


def _wrappers(raw: dict[str, Tensor], ema: dict[str, Tensor]) -> dict[str, tuple[object, tuple[str, ...], bool]]:
    """name -> (checkpoint, expected ``unwrapped``, whether the EMA weights are the ones to load)."""
    return {
        "lightning": ({"epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0",
                       "state_dict": _prefixed(raw, "model."), "optimizer_states": [{"lr": 0.1}],
                       "hyper_parameters": {"lr": 0.1}}, ("state_dict", "model."), False),
        "model_state_dict": ({"model_state_dict": raw, "optimizer_state_dict": {"lr": 0.1}, "epoch": 3},
                             ("model_state_dict",), False),
        "state_dict": ({"state_dict": raw, "epoch": 3}, ("state_dict",), False),
        "DataParallel": (_prefixed(raw, "module."), ("module.",), False),
        "torch.compile": (_prefixed(raw, "_orig_mod."), ("_orig_mod.",), False),
        "DataParallel of compiled": (_prefixed(raw, "module._orig_mod."), ("module.", "_orig_mod."), False),
        "torchvision references + EMA": ({"model": raw, "optimizer": {"lr": 0.1}, "epoch": 89, "args": ARGS,
                                          "model_ema": {"n_averaged": torch.tensor(500), **_prefixed(ema, "module.")}},
                                         ("model_ema", "n_averaged", "module."), True),
        "timm + EMA": ({"epoch": 89, "arch": "resnet18", "state_dict": raw, "optimizer": {"lr": 0.1}, "version": 2,
                        "args": ARGS, "state_dict_ema": ema}, ("state_dict_ema",), True),
        "ema entry": ({"model": raw, "ema": ema, "ema_decay": 0.999}, ("ema",), True),
        "lightning + EMA module": ({"state_dict": {**_prefixed(raw, "model."), **_prefixed(ema, "ema.module.")}},
                                   ("state_dict", "ema.", "module."), True),
    }  # fmt: skip


WRAPPERS = tuple(_wrappers({}, {}))


@pytest.mark.parametrize("kind", WRAPPERS)
def test_wrappers_are_unwrapped_and_reported(kind: str) -> None:
    original = _small()
    raw = original.state_dict()
    ema = _shifted(raw, 0.01)
    checkpoint, unwrapped, uses_ema = _wrappers(raw, ema)[kind]
    loaded, report = model_from_checkpoint(_torch_bytes(checkpoint))
    assert report.unwrapped == unwrapped and report.ema == uses_ema
    assert report.stripped_prefixes == tuple(step for step in unwrapped if step.endswith("."))
    assert report.arch == "resnet8" and report.tensors == len(raw)
    expected = build_cifar(8).eval()
    expected.load_state_dict(ema if uses_ema else raw)
    torch.testing.assert_close(_outputs(loaded), _outputs(expected), rtol=0, atol=0)
    assert ("EMA" in report.message) == uses_ema


def test_timm_resnet_checkpoint_loads_with_torchvision_names() -> None:
    """timm's ResNets name every tensor as torchvision does (classifier ``fc``); its training checkpoint format."""
    with seeded(4):
        tv = _randomise_batchnorm(torchvision.models.resnext50_32x4d(num_classes=5))
    checkpoint = {"epoch": 10, "arch": "resnext50_32x4d", "state_dict": tv.state_dict(), "version": 2, "args": ARGS}
    loaded, report = model_from_checkpoint(_torch_bytes(checkpoint))
    assert report.inferred == "resnext50_32x4d, 5 classes" and report.unwrapped == ("state_dict",)
    torch.testing.assert_close(_outputs(loaded), _outputs(tv), rtol=0, atol=0)


# --------------------------------------------------------------------------------------------- class names

NAMES = [f"animal {i}" for i in range(10)]


def _class_sources(tmp: Path) -> dict[str, tuple[object, str | None]]:
    """name -> (``classes`` argument, expected ``classes_from``: a file's name shown as text, else words); the paths
    are written by the test."""
    index_map = {str(i): name for i, name in reversed(list(enumerate(NAMES)))}  # keys out of order on purpose
    return {
        "txt path": (tmp / "classes.txt", md("classes.txt")),
        "txt str path": (str(tmp / "classes.txt"), md("classes.txt")),
        "txt bytes": ("\n".join(NAMES).encode(), "the class-names file"),
        "txt bytes, BOM and CRLF": ("\r\n".join(NAMES).encode("utf-8-sig"), "the class-names file"),
        "txt (filename, bytes)": (("my.txt", "\n".join(NAMES).encode()), md("my.txt")),
        "json list path": (tmp / "labels.json", md("labels.json")),
        "json list (bytes, filename)": ((json.dumps(NAMES).encode(), "labels.json"), md("labels.json")),
        "json index map": (("map.json", json.dumps(index_map).encode()), md("map.json")),
        "json imagenet class index": (("idx.json", json.dumps({str(i): [f"n{i:08d}", n] for i, n in
                                                            enumerate(NAMES)}).encode()), md("idx.json")),
        "json id2label": (("config.json", json.dumps({"id2label": index_map}).encode()), md("config.json")),
        "json label2id": (("l2i.json", json.dumps({n: i for i, n in enumerate(NAMES)}).encode()), md("l2i.json")),
        "file object": (_named(json.dumps(NAMES).encode(), "names.json"), md("names.json")),
        "list": (NAMES, "the list given"),
        "index map": ({i: n for i, n in enumerate(NAMES)}, "the list given"),
    }  # fmt: skip


def _named(data: bytes, name: str) -> io.BytesIO:
    buffer = io.BytesIO(data)
    buffer.name = name
    return buffer


CLASS_SOURCES = tuple(_class_sources(Path("unused")))  # the names only: nothing is written here


@pytest.mark.parametrize("kind", CLASS_SOURCES)
def test_class_names_from_every_source(kind: str, tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("\n".join(NAMES) + "\n\n", encoding="utf-8")
    (tmp_path / "labels.json").write_text(json.dumps(NAMES), encoding="utf-8")
    classes, shown = _class_sources(tmp_path)[kind]
    _, report = model_from_checkpoint(_torch_bytes(_small().state_dict()), classes=classes)
    assert report.class_names == tuple(NAMES) and report.classes_from == shown
    assert f"names from {shown}" in report.message


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: {"state_dict": s, "classes": NAMES},
        lambda s: {"model": s, "class_names": tuple(NAMES), "epoch": 1},
        lambda s: {"state_dict": s, "hyper_parameters": {"class_names": NAMES, "lr": 0.1}},
        lambda s: {"model": s, "classes": {str(i): n for i, n in enumerate(NAMES)}},
    ],
    ids=["classes", "class_names", "lightning hyper_parameters", "index map"],
)
def test_class_names_stored_in_the_checkpoint(wrap: Callable) -> None:
    _, report = model_from_checkpoint(_torch_bytes(wrap(_small().state_dict())))
    assert report.class_names == tuple(NAMES) and report.classes_from == "the checkpoint's own list of classes"


def test_given_class_names_win_over_stored_ones() -> None:
    checkpoint = {"state_dict": _small().state_dict(), "classes": [f"stored {i}" for i in range(10)]}
    _, report = model_from_checkpoint(_torch_bytes(checkpoint), classes=NAMES)
    assert report.class_names == tuple(NAMES)


BAD_CLASSES: dict[str, tuple[object, str]] = {
    "txt, 9 names": (("classes.txt", "\n".join(NAMES[:9]).encode()), r"9 class names in `classes\.txt`.*10 outputs"),
    "list, 11 names": ([*NAMES, "extra"], r"11 class names in the list given.*10 outputs"),
    "json map with a gap": (("m.json", json.dumps({"0": "a", "2": "b"}).encode()), r"numbers its classes `0`, `2`"),
    "json map, not numbers": (("m.json", json.dumps({"a": "cat", "b": "dog"}).encode()), "not class numbers"),
    "invalid json": (("m.json", b'["cat", "dog"'), r"not valid JSON \(line 1"),
    "json, not a list": (("m.json", b'"cat"'), "holds a str, not a list"),
    "json, a number as a name": (("m.json", json.dumps(["cat", 3]).encode()), "Class 1 .* is `3`, not a name"),
    "empty txt": (("c.txt", b"\n \n"), "holds no class names"),
    "not text": (("c.txt", bytes(range(128, 256))), r"not a text file \(UTF-8\)"),
    "missing file": (Path("/no/such/classes.txt"), "no class-names file"),
    "wrong type": (42, "not int"),
}  # fmt: skip


@pytest.mark.parametrize("kind", BAD_CLASSES)
def test_bad_class_names_are_clear_errors(kind: str) -> None:
    classes, expected = BAD_CLASSES[kind]
    with pytest.raises(ClassNamesError, match=expected) as err:
        model_from_checkpoint(_torch_bytes(_small().state_dict()), classes=classes)
    assert isinstance(err.value, WeightsError) and isinstance(err.value, ExplorerError)


def test_stored_class_names_of_the_wrong_count_are_refused() -> None:
    checkpoint = {"state_dict": _small().state_dict(), "classes": NAMES[:3]}
    with pytest.raises(ClassNamesError, match="3 class names in the checkpoint's own list of classes.*10 outputs"):
        model_from_checkpoint(_torch_bytes(checkpoint))


# --------------------------------------------------------------------------------------------- bad inputs


def _without(state: dict[str, Tensor], *prefixes: str) -> dict[str, Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(prefixes)}


def _resnet18_state() -> dict[str, Tensor]:
    return _original("resnet18", 10).state_dict()


BAD_CHECKPOINTS: dict[str, tuple[Callable[[], object], str]] = {
    "another network": (lambda: torchvision.models.mobilenet_v3_small(num_classes=3).state_dict(),
                        "not a ResNet's: a ResNet state dict has conv1.weight"),
    "a missing middle stage": (lambda: _without(_resnet18_state(), "layer3."),
                               "looks like a ResNet but has no `layer3`: it has `layer1`, `layer2`, `layer4`"),
    "a missing last stage": (lambda: _without(_resnet18_state(), "layer4."),
                             r"fc\) reads 512 features.*layer3, gives 256: the stage after it seems to be missing"),
    "no stages": (lambda: _without(_resnet18_state(), "layer"), "none of its stages"),
    "a missing block": (lambda: _without(_resnet18_state(), "layer2.0."), "layer2 of this checkpoint lacks block `0`"),
    "no classifier": (lambda: _without(_resnet18_state(), "fc."), r"without its classifier \(there is no fc.weight\)"),
    "one tensor missing": (lambda: _without(_resnet18_state(), "layer1.0.bn1.running_var"),
                           r"looks like resnet18 .*Missing from the checkpoint \(1\): `layer1.0.bn1.running_var`"),
    "odd projections": (lambda: _without(_resnet18_state(), "layer3.0.downsample."), "follow none of the paper"),
    "a list": (lambda: list(_small().state_dict().values()), "holds a list, not a state dict"),
    "not tensors": (lambda: {**_small().state_dict(), "fc.bias": "hello"}, "must map names to tensors"),
}  # fmt: skip


@pytest.mark.parametrize("kind", BAD_CHECKPOINTS)
def test_bad_checkpoints_are_clear_errors(kind: str) -> None:
    make, expected = BAD_CHECKPOINTS[kind]
    with pytest.raises(WeightsError, match=expected):
        model_from_checkpoint(_torch_bytes(make()))


def test_wrong_arch_says_what_it_looks_like() -> None:
    blob = _torch_bytes(_original("resnet34", 10).state_dict())
    with pytest.raises(WeightsError, match="looks like resnet34, not resnet50: it has basic blocks, 3, 4, 6, 3"):
        model_from_checkpoint(blob, arch="resnet50")
    with pytest.raises(WeightsError, match="no architecture called 'resnet19'"):
        model_from_checkpoint(blob, arch="resnet19")
    _, report = model_from_checkpoint(blob, arch="resnet34")
    assert report.arch == "resnet34"


def test_files_over_the_size_cap_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blob = _torch_bytes(_small().state_dict())
    monkeypatch.setattr(reading, "MAX_CHECKPOINT_BYTES", len(blob) - 1)
    path = tmp_path / "big.pth"
    path.write_bytes(blob)
    for source in (blob, path, _named(blob, "big.pth")):
        with pytest.raises(WeightsError, match="GiB are refused"):
            model_from_checkpoint(source)


def test_a_whole_pickled_model_is_refused() -> None:
    with pytest.raises(WeightsError, match=r"refused without running it.*whole pickled model.*state_dict\(\)"):
        model_from_checkpoint(_torch_bytes(_small()))


class _Touch:
    """Unpickling this would create ``path`` (a pickle's ``__reduce__`` can call any function)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_a_code_running_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    blob = _torch_bytes({"state_dict": _small().state_dict(), "args": _Touch(marker)})
    with pytest.raises(WeightsError, match="refused without running it"):
        model_from_checkpoint(blob)
    assert not marker.exists()


@pytest.mark.parametrize(("shortcut", "plain"), [("A", False), ("A-both", False), ("A", True)])
def test_the_labs_files_settle_the_conventions_from_their_metadata(shortcut: str, plain: bool) -> None:
    """The degradation lab writes ``shortcut`` and ``plain`` beside its weights (head ``fc``, a CIFAR stem): what
    the tensors cannot tell is read there, so nothing is assumed and the model reopens exactly as it was saved."""
    from explorer.lab.saved import TrainedMeta, save_trained

    with seeded(5):
        trained = _randomise_batchnorm(build_cifar(8, shortcut=shortcut, plain=plain, num_classes=3, head="fc"))
    meta = TrainedMeta(depth=8, plain=plain, dataset="digits", classes=("a", "b", "c"), shortcut=shortcut)
    loaded, report = model_from_checkpoint(save_trained(trained, meta))
    assert report.assumed == () and report.notes == () and report.class_names == ("a", "b", "c")
    assert (report.spec.shortcut, report.spec.plain, report.spec.head) == (shortcut, plain, "fc")
    assert report.arch == {("A", False): "a custom ResNet-8", ("A-both", False): "resnet8",
                           ("A", True): "plain resnet8"}[(shortcut, plain)]
    _assert_same_network(loaded, trained)


def test_assumptions_can_be_changed_and_unknown_choices_are_ignored() -> None:
    blob = _torch_bytes(_small().state_dict())
    _, usual = model_from_checkpoint(blob)
    assert [(a.knob, a.value, a.choices) for a in usual.assumed] == [
        ("shortcut", "A-both", ("A-both", "A")), ("plain", False, (False, True))]
    assert "Taken: option A, zeros on both sides of the channels." in usual.message
    changed, report = model_from_checkpoint(blob, assume={"shortcut": "A", "variant": "v1", "plain": "maybe"})
    assert (report.spec.shortcut, report.spec.variant, report.spec.plain) == ("A", "v1.5", False)
    assert report.assumed == usual.assumed  # the layout's usual conventions, whatever was chosen
    assert not torch.equal(_outputs(changed), _outputs(_small()))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_file_read_from_a_path_is_copied_not_mapped(suffix: str, tmp_path: Path) -> None:
    """A path is read by the parser itself (no copy in between), but never mapped: rewriting the file afterwards
    changes nothing in the model (a mapped file's tensors would change with it, or crash on a shorter file)."""
    original = _small().state_dict()
    path = tmp_path / f"w{suffix}"
    write = (lambda s: path.write_bytes(safetensors_save(s))) if suffix == ".safetensors" else (
        lambda s: torch.save(s, path))
    write(original)
    loaded, report = model_from_checkpoint(path)
    before = _outputs(loaded)
    write(_shifted(original, 1.0))
    assert torch.equal(_outputs(loaded), before) and report.format == ("torch" if suffix == ".pth" else "safetensors")


def test_huge_but_finite_weights_are_not_taken_for_infinite() -> None:
    """The finiteness check's fast path (one norm per tensor) overflows on values over ~1e19; it looks again."""
    state = dict(_small().state_dict())
    state["linear.weight"] = torch.full_like(state["linear.weight"], 1e30)
    loaded, _ = model_from_checkpoint(_torch_bytes(state))
    assert float(loaded.linear.weight.detach().max()) == pytest.approx(1e30)
