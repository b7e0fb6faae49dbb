"""Undo a hidden-unit permutation of the MLPs (MergeLock's hardening, PaRaMS-style) by matching units.

Each protected MLP hidden unit is matched to a reference unit (the public base, or any model of the same
lineage) by the Hungarian algorithm (scipy's linear_sum_assignment) on the cosine similarity of their
weights (incoming rows, bias, outgoing column), as the AGA paper does for permuted units. A fine-tune
keeps every unit close to its origin, so the assignment recovers the secret permutation without the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from guard.lock.mlp import neuron_features, permute_block
from guard.lock.plan import plan_lock


def match_units(protected: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
    """perm with protected[perm[j]] ~ reference[j] (both [units, features]): Hungarian on -cosine."""
    unit = lambda x: x / x.norm(dim=1, keepdim=True).clamp(min=1e-30)  # noqa: E731
    similarity = (unit(reference) @ unit(protected).T).numpy()
    rows, cols = linear_sum_assignment(-similarity)
    return cols[np.argsort(rows)]


def align_mlp_neurons(state: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor], *,
                      config: Any) -> dict[str, torch.Tensor]:
    """`state` with every MLP's hidden units reordered to line up with `reference`'s."""
    plan = plan_lock(state.keys(), config, mlp=True)
    out = dict(state)
    for parts in plan.mlp.blocks.values():
        mine = {p: state[n] for p, n in parts.items()}
        theirs = {p: reference[n] for p, n in parts.items()}
        perm = match_units(neuron_features(plan.mlp.layout, mine), neuron_features(plan.mlp.layout, theirs))
        out.update({parts[p]: t for p, t in permute_block(plan.mlp.layout, mine, perm).items()})
    return out
