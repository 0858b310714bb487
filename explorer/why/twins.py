"""Trained twins for "why it works": a plain and a residual CIFAR net (or an original and a pre-activation one)
built from one seed and trained side by side on the same batches with the lab's race
(:func:`explorer.lab.train_race`), with progress.

A :class:`TwinRecipe` says everything that decides the result (depth, data, epochs, optimiser, seed), so trained
twins can be cached by it and shared by every session. :func:`lesson_twins` are the lesson's small pair, trained
once per process.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, fields, replace

import torch
from torch import nn

from explorer import lab
from explorer.shared import model_lock
from explorer.why.base import EvalSet, Progress, WhyError, quiet

__all__ = [
    "EPOCH_CHOICES",
    "LESSON_RECIPE",
    "LR_CHOICES",
    "PAIRS",
    "SIZE_CHOICES",
    "TRAIN_IMAGE_CHOICES",
    "TwinRecipe",
    "Twins",
    "lesson_twins",
    "train_twins",
    "single",
    "trained_twins",
    "twins_from_race",
]

PAIRS: tuple[str, str] = ("plain vs residual", "original vs pre-activation")
"""What a pair of twins compares: shortcuts or not, or where BN and ReLU sit."""
EPOCH_CHOICES: tuple[int, ...] = (2, 4, 8, 12, 16, 20)
LR_CHOICES: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1)
SIZE_CHOICES: tuple[int, ...] = (8, 16, 32)
TRAIN_IMAGE_CHOICES: tuple[int, ...] = (0, 256, 512)
"""Training images of the twins; 0: all 1,347 of the digits' training split."""


@dataclass(frozen=True)
class TwinRecipe:
    """How a pair of twins is made: CIFAR nets of ``depth`` built from ``seed`` (the two twins share every
    weight: option A shortcuts and the shortcut itself have none), trained for ``epochs`` on scikit-learn's digits
    at ``size`` px (``train_limit`` training images at most, all 1,347 by default) with SGD (``lr``, momentum 0.9,
    weight decay 1e-4, batches of ``batch_size``), the paper's recipe without its schedule. ``pair``: one of
    :data:`PAIRS`."""

    depth: int = 20
    epochs: int = 8
    lr: float = 0.05
    batch_size: int = 64
    size: int = 8
    seed: int = 0
    train_limit: int | None = None
    pair: str = PAIRS[0]

    def __post_init__(self) -> None:
        if self.pair not in PAIRS:
            raise WhyError(f"unknown pair {self.pair!r}; choose one of: {', '.join(PAIRS)}")

    @property
    def race(self) -> lab.RaceRecipe:
        """The lab race's recipe, in fp32 wherever the race offers a faster precision (the figures compare small
        differences between networks, and the tests pin them)."""
        fp32 = {"fast": False} if "fast" in {f.name for f in fields(lab.RaceRecipe)} else {}
        return lab.RaceRecipe(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, seed=self.seed, **fp32)

    @property
    def entries(self) -> tuple[tuple[str, dict[str, bool]], ...]:
        """(name, knobs) of the two twins, the one without the feature first."""
        if self.pair == PAIRS[0]:
            return ((lab.model_name(self.depth, True), {"plain": True}),
                    (lab.model_name(self.depth, False), {"plain": False}))
        return ((lab.model_name(self.depth, False), {"plain": False}),
                (lab.model_name(self.depth, False, preact=True), {"plain": False, "preact": True}))

    def data(self) -> lab.LabDataset:
        return lab.digits_dataset(size=self.size, seed=self.seed, train_limit=self.train_limit)

    def models(self, num_classes: int = 10) -> dict[str, nn.Module]:
        """The two fresh twins (train mode), keyed by name."""
        return {name: lab.lab_model(self.depth, num_classes=num_classes, seed=self.seed, **knobs)
                for name, knobs in self.entries}

    def train_mult_adds(self, images: int) -> int:
        """Mult-adds of training both twins on ``images`` training images (a step costs about 3 forwards)."""
        per_image = sum(lab.forward_mult_adds(self.depth, self.size, **knobs) for _, knobs in self.entries)
        return 3 * per_image * images * self.epochs


@dataclass(frozen=True)
class Twins:
    """The networks a figure compares, and what they are measured on: ``models`` (name -> eval-mode network; of
    twins, the one without the feature first; a user's checkpoint comes alone), ``initial`` (name -> the state
    dict it started from, when known), ``train`` and ``test`` images, the race's ``history`` (``lab.RaceHistory``,
    or None), ``seed``, ``source`` (where they come from, in words), ``key`` (changes exactly when the networks
    or their data change: results are cached by it) and ``digits_split`` (the seed of the digits' split when the
    images are scikit-learn's digits, so a test image can be shown as the digit it is; None otherwise)."""

    models: Mapping[str, nn.Module]
    initial: Mapping[str, Mapping[str, torch.Tensor]]
    train: EvalSet
    test: EvalSet
    history: lab.RaceHistory | None
    seed: int
    source: str
    key: Hashable
    digits_split: int | None = None

    @property
    def names(self) -> list[str]:
        return list(self.models)

    @property
    def size(self) -> int:
        return self.test.size

    def only(self, name: str) -> Twins:
        """The same, with the network ``name`` alone."""
        return replace(self, models={name: self.models[name]},
                       initial={k: v for k, v in self.initial.items() if k == name})

    @property
    def residual(self) -> dict[str, nn.Module]:
        """The networks with shortcuts (paths exist only there)."""
        return {n: m for n, m in self.models.items() if not getattr(m, "plain", False)}


def _sets(data: lab.LabDataset) -> tuple[EvalSet, EvalSet]:
    return (EvalSet(data.x_train, data.y_train, f"{data.name} training images"),
            EvalSet(data.x_test, data.y_test, f"{data.name} test images"))


_TRAINING = threading.Lock()  # one pair trains at a time in this process: the CPUs are few
_KEEP = 4  # trained pairs kept by this process (a pair of depth-56 twins is about 7 MB)
_TRAINED: OrderedDict[TwinRecipe, Twins] = OrderedDict()
_TRAINED_LOCK = threading.Lock()


def trained_twins(recipe: TwinRecipe) -> Twins | None:
    """The twins of ``recipe`` when this process has trained them (for any session), else None."""
    with _TRAINED_LOCK:
        found = _TRAINED.get(recipe)
        if found is not None:
            _TRAINED.move_to_end(recipe)
        return found


def train_twins(recipe: TwinRecipe, *, progress: Progress = quiet, device: torch.device | str | None = None,
                ) -> Twins:
    """Build and train ``recipe``'s twins (minutes at depth 56 on two CPU cores): ``progress`` hears after every
    step. Deterministic for a recipe on one machine. The result is kept (:func:`trained_twins`): the last few
    recipes are trained once per process, whoever asks."""
    found = trained_twins(recipe)
    if found is not None:
        return found
    data = recipe.data()
    models = recipe.models(len(data.classes))
    initial = {name: {k: v.detach().clone() for k, v in m.state_dict().items()} for name, m in models.items()}
    total = recipe.race.steps_per_epoch(data) * recipe.epochs * len(models)
    done = 0

    def step(record: lab.StepRecord) -> None:
        nonlocal done
        done += 1
        progress(done / total, f"training {record.model}: epoch {record.epoch} of {recipe.epochs}")

    with _TRAINING:
        found = trained_twins(recipe)  # another session may have trained them while this one waited
        if found is not None:
            return found
        history = lab.train_race(models, data, recipe.race, device=device, on_step=step)
    trained = {name: m.cpu().eval() for name, m in models.items()}
    twins = Twins(trained, initial, *_sets(data), history, recipe.seed,
                  f"trained here: {recipe.epochs} epochs on {len(data.x_train):,} digits at {recipe.size} px, "
                  f"learning rate {recipe.lr}, seed {recipe.seed}", recipe, recipe.seed)
    with _TRAINED_LOCK:
        _TRAINED[recipe] = twins
        while len(_TRAINED) > _KEEP:
            _TRAINED.popitem(last=False)
    return twins


def twins_from_race(models: Mapping[str, nn.Module], data: lab.LabDataset, history: lab.RaceHistory | None,
                    *, seed: int, source: str, key: Hashable) -> Twins:
    """The plain and residual twins of one depth from a lab race (``models`` keyed "plain-20", "ResNet-20", ...,
    the race's own; copies are kept, in eval mode). Their starting weights are rebuilt from ``seed``; ``key``
    names the race.

    Raises:
        WhyError: when the race has no plain and residual pair of one depth.
    """
    for name, model in models.items():
        if not name.startswith("plain-"):
            continue
        depth = int(name.removeprefix("plain-"))
        partner = lab.model_name(depth, False)
        if partner in models:
            pair = {name: model, partner: models[partner]}
            copies = {n: _eval_copy(m) for n, m in pair.items()}
            initial = {n: lab.lab_model(depth, plain=n == name, num_classes=len(data.classes), seed=seed).state_dict()
                       for n in pair}
            digits = seed if data.name == "digits" else None
            return Twins(copies, initial, *_sets(data), history, seed, source, key, digits)
    raise WhyError("this race has no plain and residual pair of one depth")


def single(model: nn.Module, name: str, train: EvalSet, test: EvalSet, *, source: str, key: Hashable) -> Twins:
    """One network of the user's (a checkpoint) with its own images, in the shape of :class:`Twins`: the figures
    that compare two networks show it alone."""
    return Twins({name: model}, {}, train, test, None, 0, source, key)


def _eval_copy(model: nn.Module) -> nn.Module:
    with model_lock(model):
        return copy.deepcopy(model).cpu().eval()


LESSON_RECIPE = TwinRecipe()
"""The lesson's twins: the Why page's first twins, plain-20 and ResNet-20, 8 epochs on the 1,347 training digits at
8 px (about 10 s on a CPU core; its link opens the page on them, trained already)."""


def lesson_twins(progress: Progress = quiet) -> Twins:
    """:data:`LESSON_RECIPE`'s twins, trained once per process (the lesson's figures and questions share them,
    and its link opens the Why page on them)."""
    return train_twins(LESSON_RECIPE, progress=progress)
