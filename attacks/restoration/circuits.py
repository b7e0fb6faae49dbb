"""Merging in the invariant circuit space: needs no lock key, only the base every task-vector merge uses.

Per key/value group (inputs augmented with a constant 1 so that biases ride along):
- OV: C_OV = stack_h W_O[:, h] [W_V b_V] is unchanged by B (B^-1 B = I).
- QK without RoPE: C_QK = stack_h [W_Q^h b_Q^h]^T [W_K b_K] is unchanged by A (A^T A^-T = I).
- QK with RoPE: in each rotary plane p, write a query row pair as one complex row q_p = Q[i] + i Q[j]
  (RoPE multiplies it by e^{i m w}); MergeLock's scaled rotation multiplies q_p by z and k_p by 1/conj(z),
  so C_p = stack_h conj(q_p^h) k_p^T is invariant, and the plane's scores are Re(e^{i(n-m)w} x^T C_p y).
  Non-rotary dims (partial rotary) use the real product as above.
Merge the circuits with any tensor merge method (complex ones as [real, imag] pairs), factor them back
with a truncated SVD (rank head_dim, 1 per plane), and merge everything outside attention as usual.
QK-norm models are refused: the per-head norm sits between projection and score.
MLP hidden units permuted by the lock are first matched to the base's (any same-lineage model would
do as the reference; no key is needed), see attacks/restoration/neurons.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from guard.errors import InputError
from guard.lock.layouts.base import AttentionWeights, HeadGeometry
from guard.lock.plan import plan_lock
from guard.lock.sampling import rotary_pairs
from attacks.restoration.neurons import align_mlp_neurons
from guard.merge import merge_tensors


def _aug(w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    w = w.to(torch.float64)
    return w if b is None else torch.cat([w, b.to(torch.float64).unsqueeze(-1)], dim=-1)


def _planes(geo: HeadGeometry) -> tuple[list[tuple[int, int]], list[int]]:
    pairs = rotary_pairs(geo.rotary_dims, geo.rotary_style) if geo.rotary_dims else []
    return pairs, list(range(geo.rotary_dims, geo.head_dim))


def circuits(w: AttentionWeights, geo: HeadGeometry) -> list[torch.Tensor]:
    """Every circuit of a block, in a fixed order: per group, one complex circuit per rotary plane, the
    real QK circuit of the non-rotary dims (if any), then the OV circuit."""
    g, r, d = geo.num_kv_heads, geo.heads_per_group, geo.head_dim
    pairs, rest = _planes(geo)
    q = _aug(w.q_w, w.q_b).reshape(g, r, d, -1)
    k = _aug(w.k_w, w.k_b).reshape(g, d, -1)
    v = _aug(w.v_w, w.v_b).reshape(g, d, -1)
    o = w.o_w.to(torch.float64).reshape(-1, g, r, d)
    out = []
    for i in range(g):
        for a, b in pairs:
            k_p = torch.complex(k[i, a], k[i, b])
            out.append(torch.cat([torch.outer(torch.complex(q[i, h, a], -q[i, h, b]), k_p) for h in range(r)], 0))
        if rest:
            out.append(torch.cat([q[i, h, rest].T @ k[i, rest] for h in range(r)], 0))
        out.append(torch.cat([o[:, i, h] @ v[i] for h in range(r)], 0))
    return out


def _factor(circuit: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    u, s, vh = torch.linalg.svd(circuit, full_matrices=False)
    u, vh = u[:, :rank], vh[:rank]
    # Singular vectors are defined up to a sign (a unit phase when complex): fix it so that each left
    # vector's largest entry is real and positive, so circuits equal up to rounding factor alike.
    pivot = u.gather(0, u.abs().argmax(dim=0, keepdim=True))
    phase = pivot / pivot.abs().clamp(min=1e-300)
    u, vh = u * phase.conj(), vh * phase.reshape(-1, 1)
    root = s[:rank].sqrt().to(circuit.dtype)
    return u * root, root.unsqueeze(1) * vh


def refactor(merged: list[torch.Tensor], like: AttentionWeights, geo: HeadGeometry) -> AttentionWeights:
    g, r, d = geo.num_kv_heads, geo.heads_per_group, geo.head_dim
    pairs, rest = _planes(geo)
    n_in = merged[0].shape[-1]
    q = torch.zeros(g, r, d, n_in, dtype=torch.float64)
    k = torch.zeros(g, d, n_in, dtype=torch.float64)
    v_rows, o_cols = [], []
    items = iter(merged)
    for i in range(g):
        for a, b in pairs:
            left, right = _factor(next(items), 1)  # left = stack_h conj(q_p^h), right = k_p^T
            q_conj = left[:, 0].reshape(r, n_in)
            q[i, :, a], q[i, :, b] = q_conj.real, -q_conj.imag
            k[i, a], k[i, b] = right[0].real, right[0].imag
        if rest:
            left, right = _factor(next(items), len(rest))  # left: stack_h Q_h[rest]^T, right: K[rest]
            q[i][:, rest] = left.reshape(r, n_in, len(rest)).transpose(1, 2)
            k[i, rest] = right
        left, right = _factor(next(items), d)  # left: stack_h O_h, right: [W_V b_V]
        o_cols += list(left.reshape(r, -1, d))
        v_rows.append(right)

    def split(stacked: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None):
        if b is None:
            return stacked.to(w.dtype), None
        return stacked[:, :-1].contiguous().to(w.dtype), stacked[:, -1].contiguous().to(b.dtype)

    q_w, q_b = split(q.reshape(g * r * d, n_in), like.q_w, like.q_b)
    k_w, k_b = split(k.reshape(g * d, n_in), like.k_w, like.k_b)
    v_w, v_b = split(torch.cat(v_rows, 0), like.v_w, like.v_b)
    o_w = torch.cat(o_cols, 1).to(like.o_w.dtype)
    return AttentionWeights(q_w, k_w, v_w, o_w, q_b, k_b, v_b)


def _merge_circuit(method: str, base: torch.Tensor, experts: list[torch.Tensor], **kwargs) -> torch.Tensor:
    if not base.is_complex():
        return merge_tensors(method, base, experts, **kwargs)
    merged = merge_tensors(method, torch.view_as_real(base), [torch.view_as_real(e) for e in experts], **kwargs)
    return torch.view_as_complex(merged.contiguous())


def circuit_merge(method: str, base: Mapping[str, torch.Tensor], experts: Sequence[Mapping[str, torch.Tensor]], *,
                  config: Any, exclude=None, seed: int = 0, residual_forms: Sequence[str] | None = None,
                  **params) -> dict[str, torch.Tensor]:
    """Merge `experts` into `base`: attention in circuit space, everything else tensor by tensor.
    residual_forms: per expert, the public `residual_form` of its lock; a transformed stream is first
    brought back to the base's basis (Procrustes, attacks/restoration/stream.py): circuits live in it."""
    from attacks.restoration.stream import restore_stream
    from guard.merge import merge_state_dicts

    if residual_forms is not None:
        experts = [restore_stream(e, base, config=config, form=f) for e, f in zip(experts, residual_forms, strict=True)]

    plan = plan_lock(base.keys(), config)
    geo, layout = plan.geometry, plan.layout
    if geo.qk_norm:
        raise InputError("circuit-space merging is not exact with qk-norm (the norm sits between projection "
                         "and score)", rule="attack-circuit")
    attention = set(plan.block_of())
    # MergeLock's MLP hidden-unit permutation: line every expert's units up with the base's first
    # (Hungarian matching, attacks/restoration/neurons.py); the base only serves as a common reference.
    experts = [align_mlp_neurons(e, base, config=config) for e in experts]
    merged = merge_state_dicts(method, {k: v for k, v in base.items() if k not in attention},
                               [{k: v for k, v in e.items() if k not in attention} for e in experts],
                               exclude=exclude, seed=seed, **params)
    for block, parts in plan.blocks.items():
        def split(state):
            return layout.split({rk: state[n] for rk, n in parts.items()}, geo)

        base_w = split(base)
        base_circuits = circuits(base_w, geo)
        expert_circuits = [circuits(split(e), geo) for e in experts]
        combined = [_merge_circuit(method, c, [e[n] for e in expert_circuits], name=f"{block}.circuit{n}", seed=seed,
                                   **params) for n, c in enumerate(base_circuits)]
        merged.update({parts[rk]: t for rk, t in layout.join(refactor(combined, base_w, geo), geo).items()})
    return merged
