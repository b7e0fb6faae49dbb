"""Model Stock (Jang et al. 2024, arXiv 2403.19522): interpolate between the average of the fine-tunes
and the base with t = k cos / (1 + (k - 1) cos), cos the mean pairwise cosine of the task vectors
(per tensor, or per output row with `filter_wise`). Keeps the base where that is singular."""

from __future__ import annotations

import pydantic
import torch

from guard.merge.method import MergeMethod, Parameters, TensorGroup


class ModelStockParams(Parameters):
    filter_wise: bool = pydantic.Field(default=False, description="one interpolation weight per output row")


def merge(group: TensorGroup) -> torch.Tensor:
    base = group.base
    shape = base.shape
    if group.params.filter_wise:
        w0 = base if base.dim() > 1 else base.unsqueeze(0)
        ws = [m if m.dim() > 1 else m.unsqueeze(0) for m in group.models]
    else:
        w0 = base.reshape(-1)
        ws = [m.reshape(-1) for m in group.models]
    offsets = [w - w0 for w in ws]
    cosines = []
    for i, a in enumerate(offsets):
        for b in offsets[i + 1:]:
            norms = torch.norm(a, dim=-1) * torch.norm(b, dim=-1)
            cosines.append(((a * b).sum(dim=-1) / norms.clamp(min=1e-6)).clamp(-1, 1))
    cos = torch.stack(cosines).mean(dim=0).unsqueeze(-1)
    k = len(ws)
    denominator = 1 + (k - 1) * cos
    singular = denominator.abs() < 1e-6
    t = torch.where(singular, torch.zeros_like(cos), k * cos / torch.where(singular, torch.ones_like(cos), denominator))
    average = sum(ws) / k
    return (t * average + (1 - t) * w0).reshape(shape).to(base.dtype)


METHOD = MergeMethod(
    name="model_stock",
    description="interpolate the fine-tunes' average toward the base by their task vectors' angle",
    reference="https://arxiv.org/abs/2403.19522",
    merge=merge,
    params=ModelStockParams,
    min_models=2,
)
