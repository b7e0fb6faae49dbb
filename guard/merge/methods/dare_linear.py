"""DARE (Yu et al. 2024, arXiv 2311.03099) with a linear combination: drop each task-vector entry with
probability 1 - density, rescale the survivors (to the original L1 norm, as mergekit does), then task
arithmetic."""

from __future__ import annotations

from guard.merge.sparsify import bernoulli
from guard.merge.task_vectors import task_vector_method


def drop(delta, params, group, rescale):
    return bernoulli(delta, params.density, generator=group.generator, rescale=rescale)


METHOD = task_vector_method(name="dare_linear", description="random drop and rescale, then task arithmetic",
                            reference="https://arxiv.org/abs/2311.03099", sparsify=drop, consensus=False,
                            normalize=False, rescale=True, random=True)
