"""The degradation lab: why shortcuts matter, measured at initialisation and shown in a live training race.

Every network here is built fresh for the lab (never the shared cached model). One job per file:

* :mod:`~explorer.lab.twins`: the plain and residual twins (:func:`lab_model`, :func:`model_name`,
  :func:`cifar_depth`, :func:`weight_layers`) and their cost (:func:`forward_mult_adds`);
* :mod:`~explorer.lab.gradients`: gradient flow at initialisation, shattered gradients (Balduzzi et al.
  2017) and the depth sweep;
* :mod:`~explorer.lab.datasets`: scikit-learn's digits, FashionMNIST / CIFAR-10 from a local folder,
  :class:`LabDataset`;
* :mod:`~explorer.lab.race`: :func:`train_race` with its :class:`RaceRecipe`, its records and :class:`RaceHistory`;
* :mod:`~explorer.lab.runner`: :class:`LiveRace`, the race in a background thread, the one training slot and the
  race's time cap (:func:`race_seconds`);
* :mod:`~explorer.lab.timing`: a race's time estimated before it starts (:func:`race_time`) and bounded by the
  cap (:func:`check_race_time`);
* :mod:`~explorer.lab.saved`: the saved-model format (:class:`TrainedMeta`, :func:`save_trained`,
  :func:`load_trained`, :func:`fallback_normalisation`);
* :mod:`~explorer.lab.errors`: :class:`LabError` and its kinds.

Every public name is importable from here: ``from explorer import lab; lab.gradient_flow(...)``.
"""

from __future__ import annotations

from explorer.lab.datasets import (
    LabDataset,
    Triple,
    digit_image,
    digit_test_set,
    digits_dataset,
    fashion_mnist_or_cifar,
)
from explorer.lab.errors import DatasetError, LabError, TrainedModelError
from explorer.lab.gradients import (
    GradientCorrelation,
    depth_sweep,
    first_last_ratio,
    gradient_correlation,
    gradient_flow,
    pair_gradient_correlation,
    pair_gradient_flow,
    random_batch,
)
from explorer.lab.race import EpochRecord, RaceHistory, RaceRecipe, StepRecord, train_race
from explorer.lab.responses import layer_responses, pair_layer_responses, response_norms  # noqa: F401 - Fig. 7
from explorer.lab.runner import LiveRace, RaceSnapshot, race_seconds
from explorer.lab.saved import (
    MAX_FILE_MB,
    MAX_SAVED_DEPTH,
    TrainedMeta,
    fallback_normalisation,
    input_normalisation,
    load_trained,
    race_files,
    save_trained,
)
from explorer.lab.timing import TRAIN_STEP, RaceTime, check_race_time, race_time
from explorer.lab.twins import (
    DEGRADATION_PRESET,
    NETS,
    cifar_depth,
    forward_mult_adds,
    lab_model,
    model_name,
    race_models,
    weight_layers,
)

__all__ = [
    "DEGRADATION_PRESET",
    "DatasetError",
    "EpochRecord",
    "GradientCorrelation",
    "LabDataset",
    "LabError",
    "LiveRace",
    "MAX_FILE_MB",
    "MAX_SAVED_DEPTH",
    "NETS",
    "RaceHistory",
    "RaceRecipe",
    "RaceSnapshot",
    "RaceTime",
    "StepRecord",
    "TRAIN_STEP",
    "TrainedMeta",
    "TrainedModelError",
    "Triple",
    "check_race_time",
    "cifar_depth",
    "depth_sweep",
    "digit_image",
    "digit_test_set",
    "digits_dataset",
    "fallback_normalisation",
    "fashion_mnist_or_cifar",
    "first_last_ratio",
    "forward_mult_adds",
    "gradient_correlation",
    "gradient_flow",
    "input_normalisation",
    "lab_model",
    "load_trained",
    "model_name",
    "pair_gradient_correlation",
    "pair_gradient_flow",
    "race_files",
    "race_models",
    "race_seconds",
    "race_time",
    "random_batch",
    "save_trained",
    "train_race",
    "weight_layers",
]
