"""TIES merging (Yadav et al. 2023): trim each task vector to its top-k magnitudes, elect a sign per
entry from the trimmed sum, average only the entries that agree with it, scale by lambda."""

from __future__ import annotations

import pydantic
import torch

from guard.merge.registry import MergeMethod, register


class TiesParams(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    density: float = pydantic.Field(default=0.2, gt=0, le=1, description="fraction k of entries kept per task vector")
    scale: float = pydantic.Field(default=1.0, gt=0, description="lambda applied to the merged vector")


def trim(task_vector: torch.Tensor, density: float) -> torch.Tensor:
    if density >= 1.0 or task_vector.numel() == 0:
        return task_vector
    keep = max(1, int(round(density * task_vector.numel())))
    flat = task_vector.abs().flatten()
    threshold = torch.topk(flat, keep, sorted=False).values.min()
    return torch.where(task_vector.abs() >= threshold, task_vector, torch.zeros_like(task_vector))


def disjoint_mean(trimmed: torch.Tensor) -> torch.Tensor:
    """trimmed: [n_experts, ...]. Mean over the entries whose sign agrees with the elected sign."""
    elected = torch.sign(trimmed.sum(dim=0))
    agree = (torch.sign(trimmed) == elected) & (trimmed != 0)
    total = torch.where(agree, trimmed, torch.zeros_like(trimmed)).sum(dim=0)
    count = agree.sum(dim=0).clamp(min=1)
    return total / count


def combine(base: torch.Tensor, task_vectors: list[torch.Tensor], params: TiesParams, generator) -> torch.Tensor:
    trimmed = torch.stack([trim(tv, params.density) for tv in task_vectors])
    return params.scale * disjoint_mean(trimmed)


register(MergeMethod("ties", TiesParams, combine, "trim, elect sign, disjoint mean"))
