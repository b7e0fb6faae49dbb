"""DAM in the streaming merge: a TensorHook that turns each tensor group of a task-arithmetic job into
`theta0 + sum_i lambda_i[l] (m_l * tau_i)`.

Before the method runs, every model's tensor becomes `base + m * (model - base)` and its weight the
learnt coefficient for that tensor; `lambda` is set to 1 and `normalize` off, so task arithmetic computes
exactly DAM's merge (in the job's math dtype). Tensors DAM left alone (`exclude`, non-float) are merged
by the configured task arithmetic unchanged.
"""

from __future__ import annotations

import torch

from guard.defenses.dam.optimise import DamResult
from guard.merge.engine import TensorHook
from guard.merge.method import TensorGroup


class DamHook(TensorHook):
    def __init__(self, result: DamResult, *, names: dict[str, str] | None = None):
        self.result = result
        # checkpoint name (what the engine sees) -> the name DAM used
        self.names = names or {n: n for n in result.names}
        self._index = {n: i for i, n in enumerate(result.names)}
        self.applied = 0

    def prepare(self, group: TensorGroup) -> None:
        name = self.names.get(group.name)
        if name is None or group.base is None:
            return
        index = self._index[name]
        mask = self.result.masks[name].to(device=group.base.device, dtype=group.base.dtype)
        base = group.base
        if mask.dim() > base.dim():  # backdoor_mask: per_model, one mask per model
            group.models = [base + m * (model - base) for m, model in zip(mask, group.models)]
        else:
            group.models = [base + mask * (model - base) for model in group.models]
        group.model_params = [params.model_copy(update={"weight": float(self.result.coefficients[i, index])})
                              for i, params in enumerate(group.model_params)]
        group.params = group.params.model_copy(update={"scale": 1.0, "normalize": False})
        self.applied += 1

    def finish(self, name: str, merged: torch.Tensor, *, group: TensorGroup) -> torch.Tensor:
        return merged
