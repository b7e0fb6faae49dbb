"""Canonicalise a model against its base: undo per-head linear transforms and MLP hidden-unit permutations.

A fine-tune stays close to its base, so each head's projections are the base's plus a small task vector.
A function-preserving re-parameterisation (MergeLock, PaRaMS) multiplies them by invertible matrices
(per key/value group: A on Q, A^-T on K, B on V, B^-1 on O) and permutes MLP hidden units. Both are
undone here against the public base, as the Anchor-Guided Attack does (reference notes §1.6):

- attention: per group, the least-squares fits Q_c ~ A Q_0, K_c ~ C K_0, V_c ~ B V_0, O_c ~ O_0 Y
  (biases as an extra input column), and the canonical weights A^-1 Q_c, C^-1 K_c, B^-1 V_c, O_c Y^-1.
  The fit also absorbs the part of a genuine task vector that lies in the base head's row space, about
  d_head / d_model of it; a transformed block loses almost all of its distance to the base instead.
- MLP: a hidden unit whose weights (in rows, bias, out column) are no longer closest to the base unit at
  the same index was moved; when most are, the units are matched to the base's by the Hungarian algorithm.

The ratio ||canonical - base|| / ||candidate - base|| per block and the share of moved MLP units are the
evidence of re-parameterisation; the canonical weights are what the other probes then measure.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from guard.lock.layouts.base import AttentionWeights, HeadGeometry, augment_bias, split_bias
from guard.lock.mlp import MlpLayout, neuron_features, permute_block


@dataclasses.dataclass(frozen=True)
class BlockFit:
    block: str
    kind: str  # "attention" | "mlp"
    raw_distance: float  # ||candidate - base|| / ||base|| over the block
    canonical_distance: float  # the same after canonicalisation (attention) or unit matching (mlp)
    moved_units: float  # MLP only: share of hidden units not closest to the base unit at their index
    identifiable: bool = True  # False where the fit can absorb any change (head_dim too close to hidden)

    @property
    def kept(self) -> float:
        """Share of the block's distance to the base that survives canonicalisation (1: nothing undone)."""
        return self.canonical_distance / self.raw_distance if self.raw_distance > 0 else 1.0


def _f64(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.to(torch.float64)


def _left_fit(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Batched M minimising ||target - M source||_F; target/source [g, k, n] -> M [g, k, k]."""
    return torch.linalg.lstsq(source.transpose(1, 2), target.transpose(1, 2)).solution.transpose(1, 2)


def _distance(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
    diff = sum(float((a - b).pow(2).sum()) for a, b in pairs)
    ref = sum(float(b.pow(2).sum()) for _, b in pairs)
    return diff, ref


def canonicalise_attention(cand: AttentionWeights, base: AttentionWeights, geo: HeadGeometry, *,
                           block: str) -> tuple[AttentionWeights, BlockFit]:
    """Undo per-group linear transforms of one attention block against the base (float64 math)."""
    g, r, d = geo.num_kv_heads, geo.heads_per_group, geo.head_dim
    hidden = cand.q_w.shape[1]
    q_c, k_c, v_c = (augment_bias(_f64(w), _f64(b)) for w, b in ((cand.q_w, cand.q_b), (cand.k_w, cand.k_b),
                                                            (cand.v_w, cand.v_b)))
    q_0, k_0, v_0 = (augment_bias(_f64(w), _f64(b)) for w, b in ((base.q_w, base.q_b), (base.k_w, base.k_b),
                                                           (base.v_w, base.v_b)))
    n_in = q_c.shape[1]

    def group_rows(x: torch.Tensor, heads: int) -> torch.Tensor:  # [g*heads*d, n] -> [g, d, heads*n]
        return x.reshape(g, heads, d, n_in).permute(0, 2, 1, 3).reshape(g, d, heads * n_in)

    def ungroup_rows(x: torch.Tensor, heads: int) -> torch.Tensor:
        return x.reshape(g, d, heads, n_in).permute(0, 2, 1, 3).reshape(g * heads * d, n_in)

    a = _left_fit(group_rows(q_c, r), group_rows(q_0, r))
    c = _left_fit(group_rows(k_c, 1), group_rows(k_0, 1))
    b = _left_fit(group_rows(v_c, 1), group_rows(v_0, 1))
    q_new = ungroup_rows(torch.linalg.solve(a, group_rows(q_c, r)), r)
    k_new = ungroup_rows(torch.linalg.solve(c, group_rows(k_c, 1)), 1)
    v_new = ungroup_rows(torch.linalg.solve(b, group_rows(v_c, 1)), 1)
    # O: columns of head h are [n, d]; within a group every head shares Y: O_c[:, h] ~ O_0[:, h] Y.
    o_c, o_0 = _f64(cand.o_w), _f64(base.o_w)
    n_out = o_c.shape[0]
    o_c_g = o_c.reshape(n_out, g, r, d).permute(1, 2, 0, 3).reshape(g, r * n_out, d)
    o_0_g = o_0.reshape(n_out, g, r, d).permute(1, 2, 0, 3).reshape(g, r * n_out, d)
    y = torch.linalg.lstsq(o_0_g, o_c_g).solution  # [g, d, d]
    o_new = torch.linalg.solve(y.transpose(1, 2), o_c_g.transpose(1, 2)).transpose(1, 2)
    o_new = o_new.reshape(g, r, n_out, d).permute(2, 0, 1, 3).reshape(n_out, g * r * d)

    q_w, q_b = split_bias(q_new, cand.q_w, cand.q_b)
    k_w, k_b = split_bias(k_new, cand.k_w, cand.k_b)
    v_w, v_b = split_bias(v_new, cand.v_w, cand.v_b)
    canonical = AttentionWeights(q_w, k_w, v_w, o_new.to(cand.o_w.dtype), q_b, k_b, v_b)
    raw = _distance([(q_c, q_0), (k_c, k_0), (v_c, v_0), (o_c, o_0)])
    canon = _distance([(q_new, q_0), (k_new, k_0), (v_new, v_0), (o_new, o_0)])
    fit = BlockFit(block=block, kind="attention", raw_distance=(raw[0] / raw[1]) ** 0.5,
                   canonical_distance=(canon[0] / canon[1]) ** 0.5, moved_units=0.0,
                   identifiable=2 * d <= hidden)
    return canonical, fit


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-30)


def moved_unit_share(cand: torch.Tensor, base: torch.Tensor) -> float:
    """Share of hidden units (rows of [units, features]) whose nearest base unit (cosine) is another one."""
    own = (_unit(cand) * _unit(base)).sum(dim=1)
    moved = own < 0.5  # a fine-tune keeps a unit's cosine to its origin near 1; quick test first
    if not bool(moved.any()):
        return 0.0
    # Exact test for the suspicious units only: is some other base unit closer?
    sims = _unit(cand[moved]) @ _unit(base).T
    nearest = sims.argmax(dim=1)
    index = torch.nonzero(moved).flatten()
    return float((nearest != index).sum()) / cand.shape[0]


def match_units(cand: torch.Tensor, base: torch.Tensor) -> np.ndarray:
    """perm with cand[perm[j]] ~ base[j]: the Hungarian assignment on cosine similarity."""
    from scipy.optimize import linear_sum_assignment

    similarity = (_unit(base) @ _unit(cand).T).numpy()
    rows, cols = linear_sum_assignment(-similarity)
    return cols[np.argsort(rows)]


def canonicalise_mlp(layout: MlpLayout, cand: dict, base: dict, *, block: str,
                     permuted_share: float) -> tuple[dict, BlockFit]:
    """Put the candidate's hidden units back in the base's order when most of them moved."""
    feats_c = neuron_features(layout, cand)
    feats_0 = neuron_features(layout, base)
    moved = moved_unit_share(feats_c, feats_0)
    raw = float((feats_c - feats_0).norm() / feats_0.norm().clamp(min=1e-30))
    out, canon = cand, raw
    if moved >= permuted_share:
        perm = match_units(feats_c, feats_0)
        out = permute_block(layout, cand, perm)
        canon = float((feats_c[perm] - feats_0).norm() / feats_0.norm().clamp(min=1e-30))
    return out, BlockFit(block=block, kind="mlp", raw_distance=raw, canonical_distance=canon, moved_units=moved)
