"""DARE with TIES' sign election (arXiv 2311.03099): random drop and rescale, then elect signs and sum
the agreeing entries."""

from __future__ import annotations

from guard.merge.methods.dare_linear import drop
from guard.merge.task_vectors import task_vector_method

METHOD = task_vector_method(name="dare_ties", description="random drop and rescale, elect signs, sum the agreeing entries",
                            reference="https://arxiv.org/abs/2311.03099", sparsify=drop, consensus=True,
                            normalize=False, rescale=True, random=True)
