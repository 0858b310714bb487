"""The memory budget (explorer.budget): estimates from the meta twin, batches chosen from the budget, refusals that
name the setting to lower, a ledger that makes calls wait, and the issue's worst link refused in a sentence."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from explorer import attribution as attr
from explorer import budget
from explorer.models import build

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def small_budget(monkeypatch):
    """A 256 MB budget (128 MB per call), small enough for resnet18 at a few hundred pixels to reach."""
    monkeypatch.setenv("EXPLORER_MEMORY_MB", "256")


def room(model, *, backward: bool = True) -> int:
    """The bytes one call on ``model`` has for images: its share of the budget less its fixed overhead."""
    return budget.call_bytes() - budget.call_overhead(model, backward=backward)


def test_the_budget_is_a_third_of_memory_unless_set(monkeypatch):
    monkeypatch.delenv("EXPLORER_MEMORY_MB", raising=False)
    physical = __import__("os").sysconf("SC_PAGE_SIZE") * __import__("os").sysconf("SC_PHYS_PAGES")
    assert budget.total_bytes() == physical // 3
    monkeypatch.setenv("EXPLORER_MEMORY_MB", "8000")
    assert budget.total_bytes() == 8000 << 20 and budget.call_bytes() == 4000 << 20
    monkeypatch.setenv("EXPLORER_MEMORY_MB", "lots")  # a bad setting falls back, it does not crash every page
    assert budget.total_bytes() == physical // 3


def test_an_image_costs_what_its_layers_output():
    """Backward: every leaf's output is kept, plus the two largest for the gradients in flight; forward only: a
    quarter of those and three of the largest. Grows with the square of the side, and from resnet18 to resnet152."""
    net = build("resnet18").eval()
    kept = budget.image_bytes(net, 224, backward=True)
    assert budget.image_bytes(net, 224, backward=False) < kept / 2
    assert budget.image_bytes(net, 448, backward=True) == pytest.approx(4 * kept, rel=0.02)
    assert budget.image_bytes(build("resnet152").eval(), 224, backward=True) > 5 * kept
    assert budget.image_bytes(net, (224, 448), backward=True) == pytest.approx(2 * kept, rel=0.02)


def test_the_issues_example_resnet152_at_1024_px_keeps_about_5_gb():
    per_image = budget.image_bytes(build("resnet152").eval(), 1024, backward=True)
    assert 4 << 30 < per_image < 7 << 30


def test_fit_lowers_a_batch_refuses_samples_and_names_the_largest_that_fits(small_budget):
    per_image = 16 << 20  # 16 MB each: 8 fit in a call's 128 MB, 6 beside a 20 MB overhead
    assert budget.fit(per_image, 4, what="X", size=224, adjustable=True) == budget.Fit(4, 64 << 20)
    assert budget.fit(per_image, 4, what="X", size=224, fixed=20 << 20) == budget.Fit(4, 84 << 20)
    assert budget.fit(per_image, 32, what="X", size=224, setting="batch", adjustable=True).images == 8
    assert budget.fit(per_image, 32, what="X", size=224, adjustable=True, fixed=20 << 20).images == 6
    with pytest.raises(budget.BudgetError, match=r"Lower n_samples to 8 or less"):
        budget.fit(per_image, 64, what="X", size=224, setting="n_samples")
    with pytest.raises(budget.BudgetError, match=r"Lower the input size to \d+ px or less"):
        budget.fit(160 << 20, 1, what="X", size=224)
    # 108 MB left of 128 for a 160 MB image at 224 px: 184 px would fit, and sizes go in steps of 32
    with pytest.raises(budget.BudgetError, match=r"Lower the input size to 160 px or less"):
        budget.fit(160 << 20, 1, what="X", size=224, fixed=20 << 20)
    with pytest.raises(budget.BudgetError, match=r"Pick an earlier layer"):
        budget.fit(1 << 20, 1, what="X", size=224, held=160 << 20, advice="Pick an earlier layer")


def test_attribute_lowers_integrated_gradients_batch_to_what_fits(small_budget):
    net = build("resnet18").eval()
    x = torch.rand(1, 3, 160, 160)
    per_image = budget.image_bytes(net, 160, backward=True)
    fits = room(net) // per_image
    assert 1 <= fits < 8  # the registry's batch of 8 would not fit
    result = attr.attribute(net, x, 3, "integrated_gradients", n_steps=8, fast=False)
    assert result.options["internal_batch_size"] == fits
    assert result.memory == fits * per_image + budget.call_overhead(net, backward=True)
    reference = attr.attribute(net, x, 3, "integrated_gradients", n_steps=8, internal_batch_size=1, fast=False)
    assert torch.allclose(result.raw, reference.raw, atol=1e-5)  # a smaller batch, the same map


def test_gradient_shap_samples_over_the_budget_are_refused_with_the_largest_that_fits(small_budget):
    net = build("resnet18").eval()
    fits = room(net) // budget.image_bytes(net, 160, backward=True)
    with pytest.raises(attr.CostError, match=rf"GradientSHAP with n_samples = 64 .* Lower n_samples to {fits} or less"):
        attr.attribute(net, torch.rand(1, 3, 160, 160), 3, "gradient_shap", n_samples=64)
    assert attr.attribute(net, torch.rand(1, 3, 160, 160), 3, "gradient_shap", n_samples=fits).memory > 0


def test_the_issues_worst_link_is_a_sentence_and_allocates_nothing():
    """resnet152 at 1024 px with GradientSHAP's 64 samples (the issue's link), in a fresh process under the
    default budget: refused before running, and the process's peak memory stays near the model's size."""
    code = ("import resource, torch\nfrom explorer import attribution as attr\nfrom explorer.models import build\n"
            "net = build('resnet152').eval()\nbefore = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    attr.attribute(net, torch.rand(1, 3, 1024, 1024), 1, 'gradient_shap', n_samples=64)\n"
            "except attr.CostError as err:\n    print(err)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         check=True, env={**__import__("os").environ, "EXPLORER_MEMORY_MB": "8000"})
    sentence, rise_mb = out.stdout.strip().splitlines()[-2:]
    assert "GradientSHAP at 1024 px needs about" in sentence and "Lower the input size to" in sentence
    assert int(rise_mb) < 200


def test_score_cams_masked_copies_count_against_the_budget(small_budget):
    net = build("resnet18").eval()
    with pytest.raises(attr.CostError, match=r"Score-CAM holds about .* Pick an earlier layer"):
        attr.attribute(net, torch.rand(1, 3, 224, 224), 3, "score_cam", layer="layer4")


def test_a_call_waits_for_memory_in_turn_and_gives_up_with_a_sentence(small_budget):
    ledger, order, seen = budget.Ledger(), [], []
    first_in = threading.Event()

    def hold() -> None:
        with ledger.reserve(budget.call_bytes()):
            first_in.set()
            time.sleep(0.3)
            order.append("first")

    def second() -> None:
        with ledger.reserve(budget.call_bytes()):  # two halves fit: this one does not wait
            with ledger.reserve(budget.call_bytes(), waiting=seen.append):  # a third half waits for the first
                order.append("third")

    a = threading.Thread(target=hold)
    a.start()
    first_in.wait(5)
    b = threading.Thread(target=second)
    b.start()
    a.join(5)
    b.join(5)
    assert order == ["first", "third"] and seen and seen[0] == 1 and ledger.used == 0
    with ledger.reserve(budget.call_bytes()), ledger.reserve(budget.call_bytes()):
        with pytest.raises(budget.BudgetError, match="in use by other calls"):
            with ledger.reserve(1, timeout=0.2):
                pass
    assert ledger.used == 0


def test_an_attribution_waiting_for_memory_hears_its_place_in_line(small_budget):
    """The page's progress bar says "waiting for the server's memory, 1st in line" while other calls hold it."""
    net, places, done = build("resnet18").eval(), [], threading.Event()
    x = torch.rand(1, 3, 32, 32)
    with budget.LEDGER.reserve(budget.call_bytes()), budget.LEDGER.reserve(budget.call_bytes()):  # all of it
        worker = threading.Thread(target=lambda: (attr.attribute(net, x, 3, "saliency",
                                                                 waiting=lambda *heard: places.append(heard)),
                                                  done.set()))
        worker.start()
        deadline = time.monotonic() + 10
        while not places and time.monotonic() < deadline:
            time.sleep(0.05)
        assert places[:1] == [(1, "the server's memory")]
        assert not done.is_set()  # it waits rather than overcommit
    worker.join(20)
    assert done.is_set() and budget.LEDGER.used == 0


class _Holder:
    """Something that keeps ``held`` bytes outside the heavy calls (a model cache's stand-in)."""

    def __init__(self, held: int) -> None:
        self.held = held

    def resident(self) -> int:
        return self.held


def test_a_call_waits_while_it_does_not_fit_beside_the_models_held(small_budget):
    """Two calls of 100 MB fit a 256 MB budget alone, not beside 100 MB of loaded models: the second waits."""
    ledger, holder, order = budget.Ledger(), _Holder(100 << 20), []
    ledger.count(holder)
    assert ledger.resident() == 100 << 20
    first_in = threading.Event()

    def first() -> None:
        with ledger.reserve(100 << 20):
            first_in.set()
            time.sleep(0.3)
            order.append("first")

    a = threading.Thread(target=first)
    a.start()
    first_in.wait(5)
    with ledger.reserve(100 << 20):
        order.append("second")
    a.join(5)
    assert order == ["first", "second"]
    holder.held = 0  # without the models the two run side by side
    with ledger.reserve(100 << 20), ledger.reserve(100 << 20, timeout=0.2):
        assert ledger.used == 200 << 20
    holder.held = 1 << 30  # more than the budget: a call alone still runs (waiting would free nothing)
    with ledger.reserve(100 << 20, timeout=0.2):
        with pytest.raises(budget.BudgetError, match="by the models loaded"):
            with ledger.reserve(1, timeout=0.2):
                pass
    del holder
    import gc

    gc.collect()
    assert ledger.resident() == 0  # a cache that is gone counts no more


def test_a_model_cache_counts_its_models_and_their_work_twins(small_budget):
    import gc

    from explorer.config import ModelConfig
    from explorer.loading import ModelCache
    from explorer.shared import resident_bytes, work_twin

    gc.collect()
    cache, before = ModelCache(max_models=4), budget.LEDGER.resident()
    net = cache.get(ModelConfig("resnet18", weights="random")).model
    weights = sum(t.numel() * t.element_size() for t in (*net.parameters(), *net.buffers()))
    assert cache.resident() == resident_bytes(net) == weights
    work_twin(net)
    assert cache.resident() == 2 * weights  # the twin a heavy call runs on is a second copy
    assert budget.LEDGER.resident() - before == 2 * weights  # and the server's ledger counts both


def test_a_model_cache_lets_models_go_to_stay_within_its_share_of_the_budget(monkeypatch):
    """Two resnet18s (45 MB each) with their work twins fit a 400 MB budget's 200 MB for models; a resnet34 (83 MB)
    beside them does not, and the older go. The newest always stays, even alone over the share."""
    from explorer.config import ModelConfig
    from explorer.loading import ModelCache, models_bytes

    monkeypatch.setenv("EXPLORER_MEMORY_MB", "400")
    assert models_bytes() == 200 << 20
    cache, small, large = ModelCache(max_models=4), ModelConfig("resnet18"), ModelConfig("resnet34")
    cache.get(small)
    cache.get(ModelConfig("resnet18", shortcut="A"))
    assert len(cache.keys()) == 2  # 2 × 2 × 45 MB fit in 200
    cache.get(large)
    assert [c.key for c in cache.keys()] == [large.key]
    monkeypatch.setenv("EXPLORER_MEMORY_MB", "100")
    cache.get(small)
    assert [c.key for c in cache.keys()] == [small.key]


def test_calls_and_model_loads_from_many_threads_within_a_small_budget_all_finish(monkeypatch):
    """Eight threads: attributions on models from one cache whose models pass its share of a 320 MB budget (so
    models go while others load and calls wait for the memory the cache holds); every call ends in a result and
    the ledger is empty after. Guards against a deadlock between the ledger's lock and the cache's."""
    from concurrent.futures import ThreadPoolExecutor

    from explorer.config import ModelConfig
    from explorer.loading import ModelCache

    monkeypatch.setenv("EXPLORER_MEMORY_MB", "320")
    cache = ModelCache(max_models=4)
    configs = [ModelConfig("resnet18", shortcut=s, weights="random") for s in ("A", "B", "C")]
    x = torch.rand(1, 3, 48, 48)

    def one(i: int) -> tuple:
        net = cache.get(configs[i % len(configs)]).model
        result = attr.attribute(net, x, 1, "integrated_gradients", n_steps=8)
        return result.map.shape

    with ThreadPoolExecutor(8) as pool:
        shapes = list(pool.map(one, range(24), timeout=300))
    assert shapes == [(48, 48)] * 24
    assert budget.LEDGER.used == 0 and len(cache.keys()) < len(configs)  # 3 × 2 × 45 MB pass 160 MB: one went


def test_resident_bytes_are_counted_again_when_a_models_weights_move():
    """The count is kept per network (a page asks on every rerun) and made again when its weights are replaced."""
    from explorer.shared import resident_bytes

    net = build("resnet18")

    def weights() -> int:
        return sum(t.numel() * t.element_size() for t in (*net.parameters(), *net.buffers()))

    assert resident_bytes(net) == weights()
    net.half()  # new storages, half the size
    assert resident_bytes(net) == weights() < 30 << 20
