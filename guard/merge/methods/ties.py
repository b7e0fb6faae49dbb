"""TIES merging (Yadav et al. 2023, arXiv 2306.01708): trim each task vector to its top-`density`
magnitudes, elect a sign per entry, average the entries that agree with it (weighted), scale by lambda."""

from __future__ import annotations

from guard.merge.sparsify import magnitude_chunks
from guard.merge.task_vectors import task_vector_method


def trim_task_vector(delta, params, group, rescale):
    return magnitude_chunks(delta, params.density, rule=group.magnitude_mask, rescale=rescale)


METHOD = task_vector_method(name="ties", description="trim to top-density magnitudes, elect signs, disjoint weighted mean",
                            reference="https://arxiv.org/abs/2306.01708", sparsify=trim_task_vector, consensus=True,
                            normalize=True, rescale=False)
