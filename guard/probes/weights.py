"""The one streaming pass over the weights that every weight-only probe reads from.

Tensors are read group by group (an attention block, an MLP block, or a single tensor) from the candidate,
the base, every peer and the trusted pair, so memory holds one group of each model at a time, never a
whole model. Each group is canonicalised against the base (guard.probes.canonical) where the lock layouts
know the architecture; then per tensor and per model the task vector tau = theta - theta_0 is summarised
(`TensorStats`) and projected on the safety direction of the trusted pair. Peers get exactly the same
treatment as the candidate, so that every statistic has a peer distribution to be compared with.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from guard.artifacts.dtypes import FLOAT_DTYPES
from guard.errors import InputError
from guard.probes.canonical import BlockFit, canonicalise_attention, canonicalise_mlp, moved_unit_share

# Task-specific heads of classifiers: every expert has its own, so they are not task vectors.
HEAD_PREFIXES = ("classifier.", "score.", "head.")
_LAYER = re.compile(r"^(.*?\.\d+)\.")
_ROW_NAME = re.compile(r"(embed|wte|wpe|position|lm_head|word_embeddings)")
POWER_STEPS = 20


@dataclasses.dataclass(frozen=True)
class TensorStats:
    """One model's task vector on one tensor."""

    name: str
    numel: int
    base_norm: float
    tau_norm: float
    kurtosis: float  # of tau's entries (3 for a Gaussian)
    top_energy: float  # share of ||tau||^2 in the largest `top_fraction` of its entries
    stable_rank: float | None  # ||tau||_F^2 / sigma_max^2 over min(shape) (2-D tensors)
    rows: np.ndarray | None  # per-row ||tau|| of embedding-like tensors (token / position rows)
    canonical: bool  # measured on canonicalised weights

    @property
    def relative(self) -> float:
        return self.tau_norm / self.base_norm if self.base_norm > 0 else math.inf


@dataclasses.dataclass
class ModelPass:
    stats: dict[str, TensorStats] = dataclasses.field(default_factory=dict)
    blocks: list[BlockFit] = dataclasses.field(default_factory=list)
    # layer -> [tau . delta, ||tau||^2, ||delta||^2] against the trusted pair's direction
    alignment: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def total_relative(self) -> float:
        tau = sum(s.tau_norm ** 2 for s in self.stats.values())
        ref = sum(s.base_norm ** 2 for s in self.stats.values())
        return math.sqrt(tau / ref) if ref > 0 else math.inf


@dataclasses.dataclass
class WeightPass:
    candidate: ModelPass
    peers: list[ModelPass]
    compared: list[str]  # tensor names measured
    skipped: dict[str, str]  # tensor name -> why it was not compared
    canonical_note: str  # how (or why not) canonicalisation ran
    row_tensors: list[str]
    vocab_size: int | None
    peak_bytes: int = 0  # the most tensor bytes any one model had in memory at once (a group's worth)


def layer_of(name: str) -> str:
    found = _LAYER.match(name)
    return found.group(1) if found else "other"


def is_row_tensor(name: str, shape: tuple[int, ...], vocab_size: int | None) -> bool:
    """Embedding-like: one row per token or position (input/output embeddings, position embeddings)."""
    dims = [s for s in shape if s != 1]
    if len(dims) != 2:
        return False
    return bool(_ROW_NAME.search(name)) or (vocab_size is not None and dims[0] == vocab_size)


def tensor_stats(name: str, theta: torch.Tensor, base: torch.Tensor, *, top_fraction: float, row: bool,
                 canonical: bool, generator: torch.Generator) -> TensorStats:
    tau = theta.to(torch.float32) - base.to(torch.float32)
    flat = tau.flatten()
    energy = float(flat.double().pow(2).sum())
    base_norm = float(base.to(torch.float64).norm())
    centred = flat - flat.mean()
    m2 = float(centred.double().pow(2).mean())
    kurtosis = float(centred.double().pow(4).mean()) / m2 ** 2 if m2 > 0 else 0.0
    k = max(1, int(flat.numel() * top_fraction))
    top = float(torch.topk(flat.abs(), k, sorted=False).values.double().pow(2).sum()) / energy if energy > 0 else 0.0
    stable = None
    squeezed = tau.reshape([s for s in tau.shape if s != 1] or [1])
    if squeezed.ndim >= 2 and energy > 0:
        matrix = squeezed.reshape(squeezed.shape[0], -1)
        sigma = _top_singular_value(matrix, generator)
        stable = energy / sigma ** 2 / min(matrix.shape) if sigma > 0 else None
    rows = squeezed.reshape(squeezed.shape[0], -1).norm(dim=1).double().numpy() if row else None
    return TensorStats(name, flat.numel(), base_norm, math.sqrt(energy), kurtosis, top, stable, rows, canonical)


def _top_singular_value(matrix: torch.Tensor, generator: torch.Generator) -> float:
    """Power iteration on M^T M: a lower bound that converges fast for the leading singular value."""
    v = torch.randn(matrix.shape[1], generator=generator, dtype=matrix.dtype)
    v /= v.norm()
    sigma = 0.0
    for _ in range(POWER_STEPS):
        u = matrix @ v
        sigma = float(u.norm())
        if sigma == 0:
            return 0.0
        v = matrix.T @ (u / sigma)
        v /= v.norm().clamp(min=1e-30)
    return sigma


class _Readers:
    """One TensorLoader per model (descriptors stay open for the pass)."""

    def __init__(self, models: list):
        from guard.lock.streamed import TensorLoader

        self.loaders = [TensorLoader(m) for m in models]

    def read(self, index: int, names: list[str]) -> dict[str, torch.Tensor]:
        return {n: self.loaders[index].read(n) for n in names}

    def close(self) -> None:
        for loader in self.loaders:
            loader.close()


def _plan(model_dir, names: list[str]) -> tuple[Any, str]:
    """The lock stage's plan of attention and MLP blocks, or None with the reason."""
    from guard.lock.plan import plan_lock
    from guard.lock.protect import transformers_config

    try:
        config = transformers_config(model_dir.config, path=model_dir.root)
        try:
            return plan_lock(names, config, mlp=True), "attention heads and MLP units canonicalised against the base"
        except InputError:
            return plan_lock(names, config), "attention heads canonicalised against the base (MLP layout unknown)"
    except InputError as exc:
        return None, f"not canonicalised: {exc.message}"


def _groups(names: list[str], plan, rows: list[str]) -> Iterator[tuple[str, str | None, list[str]]]:
    """(kind, block, tensor names): attention blocks, MLP blocks, then every other tensor alone (an
    embedding-like tensor's block is its own name: its columns are checked for a residual transform)."""
    grouped: set[str] = set()
    if plan is not None:
        for block, parts in plan.blocks.items():
            members = [n for n in parts.values() if n in names]
            if len(members) == len(parts):
                grouped.update(members)
                yield "attention", block, members
        for block, parts in (plan.mlp.blocks.items() if plan.mlp is not None else ()):
            members = [n for n in parts.values() if n in names]
            if len(members) == len(parts):
                grouped.update(members)
                yield "mlp", block, members
    for name in names:
        if name not in grouped:
            yield "tensor", name if name in rows else None, [name]


def _canonical_group(kind: str, block: str | None, plan, cand: dict, base: dict, settings
                     ) -> tuple[dict, BlockFit | None, bool]:
    """(tensors the probes should measure, the block's fit, whether they are canonical)."""
    if kind == "attention":
        parts = plan.blocks[block]
        split = lambda state: plan.layout.split({rk: state[n] for rk, n in parts.items()}, plan.geometry)  # noqa: E731
        canonical, fit = canonicalise_attention(split(cand), split(base), plan.geometry, block=block)
        if fit.identifiable and fit.kept < settings.transformed_ratio:
            joined = plan.layout.join(canonical, plan.geometry)
            return {parts[rk]: t for rk, t in joined.items()}, fit, True
        return cand, fit, False
    if kind == "mlp":
        parts = plan.mlp.blocks[block]
        mine = {p: cand[n] for p, n in parts.items()}
        out, fit = canonicalise_mlp(plan.mlp.layout, mine, {p: base[n] for p, n in parts.items()}, block=block,
                                    permuted_share=settings.permuted_share)
        changed = out is not mine
        return ({parts[p]: t for p, t in out.items()} if changed else cand), fit, changed
    if kind == "tensor" and block is not None:  # an embedding-like tensor: residual dims are its columns
        fit = residual_fit(block, cand[block], base[block], permuted_share=settings.permuted_share)
        return cand, fit, False
    return cand, None, False


def residual_fit(name: str, cand: torch.Tensor, base: torch.Tensor, *, permuted_share: float) -> BlockFit:
    """Whether the residual-stream basis moved: each column of an embedding-like tensor (one residual
    dimension) of a fine-tune stays closest to the base's column at the same index; a residual rotation or
    permutation (MergeLock's residual transform) moves them all."""
    c = cand.reshape(-1, cand.shape[-1]).to(torch.float64)
    b = base.reshape(-1, base.shape[-1]).to(torch.float64)
    moved = moved_unit_share(c.T, b.T)  # a sign flip counts as moved too: its own-index cosine is -1
    raw = float((c - b).norm() / b.norm().clamp(min=1e-30))
    return BlockFit(block=name, kind="residual", raw_distance=raw, canonical_distance=raw, moved_units=moved)


def compared_names(candidate, base, *, kind: str) -> tuple[list[str], dict[str, str]]:
    names, skipped = [], {}
    for name, info in candidate.tensors.items():
        other = base.tensors.get(name)
        if info.dtype not in FLOAT_DTYPES:
            skipped[name] = f"dtype {info.dtype}"
        elif other is None:
            skipped[name] = "not in the base"
        elif tuple(other.shape) != tuple(info.shape):
            skipped[name] = f"shape {tuple(info.shape)} differs from the base's {tuple(other.shape)}"
        elif kind == "image-classifier" and name.startswith(HEAD_PREFIXES):
            skipped[name] = "task head"
        else:
            names.append(name)
    if not names:
        raise InputError("the model shares no floating-point tensor of the same shape with the base",
                         path=candidate.root, rule="scan-base-mismatch")
    return names, skipped


def weight_pass(inputs, settings) -> WeightPass:
    """Stream every compared tensor of the candidate, base, peers (and trusted pair) once."""
    candidate, base, peers = inputs.candidate, inputs.base, list(inputs.peers)
    names, skipped = compared_names(candidate, base, kind=inputs.kind)
    plan, note = _plan(candidate, list(candidate.tensors))
    pair = inputs.safety_pair
    models = [candidate, base, *peers] + ([pair.aligned, pair.unaligned] if pair is not None else [])
    for extra in models[2:]:
        missing = [n for n in names if n not in extra.tensors or tuple(extra.tensors[n].shape)
                   != tuple(candidate.tensors[n].shape)]
        if len(missing) == len(names):
            raise InputError("shares no tensor of the candidate's shapes", path=extra.root, rule="scan-peer-mismatch")
    vocab = (candidate.config or {}).get("vocab_size")
    vocab = vocab if isinstance(vocab, int) else None
    rows = [n for n in names if is_row_tensor(n, tuple(candidate.tensors[n].shape), vocab)]
    passes = [ModelPass() for _ in range(1 + len(peers))]
    generator = torch.Generator().manual_seed(settings.seed)
    geometry, canonical = settings.geometry, settings.canonical
    readers = _Readers(models)
    try:
        for kind, block, group in _groups(names, plan, rows):
            base_t = readers.read(1, group)
            delta = None
            if pair is not None:
                aligned = readers.read(len(models) - 2, group)
                unaligned = readers.read(len(models) - 1, group)
                delta = {n: aligned[n].to(torch.float32) - unaligned[n].to(torch.float32) for n in group}
            for index, model_pass in enumerate(passes):
                model_index = 0 if index == 0 else index + 1
                present = [n for n in group if n in models[model_index].tensors
                           and tuple(models[model_index].tensors[n].shape) == tuple(base.tensors[n].shape)]
                if len(present) != len(group):
                    continue  # a peer lacking part of a block: leave the block out of its statistics
                theta = readers.read(model_index, group)
                measured, fit, is_canonical = _canonical_group(kind, block, plan, theta, base_t, canonical)
                if fit is not None:
                    model_pass.blocks.append(fit)
                for name in group:
                    model_pass.stats[name] = tensor_stats(
                        name, measured[name], base_t[name], top_fraction=geometry.top_fraction,
                        row=name in rows, canonical=is_canonical, generator=generator)
                    if delta is not None:
                        tau = measured[name].to(torch.float32) - base_t[name].to(torch.float32)
                        acc = model_pass.alignment.setdefault(layer_of(name), [0.0, 0.0, 0.0])
                        acc[0] += float((tau.double() * delta[name].double()).sum())
                        acc[1] += float(tau.double().pow(2).sum())
                        acc[2] += float(delta[name].double().pow(2).sum())
                del theta, measured
            del base_t, delta
    finally:
        readers.close()
    return WeightPass(candidate=passes[0], peers=passes[1:], compared=names, skipped=skipped,
                      canonical_note=note, row_tensors=rows, vocab_size=vocab,
                      peak_bytes=max(loader.peak_bytes for loader in readers.loaders))


def shared_pass(inputs, settings) -> WeightPass:
    """The weight pass of a scan, computed once and shared by every weight-only probe."""
    return inputs.cached("weight_pass", lambda: weight_pass(inputs, settings))


# ---- robust statistics shared by the probes ----------------------------------------------------

def robust_z(value: float, peer_values: list[float], *, min_spread: float) -> tuple[float, float, float]:
    """(z, peer median, spread): (value - median) / max(1.4826 * MAD, min_spread); with fewer than three
    peers the spread is `min_spread` (the floor stands in for a spread that cannot be estimated)."""
    clean = [v for v in peer_values if math.isfinite(v)]
    if not clean:
        return math.nan, math.nan, min_spread
    median = float(np.median(clean))
    mad = 1.4826 * float(np.median(np.abs(np.asarray(clean) - median))) if len(clean) >= 3 else 0.0
    spread = max(mad, min_spread)
    return (value - median) / spread, median, spread
