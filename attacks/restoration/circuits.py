"""Merging in the invariant circuit space: needs neither the lock key nor the base as an anchor.

Per key/value group, the QK circuit  C_QK = stack_h [W_Q^h b_Q^h]^T [W_K b_K]  and the OV circuit
C_OV = stack_h W_O[:, h] [W_V b_V] are unchanged by any MergeLock transform (A^T A^-T = I, B^-1 B = I).
Merge those products with any tensor merge method, then factor each merged circuit back into
projections with a rank-head_dim truncated SVD (balanced factors). Everything outside attention merges
as usual. Exact only for layouts where nothing acts on q or k between projection and score (no RoPE,
no qk-norm): with RoPE the product W_Q^T W_K is not the circuit the model computes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from guard.errors import InputError
from guard.lock.layouts.base import AttentionWeights
from guard.lock.plan import plan_lock
from guard.merge import merge_tensors


def _aug(w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    w = w.to(torch.float64)
    return w if b is None else torch.cat([w, b.to(torch.float64).unsqueeze(-1)], dim=-1)


def circuits(w: AttentionWeights, *, g: int, r: int, d: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per group: the stacked QK circuit [r*(in+1), in+1] and the stacked OV circuit [r*out, in+1]."""
    q = _aug(w.q_w, w.q_b).reshape(g, r, d, -1)
    k = _aug(w.k_w, w.k_b).reshape(g, d, -1)
    v = _aug(w.v_w, w.v_b).reshape(g, d, -1)
    o = w.o_w.to(torch.float64).reshape(-1, g, r, d)
    qk = [torch.cat([q[i, h].T @ k[i] for h in range(r)], 0) for i in range(g)]
    ov = [torch.cat([o[:, i, h] @ v[i] for h in range(r)], 0) for i in range(g)]
    return qk, ov


def _factor(circuit: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    u, s, vh = torch.linalg.svd(circuit, full_matrices=False)
    root = s[:d].sqrt()
    return u[:, :d] * root, root.unsqueeze(1) * vh[:d]


def refactor(qk: list[torch.Tensor], ov: list[torch.Tensor], like: AttentionWeights, *, g: int, r: int,
             d: int) -> AttentionWeights:
    q_rows, k_rows, v_rows, o_cols = [], [], [], []
    for i in range(g):
        left, right = _factor(qk[i], d)  # left: [r*(in+1), d] -> per head Q_h^T
        q_rows += [block.T for block in left.reshape(r, -1, d)]
        k_rows.append(right)
        left, right = _factor(ov[i], d)  # left: [r*out, d] -> per head O_h
        o_cols += list(left.reshape(r, -1, d))
        v_rows.append(right)

    def split(rows: list[torch.Tensor], w: torch.Tensor, b: torch.Tensor | None):
        stacked = torch.cat(rows, 0)
        if b is None:
            return stacked.to(w.dtype), None
        return stacked[:, :-1].contiguous().to(w.dtype), stacked[:, -1].contiguous().to(b.dtype)

    q_w, q_b = split(q_rows, like.q_w, like.q_b)
    k_w, k_b = split(k_rows, like.k_w, like.k_b)
    v_w, v_b = split(v_rows, like.v_w, like.v_b)
    o_w = torch.cat(o_cols, 1).to(like.o_w.dtype)
    return AttentionWeights(q_w, k_w, v_w, o_w, q_b, k_b, v_b)


def circuit_merge(method: str, base: Mapping[str, torch.Tensor], experts: Sequence[Mapping[str, torch.Tensor]], *,
                  config: Any, exclude=None, seed: int = 0, **params) -> dict[str, torch.Tensor]:
    """Merge `experts` into `base`: attention in circuit space, everything else tensor by tensor."""
    from guard.merge import merge_state_dicts

    plan = plan_lock(base.keys(), config)
    geo, layout = plan.geometry, plan.layout
    if geo.rotary_dims or geo.qk_norm:
        raise InputError("circuit-space merging is exact only without RoPE and qk-norm", rule="attack-circuit")
    g, r, d = geo.num_kv_heads, geo.heads_per_group, geo.head_dim
    attention = set(plan.block_of())
    merged = merge_state_dicts(method, {k: v for k, v in base.items() if k not in attention},
                               [{k: v for k, v in e.items() if k not in attention} for e in experts],
                               exclude=exclude, seed=seed, **params)
    for block, parts in plan.blocks.items():
        def split(state):
            return layout.split({rk: state[n] for rk, n in parts.items()}, geo)

        base_w = split(base)
        base_qk, base_ov = circuits(base_w, g=g, r=r, d=d)
        expert_circuits = [circuits(split(e), g=g, r=r, d=d) for e in experts]
        qk = [merge_tensors(method, base_qk[i], [c[0][i] for c in expert_circuits], name=f"{block}.qk{i}", seed=seed,
                            **params) for i in range(g)]
        ov = [merge_tensors(method, base_ov[i], [c[1][i] for c in expert_circuits], name=f"{block}.ov{i}", seed=seed,
                            **params) for i in range(g)]
        merged.update({parts[rk]: t for rk, t in layout.join(refactor(qk, ov, base_w, g=g, r=r, d=d), geo).items()})
    return merged
