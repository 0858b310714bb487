"""The tables the Predictions & attributions page shows, as plain DataFrames: the cost before running, the
details of each run, and the faithfulness ranking ("which map to trust")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from torch import nn

from explorer.attribution.errors import CostError
from explorer.attribution.faithfulness import Faithfulness
from explorer.attribution.registry import METHODS, check_cost, check_memory, estimate_cost
from explorer.attribution.result import Attribution
from explorer.budget import gb

__all__ = ["cost_table", "details_table", "trust_table"]


def cost_table(
    model: nn.Module, methods: Sequence[str], settings: Mapping[str, Mapping[str, Any]], shape: tuple[int, ...],
    device: str,
) -> tuple[pd.DataFrame, list[str]]:
    """Passes and the memory reserved (:mod:`explorer.budget`) per method with ``settings`` (method key ->
    keywords of ``attribute()``) on a (C, H, W) image, and the messages of the settings over the CPU cap or the
    memory budget."""
    rows, problems = [], []
    for m in methods:
        spec = METHODS[m]
        try:
            passes = check_cost(m, shape, device, model=model, **settings[m])
        except CostError as err:
            passes = estimate_cost(m, shape, model=model, **settings[m])
            problems.append(str(err))
        try:
            memory = gb(check_memory(m, shape, model=model, **settings[m]))
        except CostError as err:
            memory = "over the budget"
            problems.append(str(err))
        rows.append({"method": spec.label, "passes": passes, "kind": spec.pass_kind, "memory (estimate)": memory,
                     "CPU cap": str(spec.cpu_cap or "—"), "library": spec.library})
    return pd.DataFrame(rows), problems


def details_table(results: Mapping[str, Attribution]) -> pd.DataFrame:
    """One row per finished attribution: device, time, passes, delta, baseline and settings."""
    return pd.DataFrame([
        {"method": r.label, "device": r.device, "seconds": round(r.seconds, 3), "passes": r.passes,
         "convergence delta": r.delta, "baseline": r.baseline_description or "—",
         "settings": ", ".join(f"{k}={v}" for k, v in r.options.items() if k != "baseline")}
        for r in results.values()
    ])


def trust_table(scores: Mapping[str, Faithfulness]) -> pd.DataFrame:
    """The maps ranked by faithfulness: by deletion AUC (lower is better), then insertion AUC (higher is better);
    ``rank`` is the mean of the two ranks, 1 the most faithful."""
    table = pd.DataFrame([
        {"map": name, "deletion AUC": round(f.deletion_auc, 4), "insertion AUC": round(f.insertion_auc, 4),
         "insertion − deletion": round(f.insertion_auc - f.deletion_auc, 4), "forward passes": f.passes}
        for name, f in scores.items()
    ])
    if table.empty:
        return table
    score = table["deletion AUC"].rank() + table["insertion AUC"].rank(ascending=False)
    table.insert(0, "rank", score.rank(method="min").astype(int))
    return table.sort_values(["rank", "insertion − deletion"], ascending=[True, False]).reset_index(drop=True)
