"""The residual-stream transform: every layer reads and writes the stream in a secret orthogonal basis.

The stream h is replaced by h' = Q h (Q orthogonal, d x d, derived from the lock key). Everything that
writes to it (embeddings, position embeddings, the output projections of attention and MLP and their
biases, ViT's patch projection and class token) is multiplied by Q along its residual axis; everything
that reads it does the inverse, so the model computes the same function:

- RMSNorm: rms(Q h) = rms(h), so norm(Q h) = g * Q n. The gain g is folded into the reading linear layer
  as rotation-based quantisers do (W diag(g)), and the rotated product is unfolded again by the gain the
  norm keeps: W' = W diag(g) Q^T diag(1/g'). With a rotation the norm keeps its gain (g' = g), so the
  file still holds what unlock needs to undo the fold; readers in the stored dtype lose nothing but one
  rounding. A zero gain cannot be unfolded and is refused.
- LayerNorm also subtracts the mean: Q must keep the all-ones direction (Q 1 = 1), then mean and variance
  of Q h are those of h. Q = H diag(1, R) H with H the reflection that swaps e1 and 1/sqrt(d), R Haar
  orthogonal on the rest. The norm's bias b becomes diag(g') Q diag(1/g) b.
- Tied embeddings (the LM head is the embedding matrix): the embedding gets E Q^T as a writer, and the
  head needs E diag(g) Q^T diag(1/g') as a reader after the final norm. Both hold only if Q diag(g) Q^T
  is diagonal, which for a general gain leaves only (signed) permutations: then g' = P g (the gains are
  permuted along) and every tensor is just reindexed. The same holds for post-norm models (BERT), whose
  stream is a LayerNorm's output: LN'(P u) = P LN(u) needs g' = P g, b' = P b, and only a permutation
  both commutes with the gains and keeps the mean.
- Signed permutations (a permutation with a secret sign per dimension) suit RMSNorm; a sign flip would
  move LayerNorm's mean, so LayerNorm models get plain permutations.

Forms (`--residual`): "rotation" (a dense Haar rotation where it is exact: untied pre-norm models; else
the permutation below, stated in the metadata), "permutation" (a signed permutation for RMSNorm, a
permutation for LayerNorm: an index copy, exact in every dtype, O(1) per weight), "none".

The transform composes with the attention transforms and the MLP permutation (they act on the other
axis of every shared tensor), and like them it is undone by `unlock`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import numpy as np
import torch

from guard.errors import InputError
from guard.lock.keys import RunKey
from guard.lock.reindex import flip_signs, take
from guard.lock.sampling import SeedStream, permutation

ResidualForm = Literal["rotation", "permutation", "none"]
FORMS: tuple[str, ...] = ("rotation", "permutation", "none")
_BLOCK = "residual"  # the HKDF info of the transform: "residual|0|<form>"


@dataclasses.dataclass(frozen=True)
class Rule:
    """Tensors whose stored `axes` run over the residual stream. `norm`: for a tensor that reads the
    stream through a norm, a regex template (filled with the pattern's named groups, escaped) that must
    match exactly one norm prefix; None: the tensor writes the stream, or reads it without a norm."""

    pattern: re.Pattern[str]
    axes: tuple[int, ...]
    norm: str | None = None


@dataclasses.dataclass(frozen=True)
class ResidualLayout:
    """What a layout declares about its residual stream.

    norm_kind: "rms" or "layer". post_norm: the stream is a norm's output (BERT), so only permutations
    are exact. rules: every residual tensor. norms: matches the gain tensor (`<prefix>.weight`) of every
    norm on the stream, group `norm` = its prefix (a LayerNorm's bias is `<prefix>.bias`). untouched:
    tensors with no residual axis (q/k/v biases, qk-norm, relative position bias, MLP input biases,
    vocabulary biases, buffers). Anything matched by none of these is refused rather than guessed.
    gain_offset: the effective gain is offset + weight (Gemma: 1 + w). tied: config -> whether the
    LM head is the embedding matrix.
    """

    norm_kind: Literal["rms", "layer"]
    rules: tuple[Rule, ...]
    norms: re.Pattern[str]
    untouched: re.Pattern[str]
    tied: Callable[[Any], bool] = lambda config: bool(getattr(config, "tie_word_embeddings", False))
    post_norm: bool = False
    gain_offset: float = 0.0
    # Task heads whose input depends on the architecture (a token classifier reads the stream, a sequence
    # classifier the pooler's output): config -> (extra rules, extra untouched pattern).
    heads: Callable[[Any], tuple[tuple[Rule, ...], str]] | None = None


def rule(pattern: str, *axes: int, norm: str | None = None) -> Rule:
    return Rule(re.compile(rf"^{pattern}$"), tuple(axes) or (1,), norm)


# ---- the transform itself ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ResidualTransform:
    """Q as a dense float64 matrix (`matrix`), or as a signed permutation (x' = signs * x[perm])."""

    dim: int
    matrix: np.ndarray | None = None
    perm: np.ndarray | None = None
    signs: np.ndarray | None = None

    @property
    def is_permutation(self) -> bool:
        return self.matrix is None

    def inverted(self) -> ResidualTransform:
        if self.matrix is not None:
            return ResidualTransform(self.dim, matrix=np.ascontiguousarray(self.matrix.T))
        inv = np.argsort(self.perm)
        return ResidualTransform(self.dim, perm=inv, signs=self.signs[inv])

    # Every residual vector v (a row of a reader, a column of a writer, a bias, an embedding) maps to T v
    # along its residual axis, where T = Q for the stream itself and T = diag(1/g_new) Q diag(g_cur) for a
    # reader behind a norm whose effective gain goes from g_cur to g_new (see the module docstring).
    def apply(self, tensor: torch.Tensor, axis: int, *, gain_cur: torch.Tensor | None = None,
              gain_new: torch.Tensor | None = None, compute_dtype: torch.dtype = torch.float64) -> torch.Tensor:
        axis = axis % tensor.ndim
        if self.is_permutation:  # the gains cancel: T = S, an exact index copy and sign flip
            out = take(tensor, self.perm, axis)
            if tensor.is_floating_point() and bool((self.signs < 0).any()):
                flip_signs(out, self.signs < 0, axis)
            return out
        t = torch.from_numpy(self.matrix).to(torch.float64)
        if gain_cur is not None:
            t = t * gain_cur.to(torch.float64)[None, :] / gain_new.to(torch.float64)[:, None]
        moved = tensor.to(compute_dtype).movedim(axis, -1)
        out = torch.matmul(moved, t.to(compute_dtype).T).movedim(-1, axis)
        return out.to(tensor.dtype).contiguous()

    def norm_gain(self, weight: torch.Tensor) -> torch.Tensor:
        """The norm's stored weight after the transform: permuted with the stream (no signs), or kept."""
        if self.is_permutation:
            return take(weight, self.perm, 0)
        return weight

    def norm_bias(self, bias: torch.Tensor, *, gain_cur: torch.Tensor, gain_new: torch.Tensor,
                  compute_dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """A LayerNorm bias b -> diag(g_new) Q diag(1/g_cur) b (for a permutation: S b)."""
        if self.is_permutation:
            return self.apply(bias, 0)
        t = torch.from_numpy(self.matrix).to(torch.float64)
        t = t * (1.0 / gain_cur.to(torch.float64))[None, :] * gain_new.to(torch.float64)[:, None]
        return (t.to(compute_dtype) @ bias.to(compute_dtype)).to(bias.dtype).contiguous()


def derive_residual(key: RunKey, *, dim: int, form: str, layer_norm: bool) -> ResidualTransform:
    """The run's residual transform. form: "rotation" (dense Haar; keeping 1 for LayerNorm),
    "signed_permutation" or "permutation"."""
    stream = SeedStream(key.derive_seed(block=_BLOCK, group=0, branch=form))
    if form == "rotation":
        return ResidualTransform(dim, matrix=_ones_keeping_rotation(stream, dim) if layer_norm
                                 else _haar(stream, dim))
    perm = permutation(stream, dim)
    if form == "signed_permutation":
        signs = np.where(stream.uniform(dim) < 0.5, -1.0, 1.0)
    else:
        signs = np.ones(dim)
    return ResidualTransform(dim, perm=perm, signs=signs)


def _haar(stream: SeedStream, n: int) -> np.ndarray:
    """Haar orthogonal n x n: QR of a Gaussian with R's diagonal made positive (LAPACK in float64, one
    thread: the factor is unique, so unlock regenerates it to ~1e-15 on any machine)."""
    gaussian = torch.from_numpy(stream.normal(n * n).reshape(n, n))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        q, r = torch.linalg.qr(gaussian)
    finally:
        torch.set_num_threads(threads)
    return (q * torch.sign(torch.diagonal(r))[None, :]).numpy()


def _ones_keeping_rotation(stream: SeedStream, n: int) -> np.ndarray:
    """Q = H diag(1, R) H: H the reflection swapping e1 and 1/sqrt(n), R Haar on the other n - 1 dims.
    Q 1 = 1, and on the complement of 1 it is a Haar rotation."""
    u = np.full(n, 1.0 / math.sqrt(n))
    v = -u.copy()
    v[0] += 1.0
    v /= np.linalg.norm(v)
    inner = np.eye(n)
    inner[1:, 1:] = _haar(stream, n - 1)
    # H M H with H = I - 2 v v^T, without forming H
    left = inner - 2.0 * np.outer(v, v @ inner)
    return left - 2.0 * np.outer(left @ v, v)


# ---- which tensors of a checkpoint play which part -----------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ResidualPlan:
    layout: ResidualLayout
    dim: int
    form: str  # "rotation", "signed_permutation" or "permutation"
    requested: str  # what was asked for ("rotation" or "permutation")
    # tensor name -> (residual axes, norm prefix or None)
    tensors: Mapping[str, tuple[tuple[int, ...], str | None]]
    gains: Mapping[str, str]  # norm prefix -> gain tensor name
    biases: Mapping[str, str]  # norm prefix -> bias tensor name (LayerNorm)

    def names(self) -> set[str]:
        """Every tensor the residual transform rewrites (norm gains and biases included)."""
        return set(self.tensors) | set(self.gains.values()) | set(self.biases.values())

    def norm_names(self) -> list[str]:
        """The norm tensors, which every reader needs first (tiny: d floats each)."""
        return sorted({*self.gains.values(), *self.biases.values()})

    def describe(self) -> str:
        if self.form == "rotation":
            keep = " keeping the all-ones direction (LayerNorm)" if self.layout.norm_kind == "layer" else ""
            return (f"a secret rotation of the {self.dim}-dim residual stream{keep}; norm gains folded into the "
                    f"reading layers")
        kind = "signed permutation" if self.form == "signed_permutation" else "permutation"
        text = f"a secret {kind} of the {self.dim} residual dims"
        if self.requested == "rotation":
            why = "the stream is a LayerNorm output (post-norm)" if self.layout.post_norm else "tied embeddings"
            text += f" (a rotation is not exact here: {why})"
        return text


def plan_residual(names: Iterable[str], layout: ResidualLayout | None, config: Any, *, requested: str,
                  dim: int, path=None) -> ResidualPlan:
    """Classify every tensor; refuse a tensor the layout does not account for (fail closed)."""
    if layout is None:
        raise InputError("this layout declares no residual stream; pass --residual none", path=path,
                         rule="lock-layout")
    names = list(names)
    rules, untouched = layout.rules, layout.untouched
    if layout.heads is not None:
        extra_rules, extra_untouched = layout.heads(config)
        rules = rules + extra_rules
        if extra_untouched:
            untouched = re.compile(rf"(?:{untouched.pattern})|(?:^{extra_untouched}$)")
    gains: dict[str, str] = {}
    biases: dict[str, str] = {}
    for name in names:
        found = layout.norms.match(name)
        if found is not None:
            gains[found.group("norm")] = name
    for prefix in list(gains):
        if f"{prefix}.bias" in names:
            biases[prefix] = f"{prefix}.bias"
    tensors: dict[str, tuple[tuple[int, ...], str | None]] = {}
    norm_tensors = set(gains.values()) | set(biases.values())
    for name in names:
        if name in norm_tensors:
            continue
        matched = next(((r, m) for r in rules if (m := r.pattern.match(name)) is not None), None)
        if matched is None:
            if untouched.match(name):
                continue
            raise InputError(f"tensor {name!r} is not accounted for by the residual-stream transform of this "
                             "layout (refusing rather than guessing); pass --residual none", path=path,
                             rule="lock-layout")
        r, m = matched
        norm = None
        if r.norm is not None:
            wanted = re.compile(r.norm.format(**{k: re.escape(v or "") for k, v in m.groupdict().items()}))
            candidates = [p for p in gains if wanted.fullmatch(p)]
            if len(candidates) != 1:
                raise InputError(f"tensor {name!r} reads the residual stream through a norm, found "
                                 f"{len(candidates)} candidates", path=path, rule="lock-layout")
            norm = candidates[0]
        tensors[name] = (r.axes, norm)
    tied = layout.tied(config)
    if requested == "rotation" and not tied and not layout.post_norm:
        form = "rotation"
    elif layout.norm_kind == "rms" and not layout.post_norm:
        form = "signed_permutation"
    else:
        form = "permutation"
    return ResidualPlan(layout, dim, form, requested, tensors, gains, biases)


def check_residual_shapes(plan: ResidualPlan, shapes: Mapping[str, tuple[int, ...]], *, path=None) -> None:
    for name, (axes, _) in plan.tensors.items():
        shape = shapes[name]
        if any(len(shape) <= (a % max(len(shape), 1)) or shape[a] != plan.dim for a in axes):
            raise InputError(f"tensor {name!r} has shape {tuple(shape)}, not {plan.dim} along its residual axis",
                             path=path, rule="lock-layout")
    for name in plan.norm_names():
        if tuple(shapes[name]) != (plan.dim,):
            raise InputError(f"norm tensor {name!r} has shape {tuple(shapes[name])}, not ({plan.dim},)", path=path,
                             rule="lock-layout")


class ResidualApplier:
    """Applies (or undoes) the residual transform tensor by tensor, given the norm tensors up front.
    protect: gains go g -> g' (= g for a rotation, P g for a permutation); unlock: g' -> g."""

    def __init__(self, plan: ResidualPlan, transform: ResidualTransform, norms: Mapping[str, torch.Tensor], *,
                 inverse: bool, compute_dtype: torch.dtype, path=None):
        self.plan = plan
        self.transform = transform.inverted() if inverse else transform
        self.compute_dtype = compute_dtype
        offset = plan.layout.gain_offset
        self._cur: dict[str, torch.Tensor] = {}
        self._new: dict[str, torch.Tensor] = {}
        for prefix, gain_name in plan.gains.items():
            weight = norms[gain_name]
            cur = weight.to(torch.float64) + offset
            if not transform.is_permutation and bool((cur == 0).any()):
                raise InputError(f"norm {prefix!r} has a zero gain: a residual rotation cannot be unfolded there; "
                                 "use --residual permutation", path=path, rule="lock-residual")
            self._cur[prefix] = cur
            self._new[prefix] = self.transform.norm_gain(weight).to(torch.float64) + offset
        self._norm_of = {name: prefix for prefix, name in plan.gains.items()}
        self._bias_of = {name: prefix for prefix, name in plan.biases.items()}

    def __call__(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        if name in self._norm_of:
            return self.transform.norm_gain(tensor)
        if name in self._bias_of:
            prefix = self._bias_of[name]
            return self.transform.norm_bias(tensor, gain_cur=self._cur[prefix], gain_new=self._new[prefix],
                                            compute_dtype=self.compute_dtype)
        axes, norm = self.plan.tensors[name]
        for axis in axes:
            if norm is None:
                tensor = self.transform.apply(tensor, axis, compute_dtype=self.compute_dtype)
            else:
                tensor = self.transform.apply(tensor, axis, gain_cur=self._cur[norm], gain_new=self._new[norm],
                                              compute_dtype=self.compute_dtype)
        return tensor
