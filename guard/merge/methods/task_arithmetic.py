"""Task arithmetic (Ilharco et al. 2023, arXiv 2212.04089): base + lambda * sum_i w_i (model_i - base)."""

from __future__ import annotations

from guard.merge.task_vectors import task_vector_method

METHOD = task_vector_method(name="task_arithmetic", description="base + lambda * weighted sum of task vectors",
                            reference="https://arxiv.org/abs/2212.04089", consensus=False, normalize=False,
                            rescale=False)
