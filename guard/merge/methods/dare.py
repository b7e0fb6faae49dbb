"""DARE (Yu et al. 2024): drop each task-vector entry with probability p, rescale survivors by
1/(1-p), then combine with task arithmetic or TIES."""

from __future__ import annotations

from typing import Literal

import pydantic
import torch

from guard.merge.methods.ties import disjoint_mean
from guard.merge.registry import MergeMethod, register


class DareParams(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    drop: float = pydantic.Field(default=0.9, ge=0, lt=1, description="p, the drop probability")
    combine: Literal["task_arithmetic", "ties"] = "task_arithmetic"
    scale: float = pydantic.Field(default=0.3, gt=0, description="lambda applied to the combined vector")


def combine(base: torch.Tensor, task_vectors: list[torch.Tensor], params: DareParams, generator) -> torch.Tensor:
    rescaled = []
    for tv in task_vectors:
        keep = torch.rand(tv.shape, generator=generator) >= params.drop
        rescaled.append(torch.where(keep, tv / (1.0 - params.drop), torch.zeros_like(tv)))
    stacked = torch.stack(rescaled)
    merged = disjoint_mean(stacked) if params.combine == "ties" else stacked.sum(dim=0)
    return params.scale * merged


register(MergeMethod("dare", DareParams, combine, "random drop and rescale, then TA or TIES"))
