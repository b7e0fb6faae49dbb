"""The MergeLock transform of one attention block, and its inverse.

Per key/value group g (one per head without GQA), with A_g, B_g derived from the lock key:
  W_Q^h <- A_g W_Q^h, b_Q^h <- A_g b_Q^h          for every query head h in g
  W_K^g <- A_g^-T W_K^g, b_K^g <- A_g^-T b_K^g     so q'.k' = q.k for every pair of tokens
  W_V^g <- B_g W_V^g, b_V^g <- B_g b_V^g
  W_O[:, h] <- W_O[:, h] B_g^-1                     for every query head h in g; b_O unchanged
Undoing it is the same map with (A^-1, B^-1). The matrices are sampled in float64; they are applied
in `compute_dtype` (float32 when protecting: one rounding of a <= 256-term dot product, far inside the
1e-4 self-check bound, measured by `python -m benchmarks.protect --precision`; float64 when unlocking,
so the round trip adds no error beyond the stored rounding) and stored in the tensor's own dtype.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from guard.lock.keys import RunKey
from guard.lock.layouts.base import AttentionWeights, HeadGeometry
from guard.lock.sampling import SeedStream, qk_transform, well_conditioned


@dataclasses.dataclass(frozen=True)
class GroupTransform:
    """The matrices of one key/value group: a (QK) and b (VO) with their inverses, float64."""

    a: np.ndarray
    a_inv: np.ndarray
    b: np.ndarray
    b_inv: np.ndarray

    def inverted(self) -> GroupTransform:
        return GroupTransform(self.a_inv, self.a, self.b_inv, self.b)


def derive_transforms(key: RunKey, *, block: str, geometry: HeadGeometry, bound: float) -> list[GroupTransform]:
    """One GroupTransform per key/value group of `block`, deterministic in (key, block, group)."""
    out = []
    for group in range(geometry.num_kv_heads):
        a, a_inv = qk_transform(SeedStream(key.derive_seed(block=block, group=group, branch="qk")),
                                geometry.qk_form, bound)
        b, b_inv = well_conditioned(SeedStream(key.derive_seed(block=block, group=group, branch="vo")),
                                    geometry.head_dim, bound)
        out.append(GroupTransform(a, a_inv, b, b_inv))
    return out


def apply_transforms(weights: AttentionWeights, geometry: HeadGeometry, transforms: list[GroupTransform], *,
                     compute_dtype: torch.dtype = torch.float64) -> AttentionWeights:
    """Apply one GroupTransform per key/value group; pass `[t.inverted() for t in ...]` to undo."""
    g, r, d = geometry.num_kv_heads, geometry.heads_per_group, geometry.head_dim

    def stacked(mats) -> torch.Tensor:
        return torch.from_numpy(np.stack(mats)).to(compute_dtype)

    a, a_inv_t = stacked([t.a for t in transforms]), stacked([t.a_inv.T for t in transforms])
    b, b_inv = stacked([t.b for t in transforms]), stacked([t.b_inv for t in transforms])

    def rows(w: torch.Tensor | None, mats: torch.Tensor, heads: int) -> torch.Tensor | None:
        # w: [g * heads * d, ...] -> left-multiply each head's d rows by its group's matrix (one batched matmul).
        if w is None:
            return None
        x = w.to(compute_dtype).reshape(g, heads, d, -1)
        y = torch.matmul(mats[:, None], x)  # [g, 1, d, d] @ [g, heads, d, k]
        return y.reshape(w.shape).to(w.dtype)

    # W_O[:, head h] <- W_O[:, h] B_g^-1: one [n * r, d] @ [d, d] product per group. (Group-major first:
    # broadcasting b_inv over the n rows would materialise n copies of it.)
    n = weights.o_w.shape[0]
    o = weights.o_w.to(compute_dtype).reshape(n, g, r, d).permute(1, 0, 2, 3).reshape(g, n * r, d)
    o = torch.bmm(o, b_inv).reshape(g, n, r, d).permute(1, 0, 2, 3).reshape(weights.o_w.shape)
    o = o.to(weights.o_w.dtype)
    return AttentionWeights(
        q_w=rows(weights.q_w, a, r), k_w=rows(weights.k_w, a_inv_t, 1), v_w=rows(weights.v_w, b, 1), o_w=o,
        q_b=rows(weights.q_b, a, r), k_b=rows(weights.k_b, a_inv_t, 1), v_b=rows(weights.v_b, b, 1),
    )
