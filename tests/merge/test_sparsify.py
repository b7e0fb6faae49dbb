"""The threshold magnitude mask against a sort-based reference, on every float dtype, with many ties."""

import pytest
import torch

from guard.merge.sparsify import bernoulli, magnitude, magnitude_outliers, top_k_mask


def _reference(values: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest; among equal values at the cut, the lowest indices (a stable sort)."""
    flat = values.reshape(-1).double()
    order = sorted(range(flat.numel()), key=lambda i: (-float(flat[i]), i))
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[order[:k]] = True
    return mask


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(4))
def test_threshold_mask_equals_the_stable_sort_reference(dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    # coarse values: many exact ties, including zeros and the largest magnitude
    values = (torch.randint(0, 12, (600,), generator=gen).double() * 0.125).to(dtype)
    if dtype == torch.float32:  # also values that differ only in the low 16 bits (the second radix pass)
        values[::7] = torch.tensor(1.0).nextafter(torch.tensor(2.0)) * torch.arange(1, 87).float().div(100)[:86]
    for k in (0, 1, 7, 299, 300, 599, 600):
        got = top_k_mask(values, k)
        assert int(got.sum()) == k
        assert torch.equal(got, _reference(values, k)), (dtype, seed, k)


def test_argsort_rule_keeps_exactly_k_and_agrees_off_ties():
    values = torch.randn(5000, dtype=torch.float32).abs()  # no ties
    assert torch.equal(top_k_mask(values, 1234, rule="argsort"), top_k_mask(values, 1234))


def test_magnitude_keeps_density():
    t = torch.tensor([-4.0, 3.0, -1.0, 0.5])
    out = magnitude(t, 0.5)
    assert torch.equal(out, torch.tensor([-4.0, 3.0, 0.0, 0.0]))
    assert torch.equal(magnitude(t, 1.0), t) and torch.equal(magnitude(t, 0.0), torch.zeros(4))


def test_outliers_band_and_bernoulli_rescale():
    t = torch.arange(1.0, 101.0)
    out = magnitude_outliers(t, 0.3, 0.1)
    assert torch.equal(out != 0, (t > 60) & (t <= 90))
    kept = bernoulli(torch.ones(10_000), 0.25, generator=torch.Generator().manual_seed(0))
    assert abs(float((kept != 0).float().mean()) - 0.25) < 0.02
    torch.testing.assert_close(kept.sum(), torch.tensor(10_000.0))


@pytest.mark.parametrize("chunk", [7, 64, 1000, 1 << 18])
def test_chunked_threshold_mask_equals_the_whole_tensor_mask(chunk):
    from guard.merge.sparsify import ThresholdChunks, magnitude_chunks

    gen = torch.Generator().manual_seed(chunk)
    values = (torch.randint(-9, 10, (5003,), generator=gen).float() * 0.25).bfloat16()  # many ties
    for density in (0.1, 0.5, 0.93):
        chunks = magnitude_chunks(values, density, chunk=chunk)
        assert isinstance(chunks, ThresholdChunks)
        got = torch.cat([chunks.chunk(s, min(s + chunk, values.numel())) for s in range(0, values.numel(), chunk)])
        assert torch.equal(got, magnitude(values, density)), density
