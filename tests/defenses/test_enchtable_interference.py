"""EnchTable stage 2 against the reference notes §3.3, transcribed independently in numpy (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from guard.defenses.enchtable.interference import adaptive_scale, inputs_task_norm, interference, reinject, score_tensor


def reference_interference(tau: np.ndarray, delta: np.ndarray, gamma: float = 0.5) -> float:
    """I_l = 200 * mean_abs((U^T U - I_k) diag(S) (V^T V - I_k)) over the top floor(gamma r) triplets of each."""
    u1, s1, v1t = np.linalg.svd(tau, full_matrices=False)
    u2, s2, v2t = np.linalg.svd(delta, full_matrices=False)
    k1, k2 = math.floor(gamma * len(s1)), math.floor(gamma * len(s2))
    u = np.concatenate([u1[:, :k1], u2[:, :k2]], axis=1)
    v = np.concatenate([v1t[:k1].T, v2t[:k2].T], axis=1)  # columns = right singular vectors
    s = np.concatenate([s1[:k1], s2[:k2]])
    k = len(s)
    product = (u.T @ u - np.eye(k)) @ np.diag(s) @ (v.T @ v - np.eye(k))
    return 200.0 * float(np.abs(product).mean())


@pytest.mark.parametrize("shape", [(6, 6), (8, 5), (5, 9), (2, 7)])
def test_interference_matches_the_reference_formula(shape):
    rng = np.random.default_rng(sum(shape))
    tau = rng.normal(size=shape) * 0.1
    delta = rng.normal(size=shape) * 0.03
    ours = interference(torch.from_numpy(tau), torch.from_numpy(delta))
    assert ours == pytest.approx(reference_interference(tau, delta), rel=1e-9, abs=1e-12)


def test_interference_is_zero_for_orthogonal_subspaces_and_grows_with_overlap():
    eye = torch.eye(8, dtype=torch.float64)
    tau = eye[:, :4] @ torch.diag(torch.tensor([4.0, 3, 2, 1], dtype=torch.float64)) @ eye[:4]
    delta = eye[:, 4:] @ torch.diag(torch.tensor([4.0, 3, 2, 1], dtype=torch.float64)) @ eye[4:]
    assert interference(tau, delta) == pytest.approx(0.0, abs=1e-10)
    overlap = interference(tau, tau.clone())
    assert overlap > 1.0
    assert score_tensor("w", tau, tau.clone()).weight == pytest.approx(math.exp(-overlap))


def test_a_rank_one_matrix_keeps_no_triplet_and_scores_zero():
    # floor(0.5 * 1) = 0 triplets: the reference's mean over an empty matrix is NaN (which would turn the
    # safety update into NaN); guard scores it 0 (weight 1) and says so in its docstring.
    assert interference(torch.ones(1, 5), torch.ones(1, 5)) == 0.0


def test_adaptive_scale_is_beta_times_the_ratio_of_global_norms():
    assert adaptive_scale(3.0, 1.5, beta=0.1) == pytest.approx(0.2)
    assert adaptive_scale(3.0, 0.0, beta=0.1) == 0.0


def test_reinject_end_to_end_against_the_reference():
    g = torch.Generator().manual_seed(0)
    pre = {"w": torch.randn(6, 4, generator=g, dtype=torch.float64), "b": torch.randn(4, generator=g, dtype=torch.float64),
           "untrained": torch.randn(3, 3, generator=g, dtype=torch.float64),
           "other_shape": torch.randn(2, 2, generator=g, dtype=torch.float64)}
    task = {k: v + 0.1 * torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in pre.items()}
    delta = {"w": torch.randn(6, 4, generator=g, dtype=torch.float64), "b": torch.randn(4, generator=g, dtype=torch.float64),
             "untrained": torch.zeros(3, 3, dtype=torch.float64), "other_shape": torch.randn(3, 2, dtype=torch.float64)}
    out, alpha, scores = reinject(task, pre, delta, beta=0.1)
    shared = ["w", "b", "untrained"]
    tau_norm = math.sqrt(sum(float((task[k] - pre[k]).pow(2).sum()) for k in shared))
    delta_norm = math.sqrt(sum(float(delta[k].pow(2).sum()) for k in shared))
    assert alpha == pytest.approx(0.1 * tau_norm / delta_norm)
    expected_w = reference_interference((task["w"] - pre["w"]).numpy(), (alpha * delta["w"]).numpy())
    assert scores["w"].interference == pytest.approx(expected_w)
    torch.testing.assert_close(out["w"], task["w"] + math.exp(-expected_w) * alpha * delta["w"])
    torch.testing.assert_close(out["b"], task["b"] + alpha * delta["b"])  # non-2-D: alpha only
    assert scores["b"].kind == "scaled" and scores["untrained"].kind == "untouched"
    assert out["untrained"] is task["untrained"] and out["other_shape"] is task["other_shape"]
    assert "other_shape" not in scores


def test_alpha_from_the_inputs_is_the_mean_of_their_task_vector_norms():
    g = torch.Generator().manual_seed(5)
    pre = {"w": torch.randn(6, 4, generator=g), "b": torch.randn(4, generator=g)}
    inputs = [{n: t + s * torch.randn(t.shape, generator=g) for n, t in pre.items()} for s in (0.1, 0.3)]
    own = [math.sqrt(sum(float(((m[n] - pre[n]).double() ** 2).sum()) for n in pre)) for m in inputs]
    assert inputs_task_norm(pre, inputs, pre) == pytest.approx(sum(own) / 2, rel=1e-5)
    delta = {n: torch.randn(t.shape, generator=g) for n, t in pre.items()}
    # one input: the reference's own-norm alpha
    _, alpha, _ = reinject(inputs[0], pre, delta, beta=0.2, task_norm=inputs_task_norm(pre, inputs[:1], pre))
    _, reference, _ = reinject(inputs[0], pre, delta, beta=0.2)
    assert alpha == pytest.approx(reference, rel=1e-5)
