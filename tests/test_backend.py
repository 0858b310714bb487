"""The backend interface and its ``local`` backend: the same results as calling explorer directly."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from helpers import checkpoint_of
from PIL import Image

from explorer import backend
from explorer.attribution import attribute
from explorer.backend import (
    Backend,
    BackendError,
    Checkpoint,
    CheckpointMissing,
    ImageInput,
    LocalBackend,
    LocalRunner,
    RemoteRunner,
    ServerBusy,
    ServerUnavailable,
)
from explorer.backend.batch import predict_batch
from explorer.checkpoints import WeightsError
from explorer.config import ConfigError, ModelConfig
from explorer.family import PRESETS
from explorer.images import ImageError, load_image, preprocess, preprocessing_for
from explorer.loading import ModelCache
from explorer.models import build
from explorer.predict import Prediction, predict, predict_with_knockout
from explorer.shared import hook_count, prepare, seeded

CFG = ModelConfig("resnet18", weights="random")


@pytest.fixture(scope="module")
def reference() -> torch.nn.Module:
    """What the backend should load for ``CFG``: the seeded random ResNet-18, prepared for sharing."""
    with seeded(0):
        return prepare(build("resnet18"))


@pytest.fixture(scope="module")
def local() -> LocalBackend:
    return LocalBackend(max_models=2)


def _png(size: tuple[int, int] = (80, 64), seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _x(seed: int = 1, size: int = 64) -> torch.Tensor:
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------- request data


def test_config_validates_and_names_itself() -> None:
    assert CFG.key == "resnet18-v1.5-B-random"
    assert ModelConfig("resnet50", "v1", "A", True, weights="pretrained").key == "resnet50-v1-A-plain-pretrained"
    with pytest.raises(ConfigError, match="Unknown architecture"):
        ModelConfig("resnet7")
    with pytest.raises(ConfigError, match="Weights come from"):
        ModelConfig("resnet18", weights="imagenet")


def test_checkpoint_is_keyed_by_hash_not_bytes() -> None:
    ckpt = Checkpoint.from_bytes("a.pth", b"abc")
    assert ckpt == ckpt.without_data() and hash(ckpt) == hash(ckpt.without_data())
    assert ckpt.without_data().data == b"" and ckpt.verified() == b"abc"
    with pytest.raises(WeightsError, match="damaged"):
        Checkpoint("a.pth", ckpt.sha256, b"abd").verified()
    cfg = ModelConfig("resnet18", weights="checkpoint", checkpoint=ckpt.sha256, input_size=96)
    other = ModelConfig("resnet50", "v1", weights="checkpoint", checkpoint=ckpt.sha256)
    assert cfg.model == other.model  # the checkpoint says what the network is, whatever the sidebar shows


def test_encoded_image_decodes_like_the_app() -> None:
    data = _png()
    pre = preprocessing_for("resnet18", 64)
    want = preprocess(load_image(data), resize=pre.resize, crop=pre.crop, mean=pre.mean, std=pre.std).tensor
    got = ImageInput.encoded(data, 64).tensor(CFG)
    assert got.shape == (1, 3, 64, 64) and torch.equal(got, want)


def test_an_encoded_image_for_a_checkpoint_takes_its_normalisation() -> None:
    from explorer.config import NORMS

    cfg = ModelConfig("resnet18", weights="checkpoint", checkpoint="ab" * 32, norm=NORMS["0.5/0.5"],
                      recipe=PRESETS["resnet18"])
    got = ImageInput.encoded(_png(), 64).tensor(cfg)
    want = ImageInput.encoded(_png(), 64).tensor(CFG)
    assert got.shape == want.shape and not torch.equal(got, want)
    assert float(got.min()) >= -1.0 - 1e-6 and float(got.max()) <= 1.0 + 1e-6  # 0.5 / 0.5: from -1 to 1


def test_tensor_image_round_trips() -> None:
    x = _x()
    assert torch.equal(ImageInput.from_tensor(x).tensor(CFG), x)
    assert torch.equal(ImageInput.from_tensor(x[0]).tensor(CFG), x)


@pytest.mark.parametrize("image", [
    ImageInput.encoded(b"not an image"),
    ImageInput(b"\x93NUMPY garbage", "tensor"),
    ImageInput.from_tensor(torch.zeros(1, 1, 8, 8)),
    ImageInput(b"x" * (13 * 1024 * 1024), "tensor"),
    ImageInput(b"", "text"),  # type: ignore[arg-type]
])
def test_bad_images_are_sentences(image: ImageInput) -> None:
    with pytest.raises(ImageError):
        image.tensor(CFG)


def test_pickled_tensor_bytes_are_refused() -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(ImageError):
        ImageInput(buf.getvalue(), "tensor").tensor(CFG)


def test_errors_are_sentences_that_survive_pickling() -> None:
    busy = pickle.loads(pickle.dumps(ServerBusy(3)))
    assert busy.ahead == 3 and str(busy) == "The server is busy, 3 requests ahead — try again in a moment."
    dead = pickle.loads(pickle.dumps(ServerUnavailable()))
    assert str(dead) == "The model server stopped answering; try again."
    assert "no answer within 5 s" in str(ServerUnavailable("no answer within 5 s"))
    assert pickle.loads(pickle.dumps(CheckpointMissing("ab" * 32))).sha256 == "ab" * 32
    assert all(issubclass(e, ValueError) for e in (ServerBusy, ServerUnavailable, CheckpointMissing))


# ------------------------------------------------------------------------------------------------ local parity


def test_local_is_a_backend(local: LocalBackend) -> None:
    assert isinstance(local, Backend) and local.name == "local"
    assert local.describe() == "local, in this process"


def test_predict_parity(local: LocalBackend, reference: torch.nn.Module) -> None:
    x = _x()
    got = local.predict(CFG, ImageInput.from_tensor(x), k=5)
    want = predict(reference, x, categories=local.model(CFG).categories, k=5)
    assert isinstance(got, Prediction)
    assert got.indices == want.indices and got.names == want.names
    np.testing.assert_array_equal(got.logits, want.logits)


def test_predict_from_encoded_bytes(local: LocalBackend, reference: torch.nn.Module) -> None:
    data = _png(seed=3)
    got = local.predict(CFG, ImageInput.encoded(data, 64), k=3, fast=False)
    want = predict(reference, ImageInput.encoded(data, 64).tensor(CFG), k=3, fast=False)
    assert got.indices == want.indices
    np.testing.assert_array_equal(got.logits, want.logits)


def test_knockout_parity(local: LocalBackend, reference: torch.nn.Module) -> None:
    x = _x(2)
    got = local.predict(CFG, ImageInput.from_tensor(x), knockout=["layer3.1"], fast=False)
    want = predict_with_knockout(reference, x, ["layer3.1"], fast=False)
    assert got.knocked_out == ("layer3.1",) and got.indices == want.indices
    np.testing.assert_array_equal(got.logits, want.logits)
    assert hook_count(local.model(CFG).model) == 0


@pytest.mark.parametrize("method", ["saliency", "grad_cam"])
def test_attribute_parity(local: LocalBackend, reference: torch.nn.Module, method: str) -> None:
    x = _x(4)
    got = local.attribute(CFG, ImageInput.from_tensor(x), 7, method)
    want = attribute(reference, x, 7, method)
    assert (got.method, got.target, got.layer) == (want.method, want.target, want.layer)
    np.testing.assert_allclose(got.map, want.map, rtol=1e-5, atol=1e-7)


def test_capture_parity(local: LocalBackend, reference: torch.nn.Module) -> None:
    from explorer.activations import capture_with_stream

    x, layers = _x(8), ["layer1.0", "layer3.1", "layer4"]
    got = local.capture(CFG, ImageInput.from_tensor(x), layers, fast=False)
    want = capture_with_stream(reference, x, layers, fast=False)
    assert list(got.activations) == layers and not got.fast
    for name in layers:
        assert got.activations[name].device.type == "cpu"
        torch.testing.assert_close(got.activations[name], want.activations[name], rtol=1e-5, atol=1e-6)
    assert [r.name for r in got.stream] == [r.name for r in want.stream] and len(got.stream) == 8
    np.testing.assert_allclose([r.ratio for r in got.stream], [r.ratio for r in want.stream], rtol=1e-5)
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-5, atol=1e-5)
    assert hook_count(local.model(CFG).model) == 0


def test_sanity_parity(local: LocalBackend, reference: torch.nn.Module) -> None:
    from explorer.attribution import sanity_pair

    x = _x(5)
    got = local.sanity(CFG, ImageInput.from_tensor(x), 3, "saliency", "layer3")
    want = sanity_pair(reference, x, 3, "saliency", "layer3")
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.map, w.map, rtol=1e-5, atol=1e-7)
    assert not np.allclose(got[0].map, got[1].map)  # the re-initialised copy gives another map
    assert hook_count(local.model(CFG).model) == 0


def test_faithfulness_parity(local: LocalBackend, reference: torch.nn.Module) -> None:
    from explorer.attribution import faithfulness

    x = _x(6)
    result = local.attribute(CFG, ImageInput.from_tensor(x), 2, "saliency")
    got = local.faithfulness(CFG, ImageInput.from_tensor(x), 2, result, steps=4)
    want = faithfulness(reference, x, 2, result, steps=4)
    np.testing.assert_allclose(got.deletion, want.deletion, atol=1e-6)
    np.testing.assert_allclose(got.insertion, want.insertion, atol=1e-6)
    assert (got.passes, got.target) == (want.passes, want.target) == (10, 2)


def test_trace_block_parity(local: LocalBackend, reference: torch.nn.Module) -> None:
    from explorer.blocks import run_block

    x = _x(7)
    got = local.trace_block(CFG, ImageInput.from_tensor(x), "layer2.0")
    want = run_block(reference, "layer2.0", x)
    assert [s.op for s in got.branch] == [s.op for s in want.branch] and got.output_shape == want.output_shape
    assert got.ratio == pytest.approx(want.ratio, rel=1e-5)
    assert hook_count(local.model(CFG).model) == 0


def test_a_remote_runner_answers_as_the_local_runner_does(local: LocalBackend) -> None:
    """The two runners a page can get: the same results, the remote one through the backend's interface."""
    here, there = LocalRunner(local.model(CFG)), RemoteRunner(local, CFG, [f"name {i}" for i in range(1000)])
    x = _x(11)
    near, far = here.predict(x, k=3, fast=False), there.predict(x, k=3, fast=False)
    assert near.indices == far.indices and far.names == tuple(f"name {i}" for i in far.indices)
    np.testing.assert_array_equal(near.logits, far.logits)
    assert here.predict(x, knockout=["layer2.1"], fast=False).indices == there.predict(
        x, knockout=["layer2.1"], fast=False).indices
    np.testing.assert_allclose(here.attribute(x, 3, "saliency").map, there.attribute(x, 3, "saliency").map,
                               rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(here.capture(x, ["layer2"], fast=False).activations["layer2"],
                               there.capture(x, ["layer2"], fast=False).activations["layer2"])
    assert here.trace_block(x, "layer3.0").output_shape == there.trace_block(x, "layer3.0").output_shape


def test_models_are_loaded_once_and_evicted_least_recent_first() -> None:
    cache = ModelCache(max_models=2)
    a, b = ModelConfig("resnet18", weights="random"), ModelConfig("resnet18", shortcut="A", weights="random")
    first = cache.get(a)
    assert cache.get(a) is first and not first.model.training
    assert cache.get(ModelConfig("resnet18", weights="random", input_size=96)) is first  # the size is not the model
    cache.get(b)
    cache.get(a)
    cache.get(ModelConfig("resnet18", shortcut="C", weights="random"))
    assert [c.key for c in cache.keys()] == [a.key, "resnet18-v1.5-C-random"]


def test_a_model_is_loaded_once_when_many_threads_ask_and_one_load_holds_up_no_other() -> None:
    import threading
    import time

    from explorer import loading

    cache, calls, started, release = ModelCache(max_models=3), [], threading.Event(), threading.Event()
    real = loading.standard

    def slow(config):
        calls.append(config.key)
        if config.shortcut == "C":
            started.set()
            release.wait(30)
        return real(config)

    slow_cfg = ModelConfig("resnet18", shortcut="C", weights="random")
    try:
        loading.standard = slow
        cache.get(CFG)
        threads = [threading.Thread(target=cache.get, args=(slow_cfg,)) for _ in range(4)]
        for t in threads:
            t.start()
        assert started.wait(30)
        start = time.perf_counter()
        assert cache.get(CFG) is cache.get(CFG)  # held: it does not wait for the slow load
        assert time.perf_counter() - start < 5
        release.set()
        for t in threads:
            t.join(30)
    finally:
        loading.standard = real
    assert calls.count(slow_cfg.key) == 1 and calls.count(CFG.key) == 1


def test_pretrained_offline_falls_back_to_random_and_says_why() -> None:
    loaded = ModelCache(1).get(ModelConfig("resnet18", weights="pretrained"))
    assert not loaded.pretrained and loaded.problem and loaded.categories and len(loaded.categories) == 1000


def test_user_checkpoint_by_hash(reference: torch.nn.Module) -> None:
    torch.manual_seed(5)
    trained = build("resnet18").eval()
    ckpt = checkpoint_of(trained, "mine.pth")
    cfg = ModelConfig("resnet18", weights="checkpoint", checkpoint=ckpt.sha256)
    cache = ModelCache(max_models=1)
    with pytest.raises(CheckpointMissing):
        cache.get(cfg)
    loaded = cache.get(cfg, ckpt)
    assert loaded.pretrained and "mine.pth" in loaded.label and loaded.report.arch == "resnet18"
    assert cache.get(cfg).model is loaded.model  # held by hash: the bytes need not come again
    be = LocalBackend(cache)
    x = _x(6)
    got = be.predict(cfg, ImageInput.from_tensor(x), fast=False)
    np.testing.assert_array_equal(got.logits, predict(trained, x, fast=False).logits)
    cache.get(CFG)  # a second model pushes the checkpoint out (max_models=1)
    with pytest.raises(CheckpointMissing):
        be.model(cfg)
    be.hold(ckpt)  # the bytes handed to the backend: it reads them again itself
    assert be.model(cfg).label == loaded.label


def test_a_checkpoint_builds_the_network_it_holds_as_the_app_does() -> None:
    """A CIFAR ResNet-20 with 10 classes, sent while the sidebar's arch is resnet50 (no ImageNet arch to follow):
    the backend builds what the checkpoint holds, as the app's own loader does, not the sidebar's arch."""
    from explorer.models import build_cifar

    torch.manual_seed(7)
    trained = build_cifar(20, num_classes=10).eval()
    ckpt = checkpoint_of(trained, "cifar.pth")
    cfg = ModelConfig("resnet50", weights="checkpoint", checkpoint=ckpt.sha256)
    be = LocalBackend(max_models=2)
    be.hold(ckpt)
    loaded = be.model(cfg)
    assert loaded.pretrained and loaded.problem is None and "resnet20" in loaded.label
    assert loaded.categories == [f"class {i}" for i in range(10)]
    followed = cfg.follow(loaded.report.spec)
    assert followed.name == "resnet20" and followed.num_classes == 10 and followed.model == cfg.model
    assert followed.shortcut == "A-both"  # the reproduction's padding, assumed and said
    x = _x(9, 32)
    got = be.predict(followed, ImageInput.from_tensor(x), fast=False)
    want = predict(trained, x, categories=loaded.categories, fast=False)
    assert got.indices == want.indices and got.names == want.names
    np.testing.assert_array_equal(got.logits, want.logits)


def test_damaged_checkpoint_is_random_with_a_reason() -> None:
    garbage = Checkpoint.from_bytes("x.pth", b"garbage")
    cfg = ModelConfig("resnet18", weights="checkpoint", checkpoint=garbage.sha256)
    cache = ModelCache(2)
    loaded = cache.get(cfg, garbage)
    assert not loaded.pretrained and loaded.problem.startswith("Your checkpoint could not be used") and loaded.error
    assert cache.get(cfg).problem == loaded.problem  # the refusal is remembered: the file is not read again
    no_file = cache.get(ModelConfig("resnet18", weights="checkpoint"))
    assert not no_file.pretrained and no_file.problem.startswith("No checkpoint uploaded yet") and not no_file.error
    named = ModelConfig("resnet18", weights="checkpoint", checkpoint="ab" * 32)
    with pytest.raises(WeightsError, match="damaged"):  # bytes that are not the announced ones are never kept
        cache.get(named, Checkpoint("x.pth", "ab" * 32, b"garbage"))
    with pytest.raises(WeightsError, match="not the one"):
        cache.get(named, garbage)
    with pytest.raises(CheckpointMissing):
        cache.get(named)


# ---------------------------------------------------------------------------------------------------- batching


def test_batch_matches_one_by_one(reference: torch.nn.Module) -> None:
    xs = [_x(10 + i) for i in range(3)] + [_x(20, size=96)]
    got = predict_batch(reference, xs, k=[5, 3, 5, 2], fast=False)
    for x, g, k in zip(xs, got, [5, 3, 5, 2], strict=True):
        want = predict(reference, x, k=k, fast=False)
        assert g.indices == want.indices
        np.testing.assert_allclose(g.logits, want.logits, atol=1e-5, rtol=0)
    assert hook_count(reference) == 0


def test_batch_settles_close_calls_in_fp32_as_predict_does(reference: torch.nn.Module,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import copy
    import sys

    monkeypatch.setattr(sys.modules["explorer.device"], "native_bf16", lambda _device: True)  # bf16, even emulated
    tied = copy.deepcopy(reference)
    with torch.no_grad():  # classes 0 and 1 tie at the top for every image
        tied.fc.weight[1] = tied.fc.weight[0]
        tied.fc.bias[:2] = 50.0
    xs = [_x(30 + i) for i in range(3)]
    got = predict_batch(tied, xs, k=5)
    assert all(g.fast and g.rechecked for g in got)
    for x, g in zip(xs, got, strict=True):
        np.testing.assert_allclose(g.logits, predict(tied, x, k=5, fast=False).logits, atol=1e-5, rtol=0)
    plain = predict_batch(reference, xs, k=5, fast=False)
    assert not any(p.rechecked for p in plain)  # fp32 has nothing to settle


def test_batch_rejects_mismatched_k(reference: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="positive k"):
        predict_batch(reference, [_x(), _x()], k=[5])


# --------------------------------------------------------------------------------------------------- selection


def test_current_is_local_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXPLORER_BACKEND", raising=False)
    backend.reset()
    try:
        assert backend.current().name == "local" and backend.current() is backend.current()
        assert backend.describe() == "local, in this process"
    finally:
        backend.reset()


def test_unknown_backend_is_a_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPLORER_BACKEND", "spark")
    backend.reset()
    try:
        with pytest.raises(BackendError, match="must be one of local, ray"):
            backend.current()
        assert backend.describe().startswith("EXPLORER_BACKEND must be one of")
    finally:
        backend.reset()


def test_ray_missing_is_a_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setenv("EXPLORER_BACKEND", "ray")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    monkeypatch.delitem(sys.modules, "explorer.backend.ray_client", raising=False)
    monkeypatch.delitem(sys.modules, "explorer.backend.ray_serve", raising=False)
    backend.reset()
    try:
        with pytest.raises(BackendError, match="requirements-scale.txt"):
            backend.current()
    finally:
        backend.reset()


def test_ray_options_from_the_environment() -> None:
    from explorer.backend.select import ray_options

    assert ray_options({}) == {}
    got = ray_options({"EXPLORER_RAY_REPLICAS": "auto", "EXPLORER_RAY_GPUS": "0.5", "EXPLORER_RAY_TIMEOUT_S": "30",
                       "EXPLORER_RAY_QUEUE": "64"})
    assert got == {"num_replicas": "auto", "num_gpus": 0.5, "timeout_s": 30.0, "max_queued_requests": 64}
    assert ray_options({"EXPLORER_RAY_REPLICAS": "3", "EXPLORER_RAY_GPUS": "0"}) == {"num_replicas": 3, "num_gpus": 0}
    with pytest.raises(BackendError, match="EXPLORER_RAY_REPLICAS must be a number or auto"):
        ray_options({"EXPLORER_RAY_REPLICAS": "many"})
    with pytest.raises(BackendError, match="above zero"):
        ray_options({"EXPLORER_RAY_TIMEOUT_S": "0"})
    assert ray_options({"EXPLORER_RAY_MAX_REPLICAS": "4"}) == {
        "num_replicas": "auto", "autoscaling": {"min_replicas": 1, "max_replicas": 4}}
    with pytest.raises(BackendError, match="not both"):
        ray_options({"EXPLORER_RAY_MAX_REPLICAS": "4", "EXPLORER_RAY_REPLICAS": "2"})

