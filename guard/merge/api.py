"""In-memory entry points (tests, attacks/, the zoo): the same methods as the streaming engine, over
tensors and state dicts already in memory.

Parameters are given as keywords: the method's global parameters (`lambda` is spelled `scale`, a
Python keyword otherwise) and its per-model parameters, which then apply to every model; `weight`
defaults to 1.0 here. Math runs in the tensors' dtype, as in the engine without `dtype:`.
Random methods draw from one generator seeded with `seed`, tensor by tensor in sorted name order,
exactly as `run_merge` does, so a state-dict merge and a streamed merge of the same inputs agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pydantic
import torch

from guard.errors import InputError
from guard.merge.method import MergeMethod, Parameters, TensorGroup


def _method(name: str) -> MergeMethod:
    from guard.merge.methods import REGISTRY

    return REGISTRY.get(name)


def _split(method: MergeMethod, params: Mapping, count: int) -> tuple[Parameters, list[Parameters]]:
    global_names, model_names = method.parameter_names()
    global_names |= {"scale"} if "lambda" in global_names else set()
    unknown = sorted(set(params) - global_names - model_names)
    if unknown:
        raise InputError(f"merge method {method.name!r}: unknown parameter {unknown[0]!r}", rule="merge-params")
    shared = {k: v for k, v in params.items() if k in global_names}
    own = {k: v for k, v in params.items() if k in model_names}
    if "weight" in model_names:
        own.setdefault("weight", 1.0)
    try:
        return method.params.model_validate(shared), [method.model_params.model_validate(own)] * count
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        raise InputError(f"merge method {method.name!r}: {'.'.join(map(str, error['loc']))}: {error['msg']}",
                         rule="merge-params") from None


def _merge(method: MergeMethod, parsed, base: torch.Tensor, experts: Sequence[torch.Tensor], *, name: str,
           generator, magnitude_mask: str) -> torch.Tensor:
    for i, expert in enumerate(experts):
        if expert.shape != base.shape:
            raise InputError(f"tensor {name!r}: expert {i} has shape {tuple(expert.shape)}, base has "
                             f"{tuple(base.shape)}", rule="merge-shape")
    if not base.is_floating_point() or not experts:
        return base.clone()
    shared, own = parsed
    group = TensorGroup(name=name, base=base, models=[e.to(base.dtype) for e in experts], model_params=own,
                        params=shared, generator=generator, magnitude_mask=magnitude_mask)
    return method.merge(group)


def merge_tensors(method: str, base: torch.Tensor, experts: Sequence[torch.Tensor], *, name: str = "",
                  seed: int = 0, magnitude_mask: str = "threshold", **params) -> torch.Tensor:
    """Merge one tensor (base and experts of one shape), in the base's dtype."""
    spec = _method(method)
    generator = torch.Generator(device=base.device).manual_seed(seed) if spec.random else None
    return _merge(spec, _split(spec, params, len(experts)), base, experts, name=name, generator=generator,
                  magnitude_mask=magnitude_mask)


def merge_state_dicts(method: str, base_sd: Mapping[str, torch.Tensor], expert_sds: Sequence[Mapping[str, torch.Tensor]],
                      *, seed: int = 0, exclude: Callable[[str], bool] | None = None,
                      magnitude_mask: str = "threshold", **params) -> dict[str, torch.Tensor]:
    """Merge whole state dicts. Keys for which `exclude(key)` is true keep the base's value
    (e.g. task-specific classification heads)."""
    spec = _method(method)
    parsed = _split(spec, params, len(expert_sds))
    generator = None
    if spec.random:
        first = next(iter(base_sd.values()), torch.empty(0))
        generator = torch.Generator(device=first.device).manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key in sorted(base_sd):
        missing = [i for i, sd in enumerate(expert_sds) if key not in sd]
        if missing:
            raise InputError(f"tensor {key!r} missing from expert(s) {missing}", rule="merge-missing-tensor")
        base = base_sd[key]
        if exclude is not None and exclude(key):
            out[key] = base.clone()
            continue
        out[key] = _merge(spec, parsed, base, [sd[key] for sd in expert_sds], name=key, generator=generator,
                          magnitude_mask=magnitude_mask)
    return {key: out[key] for key in base_sd}
