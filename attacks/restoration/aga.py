"""Anchor-Guided Attack (AGA, arXiv 2606.30360) against MergeLock: undo the per-head transforms by
least squares against the public base model, with Hungarian matching for permuted heads.

A protected fine-tune is still dominated by the public base, W' = A W_ft = A (W_0 + tau) with ||tau|| small,
so per head (or key/value group) Â = argmin_A ||W' - A W_0||_F recovers A up to a term of order ||tau||.
Each side is estimated separately (Â from Q, Ĉ ~ A^-T from K, B̂ from V, Ŷ ~ B^-1 from O), biases ride
along as an extra input column. Heads may additionally have been permuted (a function-preserving
symmetry); the attack then matches each protected head to the base head it fits best (Hungarian
algorithm on the least-squares residuals) before fitting. MergeLock's MLP hidden-unit permutation is
undone first, by Hungarian matching of the units against the base (attacks/restoration/neurons.py), and
before that the residual-stream transform, by orthogonal Procrustes against the base's embeddings and
matched MLP units (attacks/restoration/stream.py).
On RoPE models the QK side is fitted in the only form the lock may use there (one complex scale per
rotary plane and key/value group, restore_rotary_qk), which loses much less of the fine-tune than a
general per-head fit (cosine to the true attention task vector 0.92-0.93 against 0.75-0.76 on the zoo LM).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from scipy.optimize import linear_sum_assignment

from guard.lock.layouts.base import AttentionWeights, augment_bias, split_bias
from attacks.restoration.neurons import align_mlp_neurons
from guard.lock.plan import LockPlan, plan_lock
from guard.lock.sampling import rotary_pairs


def fit_left(protected: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """X minimising ||protected - X base||_F (both [d, n])."""
    return torch.linalg.lstsq(base.T, protected.T).solution.T


def fit_right(protected: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Y minimising ||protected - base Y||_F (both [n, d])."""
    return torch.linalg.lstsq(base, protected).solution


def _residual(protected: torch.Tensor, base: torch.Tensor) -> float:
    return float((protected - fit_left(protected, base) @ base).norm() / protected.norm())


def _match(protected: list[tuple[torch.Tensor, ...]], base: list[tuple[torch.Tensor, ...]]) -> list[int]:
    """perm[i] = the base index protected item i fits best: Hungarian assignment on the summed
    least-squares residuals of its parts (each part has its own transform)."""
    cost = torch.tensor([[sum(_residual(pp, bb) for pp, bb in zip(p, b)) for b in base] for p in protected])
    rows, cols = linear_sum_assignment(cost.numpy())
    return [int(c) for _, c in sorted(zip(rows, cols))]


def _plane_scale(protected: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Per rotary plane, the complex z minimising ||protected - z base|| (both [..., planes, n] complex)."""
    dims = [i for i in range(protected.ndim) if i != protected.ndim - 2]
    return (base.conj() * protected).sum(dim=dims) / (base.abs() ** 2).sum(dim=dims).clamp(min=1e-300)


def restore_rotary_qk(queries: torch.Tensor, base_queries: torch.Tensor, keys: torch.Tensor, base_keys: torch.Tensor,
                      pairs: list[tuple[int, int]], rest: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Undo a RoPE-commuting QK transform knowing its form (public: the lock's design is no secret).

    In rotary plane (a, b) the lock may only use a scaled rotation, i.e. multiply the complex query row
    q_a + i q_b of every head of the group by one z and the key row by 1/conj(z). Fitting that one
    complex number per plane (from Q and K, combined so that q.k is kept exactly) leaves far less room
    than a general d_h x d_h least-squares fit, which also absorbs part of the fine-tune. Non-rotary
    dims (partial rotary) get the general fit. queries: [heads, d, n], keys: [d, n] (inputs augmented)."""
    a_idx, b_idx = [a for a, _ in pairs], [b for _, b in pairs]
    cq = torch.complex(queries[:, a_idx], queries[:, b_idx])
    ck = torch.complex(keys[a_idx], keys[b_idx])
    z_q = _plane_scale(cq, torch.complex(base_queries[:, a_idx], base_queries[:, b_idx]))
    z_k = 1.0 / _plane_scale(ck, torch.complex(base_keys[a_idx], base_keys[b_idx])).conj()
    # One z for both sides: geometric mean of the magnitudes, mean direction of the phases.
    z = (z_q.abs() * z_k.abs()).sqrt() * torch.sgn(torch.sgn(z_q) + torch.sgn(z_k))
    rq, rk = cq / z[:, None], ck * z.conj()[:, None]
    q_out, k_out = queries.clone(), keys.clone()
    q_out[:, a_idx], q_out[:, b_idx] = rq.real, rq.imag
    k_out[a_idx], k_out[b_idx] = rk.real, rk.imag
    if rest:
        a_hat = fit_left(torch.cat(list(queries[:, rest]), 1), torch.cat(list(base_queries[:, rest]), 1))
        q_out[:, rest] = torch.linalg.solve(a_hat, queries[:, rest])
        k_out[rest] = torch.linalg.solve(fit_left(keys[rest], base_keys[rest]), keys[rest])
    return q_out, k_out


def _heads(x: torch.Tensor, n: int) -> list[torch.Tensor]:
    return list(x.reshape(n, -1, x.shape[-1]))


def restore_block(protected: AttentionWeights, base: AttentionWeights, *, num_kv_heads: int,
                  heads_per_group: int, head_dim: int, match_heads: bool = True,
                  rotary: tuple[list[tuple[int, int]], list[int]] | None = None) -> AttentionWeights:
    """Undo the lock on one block. `rotary` = (rotary planes, non-rotary dims) switches QK to the
    structured fit of restore_rotary_qk (RoPE models); without it QK gets the general fit."""
    g, r, d = num_kv_heads, heads_per_group, head_dim
    f64 = lambda t: None if t is None else t.to(torch.float64)  # noqa: E731
    pq, pk, pv = augment_bias(f64(protected.q_w), f64(protected.q_b)), augment_bias(f64(protected.k_w), f64(protected.k_b)), \
        augment_bias(f64(protected.v_w), f64(protected.v_b))
    bq, bk, bv = augment_bias(f64(base.q_w), f64(base.q_b)), augment_bias(f64(base.k_w), f64(base.k_b)), \
        augment_bias(f64(base.v_w), f64(base.v_b))
    po = f64(protected.o_w).reshape(-1, g, r, d)
    bo = f64(base.o_w).reshape(-1, g, r, d)
    pk_g, pv_g, bk_g, bv_g = _heads(pk, g), _heads(pv, g), _heads(bk, g), _heads(bv, g)
    pq_h, bq_h = _heads(pq, g * r), _heads(bq, g * r)

    group_perm = _match(list(zip(pk_g, pv_g)), list(zip(bk_g, bv_g))) if match_heads else list(range(g))
    out_q, out_k, out_v = [None] * (g * r), [None] * g, [None] * g
    out_o = torch.empty_like(bo)
    for i, j in enumerate(group_perm):  # protected group i sits where base group j was
        queries = [pq_h[i * r + t] for t in range(r)]
        base_queries = [bq_h[j * r + t] for t in range(r)]
        head_perm = _match([(q,) for q in queries], [(q,) for q in base_queries]) if match_heads and r > 1 \
            else list(range(r))
        ordered = [None] * r
        for t, u in enumerate(head_perm):
            ordered[u] = t
        if rotary is not None:
            q_restored, out_k[j] = restore_rotary_qk(torch.stack([queries[t] for t in ordered]),
                                                     torch.stack(base_queries), pk_g[i], bk_g[j], *rotary)
            for u in range(r):
                out_q[j * r + u] = q_restored[u]
        else:
            a_hat = fit_left(torch.cat([queries[t] for t in ordered], 1), torch.cat(base_queries, 1))
            for u, t in enumerate(ordered):
                out_q[j * r + u] = torch.linalg.solve(a_hat, queries[t])
            out_k[j] = torch.linalg.solve(fit_left(pk_g[i], bk_g[j]), pk_g[i])
        b_hat = fit_left(pv_g[i], bv_g[j])
        o_prot = torch.cat([po[:, i, t] for t in ordered], 0)
        y_hat = fit_right(o_prot, torch.cat([bo[:, j, u] for u in range(r)], 0))
        for u, t in enumerate(ordered):
            out_o[:, j, u] = po[:, i, t] @ torch.linalg.inv(y_hat)
        out_v[j] = torch.linalg.solve(b_hat, pv_g[i])

    q_w, q_b = split_bias(torch.cat(out_q, 0), protected.q_w, protected.q_b)
    k_w, k_b = split_bias(torch.cat(out_k, 0), protected.k_w, protected.k_b)
    v_w, v_b = split_bias(torch.cat(out_v, 0), protected.v_w, protected.v_b)
    o_w = out_o.reshape(protected.o_w.shape).to(protected.o_w.dtype)
    return AttentionWeights(q_w, k_w, v_w, o_w, q_b, k_b, v_b)


def aga_restore(protected: Mapping[str, torch.Tensor], base: Mapping[str, torch.Tensor], *, config: Any,
                match_heads: bool = True, match_neurons: bool = True, structured: bool = True,
                residual_form: str = "none") -> dict[str, torch.Tensor]:
    """The attacker's estimate of the unprotected fine-tune, from the protected model and the public base.
    With `structured` (default), RoPE models get the QK fit restricted to the form the lock must use
    there (one scaled rotation per rotary plane); otherwise, and for models without RoPE, a general fit.
    residual_form: the lock's public `residual_form` ("rotation", "signed_permutation", "permutation",
    "none"); the stream transform is undone first (attacks/restoration/stream.py)."""
    from attacks.restoration.stream import restore_stream

    protected = restore_stream(protected, base, config=config, form=residual_form)
    plan: LockPlan = plan_lock(protected.keys(), config)
    geo, layout = plan.geometry, plan.layout
    rotary = None
    if structured and geo.rotary_dims and not geo.qk_norm:
        rotary = (rotary_pairs(geo.rotary_dims, geo.rotary_style), list(range(geo.rotary_dims, geo.head_dim)))
    out = align_mlp_neurons(protected, base, config=config) if match_neurons else dict(protected)
    for parts in plan.blocks.values():
        p = layout.split({rk: protected[n] for rk, n in parts.items()}, geo)
        b = layout.split({rk: base[n] for rk, n in parts.items()}, geo)
        restored = restore_block(p, b, num_kv_heads=geo.num_kv_heads, heads_per_group=geo.heads_per_group,
                                 head_dim=geo.head_dim, match_heads=match_heads, rotary=rotary)
        out.update({parts[rk]: t for rk, t in layout.join(restored, geo).items()})
    return out


def permute_heads(state: Mapping[str, torch.Tensor], *, config: Any, seed: int = 0) -> dict[str, torch.Tensor]:
    """A composite defence: additionally permute the key/value groups (with their query heads and O columns)
    of every block. Function-preserving; used to exercise the attack's Hungarian step."""
    plan = plan_lock(state.keys(), config)
    geo, layout = plan.geometry, plan.layout
    g, r, d = geo.num_kv_heads, geo.heads_per_group, geo.head_dim
    gen = torch.Generator().manual_seed(seed)
    out = dict(state)
    for parts in plan.blocks.values():
        w = layout.split({rk: state[n] for rk, n in parts.items()}, geo)
        perm = torch.randperm(g, generator=gen)

        def rows(t, per):
            return None if t is None else t.reshape(g, per * d, *t.shape[1:])[perm].reshape(t.shape)

        permuted = AttentionWeights(rows(w.q_w, r), rows(w.k_w, 1), rows(w.v_w, 1),
                                    w.o_w.reshape(-1, g, r * d)[:, perm].reshape(w.o_w.shape),
                                    rows(w.q_b, r), rows(w.k_b, 1), rows(w.v_b, 1))
        out.update({parts[rk]: t for rk, t in layout.join(permuted, geo).items()})
    return out
