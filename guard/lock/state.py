"""MergeLock on tensors in memory: one attention block at a time, or a whole state dict.

These are pure functions (no I/O); the streaming driver in `guard.lock.protect` feeds them one block
at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from guard.lock.keys import RunKey
from guard.lock.mlp import lock_mlp_block
from guard.lock.plan import LockPlan, check_shapes, plan_lock
from guard.lock.residual import ResidualApplier, check_residual_shapes, derive_residual
from guard.lock.transform import apply_transforms, derive_transforms

DEFAULT_BOUND = 8.0  # singular values in [1/8, 8]: condition number <= 64 (see docs/lock.md for the choice)
# 16-bit weights: rounding A W to 8 (bf16) or 11 (fp16) mantissa bits is amplified by up to the condition
# number; at bound 8 a 9-layer bf16 model of Llama-2-7B's shapes failed the self-check (9.2e-2 > 5e-2),
# at bound 4 it passed (4.5e-2). The residual transform keeps merges broken at 4 (docs/lock.md).
DEFAULT_BOUND_16BIT = 4.0


def default_bound(dtype_counts: Mapping[str, int]) -> float:
    """The default bound for a checkpoint: 4 if most of its floating-point elements are 16-bit, else 8."""
    floats = {k: v for k, v in dtype_counts.items() if k in ("F16", "BF16", "F32", "F64")}
    dominant = max(floats, key=floats.get) if floats else "F32"
    return DEFAULT_BOUND_16BIT if dominant in ("F16", "BF16") else DEFAULT_BOUND
DEFAULT_RESIDUAL = "permutation"  # the residual-stream transform's form (residual.py; docs/lock.md for the choice)


def lock_block(plan: LockPlan, block: str, tensors: Mapping[str, torch.Tensor], *, key: RunKey,
               bound: float = DEFAULT_BOUND, inverse: bool = False, path=None) -> dict[str, torch.Tensor]:
    """Transform (or, with inverse=True, restore) the tensors of one attention block.
    `tensors` maps tensor names to values and must hold every tensor of `block`."""
    names = plan.blocks[block]
    parts = {rk: tensors[name] for rk, name in names.items()}
    check_shapes(plan, block, {rk: tuple(t.shape) for rk, t in parts.items()}, path=path)
    transforms = derive_transforms(key, block=block, geometry=plan.geometry, bound=bound)
    if inverse:
        transforms = [t.inverted() for t in transforms]
    layout = plan.layout
    # float32 arithmetic is enough to protect (see transform.py); unlock (and float64 models) use float64.
    wide = inverse or any(t.dtype == torch.float64 for t in parts.values())
    compute_dtype = torch.float64 if wide else torch.float32
    split = layout.split(parts, plan.geometry)
    locked = layout.join(apply_transforms(split, plan.geometry, transforms, compute_dtype=compute_dtype), plan.geometry)
    return {names[rk]: tensor for rk, tensor in locked.items()}


def residual_applier(plan: LockPlan, norms: Mapping[str, torch.Tensor], *, key: RunKey, inverse: bool,
                     path=None) -> ResidualApplier | None:
    """The residual transform of `plan` (None if it has none), given the norm tensors it reads first."""
    if plan.residual is None:
        return None
    residual = plan.residual
    transform = derive_residual(key, dim=residual.dim, form=residual.form, layer_norm=residual.layout.norm_kind == "layer")
    wide = inverse or any(t.dtype == torch.float64 for t in norms.values())
    return ResidualApplier(residual, transform, norms, inverse=inverse,
                           compute_dtype=torch.float64 if wide else torch.float32, path=path)


def protect_state(state: Mapping[str, torch.Tensor], *, config: Any, key: RunKey, bound: float = DEFAULT_BOUND,
                  inverse: bool = False, mlp_permute: bool = True, residual: str = DEFAULT_RESIDUAL) -> dict[str, torch.Tensor]:
    """Return a new state dict with every attention block locked (or unlocked), with mlp_permute every
    MLP's hidden units permuted (or put back), and with residual ("rotation", "permutation") the residual
    stream transformed (or restored); other tensors shared."""
    plan = plan_lock(state.keys(), config, mlp=mlp_permute, residual=residual)
    out = dict(state)
    applier = None
    if plan.residual is not None:
        check_residual_shapes(plan.residual, {k: tuple(v.shape) for k, v in state.items()})
        applier = residual_applier(plan, {n: state[n] for n in plan.residual.norm_names()}, key=key,
                                   inverse=inverse)
    if applier is not None and inverse:  # undo in the reverse order of protect
        out.update({name: applier(name, out[name]) for name in plan.residual.names()})
    source = dict(out)
    for block in plan.blocks:
        out.update(lock_block(plan, block, source, key=key, bound=bound, inverse=inverse))
    if plan.mlp is not None:
        for block in plan.mlp.blocks:
            out.update(lock_mlp_block(plan.mlp, block, source, key=key, inverse=inverse))
    if applier is not None and not inverse:
        out.update({name: applier(name, out[name]) for name in plan.residual.names()})
    return out
