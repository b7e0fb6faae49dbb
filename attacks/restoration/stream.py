"""Undo MergeLock's residual-stream transform without the key: orthogonal Procrustes against the public base.

The lock maps the stream h to Q h. Some tensors carry nothing but Q: the token, position and patch
embeddings, the class token, the output biases of attention and MLP (and, once the norm gains the
protected file keeps are multiplied back in, LayerNorm biases). A fine-tune leaves them close to the
base's, so Q^T = argmin over orthogonal R of ||B R - P||_F (rows of the base B against the protected P)
is the Procrustes solution U V^T of B^T P = U S V^T. Where those rows do not determine Q (a small ViT has
fewer embedding rows than stream dims), the MLP supplies many more: each protected hidden unit's input
row (times its norm's gain) and output column are Q-rotated copies of a base unit's, once the units are
matched (Hungarian, as attacks/restoration/neurons.py does against the lock's MLP permutation). So the
attack alternates: Procrustes, match units in the un-rotated model, Procrustes on embeddings plus matched
units, a few rounds. The public metadata says whether Q is a rotation or a (signed) permutation; for a
permutation the estimate is rounded to the nearest signed permutation (Hungarian on |Q|).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from attacks.restoration.neurons import match_units
from guard.lock.mlp import neuron_features
from guard.lock.plan import LockPlan, plan_lock
from guard.lock.residual import ResidualApplier, ResidualTransform

ROUNDS = 3


def _rows(tensor: torch.Tensor, axis: int, dim: int) -> torch.Tensor:
    return tensor.to(torch.float64).movedim(axis % tensor.ndim, -1).reshape(-1, dim)


def _anchor_rows(plan: LockPlan, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Every vector that only Q touches: stream-only tensors and gain-normalised LayerNorm biases."""
    residual = plan.residual
    others = set(plan.block_of()) | (set(plan.mlp.block_of()) if plan.mlp is not None else set())
    rows = []
    for name, (axes, norm) in sorted(residual.tensors.items()):
        if norm is None and name not in others and len(axes) == 1:
            rows.append(_rows(state[name], axes[0], residual.dim))
    offset = residual.layout.gain_offset
    for prefix, bias in sorted(residual.biases.items()):  # b' = diag(g') Q diag(1/g) b, g' known
        gain = state[residual.gains[prefix]].to(torch.float64) + offset
        rows.append((state[bias].to(torch.float64) / gain.where(gain != 0, torch.ones_like(gain)))[None, :])
    return torch.cat(rows)


def _unit_rows(plan: LockPlan, state: Mapping[str, torch.Tensor], block: str, order=None) -> torch.Tensor:
    """One MLP block's per-unit stream vectors: input rows times the feeding norm's gain (which undoes the
    fold's unfold, leaving Q), and output columns; [2 * units, d], units reordered by `order`."""
    residual, parts = plan.residual, plan.mlp.blocks[block]
    offset = residual.layout.gain_offset
    rows = []
    for (proj, kind), name in sorted(parts.items()):
        if name not in residual.tensors:
            continue
        axes, norm = residual.tensors[name]
        vectors = _rows(state[name], axes[0], residual.dim)
        if norm is not None:
            vectors = vectors * (state[residual.gains[norm]].to(torch.float64) + offset)
        if plan.mlp.layout.roles[proj] == "in_pair":
            vectors = vectors.reshape(2, -1, residual.dim)
            vectors = torch.cat([v[order] if order is not None else v for v in vectors])
        elif order is not None:
            vectors = vectors[order]
        rows.append(vectors)
    return torch.cat(rows)


def procrustes(base_rows: torch.Tensor, protected_rows: torch.Tensor) -> np.ndarray:
    """Q (orthogonal) minimising ||base_rows Q^T - protected_rows||_F."""
    u, _, vh = torch.linalg.svd(base_rows.T @ protected_rows)
    return (u @ vh).T.numpy()


def nearest_signed_permutation(matrix: np.ndarray) -> ResidualTransform:
    rows, cols = linear_sum_assignment(-np.abs(matrix))
    perm = np.empty(len(rows), dtype=np.int64)
    perm[rows] = cols  # (Q x)_i = sign_i x_perm[i]
    signs = np.sign(matrix[rows, cols])
    return ResidualTransform(len(perm), perm=perm, signs=np.where(signs == 0, 1.0, signs))


def estimate_stream_map(protected: Mapping[str, torch.Tensor], base: Mapping[str, torch.Tensor], *, config: Any,
                        form: str, rounds: int = ROUNDS) -> ResidualTransform:
    """The attacker's estimate of the lock's residual transform (form: the public "residual_form")."""
    plan = plan_lock(protected.keys(), config, mlp=True, residual="rotation" if form == "rotation" else "permutation")
    anchor_p, anchor_b = _anchor_rows(plan, protected), _anchor_rows(plan, base)
    scale = anchor_b.norm() / max(anchor_b.shape[0], 1) ** 0.5
    estimate = procrustes(anchor_b, anchor_p)
    for _ in range(rounds):
        undone = undo_stream(protected, config=config, transform=ResidualTransform(plan.residual.dim, matrix=estimate),
                             plan=plan)
        pairs_p, pairs_b = [anchor_p / scale], [anchor_b / scale]
        for block, parts in plan.mlp.blocks.items():
            mine = neuron_features(plan.mlp.layout, {p: undone[n] for p, n in parts.items()})
            theirs = neuron_features(plan.mlp.layout, {p: base[n] for p, n in parts.items()})
            order = match_units(mine, theirs)  # protected unit order[j] ~ base unit j
            unit_p, unit_b = _unit_rows(plan, protected, block, order), _unit_rows(plan, base, block)
            unit_scale = unit_b.norm() / unit_b.shape[0] ** 0.5
            pairs_p.append(unit_p / unit_scale)
            pairs_b.append(unit_b / unit_scale)
        estimate = procrustes(torch.cat(pairs_b), torch.cat(pairs_p))
    if form == "rotation":
        return ResidualTransform(plan.residual.dim, matrix=estimate)
    transform = nearest_signed_permutation(estimate)
    if form == "permutation":
        transform = ResidualTransform(transform.dim, perm=transform.perm, signs=np.ones(transform.dim))
    return transform


def undo_stream(protected: Mapping[str, torch.Tensor], *, config: Any, transform: ResidualTransform,
                plan: LockPlan | None = None) -> dict[str, torch.Tensor]:
    """`protected` with `transform` undone the way unlock undoes the real one (the gains the protected
    file keeps stand in for the originals)."""
    plan = plan or plan_lock(protected.keys(), config, mlp=True, residual="rotation")
    residual = plan.residual
    applier = ResidualApplier(residual, transform, {n: protected[n] for n in residual.norm_names()}, inverse=True,
                              compute_dtype=torch.float64)
    out = dict(protected)
    out.update({name: applier(name, protected[name]) for name in residual.names()})
    return out


def restore_stream(protected: Mapping[str, torch.Tensor], base: Mapping[str, torch.Tensor], *, config: Any,
                   form: str) -> dict[str, torch.Tensor]:
    """Estimate the residual transform against the base and undo it (nothing to do for form "none")."""
    if form == "none":
        return dict(protected)
    transform = estimate_stream_map(protected, base, config=config, form=form)
    plan = plan_lock(protected.keys(), config, mlp=True, residual="rotation" if form == "rotation" else "permutation")
    return undo_stream(protected, config=config, transform=transform, plan=plan)
