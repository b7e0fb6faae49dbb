"""Linear merge / model soup (Wortsman et al. 2022, arXiv 2203.05482): the weighted average of the
models (computed in float32, float64 for float64 inputs). A base model, if given, is not averaged in."""

from __future__ import annotations

import pydantic
import torch

from guard.merge.method import MergeMethod, Parameters, TensorGroup


class LinearParams(Parameters):
    normalize: bool = pydantic.Field(default=True, description="divide by the sum of the weights")


class LinearModel(Parameters):
    weight: float = pydantic.Field(description="this model's coefficient")


def merge(group: TensorGroup) -> torch.Tensor:
    first = group.models[0]
    work = torch.float64 if first.dtype == torch.float64 else torch.float32
    result = torch.zeros_like(first, dtype=work)
    total = 0.0
    for i, params in enumerate(group.model_params):
        tensor = group.models[i]
        group.models[i] = None
        result.add_(tensor.to(work), alpha=params.weight)
        total += params.weight
    if group.params.normalize:
        result.div_(total if abs(total) >= 1e-8 else 1.0)
    return result.to(first.dtype)


METHOD = MergeMethod(
    name="linear",
    description="weighted average of the models",
    reference="https://arxiv.org/abs/2203.05482",
    merge=merge,
    params=LinearParams,
    model_params=LinearModel,
    base="optional",
)
