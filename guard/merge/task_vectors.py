"""The task-arithmetic family (task_arithmetic, ties, dare_*, breadcrumbs*): one shared combination.

For one tensor: task vectors delta_i = model_i - base (in the math dtype), each optionally sparsified,
scaled by its `weight`; optionally a sign election (TIES' "sum" consensus: the sign of the weighted sum,
zero counting as positive) masks the entries that disagree; the surviving deltas are summed, divided
by the summed weights of what survived when `normalize` is on, multiplied by `lambda`, and added to the
base. The order and dtype of every operation follow mergekit's generalized task arithmetic, so that
the same inputs give bit-identical results on CPU (guard's own code; see docs/merge.md).
"""

from __future__ import annotations

from collections.abc import Callable

import pydantic
import torch

from guard.merge.method import Parameters, TensorGroup


class TaskVectorParams(Parameters):
    """Global parameters of the family. `lambda` is a Python keyword: in Python it is `scale`."""

    normalize: bool = False
    rescale: bool = False
    scale: float = pydantic.Field(default=1.0, alias="lambda", description="lambda: multiplies the merged delta")
    int8_mask: bool = pydantic.Field(default=False, description="accepted for mergekit configs; no effect on results")


class WeightDensity(Parameters):
    weight: float = pydantic.Field(description="scales this model's task vector")
    density: float = pydantic.Field(default=1.0, ge=0.0, le=1.0, description="fraction of entries kept")


class WeightDensityGamma(WeightDensity):
    gamma: float = pydantic.Field(default=0.01, ge=0.0, le=1.0, description="fraction of largest entries dropped")


def params_with_defaults(*, normalize: bool, rescale: bool) -> type[TaskVectorParams]:
    """TaskVectorParams with the method's own defaults for normalize and rescale."""
    return pydantic.create_model(  # type: ignore[call-overload]
        f"TaskVectorParams_{int(normalize)}{int(rescale)}", __base__=TaskVectorParams,
        normalize=(bool, normalize), rescale=(bool, rescale))


Sparsifier = Callable[[torch.Tensor, Parameters, TensorGroup, bool], torch.Tensor]


def combine(group: TensorGroup, *, sparsify: Sparsifier | None, consensus: bool) -> torch.Tensor:
    base = group.base
    params: TaskVectorParams = group.params  # type: ignore[assignment]
    count = len(group.models)
    if count == 0:
        return base
    deltas = base.new_empty((count, *base.shape))
    weights = [p.weight for p in group.model_params]  # type: ignore[attr-defined]
    for i in range(count):
        model = group.models[i]
        group.models[i] = None  # release the input as soon as its delta exists
        delta = model - base
        del model
        if sparsify is not None:
            delta = sparsify(delta, group.model_params[i], group, params.rescale)
        deltas[i] = delta
        del delta
    group.models.clear()
    weight = torch.tensor(weights, dtype=deltas.dtype, device=deltas.device)
    weight = weight.reshape(count, *([1] * base.dim()))
    deltas.mul_(weight)
    if consensus:
        mask = elect_sign(deltas)
        mixed = (deltas * mask).sum(dim=0)
        divisor = (weight * mask).sum(dim=0)
        divisor[divisor == 0] = 1
    else:
        mixed = deltas.sum(dim=0)
        divisor = weight.sum(dim=0)
        divisor[divisor.abs() < 1e-8] = 1
    del deltas
    if params.normalize:
        mixed /= divisor
    if params.scale != 1:
        mixed *= params.scale
    return (base + mixed).to(base.dtype)


def elect_sign(deltas: torch.Tensor) -> torch.Tensor:
    """TIES sign election: True where an entry's sign equals the sign of the sum over models
    (a zero sum elects +; zero entries never agree)."""
    majority = torch.where(deltas.sum(dim=0) >= 0, 1, -1).to(deltas.dtype)
    return deltas.sign() == majority
