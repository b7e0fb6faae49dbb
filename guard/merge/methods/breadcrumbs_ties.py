"""Model breadcrumbs with TIES' sign election (arXiv 2312.06795)."""

from __future__ import annotations

from guard.merge.methods.breadcrumbs import crumbs
from guard.merge.task_vectors import WeightDensityGamma, task_vector_method

METHOD = task_vector_method(name="breadcrumbs_ties",
                            description="drop outliers and small entries, elect signs, sum the agreeing entries",
                            reference="https://arxiv.org/abs/2312.06795", sparsify=crumbs, consensus=True,
                            normalize=False, rescale=False, model_params=WeightDensityGamma)
