"""EnchTable stage 2 (arXiv 2511.09880; the released `merge/models/enchtable.py`, reference notes §3.3):
reinject a safety vector Delta into a task model theta_task = theta_pre + tau, data-free.

1. Adaptive scale: alpha = beta * ||tau||_2 / ||Delta||_2, both global L2 norms over every tensor the
   two share (beta = 0.1 in the released run script), and Delta <- alpha * Delta.
2. For every 2-D tensor: thin SVDs tau_l = U1 S1 V1^T and Delta_l = U2 S2 V2^T, keep the top
   k_i = floor(gamma * r_i) triplets of each (gamma = 0.5), concatenate U = [U1 U2], V = [V1 V2],
   S = [S1; S2], and score I_l = 200 * mean_abs((U^T U - I) diag(S) (V^T V - I)); weight w_l = exp(-I_l);
   Delta_l <- w_l * Delta_l. Non-2-D tensors (norms, biases) keep alpha * Delta without a weight.
3. theta = theta_task + Delta'. A tensor whose shape differs between the two keeps the task model's.

A tensor whose Delta is exactly zero (a module the safety vector did not train) is left out of the
SVDs: its weight multiplies zero, so the output is the same; the record says "untouched".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

import torch

INTERFERENCE_SCALE = 200.0  # the released code's factor on the mean absolute overlap


@dataclasses.dataclass(frozen=True)
class TensorScore:
    name: str
    kind: str  # "matrix" (scored), "scaled" (non-2-D: alpha only), "untouched" (Delta is zero)
    interference: float | None = None
    weight: float | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and k != "name"}


def adaptive_scale(task_norm: float, safety_norm: float, *, beta: float) -> float:
    """alpha = beta * ||tau|| / ||Delta|| (a zero safety vector gets alpha 0)."""
    return 0.0 if safety_norm == 0 else beta * task_norm / safety_norm


def global_norm(squares: Iterable[float]) -> float:
    """The L2 norm of the concatenation of tensors, from their squared norms."""
    return math.sqrt(sum(squares))


def interference(tau: torch.Tensor, delta: torch.Tensor, *, gamma_task: float = 0.5,
                 gamma_safety: float = 0.5) -> float:
    """I_l for one matrix (delta already scaled by alpha), in float32 (float64 kept as is). A matrix of rank
    one keeps floor(gamma * 1) = 0 triplets; the reference's mean over the empty k x k matrix is NaN, which
    would make the safety update NaN: here it scores 0 (weight 1)."""
    dtype = torch.float64 if tau.dtype == torch.float64 else torch.float32
    u1, s1, v1 = torch.linalg.svd(tau.to(dtype), full_matrices=False)
    u2, s2, v2 = torch.linalg.svd(delta.to(dtype), full_matrices=False)
    k1, k2 = int(s1.shape[0] * gamma_task), int(s2.shape[0] * gamma_safety)
    u = torch.cat([u1[:, :k1], u2[:, :k2]], dim=1)
    s = torch.cat([s1[:k1], s2[:k2]])
    v = torch.cat([v1[:k1], v2[:k2]], dim=0)  # rows are right singular vectors (torch returns V^T)
    k = s.shape[0]
    if k == 0:
        return 0.0
    eye = torch.eye(k, dtype=dtype, device=u.device)
    overlap = (u.T @ u - eye) @ torch.diag(s) @ (v @ v.T - eye)
    return float(overlap.abs().sum() / (k * k) * INTERFERENCE_SCALE)


def score_tensor(name: str, tau: torch.Tensor, scaled_delta: torch.Tensor, *, gamma_task: float = 0.5,
                 gamma_safety: float = 0.5) -> TensorScore:
    """What EnchTable does to one tensor, given tau_l and alpha * Delta_l."""
    if not bool(scaled_delta.any()):
        return TensorScore(name, "untouched")
    if tau.dim() != 2:
        return TensorScore(name, "scaled", weight=1.0)
    score = interference(tau, scaled_delta, gamma_task=gamma_task, gamma_safety=gamma_safety)
    return TensorScore(name, "matrix", interference=score, weight=math.exp(-score))


def inputs_task_norm(pre: Mapping[str, torch.Tensor], inputs: Sequence[Mapping[str, torch.Tensor]],
                     names: Iterable[str]) -> float:
    """guard's `alpha: inputs`: the mean over a merge's inputs of ||theta_i - pre|| (over `names`), the
    size of one fine-tune, so the safety vector's scale does not depend on how many models were merged
    or on how the merge method rescales their sum (a single model: its own ||tau||, the reference's)."""
    names = list(names)
    norms = [global_norm(float((model[n].float() - pre[n].float()).pow(2).sum()) for n in names) for model in inputs]
    return sum(norms) / len(norms)


def reinject(task: Mapping[str, torch.Tensor], pre: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor], *,
             beta: float = 0.1, gamma_task: float = 0.5, gamma_safety: float = 0.5, task_norm: float | None = None
             ) -> tuple[dict[str, torch.Tensor], float, dict[str, TensorScore]]:
    """In memory: theta_task + Delta' for every tensor of `task` (tau = task - pre). Returns the new state,
    alpha and the per-tensor scores. `task_norm`: the ||tau|| alpha is scaled to, when not tau's own (guard's
    `alpha: inputs`, see `inputs_task_norm`). The streaming form is guard.defenses.enchtable.hook."""
    shared = [n for n in task if n in delta and n in pre and task[n].shape == delta[n].shape == pre[n].shape
              and task[n].is_floating_point()]
    taus = {n: task[n].float() - pre[n].float() for n in shared}
    if task_norm is None:
        task_norm = global_norm(float(taus[n].pow(2).sum()) for n in shared)
    alpha = adaptive_scale(task_norm,
                           global_norm(float(delta[n].float().pow(2).sum()) for n in shared), beta=beta)
    out, scores = dict(task), {}
    for n in shared:
        scaled = alpha * delta[n].float()
        score = scores[n] = score_tensor(n, taus[n], scaled, gamma_task=gamma_task, gamma_safety=gamma_safety)
        if score.kind != "untouched":
            out[n] = (task[n].float() + score.weight * scaled).to(task[n].dtype)
    return out, alpha, scores
