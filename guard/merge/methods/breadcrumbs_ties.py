"""Model breadcrumbs with TIES' sign election (arXiv 2312.06795)."""

from __future__ import annotations

from guard.merge.method import MergeMethod
from guard.merge.methods.breadcrumbs import crumbs
from guard.merge.task_vectors import WeightDensityGamma, combine, params_with_defaults

METHOD = MergeMethod(
    name="breadcrumbs_ties",
    description="drop outliers and small entries, elect signs, sum the agreeing entries",
    reference="https://arxiv.org/abs/2312.06795",
    merge=lambda group: combine(group, sparsify=crumbs, consensus=True),
    params=params_with_defaults(normalize=False, rescale=False),
    model_params=WeightDensityGamma,
)
