"""Task arithmetic (Ilharco et al. 2023): theta0 + lambda * sum_i tau_i."""

from __future__ import annotations

import pydantic
import torch

from guard.merge.registry import MergeMethod, register


class TaskArithmeticParams(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    scale: float = pydantic.Field(default=0.3, gt=0, description="lambda, the scaling of the summed task vectors")


def combine(base: torch.Tensor, task_vectors: list[torch.Tensor], params: TaskArithmeticParams, generator) -> torch.Tensor:
    return params.scale * torch.stack(task_vectors).sum(dim=0)


register(MergeMethod("task_arithmetic", TaskArithmeticParams, combine, "theta0 + lambda * sum of task vectors"))
