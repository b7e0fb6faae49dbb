"""Well-conditioned random transforms, computed in float64 from a 32-byte seed.

The random stream is SHAKE-256 of the seed (not a library PRNG), so the same key gives the same
matrices on every machine and every numpy version: `unlock` must regenerate them bit-for-bit up to
LAPACK rounding. Each sampler returns the matrix and its exact inverse (built from the factors, not
by solving), so protect and unlock never pay for, or lose precision in, a matrix inversion.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Literal

import numpy as np

RotaryStyle = Literal["rotate_half", "interleaved"]


class SeedStream:
    """A deterministic stream of uniforms and normals from a seed (SHAKE-256, counter per draw)."""

    def __init__(self, seed: bytes):
        self._seed = seed
        self._draws = 0

    def uniform(self, n: int) -> np.ndarray:
        """n floats in (0, 1), 53 bits each."""
        self._draws += 1
        raw = hashlib.shake_256(self._seed + self._draws.to_bytes(8, "little")).digest(8 * n)
        ints = np.frombuffer(raw, dtype="<u8") >> np.uint64(11)
        return (ints.astype(np.float64) + 0.5) * 2.0**-53

    def normal(self, n: int) -> np.ndarray:
        """n standard normals (Box-Muller)."""
        half = (n + 1) // 2
        u1, u2 = self.uniform(half), self.uniform(half)
        radius = np.sqrt(-2.0 * np.log(u1))
        return np.concatenate([radius * np.cos(2 * math.pi * u2), radius * np.sin(2 * math.pi * u2)])[:n]


def haar_orthogonal(stream: SeedStream, n: int) -> np.ndarray:
    """A Haar-distributed orthogonal n x n matrix: QR of a Gaussian with the signs of R's diagonal fixed."""
    q, r_diag = householder_qr(stream.normal(n * n).reshape(n, n))
    return q * np.where(r_diag < 0, -1.0, 1.0)


def householder_qr(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q, diag(R)) of a square float64 matrix, by LAPACK through torch (0.7 ms for 128 x 128, against
    4.6 ms for the plain-numpy Householder loop this replaced). With R's diagonal sign-fixed (by the
    caller) the factor Q is unique, so any QR gives the same Q up to rounding (~1e-15; tested against a
    reference Householder QR) and keys derived by earlier versions unlock the same. Called through
    torch rather than numpy because numpy's threaded BLAS spun its threads on the loaded 2-core machine
    (1.2 s for one 128 x 128 QR at load 8)."""
    import torch

    q, r = torch.linalg.qr(torch.from_numpy(np.ascontiguousarray(m, dtype=np.float64)))
    return q.numpy(), torch.diagonal(r).numpy().copy()


def log_uniform(stream: SeedStream, n: int, bound: float) -> np.ndarray:
    """n scales with log s ~ U[-log bound, log bound]: singular values in [1/bound, bound]."""
    return np.exp((2.0 * stream.uniform(n) - 1.0) * math.log(bound))


def well_conditioned(stream: SeedStream, n: int, bound: float) -> tuple[np.ndarray, np.ndarray]:
    """M = U diag(s) V^T with Haar U, V and log-uniform s in [1/bound, bound] (condition number <= bound^2),
    and its exact inverse V diag(1/s) U^T."""
    u, v = haar_orthogonal(stream, n), haar_orthogonal(stream, n)
    s = log_uniform(stream, n, bound)
    # einsum (not @): numpy's matmul goes to the threaded BLAS that householder_qr avoids.
    return np.einsum("ik,jk->ij", u * s, v), np.einsum("ik,jk->ij", v / s, u)


def permutation(stream: SeedStream, n: int) -> np.ndarray:
    """A uniformly random permutation of range(n): the order of n 53-bit uniforms (ties have
    probability ~n^2 2^-53; a stable sort keeps even those deterministic)."""
    return np.argsort(stream.uniform(n), kind="stable")


def rotary_pairs(rotary_dims: int, style: RotaryStyle) -> list[tuple[int, int]]:
    """The planes RoPE rotates: HF rotate_half pairs (i, i + r/2); interleaved (GPT-J, Meta) pairs (2i, 2i+1)."""
    half = rotary_dims // 2
    if style == "rotate_half":
        return [(i, i + half) for i in range(half)]
    return [(2 * i, 2 * i + 1) for i in range(half)]


@dataclasses.dataclass(frozen=True)
class QKForm:
    """Which matrices the query/key transform of one head may use and still commute with everything
    that acts on q and k separately (RoPE, per-head norms)."""

    head_dim: int
    rotary_dims: int = 0
    rotary_style: RotaryStyle = "rotate_half"
    qk_norm: bool = False

    def describe(self) -> str:
        parts = []
        if self.rotary_dims:
            kind = "sign flips" if self.qk_norm else "scaled rotations"
            parts.append(f"{kind} on {self.rotary_dims // 2} RoPE planes ({self.rotary_style})")
        rest = self.head_dim - self.rotary_dims
        if rest:
            kind = "sign flips" if self.qk_norm else "a general well-conditioned block"
            where = f"{rest} non-rotary dims" if self.rotary_dims else f"all {rest} dims (no RoPE)"
            parts.append(f"{kind} on {where}")
        return "; ".join(parts)


def qk_transform(stream: SeedStream, form: QKForm, bound: float) -> tuple[np.ndarray, np.ndarray]:
    """A (head_dim x head_dim) and its inverse, restricted to `form`.

    RoPE: R_m A q . R_n A^-T k equals q . R_(n-m) k for every offset only if A commutes with every
    rotation, i.e. A is block-diagonal over the RoPE planes with each 2x2 block a scaled rotation.
    QK-norm (a per-dim RMSNorm gain after the projection): only norm-preserving maps that commute
    with a diagonal gain are exact, i.e. sign flips (the same sign on both dims of a RoPE plane).
    """
    d, r = form.head_dim, form.rotary_dims
    a, a_inv = np.zeros((d, d)), np.zeros((d, d))
    if r:
        pairs = rotary_pairs(r, form.rotary_style)
        if form.qk_norm:  # exact +-1: a rotation by 0 or pi
            scale, cos, sin = np.ones(len(pairs)), np.where(stream.uniform(len(pairs)) < 0.5, -1.0, 1.0), np.zeros(len(pairs))
        else:
            scale, angle = log_uniform(stream, len(pairs), bound), 2 * math.pi * stream.uniform(len(pairs))
            cos, sin = np.cos(angle), np.sin(angle)
        for (i, j), s, c, n in zip(pairs, scale, cos, sin):
            a[i, i], a[i, j], a[j, i], a[j, j] = s * c, -s * n, s * n, s * c
            a_inv[i, i], a_inv[i, j], a_inv[j, i], a_inv[j, j] = c / s, n / s, -n / s, c / s
    if d > r:
        if form.qk_norm:
            signs = np.where(stream.uniform(d - r) < 0.5, -1.0, 1.0)
            block, block_inv = np.diag(signs), np.diag(signs)
        else:
            block, block_inv = well_conditioned(stream, d - r, bound)
        a[r:, r:], a_inv[r:, r:] = block, block_inv
    return a, a_inv
