"""Per-tensor task-vector statistics against reference implementations (scipy, torch.linalg, numpy)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from guard.probes.weights import robust_z, tensor_stats


@pytest.mark.parametrize("shape,heavy", [((64, 48), False), ((96, 32), True), ((4096,), False)])
def test_tensor_stats_match_references(shape, heavy):
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(shape, generator=gen)
    tau = torch.randn(shape, generator=gen) * 0.01
    if heavy:  # a sparse, amplified vector: few large entries
        tau = tau * (torch.rand(shape, generator=gen) < 0.02) * 30
    stats = tensor_stats("w", base + tau, base, top_fraction=0.01, row=len(shape) == 2, canonical=False,
                         generator=torch.Generator().manual_seed(1))
    t = tau.double().numpy().ravel()
    assert stats.tau_norm == pytest.approx(np.linalg.norm(t), rel=1e-4)
    assert stats.base_norm == pytest.approx(float(np.linalg.norm(base.double().numpy())), rel=1e-6)
    assert stats.kurtosis == pytest.approx(scipy.stats.kurtosis(t, fisher=False), rel=1e-3)
    k = max(1, int(t.size * 0.01))
    top = np.sort(np.abs(t))[-k:]
    assert stats.top_energy == pytest.approx(float((top ** 2).sum() / (t ** 2).sum()), rel=1e-3)
    if len(shape) == 2:
        sigma = float(torch.linalg.matrix_norm(tau.double(), ord=2))
        expected = float((tau.double() ** 2).sum()) / sigma ** 2 / min(shape)
        assert stats.stable_rank == pytest.approx(expected, rel=0.1)  # power iteration: sigma from below
        assert np.allclose(stats.rows, tau.double().norm(dim=1).numpy(), rtol=1e-4)
    else:
        assert stats.stable_rank is None and stats.rows is None
    assert (stats.kurtosis > 10) == heavy


def test_robust_z():
    z, median, spread = robust_z(10.0, [1.0, 2.0, 3.0, 4.0], min_spread=0.1)
    assert median == 2.5 and spread == pytest.approx(1.4826 * 1.0) and z == pytest.approx(7.5 / spread)
    z, _, spread = robust_z(3.0, [1.0, 1.0, 1.0], min_spread=0.5)  # no spread among peers: the floor
    assert spread == 0.5 and z == pytest.approx(4.0)
    z, _, spread = robust_z(3.0, [1.0, 2.0], min_spread=0.5)  # too few peers to estimate a spread
    assert spread == 0.5
