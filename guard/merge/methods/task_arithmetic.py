"""Task arithmetic (Ilharco et al. 2023, arXiv 2212.04089): base + lambda * sum_i w_i (model_i - base)."""

from __future__ import annotations

from guard.merge.method import MergeMethod
from guard.merge.task_vectors import WeightDensity, combine, params_with_defaults


class TaskArithmeticModel(WeightDensity):
    pass


METHOD = MergeMethod(
    name="task_arithmetic",
    description="base + lambda * weighted sum of task vectors",
    reference="https://arxiv.org/abs/2212.04089",
    merge=lambda group: combine(group, sparsify=None, consensus=False),
    params=params_with_defaults(normalize=False, rescale=False),
    model_params=TaskArithmeticModel,
)
