"""The ``ray`` backend on a local Ray instance (loopback, 2 CPUs): parity with ``local``, batching, a user
checkpoint by hash, a killed replica, a full queue.

Slow (Ray starts in about half a minute, each replica loads its model), so not in CI: run with
``.venv/bin/python -m pytest tests/test_backend_ray.py -m ray -x -q -p no:cacheprovider``.
Needs ``pip install -r requirements-scale.txt``; skipped without Ray or without ``-m ray``.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from helpers import checkpoint_of

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -r requirements-scale.txt")

from ray import serve  # noqa: E402

from explorer import lab  # noqa: E402
from explorer.backend import (  # noqa: E402
    CheckpointMissing,
    ImageInput,
    LocalBackend,
    ServerBusy,
    ServerUnavailable,
)
from explorer.config import ModelConfig  # noqa: E402
from explorer.images import ImageError  # noqa: E402
from explorer.models import build  # noqa: E402

pytestmark = pytest.mark.ray

CFG = ModelConfig("resnet18", weights="random")
SLOW = {"n_steps": 256, "internal_batch_size": 16}  # integrated gradients, several seconds on one CPU thread
DEADLINE_S = 240.0  # every loop and wait below is bounded by this


@pytest.fixture(autouse=True)
def _only_with_marker(request: pytest.FixtureRequest) -> None:
    if "ray" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("Ray Serve tests run only with -m ray")


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[None]:
    if "ray" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("Ray Serve tests run only with -m ray")
    from explorer.backend.ray_client import connect

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             runtime_env={"env_vars": {"PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[1])}})
    connect()  # Serve, no HTTP proxy
    yield
    serve.shutdown()
    ray.shutdown()


def _backend(**options: object):
    from explorer.backend.ray_client import RayBackend

    return RayBackend(timeout_s=120, num_cpus=0.5, **options)  # three small replicas fit on two CPUs


@pytest.fixture(scope="module")
def remote(cluster: None):
    be = _backend(max_ongoing_requests=8, max_queued_requests=32)
    yield be
    be.close()


@pytest.fixture(scope="module")
def local() -> LocalBackend:
    return LocalBackend()


def _x(seed: int, size: int = 64) -> torch.Tensor:
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _threads(n: int, work: Callable[[int], object]) -> list[object]:
    """Run ``work(i)`` for i < n in n threads at once; each result or the exception it raised, in order."""
    out: list[object] = [None] * n

    def run(i: int) -> None:
        try:
            out[i] = work(i)
        except Exception as err:  # noqa: BLE001 - collected for the assertions
            out[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S)
    return out


def _replica_names(config: ModelConfig) -> list[str]:
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith("SERVE_REPLICA::") and f"#{config.key}#" in a["name"]]


# ----------------------------------------------------------------------------------------------------- parity


def test_predict_parity(remote, local: LocalBackend) -> None:
    for seed in (1, 2):
        image = ImageInput.from_tensor(_x(seed))
        got, want = remote.predict(CFG, image, fast=False), local.predict(CFG, image, fast=False)
        assert got.indices == want.indices and got.names == want.names
        np.testing.assert_allclose(got.logits, want.logits, atol=1e-5, rtol=0)
    assert "Ray Serve at" in remote.describe() and remote.describe().endswith("1 replica")


def test_knockout_and_encoded_image_parity(remote, local: LocalBackend) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(buf, "JPEG")
    image = ImageInput.encoded(buf.getvalue(), 64)
    got = remote.predict(CFG, image, knockout=["layer2.1"], fast=False)
    want = local.predict(CFG, image, knockout=["layer2.1"], fast=False)
    assert got.knocked_out == ("layer2.1",) and got.indices == want.indices
    np.testing.assert_allclose(got.logits, want.logits, atol=1e-5, rtol=0)


def test_attribute_parity(remote, local: LocalBackend) -> None:
    image = ImageInput.from_tensor(_x(3))
    got, want = remote.attribute(CFG, image, 5, "saliency"), local.attribute(CFG, image, 5, "saliency")
    assert (got.method, got.target) == (want.method, want.target)
    np.testing.assert_allclose(got.map, want.map, rtol=1e-5, atol=1e-7)


def test_capture_parity(remote, local: LocalBackend) -> None:
    image, layers = ImageInput.from_tensor(_x(4)), ["layer2.0", "layer4.1"]
    got, want = remote.capture(CFG, image, layers, fast=False), local.capture(CFG, image, layers, fast=False)
    assert list(got.activations) == layers
    for name in layers:
        torch.testing.assert_close(got.activations[name], want.activations[name], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose([r.ratio for r in got.stream], [r.ratio for r in want.stream], rtol=1e-5)


def test_sanity_parity(remote, local: LocalBackend) -> None:
    image = ImageInput.from_tensor(_x(6))
    got, want = remote.sanity(CFG, image, 2, "saliency", "layer4"), local.sanity(CFG, image, 2, "saliency", "layer4")
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.map, w.map, rtol=1e-5, atol=1e-7)


def test_faithfulness_parity(remote, local: LocalBackend) -> None:
    image = ImageInput.from_tensor(_x(7))
    result = local.attribute(CFG, image, 1, "saliency")
    got, want = remote.faithfulness(CFG, image, 1, result, steps=4), local.faithfulness(CFG, image, 1, result, steps=4)
    np.testing.assert_allclose(got.deletion, want.deletion, atol=1e-5)
    np.testing.assert_allclose(got.insertion, want.insertion, atol=1e-5)


def test_bad_upload_is_the_same_sentence(remote) -> None:
    with pytest.raises(ImageError, match="not an image"):
        remote.predict(CFG, ImageInput.encoded(b"hello, world"))


def test_concurrent_predictions_are_batched(remote, local: LocalBackend) -> None:
    images = [ImageInput.from_tensor(_x(100 + i)) for i in range(8)]
    results = _threads(8, lambda i: remote.predict(CFG, images[i], fast=False))
    for image, got in zip(images, results, strict=True):
        assert not isinstance(got, Exception), got
        want = local.predict(CFG, image, fast=False)
        assert got.indices == want.indices
        np.testing.assert_allclose(got.logits, want.logits, atol=1e-5, rtol=0)
    assert max(remote.stats(CFG)["batches"]) > 1


def test_user_checkpoint_goes_by_hash(remote, local: LocalBackend) -> None:
    torch.manual_seed(7)
    ckpt = checkpoint_of(build("resnet18"), "mine.pth")
    cfg = ModelConfig("resnet18", weights="checkpoint", checkpoint=ckpt.sha256)
    image = ImageInput.from_tensor(_x(9))
    with pytest.raises(CheckpointMissing):  # neither the client nor a replica has the bytes
        remote.predict(cfg, image, fast=False)
    remote.hold(ckpt)
    local.hold(ckpt)
    got, want = remote.predict(cfg, image, fast=False), local.predict(cfg, image, fast=False)
    assert got.indices == want.indices
    np.testing.assert_allclose(got.logits, want.logits, atol=1e-5, rtol=0)
    assert remote.stats(cfg)["models"] == [f"checkpoint {ckpt.sha256[:12]}"]
    remote._files.clear()  # the client forgets the bytes: the replica holds the model, the hash is enough
    again = remote.predict(cfg, image, fast=False)
    np.testing.assert_array_equal(again.logits, got.logits)


def test_a_cifar_checkpoint_runs_as_the_network_it_holds(remote) -> None:
    from explorer.models import build_cifar
    from explorer.predict import predict

    torch.manual_seed(8)
    trained = build_cifar(20, num_classes=10).eval()
    ckpt = checkpoint_of(trained, "cifar.pth")
    cfg = ModelConfig("resnet50", weights="checkpoint", checkpoint=ckpt.sha256)
    remote.hold(ckpt)
    x = _x(10, 32)
    got = remote.predict(cfg, ImageInput.from_tensor(x), fast=False)
    want = predict(trained, x, categories=[f"class {i}" for i in range(10)], fast=False)
    assert got.indices == want.indices and got.names == want.names
    np.testing.assert_allclose(got.logits, want.logits, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------ scaling


def test_replicas_scale_out_with_demand(cluster: None) -> None:
    from explorer.backend.ray_client import RayBackend

    cfg = ModelConfig("resnet18", variant="v1", weights="random")
    be = RayBackend(timeout_s=DEADLINE_S, num_cpus=0.25, num_replicas="auto", max_ongoing_requests=2,
                    app_prefix="explorer-autoscale-", autoscaling={
                        "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1, "upscale_delay_s": 0,
                        "metrics_interval_s": 0.5, "look_back_period_s": 2, "downscale_delay_s": 600})
    try:
        be.predict(cfg, ImageInput.from_tensor(_x(21)), fast=False)  # deployed: one replica to start with
        assert len(_replica_names(cfg)) == 1
        waits = [_threads_later(lambda i=i: be.attribute(cfg, ImageInput.from_tensor(_x(22 + i, 128)), 1,
                                                         "integrated_gradients", **SLOW)) for i in range(6)]
        end, most = time.monotonic() + DEADLINE_S, 1
        while most < 2 and time.monotonic() < end:
            most = max(most, len(_replica_names(cfg)))
            time.sleep(0.5)
        results = [wait() for wait in waits]
        assert most == 2, "Serve did not add a replica under six slow requests"
        assert all(not isinstance(r, Exception) for r in results), results  # every request answered
    finally:
        be.close()


# --------------------------------------------------------------------------------------------------- failures


def test_killed_replica_gives_a_message_then_recovers(cluster: None) -> None:
    cfg = ModelConfig("resnet18", shortcut="A", weights="random")
    be = _backend()
    try:
        image = ImageInput.from_tensor(_x(11))
        be.predict(cfg, image, fast=False)  # deployed and warm
        (name,) = _replica_names(cfg)
        slow = _threads_later(lambda: be.attribute(cfg, ImageInput.from_tensor(_x(12, 128)), 1,
                                                   "integrated_gradients", **SLOW))
        time.sleep(2.0)  # the attribution is running inside the replica
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
        err = slow()
        assert isinstance(err, ServerUnavailable), err
        assert str(err).startswith("The model server stopped answering") and str(err).endswith("try again.")
        end = time.monotonic() + DEADLINE_S
        while True:  # Serve starts a new replica; the next request that reaches it is answered
            try:
                assert be.predict(cfg, image, fast=False, timeout_s=60).indices
                break
            except ServerUnavailable:
                assert time.monotonic() < end, "no new replica within the deadline"
                time.sleep(2.0)
        assert _replica_names(cfg) and _replica_names(cfg) != [name]
    finally:
        be.close()


def _threads_later(work: Callable[[], object]) -> Callable[[], object]:
    """Start ``work`` in a thread now; the returned function waits for it and gives its result or exception."""
    box: list[object] = []

    def run() -> None:
        try:
            box.append(work())
        except Exception as err:  # noqa: BLE001 - handed back to the test
            box.append(err)

    thread = threading.Thread(target=run)
    thread.start()

    def wait() -> object:
        thread.join(DEADLINE_S)
        return box[0] if box else TimeoutError("the request thread did not finish")

    return wait


def test_deadline_gives_a_message(remote) -> None:
    err = None
    try:
        remote.attribute(CFG, ImageInput.from_tensor(_x(13, 128)), 1, "integrated_gradients", timeout_s=0.5, **SLOW)
    except ServerUnavailable as caught:
        err = caught
    assert err is not None and "no answer within 0.5 s" in str(err)


def test_full_queue_says_busy(cluster: None) -> None:
    cfg = ModelConfig("resnet18", shortcut="C", weights="random")
    be = _backend(max_ongoing_requests=1, max_queued_requests=1)
    try:
        be.predict(cfg, ImageInput.from_tensor(_x(14)), fast=False)  # deployed and warm
        results = _threads(5, lambda i: be.attribute(cfg, ImageInput.from_tensor(_x(15 + i, 96)), 1,
                                                     "integrated_gradients", n_steps=64, internal_batch_size=16))
        busy = [r for r in results if isinstance(r, ServerBusy)]
        assert busy, results
        assert all(str(b) == f"The server is busy, {b.ahead} requests ahead — try again in a moment." for b in busy)
        assert all(b.ahead >= 1 for b in busy)
        assert any(not isinstance(r, Exception) for r in results)  # the ones admitted were answered
    finally:
        be.close()


# ------------------------------------------------------------------------------------------- the lab's race


def _race_inputs(train_limit: int = 64):
    data = lab.digits_dataset(size=16, train_limit=train_limit)
    return lab.race_models(((8, True), (8, False)), num_classes=len(data.classes), seed=0), data


def test_training_race_in_an_actor_matches_the_local_race(remote, local: LocalBackend) -> None:
    recipe = lab.RaceRecipe(epochs=1, lr=0.02, batch_size=32, seed=0)
    far = remote.train(*_race_inputs(), recipe)
    far.join(DEADLINE_S)
    snap = far.snapshot()
    assert snap.status == "finished" and snap.progress == 1.0 and not far.running
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the actor
    try:
        near = local.train(*_race_inputs(), recipe)
        near.join(DEADLINE_S)
    finally:
        torch.set_num_threads(threads)
    here = near.snapshot()
    assert list(snap.steps["model"]) == list(here.steps["model"]) and len(snap.steps) == 4
    np.testing.assert_allclose(snap.steps["loss"], here.steps["loss"], rtol=1e-4)
    np.testing.assert_allclose(snap.epochs["test_accuracy"], here.epochs["test_accuracy"], atol=1e-6)
    for name, model in near.models.items():
        for key, value in model.state_dict().items():
            torch.testing.assert_close(far.models[name].state_dict()[key], value, rtol=1e-4, atol=1e-5)


def test_a_remote_race_stops_and_keeps_its_models(remote) -> None:
    run = remote.train(*_race_inputs(512), lab.RaceRecipe(epochs=50, lr=0.02, batch_size=32, seed=0))
    deadline = time.monotonic() + DEADLINE_S
    while run.snapshot().status != "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    run.stop()
    run.join(DEADLINE_S)
    snap = run.snapshot()
    assert snap.status == "stopped" and snap.progress < 1.0
    assert set(run.models) == {"plain-8", "ResNet-8"}


def test_a_killed_training_worker_is_a_failed_run_with_a_sentence(remote) -> None:
    run = remote.train(*_race_inputs(512), lab.RaceRecipe(epochs=50, lr=0.02, batch_size=32, seed=0))
    deadline = time.monotonic() + DEADLINE_S
    while run.snapshot().status != "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    ray.kill(run._actor)
    while run.snapshot().running and time.monotonic() < deadline:
        time.sleep(0.2)
    snap = run.snapshot()
    assert snap.status == "failed" and "Ray worker" in snap.message and "start the race again" in snap.message
    assert not run.running
