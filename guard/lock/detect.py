"""Detect MergeLock-style re-parameterisation (probe P1 of the reference notes).

With the base: a fine-tune moves every weight a little (relative distance ||theta - theta0|| / ||theta0||
is typically 1e-3 to 1e-1); MergeLock moves the attention projections by about 1.5 x ||theta0|| and
leaves the MLPs where the fine-tune put them, up to a permutation of their hidden units (the hardening),
so the MLP distance is measured after matching each hidden unit to its nearest base unit. The signature
is attention far, MLP near, layer after layer.

The residual-stream transform (on by default) moves every weight, MLPs included, so it has a signature of
its own: the tensors that only the stream transform touches (embeddings, position embeddings, output
biases) sit about sqrt(2) x ||base|| away, while their Gram matrices (token-by-token inner products, which
an orthogonal map of the stream leaves unchanged) stay where the base has them. A fine-tune moves neither
much; an unrelated model moves both.

Without the base (a weaker heuristic): gradient training keeps the two factors of each head's OV
circuit roughly balanced (W_V W_V^T and W_O^T W_O have similar normalised spectra). A non-orthogonal
B tips that balance. This cannot see an orthogonal B, so it only ever adds evidence.
"""

from __future__ import annotations

import dataclasses
import re
import statistics
from collections.abc import Mapping
from typing import Any

import torch

from guard.errors import InputError
from guard.lock.mlp import neuron_features
from guard.lock.plan import LockPlan, plan_lock

ATTENTION_FAR = 0.5  # median attention distance at or above this ...
FAR_NEAR_RATIO = 3.0  # ... and at least this many times the median MLP distance
IMBALANCE_THRESHOLD = 0.9  # median normalised OV imbalance (base-free)
_LAYER = re.compile(r"^(.*?\.\d+\.)")
MATCHED_UNITS = 512  # hidden units per MLP block sampled for the permutation-invariant distance
STREAM_FAR = 0.5  # stream tensors at or above this distance from the base ...
GRAM_NEAR = 0.2  # ... with Gram matrices within this relative distance of the base's: a transformed stream
GRAM_ROWS = 1024  # rows (tokens, positions, ...) sampled for the Gram comparison


@dataclasses.dataclass(frozen=True)
class LockSignature:
    """A finding-like record: flagged or not, why, and every number behind it."""

    flagged: bool
    rule: str
    message: str
    measurements: dict[str, Any]


def _norm(t: torch.Tensor) -> float:
    return float(t.to(torch.float64).norm())


def _layer_groups(plan: LockPlan, names: list[str]) -> dict[str, tuple[list[str], list[str], list[str]]]:
    """layer prefix -> (attention projection weights, the layer's MLP blocks, its other weights)."""
    layers: dict[str, tuple[list[str], list[str], list[str]]] = {}
    for block in plan.blocks:
        if (prefix := _LAYER.match(block + ".")) is not None:
            layers.setdefault(prefix.group(1), ([], [], []))
    mlp_names = set(plan.mlp.block_of()) if plan.mlp is not None else set()
    for block in plan.mlp.blocks if plan.mlp is not None else ():
        if (prefix := _LAYER.match(block + ".")) is not None and prefix.group(1) in layers:
            layers[prefix.group(1)][1].append(block)
    for name in names:
        prefix = _LAYER.match(name)
        if prefix is None or prefix.group(1) not in layers or not name.endswith("weight") or name in mlp_names:
            continue
        layers[prefix.group(1)][0 if plan.layout.match(name) is not None else 2].append(name)
    return layers


def _matched_mlp_distance(plan: LockPlan, block: str, candidate, base) -> tuple[float, float]:
    """(squared distance, squared base norm) of a sample of the candidate's hidden units to their nearest
    (cosine) base units: blind to a permutation of the hidden units, not to a different model."""
    parts = plan.mlp.blocks[block]
    try:
        cand = neuron_features(plan.mlp.layout, {p: candidate[n] for p, n in parts.items()})
        ref = neuron_features(plan.mlp.layout, {p: base[n] for p, n in parts.items()})
    except KeyError:
        return 0.0, 0.0
    if cand.shape != ref.shape:
        return 0.0, 0.0
    cand = cand[:: max(1, cand.shape[0] // MATCHED_UNITS)]
    # The cosine product only picks each unit's nearest base unit (an argmax), and was detection's largest
    # cost in float64; float32 picks the same unit unless two are equally near. The distance stays float64.
    unit = lambda x: torch.nn.functional.normalize(x.to(torch.float32), dim=1, eps=1e-30)  # noqa: E731
    nearest = (unit(cand) @ unit(ref).T).argmax(dim=1)
    return float((cand - ref[nearest]).norm() ** 2), float(ref[nearest].norm() ** 2)


def _plan(names, config) -> LockPlan:
    try:
        return plan_lock(names, config, mlp=True)
    except InputError:  # MLPs not recognisable: compare them tensor by tensor
        return plan_lock(names, config)


def _stream_rows(names: list[str], config: Any, state: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
    """[rows, d]: every vector of the tensors that only the residual transform touches (embeddings,
    position embeddings, output biases), a deterministic sample of at most GRAM_ROWS of them."""
    try:
        plan = plan_lock(names, config, mlp=True, residual="permutation")
    except InputError:
        return None
    residual = plan.residual
    others = set(plan.block_of()) | set(plan.mlp.block_of())
    rows = []
    for name, (axes, norm) in sorted(residual.tensors.items()):
        if norm is not None or name in others or len(axes) != 1 or name not in state:
            continue
        tensor = state[name].to(torch.float64)
        rows.append(tensor.movedim(axes[0] % tensor.ndim, -1).reshape(-1, residual.dim))
    if not rows:
        return None
    stacked = torch.cat(rows)
    return stacked[:: max(1, stacked.shape[0] // GRAM_ROWS)]


def stream_distances(candidate: Mapping[str, torch.Tensor], base: Mapping[str, torch.Tensor], *, config: Any,
                     names: list[str]) -> tuple[float, float] | None:
    """(distance, Gram distance) of the stream-only tensors from the base's, relative to the base's norms."""
    cand, ref = _stream_rows(names, config, candidate), _stream_rows(names, config, base)
    if cand is None or ref is None or cand.shape != ref.shape:
        return None
    gram_c, gram_b = cand @ cand.T, ref @ ref.T
    return float((cand - ref).norm() / ref.norm()), float((gram_c - gram_b).norm() / gram_b.norm())


def detect_with_base(candidate: Mapping[str, torch.Tensor], base: Mapping[str, torch.Tensor], *,
                     config: Any) -> LockSignature:
    """Per layer relative distance of attention and of MLP weights from the base; flag the signature."""
    names = [n for n in candidate.keys() if n in base.keys()]
    plan = _plan(list(candidate.keys()), config)
    per_layer = []
    for layer, (attn_names, mlp_blocks, other_names) in _layer_groups(plan, names).items():
        row: dict[str, Any] = {"layer": layer.rstrip(".")}
        for label, group in (("attention", attn_names), ("mlp", other_names)):
            delta = ref = 0.0
            for block in mlp_blocks if label == "mlp" else ():
                block_delta, block_ref = _matched_mlp_distance(plan, block, candidate, base)
                delta, ref = delta + block_delta, ref + block_ref
            for name in group:  # one tensor pair in memory at a time
                c, b = candidate[name], base[name]
                if c.ndim != 2 or c.shape != b.shape:
                    continue
                delta += _norm(c.to(torch.float64) - b.to(torch.float64)) ** 2
                ref += _norm(b) ** 2
            if ref > 0:
                row[label] = (delta / ref) ** 0.5
        per_layer.append(row)
    attn = statistics.median(r["attention"] for r in per_layer if "attention" in r)
    mlp_values = [r["mlp"] for r in per_layer if "mlp" in r]
    mlp = statistics.median(mlp_values) if mlp_values else 0.0
    attention_rule = attn >= ATTENTION_FAR and attn >= FAR_NEAR_RATIO * mlp
    stream = stream_distances(candidate, base, config=config, names=names)
    stream_rule = stream is not None and stream[0] >= STREAM_FAR and stream[1] <= GRAM_NEAR
    measurements = {"attention_distance_median": attn, "mlp_distance_median": mlp, "per_layer": per_layer,
                    "stream_distance": None if stream is None else stream[0],
                    "stream_gram_distance": None if stream is None else stream[1],
                    "thresholds": {"attention_far": ATTENTION_FAR, "far_near_ratio": FAR_NEAR_RATIO,
                                   "stream_far": STREAM_FAR, "gram_near": GRAM_NEAR}}
    reasons = []
    if attention_rule:
        reasons.append(f"attention projections sit {attn:.3g} x ||base|| from the base while MLP weights sit "
                       f"{mlp:.3g} x (attention >= {ATTENTION_FAR} and >= {FAR_NEAR_RATIO:g} x MLP)")
    if stream_rule:
        reasons.append(f"the embeddings sit {stream[0]:.3g} x ||base|| from the base's while their Gram matrix "
                       f"is within {stream[1]:.3g} of it (a secret orthogonal map of the residual stream)")
    if reasons:
        message = "the MergeLock signature: " + "; ".join(reasons) + "; merging this model destroys the merge"
    else:
        extra = "" if stream is None else f", embeddings {stream[0]:.3g} (Gram {stream[1]:.3g})"
        message = (f"no MergeLock signature: attention distance {attn:.3g}, MLP distance {mlp:.3g} (median over "
                   f"layers){extra}")
    return LockSignature(bool(reasons), "mergelock-signature", message, measurements)


def ov_imbalance(candidate: Mapping[str, torch.Tensor], *, config: Any) -> list[float]:
    """Per key/value group: || Gv/tr(Gv) - Go/tr(Go) ||_F * d / mean norm, with Gv = W_V W_V^T and
    Go = W_O^T W_O (summed over the group's query heads)."""
    plan = plan_lock(candidate.keys(), config)
    geo = plan.geometry
    d, g, r = geo.head_dim, geo.num_kv_heads, geo.heads_per_group
    values = []
    for parts in plan.blocks.values():
        weights = plan.layout.split({rk: candidate[name] for rk, name in parts.items()}, geo)
        v = weights.v_w.to(torch.float64).reshape(g, d, -1)
        o = weights.o_w.to(torch.float64).reshape(weights.o_w.shape[0], g, r, d)
        for group in range(g):
            gram_v = v[group] @ v[group].T
            gram_o = torch.einsum("nhi,nhj->ij", o[:, group], o[:, group])
            gram_v, gram_o = gram_v * d / torch.trace(gram_v), gram_o * d / torch.trace(gram_o)
            values.append(float(2 * (gram_v - gram_o).norm() / (gram_v.norm() + gram_o.norm())))
    return values


def detect_without_base(candidate: Mapping[str, torch.Tensor], *, config: Any) -> LockSignature:
    values = ov_imbalance(candidate, config=config)
    median = statistics.median(values)
    flagged = median >= IMBALANCE_THRESHOLD
    verdict = "suggests a non-orthogonal MergeLock transform" if flagged else "shows no sign of one"
    message = (f"median OV-circuit imbalance {median:.3g} over {len(values)} head groups "
               f"(threshold {IMBALANCE_THRESHOLD}) {verdict}; heuristic, base-free, blind to orthogonal transforms")
    return LockSignature(flagged, "mergelock-ov-imbalance", message,
                         {"ov_imbalance_median": median, "ov_imbalance_min": min(values),
                          "ov_imbalance_max": max(values), "threshold": IMBALANCE_THRESHOLD})


class _LazyTensors(Mapping):
    """A read-only tensor mapping over a guard.artifacts ModelDir: each tensor is read when asked for."""

    def __init__(self, model_dir):
        self._model = model_dir

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._model.get_tensor(name)

    def __iter__(self):
        return iter(self._model.tensors)

    def __len__(self) -> int:
        return len(self._model.tensors)


def detect_model_dir(candidate, base=None) -> LockSignature:
    """`guard inspect` entry point: candidate and optional base are opened guard.artifacts ModelDirs.
    With a base: the attention-far / MLP-near signature; without: the OV-imbalance heuristic.
    Raises InputError (rule lock-unsupported / lock-no-config / lock-layout) where MergeLock does not apply."""
    from guard.lock.lockfile import LOCK_FILE
    from guard.lock.modeling import transformers_config
    config = transformers_config(candidate.config, path=candidate.root)
    if base is None:
        finding = detect_without_base(_LazyTensors(candidate), config=config)
    else:
        finding = detect_with_base(_LazyTensors(candidate), _LazyTensors(base), config=config)
    declared = any(f.relpath == LOCK_FILE for f in candidate.files)
    finding.measurements["declared_by_guard_lock_json"] = declared
    if declared and not finding.flagged:
        message = f"{finding.message}; but {LOCK_FILE} declares MergeLock protection"
        return dataclasses.replace(finding, flagged=True, message=message)
    return finding
