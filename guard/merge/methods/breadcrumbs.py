"""Model breadcrumbs (Davari & Belilovsky 2023, arXiv 2312.06795): drop the largest `gamma` fraction
of each task vector (outliers) and the smallest entries, keeping `density`; then task arithmetic."""

from __future__ import annotations

from guard.merge.sparsify import magnitude_outliers
from guard.merge.task_vectors import WeightDensityGamma, task_vector_method


def crumbs(delta, params, group, rescale):
    return magnitude_outliers(delta, params.density, params.gamma, rule=group.magnitude_mask, rescale=rescale)


METHOD = task_vector_method(name="breadcrumbs", description="drop outliers and small entries, then task arithmetic",
                            reference="https://arxiv.org/abs/2312.06795", sparsify=crumbs, consensus=False,
                            normalize=False, rescale=False, model_params=WeightDensityGamma)
