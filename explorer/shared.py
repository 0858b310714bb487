"""The one place for a shared model: its lock, hook ownership, device copies, meta twins, seeded RNG and the memory
its weights and their copies hold (:func:`resident_bytes`).

A model cached for many browser sessions is shared and read-only. Every ``explorer`` function that reads one is
safe to call from many threads with no lock held by the caller, because it does one of two things:

* work on the model itself inside :func:`exclusive`, which holds the model's one lock (:func:`model_lock`),
  yields a :class:`Hooks` owner and, on exit, releases every hook that owner registered and removes whatever
  else the work left on any module (:func:`hooks_restored`: Captum's hooks and attributes after a failure);
* or work on a private :func:`meta_twin`, which never shares a hook, a closure or an instance attribute with
  the model, so no lock is needed.

Long work (an attribution, the faithfulness curves: many batches) runs inside :func:`exclusive_twin`, on the
model's :func:`work_twin`: a private copy with its own lock, so the shared model's lock is held only while the copy
is made, once, and every other session's prediction on the model goes on meanwhile. Long calls on one model queue
for its twin.

Random numbers come from :func:`seeded`, which forks the RNG (``torch.random.fork_rng``) under one process-wide
lock: the global generator a multi-session server shares is never reseeded.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from explorer.turns import Heard, Turns

__all__ = [
    "HOOK_REGISTRIES",
    "Hooks",
    "exclusive",
    "exclusive_twin",
    "hook_count",
    "hooks_restored",
    "input_channels",
    "meta_twin",
    "model_lock",
    "on_device",
    "prepare",
    "private",
    "private_copy",
    "resident_bytes",
    "same_device",
    "seeded",
    "work_twin",
]

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()  # guards the dictionaries of this module, never held during work
_TEMPLATES: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()
_DEVICE_COPIES: weakref.WeakKeyDictionary[nn.Module, dict[str, nn.Module]] = weakref.WeakKeyDictionary()
_PRIVATE: weakref.WeakSet[nn.Module] = weakref.WeakSet()
_WORK_TWINS: weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[tuple, nn.Module]]] = weakref.WeakKeyDictionary()
_RNG = threading.RLock()

HOOK_REGISTRIES = (
    "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks", "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs", "_state_dict_hooks", "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
)
"""The per-module registries that hooks live in (``torch.nn.Module``'s own attributes)."""
_COUNTED = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def model_lock(model: nn.Module) -> threading.RLock:
    """The one lock of ``model`` (made on first use, forgotten with the model). Re-entrant.

    ``explorer`` functions take it themselves; the UI's ``LoadedModel.lock`` is this same object.
    """
    with _GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


def hook_count(model: nn.Module) -> int:
    """How many forward/backward hooks sit on any module of ``model``: 0 means nothing was left behind."""
    return sum(len(getattr(m, name)) for m in model.modules() for name in _COUNTED)


@contextlib.contextmanager
def hooks_restored(model: nn.Module) -> Iterator[None]:
    """Run a block, then remove whatever hooks and instance attributes it left on any module of ``model``.

    Captum removes its own hooks, but some of its methods also set attributes (``module.input``) on the ReLUs
    and clean them up only on success; this guard makes "the shared model is unchanged" hold after a failure
    too. Costs about a millisecond on a ResNet-152. Use it through :func:`exclusive`, which holds the lock.
    """
    before = [
        (m, set(m.__dict__), {name: set(d) for name in HOOK_REGISTRIES if (d := m.__dict__.get(name))})
        for m in model.modules()
    ]
    try:
        yield
    finally:
        for m, attrs, hooks in before:
            for name in HOOK_REGISTRIES:
                registry = m.__dict__.get(name)
                if registry:
                    for key in registry.keys() - hooks.get(name, set()):
                        del registry[key]
            for name in m.__dict__.keys() - attrs:
                delattr(m, name)


class Hooks:
    """Owns hook handles and releases them all: the only way ``explorer`` registers hooks on a shared model.

    In the spirit of pytorch-grad-cam's ``ActivationsAndGradients.release()``: whoever registers through it
    never removes a handle by hand. ``net`` is the module to run: the shared model, or its copy on the device
    asked for (see :func:`exclusive`). Also a context manager on its own, for private twins.
    """

    def __init__(self, net: nn.Module | None = None) -> None:
        self.net = net
        self._handles: list[RemovableHandle] = []

    def forward(self, module: nn.Module, fn: Callable[..., Any]) -> RemovableHandle:
        """``fn(module, args, output)`` after ``module``'s forward; may return a replacement output."""
        return self._keep(module.register_forward_hook(fn))

    def pre(self, module: nn.Module, fn: Callable[..., Any]) -> RemovableHandle:
        """``fn(module, args)`` before ``module``'s forward."""
        return self._keep(module.register_forward_pre_hook(fn))

    def _keep(self, handle: RemovableHandle) -> RemovableHandle:
        self._handles.append(handle)
        return handle

    def release(self) -> None:
        """Remove every hook registered through this owner (safe to call twice)."""
        while self._handles:
            self._handles.pop().remove()

    def __len__(self) -> int:
        return len(self._handles)

    def __enter__(self) -> Hooks:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


@contextlib.contextmanager
def exclusive(model: nn.Module, device: torch.device | None = None, *, guard: bool = True) -> Iterator[Hooks]:
    """Hold ``model``'s lock and yield a :class:`Hooks` owner whose ``net`` is ``model`` (or its cached copy on
    ``device``). On exit every hook and attribute the block added to ``net`` is gone, whatever happened inside.
    Nest freely: the lock is re-entrant.

    ``guard`` False skips :func:`hooks_restored` (about a millisecond a call on a ResNet-50) for a block that only
    runs the net and registers hooks through the owner, which releases them whatever happens: a prediction."""
    with model_lock(model):
        net = model if device is None else on_device(model, device)
        with hooks_restored(net) if guard else contextlib.nullcontext(), Hooks(net) as hooks:
            yield hooks


@contextlib.contextmanager
def seeded(seed: int, devices: list[int] | None = None) -> Iterator[None]:
    """Run a block with the global RNG seeded to ``seed``, then put the RNG back as it was.

    ``torch.random.fork_rng`` under a process-wide lock, so concurrent seeded blocks do not interleave and no
    session's seed leaks into another's random numbers. ``devices``: CUDA devices to fork too (default none).
    """
    with _RNG, torch.random.fork_rng(devices=devices or []):
        torch.manual_seed(seed)
        yield


def _strip(module: nn.Module) -> None:
    """Remove every hook from every submodule of ``module`` (a twin must not call the model's recorders)."""
    for m in module.modules():
        for name in HOOK_REGISTRIES:
            registry = m.__dict__.get(name)
            if registry:
                registry.clear()


def _template(model: nn.Module) -> nn.Module:
    """A hook-free meta copy of ``model``, made once under its lock (so no session's hooks or Captum's
    attributes are on it at that moment) and never run: :func:`meta_twin` copies it."""
    with _GUARD:
        template = _TEMPLATES.get(model)
    if template is not None:
        return template
    with model_lock(model):
        memo: dict[int, object] = {}
        for p in model.parameters():
            memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
        for b in model.buffers():
            memo[id(b)] = torch.empty_like(b, device="meta")
        template = copy.deepcopy(model, memo)
    _strip(template)
    template.eval()
    with _GUARD:
        return _TEMPLATES.setdefault(model, template)


# Modules whose output has their input's shape. On ``meta`` PyTorch computes them through slow Python
# decompositions (most of a meta pass); a twin passes the input through instead (hooks on them still fire).
_SHAPE_PRESERVING = (
    nn.modules.batchnorm._BatchNorm, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
    nn.Hardswish, nn.Dropout, nn.Identity,
)


def _same_shape(x: torch.Tensor) -> torch.Tensor:
    """The input, as the output of a shape-preserving module on ``meta`` (only its shape is known anyway)."""
    return x


def input_channels(model: nn.Module) -> int:
    """The channels an image needs for ``model``: its first convolution's input channels (3 without one)."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else 3


def meta_twin(model: nn.Module) -> nn.Module:
    """A private copy of ``model``'s structure on the meta device, in eval mode: shapes without data.

    It shares no parameter, buffer, hook, closure or instance attribute with ``model``: the caller may hook it,
    run it or change its modules freely, with no lock. Shape-preserving modules (batch norms, activations) pass
    their input through, which makes a pass several times faster. Costs one deepcopy of a cached template.
    """
    twin = copy.deepcopy(_template(model))
    for m in twin.modules():
        if isinstance(m, _SHAPE_PRESERVING):
            m.forward = _same_shape
    return twin


def same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are the same place when 0 is the current GPU."""
    if a.type != b.type:
        return False
    if a.type != "cuda" or a.index == b.index:
        return True
    current = torch.cuda.current_device()
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)


def on_device(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` itself when it already lives on ``device``, else a copy there (made once, cached per model).

    The shared model is never moved: ``.to()`` would change it for every other session. The copy shares the
    original's lock: :func:`exclusive` on the original covers work on its copies.
    """
    param = next(model.parameters(), None)
    if param is None or same_device(param.device, device):
        return model
    with _GUARD:
        copies = _DEVICE_COPIES.setdefault(model, {})
    key = str(device)
    if key not in copies:
        with model_lock(model):
            if key not in copies:
                twin = copy.deepcopy(model)
                _strip(twin)
                copies[key] = twin.to(device)
    return copies[key]


def _weights_signature(model: nn.Module) -> tuple:
    """Where each parameter and buffer of ``model`` lives and how often it was changed in place: equal signatures
    mean equal weights (a model loaded anew, or changed in place by a notebook, has another)."""
    return tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers()))


def work_twin(model: nn.Module, device: torch.device | None = None) -> nn.Module:
    """The private copy of ``model`` on ``device`` (default: where ``model`` lives) that long work runs on: made
    once under ``model``'s lock (so no session's hooks come along), hook-free, with a lock of its own; made again
    when ``model``'s weights changed; forgotten with ``model``. A :func:`private` model is its own twin. Costs
    one copy of the weights per model and device (about 0.15 s to make for a ResNet-50 on this CPU)."""
    param = next(model.parameters(), None)
    if param is None or (model in _PRIVATE and (device is None or same_device(param.device, device))):
        return model
    where = param.device if device is None else device
    key, signature = str(where), _weights_signature(model)
    with _GUARD:
        known = _WORK_TWINS.setdefault(model, {}).get(key)
    if known is not None and known[0] == signature:
        return known[1]
    with model_lock(model):
        with _GUARD:
            known = _WORK_TWINS[model].get(key)
        if known is None or known[0] != signature:
            twin = copy.deepcopy(model)
            _strip(twin)
            known = (signature, twin.to(where))
            with _GUARD:
                _WORK_TWINS[model][key] = known
    return known[1]


_STORAGES: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, dict[int, int]]] = weakref.WeakKeyDictionary()


def _cpu_storages(net: nn.Module) -> dict[int, int]:
    """{address: bytes} of the CPU storages under ``net``'s parameters and buffers, walked once per net (a page
    asks on every rerun) and again only when its first parameter moved (a model sent to another device, or whose
    weights were replaced)."""
    first = next(net.parameters(), None)
    mark = (None,) if first is None else (first.device, first.data_ptr())
    with _GUARD:
        known = _STORAGES.get(net)
    if known is not None and known[0] == mark:
        return known[1]
    found = {}
    for t in (*net.parameters(), *net.buffers()):
        if t.device.type == "cpu":
            storage = t.untyped_storage()
            found[storage.data_ptr()] = storage.nbytes()
    with _GUARD:
        _STORAGES[net] = (mark, found)
    return found


def resident_bytes(model: nn.Module) -> int:
    """The host memory ``model``'s weights hold: its CPU parameters and buffers and those of its copies
    (:func:`work_twin`, :func:`on_device`), each storage counted once. Copies on a GPU take none of it."""
    with _GUARD:
        copies = [*_DEVICE_COPIES.get(model, {}).values(), *(t for _, t in _WORK_TWINS.get(model, {}).values())]
    return sum({ptr: n for net in (model, *copies) for ptr, n in _cpu_storages(net).items()}.values())


def private(model: nn.Module) -> nn.Module:
    """Mark ``model`` as seen by one caller only (a copy made for one call): long work runs on it directly, with
    no work twin. Returns ``model``."""
    with _GUARD:
        _PRIVATE.add(model)
    return model


def private_copy(model: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """A deep copy of ``model`` on ``device`` (default: the CPU), in eval mode, to train, calibrate or change freely.
    Made under the model's lock, so no other session's hooks are on it at that moment; the caller's model is never
    touched."""
    with model_lock(model):
        net = copy.deepcopy(model)
    return net.to(torch.device(device or "cpu")).eval()


_TURNS: weakref.WeakKeyDictionary[nn.Module, Turns] = weakref.WeakKeyDictionary()


def _turns(twin: nn.Module) -> Turns:
    """The line of callers waiting for ``twin`` (made on first use, forgotten with the twin)."""
    with _GUARD:
        turns = _TURNS.get(twin)
        if turns is None:
            turns = _TURNS[twin] = Turns()
        return turns


@contextlib.contextmanager
def exclusive_twin(model: nn.Module, device: torch.device | None = None, *,
                   waiting: Heard | None = None) -> Iterator[Hooks]:
    """:func:`exclusive` on ``model``'s :func:`work_twin` on ``device``: the twin's lock is held, ``model``'s is
    not (past making the twin), and on exit the twin is as it was. Callers take the twin in arrival order;
    ``waiting`` hears a waiting caller's place in line (1: next)."""
    twin = work_twin(model, device)
    with _turns(twin).turn(waiting), exclusive(twin) as hooks:
        yield hooks


def prepare(model: nn.Module) -> nn.Module:
    """Make ``model`` ready to be shared: eval mode, weights in channels_last memory format (the fast layout for
    convolutions on CPU and GPU; values unchanged). Call once, before anyone else can see the model."""
    return model.eval().to(memory_format=torch.channels_last)
