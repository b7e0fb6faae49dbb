"""The registry of merge methods and the two entry points (one tensor, whole state dicts)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence

import pydantic
import torch

from guard.errors import InputError


@dataclasses.dataclass(frozen=True)
class MergeMethod:
    name: str
    params: type[pydantic.BaseModel]
    # (base, task_vectors, params, generator) -> merged task vector, all float32
    combine: Callable[[torch.Tensor, list[torch.Tensor], pydantic.BaseModel, torch.Generator], torch.Tensor]
    description: str


MERGE_METHODS: dict[str, MergeMethod] = {}


def register(method: MergeMethod) -> MergeMethod:
    MERGE_METHODS[method.name] = method
    return method


def _method(name: str) -> MergeMethod:
    # Import the method modules on first use; each registers itself.
    import guard.merge.methods  # noqa: F401

    try:
        return MERGE_METHODS[name]
    except KeyError:
        raise InputError(f"unknown merge method {name!r}; known: {', '.join(sorted(MERGE_METHODS))}", rule="merge-method") from None


def _params(method: MergeMethod, params: Mapping) -> pydantic.BaseModel:
    try:
        return method.params(**params)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"merge method {method.name!r}: {where}: {first['msg']}", rule="merge-params") from None


def _generator(seed: int, name: str) -> torch.Generator:
    # A per-tensor seed, so that a streamed merge and a whole-state merge drop the same entries.
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def merge_tensors(
    method: str, base: torch.Tensor, experts: Sequence[torch.Tensor], *, name: str = "", seed: int = 0, **params
) -> torch.Tensor:
    """Merge one tensor: base + combine(expert - base for each expert), in the base's dtype."""
    spec = _method(method)
    parsed = _params(spec, params)
    for i, expert in enumerate(experts):
        if expert.shape != base.shape:
            raise InputError(
                f"tensor {name!r}: expert {i} has shape {tuple(expert.shape)}, base has {tuple(base.shape)}",
                rule="merge-shape",
            )
    if not base.is_floating_point() or not experts:
        return base.clone()
    base32 = base.to(torch.float32)
    task_vectors = [e.to(device=base.device, dtype=torch.float32) - base32 for e in experts]
    merged = spec.combine(base32, task_vectors, parsed, _generator(seed, name))
    return (base32 + merged).to(base.dtype)


def merge_state_dicts(
    method: str,
    base_sd: Mapping[str, torch.Tensor],
    expert_sds: Sequence[Mapping[str, torch.Tensor]],
    *,
    seed: int = 0,
    exclude: Callable[[str], bool] | None = None,
    **params,
) -> dict[str, torch.Tensor]:
    """Merge whole state dicts. Keys for which `exclude(key)` is true keep the base's value
    (e.g. task-specific classification heads)."""
    out: dict[str, torch.Tensor] = {}
    for key, base in base_sd.items():
        missing = [i for i, sd in enumerate(expert_sds) if key not in sd]
        if missing:
            raise InputError(f"tensor {key!r} missing from expert(s) {missing}", rule="merge-missing-tensor")
        if exclude is not None and exclude(key):
            out[key] = base.clone()
            continue
        out[key] = merge_tensors(method, base, [sd[key] for sd in expert_sds], name=key, seed=seed, **params)
    return out
