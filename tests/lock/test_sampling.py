import math

import numpy as np
import pytest

from guard.lock.sampling import QKForm, SeedStream, haar_orthogonal, qk_transform, rotary_pairs, well_conditioned


def test_stream_is_deterministic_and_seed_dependent():
    a, b, c = SeedStream(b"x" * 32), SeedStream(b"x" * 32), SeedStream(b"y" * 32)
    first = a.normal(100)
    assert np.array_equal(first, b.normal(100))
    assert not np.allclose(first, c.normal(100))
    assert abs(SeedStream(b"z" * 32).normal(20000).std() - 1.0) < 0.03


def test_haar_orthogonal_is_orthogonal():
    q = haar_orthogonal(SeedStream(b"q" * 32), 48)
    assert np.abs(q @ q.T - np.eye(48)).max() < 1e-12


@pytest.mark.parametrize("bound", [1.5, 2.0, 4.0])
def test_well_conditioned_respects_bound_and_inverse_is_exact(bound):
    m, m_inv = well_conditioned(SeedStream(b"w" * 32), 64, bound)
    s = np.linalg.svd(m, compute_uv=False)
    assert s.max() <= bound * (1 + 1e-12) and s.min() >= (1 / bound) * (1 - 1e-12)
    assert np.linalg.cond(m) <= bound**2 * (1 + 1e-9)
    assert np.abs(m @ m_inv - np.eye(64)).max() < 1e-12


def _rope(x, positions, style, rotary_dims):
    """Reference RoPE on the first rotary_dims dims of x [n, d] (HF rotate_half or GPT-J interleaved)."""
    out = x.copy()
    for (i, j), freq in zip(rotary_pairs(rotary_dims, style), 10000.0 ** (-np.arange(rotary_dims // 2) * 2 / rotary_dims)):
        c, s = np.cos(positions * freq), np.sin(positions * freq)
        out[:, i], out[:, j] = x[:, i] * c - x[:, j] * s, x[:, j] * c + x[:, i] * s
    return out


@pytest.mark.parametrize("style", ["rotate_half", "interleaved"])
@pytest.mark.parametrize("rotary_dims", [16, 8])
def test_qk_transform_commutes_with_rope(style, rotary_dims):
    d = 16
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(7, d)), rng.normal(size=(7, d))
    pos = np.arange(7.0)
    a, a_inv = qk_transform(SeedStream(b"r" * 32), QKForm(d, rotary_dims, style), 2.0)
    ref = _rope(q, pos, style, rotary_dims) @ _rope(k, pos, style, rotary_dims).T
    got = _rope(q @ a.T, pos, style, rotary_dims) @ _rope(k @ a_inv, pos, style, rotary_dims).T
    assert np.abs(got - ref).max() < 1e-10
    # Negative control: a general block does not commute with RoPE.
    g, g_inv = well_conditioned(SeedStream(b"g" * 32), d, 2.0)
    bad = _rope(q @ g.T, pos, style, rotary_dims) @ _rope(k @ g_inv, pos, style, rotary_dims).T
    assert np.abs(bad - ref).max() > 1e-2


def test_qk_norm_form_is_signs_only():
    a, a_inv = qk_transform(SeedStream(b"n" * 32), QKForm(16, 12, "rotate_half", qk_norm=True), 2.0)
    assert np.array_equal(np.abs(a), np.eye(16)) and np.array_equal(a, a_inv)
    pairs = rotary_pairs(12, "rotate_half")
    assert all(a[i, i] == a[j, j] for i, j in pairs)


def test_rope_block_conditioning():
    a, _ = qk_transform(SeedStream(b"c" * 32), QKForm(32, 32), 2.0)
    assert np.linalg.cond(a) <= 4 * (1 + 1e-9)
    assert math.isclose(np.abs(np.linalg.det(a)) ** (1 / 32), np.exp(np.log(np.linalg.svd(a, compute_uv=False)).mean()))


@pytest.mark.parametrize("n", [1, 2, 5, 64, 128])
def test_householder_qr_matches_lapack_up_to_rounding(n):
    """haar_orthogonal's QR (torch's LAPACK) against numpy's: with R's diagonal sign-fixed, Q is unique,
    so any QR must give the same Q (older protected models unlock with the same matrices; the v1 golden
    output in test_lock_file.py checks that end to end)."""
    import numpy as np

    from guard.lock.sampling import householder_qr

    m = np.random.default_rng(n).standard_normal((n, n))
    q, r_diag = householder_qr(m)
    lapack_q, lapack_r = np.linalg.qr(m)
    ours = q * np.where(r_diag < 0, -1.0, 1.0)
    theirs = lapack_q * np.where(np.diag(lapack_r) < 0, -1.0, 1.0)
    assert np.abs(ours - theirs).max() < 1e-12
    assert np.abs(q.T @ q - np.eye(n)).max() < 1e-13
