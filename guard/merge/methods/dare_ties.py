"""DARE with TIES' sign election (arXiv 2311.03099): random drop and rescale, then elect signs and sum
the agreeing entries."""

from __future__ import annotations

from guard.merge.method import MergeMethod
from guard.merge.methods.dare_linear import drop
from guard.merge.task_vectors import WeightDensity, combine, params_with_defaults

METHOD = MergeMethod(
    name="dare_ties",
    description="random drop and rescale, elect signs, sum the agreeing entries",
    reference="https://arxiv.org/abs/2311.03099",
    merge=lambda group: combine(group, sparsify=drop, consensus=True),
    params=params_with_defaults(normalize=False, rescale=True),
    model_params=WeightDensity,
    random=True,
)
