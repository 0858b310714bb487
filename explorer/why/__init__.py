"""Why residual learning works, measured live on trained networks: the four answers the field gives.

One job per file:

* :mod:`~explorer.why.landscape`: loss landscapes (Li et al. 2018): filter-normalised directions, 1-D and 2-D
  slices, the line between two sets of weights, how convex a slice is;
* :mod:`~explorer.why.lesion`: the lesion study of Veit et al. 2016 (delete one block, k blocks, swap neighbours),
  through the app's one knock-out (:func:`explorer.predict.knockout_output`);
* :mod:`~explorer.why.paths`: the ensemble's paths: their length distribution and the gradient each length
  carries (Veit et al.'s sampling);
* :mod:`~explorer.why.branch`: the branch at every add: ||F(x)||, ||x||, their ratio and cosine per block;
* :mod:`~explorer.why.identity`: identity mappings (He et al. 2016b): original vs pre-activation blocks, signal
  and gradient norms through every block at initialisation;
* :mod:`~explorer.why.twins`: trained plain/residual (or original/pre-activation) twins, cached by their recipe;
* :mod:`~explorer.why.base`: what they share: private copies, loss and accuracy, progress, cost estimates.

Every heavy function takes a ``progress`` callback and a ``device``, and works on a private copy of the model it
is given, so it is safe on a shared cached model.
"""

from __future__ import annotations

from explorer.why.base import (
    RESULTS,
    EvalSet,
    Progress,
    WhyError,
    accuracy,
    estimate_seconds,
    evaluate,
    normalised,
    private_copy,
    quiet,
    throughput,
)
from explorer.why.twins import (
    LESSON_RECIPE,
    PAIRS,
    TwinRecipe,
    Twins,
    lesson_twins,
    single,
    train_twins,
    trained_twins,
    twins_from_race,
)

__all__ = [
    "LESSON_RECIPE",
    "PAIRS",
    "RESULTS",
    "EvalSet",
    "Progress",
    "TwinRecipe",
    "Twins",
    "WhyError",
    "accuracy",
    "estimate_seconds",
    "evaluate",
    "lesson_twins",
    "normalised",
    "private_copy",
    "quiet",
    "single",
    "throughput",
    "train_twins",
    "trained_twins",
    "twins_from_race",
]
