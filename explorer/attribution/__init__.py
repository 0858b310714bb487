"""One registry of Captum attribution methods behind one interface, safe on a shared model.

``attribute(model, x, target, method, **options)`` runs any method of :data:`METHODS` and returns an
:class:`Attribution`: an (H, W) map on the CPU, Captum's raw output, the baseline and what it is, Captum's
convergence delta where the method has one, the time and the number of passes. Captum's own option names
(``n_steps``, ``internal_batch_size``, ``sliding_window_shapes``, ``strides``, ``nt_samples``, ``stdevs``, ...)
pass straight through; ``baseline`` ("zeros", "black", "blur", "mixed") names the reference input.

The rooms:

* :mod:`~explorer.attribution.registry`: every method declared once as data (its options with range, default
  and help; its cost and CPU cap), :func:`resolve_method`, :func:`estimate_cost`, :func:`check_cost`;
* :mod:`~explorer.attribution.spec`: what a declaration is made of (:class:`Option`, :class:`MethodSpec`);
* :mod:`~explorer.attribution.baselines`: the reference inputs;
* :mod:`~explorer.attribution.layers`: the layers the methods look at, asked of the model's stage description;
* :mod:`~explorer.attribution.core`: :func:`attribute` (takes the model's lock itself, leaves no hook behind);
* :mod:`~explorer.attribution.result`: :class:`Attribution` and the views of its map;
* :mod:`~explorer.attribution.cams`: the ``grad-cam`` package's CAMs (Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM,
  Eigen-CAM, Score-CAM, Ablation-CAM), run the shared-model way (imported only when one runs);
* :mod:`~explorer.attribution.sanity`: the model-randomisation check of Adebayo et al. 2018;
* :mod:`~explorer.attribution.faithfulness`: which map to trust: deletion and insertion curves and their areas;
* :mod:`~explorer.attribution.tables`: the page's tables (cost before running, details, the faithfulness ranking).
"""

from __future__ import annotations

from explorer.attribution.baselines import BASELINES, make_baseline
from explorer.attribution.core import FOR_MEMORY, FOR_MODEL, attribute
from explorer.attribution.errors import AttributionError, CostError
from explorer.attribution.faithfulness import CPU_MAX_STEPS, Faithfulness, faithfulness, faithfulness_cost
from explorer.attribution.layers import default_layer, gradcam_layers, layer_channels, stage_grid, stage_names
from explorer.attribution.registry import (
    METHODS,
    check_cost,
    check_memory,
    estimate_cost,
    occlusion_grid,
    resolve_method,
)
from explorer.attribution.result import VIEWS, Attribution, reduce_channels, view
from explorer.attribution.sanity import cascade_layers, randomised_copy, rank_similarity, sanity_pair
from explorer.attribution.spec import MethodSpec, Option
from explorer.images import IMAGENET_MEAN, IMAGENET_STD

_TABLES = ("cost_table", "details_table", "trust_table")  # pandas loads with the first table, not with the app


def __getattr__(name: str) -> object:
    if name in _TABLES:
        from explorer.attribution import tables

        return getattr(tables, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "BASELINES",
    "FOR_MEMORY",
    "FOR_MODEL",
    "CPU_MAX_STEPS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "METHODS",
    "VIEWS",
    "Attribution",
    "AttributionError",
    "CostError",
    "Faithfulness",
    "MethodSpec",
    "Option",
    "attribute",
    "cascade_layers",
    "check_cost",
    "check_memory",
    "cost_table",
    "default_layer",
    "details_table",
    "estimate_cost",
    "faithfulness",
    "faithfulness_cost",
    "gradcam_layers",
    "layer_channels",
    "make_baseline",
    "occlusion_grid",
    "randomised_copy",
    "rank_similarity",
    "sanity_pair",
    "reduce_channels",
    "resolve_method",
    "stage_grid",
    "stage_names",
    "trust_table",
    "view",
]
