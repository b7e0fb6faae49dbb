"""EnchTable stage 2 in the streaming merge: a TensorHook that adds the interference-weighted safety
vector to every merged tensor, `theta = theta_merged + w_l * alpha * Delta_l` (guard.defenses.enchtable
.interference), with tau = theta_merged - theta_base (the merge plays the reference's task model, the
merge's base its `taskpre`).

alpha needs the global norm of tau before the first tensor is written, so `task_vector_norm` runs the
job's merge once without writing (a read-and-merge pass: the stage's main cost, reported beside the
plain merge in docs/enchtable.md); the merge itself then streams as usual with the hook.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping

import torch

from guard.defenses.enchtable.interference import TensorScore, adaptive_scale, score_tensor
from guard.merge.engine import MergeJob, TensorHook, merged_tensors


class EnchTableHook(TensorHook):
    def __init__(self, delta: Mapping[str, torch.Tensor], *, alpha: float, gamma_task: float = 0.5,
                 gamma_safety: float = 0.5, record: dict | None = None):
        self.delta = dict(delta)  # checkpoint name -> Delta (float32, CPU)
        # A decision-record Check's details, filled while the merge streams (the provenance is written after).
        self.record = record if record is not None else {}
        self.record.update(alpha=alpha, scores={})
        self.alpha = alpha
        self.gamma_task, self.gamma_safety = gamma_task, gamma_safety
        self.scores: dict[str, TensorScore] = {}

    def finish(self, name: str, merged: torch.Tensor, *, group) -> torch.Tensor:
        delta = self.delta.get(name)
        if delta is None or group.base is None or tuple(delta.shape) != tuple(merged.shape):
            return merged
        scaled = self.alpha * delta.to(device=merged.device, dtype=torch.float32)
        tau = merged.float() - group.base.float()
        score = self.scores[name] = score_tensor(name, tau, scaled, gamma_task=self.gamma_task,
                                                 gamma_safety=self.gamma_safety)
        self.record["scores"][name] = score.to_json()
        weights = [s.weight for s in self.scores.values() if s.kind == "matrix"]
        if weights:
            self.record.update(matrices=len(weights), weight_min=min(weights), weight_mean=sum(weights) / len(weights))
        if score.kind == "untouched":
            return merged
        return (merged.float() + score.weight * scaled).to(merged.dtype)

    def summary(self) -> dict:
        matrices = {n: s for n, s in self.scores.items() if s.kind == "matrix"}
        weights = [s.weight for s in matrices.values()]
        return {"alpha": self.alpha, "matrices": len(matrices),
                "scaled_only": sum(s.kind == "scaled" for s in self.scores.values()),
                "untouched": sum(s.kind == "untouched" for s in self.scores.values()),
                "weight_min": min(weights, default=None), "weight_mean": sum(weights) / len(weights) if weights else None,
                "scores": {n: s.to_json() for n, s in sorted(self.scores.items())}}


def task_vector_norm(job: MergeJob, names: set[str]) -> float:
    """||theta_merged - theta_base|| over `names`: the job's merge run tensor by tensor (with the hooks it
    already has, e.g. DAM's) without writing anything, through the engine's own stream
    (`guard.merge.engine.merged_tensors`), so the pass computes exactly what the streaming merge will
    (same parameters, same random draws)."""
    squares = 0.0
    with contextlib.closing(merged_tensors(job)) as stream:
        for item in stream:
            if item.name in names and item.floating and item.base is not None:
                squares += float((item.merged.float().cpu() - item.base.float()).pow(2).sum())
    return math.sqrt(squares)


def inputs_norm(job: MergeJob, names: set[str]) -> float:
    """guard's `alpha: inputs`: the mean over the merged models of ||theta_i - theta_base|| over `names`
    (guard.defenses.enchtable.interference.inputs_task_norm), read tensor by tensor; no merge pass."""
    squares = [0.0] * len(job.models)
    for name in sorted(names):
        base = job.base.get_tensor(name).float()
        for i, model in enumerate(job.models):
            squares[i] += float((model.get_tensor(name).float() - base).pow(2).sum())
    return sum(math.sqrt(s) for s in squares) / max(len(squares), 1)


def alpha_for(job: MergeJob, delta: Mapping[str, torch.Tensor], *, beta: float,
              scale_to: str = "merge") -> tuple[float, float, float]:
    """(alpha, ||tau||, ||Delta||) over the tensors the safety vector and the merge share; ||tau|| is the
    merge's own (`scale_to="merge"`, the reference) or the mean of the merged models' (`"inputs"`)."""
    shared = {n for n, d in delta.items() if n in job.layout.tensors and tuple(job.layout.tensors[n].shape) == tuple(d.shape)}
    tau_norm = inputs_norm(job, shared) if scale_to == "inputs" else task_vector_norm(job, shared)
    delta_norm = math.sqrt(sum(float(delta[n].float().pow(2).sum()) for n in shared))
    return adaptive_scale(tau_norm, delta_norm, beta=beta), tau_norm, delta_norm
