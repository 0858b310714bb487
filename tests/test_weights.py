"""explorer.weights: metadata, pretrained weights through the hub cache, and safe loading of user checkpoints.

Offline and CPU only: "pretrained" files are checkpoints the tests make themselves under the expected name
in a temporary TORCH_HOME, and the network is either monkeypatched away or a loopback socket.
"""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import pickle
import socket
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
from helpers import perturbed_bn
from safetensors.torch import save as safetensors_save
from streamlit.runtime.uploaded_file_manager import UploadedFile, UploadedFileRec
from torch import Tensor, nn

from explorer import weights
from explorer.checkpoints import reading
from explorer.errors import ExplorerError
from explorer.models import TORCHVISION_ARCHS, build, build_cifar
from explorer.weights import (
    LoadReport,
    WeightsError,
    WeightsUnavailable,
    cache_path,
    imagenet_categories,
    load_checkpoint,
    load_pretrained,
    pretrained_status,
    pretrained_supported,
    weights_info,
)

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
DOWNLOAD = bytes(range(256)) * 10_000  # 2.56 MB: three 1 MiB chunks


# --------------------------------------------------------------------------------------------- fixtures


def _randomised(model: nn.Module) -> dict[str, Tensor]:
    """``model``'s state dict after giving every BatchNorm non-trivial statistics, so buffers are checked too."""
    return perturbed_bn(model).state_dict()


@pytest.fixture(scope="module")
def resnet18_state() -> dict[str, Tensor]:
    """torchvision's resnet18, random weights: stands in for the ImageNet file and for real-size checkpoints."""
    torch.manual_seed(0)
    return _randomised(torchvision.models.resnet18())


@pytest.fixture(scope="module")
def state() -> dict[str, Tensor]:
    """A tiny checkpoint (CIFAR ResNet-8, 75k parameters) for the many format and failure cases."""
    torch.manual_seed(0)
    return _randomised(build_cifar(8))


@pytest.fixture
def model() -> nn.Module:
    """A fresh ResNet-8 with other random weights, the target of ``state``."""
    torch.manual_seed(123)
    return build_cifar(8).eval()


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty TORCH_HOME; the per-process reachability cache is cleared so each test starts fresh."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(weights, "_reachability", {})
    return home


def _torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_state_equal(model: nn.Module, expected: dict[str, Tensor]) -> None:
    actual = model.state_dict()
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value.to(actual[key].dtype), rtol=0, atol=0, msg=key)


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "_network_available", lambda url: False)


# --------------------------------------------------------------------------------------------- metadata


def test_resnet50_metadata_matches_torchvision_v2() -> None:
    info = weights_info("resnet50")
    assert info.name == "IMAGENET1K_V2"
    assert (info.acc1, info.acc5) == (80.858, 95.434)
    assert info.num_params == 25_557_032
    assert (info.resize, info.crop, info.interpolation) == (232, 224, "bilinear")
    assert info.mean == pytest.approx((0.485, 0.456, 0.406)) and info.std == pytest.approx((0.229, 0.224, 0.225))
    assert info.file_name == "resnet50-11ad3fa6.pth" and info.url.endswith("/" + info.file_name)
    assert len(info.categories) == 1000 and info.label == "ImageNet weights (IMAGENET1K_V2)"


@pytest.mark.parametrize("arch", TORCHVISION_ARCHS)
def test_every_torchvision_arch_has_metadata_that_matches_our_model(arch: str) -> None:
    info = weights_info(arch)
    with torch.device("meta"):  # counts parameters without allocating or initialising them
        ours = build(arch)
    assert info.num_params == sum(p.numel() for p in ours.parameters())
    assert info.file_name.startswith(arch + "-") and info.file_name.endswith(".pth")
    assert 69 < info.acc1 < info.acc5 < 100
    assert info.crop == 224 and info.resize in (232, 256)
    assert info.categories == tuple(imagenet_categories())


def test_imagenet_categories() -> None:
    names = imagenet_categories()
    assert len(names) == 1000 and names[0] == "tench" and names[-1] == "toilet tissue"


def test_unknown_arch_is_a_clear_error() -> None:
    with pytest.raises(WeightsError, match="resnet18, resnet34") as err:
        weights_info("resnet9000")
    assert isinstance(err.value, ExplorerError) and isinstance(err.value, ValueError)


@pytest.mark.parametrize("arch", ["resnet50d", "preact_resnet18", "resnet20", "d2l_resnet18"])
def test_presets_beyond_torchvisions_have_no_imagenet_weights_here(arch: str) -> None:
    with pytest.raises(WeightsError, match=f"torchvision has ImageNet weights only for its ten networks.*{arch}"):
        weights_info(arch)


@pytest.mark.parametrize(
    ("variant", "shortcut", "plain", "supported"),
    [("v1.5", "B", False, True), ("v1", "B", False, False), ("v1.5", "A", False, False),
     ("v1.5", "C", False, False), ("v1.5", "B", True, False)],
)  # fmt: skip
def test_pretrained_supported_only_for_torchvision_configuration(
    variant: str, shortcut: str, plain: bool, supported: bool
) -> None:
    assert pretrained_supported(variant=variant, shortcut=shortcut, plain=plain) is supported


# --------------------------------------------------------------------------------------------- pretrained


def test_cache_path_reads_torch_home_on_every_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "a"))
    assert cache_path("resnet18") == tmp_path / "a" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "b"))
    assert cache_path("resnet18").parent == tmp_path / "b" / "hub" / "checkpoints"


def test_load_pretrained_from_the_hub_cache_matches_torchvision(
    torch_home: Path, resnet18_state: dict[str, Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = resnet18_state
    model = build("resnet18").eval()
    monkeypatch.setattr(weights, "_network_available", lambda url: pytest.fail("a cached file needs no network"))
    path = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    assert pretrained_status("resnet18") == "cached"
    reference = torchvision.models.resnet18().eval()
    reference.load_state_dict(state)
    assert not torch.equal(model.conv1.weight, state["conv1.weight"])  # random before loading
    with torch.no_grad():
        info = load_pretrained(model, "resnet18", progress=False)
        _assert_state_equal(model, state)
        torch.testing.assert_close(model(X), reference(X))
    assert info.name == "IMAGENET1K_V1" and info.file_name == path.name


def test_no_cache_and_no_network_names_file_and_folder(torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _offline(monkeypatch)
    model = build("resnet18")
    before = _snapshot(model)
    assert pretrained_status("resnet50") == "unavailable"
    with pytest.raises(WeightsUnavailable) as err:
        with torch.device("meta"):  # no weights are needed to reach this error, so none are allocated
            resnet50 = build("resnet50")
        load_pretrained(resnet50, "resnet50", progress=False)
    message = str(err.value)
    assert "resnet50-11ad3fa6.pth" in message
    assert str(torch_home / "hub" / "checkpoints") in message
    assert "https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in message
    with pytest.raises(WeightsUnavailable, match="resnet18-f37072fd.pth"):
        load_pretrained(model, "resnet18", download=False)
    _assert_state_equal(model, before)


def test_failed_download_is_unavailable_and_leaves_nothing_behind(
    torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(weights, "_network_available", lambda url: True)
    assert pretrained_status("resnet18") == "downloadable"

    def refuse(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("connection reset")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(WeightsUnavailable, match="connection reset") as err:
        load_pretrained(build("resnet18"), "resnet18", progress=False)
    assert str(cache_path("resnet18").parent) in str(err.value)
    assert list(cache_path("resnet18").parent.iterdir()) == []


def test_damaged_download_fails_the_hash_check(
    torch_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real URL is served from a local file whose SHA-256 does not start with the 'f37072fd' in its name."""
    served = tmp_path / "served.pth"
    served.write_bytes(DOWNLOAD)
    real_urlopen = urllib.request.urlopen
    monkeypatch.setattr(weights, "_network_available", lambda url: True)
    monkeypatch.setattr(urllib.request, "urlopen", lambda request, timeout: real_urlopen(served.as_uri()))
    with pytest.raises(WeightsUnavailable, match="SHA-256"):
        load_pretrained(build("resnet18"), "resnet18", progress=False)
    assert list(cache_path("resnet18").parent.iterdir()) == []


def test_download_reports_progress_and_verifies_the_hash(tmp_path: Path) -> None:
    served = tmp_path / "served.pth"
    served.write_bytes(DOWNLOAD)
    prefix = hashlib.sha256(DOWNLOAD).hexdigest()[:8]
    dest = tmp_path / "cache" / f"resnet18-{prefix}.pth"
    seen: list[tuple[int, int | None]] = []
    weights._download(served.as_uri(), dest, progress=False, on_progress=lambda done, total: seen.append((done, total)))
    assert dest.read_bytes() == DOWNLOAD
    assert seen == [(min(n << 20, len(DOWNLOAD)), len(DOWNLOAD)) for n in (1, 2, 3)]  # 1 MiB chunks

    wrong = tmp_path / "cache" / "resnet18-00000000.pth"
    with pytest.raises(ValueError, match="SHA-256"):
        weights._download(served.as_uri(), wrong, progress=False, on_progress=None)
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]


@pytest.mark.parametrize(
    "options", [{"variant": "v1"}, {"shortcut": "A"}, {"shortcut": "C"}, {"plain": True}], ids=str
)
def test_pretrained_refused_for_other_configurations(torch_home: Path, options: dict) -> None:
    with pytest.raises(WeightsError, match="v1.5, shortcut option B, with shortcuts"):
        load_pretrained(build("resnet18", **options), "resnet18")


def test_pretrained_refused_for_cifar_network(torch_home: Path) -> None:
    with pytest.raises(WeightsError, match="CIFAR"):
        load_pretrained(build_cifar(20), "resnet18")


def test_damaged_cache_file_says_to_delete_it(torch_home: Path) -> None:
    path = cache_path("resnet18")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="Delete it"):
        load_pretrained(build("resnet18"), "resnet18")


def test_host_reachable_on_loopback() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert weights._host_reachable("127.0.0.1", port)
    assert not weights._host_reachable("127.0.0.1", port)  # closed now: connection refused
    assert not weights._host_reachable("no-such-host.invalid", 443)


def test_network_check_is_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(weights, "_reachability", {})
    monkeypatch.setattr(weights, "_host_reachable", lambda host, port: calls.append((host, port)) or False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("EXPLORER_OFFLINE", raising=False)
    url = weights_info("resnet18").url
    assert weights._network_available(url) is False and weights._network_available(url) is False
    assert calls == [("download.pytorch.org", 443)]


def test_explorer_offline_skips_the_network_check(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(weights, "_reachability", {})
    monkeypatch.setattr(weights, "_host_reachable", lambda host, port: calls.append((host, port)) or True)
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    assert weights._network_available(weights_info("resnet18").url) is False
    assert weights.pretrained_status("resnet18") == "unavailable" and calls == []
    monkeypatch.setenv("EXPLORER_OFFLINE", "0")
    assert weights._network_available(weights_info("resnet18").url) is True and calls


# --------------------------------------------------------------------------------------------- checkpoints


def _uploaded(data: bytes, name: str) -> UploadedFile:
    return UploadedFile(UploadedFileRec("id", name, "application/octet-stream", data), None)


SOURCES: dict[str, Callable[[dict[str, Tensor], Path], tuple[object, str | None]]] = {
    "pth bytes": lambda s, d: (_torch_bytes(s), None),
    "pth path": lambda s, d: (torch.save(s, d / "w.pth") or d / "w.pth", None),
    "str path .pt": lambda s, d: (torch.save(s, d / "w.pt") or str(d / "w.pt"), None),
    "open file": lambda s, d: (torch.save(s, d / "w.ckpt") or (d / "w.ckpt").open("rb"), None),
    "uploaded file, already read": lambda s, d: (_read_once(_uploaded(_torch_bytes(s), "dir/w.pth")), None),
    "safetensors path": lambda s, d: ((d / "w.safetensors").write_bytes(safetensors_save(s)) and d / "w.safetensors",
                                      None),
    "safetensors bytes, sniffed": lambda s, d: (safetensors_save(s), None),
    "safetensors misnamed .bin": lambda s, d: (safetensors_save(s), "weights.bin"),
}  # fmt: skip


def _read_once(upload: UploadedFile) -> UploadedFile:
    upload.read()  # a page may have read it already; getvalue() still returns everything
    return upload


@pytest.mark.parametrize("kind", SOURCES)
def test_load_checkpoint_round_trip(kind: str, state: dict[str, Tensor], model: nn.Module, tmp_path: Path) -> None:
    source, name = SOURCES[kind](state, tmp_path)
    try:
        report = load_checkpoint(model, source, name=name)
    finally:
        if hasattr(source, "close"):
            source.close()
    _assert_state_equal(model, state)
    assert isinstance(report, LoadReport)
    assert report.format == ("safetensors" if "safetensors" in kind else "torch")
    n_params = sum(p.numel() for p in model.parameters())
    assert report.tensors == len(state) and report.parameters == n_params == 75_290
    assert report.dtype_conversions == () and report.unwrapped == () and report.stripped_prefixes == ()
    assert "75,290 parameters" in report.summary


@pytest.mark.parametrize(
    ("wrap", "unwrapped", "stripped"),
    [
        (lambda s: {"state_dict": s, "epoch": 3, "optimizer": {"lr": 0.1}}, "state_dict", ()),
        (lambda s: {"model_state_dict": s, "loss": 0.25}, "model_state_dict", ()),
        (lambda s: {"model": {f"module.{k}": v for k, v in s.items()}}, "model", ("module.",)),
        (lambda s: {f"_orig_mod.{k}": v for k, v in s.items()}, None, ("_orig_mod.",)),
        (lambda s: {"state_dict": {f"model.{k}": v for k, v in s.items()}}, "state_dict", ("model.",)),
    ],
    ids=["state_dict+optimizer", "model_state_dict", "model+DataParallel", "torch.compile", "lightning"],
)
def test_wrappers_and_prefixes_are_removed(
    wrap: Callable, unwrapped: str | None, stripped: tuple[str, ...], state: dict[str, Tensor], model: nn.Module
) -> None:
    report = load_checkpoint(model, _torch_bytes(wrap(state)), name="trained.pth")
    _assert_state_equal(model, state)
    assert report.unwrapped == (*([unwrapped] if unwrapped else []), *stripped)  # entries first, then prefixes
    assert report.stripped_prefixes == stripped


def test_half_precision_checkpoint_is_converted_and_reported(state: dict[str, Tensor], model: nn.Module) -> None:
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    report = load_checkpoint(model, safetensors_save(half))
    n_float = sum(v.is_floating_point() for v in state.values())
    assert report.dtype_conversions == (f"{n_float} tensors float16 -> float32",)
    _assert_state_equal(model, {k: v.float() if v.is_floating_point() else v for k, v in half.items()})


def test_missing_batchnorm_counters_are_filled(state: dict[str, Tensor], model: nn.Module) -> None:
    old_style = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    report = load_checkpoint(model, _torch_bytes(old_style))
    counters = sum(k.endswith("num_batches_tracked") for k in state)
    assert counters > 0 and report.tensors == len(old_style) == len(state) - counters  # the file's own tensors
    _assert_state_equal(model, {**state, **{k: torch.tensor(0) for k in state if k.endswith("num_batches_tracked")}})


def test_wrong_arch_names_missing_keys_and_changes_nothing(resnet18_state: dict[str, Tensor]) -> None:
    resnet34 = build("resnet34").eval()
    before = _snapshot(resnet34)
    with pytest.raises(WeightsError) as err:
        load_checkpoint(resnet34, _torch_bytes(resnet18_state), name="resnet18.pth")
    message = str(err.value)
    assert message.startswith("This checkpoint does not fit the chosen model: it is for a different network")
    assert "Missing from the checkpoint (" in message and "layer1.2.conv1.weight" in message
    assert "more" in message  # 50+ missing keys are truncated, not dumped
    _assert_state_equal(resnet34, before)


def test_shape_mismatch_names_the_shapes() -> None:
    model = build("resnet18").eval()
    before = _snapshot(model)
    with pytest.raises(WeightsError) as err:
        load_checkpoint(model, _torch_bytes(torchvision.models.resnet18(num_classes=10).state_dict()))
    message = str(err.value)
    assert "fc.weight is 10x512 in the checkpoint but 1000x512 in the model" in message
    assert "fc.bias is 10 in the checkpoint but 1000 in the model" in message
    assert "the checkpoint predicts 10 classes, the model 1000" in message
    _assert_state_equal(model, before)


def test_unexpected_keys_are_listed(state: dict[str, Tensor], model: nn.Module) -> None:
    extra = {**state, "head.weight": torch.zeros(3)}
    with pytest.raises(WeightsError, match=r"In the checkpoint but not in the model \(1\): `head.weight`"):
        load_checkpoint(model, _torch_bytes(extra))


class _Touch:
    """Unpickling this would create ``path`` (a pickle's __reduce__ can call any function)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


class _System:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("payload", [_Touch, _System])
@pytest.mark.parametrize("container", ["raw pickle", "torch.save zip", "inside state_dict"])
def test_malicious_pickle_is_refused_and_never_runs(
    payload: type, container: str, state: dict[str, Tensor], model: nn.Module, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    evil = payload(marker)
    blob = {
        "raw pickle": lambda: pickle.dumps({"conv1.weight": evil}, protocol=2),  # the legacy (non-zip) format
        "torch.save zip": lambda: _torch_bytes(evil),
        "inside state_dict": lambda: _torch_bytes({"state_dict": {**state, "fc.bias": evil}}),
    }[container]()
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Touch(control), protocol=2))  # the payload technique does run code...
    assert control.exists()
    before = _snapshot(model)

    with pytest.raises(WeightsError, match="refused without running it"):  # ...but not through load_checkpoint
        load_checkpoint(model, blob, name="evil.pth")

    assert not marker.exists()
    _assert_state_equal(model, before)


def test_whole_pickled_model_is_refused_with_a_hint(model: nn.Module) -> None:
    with pytest.raises(WeightsError, match=r"torchvision.models.resnet.ResNet.*model.state_dict\(\)"):
        load_checkpoint(model, _torch_bytes(torchvision.models.resnet18()), name="model.pth")


def _zip_not_checkpoint() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "not weights")
    return buffer.getvalue()


def _with_one(t: Tensor, value: float) -> Tensor:
    t = t.clone()
    t.view(-1)[t.numel() // 2] = value
    return t


BAD_FILES: dict[str, tuple[Callable[[dict[str, Tensor]], bytes], str, str]] = {
    "empty": (lambda s: b"", "x.pth", "empty"),
    "random bytes": (lambda s: torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0))
                     .to(torch.uint8).numpy().tobytes(), "x.pth", "not a readable PyTorch checkpoint"),
    "truncated pth": (lambda s: _torch_bytes(s)[: len(_torch_bytes(s)) // 2], "x.pth",
                      "not a readable PyTorch checkpoint"),
    "truncated safetensors": (lambda s: safetensors_save(s)[:100_000], "x.safetensors", "not a valid safetensors"),
    "safetensors cut after header": (lambda s: (b := safetensors_save(s))[: int.from_bytes(b[:8], "little") + 108],
                                     "x.bin", "not a valid safetensors"),
    "zip, not a checkpoint": (lambda s: _zip_not_checkpoint(), "x.zip", "not a readable PyTorch checkpoint"),
    "image named .safetensors": (lambda s: b"\x89PNG\r\n\x1a\n" + bytes(64), "x.safetensors", "not a valid"),
    "non-tensor values": (lambda s: _torch_bytes({**s, "conv1.weight": "hello"}), "x.pth",
                          "must map names to tensors.*'conv1.weight' \\(str\\)"),
    "a list": (lambda s: _torch_bytes(list(s.values())), "x.pth", "holds a list, not a state dict"),
    "a bare tensor": (lambda s: _torch_bytes(torch.zeros(3)), "x.pth", "holds a Tensor"),
    "empty dict": (lambda s: _torch_bytes({}), "x.pth", "empty"),
    "NaN weights": (lambda s: _torch_bytes({**s, "linear.bias": torch.full((10,), float("nan"))}), "x.pth",
                    "NaN or infinite values in `linear.bias`"),
    "one infinite weight": (lambda s: _torch_bytes({**s, "conv1.weight": _with_one(s["conv1.weight"], -float("inf"))}),
                            "x.pth", "NaN or infinite values in `conv1.weight`"),
}  # fmt: skip


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_files_are_clear_errors_and_change_nothing(kind: str, state: dict[str, Tensor], model: nn.Module) -> None:
    make, name, expected = BAD_FILES[kind]
    before = _snapshot(model)
    with pytest.raises(WeightsError, match=expected):
        load_checkpoint(model, make(state), name=name)
    _assert_state_equal(model, before)


def test_paths_that_are_not_files(model: nn.Module, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="no file"):
        load_checkpoint(model, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="is a folder"):
        load_checkpoint(model, tmp_path)
    with pytest.raises(WeightsError, match="path, bytes or a file object"):
        load_checkpoint(model, 42)  # type: ignore[arg-type]


def test_oversized_files_are_refused_before_reading(
    state: dict[str, Tensor], model: nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pth_bytes = _torch_bytes(state)
    monkeypatch.setattr(reading, "MAX_CHECKPOINT_BYTES", 1000)  # the cap lives where files are read
    path = tmp_path / "big.pth"
    path.write_bytes(pth_bytes)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("an oversized file must not be read"))
    for source in (path, _uploaded(pth_bytes, "big.pth"), io.BytesIO(pth_bytes), pth_bytes):
        with pytest.raises(WeightsError, match="GiB are refused"):
            load_checkpoint(model, source)
